"""Statistics over per-question scores: means with bootstrap intervals, paired differences, verdicts.

    python -m eval.stats workspace/finance/evals/<run-id>/scores.jsonl   # per-path key-fact means

Pure functions on plain lists and dicts. A score row is `{"question_id", "mode", "kind", METRIC: value
or None, "latency_s", "tokens", "answer"}`; None (missing) values are left out, never counted as 0.
Intervals are 95% percentile bootstraps over questions, seeded, so a report is reproducible.
"""
from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from assistant.core.modes import Mode

# The comparisons the report makes: (better-if-positive, baseline).
COMPARISONS = (("hybrid", "rag"), ("hybrid", "offline"), ("offline", "base"), ("rag", "base"))

# The decision framework: fine-tuning is worth it above 20% relative gain in the domain score over
# the best path without it, not worth it under 10%, a judgement call in between.
WORTH_IT, NOT_WORTH_IT = 0.20, 0.10


@dataclass(frozen=True)
class Estimate:
    """A mean (or mean difference) over n questions with its 95% interval; mean is None when n == 0."""
    mean: float | None
    lo: float | None
    hi: float | None
    n: int

    def to_dict(self) -> dict:
        return {"mean": self.mean, "ci": [self.lo, self.hi], "n": self.n}


def bootstrap_mean(values: Iterable[float | None], samples: int = 2000, seed: int = 0) -> Estimate:
    """Mean of the present values and the 2.5/97.5 percentiles of the resampled means."""
    data = np.array([v for v in values if v is not None], dtype=float)
    if data.size == 0:
        return Estimate(None, None, None, 0)
    mean = float(data.mean())
    if data.size == 1 or np.all(data == data[0]):
        return Estimate(mean, mean, mean, int(data.size))
    rng = np.random.default_rng(seed)
    resampled = data[rng.integers(0, data.size, size=(samples, data.size))].mean(axis=1)   # (samples,)
    lo, hi = np.percentile(resampled, [2.5, 97.5])
    return Estimate(mean, float(lo), float(hi), int(data.size))


def paired_difference(a: dict[str, float | None], b: dict[str, float | None],
                      samples: int = 2000, seed: int = 0) -> Estimate:
    """Mean of a - b over the questions both scored, resampling questions (a paired bootstrap)."""
    common = sorted(k for k in a.keys() & b.keys() if a[k] is not None and b[k] is not None)
    return bootstrap_mean([a[k] - b[k] for k in common], samples, seed)


def verdict(better: str, baseline: str, difference: Estimate, scale: float = 100.0, unit: str = "points") -> str:
    """A plain sentence: who wins by how much, or that the interval straddles zero."""
    if difference.mean is None:
        return f"{better} vs {baseline}: not measured (no question scored by both)"
    mean, lo, hi = difference.mean * scale, difference.lo * scale, difference.hi * scale
    if lo > 0:
        return f"{better} beats {baseline} by {mean:+.1f} {unit} [{lo:.1f}, {hi:.1f}]"
    if hi < 0:
        return f"{baseline} beats {better} by {-mean:+.1f} {unit} [{-hi:.1f}, {-lo:.1f}]"
    return f"no clear difference between {better} and {baseline} ({mean:+.1f} {unit} [{lo:.1f}, {hi:.1f}])"


def values_by_question(rows: Sequence[dict], mode: str, metric: str) -> dict[str, float | None]:
    return {r["question_id"]: r.get(metric) for r in rows if r["mode"] == mode}


def summarise_paths(rows: Sequence[dict], modes: Sequence[str], metrics: Sequence[str],
                    samples: int = 2000, seed: int = 0) -> dict[str, dict[str, dict]]:
    """{mode: {metric: {"mean", "ci": [lo, hi], "n"}}}."""
    return {mode: {metric: bootstrap_mean(values_by_question(rows, mode, metric).values(), samples, seed).to_dict()
                   for metric in metrics}
            for mode in modes}


def compare_paths(rows: Sequence[dict], modes: Sequence[str], metrics: Sequence[str],
                  samples: int = 2000, seed: int = 0) -> dict[str, dict[str, dict]]:
    """{"hybrid-vs-rag": {metric: {"mean", "ci", "n", "verdict"}}} for the comparisons both paths ran."""
    out: dict[str, dict[str, dict]] = {}
    for better, baseline in COMPARISONS:
        if better not in modes or baseline not in modes:
            continue
        per_metric = {}
        for metric in metrics:
            difference = paired_difference(values_by_question(rows, better, metric),
                                           values_by_question(rows, baseline, metric), samples, seed)
            per_metric[metric] = {**difference.to_dict(), "verdict": verdict(better, baseline, difference)}
        out[f"{better}-vs-{baseline}"] = per_metric
    return out


