"""`assistant ask` and `assistant chat` through the real CLI entry point."""
from __future__ import annotations

import json

from assistant.cli import main


def cli_flags(cfg) -> list[str]:
    return ["--corpus", str(cfg.corpus), "--workspace", str(cfg.home), "--base-model", cfg.base_model,
            "--max-new-tokens", "6"]


def test_ask_json_has_the_answer_and_its_sources(kb_cfg, capsys):
    assert main(["ask", "How much does a household membership cost?", "--mode", "rag", "--json", *cli_flags(kb_cfg)]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["mode"] == "rag" and record["answer"] and record["latency_s"] > 0
    assert record["sources"][0]["n"] == 1 and {"title", "section", "source", "text"} <= set(record["sources"][0])


def test_ask_streams_text_and_lists_sources(kb_cfg, capsys):
    assert main(["ask", "Who collects the fees?", "--mode", "hybrid", *cli_flags(kb_cfg)]) == 0
    out, err = capsys.readouterr()
    assert "Sources (* = cited):\n[1] " in out and "[hybrid:" in err


def test_ask_before_training_says_how_to_get_an_adapter(kb_cfg, tmp_path, capsys):
    flags = cli_flags(kb_cfg)
    flags[flags.index("--workspace") + 1] = str(tmp_path / "fresh")
    assert main(["ask", "Who collects the fees?", "--mode", "offline", *flags]) == 0
    assert "assistant train" in capsys.readouterr().out


def test_chat_refuses_an_open_host_without_a_login(capsys):
    assert main(["chat", "--host", "0.0.0.0"]) == 2
    assert "--share-auth user:password" in capsys.readouterr().err
    assert main(["chat", "--share-auth", "nopassword"]) == 2
