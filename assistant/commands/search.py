"""assistant search: not implemented yet."""
import sys

HELP = "search (not implemented yet)"


def add_arguments(parser):
    pass


def run(args, cfg):
    print("assistant search: not implemented yet", file=sys.stderr)
    return 1
