"""The ingest-speed levers keep ingestion's results: length-sorted batches, embedder streams,
each distinct text embedded once, embedding ahead of writing, one store write per batch."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from orchard.embeddings import MiniLMEmbeddings, length_sorted_batches
from orchard.ingest import embed_unique, ingest
from orchard.store import DocumentStore
from tests.fakes import HashEmbeddings


def test_length_sorted_batches_hold_every_index_once_longest_first() -> None:
    lengths = [5, 120, 3, 64, 64, 128, 1, 90, 7]
    batches = length_sorted_batches(lengths, 4)
    assert [len(b) for b in batches] == [4, 4, 1]
    flat = [i for b in batches for i in b]
    assert sorted(flat) == list(range(len(lengths)))
    assert [lengths[i] for i in flat] == sorted(lengths, reverse=True)


class FakeTokenizer:
    def __call__(self, texts, **_kwargs):
        return {"input_ids": [t.split() for t in texts]}


class FakeSentenceModel:
    """Stands in for SentenceTransformer: a text's vector encodes its word count; records the
    batches it was given and the threads that ran them."""

    tokenizer = FakeTokenizer()

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.threads: set[str] = set()

    def encode(self, texts, batch_size, **_kwargs):
        assert batch_size == len(texts)
        self.batches.append(list(texts))
        self.threads.add(threading.current_thread().name)
        return np.array([[float(len(t.split())), 1.0] for t in texts])


@pytest.mark.parametrize("streams", [1, 2])
def test_minilm_batches_by_word_pieces_and_returns_vectors_in_input_order(streams: int) -> None:
    import torch

    embeddings = MiniLMEmbeddings(batch_size=3, streams=streams)
    model = FakeSentenceModel()
    embeddings._model = model
    texts = [" ".join(["w"] * n) for n in (4, 1, 9, 2, 7, 7, 3)]
    threads_before = torch.get_num_threads()
    vectors = embeddings.embed_documents(texts)
    assert [v[0] for v in vectors] == [4, 1, 9, 2, 7, 7, 3]  # each text got its own vector back
    assert [[len(t.split()) for t in b] for b in sorted(model.batches, key=lambda b: -len(b[0].split()))] == [
        [9, 7, 7], [4, 3, 2], [1],
    ]  # fmt: skip
    assert torch.get_num_threads() == threads_before  # the streams' thread setting is undone
    if streams == 2:
        assert len(model.threads) == 2 and all(name.startswith("orchard-embed-stream") for name in model.threads)


def test_each_distinct_text_is_embedded_once_and_every_text_gets_its_vector() -> None:
    seen: list[str] = []

    class Counting(HashEmbeddings):
        def embed_documents(self, texts: list[str]) -> list[list[float]]:
            seen.extend(texts)
            return super().embed_documents(texts)

    texts = ["apple pie", "pear tart", "apple pie", "plum jam", "pear tart"]
    vectors = embed_unique(Counting(), texts)
    assert seen == ["apple pie", "pear tart", "plum jam"]
    assert vectors == HashEmbeddings().embed_documents(texts)


def make_corpus(root: Path, files: int = 12) -> Path:
    docs = root / "docs"
    docs.mkdir()
    for n in range(files):
        paragraphs = [f"Paragraph {p} of file {n} about orchard {n * p} trees and their fruit. " * 6 for p in range(5)]
        (docs / f"file{n:02}.md").write_text(f"# File {n}\n\n" + "\n\n".join(paragraphs))
    return docs


def stored(store: DocumentStore) -> list[tuple[str, str, tuple[float, ...]]]:
    data = store.collection.get(include=["documents", "embeddings"])
    return sorted((i, d, tuple(np.round(e, 6))) for i, d, e in zip(data["ids"], data["documents"], data["embeddings"], strict=True))


def test_embedding_ahead_stores_what_embedding_in_turn_stores(tmp_path: Path, store: DocumentStore, collection_name: str) -> None:
    from orchard.store import make_chroma_client

    make_corpus(tmp_path)
    ahead = ingest(["docs"], store=store, progress=False, batch_chunks=7, overlap=True)
    other = DocumentStore(client=make_chroma_client(path=tmp_path / "other"), collection=collection_name, embeddings=HashEmbeddings())
    in_turn = ingest(["docs"], store=other, progress=False, batch_chunks=7, overlap=False)
    assert ahead.as_dict() | {"seconds": 0} == in_turn.as_dict() | {"seconds": 0}
    assert stored(store) == stored(other)


def test_files_are_written_in_order_one_store_write_per_batch_from_the_callers_thread(tmp_path: Path, store: DocumentStore) -> None:
    make_corpus(tmp_path)
    writes: list[tuple[list[str], str]] = []
    embed_threads: set[str] = set()
    upsert = store.upsert

    def recording_upsert(docs, vectors):
        writes.append(([d.metadata["source"] for d in docs], threading.current_thread().name))
        upsert(docs, vectors)

    embed = store.embeddings.embed_documents

    def recording_embed(texts):
        embed_threads.add(threading.current_thread().name)
        return embed(texts)

    store.upsert = recording_upsert  # type: ignore[method-assign]
    store.embeddings.embed_documents = recording_embed  # type: ignore[method-assign]
    order: list[str] = []
    report = ingest(["docs"], store=store, progress=False, batch_chunks=20, on_file=lambda s, _status: order.append(s))
    assert report.files_indexed == 12
    assert order == sorted(order)  # files are indexed in the order they were found
    written = [s for sources, _ in writes for s in dict.fromkeys(sources)]
    assert written == sorted(written) and len(writes) < report.files_indexed  # several files per write
    assert {thread for _, thread in writes} == {threading.current_thread().name}
    assert embed_threads and all(name.startswith("orchard-embed") for name in embed_threads)


def test_an_embedder_error_in_a_later_batch_keeps_earlier_files_and_writes_nothing_after(tmp_path: Path, store: DocumentStore) -> None:
    make_corpus(tmp_path)
    calls = 0
    embed = store.embeddings.embed_documents

    def failing_third_batch(texts):
        nonlocal calls
        calls += 1
        if calls == 3:
            raise RuntimeError("embedder crashed")
        return embed(texts)

    store.embeddings.embed_documents = failing_third_batch  # type: ignore[method-assign]
    with pytest.raises(RuntimeError, match="embedder crashed"):
        ingest(["docs"], store=store, progress=False, batch_chunks=20)
    sources = store.sources()
    assert sources and len(sources) < 12
    assert store.file_hashes().keys() == sources.keys() and all(store.file_hashes().values())  # each stored file whole
    store.embeddings.embed_documents = embed  # type: ignore[method-assign]
    again = ingest(["docs"], store=store, progress=False, batch_chunks=20)
    assert again.files_unchanged == len(sources) and again.files_indexed == 12 - len(sources)
