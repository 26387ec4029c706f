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

Libraries (team mode, :mod:`orchard.identity`): every chunk carries a ``library`` metadata field
(``shared``, or ``user:<slot>`` for one user's private library); a chunk without one (a store
written before libraries) counts as ``shared``. :meth:`DocumentStore.dense_search` and
:meth:`DocumentStore.lexical_search` take ``libraries=`` and search only those chunks: a ``where``
clause in Chroma's query, a mask over the BM25 scores before the top k is taken.

One process at a time: Chroma's embedded ``PersistentClient`` is not safe for two processes
writing one folder, so :func:`make_chroma_client` holds an ``flock`` on ``<store>/orchard.lock``
for as long as the process uses the store (the kernel releases it when the process ends, however
it ends); another process gets :class:`~orchard.errors.StoreInUse`, saying to run a Chroma server.

Example::

    >>> client = make_chroma_client(path=Path("/tmp/store"))  # doctest: +SKIP
    >>> store = DocumentStore(client=client, collection="orchard", embeddings=MiniLMEmbeddings())
"""

from __future__ import annotations

import fcntl
import json
import os
import threading
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import chromadb
import numpy as np
from chromadb.config import Settings as ChromaSettings
from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings

from orchard.bm25 import BM25Index
from orchard.errors import StoreInUse, StoreMismatch, StoreUnavailable
from orchard.identity import SHARED_LIBRARY

EMBEDDER_KEY = "orchard_embedder"
DIMENSION_KEY = "orchard_dimension"
REVISION_KEY = "orchard_revision"  # changed by every write; the BM25 index is rebuilt when it differs
LIBRARY_KEY = "library"  # a chunk's library (metadata); absent: written before libraries, counts as shared
LIBRARIES_KEY = "orchard_libraries"  # collection metadata: every chunk carries LIBRARY_KEY (backfilled)
LOCK_FILE = "orchard.lock"  # <store>/orchard.lock: flock held by the one process using an embedded store
_GET_PAGE = 5000
_UPDATE_PAGE = 5000


def library_of(metadata: dict | None) -> str:
    """The library of a chunk's metadata (none recorded: the shared one)."""
    return str((metadata or {}).get(LIBRARY_KEY) or SHARED_LIBRARY)


def library_filter(libraries: Sequence[str]) -> dict:
    """Chroma's ``where`` for chunks of ``libraries``."""
    return {LIBRARY_KEY: {"$in": list(libraries)}}


# --- one process per embedded store ------------------------------------------------------------


@dataclass
class _Hold:
    handle: Any  # the open lock file (its flock is the hold)
    users: int


_HOLDS: dict[str, _Hold] = {}
_HOLDS_LOCK = threading.Lock()


def _forget_holds_in_child() -> None:
    """A forked child does not hold the parent's stores: close its copies of the lock files (the
    parent keeps the lock; an unlock here would drop it for the parent too)."""
    global _HOLDS_LOCK
    for hold in _HOLDS.values():
        try:
            hold.handle.close()
        except OSError:
            pass
    _HOLDS.clear()
    _HOLDS_LOCK = threading.Lock()


os.register_at_fork(after_in_child=_forget_holds_in_child)


def _holder_pid(path: Path) -> str:
    try:
        return str(int(json.loads((path / LOCK_FILE).read_text())["pid"]))
    except (OSError, ValueError, KeyError, TypeError):
        return "unknown"


def store_in_use_message(path: Path, pid: str) -> str:
    return (
        f"the document store at {path} is open in another Orchard process (pid {pid}); stop it, or run a "
        f"Chroma server — `chroma run --path {path}` — and set ORCHARD_CHROMA_URL for every process"
    )


def hold_embedded_store(path: Path, *, wait: float = 1.0) -> None:
    """Take this process's hold on the embedded store at ``path`` (counted: every holder in this
    process shares one flock). Waits up to ``wait`` seconds for a process that is ending.

    Raises:
        StoreInUse: another process holds it.
    """
    key = str(path)
    with _HOLDS_LOCK:
        hold = _HOLDS.get(key)
        if hold is not None:
            hold.users += 1
            return
        handle = (path / LOCK_FILE).open("a+")
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    handle.close()
                    raise StoreInUse(store_in_use_message(path, _holder_pid(path))) from None
                time.sleep(0.05)
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps({"pid": os.getpid(), "since": round(time.time(), 3)}))
        handle.flush()
        _HOLDS[key] = _Hold(handle=handle, users=1)


