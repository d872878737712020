"""Benchmarks: figures belong here, not in tests.

    assistant bench                 # every suite, as tables
    assistant bench indexing --json # one suite, as JSON

Each suite is a module with `run_bench(cfg, quick: bool) -> list[dict]` (`eval/bench_indexing.py`,
`eval/bench_training.py`, `assistant/bench_serving.py`, which drives the app and so sits with it, and
the opt-in `eval/bench_curve.py`), one dict per row; the first row's keys are the table's columns. A row with a non-empty `error` is a
measurement that failed: the table still prints every row, and the command exits 1.
"""
from __future__ import annotations

import importlib
import sys

HELP = "Benchmarks: indexing, training and serving speed on this machine."
SUITES = {"indexing": "eval.bench_indexing", "training": "eval.bench_training", "serving": "assistant.bench_serving"}
OPT_IN = {"curve": "eval.bench_curve"}      # trains and evaluates several times: only when asked for by name


def add_arguments(parser):
    parser.add_argument("suites", nargs="*", metavar="SUITE",
                        help=f"Which suites ({', '.join(SUITES)}; default: all of them), or `curve`: offline and "
                             "hybrid accuracy against training budget (trains 4 adapters, ~1.5 hours on 2 cores).")
    parser.add_argument("--quick", action="store_true", help="Smaller sizes, for a first look.")


def run(args, cfg):
    from assistant.cli import emit
    from eval.report import format_table

    modules = {**SUITES, **OPT_IN}
    unknown = [suite for suite in args.suites if suite not in modules]
    if unknown:
        print(f"assistant bench: no suite {', '.join(unknown)}; choose from {', '.join(modules)}",
              file=sys.stderr)
        return 2
    results, text = {}, []
    for suite in args.suites or SUITES:
        module = importlib.import_module(modules[suite])
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
