"""Libraries in the store: the filter lives in the query (Chroma's ``where``, a mask over BM25's
scores before the top k), file identity is per library, old stores are backfilled, and
concurrent requests of different users share no filter state."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever

from orchard.bm25 import BM25Index
from orchard.identity import SHARED_LIBRARY, private_library
from orchard.ingest import ingest, library_chunk_id
from orchard.retriever import HybridRetriever, MemoRetriever, RewriteFusionRetriever, restricted
from orchard.store import LIBRARIES_KEY, LIBRARY_KEY, DocumentStore, library_of, make_chroma_client
from tests.fakes import HashEmbeddings

ANA, BEN = private_library("ana"), private_library("ben")


def write(store: DocumentStore, docs: list[tuple[str, str, str | None]]) -> list[str]:
    """``(id, text, library)`` chunks written straight to the store (library None: no field)."""
    documents = []
    for chunk_id, text, library in docs:
        meta = {"source": f"{chunk_id}.md", "title": chunk_id, "section": ""}
        if library is not None:
            meta[LIBRARY_KEY] = library
        documents.append(Document(page_content=text, metadata=meta, id=chunk_id))
    store.collection.upsert(ids=[d.id for d in documents], documents=[d.page_content for d in documents],
                            metadatas=[d.metadata for d in documents],
                            embeddings=store.embeddings.embed_documents([d.page_content for d in documents]))  # fmt: skip
    store._new_revision()
    return [d.id for d in documents]


@pytest.fixture
def crowded(store: DocumentStore) -> DocumentStore:
    """60 of Ana's private chunks that match "quince jelly" far better than Ben's one chunk."""
    write(store, [(f"ana{n:02}", "quince jelly quince jelly quince jelly recipe " * 3 + f"batch {n}", ANA) for n in range(60)])
    write(store, [("ben-only", "Ben's notes mention quince once, among pears, plums and apples in the cellar.", BEN)])
    write(store, [("shared-1", "The handbook covers pruning apple trees in late winter.", SHARED_LIBRARY)])
    return store


# --- BM25: the mask is applied before the top k -------------------------------------------------


def test_bm25_mask_scores_out_disallowed_texts_before_the_top_k() -> None:
    texts = ["quince quince quince jelly"] * 50 + ["one quince among pears"]
    allowed = np.zeros(len(texts), dtype=bool)
    allowed[50] = True
    index = BM25Index(texts)
    assert [i for i, _ in index.top("quince", 5)] != [50]  # unmasked: the 50 better ones take every place
    assert [i for i, _ in index.top("quince", 5, allowed=allowed)] == [50]
    assert index.top("quince", 5, allowed=np.zeros(len(texts), dtype=bool)) == []
    with pytest.raises(ValueError, match="mask covers"):
        index.top("quince", 5, allowed=np.ones(3, dtype=bool))


def test_lexical_search_of_one_library_finds_its_one_chunk_among_many_better_ones(crowded: DocumentStore) -> None:
    for k in (1, 5, 40):
        hits = crowded.lexical_search("quince jelly", k, libraries=[SHARED_LIBRARY, BEN])
        assert [i for i, _ in hits] == ["ben-only"], k
    assert len(crowded.lexical_search("quince jelly", 40)) == 40  # unrestricted: Ana's chunks fill it
    assert crowded.lexical_search("quince", 5, libraries=[]) == []


def test_dense_search_passes_the_libraries_as_a_where_in_the_query(crowded: DocumentStore) -> None:
    query = crowded.embeddings.embed_query("quince jelly recipe")
    for k in (1, 5, 40):
        ids = [i for i, _ in crowded.dense_search(query, k, libraries=[SHARED_LIBRARY, BEN])]
        assert "ben-only" in ids and not any(i.startswith("ana") for i in ids), (k, ids)
    assert all(i.startswith("ana") for i, _ in crowded.dense_search(query, 5))  # unrestricted
    assert crowded.dense_search(query, 5, libraries=[]) == []


def test_the_chroma_query_gets_the_where(crowded: DocumentStore, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[object] = []
    real = crowded.collection.query

    def spy(**kwargs: object) -> object:
        seen.append(kwargs.get("where"))
        return real(**kwargs)

    monkeypatch.setattr(crowded.collection, "query", spy)
    crowded.dense_search(crowded.embeddings.embed_query("quince"), 3, libraries=[SHARED_LIBRARY, BEN])
    assert seen == [{LIBRARY_KEY: {"$in": [SHARED_LIBRARY, BEN]}}]


def test_the_retriever_view_returns_only_allowed_chunks_and_finds_the_allowed_one(crowded: DocumentStore) -> None:
    retriever = HybridRetriever(store=crowded, k=5)
    ben = retriever.with_libraries([SHARED_LIBRARY, BEN])
    docs = ben.invoke("quince jelly recipe")
    assert docs[0].id == "ben-only"
    assert {library_of(d.metadata) for d in docs} <= {SHARED_LIBRARY, BEN}
    assert ben.store is retriever.store and retriever.libraries is None  # a view: the original is unchanged
    assert all(d.id.startswith("ana") for d in retriever.invoke("quince jelly recipe"))
    assert retriever.with_libraries([]).invoke("quince") == []


def test_every_retriever_in_the_chain_can_be_restricted(crowded: DocumentStore) -> None:
    hybrid = HybridRetriever(store=crowded, k=3)
    fusion = RewriteFusionRetriever(base=hybrid, rewrite=lambda q: [q + " jelly"], k=3)
    for view in (restricted(fusion, [BEN]), restricted(MemoRetriever(base=hybrid), [BEN]),
                 MemoRetriever(base=restricted(fusion, [BEN]))):  # fmt: skip
        assert [d.id for d in view.invoke("quince")] == ["ben-only"]
    assert restricted(hybrid, None) is hybrid

    class Plain(BaseRetriever):  # a retriever that cannot be restricted is refused, not searched
        def _get_relevant_documents(self, query: str, *, run_manager: object) -> list[Document]:
            return hybrid.invoke(query)

    with pytest.raises(TypeError, match="cannot search by library"):
        restricted(Plain(), [BEN])


def test_concurrent_views_of_different_users_never_see_each_others_chunks(crowded: DocumentStore) -> None:
    """One retriever (as Components builds it), two users' requests in two threads at once."""
    retriever = HybridRetriever(store=crowded, k=5)
    crowded.lexical_search("warm", 1)  # build the index once
    seen: dict[str, set[str]] = {"ana": set(), "ben": set()}
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def ask(user: str, library: str) -> None:
        try:
            start.wait()
            for _ in range(25):
                for doc in restricted(retriever, [library]).invoke("quince jelly recipe"):
                    seen[user].add(library_of(doc.metadata))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=ask, args=("ana", ANA)), threading.Thread(target=ask, args=("ben", BEN))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert seen == {"ana": {ANA}, "ben": {BEN}}


