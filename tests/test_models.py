"""Models load offline: the packaged Gemma 3 270M and MiniLM, or a clear error."""
from __future__ import annotations

import pytest

from assistant.core.config import load_config
from assistant.core.models import MissingModelError, load_base_model, load_embedder
from assistant.core.prompts import build_messages


def test_missing_model_is_a_clear_error(tmp_path):
    cfg = load_config(overrides={"base_model": str(tmp_path / "no-such-model")})
    with pytest.raises(MissingModelError, match="--base-model"):
        load_base_model(cfg)


def test_packaged_embedder_embeds():
    vectors = load_embedder(load_config().embed_model).encode(["expense report", "travel claim"], normalize_embeddings=True)
    assert vectors.shape == (2, 384)
    assert float(vectors[0] @ vectors[1]) > 0.3


def test_tiny_model_uses_the_project_chat_template(tiny_cfg):
    model, tokenizer = load_base_model(tiny_cfg)
    text = tokenizer.apply_chat_template(build_messages("hello"), tokenize=False, add_generation_prompt=True)
    assert text.startswith("<bos><start_of_turn>user\n") and text.endswith("<start_of_turn>model\n")


@pytest.mark.parametrize("rows", [1, 3])
def test_the_output_layer_gets_the_last_position_in_row_major_strides(tiny_cfg, rows):
    """The head of a frozen model (a merged adapter) folds its input into one matrix product only when the
    strides are row-major to the letter; a one-question prefill's [1, 1, d] slice counts as contiguous to
    torch with its prompt-length stride, and in bf16 took 0.78 s instead of 0.06 on the real model."""
    import torch

    model, _ = load_base_model(tiny_cfg)
    model.requires_grad_(False)
    seen = []
    model.get_output_embeddings().register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    with torch.inference_mode():
        model(input_ids=torch.arange(5, 12).repeat(rows, 1), logits_to_keep=1)
    hidden = seen[0]
    assert hidden.shape == (rows, 1, model.config.hidden_size)
    assert hidden.stride() == (hidden.shape[-1], hidden.shape[-1], 1)


@pytest.mark.e2e
def test_packaged_model_loads_and_generates():
    cfg = load_config()
    model, tokenizer = load_base_model(cfg)
    inputs = tokenizer.apply_chat_template(build_messages("What is the capital of France?"),
                                           add_generation_prompt=True, return_tensors="pt", return_dict=True)
    output = model.generate(**inputs, max_new_tokens=8, do_sample=False)
    new_tokens = output[0][inputs["input_ids"].shape[1]:]
    assert 0 < len(new_tokens) <= 8
    assert tokenizer.decode(new_tokens, skip_special_tokens=True).strip()


def test_two_callers_starting_at_once_convert_the_packaged_model_once(tmp_path, monkeypatch):
    """The conversion is slow (~40 s) and writes a folder: a second caller waits for the first's copy
    rather than converting again over it. The callers are threads here; another process takes the same
    file lock. (The conversion itself is stood in for: the real one takes 40 s, and every other test of
    the packaged model runs through it.)"""
    import threading
    import time

    import assistant.core.models as models

    conversions = []

    def slow_conversion(gguf, target):
        conversions.append(target)
        time.sleep(0.5)
        target.mkdir(parents=True)
        (target / "config.json").write_text("{}")
        (target / "model.safetensors").write_bytes(b"weights")

    monkeypatch.setattr(models, "_convert_gguf", slow_conversion)
    monkeypatch.setattr(models, "packaged_gguf", lambda: tmp_path / "model.gguf")
    cfg = load_config(overrides={"model_cache": str(tmp_path / "cache")})
    found = []
    callers = [threading.Thread(target=lambda: found.append(models.base_model_path(cfg))) for _ in range(2)]
    for caller in callers:
        caller.start()
    for caller in callers:
        caller.join(30)
    assert len(conversions) == 1
    assert found == [tmp_path / "cache" / "gemma3-270m"] * 2
