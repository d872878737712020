"""assistant index: not implemented yet."""
import sys

HELP = "index (not implemented yet)"


def add_arguments(parser):
    pass


def run(args, cfg):
    print("assistant index: not implemented yet", file=sys.stderr)
    return 1
