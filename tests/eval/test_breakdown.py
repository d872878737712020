"""The held-out breakdowns: fixed halves, seen/unseen documents, the retrieval ceiling, refusal rates."""
from __future__ import annotations

from eval.breakdown import breakdowns, half, refusal_rates, retrieval_ceiling
from eval.questions import Question

QUESTIONS = {
    "q1": Question("q1", "Hotel cap in Boston?", key_facts=("$310",), source_ids=("travel",), kind="fact"),
    "q2": Question("q2", "Gift limit?", key_facts=("$75", "FIN-120"), source_ids=("gifts",), kind="fact"),
    "q3": Question("q3", "Home internet?", key_facts=(), source_ids=(), kind="unanswerable"),
}


def row(qid: str, mode: str, answer: str, contexts=None) -> dict:
    return {"question_id": qid, "mode": mode, "answer": answer, "contexts": contexts,
            "domain_score": None, "key_fact_accuracy": None}


ROWS = [row("q1", "hybrid", "[1] The Boston cap is $310.", ["Boston: $310 a night."]),
        row("q2", "hybrid", "[2] Declare it on FIN-120.", ["Gifts above $75 ...", "Use form FIN-120."]),
        row("q3", "hybrid", "The knowledge base does not cover this.", ["Internet is not ..."]),
        row("q1", "base", "The knowledge base does not cover this."),
        row("q2", "base", "Gifts are fine."),
        row("q3", "base", "Yes, claim it.")]


def test_halves_are_fixed_by_the_id_and_split_roughly_evenly():
    ids = [f"a-{n:03d}" for n in range(1, 201)]
    assert [half(i) for i in ids] == [half(i) for i in ids]
    assert 70 <= sum(half(i) == "dev" for i in ids) <= 130


def test_retrieval_ceiling_counts_facts_in_context_and_in_the_answer():
    found = retrieval_ceiling(ROWS, ["base", "hybrid"], QUESTIONS)
    assert set(found) == {"hybrid"}                      # base reads no context
    assert found["hybrid"]["facts"] == 3 and found["hybrid"]["in_context"] == 1.0
    assert round(found["hybrid"]["stated"], 3) == round(2 / 3, 3)
    assert found["hybrid"]["stated_when_in_context"] == found["hybrid"]["stated"]


def test_refusal_precision_recall_and_wrong_refusals():
    rates = refusal_rates(ROWS, ["base", "hybrid"], QUESTIONS)
    assert rates["hybrid"] == {"precision": 1.0, "recall": 1.0, "wrongly_refused": 0.0, "refused": 1,
                               "unanswerable": 1, "answerable": 2}
    assert rates["base"]["precision"] == 0.0 and rates["base"]["recall"] == 0.0
    assert rates["base"]["wrongly_refused"] == 0.5


def test_seen_and_unseen_documents_split_the_answerable_questions():
    scored = [{**r, "domain_score": 1.0, "key_fact_accuracy": 1.0} for r in ROWS]
    found = breakdowns(scored, ["base", "hybrid"], QUESTIONS, {"travel"}, samples=100, seed=0)
    assert found["subsets"]["seen documents"]["n"] == 1 and found["subsets"]["unseen documents"]["n"] == 1
    assert found["subsets"]["dev half"]["n"] + found["subsets"]["test half"]["n"] == 3
    assert "unseen documents" not in breakdowns(scored, ["base"], QUESTIONS, None, samples=100, seed=0)["subsets"]
