"""Hybrid retrieval: tokenizer, fusion, k at call time, relevance scores, LangChain's suite."""

from __future__ import annotations

from pathlib import Path

import pytest
from langchain_tests.integration_tests import RetrieversIntegrationTests

from orchard.bm25 import BM25Index, tokenize
from orchard.ingest import ingest
from orchard.retriever import HybridRetriever, reciprocal_rank_fusion
from orchard.store import DocumentStore, make_chroma_client
from tests.fakes import HashEmbeddings


def test_tokenizer_splits_identifiers_drops_stop_words_and_stems() -> None:
    assert tokenize("How do I shuffle a list?") == ["shuffl", "list"]
    assert tokenize("json.dumps(obj)") == ["json", "dump", "obj"]
    assert tokenize("read_csv") == ["read_csv", "read", "csv"]
    assert tokenize("Shuffling LISTS") == tokenize("shuffle list")


def test_bm25_ranks_the_matching_text_first() -> None:
    index = BM25Index(["apples grow on trees", "pears ripen after picking", "the orchard shop"])
    assert [i for i, _ in index.top("when do pears ripen", 3)] == [1]
    assert index.top("bananas", 3) == []
    assert BM25Index([]).top("anything", 3) == []


def test_reciprocal_rank_fusion_rewards_agreement() -> None:
    fused = reciprocal_rank_fusion([["a", "b", "c"], ["b", "d"]], [0.5, 0.5])
    assert [i for i, _ in fused] == ["b", "a", "d", "c"]
    only_dense = reciprocal_rank_fusion([["a", "b"], ["b", "a"]], [1.0, 0.0])
    assert [i for i, _ in only_dense] == ["a", "b"]


@pytest.fixture
def filled_store(tmp_path: Path, store: DocumentStore) -> DocumentStore:
    docs = tmp_path / "docs"
    docs.mkdir()
    topics = {
        "apples": "Apples grow on trees; harvest apples in autumn when the seeds are brown.",
        "pears": "Pears ripen after picking: store pears at room temperature for a week.",
        "cherries": "Cherries need netting against birds; pick cherries with the stem.",
        "pruning": "Prune fruit trees in late winter, removing crossing branches.",
        "cider": "Cider is pressed from apples; ferment the juice with wild yeast.",
    }
    for name, text in topics.items():
        (docs / f"{name}.md").write_text(f"# {name.title()}\n\n{text}\n")
    ingest(["docs"], store=store, progress=False)
    return store


def test_hybrid_returns_k_scored_documents(filled_store: DocumentStore) -> None:
    retriever = HybridRetriever(store=filled_store, k=3)
    docs = retriever.invoke("when should I prune my trees")
    assert len(docs) == 3
    assert docs[0].metadata["source"] == "docs/pruning.md"
    meta = docs[0].metadata
    assert meta["rank"] == 1 and meta["chunk_id"] == docs[0].id
    assert meta["score"] >= docs[1].metadata["score"] >= docs[2].metadata["score"]
    assert 0 < meta["dense_score"] <= 1.0 and meta["bm25_score"] > 0
    assert len(retriever.invoke("pears", k=1)) == 1


def test_dense_scores_cover_chunks_only_bm25_found(filled_store: DocumentStore) -> None:
    docs = HybridRetriever(store=filled_store, k=5, candidates=1).invoke("ferment juice")
    cider = next(d for d in docs if d.metadata["source"] == "docs/cider.md")
    assert cider.metadata["dense_score"] > 0
    lexical_only = HybridRetriever(store=filled_store, k=2, dense_weight=0.0).invoke("ferment juice")
    assert lexical_only[0].metadata["dense_score"] > 0  # measured, so relevance can be judged


def test_k_is_honoured_when_few_files_hold_the_matches(filled_store: DocumentStore) -> None:
    docs = HybridRetriever(store=filled_store, k=5, max_per_source=1).invoke("apples")
    assert len(docs) == 5


def test_empty_store_and_blank_query_return_nothing(tmp_path: Path, filled_store: DocumentStore) -> None:
    empty = DocumentStore(client=make_chroma_client(path=tmp_path / "empty"), collection="empty", embeddings=HashEmbeddings())
    assert HybridRetriever(store=empty).invoke("anything") == []
    assert HybridRetriever(store=filled_store).invoke("   ") == []


def test_bm25_index_follows_writes(filled_store: DocumentStore, tmp_path: Path) -> None:
    retriever = HybridRetriever(store=filled_store, k=1, dense_weight=0.0)
    assert retriever.invoke("quince") == []
    (tmp_path / "docs" / "quince.md").write_text("# Quince\n\nQuince jelly needs long cooking.\n")
    ingest(["docs"], store=filled_store, progress=False)
    assert retriever.invoke("quince")[0].metadata["source"] == "docs/quince.md"


def two_processes(tmp_path: Path, collection_name: str) -> tuple[DocumentStore, DocumentStore]:
    """Two stores on one persistent path, each with its own Chroma client: two processes."""
    return tuple(
        DocumentStore(client=make_chroma_client(path=tmp_path / "shared"), collection=collection_name, embeddings=HashEmbeddings())
        for _ in range(2)
    )  # type: ignore[return-value]


