"""The deployment on loopback, as real processes: model servers behind haproxy, `orchard api`
processes (behind haproxy too), Streamlit replicas behind nginx with sticky sessions.

Every piece is a :class:`Service`: a command on a free loopback port with its own log file,
started once its health URL answers, and stopped as a whole process tree
(:func:`tests.conftest.stop_tree`) — or killed with SIGKILL, the way a crash ends it. The
balancers' configuration is rendered from the templates in ``deploy/`` (the same files the
compose and Kubernetes set-ups use), so what is tested here is what is deployed.

Example (a test's body)::

    with Deployment(tmp_path) as d:
        models = d.add(ModelServers.stub(d.workdir, count=2))
        lb = d.add(HaproxyLB.for_models(d.workdir, models.addresses))
        ...
"""

from __future__ import annotations

import contextlib
import getpass
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import USER_DATA_DIR, descendants, free_port, stop_tree, wait_for_http

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
BIN = Path(sys.executable).parent


def program(name: str) -> str:
    """The path of a Debian program (haproxy, nginx live in /usr/sbin, often not on a user's PATH);
    the test fails when it is missing (`make test` installs it: never a silent skip)."""
    import shutil

    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
    if found is None:
        pytest.fail(f"{name} is missing: `make test` installs it (`make servers`: Debian's postgresql, haproxy, nginx)")
    return found


def _deploy_render() -> Any:
    """deploy/render.py, the one renderer of the balancer templates (deploy/ is not a package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("orchard_deploy_render", DEPLOY / "render.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write(text: str, target: Path) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text)
    return target


def base_env(**extra: str) -> dict[str, str]:
    """The environment of a child: this one without ORCHARD_* and proxies, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORCHARD_") and "proxy" not in k.lower()}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", ANONYMIZED_TELEMETRY="False", PYTHONUNBUFFERED="1")
    env.update(extra)
    return env


