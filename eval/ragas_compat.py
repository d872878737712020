"""The one place that imports RAGAS, so that `import ragas` works with current LangChain.

ragas 0.4.3 imports `langchain_community.chat_models.vertexai.ChatVertexAI` at module level
(ragas/llms/base.py, line 12) only to list it among the LLM classes that support n-completions.
langchain-community 0.4.x removed that module (it moved to langchain-google-vertexai), so on
an up-to-date install `import ragas` fails with ModuleNotFoundError before any metric is
reached; see vibrantlabsai/ragas issues #2741 and #2745. We never talk to Vertex AI, so a
stand-in module whose class nothing is ever an instance of is enough: the isinstance check
ragas runs with it is simply always false. When the real module exists, it is used as is.

Everything in eval/ gets RAGAS from here:

    python -c "from eval.ragas_compat import ragas; print(ragas.__version__)"
"""
from __future__ import annotations

import importlib.util
import sys
import types

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


if _VERTEX_CHAT not in sys.modules and not _vertex_chat_module_exists():
    _install_vertex_stand_in()

import ragas  # noqa: E402  (the stand-in must be in place first)

__all__ = ["ragas"]
