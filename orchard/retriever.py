"""Hybrid retrieval: BM25 and dense search fused by reciprocal rank, as a LangChain retriever.

Reciprocal rank fusion scores a chunk ``w / (RRF_K + rank)`` in each list it appears in, so neither
BM25's unbounded scores nor cosine similarities need calibrating against each other. Each returned
Document carries ``score`` (fused), ``dense_score`` (cosine similarity, used to judge relevance),
``bm25_score``, ``rank`` and ``chunk_id`` in its metadata.

Example::

    >>> retriever = HybridRetriever(store=store, k=5)  # doctest: +SKIP
    >>> retriever.invoke("how do I shuffle a list", k=3)  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from pydantic import ConfigDict, Field

from orchard.store import DocumentStore

RRF_K = 60


def reciprocal_rank_fusion(
    ranked_lists: list[list[str]], weights: list[float], *, rrf_k: int = RRF_K
) -> list[tuple[str, float]]:
    """Fuse ranked id lists; returns ``(id, score)`` best first (ties keep first-seen order)."""
    scores: dict[str, float] = {}
    for ids, weight in zip(ranked_lists, weights, strict=True):
        for rank, chunk_id in enumerate(ids, start=1):
            scores[chunk_id] = scores.get(chunk_id, 0.0) + weight / (rrf_k + rank)
    return sorted(scores.items(), key=lambda item: -item[1])


class HybridRetriever(BaseRetriever):
    """BM25 + dense retrieval over a :class:`DocumentStore`, fused by reciprocal rank.

    Args:
        store: the document store (its embedder embeds the query).
        k: number of chunks returned; ``invoke(query, k=...)`` overrides it per call.
        dense_weight: 0 = BM25 only, 1 = dense only, 0.5 = equal say.
        candidates: how many chunks each search contributes before fusion.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    store: DocumentStore
    k: int = Field(default=5, ge=1)
    dense_weight: float = Field(default=0.5, ge=0.0, le=1.0)
    candidates: int = Field(default=40, ge=1)

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun, k: int | None = None, **_: Any
    ) -> list[Document]:
        k = self.k if k is None else k
        if k <= 0 or not query.strip() or self.store.count() == 0:
            return []
        pool = max(self.candidates, k)
        dense: list[tuple[str, float]] = []
        lexical: list[tuple[str, float]] = []
        query_vec: list[float] = []
        if self.dense_weight > 0:
            query_vec = self.store.embeddings.embed_query(query)
            dense = self.store.dense_search(query_vec, pool)
        if self.dense_weight < 1:
            lexical = self.store.lexical_search(query, pool)
        fused = reciprocal_rank_fusion(
            [[i for i, _ in dense], [i for i, _ in lexical]], [self.dense_weight, 1 - self.dense_weight]
        )[:k]
        dense_scores, lexical_scores = dict(dense), dict(lexical)
        missing = [i for i, _ in fused if i not in dense_scores]
        if missing and self.dense_weight > 0:
            # Judge every returned chunk on the same cosine scale, even those only BM25 found.
            dense_scores.update(self._cosine(query_vec, missing))
        docs = self.store.get([i for i, _ in fused])
        by_id = {d.id: d for d in docs}
        out = []
        for rank, (chunk_id, score) in enumerate(fused, start=1):
            doc = by_id.get(chunk_id)
            if doc is None:
                continue
            doc.metadata.update(
                score=round(score, 6),
                dense_score=round(dense_scores.get(chunk_id, 0.0), 6),
                bm25_score=round(lexical_scores.get(chunk_id, 0.0), 6),
                rank=rank,
                chunk_id=chunk_id,
            )
            out.append(doc)
        return out

    def _cosine(self, query_vec: list[float], ids: list[str]) -> dict[str, float]:
        got = self.store.collection.get(ids=ids, include=["embeddings"])
        return {
            i: float(sum(a * b for a, b in zip(query_vec, vec, strict=True)))
            for i, vec in zip(got["ids"], got["embeddings"], strict=True)
        }
