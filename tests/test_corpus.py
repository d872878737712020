"""The shipped corpus and its evaluation sets are well formed and honest."""
from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest

from assistant.core.config import SHIPPED_CORPUS

EVAL = SHIPPED_CORPUS.parent / "eval"
KINDS = {"fact", "numeric", "procedure", "multi_hop", "unanswerable"}
FRONT_MATTER = re.compile(r"\A---\n(.*?)\n---\n", re.S)


def read_docs(folder: Path) -> dict[str, str]:
    docs = {}
    for path in sorted(folder.glob("*.md")):
        text = path.read_text(encoding="utf-8")
        match = FRONT_MATTER.match(text)
        assert match, f"{path}: no front matter"
        fields = dict(line.split(":", 1) for line in match.group(1).splitlines() if ":" in line)
        fields = {k.strip(): v.split("#")[0].strip() for k, v in fields.items()}
        assert {"id", "title", "type", "updated"} <= fields.keys(), f"{path}: front matter lacks a field"
        assert fields["id"] == path.stem, f"{path}: id {fields['id']!r} differs from the file name"
        assert fields["id"] not in docs, f"{path}: duplicate id"
        docs[fields["id"]] = text[match.end():]
    return docs


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.fixture(scope="module")
def docs() -> dict[str, str]:
    return read_docs(SHIPPED_CORPUS)


@pytest.fixture(scope="module")
def heldout() -> list[dict]:
    return read_jsonl(EVAL / "heldout.jsonl")


def test_corpus_is_big_enough(docs):
    words = sum(len(text.split()) for text in docs.values())
    assert len(docs) >= 30
    assert words >= 15_000


def test_heldout_schema_and_mix(heldout, docs):
    assert len(heldout) >= 120
    kinds = Counter(q["kind"] for q in heldout)
    assert set(kinds) <= KINDS, kinds
    assert kinds["unanswerable"] >= 10
    assert len({q["id"] for q in heldout}) == len(heldout), "duplicate ids"
    for q in heldout:
        assert {"id", "question", "reference", "key_facts", "source_ids", "kind"} <= q.keys(), q
        assert q["question"].strip() and q["reference"].strip(), q["id"]
        if q["kind"] == "unanswerable":
            assert q["source_ids"] == [], q["id"]
        else:
            assert q["key_facts"] and q["source_ids"], q["id"]
            missing = [s for s in q["source_ids"] if s not in docs]
            assert not missing, f"{q['id']}: unknown source ids {missing}"
        if q["kind"] == "multi_hop":
            assert len(set(q["source_ids"])) >= 2, q["id"]


def test_fact_key_facts_occur_verbatim_in_a_cited_source(heldout, docs):
    for q in heldout:
        if q["kind"] != "fact":
            continue
        cited = " ".join(docs[s] for s in q["source_ids"]).lower()
        for fact in q["key_facts"]:
            assert fact.lower() in cited, f"{q['id']}: key fact {fact!r} not in {q['source_ids']}"


def test_no_duplicate_questions(heldout):
    normalised = Counter(re.sub(r"\W+", " ", q["question"].lower()).strip() for q in heldout)
    assert [q for q, n in normalised.items() if n > 1] == []


def test_general_set():
    general = read_jsonl(EVAL / "general.jsonl")
    assert len(general) >= 50
    assert all(q["key_facts"] and q["question"].strip() for q in general)
    assert len({q["question"] for q in general}) == len(general)


def test_tiny_fixture_corpus_is_separate_and_valid():
    tiny = read_docs(Path(__file__).parent / "fixtures" / "tiny_corpus")
    assert 2 <= len(tiny) <= 10
    questions = read_jsonl(Path(__file__).parent / "fixtures" / "tiny_questions.jsonl")
    assert all(set(q["source_ids"]) <= tiny.keys() for q in questions)
