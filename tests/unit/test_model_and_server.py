"""Packaged-model assembly, server command lines, and the foreground runner's signal handling
(on dummy process trees: no model server started here; tests/live/test_server_lifecycle.py
stops a real `orchard serve`)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from orchard import model as model_mod
from orchard.errors import ModelAssemblyError
from orchard.model import ModelPreset, assemble_model, resolve_model
from orchard.server import llamacpp_command


def fake_preset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, parts: list[bytes], sha: str) -> ModelPreset:
    files = []
    for n, data in enumerate(parts, start=1):
        path = tmp_path / "pkgs" / f"part{n}.bin"
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(data)
        files.append(path)
    monkeypatch.setattr(model_mod, "_part_files", lambda preset: files)
    return ModelPreset("tiny", "tiny-model", "tiny_part", len(parts), sum(map(len, parts)), sha, "tiny-part1..2")


def test_parts_are_concatenated_verified_and_cached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    parts = [b"GGUF" + b"a" * 100, b"b" * 50]
    preset = fake_preset(tmp_path, monkeypatch, parts, hashlib.sha256(b"".join(parts)).hexdigest())
    path = assemble_model(preset, cache_dir=tmp_path / "cache")
    assert path.read_bytes() == b"".join(parts)
    monkeypatch.setattr(model_mod, "_part_files", lambda preset: pytest.fail("re-assembled"))
    assert assemble_model(preset, cache_dir=tmp_path / "cache") == path


def test_a_wrong_checksum_is_refused_and_nothing_is_left(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    preset = fake_preset(tmp_path, monkeypatch, [b"tampered"], "0" * 64)
    with pytest.raises(ModelAssemblyError, match=r"expected .* reinstall"):
        assemble_model(preset, cache_dir=tmp_path / "cache")
    assert not list((tmp_path / "cache" / "models").iterdir())


def test_missing_parts_say_what_to_install(tmp_path: Path) -> None:
    preset = ModelPreset("x", "x", "no_such_package_part", 2, 0, "", "no-such-package-part1..2==1.0")
    with pytest.raises(ModelAssemblyError, match=r"pip install no-such-package-part1\.\.2==1\.0"):
        assemble_model(preset, cache_dir=tmp_path)


def test_resolve_model_accepts_a_gguf_path_and_rejects_nonsense(tmp_path: Path) -> None:
    gguf = tmp_path / "My-Model.Q4.gguf"
    gguf.write_bytes(b"GGUF")
    assert resolve_model(str(gguf), cache_dir=tmp_path) == (gguf, "my-model.q4")
    with pytest.raises(ModelAssemblyError, match="preset"):
        resolve_model("gpt-17", cache_dir=tmp_path)
    with pytest.raises(ModelAssemblyError, match=r"model file .*missing\.gguf not found"):
        resolve_model(str(tmp_path / "missing.gguf"), cache_dir=tmp_path)


def test_llamacpp_command_has_the_measured_settings() -> None:
    cmd = llamacpp_command(model_path=Path("m.gguf"), served_name="m", port=8123, threads=2)
    assert cmd[1:3] == ["-m", "llama_cpp.server"]
    flags = dict(zip(cmd[3::2], cmd[4::2], strict=True))
    assert flags["--interrupt_requests"] == "False" and flags["--n_threads"] == "2" and flags["--port"] == "8123"
    assert flags["--logits_all"] == "False"  # logits for every prompt token cost 1.34x prompt reading


def test_stop_refuses_to_kill_a_process_that_is_not_a_model_server(tmp_path: Path) -> None:
    import subprocess
    import sys

    from orchard.server import stop_pidfile

    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        pidfile = tmp_path / "model-server.pid"
        pidfile.write_text(str(bystander.pid))
        assert stop_pidfile(pidfile) is False
        assert bystander.poll() is None and not pidfile.exists()
    finally:
        bystander.kill()


def test_the_server_environment_drops_names_llama_cpp_would_read_as_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    from orchard.server import server_env

    monkeypatch.setenv("PORT", "8599")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    env = server_env()
    assert "PORT" not in env and env["HF_HUB_OFFLINE"] == "1"


def test_orchard_app_uses_a_busy_model_server_instead_of_starting_a_second(monkeypatch, tmp_path) -> None:
    """A llama.cpp server answering a long request does not answer health checks (measured): the
    app must not start another one on the same port (it would exit with 'address in use')."""
    from orchard import launch, server
    from orchard.config import Settings

    monkeypatch.setattr(server, "is_serving", lambda *a, **k: False)
    monkeypatch.setattr(server, "is_listening", lambda *a, **k: True)
    monkeypatch.setattr(server, "start_server", lambda *a, **k: pytest.fail("started a second server"))

    monkeypatch.setattr(server, "run_foreground", lambda command, **kw: 0)  # Streamlit's run
    said: list[str] = []
    assert launch.launch_app(Settings(data_dir=tmp_path), port=8599, address="127.0.0.1", echo=said.append) == 0
    assert any("busy" in line for line in said)


# --- run_foreground: `orchard serve` stops its whole process tree ---------------------------------

TREE = "sleep 60 & sleep 60"  # a child that starts a grandchild: both must go


def processes() -> dict[int, tuple[int, int, str]]:
    """pid -> (parent pid, process group, state) of every live process (from /proc)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        state, ppid, pgrp = stat[stat.rindex(")") + 2 :].split()[:3]
        if state != "Z":  # a zombie has ended, it only waits to be reaped
            found[int(entry.name)] = (int(ppid), int(pgrp), state)
    return found


