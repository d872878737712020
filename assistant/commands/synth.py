"""Synthesise the fine-tuning set from the knowledge base: content points -> pairs -> quality gates -> split.

    assistant synth                                   # extractive generator: no LLM, seconds on a CPU
    assistant synth --generator hf                    # the packaged base model writes the questions
    assistant synth --generator openai --generator-url http://localhost:8000/v1 --generator-model Qwen2.5-7B-Instruct
    assistant synth --feedback-fraction 0.5           # half the answers corrected in the app become pairs
    assistant synth --json                            # {"dataset", "train", "validation", "by_type", "rejected"}

Builds the index first when there is none. The dataset lands in <workspace>/datasets/<id>/ with a card
(card.md), an HF `datasets` folder and OpenAI fine-tuning JSONL. A re-run with the same inputs is
skipped; a killed run resumes without redoing any generation.
"""
from __future__ import annotations

import sys

HELP = "Synthesise fine-tuning pairs (qa, points->output, RAFT, refusals) behind quality gates."


def add_arguments(parser):
    parser.add_argument("--generator", dest="synth.generator", choices=("extractive", "hf", "openai"),
                        help="Who writes content points and questions (default: extractive, no LLM).")
    parser.add_argument("--generator-url", dest="synth.generator_url",
                        help="OpenAI-compatible base URL for --generator openai (vLLM, Ollama, a hosted teacher).")
    parser.add_argument("--generator-model", dest="synth.generator_model", help="Model name at that endpoint.")
    parser.add_argument("--paraphrases", dest="synth.paraphrases", type=int, help="Questions per content point.")
    parser.add_argument("--refusals", dest="synth.refusals", type=int, help="Out-of-scope refusal questions.")
    parser.add_argument("--validation-fraction", dest="synth.validation_fraction", type=float,
                        help="Share of content points with one phrasing kept for validation (0: all trained).")
    parser.add_argument("--feedback-fraction", dest="synth.feedback_fraction", type=float,
                        help="Share of the answers corrected in the app that become training pairs (0..1, default 0); "
                             "the rest stay questions for `assistant eval --questions feedback`.")


def run(args, cfg):
    from assistant.cli import emit
    from indexing.store import IndexNotFound, build_index, load_chunks
    from training.dataset import build_dataset

    progress = not args.json
    try:
        has_index = bool(load_chunks(cfg))
    except IndexNotFound:
        has_index = False
    if not has_index:
        print(f"assistant synth: no index at {cfg.kb_dir}; building it from {cfg.corpus} first", file=sys.stderr)
        build_index(cfg, progress=progress)
    report = build_dataset(cfg, progress=progress)
    if report.up_to_date:
        text = f"Dataset {report.dataset} is up to date: {report.train} train / {report.validation} validation pairs."
    else:
        by_type = ", ".join(f"{t} {n}" for t, n in report.by_type.items())
        rejected = ", ".join(f"{g} {n}" for g, n in report.rejected.items())
        text = (f"Wrote {report.dataset} in {report.seconds:.1f} s: {report.train} train / {report.validation} "
                f"validation pairs ({by_type}).\nRejected by the gates: {rejected}.\nCard: {report.dataset / 'card.md'}")
    emit(args, report.to_dict(), text)
    return 0
