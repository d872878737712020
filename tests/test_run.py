"""`assistant run --corpus` end to end on the tiny corpus and the tiny model, with and without
`--questions`: every stage leaves its artifact and manifest, and a re-run redoes nothing."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"
TINY_CORPUS, TINY_QUESTIONS = FIXTURES / "tiny_corpus", FIXTURES / "tiny_questions.jsonl"

FAST = ["--epochs", "1", "--limit", "4"]


def run_cli(*args: str, cwd: Path, native_bf16: str | None = None) -> dict:
    env = {**os.environ, **({"ASSISTANT_NATIVE_BF16": native_bf16} if native_bf16 is not None else {})}
    result = subprocess.run([sys.executable, "-m", "assistant", "run", "--json", *args],
                            capture_output=True, text=True, timeout=900, cwd=cwd, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture()
def tiny_run_args(tmp_path, tiny_model_dir):
    model_cache = Path("workspace/models").resolve()
    (tmp_path / "assistant.toml").write_text(
        f'model_cache = "{model_cache}"\n[train]\nmax_seq_len = 256\neval_steps = 5\n[synth]\nparaphrases = 2\n')
    return ["--corpus", str(TINY_CORPUS), "--base-model", str(tiny_model_dir), "--workspace", str(tmp_path / "ws")]


def test_run_with_questions_then_rerun_is_up_to_date(tmp_path, tiny_run_args):
    # The whole pipeline on a machine without native bf16 (AVX2-only CPUs, most laptops): every stage
    # must pick fp32 by itself, or training crawls through PyTorch's reference bf16 GEMM.
    first = run_cli(*tiny_run_args, *FAST, "--questions", str(TINY_QUESTIONS), cwd=tmp_path, native_bf16="0")
    assert set(first) == {"index", "synth", "train", "eval"}
    assert first["index"]["chunks_added"] > 0
    assert first["synth"]["train"] > 0
    adapter = Path(first["train"]["adapter"])
    assert (adapter / "adapter_config.json").exists() and (adapter / "manifest.json").exists()
    manifest = json.loads((adapter / "manifest.json").read_text())
    assert manifest["precision"] == "fp32" and manifest["hardware"]["native_bf16"] is False
    assert first["train"]["precision"] == "fp32" and first["train"]["tokens"] > 0
    report = Path(first["eval"]["report_dir"])
    assert {"report.md", "report.html", "scores.jsonl", "summary.json", "manifest.json"} <= {p.name for p in report.iterdir()}
    assert set(first["eval"]["paths"]) == {"base", "rag", "offline", "hybrid"}

    second = run_cli(*tiny_run_args, *FAST, "--questions", str(TINY_QUESTIONS), cwd=tmp_path, native_bf16="0")
    assert second["index"]["chunks_added"] == 0
    assert second["train"]["adapter"] == first["train"]["adapter"]


def test_run_without_questions_generates_a_kept_test_set(tmp_path, tiny_run_args):
    # The bf16 path, for contrast. Two steps: on a CPU without native bf16 (CI may be one) each tiny-model
    # step runs PyTorch's reference bf16 GEMM, ~20 s, and the time budget would buy eleven of them.
    result = run_cli(*tiny_run_args, *FAST, "--max-steps", "2", cwd=tmp_path, native_bf16="1")
    assert result["train"]["precision"] == "bf16" and result["train"]["steps"] == 2
    generated = tmp_path / "ws" / "questions.generated.jsonl"
    assert generated.exists()
    questions = [json.loads(line) for line in generated.read_text().splitlines() if line.strip()]
    assert questions and all(q["question"] for q in questions)
    assert result["eval"]["questions"]["generated"] is True
