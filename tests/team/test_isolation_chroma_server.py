"""The library filter on a real ``chroma run`` server (ORCHARD_CHROMA_URL): the ``where`` in the
dense query, the BM25 mask, the backfill of an old collection, and the team-mode use cases —
and no process lock (a server is how several processes share one store)."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchard.identity import SHARED_LIBRARY, private_library
from orchard.store import LIBRARIES_KEY, LIBRARY_KEY, DocumentStore, make_chroma_client
from tests.fakes import HashEmbeddings
from tests.servers.chroma import ChromaServer
from tests.team.test_isolation import ANA, ANA_DOC, BEN, BEN_DOC, SECRET, TEAM, leaked

pytestmark = pytest.mark.chroma_server
ANA_LIB, BEN_LIB = private_library(ANA.user), private_library(BEN.user)


@pytest.fixture(scope="module")
def chroma(tmp_path_factory: pytest.TempPathFactory):
    with ChromaServer(tmp_path_factory.mktemp("chroma") / "data") as server:
        yield server


def test_the_where_filter_works_on_a_chroma_server(chroma: ChromaServer, collection_name: str) -> None:
    store = DocumentStore(client=make_chroma_client(url=chroma.url), collection=collection_name, embeddings=HashEmbeddings(),
                          where=chroma.url)  # fmt: skip
    texts = {f"ana{n}": ("quince jelly recipe " * 4 + str(n), ANA_LIB) for n in range(30)}
    texts |= {"ben": ("quince among the pears and plums", BEN_LIB), "old": ("quince tart in the handbook", None)}
    metas = [{"source": f"{i}.md"} | ({LIBRARY_KEY: lib} if lib else {}) for i, (_, lib) in texts.items()]
    store.collection.upsert(ids=list(texts), documents=[t for t, _ in texts.values()], metadatas=metas,
                            embeddings=store.embeddings.embed_documents([t for t, _ in texts.values()]))  # fmt: skip
    meta = {k: v for k, v in store.collection.metadata.items() if k != LIBRARIES_KEY and not k.startswith("hnsw:")}
    store.collection.modify(metadata=meta)  # "old" was written before libraries
    store = DocumentStore(client=store.client, collection=collection_name, embeddings=store.embeddings, where=chroma.url)

    query = store.embeddings.embed_query("quince jelly recipe")
    ids = [i for i, _ in store.dense_search(query, 5, libraries=[SHARED_LIBRARY, BEN_LIB])]  # backfills "old" first
    assert set(ids) == {"ben", "old"}
    assert store.collection.get(ids=["old"])["metadatas"][0][LIBRARY_KEY] == SHARED_LIBRARY
    assert all(i.startswith("ana") for i, _ in store.dense_search(query, 5))
    assert [i for i, _ in store.lexical_search("quince jelly", 5, libraries=[BEN_LIB])] == ["ben"]
    other = DocumentStore(client=make_chroma_client(url=chroma.url), collection=collection_name, embeddings=HashEmbeddings(),
                          where=chroma.url)  # a second client, as another process: no lock, the backfill seen as done
    assert other._libraries_ready and other.backfill_libraries() == 0


def test_team_use_cases_over_a_chroma_server(chroma: ChromaServer, tmp_path: Path, collection_name: str) -> None:
    from tests.fakes import scripted_orchard

    def team():
        return scripted_orchard(tmp_path / "data", "unused", chroma_url=chroma.url, collection=collection_name, **TEAM)

    assert team().library.upload([("vault.md", ANA_DOC)], identity=ANA).files_indexed == 1
    assert team().library.upload([("vault.md", BEN_DOC)], identity=BEN).files_indexed == 1  # same name, another library
    ben = team().library  # another Orchard on the same server
    assert not leaked(*(r["text"] for r in ben.search(SECRET, k=50, identity=BEN)))
    assert leaked(*(r["text"] for r in ben.search(SECRET, identity=ANA)))
    assert ben.delete("uploads/vault.md", identity=BEN) == 1
    assert leaked(*(r["text"] for r in team().library.search(SECRET, identity=ANA)))
