"""Chunk: split a read document into chunks that respect its headings, with content-hash ids.

    python -m indexing.chunk corpora/finance/docs/corporate-card.md    # prints the chunks of one file

llama-index's MarkdownNodeParser cuts at headings (HTML headings arrive here as Markdown ones), then
its SentenceSplitter cuts long sections to `index.chunk_size` tokens of the embedding model's own
tokenizer, with `index.chunk_overlap` tokens shared between neighbours. A chunk's section is its
heading path ("Card tiers and limits > Cash withdrawals"); the document's top heading is left out
when it only repeats the title.
"""
from __future__ import annotations

import hashlib
import re
import sys
from collections.abc import Callable
from pathlib import Path

from assistant.core.records import Chunk
from indexing.ingest import SourceDocument

_HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.+?)\s*#*\s*$")
_PATH_SEPARATOR = "\n"   # never inside a heading, unlike "/" or ">"


def chunk_id(doc_id: str, section: str, text: str, page: int | None = None) -> str:
    """The same text under the same heading of the same document always gets the same id, so an
    unchanged corpus re-indexes to the same ids and nothing is embedded twice."""
    key = "\0".join([doc_id, section, text] + ([str(page)] if page is not None else []))
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:32]


def chunk_document(document: SourceDocument, *, chunk_size: int, chunk_overlap: int,
                   tokenize: Callable[[str], list]) -> list[Chunk]:
    """All chunks of one document, in reading order, without duplicate ids."""
    from llama_index.core import Document
    from llama_index.core.node_parser import MarkdownNodeParser, SentenceSplitter

    by_heading = MarkdownNodeParser(header_path_separator=_PATH_SEPARATOR, include_prev_next_rel=False)
    by_size = SentenceSplitter(chunk_size=chunk_size, chunk_overlap=min(chunk_overlap, chunk_size // 2),
                               tokenizer=tokenize, include_prev_next_rel=False)
    chunks: dict[str, Chunk] = {}
    for page, text in document.pages:
        if document.format == "pdf":
            sections = [("", text)]
        else:
            nodes = by_heading.get_nodes_from_documents([Document(text=text)])
            sections = [(_section_path(node.metadata.get("header_path", ""), node.text, document.title), node.text)
                        for node in nodes]
        for section, section_text in sections:
            if _only_headings(section_text):
                continue
            for piece in by_size.split_text(section_text):
                piece = piece.strip()
                if not piece:
                    continue
                cid = chunk_id(document.doc_id, section, piece, page)
                chunks.setdefault(cid, Chunk(id=cid, doc_id=document.doc_id, text=piece, title=document.title,
                                             section=section, source=document.source, page=page))
    return list(chunks.values())


def _section_path(header_path: str, text: str, title: str) -> str:
    """Parents from the parser's header_path, plus this section's own heading (its first line)."""
    parts = [p for p in header_path.split(_PATH_SEPARATOR) if p.strip()]
    first_line = text.split("\n", 1)[0]
    match = _HEADING.match(first_line)
    if match:
        parts.append(match.group(2).strip())
    if parts and parts[0].strip().lower() == title.strip().lower():
        parts = parts[1:]
    return " > ".join(parts)


def _only_headings(text: str) -> bool:
    return all(not line.strip() or _HEADING.match(line) for line in text.splitlines())


if __name__ == "__main__":
    from assistant.core.config import load_config
    from indexing.embed import load_tokenize
    from indexing.ingest import read_document

    cfg = load_config()
    tokenize = load_tokenize(cfg)
    for arg in sys.argv[1:]:
        doc = read_document(Path(arg), cfg.index.max_file_mb)
        for chunk in chunk_document(doc, chunk_size=cfg.index.chunk_size, chunk_overlap=cfg.index.chunk_overlap,
                                    tokenize=tokenize):
            print(f"--- {chunk.id}  [{chunk.section}]  {len(tokenize(chunk.text))} tokens\n{chunk.text[:300]}")
