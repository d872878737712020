"""assistant run: not implemented yet."""
import sys

HELP = "run (not implemented yet)"


def add_arguments(parser):
    pass


def run(args, cfg):
    print("assistant run: not implemented yet", file=sys.stderr)
    return 1
