"""The generated test set: drawn from the indexed tiny corpus, kept in the workspace, reused unchanged.

Uses the real index (Chroma + the packaged MiniLM) on the four-document fixture corpus."""
from __future__ import annotations

import json

import pytest

from assistant.core.figures import contains_fact
from eval.testset import GENERATED_NAME, generated_questions, question_from_sentence


def test_sentence_with_a_figure_becomes_a_fill_in_the_blank_question():
    made = question_from_sentence("A late fee of $1 per day is charged for each tool.", "Tool Loan Rules", "Late returns")
    assert made is not None
    question, fact, kind = made
    assert fact == "$1" and kind == "numeric"
    assert question == ('In the "Late returns" section of the Tool Loan Rules, what fills the blank: '
                        '"A late fee of ____ per day is charged for each tool."')
    assert question_from_sentence("Members are welcome here every day of the week.", "T", "H") is None


@pytest.mark.parametrize("sentence, fact", [
    ("Paid Leave Oregon provides job protection and pay for up to 12 weeks.", "12 weeks"),
    ("Paid Leave Oregon provides job protection and pay to all eligible staff.", None),       # the first word is grammar
    ("Leave is handled by Paid Leave Oregon for staff in that state.", "Paid Leave Oregon"),
    ("Gives constructive feedback on the work of L1-2 programmers across the team.", None),   # a level code
    ("Each team keeps 250 spare badges in the cupboard by the door.", "250"),
])
def test_spans_are_whole_names_and_figures_not_pieces_of_codes(sentence, fact):
    made = question_from_sentence(sentence, "Handbook", "")
    assert (made[1] if made else None) == fact


def test_a_span_the_heading_names_is_not_asked_about():
    made = question_from_sentence("New Jersey residents may take leave for up to 12 weeks to care for family.",
                                  "State Leave", "New Jersey Family Leave")
    assert made[1] == "12 weeks"
    made = question_from_sentence("Staff in New Jersey apply through the state portal for any leave.",
                                  "State Leave", "New Jersey Family Leave")
    assert made is None


@pytest.fixture()
def indexed_cfg(tiny_cfg):
    from indexing.store import build_index

    cfg = tiny_cfg.model_copy(update={"questions": None})
    build_index(cfg, progress=False)
    return cfg


def test_generated_set_is_written_once_and_kept(indexed_cfg):
    assert indexed_cfg.questions_path is None           # the fixture corpus ships no held-out file
    first = generated_questions(indexed_cfg)
    assert first.generator == "extractive" and "no LLM configured" in first.why
    assert first.path == indexed_cfg.home / GENERATED_NAME
    assert len(first.questions) >= 8
    for question in first.questions:
        assert question.kind in ("fact", "numeric") and question.source_ids
        assert all(contains_fact(question.reference, fact) for fact in question.key_facts)
    lines = first.path.read_text().splitlines()
    assert json.loads(lines[0])["generator"] == "extractive"
    again = generated_questions(indexed_cfg)
    assert [q.question for q in again.questions] == [q.question for q in first.questions]
