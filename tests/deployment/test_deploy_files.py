"""deploy/: the compose file and the Kubernetes sketch parse, start each piece with the command the
loopback harness uses, and the rendered balancer files are what deploy/render.py makes now.
(No docker or cluster here: what can be checked without one.)"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from tests.deployment.harness import DEPLOY, _deploy_render, program


def _compose() -> dict:
    return yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())


def _k8s() -> list[dict]:
    return [doc for path in sorted((DEPLOY / "k8s").glob("*.yaml")) for doc in yaml.safe_load_all(path.read_text()) if doc]


def test_compose_has_every_piece_started_like_the_loopback_test() -> None:
    services = _compose()["services"]
    assert {"postgres", "chroma", "vllm-1", "vllm-2", "vllm-router", "orchard-api-1", "orchard-api-2", "api-lb",
            "orchard-app-1", "orchard-app-2", "ingress"} <= set(services)  # fmt: skip
    assert services["orchard-api-1"]["command"][:2] == ["orchard", "api"]  # harness.orchard_apis
    assert services["orchard-app-2"]["command"][:2] == ["orchard", "app"]  # harness.streamlit_replicas
    assert services["chroma"]["command"][:3] == ["chroma", "run", "--path"]  # harness.chroma_server
    env = services["orchard-api-2"]["environment"]
    assert env["ORCHARD_AUTH"] == "oidc" and env["ORCHARD_LLM_BASE_URL"].startswith("http://vllm-router")
    assert env["ORCHARD_STATE_URL"].startswith("postgresql+psycopg://") and env["ORCHARD_CHROMA_URL"] == "http://chroma:8000"
    assert {"ORCHARD_OIDC_ISSUER", "ORCHARD_OIDC_CLIENT_ID", "ORCHARD_OIDC_CLIENT_SECRET"} <= set(env)


def test_kubernetes_sketch_parses_and_keeps_sessions_sticky() -> None:
    docs = _k8s()
    kinds = {(d["kind"], d["metadata"]["name"]) for d in docs}
    assert {("StatefulSet", "postgres"), ("StatefulSet", "chroma"), ("Deployment", "vllm"), ("Deployment", "vllm-router"),
            ("Deployment", "orchard-api"), ("Deployment", "orchard-app"), ("Ingress", "orchard"),
            ("Secret", "orchard-oidc")} <= kinds  # fmt: skip
    ingress = next(d for d in docs if d["kind"] == "Ingress")
    assert ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/affinity"] == "cookie"
    deployments = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Deployment"}
    api = deployments["orchard-api"]["spec"]["template"]["spec"]["containers"][0]
    assert api["command"][:2] == ["orchard", "api"] and deployments["orchard-api"]["spec"]["replicas"] == 2
    assert deployments["orchard-app"]["spec"]["template"]["spec"]["containers"][0]["command"][:2] == ["orchard", "app"]


@pytest.mark.parametrize("name", ["haproxy-api.cfg", "nginx-streamlit.conf"])
def test_rendered_compose_files_are_up_to_date(name: str) -> None:
    expected = _deploy_render().COMPOSE_FILES[name]()
    assert (DEPLOY / "compose" / name).read_text() == expected, "run `python deploy/render.py compose`"


def test_haproxy_accepts_the_compose_configuration(tmp_path: Path) -> None:
    check = subprocess.run(
        [str(program("haproxy")), "-c", "-f", str(DEPLOY / "compose" / "haproxy-api.cfg")], capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout + check.stderr
