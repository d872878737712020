"""assistant chat: not implemented yet."""
import sys

HELP = "chat (not implemented yet)"


def add_arguments(parser):
    pass


def run(args, cfg):
    print("assistant chat: not implemented yet", file=sys.stderr)
    return 1
