"""assistant ask: one question on one answer path, streamed to the terminal.

    assistant ask "Who approves a purchase order over 25,000 EUR?"          # hybrid: tuned model + retrieval
    assistant ask "What is the mileage rate?" --mode rag --json            # {"answer", "mode", "sources", "latency_s", ...}
"""
from __future__ import annotations

import sys
from pathlib import Path

from assistant.core.modes import Mode

HELP = "Answer one question on one path (hybrid, offline, rag or base), streaming the answer."


def add_answer_flags(parser) -> None:
    """Flags shared by ask, chat and serve: which adapter, how long, which backend."""
    group = parser.add_argument_group("answering")
    group.add_argument("--adapter", dest="answer.adapter", type=Path, metavar="PATH",
                       help="LoRA adapter folder (default: the newest under the workspace).")
    group.add_argument("--max-new-tokens", dest="answer.max_new_tokens", type=int, metavar="N", help="Answer length limit in tokens.")
    group.add_argument("--dtype", dest="answer.dtype", choices=("auto", "float32", "bfloat16"),
                       help="Weights for local generation (default auto: bfloat16 where the CPU or GPU runs it natively).")
    group.add_argument("--backend", dest="answer.backend", choices=("hf", "openai"),
                       help="Generate locally (hf) or through an OpenAI-compatible server (openai).")
    group.add_argument("--backend-url", dest="answer.backend_url", metavar="URL", help="That server's base URL, e.g. http://gpu:8000/v1.")
    group.add_argument("--backend-model", dest="answer.backend_model", metavar="NAME", help="Model name for the base paths there.")
    group.add_argument("--backend-adapter-model", dest="answer.backend_adapter_model", metavar="NAME",
                       help="Model name for the tuned paths there (vLLM's LoRA module name).")


def add_arguments(parser):
    parser.add_argument("question", help="The question (quote it).")
    parser.add_argument("--mode", choices=[m.value for m in Mode], default="hybrid", help="Answer path (default: hybrid).")
    add_answer_flags(parser)


def format_sources(answer) -> str:
    cited = set(answer.cited)
    return "\n".join(f"[{n}] {hit.citation} ({hit.chunk.source}){' *' if n in cited else ''}"
                     for n, hit in enumerate(answer.hits, 1))


def run(args, cfg):
    from assistant.answer import Answer, Assistant
    from assistant.cli import emit

    assistant = Assistant(cfg)
    if args.json:
        answer = assistant.answer(args.question, args.mode)
        emit(args, answer.to_dict(), answer.text)
        return 0
    streamed = False
    for item in assistant.stream(args.question, args.mode):
        if not isinstance(item, Answer):
            streamed = True
            print(item, end="", flush=True)
            continue
        print(item.text if not streamed else "")
        if item.note:
            print(f"note: {item.note}", file=sys.stderr)
        if item.hits:
            print(f"\nSources (* = cited):\n{format_sources(item)}")
        rate = f", {item.tokens_per_s:.1f} tokens/s" if item.tokens_per_s else ""
        print(f"\n[{item.mode}: {item.latency_s:.2f} s, {item.tokens} tokens{rate}]", file=sys.stderr)
    return 0