def release_embedded_store(path: Path) -> None:
    """Give back one hold on the store at ``path``; the last one unlocks it for other processes."""
    with _HOLDS_LOCK:
        hold = _HOLDS.get(str(path))
        if hold is None:
            return
        hold.users -= 1
        if hold.users > 0:
            return
        del _HOLDS[str(path)]
        try:
            fcntl.flock(hold.handle, fcntl.LOCK_UN)
        finally:
            hold.handle.close()


def close_chroma_client(client: Any) -> None:
    """Close a client of :func:`make_chroma_client` (Chroma's resources first, then this process's
    hold on an embedded store). Idempotent."""
    path = getattr(client, "_orchard_store_path", None)
    close = getattr(client, "close", None)
    if callable(close):
        close()
    if path is not None:
        client._orchard_store_path = None
        release_embedded_store(path)


def make_chroma_client(*, path: Path | None = None, url: str | None = None) -> Any:
    """One Chroma client: embedded at ``path``, or a server at ``url`` (never both).

    Embedded, the process holds the store until :func:`close_chroma_client` (or its end).

    Raises:
        StoreInUse: another process has the embedded store at ``path`` open.
    """
    settings = ChromaSettings(anonymized_telemetry=False)
    if path is not None and url is not None:
        msg = "give either a store path (embedded Chroma) or a Chroma server URL, not both"
        raise ValueError(msg)
    if url is not None:
        parsed = urlparse(url)
        if not parsed.hostname:
            msg = f"invalid Chroma URL {url!r} — expected e.g. http://127.0.0.1:8001"
            raise ValueError(msg)
        try:
            return chromadb.HttpClient(
                host=parsed.hostname,
                port=parsed.port or (443 if parsed.scheme == "https" else 80),
                ssl=parsed.scheme == "https",
                settings=settings,
            )
        except Exception as exc:
            if is_connection_failure(exc):
                raise chroma_unavailable(url, exc) from exc
            raise
    if path is None:
        msg = "a store path or a Chroma server URL is required"
        raise ValueError(msg)
    path = path.resolve()  # Chroma opens files lazily: a later chdir must not move the store
    path.mkdir(parents=True, exist_ok=True)
    hold_embedded_store(path)  # StoreInUse when another process has it open
    try:
        client = chromadb.PersistentClient(path=str(path), settings=settings)
    except BaseException:
        release_embedded_store(path)
        raise
    client._orchard_store_path = path  # released by close_chroma_client (else when the process ends)
    return client


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


def is_connection_failure(exc: BaseException) -> bool:
    """Does ``exc`` say the Chroma server could not be reached (down, restarting, refused)?"""
    import httpx

    if isinstance(exc, httpx.TransportError | ConnectionError):
        return True
    return isinstance(exc, ValueError) and "could not connect" in str(exc).lower()


def chroma_unavailable(where: str, exc: BaseException) -> StoreUnavailable:
    return StoreUnavailable(
        f"the Chroma server at {where} does not answer ({type(exc).__name__}: {exc}) — start it"
        " (`chroma run --path DIR --port P`) or check ORCHARD_CHROMA_URL; ask again once it is up"
    )


