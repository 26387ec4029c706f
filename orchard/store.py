"""The document store: one Chroma collection plus what ingestion needs to keep it exact.

Chroma runs embedded (``PersistentClient``) by default, or as a server (``chroma run``) when a URL
is given. Chroma never embeds anything itself here: vectors come from our embedder, so Chroma's
default embedding function (which downloads a model) is never used. The collection records the
embedding model and its dimension; opening it with another embedder is refused.

The BM25 index is derived from the collection and kept in memory. Every write through
:class:`DocumentStore` stores a new *revision* (a random token) in the collection's metadata, after
the data; a search reads the revision before the data it indexes, so an index built at another
revision — another process (or another app instance on a Chroma server) wrote since — is rebuilt,
even when the number of chunks did not change.

Example::

    >>> client = make_chroma_client(path=Path("/tmp/store"))  # doctest: +SKIP
    >>> store = DocumentStore(client=client, collection="orchard", embeddings=MiniLMEmbeddings())
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import chromadb
from chromadb.config import Settings as ChromaSettings
from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings

from orchard.bm25 import BM25Index
from orchard.errors import StoreMismatch

EMBEDDER_KEY = "orchard_embedder"
DIMENSION_KEY = "orchard_dimension"
REVISION_KEY = "orchard_revision"  # changed by every write; the BM25 index is rebuilt when it differs
_GET_PAGE = 5000


def make_chroma_client(*, path: Path | None = None, url: str | None = None) -> Any:
    """One Chroma client: embedded at ``path``, or a server at ``url`` (never both)."""
    settings = ChromaSettings(anonymized_telemetry=False)
    if path is not None and url is not None:
        msg = "give either a store path (embedded Chroma) or a Chroma server URL, not both"
        raise ValueError(msg)
    if url is not None:
        parsed = urlparse(url)
        if not parsed.hostname:
            msg = f"invalid Chroma URL {url!r} — expected e.g. http://127.0.0.1:8001"
            raise ValueError(msg)
        return chromadb.HttpClient(
            host=parsed.hostname,
            port=parsed.port or (443 if parsed.scheme == "https" else 80),
            ssl=parsed.scheme == "https",
            settings=settings,
        )
    if path is None:
        msg = "a store path or a Chroma server URL is required"
        raise ValueError(msg)
    path = path.resolve()  # Chroma opens files lazily: a later chdir must not move the store
    path.mkdir(parents=True, exist_ok=True)
    return chromadb.PersistentClient(path=str(path), settings=settings)


def recorded_embedder(client: Any, collection: str) -> str | None:
    """The embedder name recorded in ``collection`` (None: no such collection, or none recorded),
    so an existing store is opened with the embedder that built it."""
    from chromadb.errors import NotFoundError

    try:
        stored = client.get_collection(name=collection, embedding_function=None)
    except NotFoundError:
        return None
    name = (stored.metadata or {}).get(EMBEDDER_KEY)
    return str(name) if name else None


def embedder_identity(embeddings: Embeddings) -> tuple[str, int]:
    name = getattr(embeddings, "name", type(embeddings).__name__)
    dimension = getattr(embeddings, "dimension", None)
    if dimension is None:
        dimension = len(embeddings.embed_query("dimension probe"))
    return str(name), int(dimension)


class DocumentStore:
    """A Chroma collection of chunks, with a BM25 index derived from it.

    Args:
        client: a Chroma client (see :func:`make_chroma_client`).
        collection: collection name.
        embeddings: the embedder; its ``name`` and ``dimension`` are recorded in the collection.
        where: a description of the store location for messages (path or URL).

    Raises:
        StoreMismatch: the collection was built with a different embedder.
    """

    def __init__(self, *, client: Any, collection: str, embeddings: Embeddings, where: str = "") -> None:
        self.client = client
        self.embeddings = embeddings
        self.where = where or collection
        self.collection_name = collection
        name, dimension = embedder_identity(embeddings)
        self.embedder_name, self.dimension = name, dimension
        self.collection = client.get_or_create_collection(
            name=collection,
            embedding_function=None,
            metadata={"hnsw:space": "cosine", EMBEDDER_KEY: name, DIMENSION_KEY: dimension},
        )
        meta = self.collection.metadata or {}
        recorded = (meta.get(EMBEDDER_KEY), meta.get(DIMENSION_KEY))
        if recorded != (name, dimension):
            msg = (
                f"the store at {self.where} was built with embedder {recorded[0]!r} "
                f"({recorded[1]} dimensions), not {name!r} ({dimension}) — rebuild it: delete "
                f"{self.where} (or use another --store) and run `orchard ingest` again"
            )
            raise StoreMismatch(msg)
        self._bm25: BM25Index | None = None
        self._bm25_ids: list[str] = []
        self._bm25_key: tuple[str | None, int] | None = None
        self._lock = threading.Lock()
        #: Held by one ingestion at a time (two browser tabs uploading at once); it lives with the
        #: store, which outlives a settings change, so every use case of this process shares it.
        self.ingest_lock = threading.Lock()

    # --- reading ------------------------------------------------------------------------------

    def count(self) -> int:
        return self.collection.count()

    def revision(self) -> str | None:
        """The collection's current revision as stored (None: never written by this version)."""
        stored = self.client.get_collection(name=self.collection_name, embedding_function=None)
        return (stored.metadata or {}).get(REVISION_KEY)

    def _get_all(self, include: list[str], where: dict | None = None) -> dict[str, list]:
        out: dict[str, list] = {"ids": [], **{key: [] for key in include}}
        offset = 0
        while True:
            page = self.collection.get(include=include, where=where, limit=_GET_PAGE, offset=offset)
            out["ids"].extend(page["ids"])
            for key in include:
                out[key].extend(page[key] or [])
            if len(page["ids"]) < _GET_PAGE:
                return out
            offset += _GET_PAGE

    def file_hashes(self) -> dict[str, str]:
        """``source -> file_sha256`` of every file in the store.

        A file whose chunks disagree (an interrupted update left old and new ones), that has fewer
        chunks than it was cut into (an ingestion killed while writing it), or that was chunked by
        another version of the chunker maps to ``""``, so the next ingest redoes it.
        """
        from orchard.chunking import CHUNKER_VERSION

        hashes: dict[str, str] = {}
        counts: dict[str, int] = {}
        expected: dict[str, int] = {}
        for meta in self._get_all(["metadatas"])["metadatas"]:
            if not meta or "source" not in meta:
                continue
            digest = meta.get("file_sha256", "") if meta.get("chunker") == CHUNKER_VERSION else ""
            source = meta["source"]
            hashes[source] = digest if hashes.get(source, digest) == digest else ""
            counts[source] = counts.get(source, 0) + 1
            if isinstance(meta.get("file_chunks"), int):  # absent in stores written before it was kept
                expected[source] = meta["file_chunks"]
        for source, total in expected.items():
            if counts[source] != total:
                hashes[source] = ""
        return hashes

    def chunk_ids(self, source: str) -> list[str]:
        return self._get_all([], where={"source": source})["ids"]

    def sources(self) -> dict[str, int]:
        """``source -> number of chunks``."""
        counts: dict[str, int] = {}
        for meta in self._get_all(["metadatas"])["metadatas"]:
            if meta and "source" in meta:
                counts[meta["source"]] = counts.get(meta["source"], 0) + 1
        return counts

    def get(self, ids: list[str]) -> list[Document]:
        if not ids:
            return []
        page = self.collection.get(ids=ids, include=["documents", "metadatas"])
        by_id = {
            i: Document(page_content=d, metadata=dict(m or {}), id=i)
            for i, d, m in zip(page["ids"], page["documents"], page["metadatas"], strict=True)
        }
        return [by_id[i] for i in ids if i in by_id]

    # --- writing ------------------------------------------------------------------------------

    def upsert(self, docs: list[Document], vectors: list[list[float]]) -> None:
        if not docs:
            return
        step = min(_GET_PAGE, self.client.get_max_batch_size())
        for start in range(0, len(docs), step):
            part = docs[start : start + step]
            self.collection.upsert(
                ids=[d.id for d in part],
                documents=[d.page_content for d in part],
                metadatas=[d.metadata for d in part],
                embeddings=vectors[start : start + step],
            )
        self._new_revision()

    def delete(self, ids: Iterable[str]) -> int:
        ids = list(ids)
        for start in range(0, len(ids), _GET_PAGE):
            self.collection.delete(ids=ids[start : start + _GET_PAGE])
        if ids:
            self._new_revision()
        return len(ids)

    def _new_revision(self) -> None:
        """Record that the chunks changed (after the change, so a reader never sees the new
        revision with the old data). A random token, not a counter: two writers cannot both
        write the same next value."""
        stored = self.client.get_collection(name=self.collection_name, embedding_function=None)
        # modify() replaces the whole metadata (chromadb 1.5) and refuses hnsw:* keys (the distance
        # function lives in the collection's configuration and is kept).
        meta = {k: v for k, v in (stored.metadata or {}).items() if not k.startswith("hnsw:")}
        meta |= {EMBEDDER_KEY: self.embedder_name, DIMENSION_KEY: self.dimension, REVISION_KEY: uuid.uuid4().hex}
        self.collection.modify(metadata=meta)

    # --- searching ----------------------------------------------------------------------------

    def dense_search(self, query_vector: list[float], k: int) -> list[tuple[str, float]]:
        """``(chunk_id, cosine similarity)`` of the ``k`` nearest chunks."""
        if k <= 0 or self.count() == 0:
            return []
        result = self.collection.query(query_embeddings=[query_vector], n_results=k, include=["distances"])
        return [(i, 1.0 - float(d)) for i, d in zip(result["ids"][0], result["distances"][0], strict=True)]

    def lexical_search(self, query: str, k: int) -> list[tuple[str, float]]:
        """``(chunk_id, BM25 score)`` of the ``k`` best chunks."""
        index, ids = self._bm25_index()
        return [(ids[i], score) for i, score in index.top(query, k)]

    def forget_lexical_index(self) -> None:
        """Drop the BM25 index (the next search rebuilds it): it named a chunk the collection no
        longer has, so something wrote to the collection without going through a DocumentStore."""
        with self._lock:
            self._bm25, self._bm25_key = None, None

    def _bm25_index(self) -> tuple[BM25Index, list[str]]:
        # Read before the data: a write that lands while the index is built changes the revision
        # after it, so the next search sees a new key and rebuilds. The count catches writers that
        # do not store a revision (older versions, other tools).
        key = (self.revision(), self.count())
        with self._lock:
            if self._bm25 is None or self._bm25_key != key:
                data = self._get_all(["documents"])
                self._bm25 = BM25Index(data["documents"])
                self._bm25_ids = data["ids"]
                self._bm25_key = key
            return self._bm25, self._bm25_ids
