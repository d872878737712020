"""Retrieval quality: hit-rate@k and MRR of each retriever on held-out questions' source documents.

    python -m eval.retrieval_quality corpora/finance/eval/heldout.jsonl    # same as `assistant search --quality`

A question counts when it names `source_ids` (unanswerable ones name none). A hit at k means one of
the first k chunks comes from one of those documents; MRR is the mean of 1/rank of the first such
chunk within the first 10 (0 when none). The default retriever should be the one that wins here.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from assistant.core.config import Config

MRR_DEPTH = 10


def score_ranking(doc_ids: list[str], wanted: set[str], ks: tuple[int, ...]) -> dict[str, float]:
    """One question: hit@k for each k, and reciprocal rank of the first wanted document."""
    first = next((rank for rank, doc_id in enumerate(doc_ids, start=1) if doc_id in wanted), None)
    scores = {f"hit_rate@{k}": float(first is not None and first <= k) for k in ks}
    scores["mrr"] = 1.0 / first if first is not None and first <= MRR_DEPTH else 0.0
    return scores


def score_retrievers(cfg: Config, questions: list[dict], ks: tuple[int, ...] = (1, 3, 5),
                     modes: tuple[str, ...] = ("vector", "bm25", "hybrid")) -> dict[str, dict[str, Any]]:
    """{mode: {"hit_rate@k": ..., "mrr": ..., "n": ...}} over the questions that name source_ids."""
    from indexing.retrieve import open_retriever

    answerable = [q for q in (_as_dict(q) for q in questions) if q.get("source_ids")]
    retriever = open_retriever(cfg)
    depth = max(*ks, MRR_DEPTH)
    results: dict[str, dict[str, Any]] = {}
    for mode in modes:
        rankings = retriever.search_many([q["question"] for q in answerable], top_k=depth, mode=mode)
        per_question = [score_ranking([h.chunk.doc_id for h in hits], set(q["source_ids"]), ks)
                        for q, hits in zip(answerable, rankings)]
        totals = {name: round(sum(s[name] for s in per_question) / max(len(per_question), 1), 4)
                  for name in [*(f"hit_rate@{k}" for k in ks), "mrr"]}
        results[mode] = {**totals, "n": len(per_question)}
    return results


def quality_table(scores: dict[str, dict[str, Any]]) -> str:
    lines = [f"{'retriever':<10} {'n':>4} {'hit@1':>7} {'hit@3':>7} {'hit@5':>7} {'MRR':>7}"]
    lines += [f"{mode:<10} {s['n']:>4} {s['hit_rate@1']:>7.3f} {s['hit_rate@3']:>7.3f} "
              f"{s['hit_rate@5']:>7.3f} {s['mrr']:>7.3f}" for mode, s in scores.items()]
    return "\n".join(lines)


def _as_dict(question) -> dict:
    return question if isinstance(question, dict) else question.to_dict()


if __name__ == "__main__":
    from assistant.core.config import load_config
    from eval.questions import load_questions

    config = load_config()
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else config.questions_path
    print(quality_table(score_retrievers(config, load_questions(path))))