class _ServerCollection:
    """A Chroma server's collection whose calls report a server that does not answer as
    :class:`~orchard.errors.StoreUnavailable` (a clear 503 in the API, a message in the app),
    not as chromadb's ``ValueError``/httpx errors. The next call tries the server again."""

    def __init__(self, collection: Any, where: str) -> None:
        self._collection = collection
        self._where = where

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._collection, name)
        if not callable(value):
            return value

        def guarded(*args: Any, **kwargs: Any) -> Any:
            try:
                return value(*args, **kwargs)
            except Exception as exc:
                if is_connection_failure(exc):
                    raise chroma_unavailable(self._where, exc) from exc
                raise

        return guarded


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
            # a new collection's chunks all carry their library; an existing one keeps its metadata
            metadata={"hnsw:space": "cosine", EMBEDDER_KEY: name, DIMENSION_KEY: dimension, LIBRARIES_KEY: 1},
        )
        if str(self.where).startswith(("http://", "https://")):
            self.collection = _ServerCollection(self.collection, self.where)
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
        self._bm25_libraries: _LibraryColumn = _LibraryColumn([])
        self._bm25_key: tuple[str | None, int] | None = None
        self._lock = threading.Lock()
        self._libraries_ready = bool(meta.get(LIBRARIES_KEY))
        self._backfill_lock = threading.Lock()
        #: Held by one ingestion at a time (two browser tabs uploading at once); it lives with the
        #: store, which outlives a settings change, so every use case of this process shares it.
        self.ingest_lock = threading.Lock()

    def close(self) -> None:
        """Close the Chroma client (and give back this process's hold on an embedded store, so
        another process may open it). The store is unusable afterwards."""
        close_chroma_client(self.client)

    # --- reading ------------------------------------------------------------------------------

    def count(self, *, libraries: Sequence[str] | None = None) -> int:
        """Chunks in the store (``libraries``: in those libraries only)."""
        if libraries is None:
            return self.collection.count()
        if not libraries:
            return 0
        self.backfill_libraries()
        return len(self._get_all([], where=library_filter(libraries))["ids"])

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

    def file_hashes(self, library: str | None = None) -> dict[str, str]:
        """``source -> file_sha256`` of every file in the store (``library``: in that library only —
        a file's identity is its source within its library).

        A file whose chunks disagree (an interrupted update left old and new ones), that has fewer
        chunks than it was cut into (an ingestion killed while writing it), or that was chunked by
        another version of the chunker maps to ``""``, so the next ingest redoes it.
        """
        from orchard.chunking import CHUNKER_VERSION

        hashes: dict[str, str] = {}
        counts: dict[str, int] = {}
        expected: dict[str, int] = {}
        for meta in self._get_all(["metadatas"])["metadatas"]:
            if not meta or "source" not in meta or (library is not None and library_of(meta) != library):
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

    def chunk_ids(self, source: str, library: str | None = None) -> list[str]:
        """Ids of ``source``'s chunks (``library``: of its copy in that library only)."""
        if library is None:
            return self._get_all([], where={"source": source})["ids"]
        # Not a where on the library: chunks written before libraries have none and are shared.
        found = self._get_all(["metadatas"], where={"source": source})
        return [i for i, meta in zip(found["ids"], found["metadatas"], strict=True) if library_of(meta) == library]

    def sources(self) -> dict[str, int]:
        """``source -> number of chunks`` (every library)."""
        counts: dict[str, int] = {}
        for meta in self._get_all(["metadatas"])["metadatas"]:
            if meta and "source" in meta:
                counts[meta["source"]] = counts.get(meta["source"], 0) + 1
        return counts

    def library_sources(self, libraries: Sequence[str] | None = None) -> dict[tuple[str, str], int]:
        """``(library, source) -> number of chunks``, for ``libraries`` (None: every library)."""
        wanted = None if libraries is None else set(libraries)
        counts: dict[tuple[str, str], int] = {}
        for meta in self._get_all(["metadatas"])["metadatas"]:
            if meta and "source" in meta and (wanted is None or library_of(meta) in wanted):
                key = (library_of(meta), meta["source"])
                counts[key] = counts.get(key, 0) + 1
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
                metadatas=[{LIBRARY_KEY: SHARED_LIBRARY, **d.metadata} for d in part],
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

    def backfill_libraries(self) -> int:
        """Give every chunk without a library the shared one (metadata only, nothing re-embedded),
        once per store: afterwards the collection's metadata says so and this returns at once.
        Run before the first search with a library filter (Chroma's ``where`` cannot match a
        missing field). Returns the chunks updated.

        Measured on a copy of the 17,625-chunk Python-docs store (2 busy cores, load ~6): 5.9 and
        6.2 s for every chunk, in pages of 5,000 (``collection.update`` merges the key).
        """
        if self._libraries_ready:
            return 0
        with self._backfill_lock:
            if self._libraries_ready:
                return 0
            stored = self.client.get_collection(name=self.collection_name, embedding_function=None)
            if (stored.metadata or {}).get(LIBRARIES_KEY):  # another process (a Chroma server's client) did it
                self._libraries_ready = True
                return 0
            data = self._get_all(["metadatas"])
            missing = [i for i, meta in zip(data["ids"], data["metadatas"], strict=True) if LIBRARY_KEY not in (meta or {})]
            step = min(_UPDATE_PAGE, self.client.get_max_batch_size())
            for start in range(0, len(missing), step):
                part = missing[start : start + step]
                # update() merges metadata keys: the rest of each chunk's metadata is kept
                self.collection.update(ids=part, metadatas=[{LIBRARY_KEY: SHARED_LIBRARY}] * len(part))
            self._new_revision(libraries_ready=True)
            self._libraries_ready = True
            return len(missing)

    def _new_revision(self, *, libraries_ready: bool = False) -> None:
        """Record that the chunks changed (after the change, so a reader never sees the new
        revision with the old data). A random token, not a counter: two writers cannot both
        write the same next value."""
        stored = self.client.get_collection(name=self.collection_name, embedding_function=None)
        # modify() replaces the whole metadata (chromadb 1.5) and refuses hnsw:* keys (the distance
        # function lives in the collection's configuration and is kept).
        meta = {k: v for k, v in (stored.metadata or {}).items() if not k.startswith("hnsw:")}
        meta |= {EMBEDDER_KEY: self.embedder_name, DIMENSION_KEY: self.dimension, REVISION_KEY: uuid.uuid4().hex}
        if libraries_ready:
            meta[LIBRARIES_KEY] = 1
        self.collection.modify(metadata=meta)

    # --- searching ----------------------------------------------------------------------------

    def dense_search(self, query_vector: list[float], k: int, *, libraries: Sequence[str] | None = None) -> list[tuple[str, float]]:
        """``(chunk_id, cosine similarity)`` of the ``k`` nearest chunks (``libraries``: among
        the chunks of those libraries only — a ``where`` in Chroma's query).

        The filter costs in proportion to the chunks it lets through (Chroma builds the allowed
        set per query): on the 17,625-chunk store, all shared, 4-6 ms unfiltered against
        ~100 ms filtered on 2 busy cores (load ~6); a filter matching nothing, 3 ms.
        """
        if k <= 0 or self.count() == 0 or (libraries is not None and not libraries):
            return []
        where = None
        if libraries is not None:
            self.backfill_libraries()
            where = library_filter(libraries)
        result = self.collection.query(query_embeddings=[query_vector], n_results=k, where=where, include=["distances"])
        return [(i, 1.0 - float(d)) for i, d in zip(result["ids"][0], result["distances"][0], strict=True)]

    def lexical_search(self, query: str, k: int, *, libraries: Sequence[str] | None = None) -> list[tuple[str, float]]:
        """``(chunk_id, BM25 score)`` of the ``k`` best chunks (``libraries``: the best among the
        chunks of those libraries — the others are masked out before the top k is taken)."""
        if libraries is not None and not libraries:
            return []
        index, ids, column = self._bm25_index()
        allowed = None if libraries is None else column.mask(libraries)
        return [(ids[i], score) for i, score in index.top(query, k, allowed=allowed)]

    def forget_lexical_index(self) -> None:
        """Drop the BM25 index (the next search rebuilds it): it named a chunk the collection no
        longer has, so something wrote to the collection without going through a DocumentStore."""
        with self._lock:
            self._bm25, self._bm25_key = None, None

    def _bm25_index(self) -> tuple[BM25Index, list[str], _LibraryColumn]:
        # Read before the data: a write that lands while the index is built changes the revision
        # after it, so the next search sees a new key and rebuilds. The count catches writers that
        # do not store a revision (older versions, other tools).
        key = (self.revision(), self.count())
        with self._lock:
            if self._bm25 is None or self._bm25_key != key:
                data = self._get_all(["documents", "metadatas"])
                self._bm25 = BM25Index(data["documents"])
                self._bm25_ids = data["ids"]
                self._bm25_libraries = _LibraryColumn([library_of(m) for m in data["metadatas"]])
                self._bm25_key = key
            return self._bm25, self._bm25_ids, self._bm25_libraries


class _LibraryColumn:
    """Each indexed chunk's library, as small integer codes: a library mask is one ``np.isin``."""

    def __init__(self, libraries: list[str]) -> None:
        self.codes_of: dict[str, int] = {}
        self.codes = np.fromiter((self.codes_of.setdefault(lib, len(self.codes_of)) for lib in libraries), dtype=np.int32,
                                 count=len(libraries))  # fmt: skip

    def mask(self, libraries: Sequence[str]) -> np.ndarray:
        wanted = [self.codes_of[lib] for lib in libraries if lib in self.codes_of]
        return np.isin(self.codes, np.asarray(wanted, dtype=np.int32))
