"""Chunks follow headings, stay within the size limit, and get ids from their content."""
from __future__ import annotations

from indexing.chunk import chunk_document, chunk_id
from indexing.ingest import SourceDocument


def _tokenize():
    from assistant.core.config import load_config
    from indexing.embed import load_tokenize

    return load_tokenize(load_config())


MARKDOWN = """# Tool Loan Rules

Members borrow tools for home use.

## Late returns

A late fee of $1 per day is charged.

### Lost tools

A lost tool costs its replacement price.

## Empty heading

## Who can borrow

Members of at least 30 days.
"""


def _doc(text: str = MARKDOWN, fmt: str = "markdown", pages=None) -> SourceDocument:
    return SourceDocument("tool-loans", "Tool Loan Rules", "/x/tool-loans.md", fmt, pages or [(None, text)])


def test_sections_are_heading_paths_without_the_title():
    chunks = chunk_document(_doc(), chunk_size=256, chunk_overlap=16, tokenize=_tokenize())
    assert [c.section for c in chunks] == ["", "Late returns", "Late returns > Lost tools", "Who can borrow"]
    assert "replacement price" in chunks[2].text


def test_ids_depend_on_content_only():
    first = chunk_document(_doc(), chunk_size=256, chunk_overlap=16, tokenize=_tokenize())
    again = chunk_document(_doc(), chunk_size=256, chunk_overlap=16, tokenize=_tokenize())
    assert [c.id for c in first] == [c.id for c in again]
    edited = chunk_document(_doc(MARKDOWN.replace("$1 per day", "$2 per day")), chunk_size=256, chunk_overlap=16,
                            tokenize=_tokenize())
    changed = {c.id for c in first} ^ {c.id for c in edited}
    assert len(changed) == 2   # the one edited chunk, old and new
    assert chunk_id("a", "s", "t") != chunk_id("b", "s", "t") != chunk_id("a", "s2", "t")


def test_long_sections_are_split_within_the_token_limit():
    tokenize = _tokenize()
    long_text = "## Rules\n\n" + " ".join(f"Rule {i} says members sign the loan card before leaving." for i in range(80))
    chunks = chunk_document(_doc(long_text), chunk_size=64, chunk_overlap=8, tokenize=tokenize)
    assert len(chunks) > 5
    assert all(len(tokenize(c.text)) <= 64 for c in chunks)
    assert {c.section for c in chunks} == {"Rules"}


def test_pdf_pages_keep_their_numbers():
    doc = _doc(fmt="pdf", pages=[(1, "First page text."), (2, "Second page text.")])
    chunks = chunk_document(doc, chunk_size=64, chunk_overlap=8, tokenize=_tokenize())
    assert [(c.page, c.text) for c in chunks] == [(1, "First page text."), (2, "Second page text.")]