@dataclass
class Service:
    """One process: ``command`` with its output in ``log``, up once ``health_url`` answers 200."""

    name: str
    command: list[str]
    health_url: str
    log: Path
    env: dict[str, str] | None = None
    cwd: Path | None = None
    timeout: float = 90.0
    process: subprocess.Popen | None = None
    starts: int = 0
    left_running: list[str] = field(default_factory=list)

    def start(self) -> Service:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("a") as out:
            out.write(f"\n--- start {self.starts + 1}: {' '.join(self.command)}\n")
            out.flush()
            self.process = subprocess.Popen(self.command, stdout=out, stderr=subprocess.STDOUT, env=self.env,
                                            cwd=self.cwd, stdin=subprocess.DEVNULL)  # fmt: skip
        self.starts += 1
        try:
            wait_for_http(self.health_url, timeout=self.timeout, log=self.log)
        except BaseException:
            self.stop()
            raise
        return self

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after the grace period, then any descendant left (recorded)."""
        if self.process is None:
            return
        if self.process.poll() is None:
            stopped = stop_tree(self.process)
            self.left_running += stopped.left
        self.process = None

    def kill(self) -> None:
        """SIGKILL the process and all its descendants at once: a crash, no clean-up."""
        if self.process is None:
            return
        for pid in [self.process.pid, *descendants(self.process.pid)]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.process.wait()
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()


@dataclass
class Group:
    """Several services of one kind (replicas), started and stopped together."""

    services: list[Service]

    @property
    def addresses(self) -> list[str]:
        return [_address(s.health_url) for s in self.services]

    def start(self) -> Group:
        for service in self.services:
            service.start()
        return self

    def stop(self) -> None:
        for service in self.services:
            service.stop()

    def __getitem__(self, i: int) -> Service:
        return self.services[i]

    def __len__(self) -> int:
        return len(self.services)


def _address(url: str) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return f"{parts.hostname}:{parts.port}"


# --- model servers ----------------------------------------------------------------------------------


class ModelServers:
    """OpenAI-compatible model servers: the deterministic stub (load tests) or real llama.cpp."""

    @staticmethod
    def stub(workdir: Path, *, count: int = 2, first_token_delay: float = 0.1, token_delay: float = 0.01,
             model: str = "stub-model") -> Group:  # fmt: skip
        services = []
        for i in range(1, count + 1):
            port = free_port()
            command = [sys.executable, "-m", "tests.deployment.stub_model", "--port", str(port), "--name", f"model-{i}",
                       "--model", model, "--first-token-delay", str(first_token_delay), "--token-delay", str(token_delay)]  # fmt: skip
            services.append(Service(f"model-{i}", command, f"http://127.0.0.1:{port}/v1/models",
                                    workdir / "logs" / f"model-{i}.log", env=base_env(), cwd=ROOT, timeout=30))  # fmt: skip
        return Group(services)

    @staticmethod
    def llamacpp(workdir: Path, *, count: int = 2, threads: int = 1) -> Group:
        """``orchard serve`` (the embedded llama.cpp server, the packaged 0.5B model) ``count`` times."""
        services = []
        for i in range(1, count + 1):
            port = free_port()
            env = base_env(ORCHARD_DATA_DIR=str(workdir / f"serve-data-{i}"), ORCHARD_CACHE_DIR=str(USER_DATA_DIR / "cache"),
                           ORCHARD_SERVER_THREADS=str(threads))  # fmt: skip
            command = [str(BIN / "orchard"), "serve", "--port", str(port)]
            services.append(Service(f"llamacpp-{i}", command, f"http://127.0.0.1:{port}/v1/models",
                                    workdir / "logs" / f"llamacpp-{i}.log", env=env, cwd=workdir, timeout=240))  # fmt: skip
        return Group(services)


# --- balancers ----------------------------------------------------------------------------------------


class HaproxyLB:
    """haproxy from ``deploy/haproxy/models.cfg.template`` in front of ``servers`` (host:port);
    servers are named ``<backend>-<n>`` (``models-1``, ``api-2``: :meth:`backend`)."""

    @staticmethod
    def config(workdir: Path, servers: Sequence[str], *, name: str, port: int, stats_port: int, health_path: str,
               check_interval: str = "500ms", check_timeout: str = "60s") -> Path:  # fmt: skip
        text = _deploy_render().haproxy(list(servers), bind=f"127.0.0.1:{port}", backend=HaproxyLB.backend(name),
                                        health_path=health_path, stats_bind=f"127.0.0.1:{stats_port}",
                                        admin_socket=str(workdir / f"{name}.sock"), check_interval=check_interval,
                                        check_timeout=check_timeout)  # fmt: skip
        return write(text, workdir / f"{name}.cfg")

    @staticmethod
    def service(workdir: Path, servers: Sequence[str], *, name: str = "haproxy-models", health_path: str = "/v1/models",
                **options: str) -> tuple[Service, str]:  # fmt: skip
        """The haproxy service and its base URL (``http://127.0.0.1:PORT``)."""
        port, stats = free_port(), free_port()
        cfg = HaproxyLB.config(workdir, servers, name=name, port=port, stats_port=stats, health_path=health_path, **options)
        check = subprocess.run([program("haproxy"), "-c", "-q", "-f", str(cfg)], capture_output=True, text=True)
        if check.returncode != 0:
            raise RuntimeError(f"haproxy rejects {cfg}: {check.stdout}{check.stderr}")
        service = Service(name, [program("haproxy"), "-db", "-f", str(cfg)], f"http://127.0.0.1:{stats}/stats",
                          workdir / "logs" / f"{name}.log", timeout=20)  # fmt: skip
        return service, f"http://127.0.0.1:{port}"

    @staticmethod
    def backend(name: str) -> str:
        return name.replace("haproxy-", "").replace("-", "_")

    @staticmethod
    def command(service: Service, line: str) -> str:
        """One runtime-API command (``disable server api/haproxy-api-1``) over the admin socket."""
        import socket

        path = service.log.parent.parent / f"{service.name}.sock"  # where config() put it
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.connect(str(path))
            sock.sendall(line.encode() + b"\n")
            chunks = []
            while chunk := sock.recv(4096):
                chunks.append(chunk)
        return b"".join(chunks).decode()

    @staticmethod
    def stats(service: Service) -> dict[str, dict[str, str]]:
        """``{server name: its row}`` from haproxy's CSV stats (``status``: UP, DOWN, "UP 1/2" ...;
        ``scur``: sessions open now)."""
        text = httpx.get(service.health_url + ";csv", timeout=5, trust_env=False).text
        header, *rows = [line for line in text.splitlines() if line]
        names = header.lstrip("# ").split(",")
        found = {}
        for row in rows:
            record = dict(zip(names, row.split(","), strict=False))
            if record.get("svname") not in ("FRONTEND", "BACKEND"):
                found[record["svname"]] = record
        return found

    @staticmethod
    def states(service: Service) -> dict[str, str]:
        """``{server name: "UP" | "DOWN" | ...}``."""
        return {name: row.get("status", "") for name, row in HaproxyLB.stats(service).items()}

    @staticmethod
    def retried_requests(service: Service) -> int:
        """Requests haproxy sent to a second server (or again), from its log (httplog's retries field)."""
        import re

        pattern = re.compile(r" \d+/\d+/\d+/\d+/\+?(\d+) \d+/\d+ \"")
        return sum(1 for m in pattern.finditer(service.log.read_text()) if int(m.group(1)) > 0)


class NginxSticky:
    """nginx from ``deploy/nginx/streamlit.conf.template`` in front of Streamlit replicas."""

    @staticmethod
    def service(workdir: Path, replicas: Sequence[str], *, name: str = "nginx") -> tuple[Service, str]:
        port = free_port()
        run_dir, log_dir = workdir / name, workdir / "logs"
        run_dir.mkdir(parents=True, exist_ok=True)
        log_dir.mkdir(parents=True, exist_ok=True)
        text = _deploy_render().nginx(list(replicas), listen=f"127.0.0.1:{port}", run_dir=str(run_dir), log_dir=str(log_dir))
        conf = write(text, run_dir / "nginx.conf")
        command = [program("nginx"), "-p", str(run_dir), "-c", str(conf), "-e", str(log_dir / f"{name}-startup.log")]
        if os.geteuid() == 0:  # workers would run as `nobody`, who cannot write the temp folders
            command += ["-g", f"user {getpass.getuser()};"]
        check = subprocess.run([*command, "-t"], capture_output=True, text=True)
        if check.returncode != 0:
            raise RuntimeError(f"nginx rejects {conf}: {check.stderr}")
        url = f"http://127.0.0.1:{port}"
        return Service(name, command, f"{url}/_stcore/health", log_dir / f"{name}.log", timeout=60), url


# --- Orchard's own processes ------------------------------------------------------------------------------


@dataclass
class OrchardEnv:
    """What every Orchard process of one deployment shares: data folder, model URL, Chroma, state."""

    data_dir: Path
    llm_base_url: str
    chroma_url: str | None = None
    state_url: str | None = None
    extra: dict[str, str] = field(default_factory=dict)

    def env(self) -> dict[str, str]:
        values = {"ORCHARD_DATA_DIR": str(self.data_dir), "ORCHARD_LLM_BASE_URL": self.llm_base_url,
                  "ORCHARD_CACHE_DIR": str(USER_DATA_DIR / "cache"), "ORCHARD_QUERY_REWRITE": "off"}  # fmt: skip
        if self.chroma_url:
            values["ORCHARD_CHROMA_URL"] = self.chroma_url
        if self.state_url:
            values["ORCHARD_STATE_URL"] = self.state_url
        return base_env(**values, **self.extra)

    def settings(self, **overrides: Any) -> Any:
        from orchard.config import Settings

        values: dict[str, Any] = {"data_dir": self.data_dir, "llm_base_url": self.llm_base_url, "chroma_url": self.chroma_url,
                                  "cache_dir": USER_DATA_DIR / "cache", "query_rewrite": "off"}  # fmt: skip
        if self.state_url:
            values["state_url"] = self.state_url
        return Settings(**values, **overrides)


#: The path a balancer checks on an `orchard api` process (see :func:`orchard_apis`).
API_LIVENESS = "/api/health"


def orchard_command() -> list[str]:
    """The project's own ``orchard`` command, as a deployment starts it."""
    return [str(BIN / "orchard")]


def orchard_apis(workdir: Path, shared: OrchardEnv, *, count: int = 2) -> Group:
    """``orchard api --port P`` ``count`` times over ``shared``."""
    services = []
    for i in range(1, count + 1):
        port = free_port()
        command = [*orchard_command(), "api", "--port", str(port)]
        # readiness: /api/health is 503 while the process warms up, and 200 (maybe "degraded") after:
        # a shared dependency that is down (Chroma, the model servers) takes no process out of the balancer.
        services.append(Service(f"api-{i}", command, f"http://127.0.0.1:{port}{API_LIVENESS}", workdir / "logs" / f"api-{i}.log",
                                env={**shared.env(), "PYTHONPATH": str(ROOT)}, cwd=workdir, timeout=120))  # fmt: skip
    return Group(services)


def streamlit_replicas(workdir: Path, shared: OrchardEnv, *, count: int = 2) -> Group:
    """``orchard app --port P`` ``count`` times over ``shared``."""
    services = []
    for i in range(1, count + 1):
        port = free_port()
        command = [str(BIN / "orchard"), "app", "--port", str(port), "--address", "127.0.0.1"]
        services.append(Service(f"app-{i}", command, f"http://127.0.0.1:{port}/_stcore/health", workdir / "logs" / f"app-{i}.log",
                                env=shared.env(), cwd=workdir, timeout=120))  # fmt: skip
    return Group(services)


def chroma_server(workdir: Path) -> Any:
    """The shared Chroma server fixture's class (tests/servers/chroma.py), started over
    ``workdir/chroma``: ``.url``, ``.restart()``, ``.stop()``."""
    from tests.servers.chroma import ChromaServer

    return ChromaServer(workdir / "chroma").start()


def postgres_server(workdir: Path) -> Any | None:
    """The shared Postgres fixture's class (tests/servers/postgres.py), started in a temp folder of
    its own (as root it runs as the ``postgres`` user, who cannot enter pytest's 0700 tmp dirs) —
    when Orchard's state store reads ORCHARD_STATE_URL (None otherwise)."""
    from orchard.components import DEPENDS_ON

    if "state_url" not in DEPENDS_ON.get("database", ()):
        return None
    from tests.servers.postgres import PostgresServer

    return PostgresServer().start()


class Deployment:
    """Services started in order and stopped in reverse order, whatever happens in between."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.services: list[Service] = []

    def add(self, item: Service | Group) -> Any:
        items = item.services if isinstance(item, Group) else [item]
        for service in items:
            self.services.append(service)
            service.start()
        return item

    def __enter__(self) -> Deployment:
        return self

    def __exit__(self, *exc: object) -> None:
        for service in reversed(self.services):
            service.stop()

    def left_running(self) -> list[str]:
        return [cmd for s in self.services for cmd in s.left_running]

    def logs(self) -> dict[str, str]:
        return {s.name: str(s.log) for s in self.services}


@contextlib.contextmanager
def timed() -> Iterator[dict[str, float]]:
    box: dict[str, float] = {}
    start = time.monotonic()
    try:
        yield box
    finally:
        box["seconds"] = time.monotonic() - start
