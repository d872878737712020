"""Benchmarks: figures belong here, not in tests.

    assistant bench                 # every suite, as tables
    assistant bench indexing --json # one suite, as JSON

Each suite is a module `eval/bench_<suite>.py` with `run_bench(cfg, quick: bool) -> list[dict]`,
one dict per row; the first row's keys are the table's columns. A row with a non-empty `error` is a
measurement that failed: the table still prints every row, and the command exits 1.
"""
from __future__ import annotations

import importlib
import sys

HELP = "Benchmarks: indexing, training and serving speed on this machine."
SUITES = ("indexing", "training", "serving")
OPT_IN = ("curve",)          # trains and evaluates several times: only when asked for by name


def add_arguments(parser):
    parser.add_argument("suites", nargs="*", metavar="SUITE",
                        help=f"Which suites ({', '.join(SUITES)}; default: all of them), or `curve`: offline and "
                             "hybrid accuracy against training budget (trains 4 adapters, ~1.5 hours on 2 cores).")
    parser.add_argument("--quick", action="store_true", help="Smaller sizes, for a first look.")


def format_table(rows: list[dict]) -> str:
    if not rows:
        return "(no rows)"
    columns = list(rows[0])
    cells = [[f"{row.get(c):.3g}" if isinstance(row.get(c), float) else str(row.get(c, "")) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths)), "  ".join("-" * w for w in widths)]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths)) for r in cells]
    return "\n".join(lines)


def run(args, cfg):
    from assistant.cli import emit

    unknown = [suite for suite in args.suites if suite not in (*SUITES, *OPT_IN)]
    if unknown:
        print(f"assistant bench: no suite {', '.join(unknown)}; choose from {', '.join((*SUITES, *OPT_IN))}",
              file=sys.stderr)
        return 2
    results, text = {}, []
    for suite in args.suites or SUITES:
        module = importlib.import_module(f"eval.bench_{suite}")
        rows = module.run_bench(cfg, quick=args.quick)
        results[suite] = rows
        text.append(f"## {suite}\n{format_table(rows)}")
    emit(args, results, "\n\n".join(text))
    failed = [f"{suite}: {next(iter(row.values()))}"    # a row is named by its first column
              for suite, rows in results.items() for row in rows if row.get("error")]
    if failed:
        print(f"assistant bench: {len(failed)} measurement(s) failed: {'; '.join(failed)}", file=sys.stderr)
        return 1
    return 0
