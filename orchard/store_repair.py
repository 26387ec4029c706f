"""Crash safety of the embedded store: one ingestion at a time, and repair after a hard stop.

* :func:`exclusive_ingestion` holds ``<store>/ingest.lock`` (an ``flock``, released by the kernel
  when the process dies, however it dies) for one ingestion, across processes: the app's upload
  and ``orchard ingest`` on one store run one after the other, and the second one says it waits.
  While an ingestion runs, ``<store>/ingest.running`` exists; finding it while holding the lock
  means the last ingestion was killed (``kill -9``, power loss).
* After such a stop, Chroma's on-disk HNSW index can miss vectors that its records hold (measured:
  a stored vector with cosine 0.82 to a query, the next best 0.21, was not returned at all).
  :func:`check_dense_index` asks the index for every chunk's own vector; :func:`rebuild_index`
  writes the collection anew from its records (first saved to ``<store>/rebuild/``, so a stop
  during the rebuild loses nothing: the next run resumes from that copy).

Chunks themselves need no repair: ids are content hashes (re-adding one never duplicates it),
and :meth:`DocumentStore.file_hashes` sends a file cut short or half-replaced back to ingestion.

Example::

    >>> with exclusive_ingestion(Path(".orchard/store"), notify=print) as unclean:  # doctest: +SKIP
    ...     if unclean:
    ...         repair_after_unclean_stop(store, notify=print)
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from orchard.store import DIMENSION_KEY, EMBEDDER_KEY, LIBRARIES_KEY, LIBRARY_KEY, DocumentStore

LOCK_FILE = "ingest.lock"
RUNNING_FILE = "ingest.running"
REBUILD_DIR = "rebuild"
_BATCH = 1000
_SAME_VECTOR = 0.9999  # identical texts have identical vectors: either chunk found first is right


@contextmanager
def exclusive_ingestion(store_dir: Path, *, notify: Callable[[str], None] = lambda _m: None) -> Iterator[bool]:
    """Hold the store's ingestion lock; yields True when the previous ingestion did not finish."""
    store_dir.mkdir(parents=True, exist_ok=True)
    running = store_dir / RUNNING_FILE
    with (store_dir / LOCK_FILE).open("a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(running)
            notify(f"another ingestion is running on this store{holder}: waiting for it to finish")
            fcntl.flock(lock, fcntl.LOCK_EX)
        unclean = running.exists()  # we hold the lock, so whoever wrote it is gone
        running.write_text(json.dumps({"pid": os.getpid(), "started": time.time()}))
        try:
            yield unclean
        finally:  # a normal end or an exception; kill -9 leaves the file behind, as it should
            running.unlink(missing_ok=True)
            fcntl.flock(lock, fcntl.LOCK_UN)


def _holder(running: Path) -> str:
    try:
        return f" (process {json.loads(running.read_text())['pid']})"
    except (OSError, ValueError, KeyError, TypeError):
        return ""


def check_dense_index(store: DocumentStore) -> list[str]:
    """Ids of the chunks whose own vector does not find them first (empty: the index is sound)."""
    missed: list[str] = []
    total = store.count()
    for offset in range(0, total, _BATCH):
        page = store.collection.get(include=["embeddings"], limit=_BATCH, offset=offset)
        if not page["ids"]:
            break
        found = store.collection.query(query_embeddings=page["embeddings"], n_results=1, include=["distances"])
        for own, ids, distances in zip(page["ids"], found["ids"], found["distances"], strict=True):
            if not ids or (ids[0] != own and 1.0 - distances[0] < _SAME_VECTOR):
                missed.append(own)
    return missed


def _all_records(store: DocumentStore) -> dict[str, list]:
    """Every record with its vector; a record whose vector is lost is embedded again from its text."""
    out: dict[str, list] = {"ids": [], "documents": [], "metadatas": [], "embeddings": []}
    for offset in range(0, store.count(), _BATCH):
        page = store.collection.get(include=["documents", "metadatas", "embeddings"], limit=_BATCH, offset=offset)
        vectors = page["embeddings"] if page["embeddings"] is not None else [None] * len(page["ids"])
        lost = [i for i, v in enumerate(vectors) if v is None or len(v) != store.dimension]
        if lost:
            fresh = store.embeddings.embed_documents([page["documents"][i] for i in lost])
            vectors = list(vectors)
            for i, vector in zip(lost, fresh, strict=True):
                vectors[i] = vector
        out["ids"] += page["ids"]
        out["documents"] += page["documents"]
        out["metadatas"] += page["metadatas"]
        out["embeddings"] += [list(map(float, v)) for v in vectors]
    return out


def rebuild_index(store: DocumentStore, *, store_dir: Path) -> int:
    """Write the collection anew from its records (a fresh HNSW index); returns the chunks kept.

    The records are saved under ``<store_dir>/rebuild/`` first and removed last; if that folder
    exists when this starts, an earlier rebuild was stopped and its copy is what gets restored.
    """
    saved = store_dir / REBUILD_DIR
    if not (saved / "done").exists():
        data = _all_records(store)
        shutil.rmtree(saved, ignore_errors=True)
        partial = store_dir / (REBUILD_DIR + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir()
        np.save(partial / "embeddings.npy", np.asarray(data["embeddings"], dtype=np.float32))
        records = {"ids": data["ids"], "documents": data["documents"], "metadatas": data["metadatas"]}
        (partial / "records.json").write_text(json.dumps(records, ensure_ascii=False))
        (partial / "done").write_text("")
        os.replace(partial, saved)
    vectors = np.load(saved / "embeddings.npy")
    records = json.loads((saved / "records.json").read_text())
    try:
        store.client.delete_collection(store.collection_name)
    except Exception:  # already gone: a rebuild stopped right after deleting it
        pass
    metadata = {"hnsw:space": "cosine", EMBEDDER_KEY: store.embedder_name, DIMENSION_KEY: store.dimension}
    if all(LIBRARY_KEY in (meta or {}) for meta in records["metadatas"]):  # else the first filtered search backfills
        metadata[LIBRARIES_KEY] = 1
    store.collection = store.client.create_collection(name=store.collection_name, embedding_function=None, metadata=metadata)
    ids = records["ids"]
    for start in range(0, len(ids), _BATCH):
        end = start + _BATCH
        store.collection.add(
            ids=ids[start:end],
            documents=records["documents"][start:end],
            metadatas=records["metadatas"][start:end],
            embeddings=vectors[start:end].tolist(),
        )
    store._new_revision()
    store.forget_lexical_index()
    shutil.rmtree(saved)
    return len(ids)


def repair_after_unclean_stop(store: DocumentStore, *, store_dir: Path, notify: Callable[[str], None]) -> list[str]:
    """After an ingestion that did not finish: finish a stopped rebuild, or check the vector
    index and rebuild it when it misses chunks. Returns what was done, as sentences."""
    if (store_dir / REBUILD_DIR / "done").exists():
        notify("the last ingestion stopped while the vector index was being rebuilt: finishing the rebuild")
        kept = rebuild_index(store, store_dir=store_dir)
        return [f"vector index rebuilt after an interrupted rebuild ({kept} chunks)"]
    notify("the last ingestion did not finish: checking the vector index")
    missed = check_dense_index(store)
    if not missed:
        return ["the last ingestion did not finish; the vector index was checked and is sound"]
    notify(f"the vector index misses {len(missed)} chunks: rebuilding it")
    kept = rebuild_index(store, store_dir=store_dir)
    return [f"the last ingestion did not finish and the vector index missed {len(missed)} chunks: rebuilt ({kept} chunks)"]
