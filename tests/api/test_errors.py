"""Every bad request gets an OpenAI error object with the right status; nothing is half-stored."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.api.fakes import APPLES, BrokenModel, DownServer
from tests.api.helpers import LOCAL, ask, sse_events
from tests.fakes import scripted_orchard

COMPLETIONS = "/v1/chat/completions"


def assert_error(response, status: int, code: str | None = None) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["message"]
    if code is not None:
        assert error["code"] == code, error
    assert response.headers["x-should-retry"] == "false"  # retrying would store the question again
    return error


def test_bad_json_is_400(client) -> None:
    response = client.post(
        COMPLETIONS, content=b'{"model": "orchard-chat", "messages": [', headers={"content-type": "application/json"}
    )
    error = assert_error(response, 400, "invalid_json")
    assert "not valid JSON" in error["message"]


def test_a_body_that_is_not_json_says_how_to_send_it(client) -> None:
    error = assert_error(client.post(COMPLETIONS, data={"model": "orchard-chat"}), 400, "invalid_json")
    assert "Content-Type: application/json" in error["message"]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "orchard-chat"}, "messages"),
        ({"model": "orchard-chat", "messages": []}, "messages"),
        ({"messages": [{"role": "user", "content": "hi"}]}, "model"),
        ({"model": "orchard-chat", "messages": [{"role": "wizard", "content": "hi"}]}, "messages.0.role"),
        ({"model": "orchard-chat", "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "x"}]},
         "messages.1.role"),
        ({"model": "orchard-chat", "messages": [{"role": "user", "content": "   "}]}, "messages.0.content"),
        ({"model": "orchard-chat", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]},
         "messages.0.content"),
        ({"model": "orchard-chat", "messages": [{"role": "user", "content": "hi"}], "orchard": {"bogus": 1}}, "orchard.bogus"),
    ],
)  # fmt: skip
def test_invalid_requests_are_400_naming_the_field(client, orchard, body: dict, param: str) -> None:
    error = assert_error(client.post(COMPLETIONS, json=body), 400)
    assert error["param"] == param, error
    assert orchard.conversations.list("local") == []  # refused before anything was stored


def test_unknown_openai_fields_are_ignored(client) -> None:
    body = ask("orchard-chat", "hello tag-x", temperature=0.3, max_tokens=20, n=1, user="someone", presence_penalty=0)
    response = client.post(COMPLETIONS, json=body)
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["content"] == "Answer for tag-x [1]."


def test_unknown_model_is_404(client, orchard) -> None:
    error = assert_error(client.post(COMPLETIONS, json=ask("gpt-4o", "hi")), 404, "model_not_found")
    assert error["param"] == "model" and "orchard-rag" in error["message"]
    assert_error(client.get("/v1/models/gpt-4o"), 404, "model_not_found")
    assert orchard.conversations.list("local") == []


def test_a_body_over_the_limit_is_413(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from orchard.api import create_app

    orchard = scripted_orchard(tmp_path / "data", api_max_body_mb=0.001)  # 1000 bytes
    client = TestClient(create_app(orchard), base_url=LOCAL)
    big = ask("orchard-chat", "x" * 2000)
    error = assert_error(client.post(COMPLETIONS, json=big), 413, "request_too_large")  # by its Content-Length
    assert "ORCHARD_API_MAX_BODY_MB" in error["message"]

    def chunks():  # no Content-Length: the streamed body is counted
        yield b'{"model": "orchard-chat", "messages": [{"role": "user", "content": "'
        for _ in range(10):
            yield b"x" * 200
        yield b'"}]}'

    response = client.post(COMPLETIONS, content=chunks(), headers={"content-type": "application/json"})
    assert "content-length" not in response.request.headers
    assert_error(response, 413, "request_too_large")
    files = {"files": ("big.md", b"y" * 5000, "text/markdown")}
    assert_error(client.post("/api/documents", files=files), 413, "request_too_large")
    assert orchard.conversations.list("local") == [] and orchard.library.count() == 0


def test_a_documents_question_without_documents_is_400(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from orchard.api import create_app

    orchard = scripted_orchard(tmp_path / "data", "unused")
    client = TestClient(create_app(orchard), base_url=LOCAL)
    for stream in (False, True):
        error = assert_error(
            client.post(COMPLETIONS, json=ask("orchard-rag", "What is pruning?", stream=stream)), 400, "empty_store"
        )
        assert "orchard ingest" in error["message"]
    assert orchard.conversations.list("local") == []


@pytest.mark.parametrize("stream", [False, True])
def test_model_server_down_is_503_and_keeps_only_the_question(tmp_path: Path, stream: bool) -> None:
    from fastapi.testclient import TestClient

    from orchard.api import create_app

    orchard = scripted_orchard(tmp_path / "data", "unused", model_server=DownServer())
    client = TestClient(create_app(orchard), base_url=LOCAL)
    response = client.post(COMPLETIONS, json=ask("orchard-chat", "Are you there?", stream=stream))
    error = assert_error(response, 503, "model_server_unavailable")
    assert "orchard serve" in error["message"] and error["type"] == "server_error"
    conversation = response.headers["x-orchard-conversation-id"]
    messages = orchard.conversations.messages("local", conversation)
    assert [(m.role, m.content) for m in messages] == [("user", "Are you there?")]


def test_an_answer_that_breaks_mid_stream_ends_with_an_error_and_is_not_stored(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from orchard.api import create_app

    orchard = scripted_orchard(tmp_path / "data", llm=BrokenModel(tokens=2))
    orchard.library.upload([("apples.md", APPLES)])
    client = TestClient(create_app(orchard), base_url=LOCAL)
    response = client.post(COMPLETIONS, json=ask("orchard-rag", "When to prune apple trees? tag-a", stream=True))
    assert response.status_code == 200  # the stream had started
    events = sse_events(response.text)
    text = "".join(e["choices"][0]["delta"].get("content", "") for e in events if isinstance(e, dict) and "choices" in e)
    assert text == "Answer for"
    assert events[-1]["error"]["code"] == "model_server_unavailable"
    assert "[DONE]" not in events
    conversation = response.headers["x-orchard-conversation-id"]
    assert [m.role for m in orchard.conversations.messages("local", conversation)] == ["user"]

    response = client.post(COMPLETIONS, json=ask("orchard-rag", "When to prune apple trees? tag-b"))  # not streamed
    assert_error(response, 503, "model_server_unavailable")
    assert [m.role for m in orchard.conversations.messages("local", response.headers["x-orchard-conversation-id"])] == ["user"]


def test_an_unexpected_failure_is_500_without_details(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from orchard.api import create_app

    class Exploding(BrokenModel):
        def _stream(self, *args, **kwargs):
            raise RuntimeError("secret internal detail")
            yield  # pragma: no cover

    orchard = scripted_orchard(tmp_path / "data", llm=Exploding())
    client = TestClient(create_app(orchard), base_url=LOCAL)
    error = assert_error(client.post(COMPLETIONS, json=ask("orchard-chat", "hi")), 500, "internal_error")
    assert "secret" not in error["message"]


def test_unknown_routes_and_methods_are_error_objects(client) -> None:
    assert_error(client.get("/v1/nothing-here"), 404, "not_found")
    assert_error(client.get(COMPLETIONS), 405, "method_not_allowed")
