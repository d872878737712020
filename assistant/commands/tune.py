"""assistant tune: choose the training and data-mix settings by evaluation (Optuna: TPE, pruning, SQLite).

    assistant tune                                     # 6 trials, 30 minutes of training in all
    assistant tune --trials 12 --budget-minutes 60     # run the same command again to resume a killed tune
    assistant tune --space space.toml --json           # other ranges; one JSON object on stdout

Trials are scored on the synthetic validation split (key-fact accuracy of offline and hybrid); the
held-out questions are answered once at the end, by the best trial and by the configured settings.
Everything lands in <workspace>/tunes/<id>/: study.db, report.md, summary.json, importance.png,
history.png, and assistant.toml with the best settings. A space file names config fields with a range
or choices, replacing their defaults (assistant/tune_space.py lists them):

    ["train.learning_rate"]
    low = 1e-4
    high = 3e-3
    log = true

    ["synth.paraphrases"]
    choices = [2, 4]
"""
from __future__ import annotations

from pathlib import Path

HELP = "choose training and data-mix settings by their validation scores (Optuna), then check on held-out"


def add_arguments(parser):
    parser.add_argument("--trials", dest="tune.trials", type=int, metavar="N",
                        help="Trials in the study (default 6); the first trains the configured settings.")
    parser.add_argument("--budget-minutes", dest="tune.budget_minutes", type=float, metavar="M",
                        help="Training time over all trials (default 30); each trial trains for M / N minutes.")
    parser.add_argument("--space", type=Path, metavar="FILE",
                        help="TOML file of search ranges replacing the defaults (format above).")
    parser.add_argument("--limit", dest="eval.limit", type=int, metavar="N",
                        help="Score only the first N held-out questions at the end (a quick look).")


def run(args, cfg):
    from assistant.cli import emit
    from assistant.tune import tune

    report = tune(cfg, space_path=args.space, progress=not args.json)
    emit(args, report.to_dict(), _text(report))
    return 0


def _text(report) -> str:
    summary = report.summary
    lines = ["trial  state      offline  hybrid  val loss  min"]
    for t in summary["trials"]:
        percent = lambda v: "—" if v is None else f"{100 * v:.1f}"
        lines.append(f"{t['trial']:<6} {t['state']:<10} {percent(t['offline_key_facts']):>7}  {percent(t['hybrid_key_facts']):>6}"
                     f"  {'—' if t['val_loss'] is None else format(t['val_loss'], '.3f'):>8}"
                     f"  {'—' if t['seconds'] is None else format(t['seconds'] / 60, '.1f'):>4}")
    heldout = summary["heldout"]
    lines += ["", f"best: trial {summary['best']['trial']}  {summary['best']['params']}"]
    if heldout.get("note"):
        lines.append(heldout["note"])
    for per_metric in (heldout.get("differences") or {}).values():
        lines.append(per_metric["key_fact_accuracy"]["verdict"] + " (held-out key facts)")
    lines += ["", f"Report: {report.folder / 'report.md'}", f"Best settings: {report.folder / 'assistant.toml'}"]
    return "\n".join(lines)
