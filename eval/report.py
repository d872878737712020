"""Write one evaluation run: report.md, a self-contained report.html, plots, scores, summary, manifest.

    python -m eval.report workspace/finance/evals/<run-id>   # re-renders md/html/plots from summary.json

The report is a list of blocks (heading, paragraph, table, image) built once from the summary and
rendered twice, as Markdown and as HTML with the plots inlined as base64 PNGs. The PNGs are also
kept as files, for the app's Evaluation tab.
"""
from __future__ import annotations

import base64
import html
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from assistant.core.manifest import write_json_atomic, write_manifest

PLOTS = {"metrics.png": "Per-metric means per path, with 95% intervals",
         "kinds.png": "Domain score by question kind and path"}
DOMAIN_SCORE_NOTE = ("Domain score: key-fact accuracy on answerable questions, refusing on unanswerable ones. "
                     "Intervals are 95% bootstrap intervals over questions.")

Block = tuple   # ("h1"|"h2"|"p", text) | ("table", headers, rows) | ("img", file name, caption)


def percent(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.1f}"


def estimate_cell(estimate: dict | None) -> str:
    if not estimate or estimate.get("mean") is None:
        return "missing"
    lo, hi = estimate["ci"]
    return f"{percent(estimate['mean'])} [{percent(lo)}, {percent(hi)}]"


def format_table(rows: list[dict]) -> str:
    """Rows of dicts as a plain-text table; the first row's keys are the columns (benchmarks print these)."""
    if not rows:
        return "(no rows)"
    columns = list(rows[0])
    cells = [[f"{row.get(c):.3g}" if isinstance(row.get(c), float) else str(row.get(c, "")) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths)), "  ".join("-" * w for w in widths)]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths)) for r in cells]
    return "\n".join(lines)


def side_by_side_rows(paths: dict, modes: Sequence[str], metrics: Sequence[str]) -> list[list[str]]:
    return [[metric, *(estimate_cell(paths.get(mode, {}).get(metric)) for mode in modes)] for metric in metrics]


