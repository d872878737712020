"""Split: train and validation by phrasing, so that every document's facts reach training.

For knowledge injection a fact the model never trains on cannot be known offline, so no document is
held out. Validation holds out phrasings instead: for a seeded share of the content points, one of
its questions (its closed-book qa pair and, where there is one, its RAFT pair) goes to validation,
and the point's other phrasings stay in training. Validation then measures what the evaluation asks:
recall of a trained fact from a question worded differently. Refusals have no content point; each
refusal question (with and without context) is its own group, so one never sits on both sides.
Training rows are ordered by phrasing round (`meta.round`): with a budget that buys less than an
epoch, every fact is seen once before any is seen twice.
"""
from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Sequence


def split_by_phrasing(records: Sequence[dict], validation_fraction: float, seed: int) -> tuple[list[dict], list[dict]]:
    """(train, validation): one held-out phrasing for a seeded share of the content points, and a seeded
    share of the refusal questions."""
    rng = random.Random(seed)
    rounds: dict[str, set[int]] = defaultdict(set)
    for record in records:
        if "point_id" in record["meta"]:
            rounds[record["meta"]["point_id"]].add(record["meta"]["round"])
    held: set[tuple] = set()
    for point_id in sorted(rounds):
        # a point asked only one way keeps it: held out, the fact would never be trained
        if len(rounds[point_id]) >= 2 and rng.random() < validation_fraction:
            held.add(("point", point_id, rng.choice(sorted(rounds[point_id]))))
    refusals = sorted({r["meta"]["question"] for r in records if r["meta"]["type"] == "refusal"})
    rng.shuffle(refusals)
    count = round(len(refusals) * validation_fraction)
    if validation_fraction > 0 and len(refusals) >= 2:
        count = min(max(count, 1), len(refusals) - 1)
    held.update(("refusal", question) for question in refusals[:count])
    train = [r for r in records if split_key(r) not in held]
    validation = [r for r in records if split_key(r) in held]
    return order_by_round(train, seed), validation


def split_key(record: dict) -> tuple:
    meta = record["meta"]
    if "point_id" in meta:
        return ("point", meta["point_id"], meta["round"])
    if meta["type"] == "refusal":
        return ("refusal", meta["question"])
    return ("document", meta["doc_id"])


def order_by_round(records: Sequence[dict], seed: int) -> list[dict]:
    """First phrasings of every point first (shuffled), then the second ones, and so on; pairs without a
    round (section rewrites, refusals) are spread over the first round."""
    rng = random.Random(seed)
    by_round: dict[int, list[dict]] = defaultdict(list)
    for record in records:
        by_round[record["meta"].get("round", 0)].append(record)
    ordered: list[dict] = []
    for number in sorted(by_round):
        group = by_round[number]
        rng.shuffle(group)
        ordered.extend(group)
    return ordered
