"""Feedback that becomes data: marks from the app's handler land in <workspace>/feedback.jsonl, and
`assistant eval --questions feedback` scores the four paths on the corrected questions."""
from __future__ import annotations

import json
from pathlib import Path

from assistant.app import mark_answer, respond
from assistant.cli import main
from assistant.feedback import correction_key_facts, feedback_path

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
