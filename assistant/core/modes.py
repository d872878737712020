"""The four answer paths: which weights answer, and whether retrieved chunks fill the prompt.

| mode    | model          | retrieval                  |
|---------|----------------|----------------------------|
| base    | base model     | none                       |
| rag     | base model     | top-k chunks in the prompt |
| offline | base + adapter | none (never opens the index) |
| hybrid  | base + adapter | top-k chunks in the prompt |
"""
from __future__ import annotations

from enum import Enum


class Mode(str, Enum):
    """A str, so a mode compares, hashes and serialises as its name ("rag")."""
    BASE = "base"
    RAG = "rag"
    OFFLINE = "offline"
    HYBRID = "hybrid"

    def __str__(self) -> str:
        return self.value

    @property
    def tuned(self) -> bool:
        """Answered by the base model with the LoRA adapter."""
        return self in (Mode.OFFLINE, Mode.HYBRID)

    @property
    def retrieves(self) -> bool:
        """The top-k chunks go into the prompt."""
        return self in (Mode.RAG, Mode.HYBRID)

    @property
    def help(self) -> str:
        model = "fine-tuned model" if self.tuned else "base model"
        return f"{model} with retrieved context" if self.retrieves else f"{model}, no retrieval"
