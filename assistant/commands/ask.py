"""assistant ask: not implemented yet."""
import sys

HELP = "ask (not implemented yet)"


def add_arguments(parser):
    pass


def run(args, cfg):
    print("assistant ask: not implemented yet", file=sys.stderr)
    return 1
