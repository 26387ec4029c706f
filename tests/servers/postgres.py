"""A real, throwaway Postgres for tests: Debian's postgresql 15 binaries, a temp data dir.

``PostgresServer().start()`` runs ``initdb`` (trust auth, UTF-8, fsync off: durable against a
killed server, not against an OS crash) and ``pg_ctl start``
in a temp dir, listening on a free loopback port with its unix socket in the same dir;
``PostgresServer(tcp=False)`` listens on the unix socket only (what the unit tests use: they run
with sockets disabled, and a socket in a private dir cannot collide with anything). Postgres
refuses to run as root, so as root every command runs as the ``postgres`` OS user
(``runuser -u postgres --``). ``stop()``, ``restart()`` (a fast shutdown and a start on the same
port and data: what the loopback fault test does mid-run) and ``kill()`` (SIGKILL the postmaster).

:func:`shared_server` is the one server of a test process (started on first use, stopped at
exit), so fixtures in several modules do not start several.

Example::

    >>> server = PostgresServer().start()  # doctest: +SKIP
    >>> url = server.create_database("t1")  # postgresql+psycopg://postgres@127.0.0.1:PORT/t1
    >>> server.restart(); server.stop()  # doctest: +SKIP
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

BIN_DIRS = (Path("/usr/lib/postgresql/15/bin"), Path("/usr/lib/postgresql/16/bin"), Path("/usr/lib/postgresql/17/bin"))
MISSING = "Postgres binaries (initdb, pg_ctl, postgres) not found in {dirs} — run `make` (installs postgresql)"
SETTINGS = {  # a test server: no fsync (only an OS crash loses data); commits still reach the OS at
    # once (synchronous_commit stays on), so a killed server loses nothing it acknowledged
    "fsync": "off",
    "full_page_writes": "off",
    "max_connections": "200",
    "shared_buffers": "32MB",
}


class PostgresUnavailable(RuntimeError):
    """The binaries are missing or the server would not start (the message says why)."""


def find_bin_dir() -> Path:
    for candidate in BIN_DIRS:
        if all((candidate / name).exists() for name in ("initdb", "pg_ctl", "postgres")):
            return candidate
    raise PostgresUnavailable(MISSING.format(dirs=", ".join(map(str, BIN_DIRS))))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class PostgresServer:
    """One Postgres cluster in a temp dir (see the module docstring)."""

    def __init__(self, base_dir: str | Path | None = None, *, port: int | None = None, user: str = "postgres",
                 tcp: bool = True) -> None:  # fmt: skip
        self.bin_dir = find_bin_dir()
        self.tcp = tcp
        self.port = port or (free_port() if tcp else 5432)  # unix only: the port just names the socket file
        self.base_dir = Path(base_dir) if base_dir else Path(tempfile.mkdtemp(prefix="orchard-pg-"))
        self.data_dir = self.base_dir / "data"
        self.socket_dir = self.base_dir
        self.log_path = self.base_dir / "postgres.log"
        self.user = user  # the database superuser (trust auth: no password)
        self._as_postgres = os.geteuid() == 0
        self._owned_dir = base_dir is None

    # --- lifecycle ------------------------------------------------------------------------------

    def start(self, *, timeout: float = 60.0) -> PostgresServer:
        """initdb (first time only), then start and wait until it accepts connections."""
        self.base_dir.mkdir(parents=True, exist_ok=True)
        if self._as_postgres:
            shutil.chown(self.base_dir, "postgres", "postgres")
        if not (self.data_dir / "PG_VERSION").exists():
            self._run("initdb", "-D", str(self.data_dir), "-U", self.user, "--auth=trust", "-E", "UTF8", "--locale=C",
                      "--no-sync", timeout=timeout)  # fmt: skip
        listen = "127.0.0.1" if self.tcp else "''"
        options = " ".join([f"-p {self.port}", f"-c listen_addresses={listen}", f"-k {self.socket_dir}",
                            *(f"-c {k}={v}" for k, v in SETTINGS.items())])  # fmt: skip
        self._run("pg_ctl", "-D", str(self.data_dir), "-l", str(self.log_path), "-o", options, "-w", "-t", str(int(timeout)),
                  "start", timeout=timeout + 5)  # fmt: skip
        return self

    def stop(self, *, mode: str = "fast") -> None:
        """Stop the server (``fast``: roll back open transactions, disconnect clients)."""
        if self.running:
            self._run("pg_ctl", "-D", str(self.data_dir), "-m", mode, "-w", "-t", "60", "stop", timeout=70, check=False)

    def restart(self) -> None:
        """Fast shutdown and start again on the same port and data: clients' connections drop."""
        self.stop()
        self.start()

    def kill(self) -> None:
        """SIGKILL the postmaster (a crash); :meth:`start` recovers the data dir afterwards."""
        pid = self.pid
        if pid:
            family = {pid, *_children(pid)}  # its backends exit on their own once it is gone
            os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline and any(_alive(p) for p in family):
                time.sleep(0.05)
            # Dead but maybe not yet reaped (a zombie of whoever adopted it): Postgres would take
            # the lock file for a live postmaster. Everything of the cluster is gone, so drop it.
            while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
                time.sleep(0.05)
            if Path(f"/proc/{pid}").exists():
                (self.data_dir / "postmaster.pid").unlink(missing_ok=True)

    def cleanup(self) -> None:
        """Stop, and remove the temp dir if this object made it."""
        self.stop(mode="immediate")
        if self._owned_dir:
            shutil.rmtree(self.base_dir, ignore_errors=True)

    @property
    def pid(self) -> int | None:
        try:
            return int((self.data_dir / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    @property
    def running(self) -> bool:
        pid = self.pid
        return bool(pid and _alive(pid))

    # --- URLs and databases ---------------------------------------------------------------------

    def url(self, database: str = "postgres", *, driver: str = "postgresql+psycopg") -> str:
        """The SQLAlchemy URL of ``database``: over loopback TCP (unix socket if ``tcp=False``)."""
        if not self.tcp:
            return self.socket_url(database, driver=driver)
        return f"{driver}://{self.user}@127.0.0.1:{self.port}/{database}"

    def socket_url(self, database: str = "postgres", *, driver: str = "postgresql+psycopg") -> str:
        """The SQLAlchemy URL of ``database`` over the unix socket in the temp dir."""
        return f"{driver}://{self.user}@/{database}?host={self.socket_dir}&port={self.port}"

    def connect(self, database: str = "postgres") -> Any:
        """A psycopg connection in autocommit mode (for set-up: CREATE/DROP DATABASE)."""
        import psycopg

        host = "127.0.0.1" if self.tcp else str(self.socket_dir)
        return psycopg.connect(host=host, port=self.port, user=self.user, dbname=database, autocommit=True)

    def create_database(self, name: str, *, template: str | None = None) -> str:
        """``CREATE DATABASE name`` (optionally from ``template``); returns its URL."""
        with self.connect() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}" STRATEGY FILE_COPY' if template else ""))
        return self.url(name)

    def drop_database(self, name: str) -> None:
        """``DROP DATABASE ... WITH (FORCE)``: also ends every connection to it."""
        with self.connect() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    # --- internals ------------------------------------------------------------------------------

    def _run(self, program: str, *args: str, timeout: float, check: bool = True) -> subprocess.CompletedProcess[str]:
        command = [str(self.bin_dir / program), *args]
        if self._as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=self.base_dir, check=False)
        if check and done.returncode != 0:
            raise PostgresUnavailable(
                f"{program} failed ({done.returncode}): {done.stderr.strip() or done.stdout.strip()}\n{self.log_tail()}"
            )
        return done


def _children(pid: int) -> set[int]:
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.add(int(stat.parent.name))
        except (OSError, ValueError, IndexError):
            continue
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


_shared: PostgresServer | None = None
_shared_lock = threading.Lock()


def shared_server() -> PostgresServer:
    """The test process's one Postgres (unix socket only): started on first call, stopped and
    removed at exit."""
    global _shared
    with _shared_lock:
        if _shared is None:
            server = PostgresServer(tcp=False)
            atexit.register(server.cleanup)
            _shared = server
        if not _shared.running:  # first use, or a test stopped it and did not start it again
            _shared.start()
        return _shared
