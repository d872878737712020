"""assistant run: the whole pipeline, index -> synth -> train -> eval, resumable stage by stage.

    assistant run                                   # the shipped finance corpus
    assistant run --corpus ~/handbook               # your documents (questions are generated)
    assistant run --corpus ~/handbook --questions my_questions.jsonl

Each stage skips itself when its manifest says its inputs have not changed, so a re-run after
a kill, or after editing one document, redoes only what changed.
"""
from __future__ import annotations

from pathlib import Path

HELP = "The whole pipeline: index -> synth -> train -> eval, ending with the side-by-side table."


def add_arguments(parser):
    parser.add_argument("--questions", dest="questions", type=Path,
                        help="Held-out questions (JSONL, only `question` required); default: the corpus's own, else generated.")
    parser.add_argument("--stop-after", choices=("index", "synth", "train", "eval"), help="Stop after this stage.")
    parser.add_argument("--limit", dest="eval.limit", type=int, help="Evaluate only the first N questions (a quick look).")
    parser.add_argument("--epochs", dest="train.epochs", type=float, help="Training epochs (default from config).")
    parser.add_argument("--budget-minutes", dest="train.budget_minutes", type=float, metavar="M",
                        help="Training time budget in minutes (default 12, sized for a 30-minute run on a 2-core CPU); "
                             "the step count is set by timing the first steps. 0: the epochs decide.")
    parser.add_argument("--max-steps", dest="train.max_steps", type=int, metavar="N",
                        help="A fixed number of optimizer steps instead of the time budget.")
    parser.add_argument("--min-steps", dest="train.min_steps", type=int, metavar="N",
                        help="The fewest steps the time budget plans, even past it (default 30: shorter trainings are noisy; 0: the budget alone).")
    parser.add_argument("--generator", dest="synth.generator", choices=("extractive", "hf", "openai"),
                        help="Who writes the synthetic pairs (default: extractive, no LLM).")


def run(args, cfg):
    from assistant.cli import emit
    from assistant.pipeline import run_pipeline

    results = run_pipeline(cfg, args.stop_after)
    times = "  ".join(f"{name} {r['seconds']:.0f}s" for name, r in results.items())
    lines = [f"Workspace: {cfg.home}", f"Stage wall times: {times}"]
    if "eval" in results:
        lines += ["", results["eval"].get("table", ""), "", f"Report: {results['eval'].get('report', '')}"]
    emit(args, results, "\n".join(lines))
    return 0
