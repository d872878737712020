"""Every format is read with its title, sections and pages; every kind of bad file is refused with a reason."""
from __future__ import annotations

import pytest

from indexing.ingest import UnreadableFile, find_documents, read_document


def test_find_documents_lists_supported_files_only(every_format):
    (every_format / "picture.png").write_bytes(b"\x89PNG")
    (every_format / ".hidden.md").write_text("# hidden", encoding="utf-8")
    names = [p.name for p in find_documents([every_format])]
    assert names == sorted(["front.md", "notes.txt", "manual.pdf", "grinder.docx", "booth.html"])


def test_missing_path_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        find_documents([tmp_path / "nowhere"])


def test_markdown_front_matter_gives_id_and_title_and_is_stripped(every_format):
    doc = read_document(every_format / "front.md", max_file_mb=20)
    assert (doc.doc_id, doc.title, doc.format) == ("lathe-rules", "Lathe Rules", "markdown")
    assert "title:" not in doc.pages[0][1] and "chuck key" in doc.pages[0][1]


def test_text_file_id_is_the_stem(every_format):
    doc = read_document(every_format / "notes.txt", max_file_mb=20)
    assert doc.doc_id == "notes" and "compressor" in doc.pages[0][1]


def test_pdf_keeps_page_numbers(every_format):
    doc = read_document(every_format / "manual.pdf", max_file_mb=20)
    assert [page for page, _ in doc.pages] == [1, 2]
    assert "belt is tensioned" in doc.pages[1][1]


def test_docx_text_is_read(every_format):
    doc = read_document(every_format / "grinder.docx", max_file_mb=20)
    assert "face shield" in doc.pages[0][1] and "ring test" in doc.pages[0][1]


def test_html_headings_become_markdown_and_scripts_are_dropped(every_format):
    doc = read_document(every_format / "booth.html", max_file_mb=20)
    text = doc.pages[0][1]
    assert doc.title == "Paint Booth Rules"
    assert "## Booking" in text and "Liesel Markham" in text
    assert "tracking" not in text


@pytest.mark.parametrize(("name", "reason"), [
    ("empty.md", "empty file"),
    ("binary.txt", "binary data"),
    ("latin1.md", "not UTF-8"),
    ("truncated.pdf", "truncated PDF"),
    ("corrupt.docx", "not a valid DOCX"),
])
def test_bad_file_is_refused_with_a_reason(broken_files, name, reason):
    with pytest.raises(UnreadableFile, match=reason):
        read_document(broken_files / name, max_file_mb=20)


def test_oversize_file_names_the_limit_and_the_setting(broken_files):
    with pytest.raises(UnreadableFile, match=r"over the 1 MB limit.*max_file_mb"):
        read_document(broken_files / "huge.md", max_file_mb=1)


def test_markdown_links_keep_their_words_and_lose_their_targets(tmp_path):
    doc = tmp_path / "leave.md"
    doc.write_text("# Leave\n\nSee [Paid Leave Oregon](https://paidleave.example.gov/apply.html/#what) and "
                   "![the poster](img/poster(1).png \"Poster\") for details.\n", encoding="utf-8")
    text = read_document(doc, 1.0).pages[0][1]
    assert "See Paid Leave Oregon and the poster for details." in text
    assert "http" not in text and "png" not in text


def test_wide_tables_become_one_section_per_column_and_narrow_tables_stay(tmp_path):
    long = "Works through hard problems alone and explains the trade-offs to the team. " * 5
    wide = ("| Category | Junior (L1) | Senior (L3) |\n| --- | --- | --- |\n| **Skill** | | |\n"
            f"| *Scope* | Routine tickets. | {long} |\n| *Judgment* | | Knows when to ask. |\n")
    narrow = "| Segment | Class |\n|---|---|\n| Up to 6 hours | Economy |\n"
    doc = tmp_path / "titles.md"
    doc.write_text(f"# Titles\n\n## Expectations\n\n{wide}\nAfter the table.\n\n{narrow}", encoding="utf-8")
    text = read_document(doc, 1.0).pages[0][1]
    junior, senior = text.index("### Junior (L1)"), text.index("### Senior (L3)")
    assert junior < text.index("- Skill, Scope: Routine tickets.") < senior
    assert senior < text.index(f"- Skill, Scope: {long.strip()}") < text.index("- Skill, Judgment: Knows when to ask.")
    assert text.count("Judgment") == 1                 # an empty cell writes no line
    assert "| --- |" not in text and "After the table." in text
    assert narrow.strip() in text                      # short rows fit a chunk with their header: kept as they are
