"""The HTTP API in team mode (``ORCHARD_AUTH=oidc``): a key on every request, loopback included.

No key, a wrong one, a revoked one, or one of another scheme: 401, before any byte of the body is
read (checked at the ASGI level: the app's ``receive`` is never called). Loopback opens nothing,
with or without keys in the store. The key's owner — an OIDC identity's stored key — is the user.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from orchard.identity import identity_from_claims
from tests.api.fakes import APPLES, EchoModel
from tests.api.helpers import LOCAL, ask
from tests.fakes import scripted_orchard

ISSUER = "http://127.0.0.1:9400"
TEAM = {"auth": "oidc", "oidc_issuer": ISSUER, "oidc_client_id": "orchard", "oidc_client_secret": "s3cret"}
ROUTES = [("GET", "/v1/models"), ("POST", "/v1/chat/completions"), ("GET", "/api/documents"), ("GET", "/api/search?q=apples"),
          ("GET", "/api/conversations"), ("POST", "/api/feedback"), ("DELETE", "/api/documents/uploads/apples.md"),
          ("POST", "/api/documents")]  # fmt: skip
ANA = identity_from_claims({"sub": "ana-sub", "email": "ana@example.org", "name": "Ana"}, issuer=ISSUER)
BOB = identity_from_claims({"sub": "bob-sub", "email": "bob@example.org", "name": "Bob"}, issuer=ISSUER)
ADMIN = identity_from_claims({"sub": "root-sub", "email": "root@example.org", "name": "Root"}, issuer=ISSUER,
                             admins="root@example.org")  # fmt: skip


@pytest.fixture
def team(tmp_path: Path) -> Any:
    orchard = scripted_orchard(tmp_path / "data", llm=EchoModel(), answer_checks=False, **TEAM)
    assert orchard.settings.team_mode
    assert orchard.library.upload([("apples.md", APPLES)], identity=ADMIN, library="shared").files_indexed == 1
    return orchard


@pytest.fixture
def client(team: Any):
    from orchard.api import create_app

    with TestClient(create_app(team, host="127.0.0.1"), base_url=LOCAL) as client:
        yield client


def auth(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


def test_loopback_without_any_key_is_closed(client, team) -> None:
    """Personal mode's loopback fallback does not exist in team mode: no key in the store, a
    request from this machine, and still 401 on every route but health and the docs."""
    assert team.keys.active_count() == 0
    for method, path in ROUTES:
        for headers in ({}, auth("anything"), {"origin": "http://127.0.0.1:8400"}):
            response = client.request(method, path, headers=headers, json={})
            assert response.status_code == 401, (method, path, headers, response.text)
            error = response.json()["error"]
            assert error["code"] == "invalid_api_key" and "Settings → API keys" in error["message"]
            assert response.headers["www-authenticate"] == "Bearer"
    for path in ("/api/health", "/docs", "/openapi.json"):
        assert client.get(path).status_code == 200
    assert team.conversations.list(team.settings.default_user) == []  # nothing was asked as the default user


def test_wrong_revoked_and_foreign_scheme_keys_are_refused(client, team) -> None:
    created = team.keys.create(user=ANA.user, name="laptop")
    other = team.keys.create(user=BOB.user, name="ci")
    refused = [auth("orch_nope_nope"), auth(created.key + "x"), auth(created.key[:-1]), {"authorization": f"Basic {created.key}"},
               {"authorization": created.key}]  # fmt: skip
    for headers in refused:
        assert client.get("/api/conversations", headers=headers).status_code == 401, headers
    assert client.get("/api/conversations", headers=auth(created.key)).status_code == 200
    team.keys.revoke(created.info.id, user=ANA.user)
    assert client.get("/api/conversations", headers=auth(created.key)).status_code == 401
    assert client.get("/api/conversations", headers=auth(other.key)).status_code == 200  # bob's key is untouched


def test_the_key_owner_is_the_user_and_sees_only_their_own(client, team) -> None:
    ana, bob = (team.keys.create(user=who.user, name="k").key for who in (ANA, BOB))
    answer = client.post("/v1/chat/completions", json=ask("orchard-rag", "When should apple trees be pruned? tag-ana-secret"),
                         headers=auth(ana))  # fmt: skip
    assert answer.status_code == 200, answer.text
    conversation = answer.json()["orchard"]["conversation_id"]
    assert [c.id for c in team.conversations.list(ANA.user)] == [conversation]
    assert client.get("/api/conversations", headers=auth(bob)).json() == {"conversations": []}
    seen = client.get(f"/api/conversations/{conversation}", headers=auth(bob))
    assert seen.status_code == 404 and "tag-ana-secret" not in seen.text
    assert team.conversations.list(team.settings.default_user) == []


def test_another_users_key_id_cannot_be_revoked(team) -> None:
    from orchard.errors import NotFound

    bobs = team.keys.create(user=BOB.user, name="ci")
    with pytest.raises(NotFound):
        team.keys.revoke(bobs.info.id, user=ANA.user)
    assert team.keys.verify(bobs.key) is not None


def _call(app: Any, *, headers: list[tuple[bytes, bytes]], body: bytes) -> tuple[int, bytes, int]:
    """One request straight through the ASGI app: (status, response body, times ``receive`` was called)."""
    reads = 0
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        nonlocal reads
        reads += 1
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": "/v1/chat/completions", "raw_path": b"/v1/chat/completions", "query_string": b"", "root_path": "",
             "headers": [(b"host", b"127.0.0.1:8400"), (b"content-type", b"application/json"), *headers],
             "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8400)}  # fmt: skip
    asyncio.run(app(scope, receive, send))
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    return status, b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body"), reads


def test_a_refused_request_has_nothing_of_its_body_read(team) -> None:
    """The key is checked before the body: a caller without a valid key learns nothing about what
    it sent (the app never asks the server for a byte of it)."""
    from orchard.api import create_app

    app = create_app(team, host="127.0.0.1")
    body = json.dumps(ask("orchard-rag", "When should apple trees be pruned?")).encode()
    revoked = team.keys.create(user=ANA.user, name="old")
    team.keys.revoke(revoked.info.id, user=ANA.user)
    for headers in ([], [(b"authorization", b"Bearer orch_nope_nope")], [(b"authorization", f"Bearer {revoked.key}".encode())]):
        status, text, reads = _call(app, headers=headers, body=body)
        assert (status, reads) == (401, 0), (headers, text)
        assert b"invalid_api_key" in text and b"apple" not in text
    status, _, reads = _call(app, headers=[], body=b"{not json")
    assert (status, reads) == (401, 0)


def test_personal_mode_is_unchanged_on_loopback(tmp_path: Path) -> None:
    """The same request without a key: personal mode answers it as the default user."""
    orchard = scripted_orchard(tmp_path / "personal", llm=EchoModel(), answer_checks=False)
    from orchard.api import create_app

    with TestClient(create_app(orchard, host="127.0.0.1"), base_url=LOCAL) as client:
        response = client.post("/v1/chat/completions", json=ask("orchard-chat", "hi tag-me"))
    assert response.status_code == 200
    assert len(orchard.conversations.list("local")) == 1
