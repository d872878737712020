"""A real SIGKILL in the middle of embedding, then a re-run, ends with the same store as a run never killed."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

from assistant.core.config import load_config
from indexing.store import build_index, index_fingerprint, load_chunks, open_collection

BATCH = 4   # small batches: the store gains a few dozen chunks at a time, so the kill lands mid-way
PROGRESS = re.compile(rb"embedding:\s+\d+%\|[^|]*\|\s*(\d+)/(\d+)")


def _write_corpus(folder: Path, files: int = 12, sections: int = 10) -> None:
    folder.mkdir()
    for f in range(files):
        body = [f"---\nid: policy-{f:02d}\ntitle: Policy {f}\n---\n\n# Policy {f}\n"]
        body += [f"## Rule {s}\n\nIn policy {f}, rule {s} says form FIN-{f * 100 + s} is filed within {s + 2} days "
                 f"of event {f}-{s} and approved by manager number {f * 7 + s}.\n" for s in range(sections)]
        (folder / f"policy-{f:02d}.md").write_text("\n".join(body), encoding="utf-8")


def _config(corpus: Path, workspace: Path):
    return load_config(overrides={"corpus": str(corpus), "workspace": str(workspace),
                                  "index": {"embed_batch_size": BATCH}})


def _index_command(corpus: Path, workspace: Path) -> list[str]:
    return [sys.executable, "-m", "assistant", "index", "--corpus", str(corpus), "--workspace", str(workspace)]


def _kill_while_embedding(command: list[str], env: dict) -> tuple[int, int]:
    """Start the indexer, SIGKILL it once 2+ batches are stored; return (chunks embedded, total) at the kill."""
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    seen = bytearray()
    reader = threading.Thread(target=lambda: [seen.extend(block) for block in iter(lambda: process.stderr.read1(4096), b"")],
                              daemon=True)
    reader.start()
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and process.poll() is None:
        found = PROGRESS.findall(bytes(seen))
        if found and 8 * BATCH <= int(found[-1][0]) < int(found[-1][1]):
            os.kill(process.pid, signal.SIGKILL)
            process.wait()
            return int(found[-1][0]), int(found[-1][1])
        time.sleep(0.02)
    process.kill()
    raise AssertionError(f"indexer ended before it could be killed mid-way (rc {process.poll()}): {bytes(seen)[-500:]!r}")


def test_sigkill_mid_run_then_rerun_equals_an_uninterrupted_run(tmp_path):
    corpus = tmp_path / "corpus"
    _write_corpus(corpus)
    env = {**os.environ, "ASSISTANT_INDEX__EMBED_BATCH_SIZE": str(BATCH), "HF_HUB_OFFLINE": "1"}

    embedded, total = _kill_while_embedding(_index_command(corpus, tmp_path / "killed"), env)
    assert 0 < embedded < total
    resumed = _config(corpus, tmp_path / "killed")
    report = build_index(resumed, progress=False)
    # The re-run kept what the killed run had stored and embedded only the rest.
    assert report.chunks_unchanged >= embedded - 4 * BATCH and report.chunks_added > 0
    assert report.chunks_unchanged + report.chunks_added == total

    reference = _config(corpus, tmp_path / "reference")
    build_index(reference, progress=False)
    assert load_chunks(resumed) == load_chunks(reference)
    assert index_fingerprint(resumed) == index_fingerprint(reference)
    ids = [c.id for c in load_chunks(reference)]
    a = open_collection(reference).get(ids=ids, include=["embeddings"])["embeddings"]
    b = open_collection(resumed).get(ids=ids, include=["embeddings"])["embeddings"]
    cosine = np.sum(np.asarray(a) * np.asarray(b), axis=1)
    assert cosine.min() > 0.99   # bf16 batches padded differently agree to ~1e-3, not bit for bit