def by_kind(rows: Sequence[dict], modes: Sequence[str], metric: str) -> dict[str, dict[str, float | None]]:
    """{kind: {mode: mean}} over the questions of each kind (None where none was scored)."""
    kinds = sorted({r.get("kind") or "unlabelled" for r in rows})
    table: dict[str, dict[str, float | None]] = {}
    for kind in kinds:
        table[kind] = {}
        for mode in modes:
            present = [r[metric] for r in rows if r["mode"] == mode and (r.get("kind") or "unlabelled") == kind
                       and r.get(metric) is not None]
            table[kind][mode] = float(np.mean(present)) if present else None
    return table


def cost(rows: Sequence[dict], modes: Sequence[str]) -> dict[str, dict[str, float | None]]:
    """Latency p50/p95 (s), generated tokens per second, and answer length (words) per path."""
    out = {}
    for mode in modes:
        mine = [r for r in rows if r["mode"] == mode]
        latency = np.array([r["latency_s"] for r in mine if r.get("latency_s") is not None], dtype=float)
        tokens = sum(r.get("tokens") or 0 for r in mine)
        out[mode] = {
            "latency_p50_s": float(np.percentile(latency, 50)) if latency.size else None,
            "latency_p95_s": float(np.percentile(latency, 95)) if latency.size else None,
            "tokens_per_s": float(tokens / latency.sum()) if latency.size and latency.sum() > 0 else None,
            "answer_words": float(np.mean([len(r.get("answer", "").split()) for r in mine])) if mine else None,
            "n": len(mine),
        }
    return out


def relative_gain(tuned: float | None, reference: float | None) -> float | None:
    """(tuned - reference) / reference, None when it cannot be formed."""
    if tuned is None or reference is None or reference <= 0:
        return None
    return (tuned - reference) / reference


def _significant(differences: dict, name: str, metric: str) -> bool:
    found = differences.get(name, {}).get(metric)
    return bool(found and found["ci"][0] is not None and found["ci"][0] > 0)


def recommend(paths: dict[str, dict[str, dict]], differences: dict[str, dict[str, dict]],
              metric: str = "key_fact_accuracy") -> dict:
    """Apply the decision framework to measured means: {"verdict", "relative_gain", "reasons": [...]}."""
    def mean(mode: str) -> float | None:
        return paths.get(mode, {}).get(metric, {}).get("mean")

    without = {m.value: mean(m) for m in Mode if not m.tuned and mean(m) is not None}
    tuned = {m.value: mean(m) for m in Mode if m.tuned and mean(m) is not None}
    if not without or not tuned:
        return {"verdict": "not measured", "relative_gain": None,
                "reasons": ["Both a path without fine-tuning (base or rag) and one with it (offline or hybrid) "
                            "must be scored; train an adapter with `assistant train` and evaluate again."]}
    best_without, best_tuned = max(without, key=without.get), max(tuned, key=tuned.get)
    gain = relative_gain(tuned[best_tuned], without[best_without])
    if gain is None:
        verdict = "worth it" if tuned[best_tuned] > 0 else "not worth it"
        shown = "from zero"
    else:
        verdict = "worth it" if gain > WORTH_IT else "not worth it" if gain < NOT_WORTH_IT else "grey zone"
        shown = f"{gain:+.0%} relative"
    reasons = [f"Fine-tuning is {verdict}: the best tuned path ({best_tuned}, {tuned[best_tuned]:.1%}) against the best "
               f"path without it ({best_without}, {without[best_without]:.1%}) is {shown} on {metric.replace('_', ' ')} "
               f"(worth it above {WORTH_IT:.0%}, not under {NOT_WORTH_IT:.0%})."]
    if _significant(differences, "rag-vs-base", metric):
        reasons.append("Retrieval adds on its own (rag beats base): keep RAG wherever the documents change, "
                       "since an index update is minutes and a retrain is not.")
    elif "rag-vs-base" in differences:
        reasons.append("Retrieval alone shows no clear gain over the base model here: check retrieval quality "
                       "(`assistant eval --retrieval`) before relying on it.")
    if _significant(differences, "hybrid-vs-rag", metric) and _significant(differences, "hybrid-vs-offline", metric):
        reasons.append("Hybrid beats both rag and offline: each part adds, so serve hybrid.")
    elif "hybrid-vs-rag" in differences and "hybrid-vs-offline" in differences:
        reasons.append("Hybrid does not clearly beat both rag and offline: the simpler path that ties it is enough.")
    return {"verdict": verdict, "relative_gain": gain, "best_without": best_without, "best_tuned": best_tuned,
            "reasons": reasons}


if __name__ == "__main__":
    from assistant.core.jsonl import read_jsonl

    loaded = [record for _, record in read_jsonl(Path(sys.argv[1]))]
    found_modes = sorted({r["mode"] for r in loaded})
    for name, estimate in summarise_paths(loaded, found_modes, ["key_fact_accuracy"]).items():
        print(name, json.dumps(estimate))
    print(json.dumps(compare_paths(loaded, found_modes, ["key_fact_accuracy"]), indent=1))
