"""The knowledge base under copies, moves, renames, --prune and kill -9: it never wedges, loses no
document's text, and a re-run converges to the run never interrupted."""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from assistant.core.manifest import read_manifest
from indexing.store import build_index, index_fingerprint, load_chunks, open_collection
from tests.reliability.conftest import index_config

REPORT = ("# Quarterly report\n\n## Revenue\n\nRevenue rose to 4.2 million in the third quarter.\n\n"
          "## Staffing\n\nThe team grew from 12 to 15 people; two hires start in May.\n")


def _texts(cfg) -> set[str]:
    return {c.text for c in load_chunks(cfg)}


def _reads(cfg, files: list[Path]) -> set[str]:
    """Every chunk text the files give when indexed alone: what must be findable."""
    from indexing.chunk import chunk_document
    from indexing.embed import load_tokenize
    from indexing.ingest import read_document

    tokenize = load_tokenize(cfg)
    return {c.text for f in files for c in chunk_document(read_document(f, 20), chunk_size=cfg.index.chunk_size,
                                                          chunk_overlap=cfg.index.chunk_overlap, tokenize=tokenize)}


@pytest.mark.guards("no_loss")
@pytest.mark.parametrize("copies", [2, 3, 4])
def test_identical_documents_index_again_and_again_under_one_source(tmp_path, copies):
    corpus = tmp_path / "corpus"
    for n in range(1, copies + 1):
        (corpus / f"d{n}").mkdir(parents=True)
        (corpus / f"d{n}" / "report.md").write_text(f"---\nid: report\n---\n\n{REPORT}", encoding="utf-8")
    cfg = index_config(corpus, tmp_path / "ws")
    first = build_index(cfg, progress=False)
    sources = {c.id: c.source for c in load_chunks(cfg)}
    for _ in range(2):   # the second run crashed with DuplicateIDError; two copies flipped the source each run
        again = build_index(cfg, prune=True, progress=False)
        assert (again.chunks_added, again.chunks_removed, again.chunks_unchanged) == (0, 0, first.chunks_added)
        assert {c.id: c.source for c in load_chunks(cfg)} == sources
    assert set(sources.values()) == {str(corpus / "d1" / "report.md")}
    assert len(read_manifest(cfg.kb_dir)["inputs"]["files"]) == copies


@pytest.mark.guards("works")
def test_same_named_files_in_different_folders_are_different_documents(tmp_path):
    corpus = tmp_path / "corpus"
    for folder, figure in (("d1", "4.2"), ("d2", "4.2"), ("d2/deeper", "5.0")):
        (corpus / folder).mkdir(parents=True)
        (corpus / folder / "report.md").write_text(REPORT.replace("4.2", figure), encoding="utf-8")
    cfg = index_config(corpus, tmp_path / "ws")
    build_index(cfg, progress=False)
    assert {c.doc_id for c in load_chunks(cfg)} == {"d1/report", "d2/report", "d2/deeper/report"}


def _move_corpus(tmp_path) -> tuple[Path, list[Path]]:
    corpus = tmp_path / "corpus"
    shutil.copytree(Path(__file__).parents[1] / "fixtures" / "tiny_corpus", corpus)
    (corpus / "kept.md").write_text(f"---\nid: kept-report\n---\n\n{REPORT}", encoding="utf-8")
    return corpus, sorted(corpus.rglob("*.md"))


@pytest.mark.guards("no_loss")
@pytest.mark.parametrize("prune", [True, False], ids=["prune", "no-prune"])
def test_moved_and_renamed_files_keep_their_text(tmp_path, prune):
    corpus, _ = _move_corpus(tmp_path)
    cfg = index_config(corpus, tmp_path / "ws")
    build_index(cfg, progress=False)
    before = {c.id for c in load_chunks(cfg)}
    (corpus / "archive").mkdir()
    (corpus / "kept.md").rename(corpus / "archive" / "kept.md")                  # same id: front matter
    (corpus / "tool-loans.md").rename(corpus / "archive" / "tool-loans-2026.md")  # new id: path
    (corpus / "workshop-hours.md").rename(corpus / "opening-times.md")             # renamed in place
    report = build_index(cfg, prune=prune, progress=False)

    now = sorted(corpus.rglob("*.md"))
    assert _reads(cfg, now) <= _texts(cfg)           # every current file's text is found
    stored = load_chunks(cfg)
    current = {c.id for c in stored if Path(c.source).exists()}
    assert report.chunks_unchanged + report.chunks_added == len(current)     # the report adds up
    assert {c.source for c in stored if c.doc_id == "kept-report"} == {str(corpus / "archive" / "kept.md")}
    if prune:
        assert all(Path(c.source).exists() for c in stored)
        assert report.chunks_removed == len(before - {c.id for c in stored})
    else:
        assert before <= {c.id for c in stored} and report.chunks_removed == 0


