"""The answers corrected in the app, as data: which become training pairs, which evaluation questions.

`<workspace>/feedback.jsonl` is written by the app (`assistant.feedback`). A correction's side is chosen by a
hash of its question against `synth.feedback_fraction`, so it keeps its side across runs: `assistant synth`
(training.dataset) trains on one side and `assistant eval --questions feedback` asks only the other, so a
correction never scores the adapter it taught.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

from assistant.core.config import Config
from assistant.core.figures import find_spans
from assistant.core.jsonl import read_jsonl

FEEDBACK_KIND = "feedback"          # the eval question kind, so the report can tell these apart


def feedback_path(cfg: Config) -> Path:
    return cfg.home / "feedback.jsonl"


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
