"""assistant synth: not implemented yet."""
import sys

HELP = "synth (not implemented yet)"


def add_arguments(parser):
    pass


def run(args, cfg):
    print("assistant synth: not implemented yet", file=sys.stderr)
    return 1
