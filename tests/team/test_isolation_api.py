"""Team mode over the HTTP API: with Ana's and Ben's keys, Ana's private canary never reaches Ben —
not through search, the document list, a delete, an upload to the shared library or an answer
(plain or streamed) — while Ana reaches it the same ways (the control)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.api.helpers import LOCAL, ask, sse_events
from tests.fakes import ScriptedChatModel, scripted_orchard
from tests.team.test_isolation import ANA_DOC, BEN_DOC, BEN_QUESTION, SECRET, TEAM, leaked, model_inputs

ANA_USER, BEN_USER = "oidc-" + "a" * 24, "oidc-" + "b" * 24


@pytest.fixture
def api(tmp_path: Path) -> Any:
    from fastapi.testclient import TestClient

    from orchard.api import create_app

    model = ScriptedChatModel.with_replies(*["I can only say what the passages say [1]."] * 20)
    orchard = scripted_orchard(tmp_path / "data", llm=model, answer_checks=False, **TEAM)
    keys = {who: orchard.keys.create(user=user, name=who).key for who, user in (("ana", ANA_USER), ("ben", BEN_USER))}
    with TestClient(create_app(orchard), base_url=LOCAL) as client:
        def as_(who: str) -> dict[str, str]:
            return {"Authorization": f"Bearer {keys[who]}"}

        for who, name, doc in (("ana", "vault.md", ANA_DOC), ("ben", "cellar.md", BEN_DOC)):
            uploaded = client.post("/api/documents", files=[("files", (name, doc, "text/markdown"))], headers=as_(who))
            assert uploaded.status_code == 200 and uploaded.json()["files_indexed"] == 1, uploaded.text
        yield client, as_, model


def test_bens_search_list_and_delete_never_reach_anas_document(api: Any) -> None:
    client, as_, _ = api
    for query in (SECRET, "second half of the vault code", "ZQX-4417"):
        found = client.get("/api/search", params={"q": query, "k": 50}, headers=as_("ben")).json()["results"]
        assert not leaked(*(r["text"] for r in found)) and all(r["source"] == "uploads/cellar.md" for r in found)
        assert leaked(*(r["text"] for r in client.get("/api/search", params={"q": query}, headers=as_("ana")).json()["results"]))
    listed = client.get("/api/documents", headers=as_("ben")).json()
    assert [d["source"] for d in listed["documents"]] == ["uploads/cellar.md"] and listed["chunks"] == 1
    gone = client.delete("/api/documents/uploads/vault.md", headers=as_("ben"))
    assert gone.status_code == 404
    assert [d["source"] for d in client.get("/api/documents", headers=as_("ana")).json()["documents"]] == ["uploads/vault.md"]


def test_ben_may_not_upload_to_the_shared_library(api: Any) -> None:
    client, as_, _ = api
    refused = client.post("/api/documents", params={"library": "shared"}, files=[("files", ("x.md", b"# X\n\nx\n", "text/markdown"))],
                          headers=as_("ben"))  # fmt: skip
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "permission_denied"
    assert "only an admin" in refused.json()["error"]["message"]


@pytest.mark.parametrize("stream", [False, True])
def test_bens_answers_never_carry_anas_passages(api: Any, stream: bool) -> None:
    client, as_, model = api
    reply = client.post("/v1/chat/completions", json=ask("orchard-rag", BEN_QUESTION, stream=stream), headers=as_("ben"))
    assert reply.status_code == 200, reply.text
    body = reply.text if stream else str(reply.json())
    assert not leaked(body, model_inputs(model))
    if stream:
        assert sse_events(body)[-1] == "[DONE]"
    control = client.post("/v1/chat/completions", json=ask("orchard-rag", BEN_QUESTION, stream=stream), headers=as_("ana"))
    assert control.status_code == 200 and "uploads/vault.md" in control.text  # her answer cites her document
    assert leaked(model_inputs(model))  # and her passage reached the model
