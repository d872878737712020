"""The records that flow out of the indexer: a chunk, and a chunk found by a query."""
from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Chunk:
    id: str          # content hash: the same text from the same document gets the same id
    doc_id: str      # front-matter id, else the path relative to the corpus without suffix ("policies/travel")
    text: str
    title: str
    section: str     # heading path, e.g. "Corporate Card > Lost cards"
    source: str      # file path
    page: int | None = None

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Hit:
    chunk: Chunk
    score: float

    @property
    def citation(self) -> str:
        return f"{self.chunk.title} > {self.chunk.section}" if self.chunk.section else self.chunk.title
