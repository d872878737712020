"""`assistant eval` end to end on the tiny corpus with the tiny random model, and its CLI errors."""
from __future__ import annotations

import json

from assistant.cli import main


def test_bad_questions_file_names_the_line(tmp_path, capsys, tiny_cfg):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "fine"}\n{"question": }\n', encoding="utf-8")
    code = main(["eval", "--questions", str(bad), "--workspace", str(tmp_path / "ws")])
    assert code == 2
    assert f"{bad}:2: not valid JSON" in capsys.readouterr().err


def test_unknown_mode_is_refused(capsys, tmp_path):
    assert main(["eval", "--modes", "base,turbo", "--workspace", str(tmp_path / "ws")]) == 2
    assert "turbo" in capsys.readouterr().err


def test_eval_base_and_rag_on_tiny_corpus(tiny_cfg, capsys):
    from eval.evaluate import evaluate
    from indexing.store import build_index

    cfg = tiny_cfg.model_copy(update={"answer": tiny_cfg.answer.model_copy(update={"max_new_tokens": 4}),
                                      "eval": tiny_cfg.eval.model_copy(update={"limit": 3, "bootstrap_samples": 200})})
    build_index(cfg, progress=False)
    report = evaluate(cfg, modes=("base", "rag"), progress=False)
    rows = [json.loads(line) for line in (report.report_dir / "scores.jsonl").read_text().splitlines()]
    assert {r["mode"] for r in rows} == {"base", "rag"} and len(rows) == 6
    rag = [r for r in rows if r["mode"] == "rag"]
    assert all(r["contexts"] and r["context_precision"] is not None for r in rag if r["kind"] != "unanswerable")
    base = [r for r in rows if r["mode"] == "base"]
    assert all(r["context_precision"] is None and r["missing"]["context_precision"] for r in base)
    assert report.summary["skipped_modes"] == {}
    assert (report.report_dir / "report.html").exists()

    second = evaluate(cfg, modes=("base", "rag"), progress=False)       # answers come from the cache
    assert second.report_dir != report.report_dir
    code = main(["eval", "--compare", str(report.report_dir), str(second.report_dir), "--json"])
    shown = json.loads(capsys.readouterr().out)
    assert code == 0 and shown["paths"]["rag"]["key_fact_accuracy"]["change"] == 0


def test_a_changed_search_width_or_decode_vocabulary_is_not_answered_from_the_cache(tiny_cfg):
    """Both change what an answer says (another context, another token), so both key the answer cache."""
    from eval.paths import answer_settings

    settings = lambda cfg: answer_settings(cfg, "adapter", "index")
    wider = tiny_cfg.model_copy(update={"retrieve": tiny_cfg.retrieve.model_copy(update={"search_ef": 512})})
    full = tiny_cfg.model_copy(update={"answer": tiny_cfg.answer.model_copy(update={"decode_vocabulary": "full"})})
    assert settings(tiny_cfg) == settings(tiny_cfg.model_copy())
    assert settings(wider) != settings(tiny_cfg) != settings(full)
