"""Shared fixtures: a tiny randomly initialised Gemma 3 (seconds to build), the tiny corpus,
and a config that points every stage at a temporary workspace."""
from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

# The reliability suite prints its tally at the end of every run, parallel or not (see its module).
pytest_plugins = ["tests.reliability.tally"]

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

FIXTURES = Path(__file__).parent / "fixtures"
TINY_CORPUS = FIXTURES / "tiny_corpus"
TINY_QUESTIONS = FIXTURES / "tiny_questions.jsonl"


def free_port() -> int:
    """A loopback port nothing listens on now, for a server a test starts."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def build_tiny_model(target: Path, *, hidden: int = 64, layers: int = 2, seed: int = 0) -> Path:
    """A 2-layer Gemma 3 with random weights and the real tokenizer (so the chat template and
    special tokens are the real ones); saved as an HF folder usable as --base-model."""
    import torch
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    from assistant.core.config import load_config
    from assistant.core.models import load_tokenizer

    # The real tokenizer comes from the packaged model (converted once per machine, ~40 s).
    tokenizer = load_tokenizer(load_config(overrides={"model_cache": str(Path("workspace/models").resolve())}))
    torch.manual_seed(seed)
    config = Gemma3TextConfig(
        vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=hidden * 2,
        num_hidden_layers=layers, num_attention_heads=2, num_key_value_heads=1, head_dim=32,
        max_position_embeddings=1024, sliding_window=128, layer_types=["sliding_attention", "full_attention"][:layers],
        pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
    )
    model = Gemma3ForCausalLM(config)
    model.save_pretrained(target)
    tokenizer.save_pretrained(target)
    return target


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny-gemma3"))


@pytest.fixture()
def tiny_cfg(tmp_path, tiny_model_dir):
    """Config for fast tests: tiny corpus, tiny model, everything under tmp_path."""
    from assistant.core.config import load_config

    return load_config(overrides={
        "corpus": str(TINY_CORPUS),
        "questions": str(TINY_QUESTIONS),
        "workspace": str(tmp_path / "ws"),
        "model_cache": str(Path("workspace/models").resolve()),
        "base_model": str(tiny_model_dir),
    })
