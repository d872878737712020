"""Split: train and validation by source document, so validation measures generalisation, not memory.

Every pair of one document lands on the same side. Refusals have no document; each refusal question
(with and without context) is its own group, so the same question never sits on both sides either.
"""
from __future__ import annotations

import random
from collections.abc import Sequence


def split_group(record: dict) -> str:
    meta = record["meta"]
    return f"doc:{meta['doc_id']}" if meta["doc_id"] else f"question:{meta['question']}"


def split_by_document(records: Sequence[dict], validation_fraction: float, seed: int) -> tuple[list[dict], list[dict]]:
    """(train, validation): a seeded share of the document groups, and of the refusal groups, to validation."""
    documents = sorted({split_group(r) for r in records if r["meta"]["doc_id"]})
    refusals = sorted({split_group(r) for r in records if not r["meta"]["doc_id"]})
    rng = random.Random(seed)
    held: set[str] = set()
    for groups in (documents, refusals):
        rng.shuffle(groups)
        # At least one group each side whenever there are two, so both files are useful.
        count = round(len(groups) * validation_fraction)
        if validation_fraction > 0 and len(groups) >= 2:
            count = min(max(count, 1), len(groups) - 1)
        held.update(groups[:count])
    train = [r for r in records if split_group(r) not in held]
    validation = [r for r in records if split_group(r) in held]
    return train, validation
