"""Render the balancer templates in deploy/ (haproxy, nginx) for a set of servers.

The loopback test (tests/deployment/harness.py) and the compose/Kubernetes files use the same
templates through this one function; ``python deploy/render.py compose`` rewrites the rendered
files under deploy/compose/ (a test checks they are up to date).

    python deploy/render.py haproxy --servers vllm-1:8000,vllm-2:8000 --bind :8000 > haproxy.cfg
    python deploy/render.py nginx --servers app-1:8501,app-2:8501 --listen 80 > nginx.conf
    python deploy/render.py compose
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
HAPROXY = HERE / "haproxy" / "models.cfg.template"
NGINX = HERE / "nginx" / "streamlit.conf.template"


def render_text(template: Path, values: dict[str, str]) -> str:
    """``template`` with every ``{{name}}`` replaced by ``values[name]``.

    Raises:
        KeyError: the template names a value not given (nothing is half-rendered).
    """
    text = template.read_text()
    missing = sorted(set(re.findall(r"\{\{(\w+)\}\}", text)) - set(values))
    if missing:
        raise KeyError(f"{template.name}: no value for {', '.join(missing)}")
    for name, value in values.items():
        text = text.replace("{{" + name + "}}", value)
    return text


def haproxy(servers: list[str], *, bind: str, backend: str = "model_servers", health_path: str = "/v1/models",
            stats_bind: str = ":8404", admin_socket: str = "/tmp/haproxy.sock", check_interval: str = "2s",
            check_timeout: str = "60s", nameserver: str | None = None) -> str:  # fmt: skip
    """haproxy's configuration; ``nameserver`` (docker: ``127.0.0.11:53``): resolve server names
    at run time, so a replica that starts late (or restarts with a new address) is found."""
    lines = "\n".join(f"    server {backend}-{i} {address}" for i, address in enumerate(servers, start=1))
    section = f"resolvers dns\n    nameserver dns1 {nameserver}\n    hold valid 5s\n\n" if nameserver else ""
    return render_text(HAPROXY, {"bind": bind, "servers": lines, "backend": backend, "health_path": health_path,
                                 "stats_bind": stats_bind, "admin_socket": admin_socket, "check_interval": check_interval,
                                 "check_timeout": check_timeout, "server_options": " resolvers dns" if nameserver else "",
                                 "resolvers_section": section})  # fmt: skip


def nginx(servers: list[str], *, listen: str, run_dir: str = "/tmp", log_dir: str = "/var/log/nginx") -> str:
    lines = "\n".join(f"        server {address};" for address in servers)
    return render_text(NGINX, {"servers": lines, "listen": listen, "run_dir": run_dir, "log_dir": log_dir})


#: What deploy/compose/ holds, rendered (docker-compose.yml mounts these).
COMPOSE_FILES = {
    "haproxy-api.cfg": lambda: haproxy(
        ["orchard-api-1:8400", "orchard-api-2:8400"],
        bind=":8400",
        backend="orchard_api",
        health_path="/api/health",
        check_timeout="10s",
        nameserver="127.0.0.11:53",
    ),
    "nginx-streamlit.conf": lambda: nginx(["orchard-app-1:8501", "orchard-app-2:8501"], listen="80"),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Render deploy/'s balancer templates.")
    sub = parser.add_subparsers(dest="what", required=True)
    h = sub.add_parser("haproxy")
    h.add_argument("--servers", required=True, help="host:port,host:port")
    h.add_argument("--bind", default=":8000")
    h.add_argument("--backend", default="model_servers")
    h.add_argument("--health-path", default="/v1/models")
    n = sub.add_parser("nginx")
    n.add_argument("--servers", required=True)
    n.add_argument("--listen", default="80")
    sub.add_parser("compose", help="rewrite deploy/compose/*")
    args = parser.parse_args(argv)
    if args.what == "haproxy":
        sys.stdout.write(haproxy(args.servers.split(","), bind=args.bind, backend=args.backend, health_path=args.health_path))
    elif args.what == "nginx":
        sys.stdout.write(nginx(args.servers.split(","), listen=args.listen))
    else:
        for name, make in COMPOSE_FILES.items():
            (HERE / "compose" / name).write_text(make())
            print(f"wrote deploy/compose/{name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
