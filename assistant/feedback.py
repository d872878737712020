"""Feedback that becomes data: answers marked right or wrong in the app, corrections turned into
evaluation questions.

Every mark is one line of `<workspace>/feedback.jsonl`: the question, the path, the answer, its
sources, the adapter that answered, the time, the verdict and the corrected answer when one was
typed. `assistant eval --questions feedback` scores the four paths on the corrected ones: the
correction is the reference and its figures and names (what the key-fact metric checks) are the key
facts.

    python -m assistant.feedback      # writes <workspace>/questions.feedback.jsonl and prints its path
"""
from __future__ import annotations

import hashlib
import json
import threading
import time
from pathlib import Path

from assistant.answer import Answer
from assistant.core.config import Config
from assistant.core.errors import UserError
from assistant.core.figures import find_spans
from assistant.core.jsonl import append_jsonl, read_jsonl

FEEDBACK_KIND = "feedback"          # the eval question kind, so the report can tell these apart
_APPEND = threading.Lock()          # app sessions mark answers concurrently; lines must not interleave


def feedback_path(cfg: Config) -> Path:
    return cfg.home / "feedback.jsonl"


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


def correction_key_facts(correction: str) -> list[str]:
    """The figures and names the correction states (as the key-fact metric reads them); a correction
    without any is its own single fact, so a short plain-word answer ('the treasurer') still counts."""
    facts = list(dict.fromkeys(span for _, span in find_spans(correction)))
    return facts or [correction.strip().rstrip(".")]


def feedback_questions(cfg: Config) -> list[dict]:
    """One evaluation question per corrected question (the newest correction wins), in the held-out
    file's format. Sources are left out: the answer's retrieved chunks were the wrong ones as often
    as not, so they say nothing about where the right answer lives."""
    path = feedback_path(cfg)
    latest: dict[str, dict] = {}
    for _, record in read_jsonl(path, skip_broken=True) if path.exists() else ():
        if isinstance(record, dict) and record.get("correction") and record.get("question"):
            latest[record["question"].strip()] = record
    return [{"id": "fb-" + hashlib.sha256(question.encode()).hexdigest()[:10], "question": question,
             "reference": record["correction"], "key_facts": correction_key_facts(record["correction"]),
             "kind": FEEDBACK_KIND} for question, record in latest.items()]


def write_feedback_questions(cfg: Config) -> Path:
    """The corrected answers as `<workspace>/questions.feedback.jsonl`, for `assistant eval --questions`."""
    questions = feedback_questions(cfg)
    if not questions:
        raise UserError(f"{feedback_path(cfg)}: no corrected answers yet; in the app's Chat tab mark an answer "
                        "wrong and type the right one, then run `assistant eval --questions feedback` again")
    target = cfg.home / "questions.feedback.jsonl"
    target.write_text("".join(json.dumps(q, ensure_ascii=False) + "\n" for q in questions), encoding="utf-8")
    return target


if __name__ == "__main__":
    from assistant.core.config import load_config

    print(write_feedback_questions(load_config()))