# --- backfill of stores written before libraries --------------------------------------------------


def test_chunks_without_a_library_are_shared_and_backfilled_once(store: DocumentStore) -> None:
    write(store, [("old-1", "Medlars are picked after the first frost.", None), ("old-2", "Quinces need a warm wall.", None)])
    meta = {k: v for k, v in store.collection.metadata.items() if k != LIBRARIES_KEY and not k.startswith("hnsw:")}
    store.collection.modify(metadata=meta)  # as a store written before libraries: no flag
    old = DocumentStore(client=store.client, collection=store.collection_name, embeddings=store.embeddings)
    assert old._libraries_ready is False
    vectors_before = old.collection.get(ids=["old-1"], include=["embeddings"])["embeddings"][0].tolist()
    assert old.file_hashes(SHARED_LIBRARY).keys() == {"old-1.md", "old-2.md"}  # counted as shared before any backfill
    assert [i for i, _ in old.lexical_search("medlars frost", 5, libraries=[SHARED_LIBRARY])] == ["old-1"]

    found = old.dense_search(old.embeddings.embed_query("medlars frost"), 1, libraries=[SHARED_LIBRARY])  # backfills first
    assert [i for i, _ in found] == ["old-1"]
    got = old.collection.get(ids=["old-1"], include=["metadatas", "embeddings"])
    assert got["metadatas"][0] == {"source": "old-1.md", "title": "old-1", "section": "", LIBRARY_KEY: SHARED_LIBRARY}
    assert got["embeddings"][0].tolist() == vectors_before  # metadata only: nothing re-embedded
    assert old.client.get_collection(old.collection_name).metadata[LIBRARIES_KEY] == 1
    assert old.backfill_libraries() == 0
    reopened = DocumentStore(client=store.client, collection=store.collection_name, embeddings=store.embeddings)
    assert reopened._libraries_ready and reopened.backfill_libraries() == 0


