"""Uploads through the Knowledge tab: no upload overwrites another, any script's letters are kept,
every upload that does not reach the index is named with the reason, and sizes are counted the way
the indexer counts them."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from assistant.app import UPLOAD_TYPES, add_documents, safe_upload_name, store_uploads, upload_folder, upload_limit_bytes
from indexing.store import load_chunks


def _upload(tmp_path: Path, folder: str, name: str, text: str | bytes) -> str:
    """A file the way Gradio hands one over: its own temp folder, the user's base name."""
    path = tmp_path / "gradio" / folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return str(path)


@pytest.mark.guards("no_loss")
def test_same_named_uploads_are_all_kept_and_indexed(tmp_path, cfg):
    uploads = [_upload(tmp_path, "t1", "report.md", "# Report\n\nThe north depot opens at 7.\n"),
               _upload(tmp_path, "t2", "report.md", "# Report\n\nThe south depot opens at 9.\n"),
               _upload(tmp_path, "t3", "a b.md", "# A\n\nForm A-1 is blue.\n"),
               _upload(tmp_path, "t4", "a_b.md", "# A\n\nForm A-2 is green.\n"),
               _upload(tmp_path, "t5", "отчёт.md", "# Отчёт\n\nСклад открыт с 8 утра.\n")]
    outcome = add_documents(SimpleNamespace(cfg=cfg, reload_knowledge=lambda: None), uploads)
    kept = sorted(p.name for p in upload_folder(cfg).iterdir() if not p.name.startswith("."))
    assert kept == sorted(["report.md", "report-2.md", "a_b.md", "a_b-2.md", "отчёт.md"])
    assert outcome.startswith("Stored 5 of 5 file(s)") and "stored as report-2.md" in outcome
    texts = " ".join(c.text for c in load_chunks(cfg))
    for fact in ("north depot", "south depot", "A-1 is blue", "A-2 is green", "Склад открыт"):
        assert fact in texts


@pytest.mark.guards("no_loss")
def test_the_same_upload_twice_is_stored_once(tmp_path, cfg):
    first = _upload(tmp_path, "t1", "rules.md", "# Rules\n\nBadges are shown at the gate.\n")
    again = _upload(tmp_path, "t2", "rules.md", "# Rules\n\nBadges are shown at the gate.\n")
    stored, notes = store_uploads(cfg, [first, again])
    assert [p.name for p in stored] == ["rules.md"] and not notes
    stored, _ = store_uploads(cfg, [again])
    assert [p.name for p in upload_folder(cfg).iterdir() if not p.name.startswith(".")] == ["rules.md"]


@pytest.mark.guards("clear_error")
def test_an_upload_the_indexer_cannot_read_is_reported_and_not_kept(tmp_path, cfg):
    uploads = [_upload(tmp_path, "t1", "scan.pdf", b"%PDF-1.4\n1 0 obj <<>> endobj\n%%EOF"),
               _upload(tmp_path, "t2", "notes.md", "# Notes\n\nThe loading bay closes at 5.\n"),
               _upload(tmp_path, "t3", "tool.exe", b"MZ")]
    outcome = add_documents(SimpleNamespace(cfg=cfg, reload_knowledge=lambda: None), uploads)
    assert outcome.startswith("Stored 1 of 3 file(s)")
    assert "- scan.pdf: " in outcome and "re-export it - not added" in outcome
    assert "tool.exe: not a supported type" in outcome
    assert [p.name for p in upload_folder(cfg).iterdir() if not p.name.startswith(".")] == ["notes.md"]


@pytest.mark.guards("clear_error")
def test_upload_and_indexer_limits_agree_in_megabytes(tmp_path, cfg):
    cfg = cfg.model_copy(update={"index": cfg.index.model_copy(update={"max_file_mb": 1.0})})
    assert upload_limit_bytes(cfg) == 1_000_000
    just_over = _upload(tmp_path, "t1", "big.md", b"# Big\n\n" + b"a" * 1_000_000)   # passed as under 1 MiB
    at_limit = _upload(tmp_path, "t2", "fits.md", b"# Fits\n\n" + b"a" * (1_000_000 - 8))
    stored, problems = store_uploads(cfg, [just_over, at_limit])
    assert [p.name for p in stored] == ["fits.md"]
    assert problems == ["big.md: 1,000,007 bytes is over the 1 MB limit (1,000,000 bytes; index.max_file_mb) - skipped"]


@pytest.mark.guards("works")
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(max_size=300))
def test_any_name_becomes_a_plain_supported_name_or_is_refused(name):
    safe = safe_upload_name(name)
    if safe is None:
        return
    assert "/" not in safe and "\\" not in safe and not safe.startswith(".")
    assert Path(safe).suffix.lower() in UPLOAD_TYPES and len(safe.encode()) <= 200
    assert safe == safe_upload_name(safe)


@pytest.mark.guards("works")
@pytest.mark.parametrize(("given_name", "stored"), [
    ("отчёт.md", "отчёт.md"), ("報告 2026.txt", "報告_2026.txt"), ("../../etc/cron.d/evil.md", "evil.md"),
    ("C:\\Users\\ana\\notes.DOCX", "notes.DOCX"), ("e\u0301te\u0301.md", "été.md"), ("x" * 400 + ".pdf", "x" * 196 + ".pdf"),
])
def test_names_in_any_script_are_kept(given_name, stored):
    assert safe_upload_name(given_name) == stored
