"""`assistant run` keeps to train.run_minutes: the training budget is cut by what index, synth and the
evaluation (timed here with one batch of real answers from the tiny model) will take."""
from __future__ import annotations


def _with_train(cfg, **train):
    return cfg.model_copy(update={"train": cfg.train.model_copy(update=train)})


def test_the_training_budget_leaves_the_evaluation_its_time(kb_cfg, capsys):
    from assistant.pipeline import MIN_TRAIN_MINUTES, training_minutes
    from eval.evaluate import FIXED_SECONDS, estimate_seconds

    cfg = _with_train(kb_cfg, budget_minutes=12.0, run_minutes=30.0)
    eval_s, how = estimate_seconds(cfg)
    assert eval_s > FIXED_SECONDS and "per rag answer" in how
    assert training_minutes(cfg, elapsed_s=0.0)[0] == 12.0                         # it all fits: the budget stands
    tight = _with_train(cfg, run_minutes=eval_s / 60 + 5.0)                      # five minutes left for training
    assert MIN_TRAIN_MINUTES < training_minutes(tight, elapsed_s=0.0)[0] < 12.0   # (timed again: not exactly 5)
    assert "instead of 12" in capsys.readouterr().err
    assert training_minutes(tight, elapsed_s=20 * 60.0)[0] == MIN_TRAIN_MINUTES  # too slow a machine: the minimum,
    assert "needs about" in capsys.readouterr().err                            # and it says so
    assert training_minutes(_with_train(cfg, run_minutes=0.0), elapsed_s=1e6) == (12.0, None)   # no cap asked for


def test_the_evaluation_gets_what_the_run_has_left_and_at_least_its_own_budget(kb_cfg):
    from assistant.pipeline import eval_minutes

    cfg = kb_cfg.model_copy(update={"eval": kb_cfg.eval.model_copy(update={"budget_minutes": 10.0})})
    assert eval_minutes(_with_train(cfg, run_minutes=30.0), elapsed_s=15 * 60.0) == 15.0
    assert eval_minutes(_with_train(cfg, run_minutes=30.0), elapsed_s=25 * 60.0) == 10.0
    assert eval_minutes(_with_train(cfg, run_minutes=0.0), elapsed_s=0.0) == 10.0
    # training that overran its budget to reach train.min_steps does not cut the evaluation's estimated time
    assert eval_minutes(_with_train(cfg, run_minutes=30.0), elapsed_s=25 * 60.0, estimate_s=18 * 60.0) == 18.0


def test_the_run_cap_does_not_change_which_adapter_a_run_finds(kb_cfg):
    from training.sft import adapter_inputs

    a = adapter_inputs(_with_train(kb_cfg, run_minutes=30.0), None, [])
    b = adapter_inputs(_with_train(kb_cfg, run_minutes=45.0), None, [])
    assert a == b and adapter_inputs(_with_train(kb_cfg, budget_minutes=5.0), None, []) != a
