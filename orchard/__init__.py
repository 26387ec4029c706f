"""Orchard plumbing: settings, model server, embeddings, store, ingestion, prompts, service, CLI.

Public building blocks are re-exported lazily so ``import orchard`` stays cheap.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "Settings": "orchard.config",
    "ChatService": "orchard.service",
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
