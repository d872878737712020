"""Precision follows the hardware, and the time budget turns into a step count that fits it."""
from __future__ import annotations

import pytest
import torch

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


def test_a_budget_too_short_for_the_reader_still_plans_the_step_floor(monkeypatch, tiny_cfg):
    """Below ~30 steps default runs landed 10 points apart on hybrid; the floor trains them past that,
    says so, and keeps it for TimeBudget. The epochs still cap it, and 0 turns it off."""
    from training import trainer as trainer_module

    monkeypatch.setattr(trainer_module, "time_training_step", lambda trainer, packs: 20.0)
    tiny_cfg.train.eval_steps, tiny_cfg.train.min_steps = 20, 30
    plan = trainer_module.plan_steps(tiny_cfg, _FakeTrainer(), [{}] * 400, [], epoch_steps=300, budget_s=420)
    # 0.95 * 420 s at 20 s a step fits 19
    assert plan["steps"] == 30 and plan["min_steps"] == 30
    assert "train.min_steps=30" in plan["why"] and "fits only 19" in plan["why"]
    assert trainer_module.plan_steps(tiny_cfg, _FakeTrainer(), [{}] * 400, [], epoch_steps=12, budget_s=420)["steps"] == 12
    roomy = trainer_module.plan_steps(tiny_cfg, _FakeTrainer(), [{}] * 400, [], epoch_steps=300, budget_s=1300)
    assert roomy["steps"] == 61 and "budget at 20.0 s per step" in roomy["why"]
    tiny_cfg.train.min_steps = 0
    assert trainer_module.plan_steps(tiny_cfg, _FakeTrainer(), [{}] * 400, [], epoch_steps=300, budget_s=420)["steps"] == 19


class _Control:
    should_training_stop = should_save = False


class _Args:
    world_size = 1


class _State:
    def __init__(self, step: int, max_steps: int):
        self.global_step, self.max_steps, self.log_history = step, max_steps, []


def test_a_spent_budget_stops_training_after_the_step_in_flight():
    """A plan that underestimated the step time still ends at the budget: here the deadline has passed."""
    import time

    from training.trainer import TimeBudget

    plan = {"steps": 50, "budget_s": 100.0, "epoch_steps": 300}
    budget = TimeBudget(time.time() - 1, plan)
    state, control = _State(0, 0), _Control()
    budget.on_train_begin(_Args(), state, control)
    assert state.max_steps == 50
    state.global_step = 3
    budget.on_step_end(_Args(), state, control)
    assert control.should_training_stop and control.should_save and "step 3 of 50" in budget.reason
    control = _Control()
    TimeBudget(None, plan).on_step_end(_Args(), state, control)
    assert not control.should_training_stop
    # with a step floor, a spent budget stops training only once the floor is reached
    floored = TimeBudget(time.time() - 1, {**plan, "min_steps": 30})
    floored.on_train_begin(_Args(), state, control)
    state.global_step = 29
    floored.on_step_end(_Args(), state, control)
    assert not control.should_training_stop and floored.reason is None
    state.global_step = 30
    floored.on_step_end(_Args(), state, control)
    assert control.should_training_stop and "step 30 of 50" in floored.reason


@pytest.mark.parametrize("seconds_per_step, grows", [(8.0, True), (40.0, False)])
def test_the_step_count_is_planned_again_from_the_pace_training_runs_at(monkeypatch, tmp_path, seconds_per_step, grows):
    """The first plan (22 steps of a 700-s budget, timed while the CPU was busy) moves to what the steps
    actually cost, the validation passes' share included, and the new count is saved for --resume."""
    import json

    from training import trainer as trainer_module

    clock = [1000.0]
    monkeypatch.setattr(trainer_module.time, "time", lambda: clock[0])
    plan = {"steps": 22, "step_s": 30.0, "budget_s": 700.0, "epoch_steps": 500, "epochs": 3, "eval_s_per_step": 0.5}
    budget = trainer_module.TimeBudget(1000.0 + 700.0, plan, tmp_path / "plan.json")
    state, control = _State(0, 0), _Control()
    budget.on_train_begin(_Args(), state, control)
    for step in range(1, 11):
        clock[0] += seconds_per_step
        state.global_step = step
        budget.on_step_end(_Args(), state, control)
    pace = seconds_per_step + 0.5
    assert (plan["steps"] > 22) is grows and (plan["steps"] < 22) is not grows
    assert state.max_steps == plan["steps"] == json.loads((tmp_path / "plan.json").read_text())["steps"]
    # the remaining steps end inside the budget, with its last 5% kept for the final checkpoint
    assert clock[0] + (plan["steps"] - 10) * pace <= 1000.0 + 0.95 * 700.0 < clock[0] + (plan["steps"] - 9) * pace
    assert not control.should_training_stop


def test_the_learning_rate_decays_to_zero_at_the_planned_step_as_the_plan_moves():
    from types import SimpleNamespace

    from training.trainer import CompletionLossTrainer

    weight = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([weight], lr=1.0)
    host = SimpleNamespace(lr_scheduler=None, step_plan={"steps": 20}, optimizer=optimizer,
                           args=SimpleNamespace(get_warmup_steps=lambda steps: 1))
    scheduler = CompletionLossTrainer.create_scheduler(host, num_training_steps=500)
    rates = []
    for step in range(40):
        if step == 10:
            host.step_plan["steps"] = 40          # re-planned: the decay stretches to the new last step
        optimizer.step()
        scheduler.step()
        rates.append(optimizer.param_groups[0]["lr"])
    assert rates[10] > rates[9]               # stretched: at step 11 of 40 the rate is higher than at 10 of 20
    assert all(later <= earlier + 1e-9 for earlier, later in zip(rates[10:], rates[11:]))
    assert rates[38] > 0 and rates[-1] == pytest.approx(0.0, abs=1e-9)
