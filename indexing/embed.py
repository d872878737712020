"""Embed: turn chunk texts and queries into unit vectors with the configured sentence-transformers model.

    python -m indexing.embed "Who approves a purchase of 30,000 dollars?"   # prints the vector's head

bf16 autocast (`index.embed_bf16`) runs MiniLM ~2.6x faster on CPUs with AMX/AVX512-bf16 with cosine
>= 0.998 to fp32; vectors are normalised so the store's cosine distance and a dot product agree.
"""
from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable
from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np

from assistant.core.config import PACKAGED_EMBED_MODEL, Config

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer


def embedder_path(cfg: Config) -> str:
    from assistant.core.models import packaged_embedder_path

    return str(packaged_embedder_path()) if cfg.embed_model == PACKAGED_EMBED_MODEL else cfg.embed_model


@lru_cache(maxsize=4)
def _cached_tokenizer(path: str):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    tokenizer.model_max_length = 10**9   # we count long sections; the model truncates at embed time
    return tokenizer


def load_tokenize(cfg: Config) -> Callable[[str], list[int]]:
    """The embedding model's own tokenizer as a text -> token ids function (for chunk sizes)."""
    tokenizer = _cached_tokenizer(embedder_path(cfg))
    return lambda text: tokenizer.encode(text, add_special_tokens=False)


@lru_cache(maxsize=2)
def _cached_embedder(path: str, device: str | None) -> SentenceTransformer:
    from assistant.core.models import load_embedder

    return load_embedder(path, device=device)


def load_cached_embedder(cfg: Config, device: str | None = None) -> SentenceTransformer:
    """One embedder per process: the indexer, the retriever and the benchmarks share it."""
    return _cached_embedder(embedder_path(cfg), device)


def embed_texts(model: SentenceTransformer, texts: list[str], *, batch_size: int = 64, bf16: bool | str = "auto",
                progress: Callable[[int], None] | None = None) -> np.ndarray:
    """Unit vectors, shape (len(texts), dim), float32. `progress(n)` is called after each batch of n."""
    # Longest first, so each batch pads to similar lengths (what encode() does within one call).
    order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
    vectors = np.zeros((len(texts), model.get_embedding_dimension()), dtype=np.float32)
    with bf16_autocast(model, bf16):
        for start in range(0, len(texts), batch_size):
            rows = order[start:start + batch_size]
            vectors[rows] = model.encode([texts[i] for i in rows], batch_size=batch_size, convert_to_numpy=True,
                                         normalize_embeddings=True, show_progress_bar=False)
            if progress:
                progress(len(rows))
    return vectors


def embed_query_batch(model: SentenceTransformer, queries: list[str], *, bf16: bool | str = "auto") -> np.ndarray:
    """Query vectors. Torch's thread count is process-wide and the server embeds from concurrent threads,
    so it is never changed per query (it was: one query on one thread, and another request's setting
    could be restored under it); `torch.set_num_threads` belongs to whoever starts the process."""
    return embed_texts(model, queries, batch_size=64 if len(queries) != 1 else 1, bf16=bf16)


def bf16_autocast(model: SentenceTransformer, bf16: bool | str):
    """bf16 autocast where `bf16` (True, False or "auto": the hardware decides) says so."""
    import torch

    from assistant.core.models import use_bf16

    if not use_bf16(bf16, "embedding"):
        return contextlib.nullcontext()
    return torch.autocast(device_type=model.device.type, dtype=torch.bfloat16)


if __name__ == "__main__":
    from assistant.core.config import load_config

    config = load_config()
    vector = embed_texts(load_cached_embedder(config), sys.argv[1:] or ["hello"], bf16=config.index.embed_bf16)
    print(vector.shape, vector[0][:6])
