"""The learning curve reads what each budget's training consumed and what each path scored, and draws it."""
from __future__ import annotations

import json

from eval.bench_curve import curve_row, write_curve


def _summary(run_id: str, scores: dict[str, float]) -> dict:
    paths = {mode: {"key_fact_accuracy": {"mean": value, "ci": [value - 0.05, value + 0.05], "n": 117}}
             for mode, value in scores.items()}
    halves = {half: {"paths": {"hybrid": {"key_fact_accuracy": {"mean": scores["hybrid"] + delta}}}}
              for half, delta in (("dev half", -0.01), ("test half", 0.01))}
    refusal = {"hybrid": {"wrongly_refused": 0.04}}
    return {"run_id": run_id, "sets": {"heldout": {"paths": paths, "breakdowns": {"subsets": halves, "refusal": refusal}}}}


def _adapter(folder, steps: list[int], tokens: list[int]):
    folder.mkdir(parents=True)
    stages = [{"steps": s, "tokens": t, "exposures": 0.05} for s, t in zip(steps, tokens)]
    (folder / "manifest.json").write_text(json.dumps({"metrics": {"stages": stages}}))
    return folder


def test_rows_sum_the_stages_and_the_plot_and_table_are_written(tmp_path):
    small = curve_row(3, _adapter(tmp_path / "a", [10, 5], [20_000, 9_000]),
                      _summary("r1", {"base": 0.02, "rag": 0.24, "offline": 0.03, "hybrid": 0.30}))
    large = curve_row(24, _adapter(tmp_path / "b", [120], [250_000]),
                      _summary("r2", {"base": 0.02, "rag": 0.24, "offline": 0.12, "hybrid": 0.55}))
    assert small["steps"] == 15 and small["tokens"] == 29_000 and small["passes"] == 0.1
    assert small["hybrid"] == 30.0 and small["hybrid_ci"] == [25.0, 35.0] and small["hybrid_dev"] == 29.0
    assert small["hybrid_wrongly_refused"] == 4.0
    assert large["offline"] == 12.0 and large["adapter"] == "b" and large["eval"] == "r2"

    png = write_curve(tmp_path / "evals", [large, small])
    assert png.stat().st_size > 10_000 and png.read_bytes()[:4] == b"\x89PNG"
    saved = json.loads((tmp_path / "evals" / "learning-curve.json").read_text())
    assert [row["budget_min"] for row in saved] == [24, 3]
