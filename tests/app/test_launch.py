"""`orchard app`: the packaged script, its Streamlit options, and a SIGTERM that stops everything."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from orchard.launch import STREAMLIT_OPTIONS, app_script, streamlit_command
from tests.conftest import alive, descendants, free_port, stop_tree, wait_for_http

ROOT = Path(__file__).resolve().parents[2]


def test_the_served_script_is_the_packaged_one_with_the_apps_options() -> None:
    command = streamlit_command(port=8599, address="127.0.0.1")
    script = Path(command[command.index("run") + 1])
    assert script == app_script() and script.is_file()
    assert script.parent.parent.name == "ui" and not (script.parent / "pages").exists()  # Streamlit's old-style pages
    flags = dict(zip(command[command.index("run") + 2 :: 2], command[command.index("run") + 3 :: 2], strict=True))
    assert flags["--server.port"] == "8599" and flags["--server.address"] == "127.0.0.1"
    assert {k.removeprefix("--"): v for k, v in flags.items()}.items() >= STREAMLIT_OPTIONS.items()


def test_the_options_are_those_of_the_checkouts_streamlit_config() -> None:
    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    flat = {f"{section}.{key}": str(value).lower() if isinstance(value, bool) else str(value)
            for section, values in config.items() for key, value in values.items()}  # fmt: skip
    assert flat == STREAMLIT_OPTIONS


def test_the_checkouts_app_py_serves_the_same_app(orchard) -> None:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=30)
    at.session_state["orchard"] = orchard
    at.run()
    assert not at.exception, at.exception
    assert "Welcome to Orchard" in at.title[0].value


def _port_free(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) != 0


@pytest.mark.enable_socket
def test_sigterm_stops_orchard_app_and_every_child(tmp_path: Path) -> None:
    port, nothing = free_port(), free_port()
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("ORCHARD_")},
           "ORCHARD_DATA_DIR": str(tmp_path / "data"), "ORCHARD_LLM_BASE_URL": f"http://127.0.0.1:{nothing}/v1"}  # fmt: skip
    log = tmp_path / "app.log"
    with log.open("w") as out:  # run outside the checkout: no .streamlit/config.toml, no app.py
        app = subprocess.Popen([sys.executable, "-m", "orchard", "app", "--port", str(port)], cwd=tmp_path, env=env,
                               stdout=out, stderr=subprocess.STDOUT)  # fmt: skip
    children: set[int] = set()
    try:
        wait_for_http(f"http://127.0.0.1:{port}/_stcore/health", timeout=90, log=log)
        children = descendants(app.pid)
        assert children, "Streamlit runs as a child of `orchard app`"
        served = [Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0") for pid in children]
        assert any(str(app_script()).encode() in args and b"--theme.primaryColor" in args for args in served)
        app.send_signal(signal.SIGTERM)
        assert app.wait(timeout=30) == 128 + signal.SIGTERM
        deadline = time.monotonic() + 5
        while any(alive(pid) for pid in children) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not [pid for pid in children if alive(pid)], log.read_text()[-2000:]
        assert _port_free(port)
        assert "no model server answers" in log.read_text()  # nothing to start at a URL not its own
    finally:  # a failed check leaves nothing running either (Streamlit is in a session of its own)
        if app.poll() is None:
            stop_tree(app)
        for pid in children:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


#: A process that used the shared parse worker, then waits as Streamlit does for its SIGTERM
#: handler, which only asks the server to stop (no exception): then it must exit by itself.
_PARSED_THEN_WAITS = """
import signal, threading
from pathlib import Path
from orchard.parse_worker import shared_worker
stop = threading.Event()
signal.signal(signal.SIGTERM, lambda *_: stop.set())
shared_worker().parse(Path("a.md"), b"# A\\n\\nText.\\n", timeout=60)
print("parsed", flush=True)
stop.wait()
"""


def test_sigterm_to_the_apps_group_after_an_upload_ends_the_app(tmp_path: Path) -> None:
    """The leak of a Streamlit per `make test` (the browser tests' restart after an upload).

    ``orchard app`` stops Streamlit with SIGTERM to its process group
    (:func:`orchard.server.run_foreground`). That also reached the parse worker's pool child,
    which died holding the pool's queue lock; at exit the pool's finalizer waited for that lock
    forever (``Pool._help_stuff_finish``), and more SIGTERMs only re-ran Streamlit's handler.
    The launcher SIGKILLs its group after its grace, but a launcher killed first (the tests'
    ``running`` did, at the same 10 s) left Streamlit running in its own session.
    Fix: the worker in a group of its own (``Pool(1, initializer=os.setpgrp)``): the pool stops
    it at exit, and it ends by itself (EOF) when its parent is killed.
    """
    child = subprocess.Popen([sys.executable, "-c", _PARSED_THEN_WAITS], stdout=subprocess.PIPE, text=True, cwd=tmp_path,
                             start_new_session=True)  # fmt: skip
    workers: set[int] = set()
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "parsed"
        workers = descendants(child.pid)
        os.killpg(child.pid, signal.SIGTERM)
        child.wait(timeout=5)  # ~0.2 s when it works
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()
        for pid in workers:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
