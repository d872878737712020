"""The one place that imports RAGAS, so that `import ragas` works with current LangChain.

ragas 0.4.3 imports `langchain_community.chat_models.vertexai.ChatVertexAI` at module level
(ragas/llms/base.py, line 12) only to list it among the LLM classes that support n-completions.
langchain-community 0.4.x removed that module (it moved to langchain-google-vertexai), so on
an up-to-date install `import ragas` fails with ModuleNotFoundError before any metric is
reached; see vibrantlabsai/ragas issues #2741 and #2745. We never talk to Vertex AI, so a
stand-in module whose class nothing is ever an instance of is enough: the isinstance check
ragas runs with it is simply always false. When the real module exists, it is used as is.

Two more things make RAGAS fit here: its usage telemetry is switched off (evaluation runs
offline, and documents never leave the machine), and `LocalEmbeddings` hands RAGAS our own
sentence-transformers embedder, encoding texts in batches ahead of time because RAGAS asks
for them one at a time.

Everything in eval/ gets RAGAS from here:

    python -c "from eval.ragas_compat import ragas; print(ragas.__version__)"
"""
from __future__ import annotations

import importlib.util
import os
import sys
import types
from collections.abc import Iterable

_VERTEX_CHAT = "langchain_community.chat_models.vertexai"


def _vertex_chat_module_exists() -> bool:
    try:
        return importlib.util.find_spec(_VERTEX_CHAT) is not None
    except ModuleNotFoundError:
        return False


def _install_vertex_stand_in() -> None:
    stand_in = types.ModuleType(_VERTEX_CHAT)
    stand_in.__doc__ = "Stand-in for the module langchain-community 0.4 removed (ragas #2741, #2745)."
    stand_in.ChatVertexAI = type("ChatVertexAI", (), {"__doc__": "Never instantiated: Vertex AI is not used."})
    sys.modules[_VERTEX_CHAT] = stand_in


os.environ.setdefault("RAGAS_DO_NOT_TRACK", "true")
if _VERTEX_CHAT not in sys.modules and not _vertex_chat_module_exists():
    _install_vertex_stand_in()

import ragas  # noqa: E402  (the stand-in must be in place first)
from ragas.embeddings.base import BaseRagasEmbedding  # noqa: E402


class LocalEmbeddings(BaseRagasEmbedding):
    """A sentence-transformers model (assistant.core.models.load_embedder) as a RAGAS embedding.

    `remember(texts)` encodes many texts in one batched pass; `embed_text` then answers from
    memory, so RAGAS's one-text-at-a-time calls cost nothing."""

    def __init__(self, model, batch_size: int = 64):
        super().__init__()
        self.model = model
        self.batch_size = batch_size
        self._vectors: dict[str, list[float]] = {}

    def remember(self, texts: Iterable[str]) -> None:
        new = sorted({t or " " for t in texts} - self._vectors.keys())
        if new:
            vectors = self.model.encode(new, batch_size=self.batch_size, convert_to_numpy=True,
                                        show_progress_bar=False)
            self._vectors.update(zip(new, (v.tolist() for v in vectors)))

    def embed_text(self, text: str, **kwargs) -> list[float]:
        self.remember([text])
        return self._vectors[text or " "]

    async def aembed_text(self, text: str, **kwargs) -> list[float]:
        return self.embed_text(text)


__all__ = ["ragas", "LocalEmbeddings"]
