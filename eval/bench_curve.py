"""What more training buys: offline and hybrid key-fact accuracy against training tokens.

    assistant bench curve                  # budgets of 3, 6, 12 and 24 minutes (about 1.5 hours on a 2-core CPU)
    assistant bench curve --quick          # budgets of 1 and 2 minutes, a first look
    ASSISTANT_BENCH_CURVE_MINUTES="6 12 48 96" assistant bench curve      # your own budgets, e.g. overnight

Each budget trains its own adapter on the workspace's dataset (the budget is part of the adapter's
settings, so a budget trained before is reused, and a killed curve resumes where it stopped) and
evaluates every path on the held-out questions; base and rag do not depend on the adapter and come from
the answer cache after the first budget. The plot and the table go to `<workspace>/evals/learning-curve.*`.
Not a default `assistant bench` suite: it trains several times.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from assistant.core.config import Config
from assistant.core.modes import Mode

BUDGETS = (3.0, 6.0, 12.0, 24.0)
QUICK_BUDGETS = (1.0, 2.0)


def run_bench(cfg: Config, quick: bool) -> list[dict]:
    from eval.evaluate import evaluate
    from indexing.store import build_index
    from training.dataset import build_dataset
    from training.sft import train_adapter

    chosen = os.environ.get("ASSISTANT_BENCH_CURVE_MINUTES")
    budgets = [float(b) for b in chosen.split()] if chosen else (QUICK_BUDGETS if quick else BUDGETS)
    build_index(cfg)
    dataset = build_dataset(cfg).dataset
    rows = []
    for minutes in budgets:
        run_cfg = cfg.model_copy(deep=True)
        run_cfg.train.budget_minutes, run_cfg.train.max_steps = minutes, 0
        trained = train_adapter(run_cfg, dataset, resume=True)
        run_cfg.answer.adapter = trained.adapter
        summary = evaluate(run_cfg).summary
        rows.append(curve_row(minutes, trained.adapter, summary))
    write_curve(cfg.evals_dir, rows)
    return rows


def curve_row(minutes: float, adapter: Path, summary: dict) -> dict:
    """One budget: what training consumed (from the adapter's manifest) and what each path scored."""
    stages = json.loads((Path(adapter) / "manifest.json").read_text())["metrics"]["stages"]
    heldout = summary["sets"]["heldout"]["paths"]
    halves = summary["sets"]["heldout"].get("breakdowns", {}).get("subsets", {})
    row = {"budget_min": minutes, "steps": sum(s["steps"] for s in stages), "tokens": sum(s["tokens"] for s in stages),
           "passes": round(sum(s["exposures"] for s in stages), 2)}
    for mode in (m.value for m in Mode):
        score = heldout.get(mode, {}).get("key_fact_accuracy", {})
        row[mode] = None if score.get("mean") is None else round(100 * score["mean"], 1)
        row[f"{mode}_ci"] = [None if v is None else round(100 * v, 1) for v in score.get("ci", [None, None])]
    refusals = summary["sets"]["heldout"].get("breakdowns", {}).get("refusal", {}).get("hybrid", {})
    # over-refusal is how a longer training has failed here: it shows in the curve, not only in the report
    row["hybrid_wrongly_refused"] = None if refusals.get("wrongly_refused") is None else round(100 * refusals["wrongly_refused"], 1)
    for half in ("dev half", "test half"):
        score = halves.get(half, {}).get("paths", {}).get("hybrid", {}).get("key_fact_accuracy", {})
        row[f"hybrid_{half.split()[0]}"] = None if score.get("mean") is None else round(100 * score["mean"], 1)
    row["adapter"] = Path(adapter).name
    row["eval"] = summary["run_id"]
    return row


def write_curve(folder: Path, rows: list[dict]) -> Path:
    """learning-curve.json and learning-curve.png: offline and hybrid against training tokens (95% intervals),
    with base and rag, which training does not change, as the lines to beat."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "learning-curve.json").write_text(json.dumps(rows, indent=1))
    rows = sorted(rows, key=lambda r: r["tokens"])
    figure, axes = plt.subplots(figsize=(7, 4.2))
    tokens = [r["tokens"] / 1000 for r in rows]
    for mode, colour in (("offline", "tab:orange"), ("hybrid", "tab:green")):
        means = [r[mode] for r in rows]
        errors = [[m - r[f"{mode}_ci"][0] for m, r in zip(means, rows)], [r[f"{mode}_ci"][1] - m for m, r in zip(means, rows)]]
        axes.errorbar(tokens, means, yerr=errors, fmt="o-", color=colour, capsize=3, label=mode)
    refused = [(x, r["hybrid_wrongly_refused"]) for x, r in zip(tokens, rows) if r.get("hybrid_wrongly_refused") is not None]
    if refused:
        axes.plot(*zip(*refused), "x:", color="tab:red", label="hybrid: answerable questions refused")
    for mode, colour in (("base", "tab:gray"), ("rag", "tab:blue")):
        axes.axhline(rows[-1][mode], color=colour, linestyle="--", label=f"{mode} (untuned)")
    for r, x in zip(rows, tokens):
        axes.annotate(f"{r['budget_min']:g} min", (x, r["hybrid"]), textcoords="offset points", xytext=(0, 8),
                      ha="center", fontsize=8)
    axes.set_xscale("log")
    plain = matplotlib.ticker.FuncFormatter(lambda value, _: f"{value:g}")
    axes.xaxis.set_major_formatter(plain)
    axes.xaxis.set_minor_formatter(plain)
    axes.set_xlabel("training tokens (thousands, log scale)")
    axes.set_ylabel("key-fact accuracy, held-out (%)")
    axes.set_ylim(0, 100)
    axes.grid(alpha=0.3)
    axes.legend(loc="upper left", fontsize=8)
    figure.tight_layout()
    path = folder / "learning-curve.png"
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
