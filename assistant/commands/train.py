"""assistant train: not implemented yet."""
import sys

HELP = "train (not implemented yet)"


def add_arguments(parser):
    pass


def run(args, cfg):
    print("assistant train: not implemented yet", file=sys.stderr)
    return 1
