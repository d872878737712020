"""Retrieve: vector search in Chroma, BM25 over the same chunks, or both fused by reciprocal rank.

    python -m indexing.retrieve "Who approves a purchase of 30,000 dollars?"

`open_retriever(cfg)` loads every chunk once (for BM25 and to turn ids into chunks) and keeps the
embedder; `search` then costs one query embedding, one Chroma query and one BM25 lookup. Hybrid
scores are reciprocal-rank-fusion sums: sum over lists of 1 / (rrf_k + rank).
"""
from __future__ import annotations

import functools
import math
import re
import sys
from typing import Any

import numpy as np

from assistant.core.config import Config
from assistant.core.records import Chunk, Hit

MODES = ("hybrid", "vector", "bm25")
_WORD = re.compile(r"[a-z0-9]+")
# Words of asking, not of the subject: rare in documents, so their idf would be high without this list.
_ASKING_WORDS = set("""what how when who whom whose which where why does do did done can could should would may might
must shall will am is are was were be been has have had i me my mine we us our you your it its there here get
much many""".split())


def bm25_tokens(chunk: Chunk) -> str:
    """What BM25 matches against: the heading path names the topic even when the text does not."""
    return f"{chunk.title}\n{chunk.section}\n{chunk.text}"


def matches(chunk: Chunk, where: dict[str, Any] | None) -> bool:
    """Metadata filter: {"doc_id": "x"} or {"doc_id": ["x", "y"]}; several keys must all match."""
    for key, wanted in (where or {}).items():
        value = getattr(chunk, key)
        if isinstance(wanted, (list, tuple, set)):
            if value not in wanted:
                return False
        elif value != wanted:
            return False
    return True


def _chroma_where(where: dict[str, Any] | None) -> dict | None:
    if not where:
        return None
    clauses = [{key: {"$in": list(v)} if isinstance(v, (list, tuple, set)) else v} for key, v in where.items()]
    return clauses[0] if len(clauses) == 1 else {"$and": clauses}


