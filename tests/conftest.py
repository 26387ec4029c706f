"""Shared fixtures. Every test runs in its own tmp folder with a clean ORCHARD_* environment;
sockets are disabled (pytest-socket) except in tests marked ``live`` or ``chroma_server``."""

from __future__ import annotations

import contextlib
import os
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

pytest_plugins = ["tests.servers.plugin"]  # PostgreSQL (and Chroma) servers started by the tests themselves

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # `tests.fakes` and the top-level packages, however pytest is run
# Where `make` assembled the model (the autouse fixture below hides ORCHARD_* from each test).
USER_DATA_DIR = Path(os.environ.get("ORCHARD_DATA_DIR") or Path.home() / ".local/share/orchard")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")


@pytest.fixture(autouse=True)
def isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for key in list(os.environ):
        if key.startswith("ORCHARD_"):
            monkeypatch.delenv(key)
    data = tmp_path / "orchard-data"
    monkeypatch.setenv("ORCHARD_DATA_DIR", str(data))
    monkeypatch.chdir(tmp_path)  # no stray .env from the working tree
    return data


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.get_closest_marker("live") or item.get_closest_marker("chroma_server") or item.get_closest_marker("e2e"):
            item.add_marker(pytest.mark.enable_socket)


@pytest.fixture
def collection_name() -> str:
    return f"test-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def fake_embeddings():
    from tests.fakes import HashEmbeddings

    return HashEmbeddings()


@pytest.fixture
def store(tmp_path: Path, fake_embeddings, collection_name: str):
    from orchard.store import DocumentStore, make_chroma_client

    client = make_chroma_client(path=tmp_path / "store")
    return DocumentStore(client=client, collection=collection_name, embeddings=fake_embeddings, where=str(tmp_path / "store"))


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_http(url: str, *, timeout: float, log: Path | None = None) -> None:
    """Poll ``url`` until it answers 200; fail the test with the end of ``log`` otherwise."""
    import time

    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1, trust_env=False).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    tail = log.read_text()[-2000:] if log and log.exists() else ""
    pytest.fail(f"{url} did not answer within {timeout:.0f} s\n{tail}")


def descendants(pid: int) -> set[int]:
    """Every live descendant of ``pid`` (from /proc), whatever session or process group it is in."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(stat.parent.name)] = int(fields[1])
    found, todo = set(), [pid]
    while todo:
        current = todo.pop()
        for child, parent in parents.items():
            if parent == current and child not in found:
                found.add(child)
                todo.append(child)
    return found


def alive(pid: int) -> bool:
    """Is ``pid`` running (not gone, not a zombie)?"""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return "?"


#: How long a stopped command may take to end: more than the launchers' own grace before they
#: SIGKILL what they started (``orchard.server.run_foreground``: 10 s). Killing a launcher
#: sooner leaves its children running: they are in process groups of their own.
STOP_TIMEOUT = 30.0


@dataclass(frozen=True)
class Stopped:
    """How a process tree stopped: its exit code, whether it needed SIGKILL (it outlived the
    timeout after SIGTERM), and the command lines of descendants it left running (SIGKILLed)."""

    returncode: int
    killed: bool
    left: list[str]


def stop_tree(process: Any, *, timeout: float = STOP_TIMEOUT) -> Stopped:
    """SIGTERM ``process``, SIGKILL it after ``timeout`` s, then SIGKILL every descendant it left
    running (in any process group or session)."""
    import signal
    import subprocess
    import time

    children = descendants(process.pid)  # before it stops: orphans are re-parented away
    process.terminate()
    killed = False
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        killed = True
        process.kill()
        process.wait()
    deadline = time.monotonic() + 5  # what got SIGKILL from the launcher is going
    while any(alive(pid) for pid in children) and time.monotonic() < deadline:
        time.sleep(0.1)
    left = [pid for pid in children if alive(pid)]
    commands = [cmdline(pid) for pid in left]
    for pid in left:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return Stopped(returncode=process.returncode, killed=killed, left=commands)


@contextlib.contextmanager
def running(command: list[str], *, health_url: str, log: Path, timeout: float = 60, **popen: object):
    """Run ``command`` (output in ``log``) until the block ends, once ``health_url`` answers.

    Stopping it (:func:`stop_tree`) fails the test if it left a child process running."""
    import subprocess

    process = subprocess.Popen(command, stdout=log.open("w"), stderr=subprocess.STDOUT, **popen)
    failed = True
    try:
        wait_for_http(health_url, timeout=timeout, log=log)
        yield process
        failed = False
    finally:
        stopped = stop_tree(process)
        if stopped.left and not failed:  # not over another failure, which would be hidden
            pytest.fail(f"{command[:4]} left {stopped.left} running after it stopped (killed now)\n{log.read_text()[-2000:]}")


# --- the real model server and embedder, shared by live/ and e2e/ (started only when used) ---


@pytest.fixture(scope="session")
def model_path() -> Path:
    from orchard.model import PRESETS, assemble_model

    return assemble_model(PRESETS["qwen-0.5b"], cache_dir=USER_DATA_DIR / "cache")


@pytest.fixture(scope="session")
def live_server(model_path: Path, tmp_path_factory: pytest.TempPathFactory):
    """Base URL of a real llama.cpp server on a free port (stopped at the end of the session)."""
    from orchard import server

    port = free_port()
    base_url = f"http://127.0.0.1:{port}/v1"
    command = server.llamacpp_command(
        model_path=model_path, served_name="qwen2.5-coder-0.5b-instruct", port=port, threads=server.default_threads()
    )
    log = tmp_path_factory.mktemp("server") / "model-server.log"
    handle = server.start_server(command, base_url=base_url, log=log, timeout=180)
    yield base_url
    handle.stop()


@pytest.fixture(scope="session")
def embedder():
    from orchard.embeddings import MiniLMEmbeddings

    return MiniLMEmbeddings()
