"""Evaluation questions: the held-out JSONL, the synthetic validation split, and their checks.

    python -m eval.questions corpora/finance/eval/heldout.jsonl   # validates and counts by kind

A question line needs only `question`; `id`, `reference`, `key_facts`, `source_ids` and `kind`
are optional, and each metric that needs a missing field is reported as missing for it.
A malformed line raises `QuestionsError` naming `file:line` and what to change.
"""
from __future__ import annotations

import json
import re
import sys
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

from assistant.core.errors import UserError
from assistant.core.figures import stated_figures
from assistant.core.jsonl import read_jsonl
from assistant.core.manifest import latest_artifact, sha256_json

KNOWN_KINDS = ("fact", "numeric", "procedure", "multi_hop", "unanswerable", "general", "synthetic", "generated")
UNANSWERABLE = "unanswerable"


class QuestionsError(UserError):
    """A question file cannot be used; str() names the file, the line and the fix."""


@dataclass(frozen=True)
class Question:
    id: str
    question: str
    reference: str | None = None
    key_facts: tuple[str, ...] | None = None     # None: the file gives none (a metric then reports missing)
    source_ids: tuple[str, ...] | None = None
    kind: str | None = None

    @property
    def unanswerable(self) -> bool:
        return self.kind == UNANSWERABLE

    def to_dict(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}


def _string_list(value, field: str, where: str) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, (str, int, float)) for v in value):
        raise QuestionsError(f"{where}: `{field}` must be a list of strings, got {json.dumps(value)[:80]}; "
                             f'write it as "{field}": ["..."]')
    return tuple(str(v).strip() for v in value if str(v).strip())


def parse_question(record, where: str, default_id: str) -> Question:
    """One JSON object into a Question, or QuestionsError saying what is wrong at `where` (file:line)."""
    if not isinstance(record, dict):
        raise QuestionsError(f"{where}: expected a JSON object like {{\"question\": \"...\"}}, got {type(record).__name__}")
    text = record.get("question")
    if not isinstance(text, str) or not text.strip():
        raise QuestionsError(f'{where}: missing or empty "question"; every line needs {{"question": "..."}} '
                             "(id, reference, key_facts, source_ids and kind are optional)")
    reference = record.get("reference")
    if reference is not None and not isinstance(reference, str):
        raise QuestionsError(f'{where}: "reference" must be a string (the expected answer), got {type(reference).__name__}')
    kind = record.get("kind")
    if kind is not None and (not isinstance(kind, str) or not kind.strip()):
        raise QuestionsError(f'{where}: "kind" must be a word such as {", ".join(KNOWN_KINDS[:5])}')
    return Question(
        id=str(record.get("id") or default_id),
        question=text.strip(),
        reference=reference.strip() if isinstance(reference, str) and reference.strip() else None,
        key_facts=_string_list(record.get("key_facts"), "key_facts", where),
        source_ids=_string_list(record.get("source_ids"), "source_ids", where),
        kind=kind.strip() if isinstance(kind, str) else None,
    )


def load_questions(path: Path) -> list[Question]:
    """Every question in a JSONL file; blank lines are skipped, ids must be unique."""
    path = Path(path)
    if not path.exists():
        raise QuestionsError(f"{path}: question file not found; pass --questions with a JSONL file")
    try:
        records = read_jsonl(path, QuestionsError)
    except OSError as err:
        raise QuestionsError(f"{path}: cannot be read ({err.strerror or err}); pass --questions with a JSONL file") from None
    questions: list[Question] = []
    seen: dict[str, int] = {}
    for number, record in records:
        where = f"{path}:{number}"
        question = parse_question(record, where, default_id=f"{path.stem}-{number}")
        if question.id in seen:
            raise QuestionsError(f'{where}: id "{question.id}" already used on line {seen[question.id]}; '
                                 "give every question its own id")
        seen[question.id] = number
        questions.append(question)
    if not questions:
        raise QuestionsError(f'{path}: no questions in the file; add lines like {{"question": "..."}}')
    return questions


def load_validation_pairs(datasets_dir: Path) -> tuple[list[Question], Path | None]:
    """The newest synthetic dataset's validation split as questions (reference = the assistant turn,
    key facts = the figures it states; an answer without one has none, and is scored on the other metrics).

    RAFT pairs repeat a QA pair's question with context; the first occurrence is kept."""
    dataset = latest_artifact(datasets_dir) if Path(datasets_dir).exists() else None
    path = dataset / "validation.jsonl" if dataset else None
    if path is None or not path.exists():
        return [], None
    return read_validation_questions(path), path


def read_validation_questions(path: Path) -> list[Question]:
    """One dataset's validation.jsonl as questions (see `load_validation_pairs`)."""
    questions: list[Question] = []
    seen: set[str] = set()
    for number, pair in read_jsonl(path, QuestionsError):
        try:
            text = pair["meta"]["question"].strip()      # the record's question, never parsed out of the prompt
            reference = next(m["content"] for m in pair["messages"] if m["role"] == "assistant")
        except (KeyError, StopIteration, TypeError, AttributeError) as err:
            raise QuestionsError(f"{path}:{number}: not a pair with meta.question and an assistant turn ({err}); "
                                 "re-run `assistant synth`") from err
        if text in seen:
            continue
        seen.add(text)
        meta = pair.get("meta") or {}
        questions.append(Question(
            id=f"val-{number}", question=text, reference=reference, key_facts=_stated_figures(reference),
            source_ids=(meta["doc_id"],) if meta.get("doc_id") else None,
            kind=UNANSWERABLE if meta.get("type") == "refusal" else "synthetic",
        ))
    return questions


def _stated_figures(reference: str) -> tuple[str, ...] | None:
    """A synthetic answer's key facts: the figures, codes and addresses it states (its citations left out),
    the same reading the synthesis used to keep distractors from answering a RAFT question."""
    figures = stated_figures(reference)
    return tuple(dict.fromkeys(figures)) or None


def questions_hash(questions: list[Question]) -> str:
    return sha256_json([q.to_dict() for q in questions])


def count_kinds(questions: list[Question]) -> dict[str, int]:
    return dict(Counter(q.kind or "unlabelled" for q in questions))


if __name__ == "__main__":
    for argument in sys.argv[1:]:
        try:
            loaded = load_questions(Path(argument))
        except QuestionsError as err:
            print(err, file=sys.stderr)
            sys.exit(1)
        print(f"{argument}: {len(loaded)} questions {count_kinds(loaded)}")
