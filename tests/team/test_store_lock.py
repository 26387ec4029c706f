"""One process per embedded store: a second process opening it gets StoreInUse (with what to do),
the first keeps writing and the store stays sound; the lock goes with the process that held it
(a kill -9 included), a stale lock file blocks nothing, and a forked child does not keep it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from orchard.errors import StoreInUse
from orchard.store import LOCK_FILE, DocumentStore, close_chroma_client, make_chroma_client
from tests.fakes import HashEmbeddings

ROOT = Path(__file__).resolve().parents[2]

# Opens the store, writes N chunks (one upsert each), says "open", then waits for stdin to close.
HOLDER = textwrap.dedent(
    """
    import random, sys
    from pathlib import Path
    from langchain_core.documents import Document
    from orchard.store import DocumentStore, make_chroma_client
    from tests.fakes import HashEmbeddings
    path, writes = Path(sys.argv[1]), int(sys.argv[2])
    store = DocumentStore(client=make_chroma_client(path=path), collection="locked", embeddings=HashEmbeddings())
    print("open", flush=True)
    emb, rng = store.embeddings, random.Random(5)
    words = "apple pear plum cherry quince medlar graft prune harvest blossom orchard cellar".split()
    for n in range(writes):
        text = " ".join(rng.choice(words) for _ in range(40)) + f" marker{n}"
        doc = Document(page_content=text, metadata={"source": f"f{n}.md"}, id=f"c{n}")
        store.upsert([doc], emb.embed_documents([doc.page_content]))
    print("written", store.count(), flush=True)
    sys.stdin.read()
    """
)


def start_holder(path: Path, writes: int = 0) -> subprocess.Popen:
    process = subprocess.Popen([sys.executable, "-c", HOLDER, str(path), str(writes)], cwd=ROOT, text=True,
                               env={**os.environ, "PYTHONPATH": str(ROOT)}, stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip
    assert process.stdout.readline().strip() == "open", process.stdout.read()
    return process


def finish(process: subprocess.Popen) -> str:
    out, _ = process.communicate(input="", timeout=120)
    return out


def test_a_second_process_gets_store_in_use_and_the_first_keeps_writing(tmp_path: Path) -> None:
    path = (tmp_path / "store").resolve()
    holder = start_holder(path, writes=60)  # writing while the second process tries to open the store
    try:
        started = time.monotonic()
        with pytest.raises(StoreInUse) as refused:
            make_chroma_client(path=path)
        assert time.monotonic() - started < 5
        assert str(refused.value) == (
            f"the document store at {path} is open in another Orchard process (pid {holder.pid}); stop it, or run a "
            f"Chroma server — `chroma run --path {path}` — and set ORCHARD_CHROMA_URL for every process"
        )
        out = finish(holder)
    finally:
        if holder.poll() is None:
            holder.kill()
    assert "written 60" in out, out
    store = DocumentStore(client=make_chroma_client(path=path), collection="locked", embeddings=HashEmbeddings())
    try:
        from orchard.store_repair import check_dense_index

        assert store.count() == 60 and check_dense_index(store) == []  # every write kept, the index sound
        assert [i for i, _ in store.lexical_search("marker47", 1)] == ["c47"]
    finally:
        store.close()


def test_the_cli_in_a_second_process_says_what_to_do(tmp_path: Path) -> None:
    data = tmp_path / "data"
    holder = start_holder((data / "store").resolve())
    try:
        env = {**os.environ, "PYTHONPATH": str(ROOT), "ORCHARD_DATA_DIR": str(data)}
        result = subprocess.run([sys.executable, "-m", "orchard", "search", "plums"], capture_output=True, text=True,
                                timeout=120, env=env, cwd=tmp_path)  # fmt: skip
    finally:
        finish(holder)
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: the document store at {(data / 'store').resolve()} is open in another Orchard process (pid {holder.pid})")
    assert "ORCHARD_CHROMA_URL" in last and "Traceback" not in result.stderr


def test_a_killed_holder_leaves_a_lock_file_that_blocks_nothing(tmp_path: Path) -> None:
    path = (tmp_path / "store").resolve()
    holder = start_holder(path, writes=20)
    assert holder.stdout.readline().startswith("written 20")
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=30)
    assert json.loads((path / LOCK_FILE).read_text())["pid"] == holder.pid  # stale: its process is gone
    store = DocumentStore(client=make_chroma_client(path=path), collection="locked", embeddings=HashEmbeddings())
    try:
        assert store.count() == 20
        assert json.loads((path / LOCK_FILE).read_text())["pid"] == os.getpid()
    finally:
        store.close()


def test_a_lock_file_naming_a_dead_process_blocks_nothing(tmp_path: Path) -> None:
    path = (tmp_path / "store").resolve()
    path.mkdir()
    (path / LOCK_FILE).write_text('{"pid": 999999}')
    close_chroma_client(make_chroma_client(path=path))


def test_closing_the_store_lets_another_process_open_it(tmp_path: Path) -> None:
    path = (tmp_path / "store").resolve()
    store = DocumentStore(client=make_chroma_client(path=path), collection="locked", embeddings=HashEmbeddings())
    store.close()
    finish(start_holder(path))


def test_a_forked_child_does_not_keep_the_parents_hold(tmp_path: Path) -> None:
    """The parent opens the store, forks a child that lives on, and is killed: the store is free."""
    path = (tmp_path / "store").resolve()
    code = textwrap.dedent(
        f"""
        import os, time
        from pathlib import Path
        from orchard.store import make_chroma_client
        client = make_chroma_client(path=Path({str(path)!r}))
        child = os.fork()
        if child == 0:
            time.sleep(60)
            os._exit(0)
        print(child, flush=True)
        time.sleep(60)
        """
    )
    parent = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, text=True, stdout=subprocess.PIPE,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})  # fmt: skip
    child = int(parent.stdout.readline())
    try:
        with pytest.raises(StoreInUse):
            make_chroma_client(path=path)
        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=30)
        os.kill(child, 0)  # the forked child still runs
        close_chroma_client(make_chroma_client(path=path))
    finally:
        for pid in (parent.pid, child):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