class Retriever:
    """Searches one knowledge base; built by `open_retriever`."""

    def __init__(self, cfg: Config, collection, chunks: list[Chunk]):
        import bm25s
        from llama_index.vector_stores.chroma import ChromaVectorStore

        from indexing.embed import load_cached_embedder

        self.cfg = cfg
        self.chunks = chunks
        self.by_id = {c.id: c for c in chunks}
        self.vector_store = ChromaVectorStore.from_collection(collection)
        self.embedder = load_cached_embedder(cfg)
        self._unit_cache: dict[str, tuple[list[str], np.ndarray, list[set[str]]]] = {}
        self.idf = word_idf([c.text for c in chunks])
        self.bm25 = bm25s.BM25()
        if chunks:
            self.bm25.index(bm25s.tokenize([bm25_tokens(c) for c in chunks], stopwords="en", show_progress=False),
                            show_progress=False)

    def search(self, query: str, top_k: int | None = None, mode: str | None = None,
               where: dict | None = None) -> list[Hit]:
        return self.search_many([query], top_k, mode, where)[0]

    def search_many(self, queries: list[str], top_k: int | None = None, mode: str | None = None,
                    where: dict | None = None, vectors: np.ndarray | None = None) -> list[list[Hit]]:
        """The top_k hits for each query; the query embeddings are computed in one batch (or passed in)."""
        from indexing.embed import embed_query_batch

        top_k = top_k or self.cfg.retrieve.top_k
        mode = mode or self.cfg.retrieve.retriever
        if mode not in MODES:
            raise ValueError(f"unknown retriever {mode!r}; pick one of {', '.join(MODES)} (--mode)")
        if not self.chunks or not queries:
            return [[] for _ in queries]
        # Fusion needs candidates beyond top_k: a chunk ranked 8th by both lists can beat one ranked 1st by one.
        depth = top_k if mode != "hybrid" else max(top_k * 5, 20)
        vector_lists = bm25_lists = [[] for _ in queries]
        if mode in ("vector", "hybrid"):
            if vectors is None:
                vectors = embed_query_batch(self.embedder, queries, bf16=self.cfg.index.embed_bf16)
            vector_lists = [self._vector_ranked(v, depth, where) for v in vectors]
        if mode in ("bm25", "hybrid"):
            bm25_lists = self._bm25_ranked(queries, depth, where)
        if mode == "vector":
            return [[Hit(self.by_id[i], s) for i, s in ranked[:top_k]] for ranked in vector_lists]
        if mode == "bm25":
            return [[Hit(self.by_id[i], s) for i, s in ranked[:top_k]] for ranked in bm25_lists]
        return [self._fuse(v, b, top_k) for v, b in zip(vector_lists, bm25_lists)]

    def passages_many(self, queries: list[str], top_k: int | None = None, sentences: int | None = None,
                      mode: str | None = None) -> list[list[Hit]]:
        """What goes into the prompt: for each query, the `sentences` units (indexing.sentences) of its top_k
        chunks that match it best, grouped under their chunk (one numbered block per chunk, blocks in order
        of their best unit, units best first). sentences=0 gives whole chunks.

        A unit's match is its embedding cosine to the query, plus `sentence_word_weight` times the share of
        the query's rare words it contains, minus `sentence_rank_penalty` per rank of its chunk: MiniLM
        alone often ranks a sentence on the right subject above the one naming the asked-for item."""
        from dataclasses import replace

        from indexing.embed import embed_query_batch

        sentences = self.cfg.retrieve.sentences if sentences is None else sentences
        if not sentences or not queries:
            return self.search_many(queries, top_k, mode)
        vectors = embed_query_batch(self.embedder, queries, bf16=self.cfg.index.embed_bf16)
        found = self.search_many(queries, top_k, mode, vectors=vectors)
        passages = []
        lexical, rank_penalty = self.cfg.retrieve.sentence_word_weight, self.cfg.retrieve.sentence_rank_penalty
        for query, hits, vector in zip(queries, found, vectors):
            weights = question_weights(query, self.idf)
            scored = []                          # (ranking score, chunk rank, cosine, text) per unit
            for rank, hit in enumerate(hits):
                for text, unit_vector, words in zip(*self._units(hit.chunk)):
                    cosine = float(unit_vector @ vector)
                    ranking = cosine + lexical * word_overlap(weights, words) - rank_penalty * rank
                    scored.append((ranking, rank, cosine, text))
            # neighbouring chunks overlap, so one sentence can come twice: keep its best-scored copy
            best, seen = [], set()
            for item in sorted(scored, key=lambda item: -item[0]):
                if item[3] not in seen and len(best) < sentences:
                    seen.add(item[3])
                    best.append(item)
            blocks = []
            for rank in sorted({r for _, r, _, _ in best}, key=lambda r: -max(s for s, rr, _, _ in best if rr == r)):
                # best sentence first: a small reader that copies the first line of a block then copies the best one
                picked = [(cosine, text) for _, rr, cosine, text in best if rr == rank]
                text = "\n".join(t for _, t in picked)
                # the score stays the embedding cosine, which the retrieval gate (gate_score) builds on
                blocks.append(Hit(replace(hits[rank].chunk, text=text), picked[0][0]))
            passages.append(blocks)
        return passages

    def _units(self, chunk: Chunk) -> tuple[list[str], np.ndarray, list[set[str]]]:
        """A chunk's units, their unit vectors and their content words, worked out once per process."""
        from indexing.embed import embed_texts
        from indexing.sentences import unit_texts

        if chunk.id not in self._unit_cache:
            texts = unit_texts(chunk) or [chunk.text.strip()]
            self._unit_cache[chunk.id] = (texts, embed_texts(self.embedder, texts, bf16=self.cfg.index.embed_bf16),
                                          [content_words(text) for text in texts])
        return self._unit_cache[chunk.id]

    def _vector_ranked(self, vector: np.ndarray, depth: int, where: dict | None) -> list[tuple[str, float]]:
        from llama_index.core.vector_stores import VectorStoreQuery

        query = VectorStoreQuery(query_embedding=vector.tolist(), similarity_top_k=min(depth, len(self.chunks)))
        chroma_where = _chroma_where(where)
        result = self.vector_store.query(query, **({"where": chroma_where} if chroma_where else {}))
        return [(i, float(s)) for i, s in zip(result.ids or [], result.similarities or []) if i in self.by_id]

    def _bm25_ranked(self, queries: list[str], depth: int, where: dict | None) -> list[list[tuple[str, float]]]:
        import bm25s

        mask = None
        if where:
            mask = np.array([matches(c, where) for c in self.chunks], dtype=np.float32)
        tokens = bm25s.tokenize(queries, stopwords="en", show_progress=False)
        k = min(depth, len(self.chunks))
        rows, scores = self.bm25.retrieve(tokens, k=k, show_progress=False, weight_mask=mask, n_threads=1)
        return [[(self.chunks[r].id, float(s)) for r, s in zip(row, score) if s > 0]
                for row, score in zip(rows, scores)]

    def _fuse(self, vector: list[tuple[str, float]], bm25: list[tuple[str, float]], top_k: int) -> list[Hit]:
        fused: dict[str, float] = {}
        for ranked in (vector, bm25):
            for rank, (chunk_id, _) in enumerate(ranked, start=1):
                fused[chunk_id] = fused.get(chunk_id, 0.0) + 1.0 / (self.cfg.retrieve.rrf_k + rank)
        best = sorted(fused.items(), key=lambda item: (-item[1], item[0]))[:top_k]
        return [Hit(self.by_id[i], score) for i, score in best]


