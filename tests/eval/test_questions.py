"""Question files: only `question` is required; a bad line names file:line and the fix."""
from __future__ import annotations

import json

import pytest

from eval.questions import QuestionsError, load_questions, load_validation_pairs


def write(tmp_path, *lines: str):
    path = tmp_path / "questions.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_only_question_is_required(tmp_path):
    path = write(tmp_path, '{"question": "Who approves a $30,000 purchase?"}', "",
                 '{"id": "x", "question": "Cap?", "key_facts": ["$310"], "kind": "fact"}')
    first, second = load_questions(path)
    assert first.question.startswith("Who") and first.key_facts is None and first.id == "questions-1"
    assert second.key_facts == ("$310",) and second.kind == "fact"


@pytest.mark.parametrize("line, says", [
    ('{"question": "ok"', "not valid JSON"),
    ('{"reference": "no question"}', 'missing or empty "question"'),
    ('{"question": "q", "key_facts": {"a": 1}}', "`key_facts` must be a list"),
    ('["question"]', "expected a JSON object"),
])
def test_bad_line_names_file_and_line(tmp_path, line, says):
    path = write(tmp_path, '{"question": "fine"}', line)
    with pytest.raises(QuestionsError) as err:
        load_questions(path)
    assert f"{path}:2:" in str(err.value) and says in str(err.value)


def test_duplicate_ids_are_refused(tmp_path):
    path = write(tmp_path, '{"id": "a", "question": "one"}', '{"id": "a", "question": "two"}')
    with pytest.raises(QuestionsError, match="already used on line 1"):
        load_questions(path)


def test_validation_pairs_become_questions(tmp_path):
    dataset = tmp_path / "datasets" / "d1"
    dataset.mkdir(parents=True)
    (dataset / "manifest.json").write_text("{}")
    pairs = [
        {"messages": [{"role": "user", "content": "What is the cap?"},
                      {"role": "assistant", "content": "[2] $310 a night, TR-88 first."}],
         "meta": {"type": "qa", "doc_id": "travel", "question": "What is the cap?"}},
        {"messages": [{"role": "user", "content": "Context:\n[1] x\n\nQuestion: What is the cap?"},
                      {"role": "assistant", "content": "$310 [1]."}], "meta": {"type": "raft", "doc_id": "travel",
                                                                    "question": "What is the cap?"}},
        {"messages": [{"role": "user", "content": "Who won the cup?"},
                      {"role": "assistant", "content": "The knowledge base does not cover this."}],
         "meta": {"type": "refusal", "question": "Who won the cup?"}},
    ]
    (dataset / "validation.jsonl").write_text("\n".join(json.dumps(p) for p in pairs) + "\n")
    questions, path = load_validation_pairs(tmp_path / "datasets")
    assert path == dataset / "validation.jsonl"
    assert [q.question for q in questions] == ["What is the cap?", "Who won the cup?"]
    assert questions[0].reference == "[2] $310 a night, TR-88 first." and questions[0].source_ids == ("travel",)
    assert questions[0].key_facts == ("$310", "TR-88")      # the figures it states; the citation is none
    assert questions[1].unanswerable and questions[1].key_facts is None
