"""Search the knowledge base, or score the retrievers on the held-out questions.

    assistant search "Who approves a purchase of 30,000 dollars?"
    assistant search "per diem Berlin" --mode bm25 --top-k 8 --json
    assistant search --quality                  # hit-rate@k and MRR per retriever on the held-out set
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

HELP = "Search the knowledge base (hybrid, vector or BM25); --quality scores each retriever."


def add_arguments(parser):
    parser.add_argument("query", nargs="?", help="What to look for.")
    parser.add_argument("--top-k", dest="retrieve.top_k", type=int, help="How many chunks to return.")
    parser.add_argument("--mode", dest="retrieve.retriever", choices=("hybrid", "vector", "bm25"),
                        help="Retriever (default: hybrid).")
    parser.add_argument("--doc", help="Only chunks of this document id.")
    parser.add_argument("--questions", dest="questions", type=Path,
                        help="Held-out questions for --quality (JSONL); default: the corpus's own, else generated.")
    parser.add_argument("--quality", action="store_true",
                        help="Instead of searching: hit-rate@1/3/5 and MRR of each retriever on the held-out questions.")


def run(args, cfg):
    if args.quality:
        return _quality(args, cfg)
    if not args.query:
        print("assistant search: give a query, e.g. assistant search \"corporate card limit\"", file=sys.stderr)
        return 2
    from indexing.retrieve import open_retriever

    hits = open_retriever(cfg).search(args.query, where={"doc_id": args.doc} if args.doc else None)
    rows = [{"id": h.chunk.id, "text": h.chunk.text, "score": round(h.score, 4), "source": h.chunk.source,
             "title": h.chunk.title, "section": h.chunk.section, "doc_id": h.chunk.doc_id, "page": h.chunk.page}
            for h in hits]
    if args.json:
        # The shape: a JSON list of hits, not an object.
        print(json.dumps(rows))
        return 0
    lines = []
    for rank, hit in enumerate(hits, start=1):
        where = hit.chunk.source + (f" p.{hit.chunk.page}" if hit.chunk.page else "")
        lines.append(f"{rank}. [{hit.score:.4f}] {hit.citation}  ({where})\n   {' '.join(hit.chunk.text.split())[:200]}")
    print("\n".join(lines) or "(no hits)")
    return 0


def _quality(args, cfg):
    from assistant.cli import emit
    from eval.evaluate import choose_questions
    from eval.retrieval_quality import quality_table, score_retrievers

    chosen = choose_questions(cfg, None)
    scores = score_retrievers(cfg, chosen.questions)
    emit(args, scores, f"Retrieval quality on {chosen.path} (questions that name source_ids):\n{quality_table(scores)}")
    return 0
