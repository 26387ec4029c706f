"""Orchard: settings, the composition root, use cases, typed answer events, and the plumbing below.

Public building blocks are re-exported lazily so ``import orchard`` stays cheap.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.2.0"

_EXPORTS = {
    "Settings": "orchard.config",
    "Components": "orchard.components",
    "Orchard": "orchard.usecases",
    "build_orchard": "orchard.usecases",
    "AnswerRequest": "orchard.usecases",
    "AnswerResult": "orchard.events",
    "AnswerStream": "orchard.events",
    "HybridRetriever": "orchard.retriever",
    "DocumentStore": "orchard.store",
    "make_chroma_client": "orchard.store",
    "MiniLMEmbeddings": "orchard.embeddings",
    "load_prompt": "orchard.prompts",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(name)
