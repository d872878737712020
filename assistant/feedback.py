"""Feedback that becomes data: answers marked right or wrong in the app, corrections turned into
evaluation questions.

Every mark is one line of `<workspace>/feedback.jsonl`: the question, the path, the answer, its
sources, the adapter that answered, the time, the verdict and the corrected answer when one was
typed. `assistant eval --questions feedback` scores the four paths on the corrected ones: the
correction is the reference and its figures and names (what the key-fact metric checks) are the key
facts. With `synth.feedback_fraction` above 0, `assistant synth` trains on that share of the corrections
(chosen by a hash of the question, so each keeps its side) and the evaluation asks only the others: a
correction never scores the adapter it taught.

    python -m assistant.feedback      # writes <workspace>/questions.feedback.jsonl and prints its path
"""
from __future__ import annotations

import json
import threading
import time
from pathlib import Path

from assistant.answer import Answer
from assistant.core.config import Config
from assistant.core.corrections import corrections, feedback_path, feedback_questions
from assistant.core.errors import UserError
from assistant.core.jsonl import append_jsonl

_APPEND = threading.Lock()          # app sessions mark answers concurrently; lines must not interleave


def feedback_record(question: str, answer: Answer, adapter: str | None, right: bool,
                    correction: str | None = None) -> dict:
    sources = [{key: source[key] for key in ("n", "id", "title", "section", "source", "cited")}
               for source in answer.to_dict()["sources"]]
    return {"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "question": question, "mode": answer.mode,
            "answer": answer.text, "sources": sources, "adapter": adapter,
            "verdict": "right" if right else "wrong", "correction": (correction or "").strip() or None}


def append_feedback(cfg: Config, record: dict) -> Path:
    path = feedback_path(cfg)
    path.parent.mkdir(parents=True, exist_ok=True)
    with _APPEND:
        append_jsonl(path, [record])
    return path


def write_feedback_questions(cfg: Config) -> Path:
    """The corrected answers as `<workspace>/questions.feedback.jsonl`, for `assistant eval --questions`."""
    questions = feedback_questions(cfg)
    if not questions and corrections(cfg):
        raise UserError(f"{feedback_path(cfg)}: every corrected answer is a training pair "
                        f"(synth.feedback_fraction = {cfg.synth.feedback_fraction}), so none is left to evaluate "
                        "with; lower it (ASSISTANT_SYNTH__FEEDBACK_FRACTION=0.5) and run synth and train again")
    if not questions:
        raise UserError(f"{feedback_path(cfg)}: no corrected answers yet; in the app's Chat tab mark an answer "
                        "wrong and type the right one, then run `assistant eval --questions feedback` again")
    target = cfg.home / "questions.feedback.jsonl"
    target.write_text("".join(json.dumps(q, ensure_ascii=False) + "\n" for q in questions), encoding="utf-8")
    return target


if __name__ == "__main__":
    from assistant.core.config import load_config

    print(write_feedback_questions(load_config()))
