"""assistant serve: an OpenAI-compatible API (/v1/chat/completions, /v1/models); `model` picks the path.

    assistant serve --port 8000
    python -c "from openai import OpenAI; print(OpenAI(base_url='http://127.0.0.1:8000/v1', api_key='-').chat.completions.create(model='hybrid', messages=[{'role': 'user', 'content': 'Who approves a purchase order?'}]).choices[0].message.content)"
"""
from __future__ import annotations

from assistant.commands.ask import add_answer_flags

HELP = "Serve base, rag, offline and hybrid behind an OpenAI-compatible API (streaming too)."


def add_arguments(parser):
    parser.add_argument("--host", default="127.0.0.1", help="Address to bind (default 127.0.0.1: this machine only).")
    parser.add_argument("--port", type=int, default=8000, help="Port (default 8000).")
    add_answer_flags(parser)


def run(args, cfg):
    from assistant.serve import serve

    serve(cfg, host=args.host, port=args.port)
    return 0
