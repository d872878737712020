"""Feedback that becomes data: marks from the app's handler land in <workspace>/feedback.jsonl, and
`assistant eval --questions feedback` scores the four paths on the corrected questions."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from assistant.app import mark_answer, respond
from assistant.cli import main
from assistant.core.errors import UserError
from assistant.core.corrections import correction_key_facts, feedback_path
from assistant.feedback import append_feedback, write_feedback_questions

QUESTION = "How much does a household membership cost per year?"


def finished_answer(assistant, question: str, mode: str) -> dict:
    *_, last = respond(assistant, question, [], mode)
    return last[3]


def test_marks_are_appended_with_what_was_answered(assistant, tmp_path):
    cfg = assistant.cfg.model_copy(update={"workspace": tmp_path / "ws"})
    last = finished_answer(assistant, QUESTION, "hybrid")
    note, cleared = mark_answer(cfg, False, last, "  $90 a year, for up to 4 people. ")
    assert "wrong" in note and "--questions feedback" in note and cleared == ""
    mark_answer(cfg, True, finished_answer(assistant, "Who collects the fees?", "base"), "")
    first, second = [json.loads(line) for line in feedback_path(cfg).read_text().splitlines()]
    assert first["question"] == QUESTION and first["mode"] == "hybrid" and first["verdict"] == "wrong"
    assert first["answer"] == last["answer"].text and first["adapter"] == "tiny-lora"
    assert first["sources"] and first["sources"][0]["source"].endswith(".md") and first["correction"] == "$90 a year, for up to 4 people."
    assert second["verdict"] == "right" and second["correction"] is None and second["adapter"] is None
    assert second["sources"] == [] and first["time"]


def test_nothing_to_mark_before_an_answer(kb_cfg):
    note, _ = mark_answer(kb_cfg, True, None, "")
    assert "Ask a question first" in note


def test_key_facts_come_from_the_correction():
    assert correction_key_facts("It costs $90 a year, collected by Treasurer Dana Lee.") == ["$90", "Treasurer Dana Lee"]
    assert correction_key_facts("the treasurer.") == ["the treasurer"]


def test_eval_without_corrections_says_how_to_make_them(kb_cfg, tmp_path, capsys):
    assert main(["eval", "--questions", "feedback", "--workspace", str(tmp_path / "empty")]) == 2
    assert "mark an answer wrong and type the right one" in capsys.readouterr().err


def test_eval_questions_feedback_scores_the_corrections(assistant, new_workspace, capsys, monkeypatch):
    cfg = new_workspace()           # its own workspace: the evaluation it writes must not reach other tests
    mark_answer(cfg, False, finished_answer(assistant, QUESTION, "rag"), "It costs $90 a year.")
    mark_answer(cfg, False, finished_answer(assistant, QUESTION, "rag"), "$90 per year.")
    mark_answer(cfg, True, finished_answer(assistant, "Who collects the fees?", "rag"), "")
    monkeypatch.chdir(cfg.home)        # "feedback" is a word here, not a file
    code = main(["eval", "--questions", "feedback", "--modes", "base,rag", "--json", "--corpus", str(cfg.corpus),
                 "--workspace", str(cfg.home), "--base-model", cfg.base_model, "--max-new-tokens", "4"])
    assert code == 0, capsys.readouterr().err
    report = json.loads(capsys.readouterr().out)
    questions = [json.loads(line) for line in (cfg.home / "questions.feedback.jsonl").read_text().splitlines()]
    # One question (the newest correction wins), its key fact the correction's figure.
    assert [(q["question"], q["reference"], q["key_facts"], q["kind"]) for q in questions] == \
        [(QUESTION, "$90 per year.", ["$90"], "feedback")]
    rows = [json.loads(line) for line in (Path(report["report_dir"]) / "scores.jsonl").read_text().splitlines()]
    scored = {(r["question_id"], r["mode"]) for r in rows if r["question_id"].startswith("fb-")}
    assert scored == {(questions[0]["id"], "base"), (questions[0]["id"], "rag")}


def test_synth_trains_on_a_share_of_the_corrections_and_eval_asks_only_the_rest(new_workspace):
    from assistant.core.corrections import feedback_questions, trains_on
    from training.dataset import build_dataset

    cfg = new_workspace()
    # questions far apart, so that the leakage gate keeps the trained ones away from the evaluated ones
    questions = ["Who keeps the key to the tool shed?", "When does the winter bulb sale open?",
                 "How many plots can one household rent?", "What colour are the compost bins?",
                 "Which bank holds the club's savings?", "Where do volunteers park on show day?",
                 "Can children under ten enter the pumpkin contest?", "What does a late renewal cost?",
                 "Who audits the accounts each spring?", "How long may a hose run unattended?"]
    for number, question in enumerate(questions):
        append_feedback(cfg, {"question": question, "mode": "hybrid", "answer": "no", "verdict": "wrong",
                              "correction": f"Rule {number + 1}: ask the secretary, Alex Moreau."})
    cfg = cfg.model_copy(update={"synth": cfg.synth.model_copy(update={"feedback_fraction": 0.5})})
    trained = {q for q in questions if trains_on(q, 0.5)}
    assert 2 <= len(trained) <= 8             # a hash split, not all or nothing

    report = build_dataset(cfg, progress=False)
    records = [json.loads(line) for line in (report.dataset / "train.jsonl").read_text().splitlines()]
    pairs = [r for r in records if r["meta"]["type"] == "feedback"]
    # every trained correction, asked without context and with retrieval's, answered with the correction
    assert {(r["meta"]["question"], r["meta"]["with_context"]) for r in pairs} == \
        {(q, context) for q in trained for context in (False, True)}
    assert all(r["messages"][-1]["content"].startswith("Rule ") for r in pairs)
    assert any("[1]" in r["messages"][-2]["content"] for r in pairs if r["meta"]["with_context"])
    # evaluation asks only the corrections that trained nothing
    asked = {q["question"] for q in feedback_questions(cfg)}
    assert asked == set(questions) - trained
    # a new correction is a new input: the dataset is rebuilt, not found up to date
    new = next(q for q in (f"Who signs off refund form {n}?" for n in range(100)) if trains_on(q, 0.5))
    append_feedback(cfg, {"question": new, "mode": "offline", "answer": "?", "verdict": "wrong", "correction": "The treasurer."})
    again = build_dataset(cfg, progress=False)
    assert again.dataset != report.dataset and again.by_type["feedback"] == 2 * len(trained) + 2


def test_with_every_correction_trained_eval_says_what_to_change(new_workspace):
    cfg = new_workspace()
    append_feedback(cfg, {"question": "Who collects the fees?", "mode": "rag", "answer": "?", "verdict": "wrong",
                          "correction": "The treasurer."})
    cfg = cfg.model_copy(update={"synth": cfg.synth.model_copy(update={"feedback_fraction": 1.0})})
    with pytest.raises(UserError, match="every corrected answer is a training pair"):
        write_feedback_questions(cfg)
