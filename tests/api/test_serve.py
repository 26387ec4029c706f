"""`orchard api` as a process: SIGTERM/SIGINT stop it and the model server it started; exposure refused."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT, free_port, wait_for_http

pytestmark = pytest.mark.enable_socket  # loopback only


def listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"


def stop(process: subprocess.Popen, sig: int) -> int:
    process.send_signal(sig)
    try:
        return process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        pytest.fail(f"still running 20 s after signal {sig}")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_orchard_api_stops_on_a_signal(tmp_path: Path, isolated_env: Path, sig: int) -> None:
    port, nowhere = free_port(), free_port()
    env = {**os.environ, "ORCHARD_LLM_BASE_URL": f"http://127.0.0.1:{nowhere}/v1", "PYTHONPATH": str(ROOT)}
    log = tmp_path / "api.log"
    command = [sys.executable, "-m", "orchard", "api", "--port", str(port), "--no-warm-up"]
    process = subprocess.Popen(command, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)
    try:
        wait_for_http(f"http://127.0.0.1:{port}/api/health", timeout=60, log=log)
        assert stop(process, sig) == 0, log.read_text()
    finally:
        if process.poll() is None:
            process.kill()
    assert not listening(port)
    output = log.read_text()
    assert f"no model server answers at http://127.0.0.1:{nowhere}/v1" in output
    assert f"Orchard API at http://127.0.0.1:{port}/v1" in output


def test_sigterm_stops_the_model_server_it_started(tmp_path: Path) -> None:
    api_port, model_port = free_port(), free_port()
    log = tmp_path / "serve.log"
    command = [sys.executable, "-m", "tests.api.serve_child", str(tmp_path / "data"), str(api_port), str(model_port)]
    process = subprocess.Popen(command, cwd=ROOT, stdout=log.open("w"), stderr=subprocess.STDOUT)
    try:
        wait_for_http(f"http://127.0.0.1:{api_port}/api/health", timeout=60, log=log)
        assert listening(model_port)
        child = int(log.read_text().split("model server pid ")[1].split()[0])
        assert stop(process, signal.SIGTERM) == 0, log.read_text()
    finally:
        if process.poll() is None:
            process.kill()
    assert "stopping the embedded model server" in log.read_text()
    assert gone(child) and not listening(model_port) and not listening(api_port)


def test_sigterm_during_an_answer_stops_within_the_grace_period(tmp_path: Path) -> None:
    import httpx

    from orchard.api.serve import GRACEFUL_SECONDS
    from tests.api.helpers import ask
    from tests.fakes import scripted_orchard

    api_port, model_port = free_port(), free_port()
    log = tmp_path / "serve.log"
    data = tmp_path / "data"
    command = [sys.executable, "-m", "tests.api.serve_child", str(data), str(api_port), str(model_port), "3"]  # 3 s a word
    process = subprocess.Popen(command, cwd=ROOT, stdout=log.open("w"), stderr=subprocess.STDOUT)
    received: list[str] = []
    try:
        wait_for_http(f"http://127.0.0.1:{api_port}/api/health", timeout=60, log=log)
        body = ask("orchard-chat", "A slow answer, please. tag-slow", stream=True)
        with httpx.stream("POST", f"http://127.0.0.1:{api_port}/v1/chat/completions", json=body, timeout=60) as response:
            lines = response.iter_lines()
            received.append(next(lines))  # the role chunk: the answer is being written
            started = time.monotonic()
            process.send_signal(signal.SIGTERM)
            with contextlib.suppress(httpx.HTTPError):
                received.extend(lines)
        assert process.wait(timeout=30) == 0, log.read_text()
        assert time.monotonic() - started < GRACEFUL_SECONDS + 10
    finally:
        if process.poll() is None:
            process.kill()
    assert "data: [DONE]" not in received  # cut off: 6 words at 3 s do not fit in the grace period
    assert not listening(api_port) and not listening(model_port)
    orchard = scripted_orchard(data, "unused")
    [conversation] = orchard.conversations.list("local")
    assert [m.role for m in orchard.conversations.messages("local", conversation.id)] == ["user"]  # no broken answer


def test_listening_beyond_loopback_without_keys_is_refused(tmp_path: Path, isolated_env: Path) -> None:
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "orchard", "api", "--host", "0.0.0.0", "--port", str(free_port())],
                            capture_output=True, text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(ROOT)})  # fmt: skip
    assert result.returncode == 1
    assert result.stderr.startswith("error: refusing to listen on 0.0.0.0 without an API key")
    assert "orchard keys create --name NAME" in result.stderr
    assert time.monotonic() - started < 30  # refused before anything started


def test_exposure_check(orchard) -> None:
    from orchard.api.serve import check_exposure
    from orchard.errors import OrchardError

    for host in ("127.0.0.1", "localhost", "::1", "127.0.0.2"):
        check_exposure(orchard, host)
    for host in ("0.0.0.0", "::", "192.168.1.10", "example.org"):
        with pytest.raises(OrchardError, match="refusing to listen"):
            check_exposure(orchard, host)
    orchard.keys.create(user="ana", name="server")
    check_exposure(orchard, "0.0.0.0")
