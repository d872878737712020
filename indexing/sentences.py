"""Sentences: a chunk read as the self-contained units a question can be answered from.

    python -m indexing.sentences corpora/finance/docs/travel-booking.md   # prints the units of one file

A unit is a sentence of a paragraph, a list item (titled by its heading when it is a fragment), or a
table row put into words. The retriever puts the units that best match a question into the prompt
(`Retriever.passages_many`) instead of whole chunks: on the shipped held-out questions the best 6
units of the top 6 chunks hold 65% of the key facts in ~750 characters, where 3 whole chunks hold 79%
in ~1,800, and a 270M reader finds the right sentence among 6 far more often than among 20.
The synthesiser reads the same units (`training.content_points`), so what the model is taught to
quote is exactly what it is later shown.
"""
from __future__ import annotations

import re
import sys

from assistant.core.records import Chunk

_ABBREVIATIONS = re.compile(r"\b(e\.g|i\.e|etc|Inc|Ltd|No|vs|approx|U\.S)\.")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"(])")
_PRONOUN_START = re.compile(r"^(It|This|That|These|Those|They|He|She|Such)\b")


def clean_markdown(text: str) -> str:
    # Link targets are already gone: indexing.ingest.strip_link_targets drops them before chunking.
    text = text.replace("**", "").replace("__", "").replace("`", "")
    return re.sub(r"\s+", " ", text).strip()


def split_sentences(text: str) -> list[str]:
    protected = _ABBREVIATIONS.sub(lambda m: m.group(0).replace(".", "\0"), text)
    sentences = [s.replace("\0", ".").strip() for s in _SENTENCE_END.split(protected)]
    # A sentence that opens with "It" or "This" leans on the one before it: keep them together.
    joined: list[str] = []
    for sentence in sentences:
        if joined and _PRONOUN_START.match(sentence):
            joined[-1] = f"{joined[-1]} {sentence}"
        elif sentence:
            joined.append(sentence)
    return joined


def markdown_units(chunk: Chunk) -> list[tuple[str, str, tuple[list[str], list[str]] | None]]:
    """(heading, text, (table header, row cells) or None) for each sentence, list item and table row."""
    heading = chunk.section.split(" > ")[-1] if chunk.section else chunk.title
    units: list[tuple[str, str, tuple[list[str], list[str]] | None]] = []
    header: list[str] | None = None
    paragraph: list[str] = []

    def flush_paragraph() -> None:
        if paragraph:
            units.extend((heading, s, None) for s in split_sentences(clean_markdown(" ".join(paragraph))))
            paragraph.clear()

    lines = chunk.text.splitlines()
    for number, line in enumerate(lines):
        stripped = line.strip()
        if stripped.startswith("|"):
            flush_paragraph()
            cells = [clean_markdown(c) for c in stripped.strip("|").split("|")]
            if _is_separator(stripped):
                continue
            following = lines[number + 1].strip() if number + 1 < len(lines) else ""
            if _is_separator(following):
                header = cells
                continue
            # A chunk can start inside a table, below its header: its rows are then told without column names,
            # rather than with the first row's cells read as names.
            names = header if header is not None and len(header) == len(cells) else [""] * len(cells)
            units.append((heading, render_table_row(names, cells, chunk.title, heading), (names, cells)))
            continue
        header = None
        if not stripped or stripped.startswith("#"):
            flush_paragraph()
            if stripped.startswith("#"):
                heading = clean_markdown(stripped.lstrip("#"))
            continue
        item = re.match(r"^(?:[-*+]|\d+[.)])\s+(.*)", stripped)
        if item:
            flush_paragraph()
            text = clean_markdown(item.group(1))
            # A fragment ("Laundry on trips shorter than 5 nights") needs its heading to stand alone.
            if not text.endswith((".", "!", "?", ";")) or len(text.split()) < 5:
                text = f"{heading}: {text.rstrip(';')}."
            units.append((heading, text, None))   # a list item is one unit: its sentences lean on each other
        else:
            paragraph.append(stripped)
    flush_paragraph()
    return units


def _is_separator(line: str) -> bool:
    cells = [c.strip() for c in line.strip().strip("|").split("|")]
    return line.startswith("|") and any(cells) and all(re.fullmatch(r":?-{2,}:?", c) for c in cells if c)


def render_table_row(header: list[str], cells: list[str], title: str, heading: str) -> str:
    """A table row in words, titled so it stands alone:
    'Booking Business Travel, hotels: for Stuttgart, the cap per night is €165.'"""
    where = title if heading == title else f"{title}, {heading[:1].lower() + heading[1:]}"
    label, values = cells[0], [(h, c) for h, c in zip(header[1:], cells[1:]) if c]
    if not values:
        return f"{where}: {label}."
    parts = [f"the {h[:1].lower() + h[1:]} is {v}" if h else v for h, v in values]
    return f"{where}: for {label}, " + ", ".join(parts) + "."




def unit_texts(chunk: Chunk) -> list[str]:
    """The unit texts of a chunk, in reading order, each at least four words long. A line that only
    introduces a list ("When you host customers for a meal:") states nothing: its items (titled by
    their heading) do, so it is left out."""
    return [text for _, text, _ in markdown_units(chunk) if len(text.split()) >= 4 and not text.endswith(":")]


if __name__ == "__main__":
    from pathlib import Path

    from assistant.core.config import load_config
    from indexing.chunk import chunk_document
    from indexing.embed import load_tokenize
    from indexing.ingest import read_document

    config = load_config()
    document = read_document(Path(sys.argv[1]), config.index.max_file_mb)
    for piece in chunk_document(document, chunk_size=config.index.chunk_size, chunk_overlap=config.index.chunk_overlap,
                                tokenize=load_tokenize(config)):
        print(f"--- {piece.title} > {piece.section}")
        for text in unit_texts(piece):
            print(f"  - {text}")
