"""Ingestion: incremental, never duplicating, bad files reported by path, embedder recorded."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchard.errors import StoreMismatch
from orchard.ingest import ingest
from orchard.store import DocumentStore, make_chroma_client
from tests.fakes import HashEmbeddings


def make_corpus(root: Path) -> Path:
    docs = root / "docs"
    (docs / "sub").mkdir(parents=True)
    (docs / "apples.md").write_text("# Apples\n\nApples grow on trees in the orchard.\n")
    (docs / "sub" / "pears.txt").write_text("Pears ripen after picking.")
    (docs / "harvest.csv").write_text("tree,kg\nA,10\nB,12\n")
    return docs


def test_sources_are_the_given_path_joined_with_the_file(tmp_path: Path, store: DocumentStore) -> None:
    make_corpus(tmp_path)
    report = ingest(["docs"], store=store, progress=False)  # cwd is tmp_path
    assert report.files_indexed == 3 and not report.files_failed
    assert set(store.sources()) == {"docs/apples.md", "docs/sub/pears.txt", "docs/harvest.csv"}
    assert report.chunks_total == store.count() == report.chunks_added


def test_reingest_is_a_no_op_and_changes_replace_chunks(tmp_path: Path, store: DocumentStore) -> None:
    docs = make_corpus(tmp_path)
    first = ingest(["docs"], store=store, progress=False)
    again = ingest(["docs"], store=store, progress=False)
    assert (again.files_indexed, again.files_unchanged, again.chunks_added, again.chunks_removed) == (0, 3, 0, 0)
    assert store.count() == first.chunks_total

    (docs / "apples.md").write_text("# Apples\n\nApples are picked in autumn.\n")
    changed = ingest(["docs"], store=store, progress=False)
    assert (changed.files_indexed, changed.files_unchanged) == (1, 2)
    assert changed.chunks_added == changed.chunks_removed == 1
    texts = [d.page_content for d in store.get(store.chunk_ids("docs/apples.md"))]
    assert texts == ["Apples\nApples are picked in autumn."]
    assert store.count() == first.chunks_total


def test_prune_drops_files_that_are_gone_only_under_the_given_paths(tmp_path: Path, store: DocumentStore) -> None:
    docs = make_corpus(tmp_path)
    (tmp_path / "other.md").write_text("# Other\n\nKeep me.\n")
    ingest(["docs", "other.md"], store=store, progress=False)
    (docs / "sub" / "pears.txt").unlink()
    kept = ingest(["docs"], store=store, progress=False)
    assert "docs/sub/pears.txt" in store.sources() and kept.chunks_removed == 0
    pruned = ingest(["docs"], store=store, prune=True, progress=False)
    assert pruned.chunks_removed == 1
    assert set(store.sources()) == {"docs/apples.md", "docs/harvest.csv", "other.md"}


def test_bad_files_are_reported_and_the_rest_ingested(tmp_path: Path, store: DocumentStore) -> None:
    docs = make_corpus(tmp_path)
    (docs / "empty.txt").write_bytes(b"")
    (docs / "photo.txt").write_bytes(b"\xff\xd8\xff\xe0\x00\x10JFIF\x00")
    (docs / "broken.pdf").write_bytes(b"%PDF-1.7\n%\xe2\xe3 1 0 obj <<< not a pdf")
    (docs / "latin.txt").write_bytes("Crème brûlée recipe.".encode("latin-1"))
    (docs / "notes.key").write_bytes(b"PK\x03\x04")
    (docs / "broken.docx").write_bytes(b"PK\x03\x04")  # a zip cut short
    report = ingest(["docs", "missing-folder"], store=store, progress=False)
    failed = {f["path"]: f["error"] for f in report.files_failed}
    skipped = {f["path"]: f["reason"] for f in report.files_skipped}
    assert set(failed) == {"docs/photo.txt", "docs/broken.pdf", "docs/broken.docx", "missing-folder"}
    assert "corrupt docx" in failed["docs/broken.docx"]
    assert "binary" in failed["docs/photo.txt"] and "PDF" in failed["docs/broken.pdf"]
    assert failed["missing-folder"] == "no such file or folder"
    assert skipped == {"docs/empty.txt": "empty file", "docs/notes.key": "unsupported file type .key"}
    assert report.files_indexed == 4
    latin = store.get(store.chunk_ids("docs/latin.txt"))
    assert "Crème brûlée" in latin[0].page_content


def test_a_failing_embedder_leaves_the_store_as_it_was(tmp_path: Path, store: DocumentStore) -> None:
    docs = make_corpus(tmp_path)
    ingest(["docs"], store=store, progress=False)
    before = sorted(store.sources().items())
    (docs / "apples.md").write_text("# Apples\n\nNew text.\n")

    def boom(texts: list[str]) -> list[list[float]]:
        raise RuntimeError("embedder crashed")

    store.embeddings.embed_documents = boom  # type: ignore[method-assign]
    with pytest.raises(RuntimeError):
        ingest(["docs"], store=store, progress=False)
    assert sorted(store.sources().items()) == before
    assert "Apples grow on trees" in store.get(store.chunk_ids("docs/apples.md"))[0].page_content


def test_store_records_the_embedder_and_refuses_another(tmp_path: Path, collection_name: str) -> None:
    client = make_chroma_client(path=tmp_path / "s")
    DocumentStore(client=client, collection=collection_name, embeddings=HashEmbeddings())
    meta = client.get_collection(collection_name).metadata
    assert meta["orchard_embedder"] == "fake-hash" and meta["orchard_dimension"] == 128
    with pytest.raises(StoreMismatch, match=r"built with embedder 'fake-hash' \(128 dimensions\).*rebuild"):
        DocumentStore(client=client, collection=collection_name, embeddings=HashEmbeddings("other-model", 64))


def test_client_rejects_path_and_url_together(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not both"):
        make_chroma_client(path=tmp_path, url="http://127.0.0.1:8001")


def test_prune_works_for_the_current_folder(tmp_path: Path, store: DocumentStore) -> None:
    (tmp_path / "a.md").write_text("# A\n\nApples.\n")
    (tmp_path / "b.md").write_text("# B\n\nPears.\n")
    ingest(["."], store=store, progress=False)
    assert set(store.sources()) == {"a.md", "b.md"}
    (tmp_path / "b.md").unlink()
    ingest(["."], store=store, prune=True, progress=False)
    assert set(store.sources()) == {"a.md"}


def test_an_interrupted_update_is_repaired_by_the_next_run(tmp_path: Path, store: DocumentStore) -> None:
    docs = make_corpus(tmp_path)
    ingest(["docs"], store=store, progress=False)
    old_ids = store.chunk_ids("docs/apples.md")
    (docs / "apples.md").write_text("# Apples\n\nApples are picked in autumn.\n")
    real_delete = store.delete
    store.delete = lambda ids: 0  # the process "dies" between writing new chunks and removing old ones
    ingest(["docs"], store=store, progress=False)
    store.delete = real_delete
    assert len(store.chunk_ids("docs/apples.md")) == 2  # old and new side by side
    report = ingest(["docs"], store=store, progress=False)
    assert report.files_indexed == 1
    ids = store.chunk_ids("docs/apples.md")
    assert len(ids) == 1 and ids != old_ids


def test_unreadable_folders_are_reported(tmp_path: Path, store: DocumentStore, monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    import orchard.ingest as ingest_module

    docs = make_corpus(tmp_path)
    (docs / "locked").mkdir()
    real_walk = os.walk

    def walk(top, onerror=None, **kwargs):  # as os.walk reports a folder it may not list (tests run as root)
        for dirpath, dirnames, filenames in real_walk(top, onerror=onerror, **kwargs):
            if "locked" in dirnames:
                dirnames.remove("locked")
                onerror(PermissionError(13, "Permission denied", os.path.join(dirpath, "locked")))
            yield dirpath, dirnames, filenames

    monkeypatch.setattr(ingest_module.os, "walk", walk)
    report = ingest(["docs"], store=store, progress=False)
    assert {"path": "docs/locked", "error": "cannot read folder: Permission denied"} in report.files_failed
    assert report.files_indexed == 3
