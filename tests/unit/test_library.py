"""The library: uploads kept under the data dir with safe names, delete, re-index, list, search."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchard.usecases.library import safe_file_name
from tests.fakes import scripted_orchard

PEARS = b"# Pears\n\nPears ripen after picking; store them at room temperature.\n"
APPLES = b"# Apples\n\nApples are picked in autumn when the seeds are brown.\n"


@pytest.mark.parametrize(
    ("name", "safe"),
    [("../../etc/passwd.md", "passwd.md"), ("C:\\Users\\x\\notes.txt", "notes.txt"), (".hidden.md", "hidden.md"),
     ("a<b>:c?.md", "abc.md"), ("..", ""), ("", ""), ("tab\there.md", "tabhere.md")],
)  # fmt: skip
def test_safe_file_names(name: str, safe: str) -> None:
    assert safe_file_name(name) == safe


def test_upload_keeps_files_under_uploads_with_safe_names_and_reports_unusable_ones(tmp_path: Path) -> None:
    orchard = scripted_orchard(tmp_path / "data")
    report = orchard.library.upload([("../../pears.md", PEARS), ("..", b"x"), ("apples.md", APPLES)])
    assert report.files_indexed == 2
    assert report.files_failed == [{"path": "..", "error": "not a usable file name"}]
    uploads = orchard.library.uploads_dir
    assert sorted(p.name for p in uploads.iterdir()) == ["apples.md", "pears.md"]
    assert not (tmp_path / "pears.md").exists() and not (tmp_path / "data" / "pears.md").exists()
    assert orchard.library.documents() == [
        {"source": "uploads/apples.md", "chunks": 1, "uploaded": True},
        {"source": "uploads/pears.md", "chunks": 1, "uploaded": True},
    ]
    assert orchard.library.count() == 2


def test_an_upload_of_only_unusable_names_ingests_nothing(tmp_path: Path) -> None:
    orchard = scripted_orchard(tmp_path / "data")
    report = orchard.library.upload([("", b"x")])
    assert report.files_indexed == 0 and report.files_failed == [{"path": "", "error": "not a usable file name"}]
    assert orchard.library.count() == 0


def test_delete_removes_the_chunks_and_the_uploaded_copy_only(tmp_path: Path) -> None:
    orchard = scripted_orchard(tmp_path / "data")
    orchard.library.upload([("pears.md", PEARS), ("apples.md", APPLES)])
    (tmp_path / "local.md").write_text("# Local\n\nQuinces need long cooking.\n")
    orchard.library.ingest(["local.md"], progress=False)
    assert orchard.library.delete("uploads/pears.md") == 1
    assert not (orchard.library.uploads_dir / "pears.md").exists()
    assert orchard.library.delete("local.md") == 1
    assert (tmp_path / "local.md").exists()  # indexed where it was: the user's file stays
    assert [d["source"] for d in orchard.library.documents()] == ["uploads/apples.md"]
    assert orchard.library.delete("uploads/../../local.md") == 0 and (tmp_path / "local.md").exists()


def test_reindex_reads_changed_uploads_again_and_prunes_removed_ones(tmp_path: Path) -> None:
    orchard = scripted_orchard(tmp_path / "data")
    orchard.library.upload([("pears.md", PEARS), ("apples.md", APPLES)])
    (orchard.library.uploads_dir / "pears.md").unlink()
    (orchard.library.uploads_dir / "apples.md").write_bytes(b"# Apples\n\nCider is pressed from apples.\n")
    report = orchard.library.reindex()
    assert report.files_indexed == 1 and report.chunks_removed == 2
    assert [d["source"] for d in orchard.library.documents()] == ["uploads/apples.md"]
    assert orchard.library.search("cider", k=1)[0]["text"].endswith("Cider is pressed from apples.")


def test_search_gives_sources_sections_scores_and_texts(tmp_path: Path) -> None:
    orchard = scripted_orchard(tmp_path / "data")
    orchard.library.upload([("pears.md", PEARS), ("apples.md", APPLES)])
    [hit] = orchard.library.search("when do pears ripen", k=1)
    assert hit["source"] == "uploads/pears.md" and hit["score"] > 0 and "room temperature" in hit["text"]
    assert set(hit) == {"source", "section", "score", "text", "chunk_id"}
    assert orchard.library.where == str(tmp_path / "data" / "store")


def test_an_unsupported_or_broken_upload_is_reported_and_not_kept_and_the_rest_is_ingested(tmp_path: Path) -> None:
    orchard = scripted_orchard(tmp_path / "data")
    report = orchard.library.upload([
        ("notes.exe", b"MZ\x90\x00"),
        ("broken.pdf", b"%PDF-1.4 truncated"),
        ("pruning.md", b"# Pruning\n\nPrune apple trees in late winter.\n"),
    ])  # fmt: skip
    assert [s["path"] for s in report.files_skipped] == ["uploads/notes.exe"]
    assert "unsupported file type" in report.files_skipped[0]["reason"]
    assert [f["path"] for f in report.files_failed] == ["uploads/broken.pdf"]
    assert report.files_indexed == 1
    assert sorted(p.name for p in orchard.library.uploads_dir.iterdir()) == ["pruning.md"]
    assert orchard.library.reindex().files_failed == []  # nothing left to fail again
