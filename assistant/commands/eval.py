"""Score base, rag, offline and hybrid side by side on held-out questions, and write a report.

    assistant eval                                    # all four paths; report under <workspace>/evals/<run-id>/
    assistant eval --modes base,rag --limit 20 --json
    assistant eval --questions my_questions.jsonl     # your own questions (only "question" is required)
    assistant eval --questions feedback               # the answers corrected in the app (Chat tab)
    assistant eval --judge-url http://localhost:8000/v1 --judge-model qwen2.5-7b-instruct   # + LLM-judged metrics
    assistant eval --compare 20260101-120000 20260102-090000

Without a questions file and without <corpus>/../eval/heldout.jsonl, a test set is generated from the
documents held out of training and kept as <workspace>/questions.generated.jsonl.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from assistant.core.modes import Mode

HELP = "score the four answer paths side by side (RAGAS + key facts, with 95 percent intervals)"


def add_arguments(parser):
    parser.add_argument("--modes", default=",".join(Mode),
                        help="Comma-separated paths to score (default: base,rag,offline,hybrid).")
    parser.add_argument("--questions", dest="questions", type=Path,
                        help="Held-out questions (JSONL; only `question` is required), or `feedback`: the answers corrected "
                             "in the app. Default: the corpus's eval/heldout.jsonl, else a generated set.")
    parser.add_argument("--limit", dest="eval.limit", type=int, help="Score only the first N questions.")
    parser.add_argument("--max-new-tokens", dest="eval.max_new_tokens", type=int, metavar="N",
                        help="Tokens each scored answer may have (default 128, as in the app; a tuned hybrid answer quotes four lines).")
    parser.add_argument("--judge-url", dest="eval.judge_url",
                        help="OpenAI-compatible endpoint for the LLM-judged RAGAS metrics.")
    parser.add_argument("--judge-model", dest="eval.judge_model", help="Judge model name at that endpoint.")
    parser.add_argument("--compare", nargs=2, metavar=("RUN_A", "RUN_B"),
                        help="Diff two earlier runs (run ids under the evals folder, or their paths).")


def _run_folder(cfg, name: str) -> Path:
    folder = Path(name) if Path(name).is_dir() else cfg.evals_dir / name
    if not (folder / "summary.json").exists():
        from assistant.core.config import ConfigError

        raise ConfigError(f"{folder}: no evaluation run here (summary.json missing); "
                          f"list the runs with `ls {cfg.evals_dir}`")
    return folder


def _compare(args, cfg) -> int:
    from assistant.cli import emit
    from eval.report import compare_runs, comparison_table

    folders = [_run_folder(cfg, name) for name in args.compare]
    a, b = (json.loads((f / "summary.json").read_text(encoding="utf-8")) for f in folders)
    diff = compare_runs(a, b)
    emit(args, {"a": str(folders[0]), "b": str(folders[1]), "paths": diff},
         comparison_table(diff, folders[0].name, folders[1].name))
    return 0


def run(args, cfg) -> int:
    from assistant.cli import emit

    if args.compare:
        return _compare(args, cfg)
    from eval.evaluate import evaluate

    if args.questions == Path("feedback") and not args.questions.exists():
        from assistant.feedback import write_feedback_questions

        cfg = cfg.model_copy(update={"questions": write_feedback_questions(cfg)})
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = [m for m in modes if m not in tuple(Mode)]
    if unknown or not modes:
        print(f"assistant eval: unknown path(s) {', '.join(unknown) or '(none)'}; "
              f"choose from --modes {','.join(Mode)}", file=sys.stderr)
        return 2
    report = evaluate(cfg, modes=modes, progress=not args.json)
    recommendation = report.summary["recommendation"]
    text = (f"{report.table}\n\nRecommendation: {recommendation['verdict']}. "
            + " ".join(recommendation["reasons"]) + f"\n\nReport: {report.report_dir / 'report.html'}")
    emit(args, report.to_dict(), text)
    return 0
