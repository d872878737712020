"""The `assistant` command: one verb per pipeline stage, each a thin shell over one library call.

    assistant --help
    assistant run                       # index -> synth -> train -> eval on the shipped corpus
    assistant ask "Who approves a $30,000 purchase?" --mode hybrid

Command modules live in `assistant/commands/<verb>.py`; each declares `HELP`,
`add_arguments(parser)` and `run(args, cfg) -> int`, and imports torch & co. only inside
`run`, so `--help` stays instant. A flag whose `dest` is a config path ("train.epochs")
overrides that config field.
"""
from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path
from typing import Any

VERBS = ("run", "index", "search", "synth", "train", "ask", "chat", "serve", "eval", "tune", "bench")


def _common_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("common")
    group.add_argument("--config", type=Path, help="TOML config file (default: ./assistant.toml if present).")
    group.add_argument("--workspace", dest="workspace", type=Path, help="Artifact folder (default: workspace/<corpus name>).")
    group.add_argument("--corpus", dest="corpus", type=Path, help="Folder of documents (default: the shipped finance corpus).")
    group.add_argument("--base-model", dest="base_model", help="Generator: HF id or local folder (default: packaged Gemma 3 270M).")
    group.add_argument("--embed-model", dest="embed_model", help="Embedder: HF id or local folder (default: packaged MiniLM).")
    group.add_argument("--chroma-url", dest="chroma_url", help="Use a Chroma server (chroma run) instead of the embedded store.")
    group.add_argument("--seed", dest="seed", type=int, help="Random seed (default 0).")
    group.add_argument("--json", action="store_true", help="Print one JSON object on stdout instead of tables.")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="assistant",
        description="Hybrid fine-tuning + RAG domain assistant: index documents, synthesise a tuning set, "
                    "LoRA-tune a small model, chat with it, and score base / rag / offline / hybrid side by side.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Every verb has --help. Settings: flags > ASSISTANT_* environment > assistant.toml > defaults.",
    )
    verbs = parser.add_subparsers(dest="verb", metavar="VERB")
    for verb in VERBS:
        module = importlib.import_module(f"assistant.commands.{verb}")
        sub = verbs.add_parser(verb, help=module.HELP, description=module.__doc__ or module.HELP,
                               formatter_class=argparse.RawDescriptionHelpFormatter)
        module.add_arguments(sub)
        _common_flags(sub)
        sub.set_defaults(command=module)
    return parser


def config_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """Flags whose dest names a config field ("seed", "train.epochs") become overrides."""
    from assistant.core.config import Config

    overrides: dict[str, Any] = {}
    for dest, value in vars(args).items():
        if value is None:
            continue
        section, _, field = dest.partition(".")
        if field:
            overrides.setdefault(section, {})[field] = value
        elif dest in Config.model_fields:
            overrides[dest] = value
    return overrides


def emit(args: argparse.Namespace, result: dict[str, Any], text: str) -> None:
    """One JSON object on stdout with --json, else the human text."""
    if getattr(args, "json", False):
        print(json.dumps(result, default=str))
    else:
        print(text)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.verb is None:
        parser.print_help()
        return 0
    from assistant.core.config import ConfigError, load_config
    from assistant.core.errors import UserError

    try:
        cfg = load_config(args.config, config_overrides(args))
        if cfg.home.exists() and not cfg.home.is_dir():
            raise ConfigError(f"--workspace {cfg.home} is a file, not a folder; pass a folder (it is created when missing)")
        return int(args.command.run(args, cfg) or 0)
    except (UserError, MemoryError) as err:   # every error a user can act on, caught here and nowhere above
        print(f"assistant {args.verb}: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        print(f"assistant {args.verb}: {err}; check that path and its permissions", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"assistant {args.verb}: interrupted; re-run the same command to resume.", file=sys.stderr)
        return 130
