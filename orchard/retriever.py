"""Hybrid retrieval: BM25 and dense search fused by reciprocal rank, as a LangChain retriever.

Reciprocal rank fusion scores a chunk ``w / (RRF_K + rank)`` in each list it appears in, so neither
BM25's unbounded scores nor cosine similarities need calibrating against each other. Each returned
Document carries ``score`` (fused), ``dense_score`` (cosine similarity, used to judge relevance),
``bm25_score``, ``rank`` and ``chunk_id`` in its metadata.

Libraries (team mode): ``retriever.with_libraries(["shared", "user:..."])`` is a view of the same
retriever (same store, same BM25 index) that searches only those libraries' chunks — both
searches are restricted inside the store's query (:meth:`DocumentStore.dense_search`,
:meth:`DocumentStore.lexical_search`), never by filtering results afterwards. A view is made per
request (:func:`restricted`), so concurrent requests of different users share no filter state.

Example::

    >>> retriever = HybridRetriever(store=store, k=5)  # doctest: +SKIP
    >>> retriever.invoke("how do I shuffle a list", k=3)  # doctest: +SKIP
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from fnmatch import fnmatch
from typing import Any, Protocol

from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_core.retrievers import BaseRetriever
from pydantic import ConfigDict, Field

from orchard.store import DocumentStore, library_of

RRF_K = 60
# Release notes and change logs describe *changes*; reference pages describe how things work. They
# stay searchable, with half the say, so "what changed in 3.11" still finds them while "how do I
# ..." prefers the reference (measured: release notes took rank 1 from the right page in 8 of 25
# misranked Python-docs questions).
SECONDARY_SOURCES = (
    "*whatsnew/*", "*what-s-new*", "*changelog*", "*CHANGELOG*", "*CHANGES*", "*release-notes*",
    "*releasenotes*", "*NEWS*", "*HISTORY*",
)  # fmt: skip


def reciprocal_rank_fusion(
    ranked_lists: list[list[str]], weights: list[float], *, rrf_k: int = RRF_K
) -> list[tuple[str, float]]:
    """Fuse ranked id lists; returns ``(id, score)`` best first (ties keep first-seen order)."""
    scores: dict[str, float] = {}
    for ids, weight in zip(ranked_lists, weights, strict=True):
        for rank, chunk_id in enumerate(ids, start=1):
            scores[chunk_id] = scores.get(chunk_id, 0.0) + weight / (rrf_k + rank)
    return sorted(scores.items(), key=lambda item: -item[1])


class Rescorer(Protocol):
    """A second-stage scorer: similarity of ``query`` to each chunk id it knows."""

    def score(self, query: str, ids: list[str]) -> dict[str, float]: ...


class VectorRescorer:
    """Cosine similarity under a second embedder, from passage vectors looked up by chunk id.

    Args:
        embeddings: the second embedder (embeds the query; normalized vectors).
        vectors: ``ids -> {id: vector}`` for the chunks it has (the store's second-stage
            vectors, computed at ingest); chunks without a vector are left to the first stage.
    """

    def __init__(self, *, embeddings: Embeddings, vectors: Callable[[list[str]], dict[str, list[float]]]) -> None:
        self.embeddings = embeddings
        self.vectors = vectors

    def score(self, query: str, ids: list[str]) -> dict[str, float]:
        found = self.vectors(ids)
        if not found:
            return {}
        query_vec = self.embeddings.embed_query(query)
        return {i: float(sum(a * b for a, b in zip(query_vec, vec, strict=True))) for i, vec in found.items()}


class HybridRetriever(BaseRetriever):
    """BM25 + dense retrieval over a :class:`DocumentStore`, fused by reciprocal rank.

    Args:
        store: the document store (its embedder embeds the query).
        k: number of chunks returned; ``invoke(query, k=...)`` overrides it per call.
        dense_weight: 0 = BM25 only, 1 = dense only, 0.5 = equal say.
        candidates: how many chunks each search contributes before fusion.
        max_per_source: at most this many chunks of one file in the results (0 = no limit), so
            one long page cannot crowd out every other answer.
        secondary_sources: glob patterns of sources (release notes, change logs) whose fused
            score is multiplied by ``secondary_weight``.
        rescorer: an optional second stage: the ``rescore_depth`` best fused chunks are ranked
            again by it, and that ranking is fused (by reciprocal rank, weight
            ``rescore_weight``) with the first-stage ranking.
        libraries: search only the chunks of these libraries (None: every chunk — personal
            mode); set it with :meth:`with_libraries`, one view per request.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    store: DocumentStore
    k: int = Field(default=5, ge=1)
    dense_weight: float = Field(default=0.6, ge=0.0, le=1.0)
    candidates: int = Field(default=40, ge=1)
    max_per_source: int = Field(default=2, ge=0)
    secondary_sources: tuple[str, ...] = SECONDARY_SOURCES
    secondary_weight: float = Field(default=0.5, ge=0.0, le=1.0)
    rescorer: Any = None
    rescore_depth: int = Field(default=20, ge=1)
    rescore_weight: float = Field(default=0.5, ge=0.0, le=1.0)
    libraries: tuple[str, ...] | None = None

    def with_libraries(self, libraries: Sequence[str] | None) -> HybridRetriever:
        """This retriever searching only ``libraries`` (None: every library), sharing its store."""
        return self.model_copy(update={"libraries": None if libraries is None else tuple(libraries)})

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun, k: int | None = None, **_: Any
    ) -> list[Document]:
        k = self.k if k is None else k
        if k <= 0 or not query.strip() or self.store.count() == 0 or self.libraries == ():
            return []
        pool = max(self.candidates, k)
        dense: list[tuple[str, float]] = []
        query_vec: list[float] = []
        if self.dense_weight > 0:
            query_vec = self.store.embeddings.embed_query(query)
            dense = self.store.dense_search(query_vec, pool, **self._only())
        lexical, fused, by_id = self._fuse(query, dense, pool)
        if any(i not in by_id for i, _ in lexical):
            # The BM25 index named chunks the collection no longer has: rebuild it rather than let
            # them (and whatever replaced them) silently drop out of the results.
            self.store.forget_lexical_index()
            lexical, fused, by_id = self._fuse(query, dense, pool)
        rescored = sorted(
            ((i, score * self._prior(by_id[i].metadata.get("source", ""))) for i, score in fused if i in by_id),
            key=lambda item: -item[1],
        )
        if self.rescorer is not None and self.rescore_weight > 0:
            rescored = self._second_stage(query, rescored)
        chosen: list[tuple[str, float]] = []
        held_back: list[tuple[str, float]] = []
        per_source: dict[str, int] = {}
        for chunk_id, score in rescored:
            source = by_id[chunk_id].metadata.get("source", "")
            if self.max_per_source and per_source.get(source, 0) >= self.max_per_source:
                held_back.append((chunk_id, score))
                continue
            per_source[source] = per_source.get(source, 0) + 1
            chosen.append((chunk_id, score))
            if len(chosen) == k:
                break
        if len(chosen) < k:  # few sources: fill up with what the cap held back, best first
            chosen = sorted(chosen + held_back[: k - len(chosen)], key=lambda item: -item[1])
        dense_scores, lexical_scores = dict(dense), dict(lexical)
        missing = [i for i, _ in chosen if i not in dense_scores]
        if missing:
            query_vec = query_vec or self.store.embeddings.embed_query(query)
            # Judge every returned chunk on the same cosine scale, even those only BM25 found.
            dense_scores.update(self._cosine(query_vec, missing))
        out = []
        for rank, (chunk_id, score) in enumerate(chosen, start=1):
            doc = by_id[chunk_id]
            doc.metadata.update(
                score=round(score, 6),
                dense_score=round(dense_scores.get(chunk_id, 0.0), 6),
                bm25_score=round(lexical_scores.get(chunk_id, 0.0), 6),
                rank=rank,
                chunk_id=chunk_id,
            )
            out.append(doc)
        return out

    def _fuse(
        self, query: str, dense: list[tuple[str, float]], pool: int
    ) -> tuple[list[tuple[str, float]], list[tuple[str, float]], dict[str, Document]]:
        """BM25 hits, the fused ranking with ``dense``, and the fused chunks by id."""
        lexical = self.store.lexical_search(query, pool, **self._only()) if self.dense_weight < 1 else []
        fused = reciprocal_rank_fusion(
            [[i for i, _ in dense], [i for i, _ in lexical]], [self.dense_weight, 1 - self.dense_weight]
        )
        by_id = {d.id: d for d in self.store.get([i for i, _ in fused])}
        if self.libraries is not None:
            # Both searches were restricted in the store's query; a chunk of another library here
            # would be a bug (or a write racing this search): dropped, never returned.
            by_id = {i: d for i, d in by_id.items() if library_of(d.metadata) in self.libraries}
        return lexical, fused, by_id

    def _only(self) -> dict[str, Any]:
        """The store searches' library restriction (none in personal mode)."""
        return {} if self.libraries is None else {"libraries": self.libraries}

    def _second_stage(self, query: str, ranked: list[tuple[str, float]]) -> list[tuple[str, float]]:
        """Fuse the first-stage ranking with the rescorer's ranking of its head."""
        head = [i for i, _ in ranked[: self.rescore_depth]]
        scores = self.rescorer.score(query, head)
        if not scores:
            return ranked
        second = sorted(scores, key=lambda i: -scores[i])
        first = [i for i, _ in ranked]
        fused = reciprocal_rank_fusion([first, second], [1 - self.rescore_weight, self.rescore_weight])
        return fused

    def _prior(self, source: str) -> float:
        if self.secondary_weight < 1 and any(fnmatch(source, pattern) for pattern in self.secondary_sources):
            return self.secondary_weight
        return 1.0

    def _cosine(self, query_vec: list[float], ids: list[str]) -> dict[str, float]:
        got = self.store.collection.get(ids=ids, include=["embeddings"])
        return {
            i: float(sum(a * b for a, b in zip(query_vec, vec, strict=True)))
            for i, vec in zip(got["ids"], got["embeddings"], strict=True)
        }


