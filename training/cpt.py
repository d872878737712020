"""Continued pre-training data: the corpus chunks as plain next-token rows (loss on every token).

    assistant train --objective cpt        # the chunks alone
    assistant train --objective cpt+sft    # the chunks, then the pairs, on one adapter

The chunks come from the index (`indexing.store.load_chunks`), so CPT sees exactly what retrieval
serves; without an index the corpus files are read and split at their headings instead.
"""
from __future__ import annotations

import re
import sys

from assistant.core.config import Config
from assistant.core.errors import TrainDataError
from indexing.ingest import UnreadableFile, split_front_matter

_HEADING = re.compile(r"^#{1,6}\s", re.MULTILINE)
VALIDATION_EVERY = 10     # every 10th chunk is held out to watch the loss on unseen text


def corpus_texts(cfg: Config) -> list[str]:
    """One text per chunk, titled like a retrieved context block: `title > section`, then the text."""
    try:
        from indexing.store import IndexNotFound, load_chunks

        chunks = load_chunks(cfg)
    except (ImportError, IndexNotFound) as err:
        print(f"CPT: no index to read chunks from ({err}); splitting {cfg.corpus} at its headings", file=sys.stderr)
        return _texts_from_files(cfg)
    return [f"{c.title} > {c.section}\n{c.text}" if c.section else f"{c.title}\n{c.text}" for c in chunks]


def _texts_from_files(cfg: Config) -> list[str]:
    texts = []
    for path in sorted(cfg.corpus.rglob("*.md")) + sorted(cfg.corpus.rglob("*.txt")):
        try:
            _, body = split_front_matter(path.read_text(encoding="utf-8"))
        except UnreadableFile as err:
            print(f"CPT: {path}: {err} - skipped", file=sys.stderr)
            continue
        starts = [m.start() for m in _HEADING.finditer(body)] or [0]
        sections = [body[a:b].strip() for a, b in zip([0, *starts], [*starts, len(body)])]
        texts += [section for section in sections if section]
    return texts


def corpus_rows(cfg: Config, tokenizer) -> tuple[list[dict], list[dict]]:
    """Train and validation rows: `<bos> text <eos>`, cut into windows of `train.max_seq_len` tokens."""
    texts = corpus_texts(cfg)
    if not texts:
        raise TrainDataError(f"{cfg.corpus}: no text to pre-train on; index the corpus first (`assistant index`)")
    window = cfg.train.max_seq_len
    train, validation = [], []
    for number, ids in enumerate(tokenizer(texts, add_special_tokens=False)["input_ids"]):
        ids = [tokenizer.bos_token_id, *ids, tokenizer.eos_token_id]
        rows = [{"input_ids": ids[i:i + window], "labels": ids[i:i + window]} for i in range(0, len(ids), window)]
        (validation if number % VALIDATION_EVERY == VALIDATION_EVERY - 1 else train).extend(rows)
    return train, validation