def test_a_file_replaced_by_another_process_with_as_many_chunks_is_searched_anew(tmp_path: Path, collection_name: str) -> None:
    mine, theirs = two_processes(tmp_path, collection_name)
    notes = tmp_path / "notes.md"
    notes.write_text("# Notes\n\nQuince jelly needs long cooking.\n")
    ingest(["notes.md"], store=mine, progress=False)
    lexical = HybridRetriever(store=mine, k=1, dense_weight=0.0)
    assert lexical.invoke("quince")[0].page_content.endswith("Quince jelly needs long cooking.")  # the index is built
    count = mine.count()
    notes.write_text("# Notes\n\nMedlars ripen after the first frost.\n")
    ingest(["notes.md"], store=theirs, progress=False)
    assert mine.count() == count  # the same number of chunks: a count would not tell
    assert lexical.invoke("medlar")[0].page_content.endswith("Medlars ripen after the first frost.")
    assert lexical.invoke("quince") == []


def test_every_write_stores_a_new_revision_and_keeps_the_embedder_identity(tmp_path: Path, collection_name: str) -> None:
    mine, theirs = two_processes(tmp_path, collection_name)
    assert mine.revision() is None  # never written
    (tmp_path / "a.md").write_text("# A\n\nApples.\n")
    ingest(["a.md"], store=mine, progress=False)
    first = theirs.revision()
    assert first is not None and first == mine.revision()
    theirs.delete(theirs.chunk_ids("a.md"))
    assert mine.revision() not in (None, first)
    assert theirs.delete([]) == 0 and mine.revision() == theirs.revision()  # nothing deleted: no new revision
    meta = mine.client.get_collection(collection_name).metadata
    assert meta["orchard_embedder"] == "fake-hash" and meta["orchard_dimension"] == 128
    reopened = DocumentStore(client=make_chroma_client(path=tmp_path / "shared"), collection=collection_name,
                             embeddings=HashEmbeddings())  # fmt: skip
    assert reopened.dimension == 128
    (tmp_path / "b.md").write_text("# B\n\nBlackberries.\n")
    ingest(["b.md"], store=reopened, progress=False)
    [(_, distance)] = reopened.dense_search(HashEmbeddings().embed_query("blackberries"), 1)
    assert distance == pytest.approx(1.0)  # still cosine after the metadata was rewritten


def test_chunks_the_index_names_but_the_collection_lost_make_it_rebuild(filled_store: DocumentStore) -> None:
    """A writer that bypasses DocumentStore (no revision) swaps a chunk: same count, same revision."""
    retriever = HybridRetriever(store=filled_store, k=1, dense_weight=0.0)
    [old] = retriever.invoke("cherries netting birds")
    raw = filled_store.client.get_collection(filled_store.collection_name)
    raw.delete(ids=[old.id])
    text = "Cherries under netting are safe from birds; cherry jam keeps a year."
    raw.add(ids=["intruder"], documents=[text], metadatas=[{"source": "docs/jam.md"}],
            embeddings=HashEmbeddings().embed_documents([text]))  # fmt: skip
    [found] = retriever.invoke("cherries netting birds")
    assert found.id == "intruder" and found.metadata["source"] == "docs/jam.md"


class TestHybridRetrieverStandard(RetrieversIntegrationTests):
    """langchain-tests' retriever contract (k in the constructor and at call time, async, ...)."""

    @property
    def retriever_constructor(self) -> type[HybridRetriever]:
        return HybridRetriever

    @property
    def retriever_constructor_params(self) -> dict:
        import tempfile
        import uuid

        folder = Path(tempfile.mkdtemp(prefix="orchard-suite-"))
        store = DocumentStore(
            client=make_chroma_client(path=folder / "store"),
            collection=f"suite-{uuid.uuid4().hex[:8]}",
            embeddings=HashEmbeddings(),
        )
        docs = folder / "docs"
        docs.mkdir()
        for i in range(12):
            (docs / f"note{i}.txt").write_text(f"Example note {i} about example queries and orchards.")
        ingest([str(docs)], store=store, progress=False)
        return {"store": store, "k": 3}

    @property
    def retriever_query_example(self) -> str:
        return "example query"


def test_release_notes_rank_below_reference_pages_and_one_page_cannot_crowd_out_others(
    tmp_path: Path, store: DocumentStore
) -> None:
    docs = tmp_path / "docs"
    (docs / "whatsnew").mkdir(parents=True)
    (docs / "whatsnew" / "2.5.html").write_text(
        "<h1>What's new in 2.5</h1><p>The new uuid module generates universally unique identifiers.</p>"
    )
    (docs / "uuid.html").write_text("<h1>uuid</h1><p>This module generates universally unique identifiers (UUID).</p>")
    filler = "Unique identifiers are generated here, and more about unique identifiers follows. " * 4
    long_page = "\n\n".join(f"## Part {i}\n\n{filler}" for i in range(6))
    (docs / "ids.md").write_text("# Identifiers\n\n" + long_page)
    ingest(["docs"], store=store, progress=False)
    question = "which module generates universally unique identifiers"
    neutral = HybridRetriever(store=store, k=4, secondary_weight=1.0, max_per_source=0).invoke(question)
    assert [d.metadata["source"] for d in neutral].count("docs/ids.md") >= 2
    ranked = HybridRetriever(store=store, k=3, max_per_source=1).invoke(question)
    sources = [d.metadata["source"] for d in ranked]
    assert sources.index("docs/uuid.html") < sources.index("docs/whatsnew/2.5.html")
    assert sources.count("docs/ids.md") == 1