def group_of(pid: int) -> list[int]:
    return [p for p, (_, pgrp, _) in processes().items() if pgrp == pid]


def foreground(script: str, *, grace: float = 10.0):
    """`run_foreground(["sh", "-c", script])` in a Python process of its own; returns it and its
    child's pid (the process group leader) once the tree is up."""
    import subprocess
    import sys
    import time

    code = f"import sys; from orchard.server import run_foreground; sys.exit(run_foreground(sys.argv[1:], grace={grace}))"
    runner = subprocess.Popen([sys.executable, "-c", code, "sh", "-c", script])
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        children = [p for p, (ppid, _, _) in processes().items() if ppid == runner.pid]
        if children and len(group_of(children[0])) >= 2:
            return runner, children[0]
        time.sleep(0.05)
    runner.kill()
    pytest.fail("the process tree did not start")


def assert_gone(runner, leader: int, *, within: float) -> int:
    import subprocess
    import time

    try:
        code = runner.wait(timeout=within)
    except subprocess.TimeoutExpired:
        runner.kill()
        pytest.fail(f"run_foreground did not end within {within} s")
    deadline = time.monotonic() + 2
    while group_of(leader) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert group_of(leader) == [], "processes of the tree were left running"
    return code


@pytest.mark.parametrize(("signum", "code"), [(15, 143), (2, 130)], ids=["SIGTERM", "SIGINT"])
def test_a_signal_stops_the_whole_tree(signum: int, code: int) -> None:
    import os

    runner, leader = foreground(TREE)
    os.kill(runner.pid, signum)
    assert assert_gone(runner, leader, within=5) == code


def test_a_tree_that_ignores_sigterm_is_killed_after_the_grace_period() -> None:
    import os
    import time

    runner, leader = foreground(f"trap '' TERM; {TREE}", grace=1.0)
    started = time.monotonic()
    os.kill(runner.pid, 15)
    assert assert_gone(runner, leader, within=8) == 143
    assert time.monotonic() - started >= 0.9  # it had its grace period


def test_a_second_signal_kills_at_once() -> None:
    import os
    import time

    runner, leader = foreground(f"trap '' TERM; {TREE}", grace=60.0)
    os.kill(runner.pid, 2)
    time.sleep(0.5)
    os.kill(runner.pid, 2)
    assert assert_gone(runner, leader, within=5) == 130


def test_the_exit_code_is_the_commands_and_the_handlers_are_restored() -> None:
    import signal

    from orchard.server import run_foreground

    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    assert run_foreground(["sh", "-c", "exit 3"]) == 3
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before


@pytest.mark.enable_socket
def test_ensure_takes_a_busy_server_as_up_without_probing_it(tmp_path) -> None:
    """llama.cpp's /models waits while it generates: a listening server must not hold every other
    question back (or be called down) — the request queues at the server."""
    import socket
    import time

    from orchard.config import Settings
    from orchard.usecases.model_server import ModelServer

    with socket.socket() as busy:  # accepts connections, never answers
        busy.bind(("127.0.0.1", 0))
        busy.listen(16)
        url = f"http://127.0.0.1:{busy.getsockname()[1]}/v1"
        started = time.monotonic()
        ModelServer(Settings(data_dir=tmp_path, llm_base_url=url)).ensure()
        assert time.monotonic() - started < 1.5


@pytest.mark.enable_socket
def test_ensure_says_what_to_do_when_a_remote_endpoint_is_down(tmp_path) -> None:
    from orchard.config import Settings
    from orchard.errors import ModelServerUnavailable
    from orchard.usecases.model_server import ModelServer
    from tests.conftest import free_port

    url = f"http://127.0.0.1:{free_port()}/v1"
    with pytest.raises(ModelServerUnavailable, match="ORCHARD_LLM_BASE_URL"):
        ModelServer(Settings(data_dir=tmp_path, llm_base_url=url)).ensure()