def side_by_side_table(paths: dict, modes: Sequence[str], metrics: Sequence[str]) -> str:
    """The headline table as fixed-width text (scores in points, 0-100, with 95% intervals)."""
    rows = [["metric", *modes], *side_by_side_rows(paths, modes, metrics)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


# --- plots ---------------------------------------------------------------------------------
def plot_metric_bars(paths: dict, modes: Sequence[str], metrics: Sequence[str], target: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    shown = [m for m in metrics if any(paths.get(mode, {}).get(m, {}).get("mean") is not None for mode in modes)]
    figure, axes = plt.subplots(figsize=(max(6.0, 1.6 * len(shown) + 2), 4.2), dpi=110)
    width = 0.8 / max(1, len(modes))
    for i, mode in enumerate(modes):
        cells = [paths.get(mode, {}).get(m, {}) for m in shown]
        means = np.array([100 * c["mean"] if c.get("mean") is not None else np.nan for c in cells])
        lows = np.array([100 * c["ci"][0] if c.get("mean") is not None else np.nan for c in cells])
        highs = np.array([100 * c["ci"][1] if c.get("mean") is not None else np.nan for c in cells])
        x = np.arange(len(shown)) + (i - (len(modes) - 1) / 2) * width
        axes.bar(x, np.nan_to_num(means), width, label=mode,
                 yerr=[np.nan_to_num(means - lows), np.nan_to_num(highs - means)], capsize=3)
    axes.set_xticks(np.arange(len(shown)), [m.replace("_", "\n") for m in shown], fontsize=8)
    axes.set_ylabel("score (0-100)")
    axes.set_ylim(0, 105)
    axes.legend(ncol=len(modes), fontsize=8, loc="upper right")
    axes.set_title(PLOTS["metrics.png"], fontsize=10)
    figure.tight_layout()
    figure.savefig(target)
    plt.close(figure)


def plot_kind_heatmap(table: dict[str, dict[str, float | None]], modes: Sequence[str], target: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    kinds = sorted(table)
    grid = np.array([[np.nan if table[k].get(m) is None else 100 * table[k][m] for m in modes] for k in kinds])
    figure, axes = plt.subplots(figsize=(1.3 * len(modes) + 2.5, 0.5 * len(kinds) + 1.6), dpi=110)
    image = axes.imshow(np.ma.masked_invalid(grid), cmap="viridis", vmin=0, vmax=100, aspect="auto")
    axes.set_xticks(range(len(modes)), modes)
    axes.set_yticks(range(len(kinds)), kinds)
    for row, col in np.ndindex(grid.shape):
        text = "—" if np.isnan(grid[row, col]) else f"{grid[row, col]:.0f}"
        axes.text(col, row, text, ha="center", va="center", color="white" if grid[row, col] < 60 else "black",
                  fontsize=9)
    figure.colorbar(image, ax=axes, label="domain score")
    axes.set_title(PLOTS["kinds.png"], fontsize=10)
    figure.tight_layout()
    figure.savefig(target)
    plt.close(figure)


# --- content -------------------------------------------------------------------------------
def _questions_paragraph(summary: dict) -> str:
    source = summary["questions"]
    text = f"Questions: {source['n']} from `{source['path']}`"
    if source.get("generated"):
        text += f" (GENERATED by {source['generator']}: {source['why']})"
    if source.get("sized_by_budget"):
        text += f". Sized to the time budget: {source['sized_by_budget']}"
    return text + "."


def report_blocks(summary: dict) -> list[Block]:
    """The whole report, in reading order."""
    modes, metrics = summary["modes"], summary["metrics"]
    heldout = summary["sets"]["heldout"]
    blocks: list[Block] = [
        ("h1", f"Evaluation {summary['run_id']}"),
        ("p", _questions_paragraph(summary)),
        ("p", f"Adapter: `{summary['inputs'].get('adapter') or 'none'}`; index: `{summary['inputs'].get('index') or 'none'}`; "
              f"dataset: `{summary['inputs'].get('dataset') or 'none'}`."),
    ]
    for mode, reason in summary.get("skipped_modes", {}).items():
        blocks.append(("p", f"Path {mode} not scored: {reason}"))
    blocks += [("h2", "Recommendation"), *(("p", reason) for reason in summary["recommendation"]["reasons"])]
    blocks += [
        ("h2", "Side by side (held-out questions)"),
        ("p", DOMAIN_SCORE_NOTE + " Scores in points (0-100)."),
        ("table", ["metric", *modes], side_by_side_rows(heldout["paths"], modes, metrics)),
        ("img", "metrics.png", PLOTS["metrics.png"]),
        ("h2", "Differences (paired over questions)"),
        ("table", ["comparison", "key facts", "domain score"],
         [[name, found.get("key_fact_accuracy", {}).get("verdict", "—"), found.get("domain_score", {}).get("verdict", "—")]
          for name, found in heldout["differences"].items()]),
        ("h2", "By question kind (domain score)"),
        ("table", ["kind", "n", *modes], [[kind, str(heldout["kind_counts"].get(kind, 0)), *(percent(v.get(m)) for m in modes)]
                                           for kind, v in heldout["by_kind"].items()]),
        ("img", "kinds.png", PLOTS["kinds.png"]),
    ]
    blocks += _breakdown_blocks(heldout.get("breakdowns"), modes)
    blocks += _forgetting_blocks(summary.get("forgetting", {}))
    blocks += [
        ("h2", "Cost"),
        ("p", "Answers are generated in batches: latency is each answer's share of its batch's wall time, "
              "and tokens/s is the batched throughput. `assistant bench` measures single-request latency."),
        ("table", ["path", "latency p50 (s)", "latency p95 (s)", "tokens/s", "answer words"],
         [[mode, *(("—" if c.get(k) is None else f"{c[k]:.2f}") for k in
                   ("latency_p50_s", "latency_p95_s", "tokens_per_s", "answer_words"))]
          for mode, c in summary["cost"].items()]),
    ]
    validation = summary["sets"].get("validation")
    if validation and validation.get("n"):
        blocks += [("h2", f"Synthetic validation split ({validation['n']} questions)"),
                   ("table", ["metric", *modes], side_by_side_rows(validation["paths"], modes, metrics))]
    blocks += _missing_blocks(summary.get("missing", {}))
    return blocks


def _breakdown_blocks(found: dict | None, modes: Sequence[str]) -> list[Block]:
    if not found:
        return []
    shown = {name: sub for name, sub in found["subsets"].items() if sub["n"]}
    # an empty row would read "missing" in every cell; say what it means instead
    empty = "".join(f" No answerable question has {name} (n = 0)." for name in found["subsets"] if name not in shown)
    blocks: list[Block] = [
        ("h2", "Breakdowns (held-out questions)"),
        ("p", "Dev and test halves are fixed by a hash of the question id: choices are made on the dev half, the "
              "test half is the number to quote. Seen documents reached the tuned model's training set. "
              "Cells are key-fact accuracy." + empty),
        ("table", ["subset", "n", *modes],
         [[name, str(sub["n"]), *(estimate_cell(sub["paths"].get(m, {}).get("key_fact_accuracy")) for m in modes)]
          for name, sub in shown.items()])]
    if found.get("retrieval"):
        blocks += [("p", "Retrieval is the ceiling of the paths that read context: key facts in the context they "
                         "were shown, stated in their answers, and stated when in context."),
                   ("table", ["path", "facts", "in context", "stated", "stated when in context"],
                    [[mode, str(r["facts"]), percent(r["in_context"]), percent(r["stated"]),
                      percent(r["stated_when_in_context"])] for mode, r in found["retrieval"].items()])]
    blocks += [("p", "Refusals over all held-out questions: precision (refusals that were right to refuse), recall "
                     "(unanswerable questions refused), and answerable questions wrongly refused."),
               ("table", ["path", "precision", "recall", "wrongly refused", "refused"],
                [[mode, percent(r["precision"]), percent(r["recall"]), percent(r["wrongly_refused"]),
                  f"{r['refused']} of {r['answerable'] + r['unanswerable']}"] for mode, r in found["refusal"].items()])]
    return blocks


def _forgetting_blocks(forgetting: dict) -> list[Block]:
    blocks: list[Block] = [("h2", "Forgetting (general questions, base vs tuned)")]
    if forgetting.get("skipped"):
        return blocks + [("p", f"Not measured: {forgetting['skipped']}")]
    rows = []
    for name, scale in (("key_fact_accuracy", percent), ("perplexity", lambda v: "—" if v is None else f"{v:.2f}")):
        found = forgetting.get(name)
        if found:
            drop = found["drop"]
            interval = "—" if drop["mean"] is None else f"{scale(drop['mean'])} [{scale(drop['ci'][0])}, {scale(drop['ci'][1])}]"
            rows.append([name, scale(found["base"]["mean"]), scale(found["tuned"]["mean"]), interval])
    blocks.append(("table", ["measure", "base", "tuned", "drop (base - tuned) [95%]"], rows))
    if forgetting.get("verdict"):
        blocks.append(("p", forgetting["verdict"]))
    return blocks


def _missing_blocks(missing: dict) -> list[Block]:
    rows = [[mode, metric, reason, str(count)] for mode, per_metric in missing.items()
            for metric, reasons in per_metric.items() for reason, count in reasons.items()]
    if not rows:
        return []
    return [("h2", "Missing values and why"), ("table", ["path", "metric", "reason", "answers"], rows)]


# --- rendering -----------------------------------------------------------------------------
def render_markdown(blocks: Sequence[Block]) -> str:
    out: list[str] = []
    for block in blocks:
        kind = block[0]
        if kind == "h1":
            out.append(f"# {block[1]}")
        elif kind == "h2":
            out.append(f"## {block[1]}")
        elif kind == "p":
            out.append(block[1])
        elif kind == "table":
            headers, rows = block[1], block[2]
            clean = [[str(c).replace("|", "\\|") for c in row] for row in rows]
            out.append("\n".join(["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers),
                                  *("| " + " | ".join(row) + " |" for row in clean)]))
        elif kind == "img":
            out.append(f"![{block[2]}]({block[1]})")
    return "\n\n".join(out) + "\n"


_STYLE = ("body{font-family:system-ui,sans-serif;max-width:980px;margin:2em auto;padding:0 1em;color:#222}"
          "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}"
          "th{background:#f3f3f3}img{max-width:100%}code{background:#f3f3f3;padding:0 3px}")


def _inline(text: str) -> str:
    """Escape, then turn `code` spans into <code>."""
    parts = html.escape(text).split("`")
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))


def render_html(blocks: Sequence[Block], folder: Path) -> str:
    """One file with nothing to fetch: the plots are inlined from `folder` as base64 PNGs."""
    title = next((b[1] for b in blocks if b[0] == "h1"), "Evaluation")
    body: list[str] = []
    for block in blocks:
        kind = block[0]
        if kind in ("h1", "h2", "p"):
            body.append(f"<{kind}>{_inline(block[1])}</{kind}>")
        elif kind == "table":
            head = "".join(f"<th>{html.escape(h)}</th>" for h in block[1])
            rows = "".join("<tr>" + "".join(f"<td>{_inline(str(c))}</td>" for c in row) + "</tr>" for row in block[2])
            body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
        elif kind == "img" and (folder / block[1]).exists():
            data = base64.b64encode((folder / block[1]).read_bytes()).decode()
            body.append(f'<figure><img alt="{html.escape(block[2])}" src="data:image/png;base64,{data}">'
                        f"<figcaption>{html.escape(block[2])}</figcaption></figure>")
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{_STYLE}</style></head><body>{''.join(body)}</body></html>\n")


def render_report(folder: Path, summary: dict) -> None:
    """Plots, report.md and report.html from the summary (all inside `folder`)."""
    heldout = summary["sets"]["heldout"]
    plot_metric_bars(heldout["paths"], summary["modes"], summary["metrics"], folder / "metrics.png")
    plot_kind_heatmap(heldout["by_kind"], summary["modes"], folder / "kinds.png")
    blocks = report_blocks(summary)
    (folder / "report.md").write_text(render_markdown(blocks), encoding="utf-8")
    (folder / "report.html").write_text(render_html(blocks, folder), encoding="utf-8")


def write_run(folder: Path, summary: dict, rows: Sequence[dict], manifest: dict) -> None:
    """Every file of a run into `folder` (the scratch side of an atomic_folder)."""
    with open(folder / "scores.jsonl", "w", encoding="utf-8") as sink:
        for row in rows:
            sink.write(json.dumps(row, default=str) + "\n")
    write_json_atomic(folder / "summary.json", summary)
    write_manifest(folder, manifest)
    render_report(folder, summary)


# --- two runs side by side ----------------------------------------------------------------
def compare_runs(a: dict, b: dict) -> dict[str, dict[str, dict]]:
    """{path: {metric: {"a", "b", "change"}}} over the held-out means of two runs' summaries."""
    paths_a, paths_b = a["sets"]["heldout"]["paths"], b["sets"]["heldout"]["paths"]
    out: dict[str, dict[str, dict]] = {}
    for mode in [m for m in a["modes"] if m in b["modes"]]:
        out[mode] = {}
        for metric in [m for m in a["metrics"] if m in b["metrics"]]:
            old, new = paths_a[mode][metric]["mean"], paths_b[mode][metric]["mean"]
            out[mode][metric] = {"a": old, "b": new,
                                 "change": None if old is None or new is None else new - old}
    return out


def comparison_table(diff: dict[str, dict[str, dict]], run_a: str, run_b: str) -> str:
    rows = [["path", "metric", run_a, run_b, "change"]]
    for mode, per_metric in diff.items():
        for metric, cell in per_metric.items():
            change = "—" if cell["change"] is None else f"{100 * cell['change']:+.1f}"
            rows.append([mode, metric, percent(cell["a"]), percent(cell["b"]), change])
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


if __name__ == "__main__":
    run = Path(sys.argv[1])
    render_report(run, json.loads((run / "summary.json").read_text(encoding="utf-8")))
    print(run / "report.html")
