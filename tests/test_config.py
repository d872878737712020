"""One typed config: defaults < assistant.toml < ASSISTANT_* environment < flags."""
from __future__ import annotations

import pytest

from assistant.core.config import ConfigError, TrainConfig, load_config


def test_precedence(tmp_path, monkeypatch):
    toml = tmp_path / "assistant.toml"
    toml.write_text("seed = 7\n[train]\nepochs = 5\nlora_r = 4\n[retrieve]\ntop_k = 6\n")
    monkeypatch.setenv("ASSISTANT_TRAIN__EPOCHS", "2")
    cfg = load_config(toml, overrides={"retrieve": {"top_k": 9}})
    assert cfg.seed == 7                  # from the file
    assert cfg.train.lora_r == 4          # from the file
    assert cfg.train.epochs == 2.0        # environment beats the file
    assert cfg.retrieve.top_k == 9        # flags beat everything
    assert cfg.train.learning_rate == TrainConfig().learning_rate  # default untouched


def test_bad_value_names_the_setting(tmp_path):
    with pytest.raises(ConfigError, match=r"retrieve\.top_k"):
        load_config(overrides={"retrieve": {"top_k": 0}})
    with pytest.raises(ConfigError, match="train.nonsense|nonsense"):
        load_config(overrides={"train": {"nonsense": 1}})


def test_missing_or_broken_config_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("seed = = 3")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(broken)


def test_workspace_follows_the_corpus(tmp_path):
    cfg = load_config(overrides={"corpus": str(tmp_path / "handbook")})
    assert cfg.home.name == "handbook"
    assert cfg.questions_path is None
    shipped = load_config()
    assert shipped.home.name == "finance"
    assert shipped.questions_path is not None and shipped.questions_path.name == "heldout.jsonl"
