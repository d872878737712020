"""Key-fact matching, refusal detection, and a failing metric shown as missing (never 0)."""
from __future__ import annotations

import pytest

from assistant.core.figures import contains_fact
from assistant.core.prompts import REFUSAL
from eval.metrics import Sample, is_refusal, offline_metrics, score_sample
from eval.questions import Question


@pytest.mark.parametrize("fact, answer", [
    ("6-week", "You have 6 weeks to submit."),
    ("6 weeks", "within a 6-week window"),
    ("VP", "A vp must approve it."),
    ("$1,500", "The cap is 1500 USD."),
    ("1500", "up to $1,500.00 per trip"),
    ("GL-6100", "Post it to gl 6100."),
    ("5%", "a 5 percent tolerance"),
    ("two weeks", "about 2 weeks"),
    ("ap@corvane.example", "Write to AP@corvane.example today."),
])
def test_equivalent_forms_match(fact, answer):
    assert contains_fact(answer, fact)


@pytest.mark.parametrize("fact, answer", [
    ("32", "Form 1325 applies."),
    ("32", "It costs $3.20."),
    ("$310", "The cap is $3,100."),
    ("premium economy", "economy only"),
])
def test_different_facts_do_not_match(fact, answer):
    assert not contains_fact(answer, fact)


@pytest.mark.parametrize("answer, refused", [
    (REFUSAL, True),
    ("The knowledge base doesn't cover that.", True),
    ("I don't know.", True),
    ("That is not covered in the documents.", True),
    ("The limit is $75 per supplier.", False),
])
def test_refusals_are_recognised(answer, refused):
    assert is_refusal(answer) is refused


def question(**fields) -> Question:
    return Question(id="q1", question="What is the hotel cap in Boston?", **fields)


def test_key_facts_score_the_share_found():
    values, reasons = score_sample(Sample(question(key_facts=("$310", "taxes")), "base", "It is $310 a night.", None),
                                   offline_metrics())
    assert values["key_fact_accuracy"] == 0.5


def test_metrics_without_their_inputs_are_missing_with_reasons():
    values, reasons = score_sample(Sample(question(), "base", "It is $310.", None), offline_metrics())
    for metric in ("key_fact_accuracy", "context_precision", "rouge_l", "semantic_similarity"):
        assert values[metric] is None and reasons[metric]
    assert reasons["context_precision"] == "no retrieval in the base path"
    assert reasons["key_fact_accuracy"] == "question has no key_facts"


def test_a_failing_metric_is_missing_with_its_reason():
    def exploding_judge(sample):
        raise TimeoutError("judge did not answer in 30 s")

    values, reasons = score_sample(Sample(question(key_facts=("$310",)), "rag", "$310", ["ctx"]),
                                   [exploding_judge, *offline_metrics()])
    assert values["exploding_judge"] is None
    assert reasons["exploding_judge"] == "failed: TimeoutError: judge did not answer in 30 s"
    assert values["key_fact_accuracy"] == 1.0


def test_ragas_context_metrics_on_retrieved_chunks():
    sample = Sample(question(key_facts=("$310",), source_ids=("travel-booking",), reference="The cap is $310."),
                    "rag", "$310", contexts=["Boston: the cap is $310 per night.", "Unrelated payroll text here."],
                    reference_contexts=["Boston: the cap is $310 per night."])
    values, _ = score_sample(sample, offline_metrics())
    assert values["context_recall"] == 1.0
    assert values["context_precision"] == pytest.approx(1.0)
    assert 0 < values["rouge_l"] <= 1


def test_context_metrics_compare_the_retrieved_lines_with_the_sentences_that_state_the_key_facts():
    """A retrieved block holds several lines; the reference is the source's lines that state a key fact. Against
    whole documents, six retrieved sentences could recall only a few percent of them, whatever retrieval did."""
    from eval.evaluate import reference_units

    asked = question(key_facts=("$310",), source_ids=("travel-booking",), reference="The cap is $310.")
    units = {"travel-booking": ["Book hotels through Halvard.", "Boston: the cap is $310 per night.", "Keep receipts."],
             "payroll": ["Boston: the cap is $310 per night."]}
    assert reference_units(asked, units) == ["Boston: the cap is $310 per night."]
    assert reference_units(question(key_facts=(), source_ids=("travel-booking",)), units) == units["travel-booking"]

    found = Sample(asked, "hybrid", "$310", contexts=["Keep receipts.\nBoston: the cap is $310 per night."],
                   reference_contexts=reference_units(asked, units))
    missed = Sample(asked, "hybrid", "?", contexts=["Keep receipts.\nBook hotels through Halvard."],
                    reference_contexts=reference_units(asked, units))
    found_values, _ = score_sample(found, offline_metrics())
    missed_values, _ = score_sample(missed, offline_metrics())
    assert found_values["context_recall"] == 1.0 and missed_values["context_recall"] == 0.0
    assert found_values["context_precision"] == pytest.approx(0.5) and missed_values["context_precision"] == 0.0


def test_unanswerable_is_scored_on_refusal_only():
    unanswerable = question(kind="unanswerable", key_facts=())
    values, reasons = score_sample(Sample(unanswerable, "hybrid", REFUSAL, []), offline_metrics())
    assert values["refusal"] == 1.0
    assert values["key_fact_accuracy"] is None and "refusal" in reasons["key_fact_accuracy"]


def test_judged_metrics_without_a_reachable_judge_are_missing_with_reasons():
    """score_judged never raises: a judge that cannot be reached leaves every judged value None, each with
    the reason, one row per sample in order; a path without context is not judged for faithfulness at all."""
    from eval.metrics import JUDGED_METRICS, score_judged
    from eval.ragas_compat import LocalEmbeddings

    question = Question(id="q1", question="What is the household fee?", reference="$90 a year.", key_facts=("$90",))
    samples = [Sample(question, "base", "It is $90.", None), Sample(question, "rag", "It is $90 [1].", ["Fees: $90 a year."])]
    rows = score_judged(samples, "http://127.0.0.1:9/v1", "judge", embeddings=LocalEmbeddings(model=None), concurrency=2)
    assert len(rows) == 2
    for values, reasons in rows:
        assert set(values) == set(JUDGED_METRICS) and all(v is None for v in values.values())
        assert set(reasons) == set(JUDGED_METRICS) and all(reasons.values())
    assert rows[0][1]["faithfulness"] == "no retrieved context in the base path to be faithful to"
    assert "Connection" in rows[1][1]["faithfulness"]
