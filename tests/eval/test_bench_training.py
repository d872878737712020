"""The training bench on the tiny model: every variant trains, so a baseline that crashes fails here
rather than on a user's machine; a variant that fails is a row with its error and the command exits 1."""
from __future__ import annotations

import json
import subprocess

from assistant.cli import main
from assistant.core.manifest import MANIFEST
from eval import bench_training
from eval.bench_training import VARIANTS, bench_precisions, gemm_gflops, model_shapes, run_bench, variant_result


def short_pairs_dataset(cfg, count: int = 28) -> None:
    """A dataset of short closed-book pairs where the bench looks first: TRL's loss runs the 262k-row LM head
    on every position on a CPU, so long pairs would make its variants most of the test's time."""
    from assistant.core.prompts import build_messages

    folder = cfg.datasets_dir / "short"
    folder.mkdir(parents=True)
    records = [{"messages": build_messages(f"Who signs form {n}?", None) + [{"role": "assistant", "content": f"Team {n}."}]}
               for n in range(count)]
    for name, part in (("train.jsonl", records[4:]), ("validation.jsonl", records[:4])):
        (folder / name).write_text("".join(json.dumps(r) + "\n" for r in part), encoding="utf-8")
    (folder / MANIFEST).write_text("{}")


def test_quick_bench_runs_every_variant(tiny_cfg):
    """In fp32, the precision of every machine without native bf16 (the one CI may be)."""
    short_pairs_dataset(tiny_cfg)
    tiny_cfg.train.bf16 = False

    rows = run_bench(tiny_cfg, quick=True)

    assert [row["variant"] for row in rows] == [label for label, _ in VARIANTS.values()]
    assert [row["error"] for row in rows] == [""] * len(VARIANTS)
    assert all(row["tokens_per_s"] > 0 and row["speedup"] > 0 for row in rows)
    assert [row["turn_rows"] for row in rows] == ["no", "no", "no", "yes"]
    assert {row["precision"] for row in rows} == {"fp32"} and rows[0]["speedup"] == 1.0
    # the share of the GEMM ceiling is measured, and the faster variant reaches more of it (no upper bound here:
    # at the tiny model's 64-wide MLP the timed matmul is a poor ceiling for its 262k-row LM head)
    shares = [float(row["of_ceiling"].rstrip("%")) for row in rows]
    assert all(share > 0 for share in shares) and rows[0]["gemm_gflops"] > 0
    assert (shares[2] > shares[0]) is (rows[2]["tokens_per_s"] > rows[0]["tokens_per_s"])


def test_both_precisions_where_bf16_is_native_and_fp32_alone_where_not():
    assert bench_precisions("auto", native=True) == [False, True]
    assert bench_precisions("auto", native=False) == [False]
    assert bench_precisions(True, native=False) == [True]     # asked for explicitly: measured, however slow


def test_the_gemm_ceiling_is_measured_at_the_model_shape(tiny_cfg):
    shape = model_shapes(tiny_cfg)
    assert shape["hidden"] == 64 and shape["intermediate"] > 0
    assert gemm_gflops(tiny_cfg, bf16=False, tokens=256, repeats=2) > 0.1


def test_a_failed_variant_is_a_row_with_its_error():
    done = subprocess.CompletedProcess([], 1, stdout="", stderr="Traceback ...\nAttributeError: no attribute 'bias'\n")

    result = variant_result("trl-defaults", done)

    assert result["error"] == "AttributeError: no attribute 'bias'"
    assert result["tokens_per_s"] is None


def test_bench_exits_1_when_a_row_failed(monkeypatch, capsys):
    rows = [{"variant": "a", "tokens_per_s": 10.0, "error": ""}, {"variant": "b", "tokens_per_s": None, "error": "boom"}]
    monkeypatch.setattr(bench_training, "run_bench", lambda cfg, quick: rows)

    assert main(["bench", "training", "--quick"]) == 1
    captured = capsys.readouterr()
    assert "b" in captured.out and "boom" in captured.out
    assert "training: b" in captured.err
