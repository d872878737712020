"""Precision follows the hardware, and the time budget turns into a step count that fits it."""
from __future__ import annotations

import pytest

from assistant.core import models
from assistant.core.config import load_config


@pytest.mark.parametrize("forced, expected", [("0", False), ("1", True)])
def test_auto_follows_native_bf16(monkeypatch, forced, expected):
    monkeypatch.setenv("ASSISTANT_NATIVE_BF16", forced)
    cfg = load_config()
    assert cfg.train.bf16 == "auto" and cfg.index.embed_bf16 == "auto" and cfg.answer.dtype == "auto"
    assert models.use_bf16(cfg.train.bf16, "training") is expected
    assert models.use_bf16(cfg.index.embed_bf16, "embedding") is expected
    assert models.resolve_dtype(cfg.answer.dtype) == ("bfloat16" if expected else "float32")


def test_explicit_bf16_without_native_support_is_honoured_with_one_measured_warning(monkeypatch, capsys):
    monkeypatch.setenv("ASSISTANT_NATIVE_BF16", "0")
    monkeypatch.setattr(models, "_WARNED", set())
    assert models.use_bf16(True, "training") is True
    assert models.use_bf16(True, "training") is True
    warning = capsys.readouterr().err
    assert warning.count("warning: bf16 training") == 1 and "x slower than fp32 here" in warning
    assert models.use_bf16(False, "training") is False


def test_settings_parse_from_the_environment(monkeypatch):
    monkeypatch.setenv("ASSISTANT_TRAIN__BF16", "false")
    monkeypatch.setenv("ASSISTANT_INDEX__EMBED_BF16", "auto")
    cfg = load_config()
    assert cfg.train.bf16 is False and cfg.index.embed_bf16 == "auto"


class _FakeTrainer:
    class accelerator:
        num_processes = 1


def test_the_budget_buys_the_steps_that_fit(monkeypatch, tiny_cfg):
    from training import trainer as trainer_module

    monkeypatch.setattr(trainer_module, "time_training_step", lambda trainer, packs: 2.0)
    tiny_cfg.train.eval_steps = 10
    tiny_cfg.train.batch_size = 4
    val_packs = [{}] * 8                    # a validation pass: 0.35 * 2 s * 2 batches + 2 s checkpoint = 3.4 s
    plan = trainer_module.plan_steps(tiny_cfg, _FakeTrainer(), [{}] * 400, val_packs, epoch_steps=300, budget_s=120)
    # 0.95 * 120 s = 114 s at 2 s a step plus 3.4 s every 10 steps (2.34 s a step): 48 steps
    assert plan["steps"] == 48 and plan["step_s"] == 2.0
    assert "budget" in plan["why"]
    capped = trainer_module.plan_steps(tiny_cfg, _FakeTrainer(), [{}] * 400, val_packs, epoch_steps=20, budget_s=120)
    assert capped["steps"] == 20            # the epochs still cap what a fast machine trains
    tiny_cfg.train.max_steps = 7
    assert trainer_module.plan_steps(tiny_cfg, _FakeTrainer(), [], [], epoch_steps=300, budget_s=120)["steps"] == 7


def test_a_spent_budget_stops_training_after_the_step_in_flight(tiny_cfg, tmp_path):
    """A plan that underestimated the step time still ends at the budget: here the deadline has passed."""
    import time

    from training.trainer import StopAtDeadline

    class Control:
        should_training_stop = should_save = False

    class Args:
        world_size = 1

    class State:
        global_step, max_steps = 3, 50

    control = Control()
    stopper = StopAtDeadline(time.time() - 1)
    stopper.on_step_end(Args(), State(), control)
    assert control.should_training_stop and control.should_save and "step 3 of 50" in stopper.reason
    control = Control()
    StopAtDeadline(None).on_step_end(Args(), State(), control)
    assert not control.should_training_stop
