"""A run folder from hand-made score rows: every file is written, and the numbers reach them."""
from __future__ import annotations

import json

import numpy as np

from assistant.core.config import load_config
from assistant.core.manifest import read_manifest
from assistant.core.modes import Mode
from eval.evaluate import QuestionSource, summarise, write_report
from eval.questions import Question
from eval.report import compare_runs

MODES = [m.value for m in Mode]
# Hand-made domain scores: each path better than the one before, so the verdicts are known.
LEVELS = {"base": 0.1, "rag": 0.4, "offline": 0.3, "hybrid": 0.7}


def hand_made_rows(n: int = 24) -> list[dict]:
    rng = np.random.default_rng(0)
    rows = []
    for mode in MODES:
        for i in range(n):
            kind = "unanswerable" if i % 6 == 0 else ("numeric" if i % 2 else "fact")
            value = float(np.clip(LEVELS[mode] + rng.normal(0, 0.1), 0, 1))
            key_facts = None if kind == "unanswerable" else value
            rows.append({
                "question_id": f"q{i}", "set": "heldout", "mode": mode, "kind": kind, "question": f"question {i}?",
                "answer": "an answer", "contexts": ["ctx"] if mode in ("rag", "hybrid") else None,
                "domain_score": value, "key_fact_accuracy": key_facts,
                "refusal": float(value > 0.5) if kind == "unanswerable" else None,
                "context_precision": 0.8 if mode in ("rag", "hybrid") else None,
                "context_recall": 0.5 if mode in ("rag", "hybrid") else None,
                "rouge_l": value / 2, "semantic_similarity": None,
                "missing": {"semantic_similarity": "no embedding model loaded"},
                "latency_s": 1.5, "tokens": 30, "first_token_s": None,
            })
    return rows


def make_report(tmp_path):
    cfg = load_config(overrides={"workspace": str(tmp_path / "ws"), "eval": {"bootstrap_samples": 200}})
    questions = [Question(f"q{i}", f"question {i}?", kind="unanswerable" if i % 6 == 0 else "fact",
                          key_facts=None if i % 6 == 0 else ("answer",), source_ids=("doc.md",)) for i in range(24)]
    source = QuestionSource(questions=questions, path=tmp_path / "heldout.jsonl")
    forgetting = {"skipped": "no general questions in this test"}
    inputs = {"adapter": "abc123", "index": "f00d", "dataset": "d1", "questions": "q-hash"}
    rows = hand_made_rows()
    summary = summarise(cfg, rows, MODES, {}, source, forgetting, inputs)
    return write_report(cfg, summary, rows, inputs), rows


def test_report_folder_has_every_file(tmp_path):
    report, rows = make_report(tmp_path)
    folder = report.report_dir
    for name in ("report.md", "report.html", "scores.jsonl", "summary.json", "manifest.json", "metrics.png", "kinds.png"):
        assert (folder / name).stat().st_size > 0, name
    assert len((folder / "scores.jsonl").read_text().splitlines()) == len(rows)
    assert read_manifest(folder)["inputs"]["adapter"] == "abc123"
    assert not list(folder.parent.glob(".*partial"))


def test_report_states_the_measured_verdicts(tmp_path):
    report, _ = make_report(tmp_path)
    markdown = (report.report_dir / "report.md").read_text()
    assert "hybrid beats rag by +" in markdown
    assert "offline beats base by +" in markdown
    assert "Fine-tuning is worth it" in markdown
    assert "| dev half |" in markdown and "| test half |" in markdown   # the breakdowns reach the report
    assert "no embedding model loaded" in markdown          # missing values are explained, not zeroed
    assert "missing" in report.table                        # semantic similarity: no value, not 0
    html = (report.report_dir / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 2 and "<table>" in html
    assert "src=\"http" not in html                           # self-contained


def test_json_shape_and_compare(tmp_path):
    report, _ = make_report(tmp_path)
    shown = report.to_dict()
    hybrid = shown["paths"]["hybrid"]["domain_score"]
    assert set(hybrid) == {"mean", "ci", "n"} and hybrid["ci"][0] <= hybrid["mean"] <= hybrid["ci"][1]
    assert shown["differences"]["hybrid-vs-rag"]["domain_score"]["ci"][0] > 0
    summary = json.loads((report.report_dir / "summary.json").read_text())
    diff = compare_runs(summary, summary)
    assert diff["hybrid"]["domain_score"]["change"] == 0
    assert diff["base"]["semantic_similarity"]["change"] is None


def test_an_empty_breakdown_row_is_named_in_words_not_shown_as_missing_cells():
    from eval.report import _breakdown_blocks

    cell = {"key_fact_accuracy": {"mean": 0.5, "ci": [0.4, 0.6]}}
    found = {"subsets": {"dev half": {"n": 3, "paths": {"rag": cell}},
                         "seen documents": {"n": 3, "paths": {"rag": cell}},
                         "unseen documents": {"n": 0, "paths": {"rag": {}}}}, "refusal": {}}
    blocks = _breakdown_blocks(found, ["rag"])
    table = next(block for block in blocks if block[0] == "table")
    assert [row[0] for row in table[2]] == ["dev half", "seen documents"]
    assert "No answerable question has unseen documents (n = 0)." in blocks[1][1]
