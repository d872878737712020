"""The app's handlers as plain functions: chat turns, side by side, uploads, dataset and report readers."""
from __future__ import annotations

import json

from assistant.app import (compare, latest_report, model_history, respond, safe_upload_name, search_pairs,
                           store_uploads, upload_folder)
from assistant.core.manifest import build_manifest, write_manifest

QUESTION = "How much does a household membership cost per year?"


def test_a_chat_turn_streams_then_shows_sources(assistant):
    updates = list(respond(assistant, QUESTION, [], "rag"))
    assert len(updates) >= 2
    chat, sources, box, last = updates[-1]
    assert all(update[3] is None for update in updates[:-1]) and last["answer"].text == chat[-1]["content"]
    assert box == "" and [m["role"] for m in chat] == ["user", "assistant"]
    assert chat[-1]["content"] == assistant.answer(QUESTION, "rag").text
    assert "[1]" in sources and "**rag**" in sources and "tokens" in sources
    # The next turn sees the previous one, in Gradio 6's list-of-parts form, as history.
    parts = [{"role": m["role"], "content": [{"type": "text", "text": m["content"]}], "metadata": None} for m in chat]
    assert model_history(parts) == [{"role": "user", "content": QUESTION}, {"role": "assistant", "content": chat[-1]["content"]}]
    chat2, *_ = list(respond(assistant, "And for a senior?", parts, "base"))[-1]
    assert len(chat2) == 4


def test_a_truncated_message_gets_a_visible_note_not_fed_back(assistant):
    chat, sources, *_ = list(respond(assistant, "y" * 100_000, [], "base"))[-1]
    note = [m for m in chat if m.get("metadata")]
    assert note and "100,000 characters" in note[0]["content"] and "only the first" in sources
    assert all(not m.get("metadata") for m in model_history(chat))


def test_side_by_side_fills_every_path(assistant):
    cells = list(compare(assistant, QUESTION))[-1]
    assert len(cells) == 8 and all(cells)
    base_sources, rag_sources = cells[1], cells[3]
    assert "No retrieved sources" in base_sources and "[1]" in rag_sources


def test_upload_names_cannot_leave_the_upload_folder(kb_cfg, tmp_path):
    assert safe_upload_name("../../etc/cron.d/evil.md") == "evil.md"
    assert safe_upload_name("..\\..\\win.txt") == "win.txt"
    assert safe_upload_name("notes.exe") is None and safe_upload_name("..md") is None
    good = tmp_path / "tool rules.md"
    good.write_text("# Tool rules\n\nReturn tools clean.\n")
    script = tmp_path / "run.sh"
    script.write_text("rm -rf /\n")
    big = tmp_path / "big.txt"
    big.write_bytes(b"a" * 2048)
    cfg = kb_cfg.model_copy(update={"workspace": tmp_path / "ws",
                                    "index": kb_cfg.index.model_copy(update={"max_file_mb": 0.001})})
    stored, problems = store_uploads(cfg, [str(good), str(script), str(big)])
    assert stored == [upload_folder(cfg).resolve() / "tool_rules.md"]
    assert stored[0].read_text().startswith("# Tool rules")
    assert any("run.sh: not a supported type" in p for p in problems)
    assert "big.txt: 2,048 bytes is over the 0.001 MB limit (1,000 bytes; index.max_file_mb) - skipped" in problems


def test_dataset_and_report_readers(kb_cfg, tmp_path):
    cfg = kb_cfg.model_copy(update={"workspace": tmp_path / "ws"})
    summary, rows = search_pairs(cfg, "train", "")
    assert "No dataset yet" in summary and rows == []
    assert "No evaluation report yet" in latest_report(cfg)[0]

    folder = cfg.datasets_dir / "d1"
    folder.mkdir(parents=True)
    pairs = [{"messages": [{"role": "system", "content": "s"},
                           {"role": "user", "content": "Context:\n[1] Fees\n$90\n\nQuestion: What is the household fee?"},
                           {"role": "assistant", "content": "$90 [1]"}], "meta": {"type": "raft", "doc_id": "membership-fees",
                                                                  "question": "What is the household fee?"}},
             {"messages": [{"role": "user", "content": "Who runs Youth Build?"}, {"role": "assistant", "content": "Ines."}],
              "meta": {"type": "qa", "doc_id": "workshop-hours", "question": "Who runs Youth Build?"}}]
    (folder / "train.jsonl").write_text("".join(json.dumps(p) + "\n" for p in pairs))
    write_manifest(folder, build_manifest("dataset", inputs={}, config={}, seed=0))
    summary, rows = search_pairs(cfg, "train", "household")
    assert rows == [["raft", "What is the household fee?", "$90 [1]", "membership-fees"]] and "1 of 2" in summary

    report = cfg.evals_dir / "e1"
    report.mkdir(parents=True)
    (report / "report.md").write_text("# Side by side\n\n| path | score |\n|---|---|\n| hybrid | 0.8 |\n\n![plot](metrics.png)\n")
    (report / "summary.json").write_text('{"modes": ["base", "hybrid"]}')
    (report / "metrics.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    write_manifest(report, build_manifest("eval", inputs={}, config={}, seed=0))
    text, plots, summary_json = latest_report(cfg)
    assert "| hybrid | 0.8 |" in text and "![plot]" not in text
    assert plots == [str(report / "metrics.png")] and summary_json == {"modes": ["base", "hybrid"]}
