"""Indexing benchmark: pipeline throughput against the raw encoder, and hybrid query latency by store size.

    assistant bench indexing            # full: latency at 2k, 20k and 200k chunks (a few minutes)
    assistant bench indexing --quick    # 2k and 20k only
    python -m eval.bench_indexing --quick

Throughput: `build_index` from scratch on the configured corpus (read, chunk, embed, store) in chunks/s,
beside `SentenceTransformer.encode` on exactly the same chunk texts, batch size and precision in the
same process: the encoder is the ceiling, the target is >= 85% of it.
Latency: the store is filled with synthetic chunks (corpus words in random order; vectors are the real
chunk vectors plus noise, so they cluster like real ones), then real held-out questions are searched
one at a time through `Retriever.search`, query embedding included.
"""
from __future__ import annotations

import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from assistant.core.config import Config

FULL_SIZES = (2_000, 20_000, 200_000)
QUICK_SIZES = (2_000, 20_000)
FALLBACK_QUERIES = ["Who approves a purchase of 30,000 dollars?", "How many days do I have to submit an expense report?",
                    "What is the per diem in Berlin?", "When is the payroll cut-off?"]


def run_bench(cfg: Config, quick: bool) -> list[dict]:
    rows = _throughput_rows(cfg)
    for size in QUICK_SIZES if quick else FULL_SIZES:
        rows += _latency_rows(cfg, size, queries=20 if quick else 50)
    return rows


def _row(measure: str, chunks: int, chunks_per_s=None, p50_ms=None, p95_ms=None, note: str = "") -> dict:
    return {"measure": measure, "chunks": chunks, "chunks_per_s": chunks_per_s, "p50_ms": p50_ms,
            "p95_ms": p95_ms, "note": note}


def _throughput_rows(cfg: Config) -> list[dict]:
    from indexing.embed import bf16_autocast, load_cached_embedder
    from indexing.store import build_index, embedding_text, load_chunks

    model = load_cached_embedder(cfg)   # loaded once, outside both timings
    with tempfile.TemporaryDirectory(prefix="bench-index-") as scratch:
        run_cfg = cfg.model_copy(update={"workspace": Path(scratch), "chroma_url": None})
        start = time.perf_counter()
        report = build_index(run_cfg, progress=False)
        pipeline_s = time.perf_counter() - start
        texts = [embedding_text(c) for c in load_chunks(run_cfg)]
    with bf16_autocast(model, cfg.index.embed_bf16):
        start = time.perf_counter()
        model.encode(texts, batch_size=cfg.index.embed_batch_size, normalize_embeddings=True, show_progress_bar=False)
        raw_s = time.perf_counter() - start
    pipeline, raw = report.chunks_added / pipeline_s, len(texts) / raw_s
    from assistant.core.models import precision_name, use_bf16

    precision = precision_name(use_bf16(cfg.index.embed_bf16, "embedding"))
    return [
        _row(f"raw SentenceTransformer.encode ({precision})", len(texts), round(raw, 1), note="ceiling"),
        _row("build_index: read+chunk+embed+store", report.chunks_added, round(pipeline, 1),
             note=f"{100 * pipeline / raw:.0f}% of raw encode ({report.files} files, {pipeline_s:.1f} s)"),
    ]


def _latency_rows(cfg: Config, size: int, queries: int) -> list[dict]:
    from indexing.retrieve import Retriever
    from indexing.store import load_chunks, open_collection

    with tempfile.TemporaryDirectory(prefix="bench-latency-") as scratch:
        fill_cfg = cfg.model_copy(update={"workspace": Path(scratch), "chroma_url": None})
        start = time.perf_counter()
        _fill_store(cfg, fill_cfg, size)
        fill_s = time.perf_counter() - start
        start = time.perf_counter()
        retriever = Retriever(fill_cfg, open_collection(fill_cfg), load_chunks(fill_cfg))
        open_s = time.perf_counter() - start
        questions = _questions(cfg, queries)
        rows = []
        for mode in ("hybrid", "vector", "bm25"):
            retriever.search(questions[0], mode=mode)   # warm-up: first-call allocations
            timings = []
            for question in questions:
                began = time.perf_counter()
                retriever.search(question, mode=mode)
                timings.append(1000 * (time.perf_counter() - began))
            p95 = statistics.quantiles(timings, n=20)[-1]
            note = f"fill {fill_s:.0f} s, open {open_s:.1f} s" if mode == "hybrid" else ""
            rows.append(_row(f"query latency, {mode}", size, p50_ms=round(statistics.median(timings), 1),
                             p95_ms=round(p95, 1), note=note))
    return rows


def _fill_store(cfg: Config, fill_cfg: Config, size: int) -> None:
    """`size` synthetic chunks written through the same llama-index Chroma store the indexer uses."""
    from llama_index.vector_stores.chroma import ChromaVectorStore

    from assistant.core.records import Chunk
    from indexing.embed import embed_texts, load_cached_embedder
    from indexing.ingest import find_documents, read_document
    from indexing.store import chunk_to_node, open_collection

    rng = random.Random(cfg.seed)
    words = [w for path in find_documents([cfg.corpus])[:20]
             for _, text in read_document(path, cfg.index.max_file_mb).pages for w in text.split()]
    seeds = [" ".join(rng.choices(words, k=60)) for _ in range(64)]
    anchors = embed_texts(load_cached_embedder(cfg), seeds, bf16=cfg.index.embed_bf16)
    noise = np.random.default_rng(cfg.seed)
    store = ChromaVectorStore.from_collection(open_collection(fill_cfg, create=True))
    for start in range(0, size, 5000):
        count = min(5000, size - start)
        vectors = anchors[noise.integers(0, len(anchors), count)] + noise.normal(0, 0.05, (count, anchors.shape[1]))
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        nodes = []
        for i, vector in enumerate(vectors.astype(np.float32), start=start):
            text = " ".join(rng.choices(words, k=60))
            chunk = Chunk(id=f"synthetic-{i:07d}", doc_id=f"doc-{i // 20:05d}", text=text, title=f"Synthetic {i // 20}",
                          section=f"Part {i % 20}", source=f"/synthetic/doc-{i // 20:05d}.md")
            nodes.append(chunk_to_node(chunk, i % 20, vector))
        store.add(nodes)


def _questions(cfg: Config, count: int) -> list[str]:
    path = cfg.questions_path
    if path is None:
        return (FALLBACK_QUERIES * count)[:count]
    from eval.questions import load_questions

    return [q.question for q in load_questions(path)][:count]


if __name__ == "__main__":
    from assistant.core.config import load_config
    from eval.report import format_table

    print(format_table(run_bench(load_config(), quick="--quick" in sys.argv)))
