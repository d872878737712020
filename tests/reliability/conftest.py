"""The fault and bad-input suite: every case says what it guards, and the run ends with the tally
(tests/reliability/tally.py).

    pytest tests/reliability -q     # about 2 minutes on 2 cores; ends with "reliability: N cases, ..."

Each case carries `guards`: `clear_error` (bad input refused with one line that names the thing and
the fix, never a traceback), `no_loss` (after the fault every document's text is still in the index or
on disk), or `works` (odd but valid input is accepted). A failed `no_loss` case counts as data lost,
any other failed case as a traceback. The tiny random Gemma 3 of tests/conftest.py answers; the
packaged embedder indexes.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.indexing.conftest import TINY_CORPUS
from tests.indexing.conftest import index_config as indexing_config

REPO = Path(__file__).resolve().parents[2]


def index_config(corpus: Path, workspace: Path, **overrides):
    """The indexer tests' config (the packaged embedder, everything under `workspace`), with the converted
    generator kept in the repo's workspace rather than the per-user cache."""
    return indexing_config(corpus, workspace, model_cache=str(REPO / "workspace" / "models"), **overrides)


@pytest.fixture()
def corpus(tmp_path) -> Path:
    target = tmp_path / "corpus"
    shutil.copytree(TINY_CORPUS, target)
    return target


@pytest.fixture()
def cfg(tmp_path, corpus):
    return index_config(corpus, tmp_path / "ws")
