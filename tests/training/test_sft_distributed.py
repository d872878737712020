"""The distributed path: `accelerate launch` with 2 CPU processes (DDP over gloo) trains the same
adapter as one process, within tolerance (bf16 autocast and the gradient all-reduce change the
order of sums, so not bit for bit).

    .venv/bin/pytest tests/training/test_sft_distributed.py -q
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from test_sft import TINY_TRAIN, write_pairs

REPO = Path(__file__).resolve().parents[2]


def assistant_train(env: dict, dataset: Path, processes: int) -> dict:
    launcher = ([sys.executable, "-m", "accelerate.commands.launch", "--config_file",
                 str(REPO / "training/accelerate/ddp_cpu.yaml"), "--num_processes", str(processes), "-m"]
                if processes > 1 else [sys.executable, "-m"])
    done = subprocess.run([*launcher, "assistant", "train", "--dataset", str(dataset), "--json"],
                          env=env, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_two_processes_match_one(tiny_model_dir, tmp_path):
    from safetensors.torch import load_file

    dataset = write_pairs(tmp_path / "ds")
    settings = {**TINY_TRAIN, "epochs": 2, "eval_steps": 5}
    results = {}
    for processes in (1, 2):
        env = {**os.environ, "ASSISTANT_WORKSPACE": str(tmp_path / f"ws{processes}"),
               "ASSISTANT_BASE_MODEL": str(tiny_model_dir), "ASSISTANT_MODEL_CACHE": str(REPO / "workspace/models"),
               "OMP_NUM_THREADS": "1", **{f"ASSISTANT_TRAIN__{k.upper()}": str(v) for k, v in settings.items()}}
        results[processes] = assistant_train(env, dataset, processes)

    one, two = results[1], results[2]
    assert one["steps"] == two["steps"] > 0
    assert two["train_loss"] == pytest.approx(one["train_loss"], rel=0.01)
    assert two["val_loss"] == pytest.approx(one["val_loss"], rel=0.01)
    weights_one = load_file(Path(one["adapter"]) / "adapter_model.safetensors")
    weights_two = load_file(Path(two["adapter"]) / "adapter_model.safetensors")
    assert weights_one.keys() == weights_two.keys()
    for name, value in weights_one.items():
        assert torch.allclose(value, weights_two[name], rtol=0.05, atol=2e-3), name