@pytest.mark.guards("no_loss")
def test_a_deleted_file_stays_until_pruned_and_a_deleted_copy_loses_nothing(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for name in ("a.md", "b.md"):
        (corpus / name).write_text(f"---\nid: shared\n---\n\n{REPORT}", encoding="utf-8")
    cfg = index_config(corpus, tmp_path / "ws")
    build_index(cfg, progress=False)
    (corpus / "a.md").unlink()       # the copy whose path the chunks carried
    build_index(cfg, prune=True, progress=False)
    assert {c.source for c in load_chunks(cfg)} == {str(corpus / "b.md")}
    assert _reads(cfg, [corpus / "b.md"]) <= _texts(cfg)


BATCH = 2
PROGRESS = re.compile(rb"embedding:\s+\d+%\|[^|]*\|\s*(\d+)/(\d+)")


def _repeated_corpus(folder: Path) -> None:
    """Policies plus three identical copies of one document: the case that once wedged the re-run."""
    for f in range(6):
        body = [f"# Policy {f}\n"] + [f"## Rule {s}\n\nIn policy {f}, rule {s} says form FIN-{f * 100 + s} is filed "
                                      f"within {s + 2} days.\n" for s in range(6)]
        (folder / "policies").mkdir(parents=True, exist_ok=True)
        (folder / "policies" / f"policy-{f}.md").write_text("\n".join(body), encoding="utf-8")
    for copy in ("a", "b", "c"):
        (folder / copy).mkdir()
        (folder / copy / "report.md").write_text(f"---\nid: report\n---\n\n{REPORT}", encoding="utf-8")


def _kill_while_embedding(corpus: Path, workspace: Path) -> tuple[int, int]:
    env = {**os.environ, "ASSISTANT_INDEX__EMBED_BATCH_SIZE": str(BATCH), "HF_HUB_OFFLINE": "1",
           "PYTHONPATH": str(Path(__file__).parents[2])}
    process = subprocess.Popen([sys.executable, "-m", "assistant", "index", "--corpus", str(corpus),
                                "--workspace", str(workspace)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    seen = bytearray()
    threading.Thread(target=lambda: [seen.extend(b) for b in iter(lambda: process.stderr.read1(4096), b"")],
                     daemon=True).start()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        found = PROGRESS.findall(bytes(seen))
        if found and 4 * BATCH <= int(found[-1][0]) < int(found[-1][1]):
            os.kill(process.pid, signal.SIGKILL)
            process.wait()
            return int(found[-1][0]), int(found[-1][1])
        time.sleep(0.02)
    process.kill()
    raise AssertionError(f"the indexer ended before it could be killed (rc {process.poll()}): {bytes(seen)[-400:]!r}")


@pytest.mark.guards("no_loss")
def test_kill_9_while_indexing_repeated_documents_then_rerun_converges(tmp_path):
    corpus = tmp_path / "corpus"
    _repeated_corpus(corpus)
    embedded, total = _kill_while_embedding(corpus, tmp_path / "killed")
    assert 0 < embedded < total
    resumed = index_config(corpus, tmp_path / "killed", index={"embed_batch_size": BATCH})
    report = build_index(resumed, progress=False)       # crashed with DuplicateIDError before
    assert report.chunks_unchanged + report.chunks_added == total and report.chunks_added > 0
    assert build_index(resumed, progress=False).chunks_added == 0

    reference = index_config(corpus, tmp_path / "reference", index={"embed_batch_size": BATCH})
    build_index(reference, progress=False)
    assert load_chunks(resumed) == load_chunks(reference)
    assert index_fingerprint(resumed) == index_fingerprint(reference)
    ids = [c.id for c in load_chunks(reference)]
    a = np.asarray(open_collection(reference).get(ids=ids, include=["embeddings"])["embeddings"])
    b = np.asarray(open_collection(resumed).get(ids=ids, include=["embeddings"])["embeddings"])
    assert np.sum(a * b, axis=1).min() > 0.99
