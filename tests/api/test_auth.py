"""API keys: personal mode, 401s, and users who try to reach each other's conversations."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.api.helpers import ask

QUESTION = "When should apple trees be pruned? tag-secret"


@pytest.fixture
def keys(orchard):
    """Keys of two users, ana and bob."""
    return {user: orchard.keys.create(user=user, name=f"{user}'s laptop").key for user in ("ana", "bob")}


def auth(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


def test_personal_mode_on_loopback_without_keys(client, orchard) -> None:
    response = client.post("/v1/chat/completions", json=ask("orchard-chat", "hi tag-me"), headers=auth("anything"))
    assert response.status_code == 200
    assert len(orchard.conversations.list("local")) == 1  # the default user's


@pytest.mark.parametrize(
    "headers",
    [{"origin": "http://evil.example"}, {"host": "evil.example"}, {"host": "rebound.example:8400", "origin": "http://rebound.example:8400"},
     {"origin": "null"}],
)
def test_personal_mode_answers_no_page_from_elsewhere(client, orchard, headers) -> None:
    """A cross-site form post (foreign Origin) or a DNS-rebinding attack (foreign Host) must not
    reach the open personal-mode API: nothing is uploaded, nothing is read."""
    upload = client.post("/api/documents", files={"files": ("x.md", b"# Injected\n\nplanted text")}, headers=headers)
    listed = client.get("/api/conversations", headers=headers)
    assert upload.status_code == listed.status_code == 403
    assert upload.json()["error"]["code"] == "forbidden_origin"
    assert all(not d["source"].endswith("x.md") for d in orchard.library.documents())
    assert client.get("/api/conversations", headers={"origin": "http://127.0.0.1:8400"}).status_code == 200


def test_with_keys_every_route_but_health_and_docs_needs_one(client, keys) -> None:
    routes = [("GET", "/v1/models"), ("POST", "/v1/chat/completions"), ("GET", "/api/documents"), ("GET", "/api/search?q=x"),
              ("GET", "/api/conversations"), ("POST", "/api/feedback"), ("DELETE", "/api/documents/uploads/apples.md")]  # fmt: skip
    for method, path in routes:
        for headers in ({}, auth("orch_nope_nope"), auth(keys["ana"] + "x"), {"authorization": f"Basic {keys['ana']}"}):
            response = client.request(method, path, headers=headers, json={})
            assert response.status_code == 401, (method, path, headers, response.text)
            error = response.json()["error"]
            assert error["code"] == "invalid_api_key" and "orchard keys create" in error["message"]
            assert response.headers["www-authenticate"] == "Bearer"
    for path in ("/api/health", "/docs", "/openapi.json"):
        assert client.get(path).status_code == 200
    assert client.get("/v1/models", headers=auth(keys["ana"])).status_code == 200


def test_no_key_learns_nothing_about_its_request(client, keys) -> None:
    response = client.post("/v1/chat/completions", content=b"{not json", headers={"content-type": "application/json"})
    assert response.status_code == 401  # not 400: the key is checked before the body is read


def test_a_revoked_key_is_refused_at_once(client, orchard, keys) -> None:
    key_id = orchard.keys.verify(keys["ana"]).id
    assert client.get("/v1/models", headers=auth(keys["ana"])).status_code == 200
    orchard.keys.revoke(key_id)
    assert client.get("/v1/models", headers=auth(keys["ana"])).status_code == 401


def test_revoking_every_key_never_opens_an_api_served_beyond_loopback(orchard) -> None:
    from orchard.api import create_app

    client = TestClient(create_app(orchard, host="0.0.0.0"))
    error = client.get("/v1/models").json()["error"]
    assert "no active API key" in error["message"]
    created = orchard.keys.create(user="ana", name="x")
    assert client.get("/v1/models", headers=auth(created.key)).status_code == 200
    orchard.keys.revoke(created.info.id)
    assert client.get("/v1/models", headers=auth("anything")).status_code == 401


def test_the_key_owner_is_the_user(client, orchard, keys) -> None:
    response = client.post("/v1/chat/completions", json=ask("orchard-rag", QUESTION), headers=auth(keys["ana"]))
    conversation = response.json()["orchard"]["conversation_id"]
    assert [c.id for c in orchard.conversations.list("ana")] == [conversation]
    assert orchard.conversations.list("bob") == [] and orchard.conversations.list("local") == []


def test_another_users_key_cannot_reach_a_conversation(client, orchard, keys) -> None:
    answer = client.post("/v1/chat/completions", json=ask("orchard-rag", QUESTION), headers=auth(keys["ana"])).json()
    conversation, message_id = answer["orchard"]["conversation_id"], answer["orchard"]["message_id"]
    bob = auth(keys["bob"])

    assert client.get("/api/conversations", headers=bob).json() == {"conversations": []}
    for method, path in (("GET", f"/api/conversations/{conversation}"), ("DELETE", f"/api/conversations/{conversation}")):
        response = client.request(method, path, headers=bob)
        assert response.status_code == 404 and "secret" not in response.text
    rating = client.post("/api/feedback", json={"message_id": message_id, "rating": "down"}, headers=bob)
    assert rating.status_code == 404 and "secret" not in rating.text
    follow_up = ask("orchard-rag", "And plums? tag-bob", orchard={"conversation_id": conversation})
    assert client.post("/v1/chat/completions", json=follow_up, headers=bob).status_code == 404
    header = {**bob, "x-orchard-conversation-id": conversation}
    assert client.post("/v1/chat/completions", json=ask("orchard-rag", "And plums?"), headers=header).status_code == 404

    # ana's conversation is untouched: two messages, no rating
    ana = auth(keys["ana"])
    stored = client.get(f"/api/conversations/{conversation}", headers=ana).json()
    assert [m["content"] for m in stored["messages"]] == [QUESTION, "Answer for tag-secret [1]."]
    assert orchard.feedback.list("ana") == [] and orchard.feedback.list("bob") == []
    assert client.post("/api/feedback", json={"message_id": message_id, "rating": "up"}, headers=ana).status_code == 200


# --- orchard keys --------------------------------------------------------------------------


def run_cli(*args: str):
    from typer.testing import CliRunner

    from orchard.cli import app

    return CliRunner().invoke(app, list(args))


def test_keys_create_list_revoke(isolated_env: Path) -> None:
    from orchard.config import Settings
    from orchard.usecases import build_orchard

    created = run_cli("keys", "create", "--name", "laptop", "--user", "ana", "--json")
    assert created.exit_code == 0, created.output
    data = json.loads(created.stdout)
    assert data["key"].startswith("orch_") and data["user"] == "ana" and data["name"] == "laptop"
    plain = run_cli("keys", "create", "--name", "ci")
    assert plain.exit_code == 0 and plain.stdout.strip().startswith("orch_")

    listed = json.loads(run_cli("keys", "list", "--json").stdout)
    assert {(k["user"], k["name"], k["active"]) for k in listed} == {("ana", "laptop", True), ("local", "ci", True)}
    assert data["key"] not in run_cli("keys", "list").stdout  # never the secret again
    keys = build_orchard(Settings()).keys
    assert keys.verify(data["key"]).user == "ana"

    revoked = run_cli("keys", "revoke", data["id"])
    assert revoked.exit_code == 0 and data["id"] in revoked.stdout
    assert keys.verify(data["key"]) is None
    assert "revoked" in run_cli("keys", "list").stdout


def test_keys_errors_are_one_line(isolated_env: Path) -> None:
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "orchard", "keys", "revoke", "nope"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 1 and result.stderr.strip() == "error: no key nope"
    result = subprocess.run([sys.executable, "-m", "orchard", "keys", "create", "--name", " "], capture_output=True, text=True,
                            timeout=60)  # fmt: skip
    assert result.returncode == 1 and "give the key a name" in result.stderr
