"""Streamlit AppTest of the chat page, with a fake chat service injected through session state."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from streamlit.testing.v1 import AppTest

from orchard.errors import EmptyStore, ModelServerUnavailable

APP = str(Path(__file__).resolve().parents[2] / "app.py")


class FakeService:
    """Streams a scripted answer and records what it was asked."""

    def __init__(self, *, error: Exception | None = None) -> None:
        self.error = error
        self.calls: list[dict[str, Any]] = []

    def status(self) -> dict[str, Any]:
        return {"llm_model": "fake-model", "llm_base_url": "http://fake/v1", "model_server_up": True, "chunks": 42}

    def stream(self, question: str, *, history: Any = None, mode: str = "rag") -> Iterator[dict[str, Any]]:
        self.calls.append({"question": question, "history": list(history or []), "mode": mode})
        if self.error:
            raise self.error
        sources = [
            {"n": 1, "source": "samples/guide.md", "section": "Install", "title": "Guide", "text": "Run make run."},
            {"n": 2, "source": "samples/care.html", "section": "Pruning", "title": "Care", "text": "Prune in winter."},
        ]
        yield {"question": question, "sources": sources if mode == "rag" else []}
        for token in ["Run ", "`make run` ", "[1]."]:
            yield {"answer": token}
        yield {"cited": [1] if mode == "rag" else [], "grounded": mode == "rag"}


def start(service: FakeService) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=30)
    at.session_state["chat_service"] = service
    at.run()
    assert not at.exception
    return at


def test_cited_answer_with_numbered_sources() -> None:
    service = FakeService()
    at = start(service)
    assert "42 passages" in " ".join(c.value for c in at.sidebar.caption)
    at.chat_input[0].set_value("How do I start Orchard?").run()
    assert not at.exception
    assert [m.name for m in at.chat_message] == ["user", "assistant"]
    assert at.chat_message[1].markdown[0].value == "Run `make run` [1]."
    labels = [e.label for e in at.expander]
    assert labels == ["[1] samples/guide.md — Install", "[2] samples/care.html — Pruning · not cited"]
    assert service.calls == [{"question": "How do I start Orchard?", "history": [], "mode": "rag"}]


def test_history_is_sent_with_the_follow_up_and_survives_reruns() -> None:
    service = FakeService()
    at = start(service)
    at.chat_input[0].set_value("first").run()
    at.chat_input[0].set_value("second").run()
    assert not at.exception
    assert service.calls[1]["history"] == [
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "Run `make run` [1]."},
    ]
    assert [m.name for m in at.chat_message] == ["user", "assistant", "user", "assistant"]


def test_chat_mode_is_passed_and_shows_no_sources() -> None:
    service = FakeService()
    at = start(service)
    at.sidebar.radio[0].set_value("Chat (model only)").run()
    at.chat_input[0].set_value("Hello").run()
    assert not at.exception
    assert service.calls[0]["mode"] == "chat"
    assert len(at.expander) == 0


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (ModelServerUnavailable("http://127.0.0.1:8000/v1"), "orchard serve"),
        (EmptyStore("/data/store"), "orchard ingest"),
    ],
)
def test_errors_are_messages_and_the_question_is_kept(error: Exception, expected: str) -> None:
    at = start(FakeService(error=error))
    at.chat_input[0].set_value("Will this work?").run()
    assert not at.exception
    assert expected in at.error[0].value
    assert at.chat_message[0].markdown[0].value == "Will this work?"


def test_new_chat_clears_the_conversation() -> None:
    at = start(FakeService())
    at.chat_input[0].set_value("first").run()
    at.sidebar.button[0].click().run()
    assert not at.exception
    assert len(at.chat_message) == 0
