"""The whole pipeline, index -> synth -> train -> eval, resumable stage by stage (what `assistant run` calls).

    assistant run --stop-after synth

Each stage skips itself when its manifest says its inputs have not changed, so a re-run after
a kill, or after editing one document, redoes only what changed.

The run keeps to `train.run_minutes` (30) where the machine allows: before training, one batch of answers
times how long the evaluation will take here, and training gets what is left (never more than
`train.budget_minutes`). On a machine too slow for any training to fit, it says so and trains the minimum.
Training may also overrun its budget to reach `train.min_steps`. The evaluation then gets what is left of
the run, and at least its own estimate and `eval.budget_minutes`, for its checks.
"""
from __future__ import annotations

import sys
import time

from eval.evaluate import estimate_seconds, evaluate
from indexing.store import build_index
from training.dataset import build_dataset
from training.sft import train_adapter


MIN_TRAIN_MINUTES = 3.0     # the least a cut budget leaves training; train.min_steps may still take it past


def run_pipeline(cfg, stop_after: str | None = None) -> dict:
    """Run the stages in order; returns each stage's result and wall time."""
    started = time.perf_counter()
    eval_estimate = {"s": None}     # timed before training, for the evaluation's own budget

    def train():
        minutes, eval_estimate["s"] = training_minutes(cfg, time.perf_counter() - started)
        return train_adapter(cfg, resume=True, budget_minutes=minutes)

    stages = (
        ("index", lambda: build_index(cfg)),
        ("synth", lambda: build_dataset(cfg)),
        ("train", train),
        ("eval", lambda: evaluate(cfg, budget_minutes=eval_minutes(cfg, time.perf_counter() - started,
                                                                   eval_estimate["s"]))),
    )
    results = {}
    for name, stage in stages:
        print(f"\n=== {name} ===", file=sys.stderr, flush=True)
        start = time.perf_counter()
        report = stage()
        results[name] = {"seconds": round(time.perf_counter() - start, 1), **report.to_dict()}
        print(f"=== {name} done in {results[name]['seconds']:.0f} s ===", file=sys.stderr, flush=True)
        if name == stop_after:
            break
    return results


def training_minutes(cfg, elapsed_s: float) -> tuple[float, float | None]:
    """`train.budget_minutes`, cut so that the evaluation still ends within `train.run_minutes`; and the
    evaluation's estimated seconds (None where not timed)."""
    budget = cfg.train.budget_minutes
    if not budget or not cfg.train.run_minutes or cfg.train.max_steps:
        return budget, None
    estimate = estimate_seconds(cfg)
    if estimate is None:
        return budget, None
    eval_s, how = estimate
    left = (cfg.train.run_minutes * 60 - elapsed_s - eval_s) / 60
    if left >= budget:
        return budget, eval_s
    minutes = max(MIN_TRAIN_MINUTES, left)
    print(f"training budget {minutes:.1f} min instead of {budget:g}: the run has {cfg.train.run_minutes:g} min "
          f"(train.run_minutes), {elapsed_s / 60:.1f} went to index and synth, and the evaluation will take about "
          f"{eval_s / 60:.1f} here ({how})", file=sys.stderr, flush=True)
    if left < MIN_TRAIN_MINUTES:
        print(f"this machine needs about {(elapsed_s + eval_s) / 60 + minutes:.0f} min for the whole run; "
              f"`--limit N` evaluates fewer questions, a GPU or a bf16 CPU (AMX, AVX512-BF16) is several times faster",
              file=sys.stderr, flush=True)
    return minutes, eval_s


def eval_minutes(cfg, elapsed_s: float, estimate_s: float | None = None) -> float:
    """`eval.budget_minutes`, or what is left of `train.run_minutes` when that is more: the training budget
    was cut to leave the evaluation its estimated time, checks included, so the checks should get it, even
    where training overran its budget to reach `train.min_steps`."""
    left = (cfg.train.run_minutes * 60 - elapsed_s) / 60 if cfg.train.run_minutes else 0.0
    return max(cfg.eval.budget_minutes, left, (estimate_s or 0.0) / 60)
