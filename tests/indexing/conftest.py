"""Fixtures for the indexer: a config on a private copy of the tiny corpus, and sample files of
every format (PDF by fpdf2, DOCX by python-docx, HTML, text) plus broken ones, written per test."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

TINY_CORPUS = Path(__file__).parent.parent / "fixtures" / "tiny_corpus"


def index_config(corpus: Path, workspace: Path, **overrides):
    """The real packaged embedder; everything written under `workspace`."""
    from assistant.core.config import load_config

    return load_config(overrides={"corpus": str(corpus), "workspace": str(workspace), **overrides})


@pytest.fixture()
def corpus_copy(tmp_path) -> Path:
    """A private copy of the tiny corpus, so a test may edit or delete files."""
    target = tmp_path / "corpus"
    shutil.copytree(TINY_CORPUS, target)
    return target


@pytest.fixture()
def cfg(tmp_path, corpus_copy):
    return index_config(corpus_copy, tmp_path / "ws")


@pytest.fixture(scope="module")
def built_cfg(tmp_path_factory):
    """One index of the tiny corpus shared by a module's read-only tests."""
    from indexing.store import build_index

    root = tmp_path_factory.mktemp("built")
    shutil.copytree(TINY_CORPUS, root / "corpus")
    config = index_config(root / "corpus", root / "ws")
    build_index(config, progress=False)
    return config


def write_pdf(path: Path, pages: list[str]) -> Path:
    from fpdf import FPDF

    pdf = FPDF()
    pdf.set_font("helvetica", size=11)
    for text in pages:
        pdf.add_page()
        pdf.multi_cell(0, 6, text)
    pdf.output(str(path))
    return path


def write_docx(path: Path) -> Path:
    import docx

    document = docx.Document()
    document.add_heading("Bench Grinder Safety", level=1)
    document.add_paragraph("Wear the face shield whenever the bench grinder spins; the tool rest gap stays under 3 mm.")
    document.add_heading("Wheel changes", level=2)
    document.add_paragraph("Only the shop lead Ossian Varga may change a grinding wheel, after a ring test.")
    document.save(str(path))
    return path


def write_html(path: Path) -> Path:
    path.write_text(
        "<html><head><title>Paint Booth Rules</title><script>var tracking = 'ignore me';</script></head><body>"
        "<h1>Paint Booth Rules</h1><p>The extractor fan must run for 10 minutes before spraying.</p>"
        "<h2>Booking</h2><p>Book the paint booth through Liesel Markham, at most 2 hours per member per week.</p>"
        "</body></html>", encoding="utf-8")
    return path


@pytest.fixture()
def every_format(tmp_path) -> Path:
    """One good file of each supported format."""
    folder = tmp_path / "formats"
    folder.mkdir()
    (folder / "front.md").write_text(
        "---\nid: lathe-rules\ntitle: Lathe Rules\n---\n\n# Lathe Rules\n\nIntro line.\n\n## Chuck keys\n\n"
        "Never leave the chuck key in the lathe chuck; the key goes back on its magnet.\n", encoding="utf-8")
    (folder / "notes.txt").write_text("The compressor drains its tank every Friday at closing time.\n", encoding="utf-8")
    write_pdf(folder / "manual.pdf", ["Page one explains the drill press depth stop.",
                                      "Page two says the drill press belt is tensioned every 6 months."])
    write_docx(folder / "grinder.docx")
    write_html(folder / "booth.html")
    return folder


@pytest.fixture()
def broken_files(tmp_path) -> Path:
    """One file for each kind of bad input; names say what is wrong."""
    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "empty.md").write_bytes(b"")
    (folder / "binary.txt").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)))
    (folder / "latin1.md").write_bytes("# Caf\xe9 rules\n\nThe caf\xe9 opens at 9.\n".encode("latin-1"))
    good_pdf = write_pdf(tmp_path / "whole.pdf", ["A page about band saw blades and their tension."])
    data = good_pdf.read_bytes()
    (folder / "truncated.pdf").write_bytes(data[: len(data) // 2])
    (folder / "corrupt.docx").write_bytes(b"PK\x03\x04 this is not really a zip archive")
    (folder / "huge.md").write_text("# Big\n\n" + "word " * 300_000, encoding="utf-8")   # ~1.5 MB
    return folder
