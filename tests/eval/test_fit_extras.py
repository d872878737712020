"""The eval budget: held-out questions are all answered; the checks around them shrink to fit, and say so."""
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
    validation, general, note = fit_extras(answers(0.5), questions("v", 24), questions("g", 55), MODES,
                                           ["base", "offline"], seconds_left=600)
    assert len(validation) == 24 and len(general) == 55 and note is None


def test_a_slow_machine_answers_fewer_checks_and_says_how_many():
    # 4 paths x 24 validation x 2 s + 2 paths x 55 general x 2 s x 2 = 632 s against 158 s left: a quarter fits
    validation, general, note = fit_extras(answers(2.0), questions("v", 24), questions("g", 55), MODES,
                                           ["base", "offline"], seconds_left=158)
    assert len(validation) == 6 and len(general) == 13
    assert "6 of 24 validation" in note and "13 of 55 general" in note
    nothing = fit_extras(answers(2.0), questions("v", 24), questions("g", 55), MODES, ["base", "offline"], -5)
    assert nothing[:2] == ([], [])