class MemoRetriever(BaseRetriever):
    """Remembers what ``base`` returned for each (query, k): one retrieval per question even when
    the router (how relevant are the documents?) and the RAG chain both ask. One per request.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    base: BaseRetriever
    memo: dict[tuple[str, int | None], list[Document]] = Field(default_factory=dict)

    def with_libraries(self, libraries: Sequence[str] | None) -> MemoRetriever:
        """A new memo over ``base`` restricted to ``libraries`` (nothing remembered is shared)."""
        return MemoRetriever(base=restricted(self.base, libraries))

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun, k: int | None = None, **kwargs: Any
    ) -> list[Document]:
        query = query.strip()  # the router sees the question as typed, the RAG chain stripped
        k = getattr(self.base, "k", None) if k is None else k  # search_docs asks with k=5, the chain without
        # A list retrieved for this query with at least k documents answers a smaller k too.
        found = next((docs for (q, n), docs in self.memo.items() if q == query and (n is None or k is None or n >= k)), None)
        if found is None:
            extra = {"k": k} if k is not None else {}
            found = self.memo[(query, k)] = self.base.invoke(query, config={"callbacks": run_manager.get_child()}, **extra, **kwargs)
        return [Document(page_content=d.page_content, metadata=dict(d.metadata), id=d.id) for d in found[:k]]


def restricted(retriever: BaseRetriever, libraries: Sequence[str] | None) -> BaseRetriever:
    """``retriever`` searching only ``libraries`` (None: ``retriever`` itself, unrestricted).

    Raises:
        TypeError: ``retriever`` cannot be restricted (it has no ``with_libraries``): refusing is
            safer than searching every library.
    """
    if libraries is None:
        return retriever
    view = getattr(retriever, "with_libraries", None)
    if not callable(view):
        msg = f"{type(retriever).__name__} cannot search by library (no with_libraries): refused in team mode"
        raise TypeError(msg)
    return view(libraries)


# --- query-side: several formulations of one question, fused ---------------------------------------


class RewriteFusionRetriever(BaseRetriever):
    """Retrieves for the question and for each rewrite of it, and fuses the lists by reciprocal rank.

    Args:
        base: the retriever run once per formulation (the hybrid retriever).
        rewrite: ``question -> [other formulations]`` (an LLM call, see :func:`llm_rewriter`);
            an empty list (or an error) leaves the question alone.
        original_weight: the question's own list's weight (each rewrite has weight 1).
        k: number of chunks returned; ``invoke(query, k=...)`` overrides it per call.
        settled: ``(question, its own top k) -> True`` when that list is good enough as it is
            (e.g. the documents gate finds strong evidence): then no rewrite is asked for, which
            saves the model call (~1.3 s before the first token, measured) on questions that
            already name what they look for.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    base: BaseRetriever
    rewrite: Callable[[str], list[str]]
    original_weight: float = Field(default=1.0, ge=0.0)
    k: int = Field(default=5, ge=1)
    settled: Callable[[str, list[Document]], bool] | None = None

    def with_libraries(self, libraries: Sequence[str] | None) -> RewriteFusionRetriever:
        """The same fusion over ``base`` restricted to ``libraries``."""
        return self.model_copy(update={"base": restricted(self.base, libraries)})

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun, k: int | None = None, **_: Any
    ) -> list[Document]:
        k = self.k if k is None else k
        own = self.base.invoke(query, k=max(k, 10), config={"callbacks": run_manager.get_child()})
        if self.settled is not None and self.settled(query, own[:k]):
            return own[:k]
        try:
            others = [r for r in self.rewrite(query) if r.strip() and r.strip() != query.strip()]
        except Exception:  # a failed rewrite must not fail the search
            others = []
        lists: list[list[str]] = [[d.id or "" for d in own]]
        by_id: dict[str, Document] = {d.id or "": d for d in own}
        for formulation in others:
            docs = self.base.invoke(formulation, k=max(k, 10), config={"callbacks": run_manager.get_child()})
            lists.append([d.id or "" for d in docs])
            for d in docs:
                by_id.setdefault(d.id or "", d)
        fused = reciprocal_rank_fusion(lists, [self.original_weight] + [1.0] * len(others))
        out = []
        for rank, (chunk_id, score) in enumerate(fused[:k], start=1):
            doc = by_id[chunk_id]
            doc.metadata.update(score=round(score, 6), rank=rank)
            out.append(doc)
        return out


