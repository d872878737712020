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


def corrections(cfg: Config) -> dict[str, str]:
    """{question: its newest correction}, from the feedback file (broken lines skipped)."""
    path = feedback_path(cfg)
    latest: dict[str, str] = {}
    for _, record in read_jsonl(path, skip_broken=True) if path.exists() else ():
        if isinstance(record, dict) and record.get("correction") and record.get("question"):
            latest[str(record["question"]).strip()] = str(record["correction"])
    return latest


def trains_on(question: str, fraction: float) -> bool:
    """Whether a correction is a training pair (else an evaluation question): a hash of the question against
    `synth.feedback_fraction`, so the same question always lands on the same side."""
    return int(hashlib.sha256(question.encode()).hexdigest()[:8], 16) / 16 ** 8 < fraction


def training_corrections(cfg: Config) -> dict[str, str]:
    """The corrections `assistant synth` turns into pairs (none at `synth.feedback_fraction` 0)."""
    return {q: c for q, c in corrections(cfg).items() if trains_on(q, cfg.synth.feedback_fraction)}


def feedback_questions(cfg: Config) -> list[dict]:
    """One evaluation question per corrected question (the newest correction wins) that is not trained on,
    in the held-out file's format. Sources are left out: the answer's retrieved chunks were the wrong ones
    as often as not, so they say nothing about where the right answer lives."""
    return [{"id": "fb-" + hashlib.sha256(question.encode()).hexdigest()[:10], "question": question,
             "reference": correction, "key_facts": correction_key_facts(correction), "kind": FEEDBACK_KIND}
            for question, correction in corrections(cfg).items()
            if not trains_on(question, cfg.synth.feedback_fraction)]


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
