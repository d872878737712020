"""assistant eval: not implemented yet."""
import sys

HELP = "eval (not implemented yet)"


def add_arguments(parser):
    pass


def run(args, cfg):
    print("assistant eval: not implemented yet", file=sys.stderr)
    return 1