REWRITE_PROMPTS = {
    # What a user who does not know the names cannot type: the names.
    "keywords": (
        "Which Python standard library modules, functions or methods do this? Answer with the names only, "
        "comma separated, at most five.\nTask: {question}"
    ),
    "rewrites": (
        "Rewrite this question about Python in three different short ways, using the technical terms "
        "of the Python documentation. One per line, nothing else.\nQuestion: {question}"
    ),
    "hyde": "Answer in two short sentences, as the Python documentation would, naming the function to use.\nQuestion: {question}",
}


def llm_rewriter(llm: Any, *, style: str = "keywords") -> Callable[[str], list[str]]:
    """``question -> [formulations]`` from one call of ``llm`` (a LangChain chat model).

    ``keywords``: the question followed by the API names the model suggests (one formulation);
    ``rewrites``: up to three rephrasings, one per line; ``hyde``: a short hypothetical answer.
    """
    template = REWRITE_PROMPTS[style]

    def rewrite(question: str) -> list[str]:
        reply = llm.invoke(template.format(question=question))
        text = str(getattr(reply, "content", reply)).strip()
        if style == "keywords":
            names = re.sub(r"\s+", " ", text.replace("`", ""))[:200]
            return [f"{question} {names}"]
        if style == "rewrites":
            lines = [re.sub(r"^\s*(?:[-*\d.)]+\s*)", "", line).strip() for line in text.splitlines()]
            return [line for line in lines if line][:3]
        return [text[:400]]

    return rewrite
