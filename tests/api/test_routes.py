"""Orchard's routes under /api/: documents, search, conversations, feedback, health."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.api.fakes import DownServer
from tests.api.helpers import LOCAL, ask
from tests.fakes import scripted_orchard

PLUMS = b"# Plums\n\nPlum trees are pruned in summer to avoid silver leaf disease.\n"


def test_upload_reports_every_file(client, orchard) -> None:
    files = [
        ("files", ("plums.md", PLUMS, "text/markdown")),
        ("files", ("notes.exe", b"MZ...", "application/octet-stream")),
        ("files", ("../../escape.md", b"# Escape\n\nStays in uploads.\n", "text/markdown")),
    ]
    report = client.post("/api/documents", files=files).json()
    assert report["files_indexed"] == 2
    assert [s["path"] for s in report["files_skipped"]] == ["uploads/notes.exe"]
    assert report["chunks_total"] == orchard.library.count() == 3
    sources = [d["source"] for d in client.get("/api/documents").json()["documents"]]
    assert sources == ["uploads/apples.md", "uploads/escape.md", "uploads/plums.md"]
    assert (orchard.settings.data_dir / "uploads" / "escape.md").is_file()
    again = client.post("/api/documents", files=[("files", ("plums.md", PLUMS, "text/markdown"))]).json()
    assert again["files_unchanged"] == 1 and again["chunks_added"] == 0


def test_upload_needs_files(client) -> None:
    response = client.post("/api/documents")
    assert response.status_code == 400 and response.json()["error"]["param"] == "files"


def test_list_and_delete_documents(client, orchard) -> None:
    listed = client.get("/api/documents").json()
    assert listed == {"documents": [{"source": "uploads/apples.md", "chunks": 1, "uploaded": True}], "chunks": 1}
    assert client.delete("/api/documents/uploads/apples.md").json() == {"source": "uploads/apples.md", "chunks_removed": 1}
    assert not (orchard.settings.data_dir / "uploads" / "apples.md").exists()
    missing = client.delete("/api/documents/uploads/apples.md")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    assert client.get("/api/documents").json()["chunks"] == 0


def test_search(client) -> None:
    found = client.get("/api/search", params={"q": "pruning apple trees", "k": 3}).json()
    assert found["results"][0]["source"] == "uploads/apples.md"
    assert "late winter" in found["results"][0]["text"]
    assert client.get("/api/search").status_code == 400
    assert client.get("/api/search", params={"q": "x", "k": 0}).json()["error"]["param"] == "k"


def test_conversations_list_get_delete(client) -> None:
    ids = []
    for tag in ("tag-1", "tag-2"):
        body = client.post("/v1/chat/completions", json=ask("orchard-rag", f"When should apple trees be pruned? {tag}")).json()
        ids.append(body["orchard"]["conversation_id"])
    listed = client.get("/api/conversations").json()["conversations"]
    assert [c["id"] for c in listed] == ids[::-1]  # latest first
    assert listed[0]["title"] == "When should apple trees be pruned? tag-2" and listed[0]["mode"] == "rag"
    one = client.get(f"/api/conversations/{ids[0]}").json()
    assert [m["role"] for m in one["messages"]] == ["user", "assistant"]
    answer = one["messages"][1]
    assert answer["content"] == "Answer for tag-1 [1]." and answer["meta"]["cited"] == [1]
    assert answer["meta"]["sources"][0]["source"] == "uploads/apples.md"
    assert client.delete(f"/api/conversations/{ids[0]}").json() == {"deleted": ids[0]}
    assert client.get(f"/api/conversations/{ids[0]}").status_code == 404
    assert [c["id"] for c in client.get("/api/conversations").json()["conversations"]] == [ids[1]]


def test_feedback_on_a_message_id(client, orchard) -> None:
    body = client.post("/v1/chat/completions", json=ask("orchard-rag", "When should apple trees be pruned? tag-r")).json()
    message_id = body["orchard"]["message_id"]
    rated = client.post("/api/feedback", json={"message_id": message_id, "rating": "down", "comment": "too short"}).json()
    assert rated["rating"] == "down" and rated["message_id"] == message_id
    assert rated["conversation_id"] == body["orchard"]["conversation_id"]
    [record] = orchard.feedback.list("local")
    assert record.response == "Answer for tag-r [1]." and record.prompt == "When should apple trees be pruned? tag-r"
    assert record.sources[0]["source"] == "uploads/apples.md" and record.comment == "too short"
    client.post("/api/feedback", json={"message_id": int(message_id), "rating": "up"})
    assert [r.rating for r in orchard.feedback.list("local")] == ["up"]  # replaced, not added


def test_feedback_errors(client) -> None:
    question_id = "1"  # the stored question of no conversation yet: not an answer
    for body, status in (
        ({"message_id": question_id, "rating": "up"}, 404),
        ({"message_id": "abc", "rating": "up"}, 400),
        ({"message_id": 1, "rating": "meh"}, 400),
        ({"rating": "up"}, 400),
    ):
        response = client.post("/api/feedback", json=body)
        assert response.status_code == status, (body, response.text)


def test_health_is_open_and_says_what_is_up(client, tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from orchard.api import create_app

    assert client.get("/api/health").json() == {
        "status": "ok", "store_up": True, "model_server_up": True, "model_server_busy": False,
        "model": "qwen2.5-coder-0.5b-instruct", "chunks": 1,
    }  # fmt: skip
    down = TestClient(create_app(scripted_orchard(tmp_path / "other", model_server=DownServer())), base_url=LOCAL)
    assert down.get("/api/health").json()["status"] == "degraded"
    client.app.state.ready.clear()  # warming up: a balancer must wait
    starting = client.get("/api/health")
    assert starting.status_code == 503 and starting.json() == {"status": "starting"}
    client.app.state.ready.set()


@pytest.mark.enable_socket
def test_a_chroma_server_that_does_not_answer_is_a_clear_503(tmp_path: Path) -> None:
    """Chroma server mode with nothing listening: health is degraded (200), a search is a 503 that
    names the server and what to do — not an internal error."""
    import socket

    from fastapi.testclient import TestClient

    from orchard.api import create_app

    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    orchard = scripted_orchard(tmp_path / "data", chroma_url=f"http://127.0.0.1:{port}")
    down = TestClient(create_app(orchard), base_url=LOCAL)
    health = down.get("/api/health").json()
    assert health["status"] == "degraded" and health["store_up"] is False
    search = down.get("/api/search", params={"q": "apples"})
    assert search.status_code == 503
    assert search.json()["error"]["code"] == "store_unavailable" and f"127.0.0.1:{port}" in search.json()["error"]["message"]


def test_the_docs_describe_every_route(client) -> None:
    spec = client.get("/openapi.json").json()
    assert set(spec["paths"]) >= {
        "/v1/models", "/v1/chat/completions", "/api/documents", "/api/documents/{source}", "/api/search",
        "/api/conversations", "/api/conversations/{conversation_id}", "/api/feedback", "/api/health",
    }  # fmt: skip
    assert "orchard-rag" in spec["info"]["description"]
    assert "HTTPBearer" in spec["components"]["securitySchemes"]
    assert client.get("/docs").status_code == 200


def test_the_agent_reports_its_tool_calls(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from orchard.api import create_app

    orchard = scripted_orchard(tmp_path / "data", "print(17 * 23)", "17 * 23 is 391.")  # routed to python without a model call
    body = TestClient(create_app(orchard), base_url=LOCAL).post("/v1/chat/completions", json=ask("orchard-agent", "What is 17 * 23?")).json()
    assert body["choices"][0]["message"]["content"] == "17 * 23 is 391."
    extra = body["orchard"]
    assert extra["mode"] == "agent" and extra["route"]["tool"] == "python"
    assert extra["tool_calls"] == [{"tool": "python", "input": {"code": "print(17 * 23)"}, "output": "391", "ok": True}]


def test_the_critique_option(client, orchard) -> None:
    body = ask("orchard-rag", "When should apple trees be pruned? tag-c", orchard={"critique": True})
    response = client.post("/v1/chat/completions", json=body).json()
    assert response["choices"][0]["message"]["content"].startswith("Answer for tag-c [1].\n\nSources:")  # the draft once
    [_question, answer] = orchard.conversations.messages("local", response["orchard"]["conversation_id"])
    assert answer.meta["draft"] == "Answer for tag-c [1]." and len(answer.meta["critiques"]) == 3
