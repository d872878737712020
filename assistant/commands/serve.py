"""assistant serve: not implemented yet."""
import sys

HELP = "serve (not implemented yet)"


def add_arguments(parser):
    pass


def run(args, cfg):
    print("assistant serve: not implemented yet", file=sys.stderr)
    return 1
