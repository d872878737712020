"""Statistics on hand-made score tables: a real difference is found, a non-difference is not."""
from __future__ import annotations

import numpy as np

from eval import stats


def rows_for(mode: str, values) -> list[dict]:
    return [{"question_id": f"q{n}", "mode": mode, "kind": "fact", "key_fact_accuracy": v,
             "latency_s": 1.0 + n % 3, "tokens": 20, "answer": "one two three"} for n, v in enumerate(values)]


def test_known_difference_is_significant():
    rng = np.random.default_rng(1)
    rag = rng.uniform(0.2, 0.6, 60)
    hybrid = np.clip(rag + 0.25 + rng.normal(0, 0.05, 60), 0, 1)
    rows = rows_for("rag", rag) + rows_for("hybrid", hybrid)
    found = stats.compare_paths(rows, ["rag", "hybrid"], ["key_fact_accuracy"])["hybrid-vs-rag"]["key_fact_accuracy"]
    assert found["ci"][0] > 0.15 and found["ci"][1] < 0.35
    assert found["verdict"].startswith("hybrid beats rag by +")


def test_identical_inputs_are_not_significant():
    values = np.random.default_rng(2).uniform(0, 1, 40)
    rows = rows_for("rag", values) + rows_for("hybrid", values)
    found = stats.compare_paths(rows, ["rag", "hybrid"], ["key_fact_accuracy"])["hybrid-vs-rag"]["key_fact_accuracy"]
    assert found["mean"] == 0 and found["ci"] == [0, 0]
    assert found["verdict"].startswith("no clear difference")


def test_noisy_small_difference_is_not_significant():
    rng = np.random.default_rng(3)
    base = rng.integers(0, 2, 30).astype(float)
    offline = base.copy()
    offline[:2] = 1 - offline[:2]      # two questions flip: no real effect
    rows = rows_for("base", base) + rows_for("offline", offline)
    found = stats.compare_paths(rows, ["base", "offline"], ["key_fact_accuracy"])["offline-vs-base"]["key_fact_accuracy"]
    assert found["ci"][0] <= 0 <= found["ci"][1]


def test_worse_path_gets_reversed_verdict():
    difference = stats.Estimate(-0.2, -0.3, -0.1, 30)
    assert stats.verdict("hybrid", "rag", difference) == "rag beats hybrid by +20.0 points [10.0, 30.0]"


def test_missing_values_are_left_out_not_zero():
    estimate = stats.bootstrap_mean([1.0, None, 1.0, None])
    assert estimate.mean == 1.0 and estimate.n == 2
    assert stats.bootstrap_mean([None, None]).to_dict() == {"mean": None, "ci": [None, None], "n": 0}


def test_bootstrap_is_seeded():
    values = list(np.random.default_rng(4).uniform(0, 1, 25))
    assert stats.bootstrap_mean(values, seed=7) == stats.bootstrap_mean(values, seed=7)


def test_cost_percentiles_and_speed():
    found = stats.cost(rows_for("rag", [1.0] * 10), ["rag"])["rag"]
    assert found["latency_p50_s"] == 2.0
    assert found["answer_words"] == 3.0
    assert found["tokens_per_s"] == 200 / sum(1.0 + n % 3 for n in range(10))


def test_recommendation_applies_the_thresholds():
    def paths(rag, hybrid):
        return {"base": {"key_fact_accuracy": {"mean": 0.1}}, "rag": {"key_fact_accuracy": {"mean": rag}},
                "offline": {"key_fact_accuracy": {"mean": 0.2}}, "hybrid": {"key_fact_accuracy": {"mean": hybrid}}}

    assert stats.recommend(paths(0.5, 0.65), {})["verdict"] == "worth it"        # +30% relative
    assert stats.recommend(paths(0.5, 0.53), {})["verdict"] == "not worth it"    # +6%
    assert stats.recommend(paths(0.5, 0.575), {})["verdict"] == "grey zone"      # +15%
    assert stats.recommend({"base": {"key_fact_accuracy": {"mean": 0.1}}}, {})["verdict"] == "not measured"
