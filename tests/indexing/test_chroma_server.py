"""Index and query through a real `chroma run` server on loopback instead of the embedded store."""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from indexing.retrieve import open_retriever
from indexing.store import build_index, load_chunks
from tests.conftest import free_port


@pytest.fixture()
def chroma_server(tmp_path):
    """A `chroma run` subprocess (the CLI that ships with chromadb); yields its URL and data folder."""
    import chromadb

    port, data = free_port(), tmp_path / "server-data"
    chroma = Path(sys.executable).parent / "chroma"
    process = subprocess.Popen([str(chroma), "run", "--path", str(data), "--port", str(port), "--host", "127.0.0.1"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while True:
        try:
            chromadb.HttpClient(host="127.0.0.1", port=port).heartbeat()
            break
        except Exception:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                pytest.fail(f"chroma run did not start on port {port} (rc {process.poll()})")
            time.sleep(0.3)
    yield f"http://127.0.0.1:{port}", data
    process.terminate()
    process.wait(timeout=30)


def test_index_and_search_through_a_chroma_server(cfg, chroma_server):
    url, data = chroma_server
    server_cfg = cfg.model_copy(update={"chroma_url": url})
    first = build_index(server_cfg, progress=False)
    assert first.chunks_added > 10 and not first.skipped
    assert build_index(server_cfg, progress=False).chunks_added == 0
    assert len(load_chunks(server_cfg)) == first.chunks_added
    hits = open_retriever(server_cfg).search("How much is the late fee for a tool?", top_k=3, mode="hybrid")
    assert hits[0].chunk.doc_id == "tool-loans"
    # The vectors live with the server; the workspace holds only the manifest.
    assert any(data.rglob("*.sqlite3")) and not (cfg.kb_dir / "chroma").exists()
    assert (cfg.kb_dir / "manifest.json").exists()
