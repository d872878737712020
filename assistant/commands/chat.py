"""assistant chat: the Gradio app (chat, side by side, knowledge, dataset, evaluation).

    assistant chat                                        # http://127.0.0.1:7860, this machine only
    assistant chat --host 0.0.0.0 --share-auth ana:s3cret # reachable from the network, behind a login
"""
from __future__ import annotations

import sys

from assistant.commands.ask import add_answer_flags

HELP = "Open the web app: chat on any path, compare all four, upload documents, browse the dataset and report."
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def add_arguments(parser):
    parser.add_argument("--host", default="127.0.0.1", help="Address to bind (default 127.0.0.1: this machine only).")
    parser.add_argument("--port", type=int, default=7860, help="Port (default 7860).")
    parser.add_argument("--share-auth", metavar="USER:PASS",
                        help="Require this login; needed whenever --host lets other machines in.")
    add_answer_flags(parser)


def parse_auth(value: str | None) -> tuple[str, str] | None:
    if value is None:
        return None
    user, colon, password = value.partition(":")
    if not colon or not user or not password:
        from assistant.core.config import ConfigError

        raise ConfigError("--share-auth must look like user:password")
    return user, password


def run(args, cfg):
    from assistant.app import launch

    auth = parse_auth(args.share_auth)
    if args.host not in LOOPBACK and auth is None:
        print(f"assistant chat: --host {args.host} opens the app to other machines; add --share-auth user:password",
              file=sys.stderr)
        return 2
    print(f"Starting the app on http://{args.host}:{args.port} (Ctrl+C stops it)...", file=sys.stderr, flush=True)
    launch(cfg, host=args.host, port=args.port, auth=auth)
    return 0
