"""Breakdowns of the held-out scores that say *why* a path scores what it does.

    python -c "from eval.breakdown import half; print(half('a-001'))"

- halves: a fixed dev half of the held-out questions (chosen by a hash of the question id, never by
  results) for making choices, and the test half to report; a gain seen on one half only is noise.
- seen / unseen documents: questions whose source documents reached the tuned model's training set,
  and those that did not (the offline path can only know the first).
- retrieval ceiling: the share of key facts that were in the context the rag and hybrid paths were
  shown, beside the share their answers state.
- refusals: precision and recall of "the knowledge base does not cover this" over all held-out questions,
  and the share of answerable questions wrongly refused.
"""
from __future__ import annotations

import hashlib
from collections.abc import Sequence

from assistant.core.figures import contains_fact
from assistant.core.modes import Mode
from eval import stats
from eval.metrics import is_refusal
from eval.questions import Question



def half(question_id: str) -> str:
    """'dev' or 'test', fixed by the id alone."""
    return "dev" if hashlib.sha256(question_id.encode()).digest()[0] % 2 == 0 else "test"


def breakdowns(rows: Sequence[dict], modes: Sequence[str], questions: dict[str, Question],
               trained_documents: set[str] | None, samples: int, seed: int) -> dict:
    """Every breakdown above for the held-out rows; each value is JSON-ready. A row whose question is
    not in `questions` (a score file from another question file) counts by its own `kind` and is left
    out of the breakdowns that need the question's sources or key facts."""
    questions = {r["question_id"]: questions.get(r["question_id"]) or Question(r["question_id"], r.get("question", ""), kind=r.get("kind"))
                 for r in rows}
    groups = {"dev half": [r for r in rows if half(r["question_id"]) == "dev"],
              "test half": [r for r in rows if half(r["question_id"]) == "test"]}
    if trained_documents is not None:
        def seen(row: dict) -> bool:
            sources = questions[row["question_id"]].source_ids or ()
            return bool(sources) and set(sources) <= trained_documents
        answerable = [r for r in rows if not questions[r["question_id"]].unanswerable]
        groups["seen documents"] = [r for r in answerable if seen(r)]
        groups["unseen documents"] = [r for r in answerable if not seen(r)]
    metrics = ["domain_score", "key_fact_accuracy"]
    subsets = {}
    for name, subset in groups.items():
        first = [r for r in subset if r["mode"] == (modes[0] if modes else None)]
        subsets[name] = {"n": len(first), "paths": stats.summarise_paths(subset, modes, metrics, samples, seed)}
    return {"subsets": subsets, "retrieval": retrieval_ceiling(rows, modes, questions),
            "refusal": refusal_rates(rows, modes, questions)}


def retrieval_ceiling(rows: Sequence[dict], modes: Sequence[str], questions: dict[str, Question]) -> dict:
    """{mode: {"in_context": share of key facts in the prompt's context, "stated": share in the answer,
    "stated_when_in_context": share of the facts in context that the answer states}}."""
    out = {}
    for mode in [m for m in modes if Mode(m).retrieves]:
        in_context = stated = both = 0
        total = 0
        for row in rows:
            question = questions[row["question_id"]]
            if row["mode"] != mode or question.unanswerable or not question.key_facts or row.get("contexts") is None:
                continue
            context = "\n".join(row["contexts"])
            for fact in question.key_facts:
                total += 1
                there, said = contains_fact(context, fact), contains_fact(row["answer"], fact)
                in_context += there
                stated += said
                both += there and said
        out[mode] = {"facts": total, "in_context": in_context / total if total else None,
                     "stated": stated / total if total else None,
                     "stated_when_in_context": both / in_context if in_context else None}
    return out


def refusal_rates(rows: Sequence[dict], modes: Sequence[str], questions: dict[str, Question]) -> dict:
    """{mode: precision, recall, wrongly_refused (share of answerable questions refused), counts}."""
    out = {}
    for mode in modes:
        mine = [r for r in rows if r["mode"] == mode]
        refused = [r for r in mine if is_refusal(r["answer"])]
        true_positive = sum(questions[r["question_id"]].unanswerable for r in refused)
        unanswerable = sum(questions[r["question_id"]].unanswerable for r in mine)
        answerable = len(mine) - unanswerable
        out[mode] = {"precision": true_positive / len(refused) if refused else None,
                     "recall": true_positive / unanswerable if unanswerable else None,
                     "wrongly_refused": (len(refused) - true_positive) / answerable if answerable else None,
                     "refused": len(refused), "unanswerable": unanswerable, "answerable": answerable}
    return out
