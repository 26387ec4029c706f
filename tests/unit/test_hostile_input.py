"""A hostile folder: every bad file is reported by name with a reason, the rest is ingested,
and nothing outside the given paths is read."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from orchard.ingest import IngestLimits, ingest
from orchard.loaders import LoadError, decode_text
from orchard.parse_worker import ParseWorker
from orchard.store import DocumentStore


def _outside_secret(tmp_path: Path) -> Path:
    secret = tmp_path / "outside" / "passwd.txt"
    secret.parent.mkdir()
    secret.write_text("root:x:0:0:SECRET-OUTSIDE-LINE:/root:/bin/bash\n")
    return secret


def hostile_folder(tmp_path: Path) -> Path:
    docs = tmp_path / "docs"
    (docs / "sub").mkdir(parents=True)
    (docs / "good.md").write_text("# Good\n\nPlums are pruned in summer.\n")
    (docs / "sub" / "also-good.txt").write_text("Cherries are pruned after harvest.")
    secret = _outside_secret(tmp_path)
    os.symlink(secret, docs / "passwd.txt")  # a link leaving the folder
    os.symlink(docs, docs / "sub" / "loop")  # a folder link back up the tree
    os.symlink(tmp_path / "missing.txt", docs / "dangling.txt")
    (docs / "big.txt").write_bytes(b"apple " * 400_000)  # 2.4 MB, over the limit set below
    (docs / "photo.txt").write_bytes(bytes(range(256)) * 64)  # binary with a text extension
    (docs / "nul.txt").write_bytes(b"Pears ripen\x00 after picking.\n")  # a stray NUL in real text
    (docs / "latin1-undecodable.txt").write_bytes(b"Caf\xe9 cr\xe8me menu: apple tart, pear cake, plum jam. \x81\x8d\x90\n" * 3)
    (docs / "broken.csv").write_text('tree,kg\nA,"10\nB,12\n' + "x" * 200_000)  # an unclosed quote
    (docs / "truncated.pdf").write_bytes(b"%PDF-1.7\n1 0 obj\n<< /Type /Catalog /Pages 2 0 R")
    (docs / "-leading-dash.md").write_text("# Dash\n\nA name that looks like an option.\n")
    (docs / "line\nbreak.md").write_text("# Break\n\nA name with a line break.\n")
    return docs


@pytest.fixture
def report(tmp_path: Path, store: DocumentStore, monkeypatch: pytest.MonkeyPatch):
    hostile_folder(tmp_path)
    monkeypatch.chdir(tmp_path)
    return ingest(["docs"], store=store, progress=False, limits=IngestLimits(max_file_bytes=1_000_000))


def test_every_hostile_file_gets_a_reason_and_the_rest_is_ingested(report, store: DocumentStore) -> None:
    failed = {f["path"]: f["error"] for f in report.files_failed}
    skipped = {f["path"]: f["reason"] for f in report.files_skipped}
    assert "symbolic link" in skipped["docs/passwd.txt"]
    assert "symbolic link" in skipped["docs/sub/loop"]
    assert "symbolic link" in skipped["docs/dangling.txt"]
    assert "over the 1 MB limit" in skipped["docs/big.txt"] and "ORCHARD_MAX_FILE_MB" in skipped["docs/big.txt"]
    assert skipped["docs/line\\nbreak.md"] == "file name with a line break"
    assert "binary" in failed["docs/photo.txt"]
    assert "broken CSV" in failed["docs/broken.csv"]
    assert "PDF" in failed["docs/truncated.pdf"]
    assert set(store.sources()) == {
        "docs/good.md", "docs/sub/also-good.txt", "docs/nul.txt", "docs/latin1-undecodable.txt", "docs/-leading-dash.md",
    }  # fmt: skip
    assert report.files_indexed == 5


def test_nothing_outside_the_folder_is_searchable(report, store: DocumentStore) -> None:
    texts = [d.page_content for source in store.sources() for d in store.get(store.chunk_ids(source))]
    assert texts and not any("SECRET-OUTSIDE-LINE" in t for t in texts)
    nul = store.get(store.chunk_ids("docs/nul.txt"))[0].page_content
    assert "\x00" not in nul and "Pears ripen after picking." in nul


def test_links_inside_the_folder_are_followed_only_when_asked(tmp_path: Path, store: DocumentStore, monkeypatch) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "real.md").write_text("# Real\n\nApples keep in a cool cellar.\n")
    os.symlink(docs / "real.md", docs / "alias.md")
    os.symlink(_outside_secret(tmp_path), docs / "passwd.txt")
    os.symlink(docs, docs / "loop")
    monkeypatch.chdir(tmp_path)
    report = ingest(["docs"], store=store, progress=False, limits=IngestLimits(follow_symlinks=True))
    skipped = {f["path"]: f["reason"] for f in report.files_skipped}
    assert "leaving the given folder" in skipped["docs/passwd.txt"]
    assert set(store.sources()) == {"docs/real.md", "docs/alias.md"}  # the loop is read once, not forever


def test_a_link_given_by_name_is_read(tmp_path: Path, store: DocumentStore, monkeypatch) -> None:
    target = tmp_path / "elsewhere.md"
    target.write_text("# Elsewhere\n\nPears ripen after picking.\n")
    os.symlink(target, tmp_path / "named.md")
    monkeypatch.chdir(tmp_path)
    report = ingest(["named.md"], store=store, progress=False)
    assert report.files_indexed == 1 and store.sources() == {"named.md": 1}


def test_binary_detection_counts_control_characters() -> None:
    assert decode_text("Crème brûlée, tab\tand newline\n".encode(), Path("a.txt")).startswith("Crème")
    with pytest.raises(LoadError, match="binary"):
        decode_text(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" * 50, Path("a.txt"))


def slow_parser(path: Path, data: bytes):  # runs in the worker's child process
    import time

    from orchard.loaders import load_file

    if b"HANG" in data:
        time.sleep(60)
    return load_file(path, data)


def test_a_parser_that_hangs_is_stopped_and_the_next_file_is_parsed() -> None:
    worker = ParseWorker(slow_parser)
    try:
        assert worker.parse(Path("a.md"), b"# A\n\nApples.\n", timeout=30)[0].text.endswith("Apples.")
        with pytest.raises(LoadError, match=r"longer than 0\.5 s"):
            worker.parse(Path("b.md"), b"# B\n\nHANG\n", timeout=0.5)
        assert worker.parse(Path("c.md"), b"# C\n\nCherries.\n", timeout=30)[0].text.endswith("Cherries.")
    finally:
        worker.close()


def test_the_library_applies_the_settings_limits(tmp_path: Path) -> None:
    from tests.fakes import scripted_orchard

    orchard = scripted_orchard(tmp_path / "data", max_file_mb=0.001)
    try:
        report = orchard.library.upload([("small.md", b"# Small\n\nPlums.\n"), ("large.md", b"# Large\n\n" + b"x " * 1000)])
        skipped = {f["path"]: f["reason"] for f in report.files_skipped}
        assert "over the 0.001 MB limit" in skipped["uploads/large.md"]
        assert not (tmp_path / "data" / "uploads" / "large.md").exists()  # refused before it is kept
        assert orchard.library.documents()[0]["source"] == "uploads/small.md"
    finally:
        orchard.close()
