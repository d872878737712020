"""The eval budget: held-out and general questions are all answered; the validation sample shrinks to fit, and says so."""
from __future__ import annotations

from assistant.core.modes import Mode
from eval.evaluate import fit_extras
from eval.paths import PathAnswer
from eval.questions import Question

MODES = [m.value for m in Mode]


def answers(seconds: float) -> list[PathAnswer]:
    return [PathAnswer(question_id=f"h{i}", mode=m, answer="a", contexts=None, context_doc_ids=None, latency_s=seconds, tokens=10,
                       first_token_s=None) for m in MODES for i in range(10)]


def questions(prefix: str, n: int) -> list[Question]:
    return [Question(f"{prefix}{i}", f"question {i}?") for i in range(n)]


def test_everything_is_kept_when_it_fits():
    validation, note = fit_extras(answers(0.5), questions("v", 24), questions("g", 55), MODES,
                                  ["base", "offline"], seconds_left=600)
    assert len(validation) == 24 and note is None


def test_a_slow_machine_pays_for_the_general_questions_then_answers_what_validation_fits():
    # a general question costs 2 paths x 2 s x 2 (answers, then perplexity) = 8 s; a validation one 4 x 2 s
    validation, note = fit_extras(answers(2.0), questions("v", 24), questions("g", 55), MODES,
                                  ["base", "offline"], seconds_left=55 * 8 + 12 * 8 + 5)
    assert len(validation) == 12
    assert "12 of 24 validation" in note
    # Less time than the general questions cost: no validation question, and the note says so without going negative.
    validation, note = fit_extras(answers(2.0), questions("v", 24), questions("g", 55), MODES,
                                  ["base", "offline"], seconds_left=158)
    assert validation == [] and "left 0 s" in note and "0 of 24 validation" in note
    assert fit_extras(answers(2.0), questions("v", 24), questions("g", 55), MODES, ["base", "offline"], -5)[0] == []
    # Without a tuned path there is no general question to pay for: the time all goes to validation.
    validation, _ = fit_extras(answers(2.0), questions("v", 24), questions("g", 55), MODES, [], seconds_left=12 * 8 + 5)
    assert len(validation) == 12
