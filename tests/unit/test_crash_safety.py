"""Killed at any moment and run again, the embedded store holds every file exactly once, BM25
agrees with Chroma, and every chunk's own vector finds it first; two writers take turns."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from orchard.store_repair import REBUILD_DIR, RUNNING_FILE, check_dense_index, exclusive_ingestion, rebuild_index
from tests.fakes import scripted_orchard

ROOT = Path(__file__).resolve().parents[2]
FILES = 120

# One ingestion in a process of its own, as `orchard ingest` runs (bag-of-words embeddings).
INGEST = textwrap.dedent(
    """
    import sys
    from tests.fakes import scripted_orchard
    orchard = scripted_orchard(sys.argv[1])
    report = orchard.library.ingest([sys.argv[2]], progress=False, on_message=lambda m: print("MESSAGE", m, flush=True),
                                    on_file=lambda source, status: print("file", status, flush=True))
    print("repairs", report.repairs, flush=True)
    print("done", report.files_indexed, report.chunks_total, flush=True)
    """
)


def make_corpus(root: Path) -> Path:
    words = "apple pear plum cherry quince medlar graft prune harvest blossom orchard cellar".split()
    rng = random.Random(7)
    for n in range(FILES):
        paragraphs = [" ".join(rng.choice(words) for _ in range(70)) + f" marker{n}x{p}." for p in range(6)]
        (root / f"file{n:03}.md").write_text(f"# File {n}\n\n" + "\n\n".join(paragraphs) + "\n")
    return root


def run_ingest(data_dir: Path, corpus: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-c", INGEST, str(data_dir), str(corpus)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip


def expected_chunks(corpus: Path) -> dict[str, int]:
    """What a fresh ingestion of ``corpus`` stores: chunks per source."""
    from orchard.chunking import chunk_sections
    from orchard.loaders import load_file

    return {str(f): len(chunk_sections(load_file(f), source=str(f))) for f in sorted(corpus.iterdir())}


def check_invariants(data_dir: Path, corpus: Path) -> None:
    orchard = scripted_orchard(data_dir)
    try:
        store = orchard.components.store
        expected = expected_chunks(corpus)
        assert store.sources() == expected  # every file, each exactly once, whole
        data = store._get_all(["documents"])
        assert len(data["ids"]) == len(set(data["ids"])) == sum(expected.values())
        assert len(data["documents"]) == len(set(data["documents"]))  # no duplicated text either
        hits = store.lexical_search("marker5x3", 1)
        assert hits and store.get([hits[0][0]])[0].metadata["source"].endswith("file005.md")  # BM25 agrees
        assert check_dense_index(store) == []  # the vector index answers like a fresh one
        assert not (store_dir(data_dir) / RUNNING_FILE).exists()
    finally:
        orchard.close()


def store_dir(data_dir: Path) -> Path:
    return data_dir / "store"


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_killed_at_a_random_moment_and_run_again(tmp_path: Path, seed: int) -> None:
    (tmp_path / "corpus").mkdir()
    corpus = make_corpus(tmp_path / "corpus")
    data_dir = tmp_path / "data"
    victim = run_ingest(data_dir, corpus)
    assert victim.stdout.readline().startswith("file ")  # the ingestion has begun writing
    time.sleep(random.Random(seed).uniform(0.0, 3.0))
    victim.send_signal(signal.SIGKILL)
    victim_out, _ = victim.communicate(timeout=30)
    finished = "done" in victim_out

    rerun = run_ingest(data_dir, corpus)
    out, _ = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, out
    if not finished:  # killed mid-ingestion: the rerun noticed, checked the index and said so
        assert "MESSAGE the last ingestion did not finish" in out, out
    check_invariants(data_dir, corpus)


def test_a_killed_ingestion_is_detected_and_the_index_checked(tmp_path: Path) -> None:
    orchard = scripted_orchard(tmp_path / "data")
    try:
        (tmp_path / "a.md").write_text("# A\n\nApples keep in a cool cellar.\n")
        orchard.library.ingest([str(tmp_path / "a.md")], progress=False)
        (store_dir(tmp_path / "data") / RUNNING_FILE).write_text('{"pid": 999999}')  # as kill -9 leaves it
        heard: list[str] = []
        report = orchard.library.ingest([str(tmp_path / "a.md")], progress=False, on_message=heard.append)
        assert report.repairs == ["the last ingestion did not finish; the vector index was checked and is sound"]
        assert heard == ["the last ingestion did not finish: checking the vector index"]
        again = orchard.library.ingest([str(tmp_path / "a.md")], progress=False)
        assert again.repairs == []
    finally:
        orchard.close()


def test_rebuild_keeps_every_chunk_and_resumes_when_stopped(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for n in range(30):
        (corpus / f"f{n}.md").write_text(f"# F{n}\n\nPlum number {n} ripens in week {n}.\n")
    orchard = scripted_orchard(tmp_path / "data")
    try:
        orchard.library.ingest([str(corpus)], progress=False)
        store = orchard.components.store
        before = store.sources()
        assert rebuild_index(store, store_dir=store_dir(tmp_path / "data")) == 30
        assert store.sources() == before and check_dense_index(store) == []
        assert not (store_dir(tmp_path / "data") / REBUILD_DIR).exists()
    finally:
        orchard.close()


def test_two_writers_take_turns_and_the_second_says_it_waits(tmp_path: Path) -> None:
    heard: list[str] = []
    first = subprocess.Popen([sys.executable, "-c", textwrap.dedent(
        f"""
        import time
        from pathlib import Path
        from orchard.store_repair import exclusive_ingestion
        with exclusive_ingestion(Path({str(tmp_path)!r})):
            print("holding", flush=True)
            time.sleep(2)
        """
    )], cwd=ROOT, stdout=subprocess.PIPE, text=True)  # fmt: skip
    assert first.stdout.readline().strip() == "holding"
    started = time.monotonic()
    with exclusive_ingestion(tmp_path, notify=heard.append) as unclean:
        waited = time.monotonic() - started
    first.wait(10)
    assert not unclean  # the first one finished cleanly
    assert waited > 0.5 and len(heard) == 1
    assert heard[0].startswith(f"another ingestion is running on this store (process {first.pid})")
