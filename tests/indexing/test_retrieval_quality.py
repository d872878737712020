"""Hit-rate@k and MRR are computed from the rank of the first chunk of a named source document."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from eval.retrieval_quality import score_ranking, score_retrievers

TINY_QUESTIONS = Path(__file__).parent.parent / "fixtures" / "tiny_questions.jsonl"


def test_score_ranking_counts_the_first_right_document():
    scores = score_ranking(["a", "b", "c", "d"], {"c", "d"}, ks=(1, 3, 5))
    assert scores == {"hit_rate@1": 0.0, "hit_rate@3": 1.0, "hit_rate@5": 1.0, "mrr": pytest.approx(1 / 3)}
    assert score_ranking(["a", "b"], {"z"}, ks=(1,)) == {"hit_rate@1": 0.0, "mrr": 0.0}


def test_score_retrievers_on_the_tiny_questions(built_cfg):
    questions = [json.loads(line) for line in TINY_QUESTIONS.read_text(encoding="utf-8").splitlines() if line.strip()]
    questions.append({"question": "What is the capital of Peru?", "source_ids": [], "kind": "unanswerable"})
    scores = score_retrievers(built_cfg, questions)
    answerable = sum(1 for q in questions if q.get("source_ids"))
    assert set(scores) == {"vector", "bm25", "hybrid"}
    for mode, row in scores.items():
        assert row["n"] == answerable, mode
        assert 0.0 <= row["hit_rate@1"] <= row["hit_rate@3"] <= row["hit_rate@5"] <= 1.0
        assert row["mrr"] >= row["hit_rate@1"]
    # Four short documents: any working retriever puts the right one near the top.
    assert scores["hybrid"]["hit_rate@3"] >= 0.8
