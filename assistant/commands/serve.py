"""assistant serve: an OpenAI-compatible API (/v1/chat/completions, /v1/models); `model` picks the path.

    assistant serve --port 8000                                    # this machine only, no key needed
    ASSISTANT_API_KEY=s3cret assistant serve --host 0.0.0.0        # reachable by others, key required
    python -c "from openai import OpenAI; print(OpenAI(base_url='http://127.0.0.1:8000/v1', api_key='-').chat.completions.create(model='hybrid', messages=[{'role': 'user', 'content': 'Who approves a purchase order?'}]).choices[0].message.content)"
"""
from __future__ import annotations

import sys

from assistant.commands.ask import add_answer_flags
from assistant.commands.chat import LOOPBACK

HELP = "Serve base, rag, offline and hybrid behind an OpenAI-compatible API (streaming too)."


def add_arguments(parser):
    parser.add_argument("--host", default="127.0.0.1", help="Address to bind (default 127.0.0.1: this machine only).")
    parser.add_argument("--port", type=int, default=8000, help="Port (default 8000).")
    parser.add_argument("--api-key", dest="api_key", metavar="KEY",
                        help="Require `Authorization: Bearer KEY`; needed whenever --host lets other machines in. "
                             "ASSISTANT_API_KEY does the same without showing the key in the process list.")
    add_answer_flags(parser)


def run(args, cfg):
    from assistant.serve import serve

    if args.host not in LOOPBACK and cfg.api_key is None:
        print(f"assistant serve: --host {args.host} opens the API to other machines; set ASSISTANT_API_KEY "
              "(or pass --api-key KEY) so that only clients with the key are answered", file=sys.stderr)
        return 2

    serve(cfg, host=args.host, port=args.port)
    return 0
