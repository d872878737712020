"""The store is reconciled with the files: idempotent, incremental, prunable, and bad files lose nothing."""
from __future__ import annotations

import json
import shutil

import pytest

from assistant.core.config import ConfigError
from assistant.core.manifest import read_manifest
from indexing.store import IndexNotFound, build_index, index_fingerprint, load_chunks


def _ids_by_doc(cfg) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for chunk in load_chunks(cfg):
        found.setdefault(chunk.doc_id, set()).add(chunk.id)
    return found


def test_reindexing_an_unchanged_corpus_embeds_nothing(cfg):
    first = build_index(cfg, progress=False)
    assert first.files == 4 and first.chunks_added > 10 and not first.skipped
    fingerprint = index_fingerprint(cfg)
    again = build_index(cfg, progress=False)
    assert (again.chunks_added, again.chunks_removed, again.chunks_unchanged) == (0, 0, first.chunks_added)
    assert index_fingerprint(cfg) == fingerprint
    manifest = read_manifest(cfg.kb_dir)
    assert manifest["kind"] == "index" and len(manifest["inputs"]["files"]) == 4
    assert manifest["metrics"]["chunks"] == first.chunks_added and manifest["fingerprint"] == fingerprint


def test_a_changed_file_replaces_exactly_its_old_chunks(cfg):
    build_index(cfg, progress=False)
    before = _ids_by_doc(cfg)
    path = cfg.corpus / "tool-loans.md"
    path.write_text(path.read_text(encoding="utf-8").replace("$1 per day", "$2 per day"), encoding="utf-8")
    report = build_index(cfg, progress=False)
    after = _ids_by_doc(cfg)
    assert (report.chunks_added, report.chunks_removed) == (1, 1)
    assert {d: ids for d, ids in after.items() if d != "tool-loans"} == {d: ids for d, ids in before.items() if d != "tool-loans"}
    assert len(after["tool-loans"] - before["tool-loans"]) == 1
    assert any("$2 per day" in c.text for c in load_chunks(cfg))
    assert not any("$1 per day" in c.text for c in load_chunks(cfg))


def test_prune_removes_chunks_of_vanished_files_only_when_asked(cfg):
    build_index(cfg, progress=False)
    fingerprint = index_fingerprint(cfg)
    (cfg.corpus / "workshop-hours.md").unlink()
    kept = build_index(cfg, progress=False)
    assert kept.chunks_removed == 0 and "workshop-hours" in _ids_by_doc(cfg)
    pruned = build_index(cfg, prune=True, progress=False)
    assert pruned.chunks_removed > 0 and "workshop-hours" not in _ids_by_doc(cfg)
    assert index_fingerprint(cfg) != fingerprint
    assert not any("workshop-hours" in p for p in read_manifest(cfg.kb_dir)["inputs"]["files"])


def test_bad_files_are_skipped_with_reasons_and_the_rest_indexed(cfg, broken_files):
    shutil.copytree(broken_files, cfg.corpus / "broken")
    report = build_index(cfg.model_copy(update={"index": cfg.index.model_copy(update={"max_file_mb": 1.0})}),
                         progress=False)
    reasons = {item["path"].rsplit("/", 1)[-1]: item["reason"] for item in report.skipped}
    assert set(reasons) == {"empty.md", "binary.txt", "latin1.md", "truncated.pdf", "corrupt.docx", "huge.md"}
    assert all(reason and "\n" not in reason for reason in reasons.values())
    assert set(_ids_by_doc(cfg)) == {"membership-fees", "tool-loans", "volunteer-shifts", "workshop-hours"}


def test_a_file_that_turns_bad_keeps_its_indexed_chunks(cfg):
    build_index(cfg, progress=False)
    before = _ids_by_doc(cfg)["membership-fees"]
    (cfg.corpus / "membership-fees.md").write_bytes(b"\xff\xfe broken \x00 now")
    report = build_index(cfg, prune=True, progress=False)
    assert [s["path"].endswith("membership-fees.md") for s in report.skipped] == [True]
    assert _ids_by_doc(cfg)["membership-fees"] == before and report.chunks_removed == 0


def test_every_format_is_indexed_with_citation_metadata(cfg, every_format):
    report = build_index(cfg, [every_format], progress=False)
    assert report.files == 5 and not report.skipped
    chunks = {c.doc_id: c for c in load_chunks(cfg)}
    assert set(chunks) == {"lathe-rules", "notes", "manual", "grinder", "booth"}
    assert chunks["lathe-rules"].section == "Chuck keys" and chunks["lathe-rules"].title == "Lathe Rules"
    assert {c.page for c in load_chunks(cfg) if c.doc_id == "manual"} == {1, 2}
    assert any(c.section == "Booking" for c in load_chunks(cfg) if c.doc_id == "booth")
    assert chunks["notes"].source == str((every_format / "notes.txt").resolve())


def test_another_embedder_cannot_write_into_the_store(cfg, tmp_path):
    build_index(cfg, progress=False)
    other = cfg.model_copy(update={"embed_model": str(tmp_path / "some-other-model")})
    with pytest.raises(ConfigError, match="was embedded with"):
        build_index(other, progress=False)


def test_missing_index_says_how_to_build_one(cfg):
    with pytest.raises(IndexNotFound, match="run `assistant index` first"):
        load_chunks(cfg)


def test_cli_index_json_and_exit_status_three_on_skips(cfg, broken_files):
    import subprocess
    import sys

    (cfg.corpus / "empty.md").write_bytes(b"")
    result = subprocess.run([sys.executable, "-m", "assistant", "index", "--json", "--corpus", str(cfg.corpus),
                             "--workspace", str(cfg.workspace)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 3, result.stderr
    report = json.loads(result.stdout)
    assert set(report) == {"files", "chunks_added", "chunks_unchanged", "chunks_removed", "skipped", "seconds"}
    assert report["files"] == 5 and report["chunks_added"] > 0
    assert report["skipped"][0]["path"].endswith("empty.md") and "empty" in report["skipped"][0]["reason"]


def test_vector_search_is_cosine_and_an_older_index_takes_the_configured_search_width(cfg):
    import chromadb
    import numpy as np
    from chromadb.config import Settings

    from indexing.embed import embed_query_batch
    from indexing.retrieve import open_retriever
    from indexing.store import collection_name, open_collection

    build_index(cfg, progress=False)
    assert open_collection(cfg).configuration["hnsw"]["space"] == "cosine"
    # An index from before the setting carries Chroma's default width: opening it applies the configured one.
    client = chromadb.PersistentClient(path=str(cfg.kb_dir / "chroma"), settings=Settings(anonymized_telemetry=False))
    client.get_collection(collection_name(cfg)).modify(configuration={"hnsw": {"ef_search": 100}})
    assert open_collection(cfg).configuration["hnsw"]["ef_search"] == cfg.retrieve.search_ef != 100

    # Every chunk comes back in the order of its cosine to the query, as exact search would give it.
    retriever = open_retriever(cfg)
    stored = open_collection(cfg).get(include=["embeddings"])
    vectors = np.asarray(stored["embeddings"])
    query = embed_query_batch(retriever.embedder, ["How do I book a booth?"], bf16=False)[0]
    cosines = vectors @ query / np.linalg.norm(vectors, axis=1) / np.linalg.norm(query)
    exact = [stored["ids"][n] for n in np.argsort(-cosines)]
    assert [chunk_id for chunk_id, _ in retriever._vector_ranked(query, len(exact), None)] == exact
