"""The model server's lifecycle for real: answering starts the embedded server when nothing
answers at the default URL, and `kill` of `orchard serve` stops its llama_cpp.server child."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from orchard import config, server
from orchard.components import Components
from orchard.config import Settings
from orchard.usecases import build_orchard
from tests.conftest import USER_DATA_DIR, free_port, wait_for_http

pytestmark = pytest.mark.live


def test_default_url_starts_the_embedded_server_and_says_so(monkeypatch: pytest.MonkeyPatch, tmp_path, model_path) -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    monkeypatch.setattr(config, "DEFAULT_LLM_BASE_URL", url)  # the "default" URL, on a free port
    messages: list[str] = []
    settings = Settings(llm_base_url=url, data_dir=tmp_path / "data", cache_dir=USER_DATA_DIR / "cache")
    orchard = build_orchard(components=Components(settings), notify=messages.append)
    assert not server.is_serving(url)
    orchard.model_server.ensure()
    try:
        assert server.is_serving(url)
        assert "starting the embedded one" in messages[0] and "orchard stop" in messages[0]
        reply = orchard.components.llm.invoke("Say OK.")
        assert reply.content.strip()
        orchard.model_server.ensure()  # already up: nothing more is started
        assert len(messages) == 2
    finally:
        assert orchard.model_server.stop()
    deadline = time.monotonic() + 15
    while server.is_serving(url) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not server.is_serving(url)


def children(pid: int) -> list[int]:
    """Live (not zombie) processes whose parent is ``pid``."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            stat = (entry / "stat").read_text() if entry.name.isdigit() else ""
        except OSError:
            continue
        if stat:
            state, ppid = stat[stat.rindex(")") + 2 :].split()[:2]
            if int(ppid) == pid and state != "Z":
                found.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


def test_sigterm_to_orchard_serve_stops_its_model_server(model_path: Path, tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}/v1"
    log = tmp_path / "serve.log"
    env = {**os.environ, "ORCHARD_DATA_DIR": str(tmp_path / "data")}
    command = [sys.executable, "-m", "orchard", "serve", "--model", str(model_path), "--port", str(port)]
    with log.open("w") as out:
        orchard = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
    model_servers: list[int] = []
    try:
        wait_for_http(f"{url}/models", timeout=180, log=log)
        model_servers = [p for p in children(orchard.pid) if b"llama_cpp.server" in Path(f"/proc/{p}/cmdline").read_bytes()]
        assert len(model_servers) == 1, log.read_text()
        started = time.monotonic()
        orchard.send_signal(signal.SIGTERM)
        assert orchard.wait(timeout=15) == 128 + signal.SIGTERM
        while alive(model_servers[0]) and time.monotonic() - started < 15:
            time.sleep(0.1)
        assert not alive(model_servers[0]), "the llama_cpp.server child outlived `orchard serve`"
        assert not server.is_listening(url), f"port {port} is still taken"
        print(f"orchard serve stopped with its model server in {time.monotonic() - started:.1f} s")
    finally:
        if orchard.poll() is None:
            orchard.kill()
        for pid in model_servers:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
