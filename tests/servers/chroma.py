"""A real, throwaway Chroma server for tests: ``chroma run`` (the venv's, from chromadb) on loopback.

``ChromaServer(path).start()`` runs ``chroma run --path PATH --host 127.0.0.1 --port P`` (a free
port unless given), its output in ``PATH/../chroma-P.log``, and waits until
``/api/v2/heartbeat`` answers. ``stop()`` (SIGTERM, SIGKILL after a grace period),
``restart()`` (stop and start on the same port and data: what the loopback fault test does
mid-run) and ``kill()`` (SIGKILL, as a crash). ``url`` is what ``ORCHARD_CHROMA_URL`` takes.
Tests that start one need sockets: mark them ``chroma_server`` (tests/conftest.py enables
sockets for that marker).

Example::

    >>> with ChromaServer(tmp_path / "chroma") as chroma:  # doctest: +SKIP
    ...     settings = Settings(chroma_url=chroma.url, ...)
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, Any

HEARTBEAT = "/api/v2/heartbeat"


class ChromaUnavailable(RuntimeError):
    """``chroma`` is missing or the server did not start (the message says why, with its log)."""


def chroma_binary() -> Path:
    """The ``chroma`` command installed next to this interpreter (chromadb's CLI)."""
    found = Path(sys.executable).parent / "chroma"
    if not found.exists():
        msg = f"{found} not found — run `make` (installs chromadb from requirements.txt)"
        raise ChromaUnavailable(msg)
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ChromaServer:
    """One ``chroma run`` process over a data folder (see the module docstring)."""

    def __init__(self, path: str | Path, *, port: int | None = None, host: str = "127.0.0.1") -> None:
        self.path = Path(path)
        self.host = host
        self.port = port or free_port()
        self.log_path = self.path.parent / f"chroma-{self.port}.log"
        self.process: subprocess.Popen | None = None
        self._log: IO[str] | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def command(self) -> list[str]:
        return [str(chroma_binary()), "run", "--path", str(self.path), "--host", self.host, "--port", str(self.port)]

    # --- lifecycle ------------------------------------------------------------------------------

    def start(self, *, timeout: float = 60.0) -> ChromaServer:
        """Start the server and wait until its heartbeat answers.

        Raises:
            ChromaUnavailable: it exited or did not answer within ``timeout`` (the log's end is in the message).
        """
        if self.running:
            return self
        self.path.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("a")
        env = {**os.environ, "ANONYMIZED_TELEMETRY": "False"}
        self.process = subprocess.Popen(self.command(), stdout=self._log, stderr=subprocess.STDOUT, env=env,
                                        start_new_session=True)  # fmt: skip
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ChromaUnavailable(f"`chroma run` exited with {self.process.returncode}\n{self.log_tail()}")
            if self.healthy():
                return self
            time.sleep(0.2)
        self.kill()
        raise ChromaUnavailable(f"`chroma run` did not answer {self.url}{HEARTBEAT} within {timeout:.0f} s\n{self.log_tail()}")

    def healthy(self) -> bool:
        """Does the heartbeat answer 200?"""
        import httpx

        try:
            return httpx.get(self.url + HEARTBEAT, timeout=1, trust_env=False).status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self, *, grace: float = 10.0) -> int | None:
        """SIGTERM, then SIGKILL after ``grace`` seconds; the exit code (None: was not running)."""
        if self.process is None:
            return None
        process, self.process = self.process, None
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        self._close_log()
        return process.returncode

    def kill(self) -> None:
        """SIGKILL the server (a crash): the data stays for :meth:`start`."""
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()
        self.process = None
        self._close_log()

    def restart(self, *, timeout: float = 60.0) -> ChromaServer:
        """Stop and start again on the same port and data."""
        self.stop()
        return self.start(timeout=timeout)

    def log_tail(self, chars: int = 2000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> ChromaServer:
        return self.start()

    def __exit__(self, *_exc: Any) -> None:
        self.stop()
