"""Quality gates: every pair passes format, groundedness, duplicate and leakage checks, or is counted out.

Applied in this order, each counted under its own name in the dataset card:
1. format       - a question that reads as one, an answer of sensible length, no leftover markup;
2. ungrounded   - the answer's figures and most of its content words must appear in its source chunk
                  (refusals are exempt: they assert nothing);
3. duplicate    - the same question asked twice in the same setting (type, with or without context);
4. near_duplicate - MinHash LSH (datasketch) Jaccard above `synth.near_duplicate_threshold`, between
                  questions with the same answer (two template questions that differ only in "Stuttgart"
                  and "Winnipeg" are near in words, yet ask for different facts);
5. leakage      - embedding cosine to any held-out evaluation question above `synth.leakage_threshold`.
"""
from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Sequence

import numpy as np

from assistant.core.figures import numbers
from assistant.core.prompts import REFUSAL

_WORD = re.compile(r"[a-z0-9][a-z0-9'&-]*")
_CITATION = re.compile(r"\s*\[\d+\]\s*")   # "[2] answer [3] more" (RAFT) or "answer [2]"
_FILLER = frozenset("""a an the and or but if of for to in on at by with from is are was were be been it its this that
these those you your i my we our they their as so not no can may must will would should do does per than then
there here what which who whom when where how""".split())


def question_of(record: dict) -> str:
    return record["meta"]["question"]


def answer_of(record: dict) -> str:
    return record["messages"][-1]["content"]


def check_format(record: dict, max_answer_words: int) -> bool:
    """A real question, a non-empty answer of sensible length, the chat roles in order."""
    roles = [m["role"] for m in record["messages"]]
    if roles[0] != "system" or roles[-2:] != ["user", "assistant"]:
        return False
    question, answer = question_of(record).strip(), answer_of(record).strip()
    if not answer or "|" in answer and record["meta"]["type"] != "points_to_output":
        return False
    if record["meta"]["type"] == "points_to_output":
        return len(answer.split()) >= 10
    words = len(question.split())
    return 3 <= words <= 60 and question.endswith("?") and len(answer.split()) <= max_answer_words


def is_grounded(answer: str, source: str, min_support: float = 0.8) -> bool:
    """Every number in the answer appears in the source, and most of its content words do too."""
    if answer.startswith(REFUSAL):
        return True
    answer = _CITATION.sub(" ", answer).strip()
    source_lower = source.lower()
    if not numbers(answer) <= numbers(source):
        return False
    source_words = set(_WORD.findall(source_lower))
    content = [w for w in _WORD.findall(answer.lower()) if w not in _FILLER]
    if not content:
        return False
    supported = sum(w in source_words or w.rstrip("s") in source_words for w in content)
    return supported / len(content) >= min_support


def _setting(record: dict) -> tuple[str, bool]:
    """Pairs compete as duplicates only within one type and one context setting."""
    return record["meta"]["type"], record["meta"]["with_context"]


def _shingles(text: str) -> set[bytes]:
    words = _WORD.findall(text.lower())
    return {" ".join(words[i:i + 2]).encode() for i in range(max(1, len(words) - 1))} | {w.encode() for w in words}


def drop_duplicates(records: Sequence[dict], threshold: float, num_perm: int = 128) -> tuple[list[dict], int, int]:
    """Keep the first of each group of (near-)identical questions; returns kept, exact and near counts."""
    from datasketch import MinHash, MinHashLSH

    kept: list[dict] = []
    seen: set[tuple] = set()
    indexes: dict[tuple, MinHashLSH] = {}
    answers: dict[str, str] = {}
    exact = near = 0
    for number, record in enumerate(records):
        setting = _setting(record)
        question = " ".join(_WORD.findall(question_of(record).lower()))
        if (setting, question) in seen:
            exact += 1
            continue
        signature = MinHash(num_perm=num_perm, seed=1)
        signature.update_batch(list(_shingles(question)))
        if setting not in indexes:   # building an LSH solves for its bands: once per setting, not per record
            indexes[setting] = MinHashLSH(threshold=threshold, num_perm=num_perm)
        index = indexes[setting]
        if any(answers[key] == answer_of(record) for key in index.query(signature)):
            near += 1
            continue
        index.insert(str(number), signature)
        answers[str(number)] = answer_of(record)
        seen.add((setting, question))
        kept.append(record)
    return kept, exact, near


def drop_leaked(records: Sequence[dict], held_out: Sequence[str], embed: Callable[[list[str]], np.ndarray],
                threshold: float) -> tuple[list[dict], int]:
    """Drop pairs whose question is within `threshold` cosine of any held-out question."""
    if not held_out or not records:
        return list(records), 0
    questions = sorted({question_of(r) for r in records})
    similarity = embed(questions) @ embed(list(held_out)).T       # (training questions, held-out questions)
    leaked = {q for q, row in zip(questions, similarity) if row.max() > threshold}
    kept = [r for r in records if question_of(r) not in leaked]
    return kept, len(records) - len(kept)


def apply_gates(records: Sequence[dict], sources: dict[str, str], held_out: Sequence[str],
                embed: Callable[[list[str]], np.ndarray], *, near_duplicate_threshold: float,
                leakage_threshold: float, max_answer_words: int) -> tuple[list[dict], Counter]:
    """The pairs that pass every gate, and how many each gate rejected."""
    rejected: Counter = Counter()
    passed: list[dict] = []
    for record in records:
        if not check_format(record, max_answer_words):
            rejected["format"] += 1
        # against every chunk the pair names: a RAFT answer quotes the oracle, then a line of another block
        # a correction typed in the app is the team's word against the documents: it needs no support there
        elif record["meta"]["type"] != "feedback" and not is_grounded(answer_of(record), "\n".join(sources.get(i, "") for i in record["meta"]["chunk_ids"])):
            rejected["ungrounded"] += 1
        else:
            passed.append(record)
    passed, rejected["duplicate"], rejected["near_duplicate"] = drop_duplicates(passed, near_duplicate_threshold)
    passed, rejected["leakage"] = drop_leaked(passed, held_out, embed, leakage_threshold)
    return passed, rejected