@functools.cache
def _ignored_words() -> frozenset[str]:
    from bm25s.stopwords import STOPWORDS_EN

    return frozenset(STOPWORDS_EN) | _ASKING_WORDS


def content_words(text: str) -> set[str]:
    words = set(_WORD.findall(text.lower())) - _ignored_words()
    # "stands" matches "stand", "needs" "need": the plural or third-person s is the commonest mismatch
    return {w[:-1] if len(w) > 3 and w.endswith("s") and not w.endswith("ss") else w for w in words}


def word_idf(texts: list[str]) -> dict[str, float]:
    """Inverse document frequency of each word over the chunks: a rare word ("Deskpass") names the
    sentence a question is about far better than a common one ("policy")."""
    from collections import Counter

    counts = Counter(word for text in texts for word in content_words(text))
    return {word: math.log(1 + len(texts) / (1 + n)) for word, n in counts.items()}


def question_weights(question: str, idf: dict[str, float]) -> dict[str, float]:
    """The question's content words, each weighted by its idf; a word no chunk holds weighs the most."""
    unseen = max(idf.values(), default=1.0)
    return {word: idf.get(word, unseen) for word in content_words(question)}


def word_overlap(weights: dict[str, float], present: set[str]) -> float:
    """Share of the question's word weight that a sentence with these content words holds (0 to 1)."""
    total = sum(weights.values())
    return sum(weight for word, weight in weights.items() if word in present) / total if total else 0.0


def gate_score(question: str, hits: list[Hit] | None, idf: dict[str, float], word_weight: float) -> float:
    """How closely the context answers to the question, for hybrid's retrieval gate: the first block's
    best cosine, plus `word_weight` times the largest share of the question's rare-word weight that one
    context line holds. MiniLM gives a question on a neighbouring subject ("the 401(k) match", "goodwill
    impairment") a cosine as high as many that the documents answer; the words it names are what the
    context lacks (shipped held-out dev half, answerable against unanswerable: AUC 0.79 on the cosine
    alone, 0.87 with word_weight 0.5; handbook dev questions 0.67 and 0.88)."""
    if not hits:
        return 0.0
    weights = question_weights(question, idf)
    lines = [line for hit in hits for line in hit.chunk.text.split("\n")]
    return hits[0].score + word_weight * max(word_overlap(weights, content_words(line)) for line in lines)


def open_retriever(cfg: Config) -> Retriever:
    """A retriever over the index the config points at; IndexNotFound when there is none."""
    from indexing.store import load_chunks, open_collection

    return Retriever(cfg, open_collection(cfg), load_chunks(cfg))


if __name__ == "__main__":
    from assistant.core.config import load_config

    config = load_config()
    for hit in open_retriever(config).search(" ".join(sys.argv[1:]) or "corporate card limit"):
        print(f"{hit.score:.4f}  {hit.citation}  ({hit.chunk.doc_id})\n        {hit.chunk.text[:120]!r}")
