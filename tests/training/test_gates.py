"""Each quality gate does its job, and the split holds out phrasings while every fact reaches training."""
from __future__ import annotations

import pytest

from assistant.core.prompts import REFUSAL
from assistant.core.records import Chunk, Hit
from training.gates import apply_gates, check_format, drop_duplicates, drop_leaked, is_grounded
from training.pairs import pair_record, refusal_pair
from training.split import split_by_phrasing

SOURCE = "Hotels\nBook hotels through Halvard Online. The nightly cap for Stuttgart is €165, excluding city fees."


def qa(question: str, answer: str, doc_id: str = "travel", chunk_id: str = "c1") -> dict:
    return pair_record(question, answer, None, pair_type="qa", chunk_ids=[chunk_id], doc_id=doc_id,
                       generator="test", prompt_version="v1")


def test_exact_and_near_duplicate_questions_are_dropped_but_other_facts_kept():
    records = [qa("Under the travel policy, what is the hotel cap per night in Stuttgart?", "€165"),
               qa("under the travel policy what is the hotel cap per night in Stuttgart ?", "€165 a night"),  # exact
               qa("Under the travel policy, what is the hotel cap per night in Stuttgart, please?", "€165"),  # near
               qa("Under the travel policy, what is the hotel cap per night in Winnipeg?", "CAD 210")]  # other fact
    kept, exact, near = drop_duplicates(records, threshold=0.8)
    assert [r["messages"][-1]["content"] for r in kept] == ["€165", "CAD 210"]
    assert (exact, near) == (1, 1)


def test_the_same_question_with_and_without_context_is_not_a_duplicate():
    chunk = Chunk(id="c1", doc_id="travel", text=SOURCE, title="T", section="Hotels", source="t.md")
    question = "What is our policy on parental leave?"
    kept, exact, near = drop_duplicates([refusal_pair(question, None), refusal_pair(question, [Hit(chunk, 1.0)])], 0.9)
    assert len(kept) == 2 and exact == near == 0


def test_groundedness_rejects_answers_their_source_does_not_support():
    assert is_grounded("The nightly cap for Stuttgart is €165. [2]", SOURCE)
    assert is_grounded("[3] The nightly cap for Stuttgart is €165.", SOURCE)   # the citation's number is no claim
    assert not is_grounded("The nightly cap for Stuttgart is €185.", SOURCE)                 # wrong figure
    assert not is_grounded("Stuttgart hotels need written approval from the CFO and two receipts.", SOURCE)
    assert is_grounded(REFUSAL, SOURCE)                                                        # refusals assert nothing


def test_format_gate_wants_a_question_and_a_short_answer():
    assert check_format(qa("What is the cap in Stuttgart?", "€165."), max_answer_words=20)
    assert not check_format(qa("Tell me the cap in Stuttgart", "€165."), max_answer_words=20)
    assert not check_format(qa("What is the cap in Stuttgart?", "word " * 30), max_answer_words=20)
    assert not check_format(qa("What is the cap?", "| Stuttgart | €165 |"), max_answer_words=20)


def embed_with_minilm():
    from assistant.core.config import load_config
    from assistant.core.models import load_embedder

    model = load_embedder(load_config().embed_model)
    return lambda texts: model.encode(texts, normalize_embeddings=True, convert_to_numpy=True)


def test_a_training_question_close_to_a_held_out_one_is_removed():
    embed = embed_with_minilm()
    held_out = ["How much does a household membership cost per year?"]
    records = [qa("How much does a household membership cost each year?", "$90"),
               qa("Which day is the workshop closed?", "Monday")]
    kept, leaked = drop_leaked(records, held_out, embed, threshold=0.85)
    assert leaked == 1 and [r["meta"]["question"] for r in kept] == ["Which day is the workshop closed?"]


def test_apply_gates_counts_each_gate():
    records = [qa("What is the nightly cap for Stuttgart?", "The nightly cap for Stuttgart is €165."),
               qa("What is the nightly cap for Stuttgart?", "The nightly cap for Stuttgart is €165."),
               qa("What is the nightly cap in Munich?", "The nightly cap in Munich is €300."),
               qa("No question mark here", "The nightly cap for Stuttgart is €165.")]
    kept, rejected = apply_gates(records, {"c1": SOURCE}, [], lambda texts: None, near_duplicate_threshold=0.9,
                                 leakage_threshold=0.85, max_answer_words=50)
    assert len(kept) == 1
    assert (rejected["duplicate"], rejected["ungrounded"], rejected["format"], rejected["leakage"]) == (1, 1, 1, 0)


@pytest.mark.parametrize("fraction", [0.2, 0.5])
def test_split_holds_out_phrasings_so_every_fact_reaches_training(fraction):
    records = [pair_record(f"Question {p}-{n}?", f"Answer {p}.", None, pair_type=kind, chunk_ids=["c1"],
                           doc_id=f"doc{p % 3}", generator="test", prompt_version="v1",
                           extra={"point_id": f"p{p}", "round": n})
               for p in range(40) for n in range(4) for kind in ("qa", "raft")]
    records += [qa("Only one way to ask this?", "Answer once.") | {"meta": {**qa("x?", "y")["meta"],
                "point_id": "single", "round": 0, "question": "Only one way to ask this?"}}]
    records += [refusal_pair(f"What about topic {i}?", None) for i in range(10)]
    train, validation = split_by_phrasing(records, fraction, seed=3)
    assert len(train) + len(validation) == len(records)
    point_ids = lambda rs: {r["meta"]["point_id"] for r in rs if "point_id" in r["meta"]}
    assert point_ids(train) == point_ids(records)                  # every fact is trained on
    held = {(r["meta"]["point_id"], r["meta"]["round"]) for r in validation if "point_id" in r["meta"]}
    assert not held & {(r["meta"]["point_id"], r["meta"]["round"]) for r in train if "point_id" in r["meta"]}
    assert len({p for p, _ in held}) == len(held)                   # one phrasing per held-out point
    assert 0.5 * 40 * fraction <= len(held) <= 1.5 * 40 * fraction
    assert "single" not in {p for p, _ in held}
    assert any(r["meta"]["type"] == "refusal" for r in validation)
    assert not {r["meta"]["question"] for r in validation if r["meta"]["type"] == "refusal"} & \
        {r["meta"]["question"] for r in train if r["meta"]["type"] == "refusal"}
    rounds = [r["meta"].get("round", 0) for r in train]
    assert rounds == sorted(rounds)                                 # first phrasings first
    assert split_by_phrasing(records, fraction, seed=3) == (train, validation)   # seeded