def test_a_new_store_needs_no_backfill(store: DocumentStore) -> None:
    assert store._libraries_ready and store.backfill_libraries() == 0


def test_personal_mode_never_writes_a_backfill(store: DocumentStore) -> None:
    """Unfiltered searches leave an old store as it is (a read-only shared store stays untouched)."""
    write(store, [("old-1", "Medlars are picked after the first frost.", None)])
    meta = {k: v for k, v in store.collection.metadata.items() if k != LIBRARIES_KEY and not k.startswith("hnsw:")}
    store.collection.modify(metadata=meta)
    old = DocumentStore(client=store.client, collection=store.collection_name, embeddings=store.embeddings)
    revision = old.revision()
    HybridRetriever(store=old, k=3).invoke("medlars")
    assert old.revision() == revision and LIBRARY_KEY not in old.collection.get(ids=["old-1"])["metadatas"][0]


# --- file identity per library ---------------------------------------------------------------------


def test_two_users_files_of_one_name_are_two_files(store: DocumentStore, tmp_path: Path) -> None:
    (tmp_path / "notes.md").write_text("# Notes\n\nPlums ripen in August.\n")
    first = ingest(["notes.md"], store=store, base=tmp_path, progress=False, library=ANA)
    second = ingest(["notes.md"], store=store, base=tmp_path, progress=False, library=BEN)
    assert first.files_indexed == second.files_indexed == 1  # the same bytes, but Ben's is not "unchanged"
    ana_ids, ben_ids = set(store.chunk_ids("notes.md", ANA)), set(store.chunk_ids("notes.md", BEN))
    assert ana_ids and ben_ids and not ana_ids & ben_ids and store.count() == 2
    assert {library_of(d.metadata) for d in store.get(sorted(ana_ids))} == {ANA}

    (tmp_path / "notes.md").write_text("# Notes\n\nPlums ripen in September this year.\n")
    changed = ingest(["notes.md"], store=store, base=tmp_path, progress=False, library=BEN)
    assert (changed.files_indexed, changed.chunks_removed) == (1, 1)
    assert set(store.chunk_ids("notes.md", ANA)) == ana_ids  # Ana's copy untouched
    assert ingest(["notes.md"], store=store, base=tmp_path, progress=False, library=BEN).files_unchanged == 1

    (tmp_path / "notes.md").unlink()
    pruned = ingest(["."], store=store, base=tmp_path, progress=False, library=BEN, prune=True)
    assert pruned.chunks_removed == 1 and set(store.chunk_ids("notes.md", ANA)) == ana_ids and not store.chunk_ids("notes.md", BEN)


def test_shared_chunk_ids_stay_what_they_were(store: DocumentStore, tmp_path: Path) -> None:
    """A store written before libraries keeps its ids: nothing is re-embedded when it is re-ingested."""
    from orchard.chunking import chunk_sections
    from orchard.loaders import load_file

    (tmp_path / "a.md").write_text("# A\n\nApples keep in a cool cellar.\n")
    ingest(["a.md"], store=store, base=tmp_path, progress=False)
    plain = [d.id for d in chunk_sections(load_file(tmp_path / "a.md"), source="a.md")]
    assert store.chunk_ids("a.md", SHARED_LIBRARY) == plain
    assert library_chunk_id(SHARED_LIBRARY, plain[0]) == plain[0] != library_chunk_id(ANA, plain[0])


def test_make_chroma_client_twice_in_one_process_shares_the_hold(tmp_path: Path) -> None:
    """The CLI, the app and the API may open one store several times in one process."""
    from orchard.store import _HOLDS, close_chroma_client

    first, second = make_chroma_client(path=tmp_path / "s"), make_chroma_client(path=tmp_path / "s")
    key = str((tmp_path / "s").resolve())
    assert _HOLDS[key].users == 2
    one = DocumentStore(client=first, collection="one", embeddings=HashEmbeddings())
    one.close()
    assert _HOLDS[key].users == 1
    close_chroma_client(second)
    close_chroma_client(second)  # idempotent
    assert key not in _HOLDS
