"""The CLI shows every verb, and each verb explains itself."""
from __future__ import annotations

import re
import subprocess
import sys

from assistant.cli import VERBS


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "assistant", *args], capture_output=True, text=True, timeout=120)


def test_help_lists_every_verb():
    result = run_cli("--help")
    assert result.returncode == 0
    # argparse lists each sub-command on a line of its own, indented, its help after it; the `run` verb's
    # help names the other verbs, so a bare substring test would pass with most verbs missing.
    listed = set(re.findall(r"^ {4}(\w+)\b", result.stdout, re.MULTILINE))
    assert set(VERBS) <= listed, set(VERBS) - listed


def test_every_verb_has_help_with_json_flag():
    for verb in VERBS:
        result = run_cli(verb, "--help")
        assert result.returncode == 0, (verb, result.stderr)
        assert "--json" in result.stdout, verb


def test_bad_config_value_is_a_clear_error():
    result = run_cli("search", "anything", "--seed", "x")
    assert result.returncode != 0
    assert "seed" in result.stderr
