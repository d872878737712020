"""The whole pipeline, index -> synth -> train -> eval, resumable stage by stage (what `assistant run` calls).

    assistant run --stop-after synth

Each stage skips itself when its manifest says its inputs have not changed, so a re-run after
a kill, or after editing one document, redoes only what changed.
"""
from __future__ import annotations

import sys
import time

from eval.evaluate import evaluate
from indexing.store import build_index
from training.dataset import build_dataset
from training.sft import train_adapter


def run_pipeline(cfg, stop_after: str | None = None) -> dict:
    """Run the stages in order; returns each stage's result and wall time."""
    stages = (
        ("index", lambda: build_index(cfg)),
        ("synth", lambda: build_dataset(cfg)),
        ("train", lambda: train_adapter(cfg, resume=True)),
        ("eval", lambda: evaluate(cfg)),
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
