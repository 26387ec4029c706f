"""A failed answer the answer checks replace, through the API: the replacement is the content
(streamed: a marked correction after the tokens already sent) and ``orchard.repair`` says why."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from orchard.api.openai_wire import CORRECTION_RULE
from tests.api.fakes import APPLES, FAILED_ANSWER, FailsFirstModel
from tests.api.helpers import LOCAL, ask, sse_events
from tests.fakes import scripted_orchard

QUESTION = "When are apple trees pruned?"
SECOND = "Prune apple trees in late winter [1]."
FOOTER = "\n\nSources:\n[1] uploads/apples.md"


@pytest.fixture
def model() -> FailsFirstModel:
    return FailsFirstModel(delay=0)


@pytest.fixture
def orchard(tmp_path: Path, model: FailsFirstModel):
    orchard = scripted_orchard(tmp_path / "data", llm=model)  # the answer checks on, as by default
    assert orchard.library.upload([("apples.md", APPLES)]).files_indexed == 1
    return orchard


@pytest.fixture
def client(orchard):
    from orchard.api import create_app

    with TestClient(create_app(orchard), base_url=LOCAL) as client:
        yield client


def _stream(client: TestClient, body: dict) -> tuple[str, dict]:
    """The streamed content, and the ``orchard`` field of the last chunk."""
    with client.stream("POST", "/v1/chat/completions", json={**body, "stream": True}) as response:
        assert response.status_code == 200
        events = sse_events(response.read().decode())
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert [c for c in chunks if "orchard" in c] == [chunks[-1]]  # the last chunk only
    return "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks), chunks[-1]["orchard"]


def test_a_quote_replaces_a_failed_answer_not_streamed(client, orchard, model) -> None:
    body = client.post("/v1/chat/completions", json=ask("orchard-rag", QUESTION)).json()
    content = body["choices"][0]["message"]["content"]
    assert content.endswith(FOOTER) and "late winter" in content
    assert FAILED_ANSWER not in content and CORRECTION_RULE not in content  # nothing was streamed: no correction
    repair = body["orchard"]["repair"]
    assert repair["kind"] == "extractive" and repair["reason"].startswith("empty:")
    assert repair["original"] == FAILED_ANSWER and repair["answer"] == content.removesuffix(FOOTER)
    assert body["orchard"]["cited"] == [1] and body["orchard"]["grounded"] is True
    assert len(model.calls) == 2  # the answer, then the retry (failed too)
    [_question, stored] = orchard.conversations.messages("local", body["orchard"]["conversation_id"])
    assert stored.content == repair["answer"] and stored.meta["repair"]["kind"] == "extractive"


def test_a_streamed_failed_answer_is_followed_by_the_marked_correction(client) -> None:
    content, extra = _stream(client, ask("orchard-rag", QUESTION))
    draft, correction = content.split(CORRECTION_RULE)
    assert draft == FAILED_ANSWER  # sent token by token before the checks ran: it stays
    label = "Corrected answer (quoted from the documents; the answer above was empty): "
    assert correction.startswith(label) and correction.endswith(FOOTER)
    assert correction.removeprefix(label).removesuffix(FOOTER) == extra["repair"]["answer"]
    assert "late winter" in extra["repair"]["answer"]
    assert extra["repair"]["kind"] == "extractive" and extra["repair"]["original"] == FAILED_ANSWER
    assert extra["cited"] == [1] and extra["grounded"] is True


def test_the_models_second_answer_replaces_the_first(client, model) -> None:
    model.second = SECOND
    content, extra = _stream(client, ask("orchard-rag", QUESTION))
    expected = f"{FAILED_ANSWER}{CORRECTION_RULE}Corrected answer (the model's second answer; the answer above was empty): {SECOND}"
    assert content == expected + FOOTER
    assert extra["repair"] == {"kind": "retry", "reason": extra["repair"]["reason"], "original": FAILED_ANSWER, "answer": SECOND}
    body = client.post("/v1/chat/completions", json=ask("orchard-rag", QUESTION)).json()
    assert body["choices"][0]["message"]["content"] == SECOND + FOOTER
    assert body["orchard"]["repair"]["kind"] == "retry"


def test_a_critiqued_answer_judges_the_repaired_draft_and_needs_no_correction(client, model) -> None:
    model.second = SECOND
    content, extra = _stream(client, ask("orchard-rag", QUESTION, orchard={"critique": True}))
    assert content == SECOND + FOOTER  # the draft was repaired before the (unchanged) answer streamed
    assert extra["repair"]["kind"] == "retry" and extra["repair"]["original"] == FAILED_ANSWER
    critiques = [m for m in model.calls if "strict reviewer" in str(m[0].content)]
    assert len(critiques) == 3 and all(SECOND in str(m[-1].content) and FAILED_ANSWER not in str(m[-1].content) for m in critiques)


def test_an_answer_that_passes_has_no_repair(tmp_path: Path) -> None:
    from orchard.api import create_app
    from tests.api.fakes import EchoModel

    orchard = scripted_orchard(tmp_path / "data", llm=EchoModel(delay=0), answer_checks=False)
    orchard.library.upload([("apples.md", APPLES)])
    body = TestClient(create_app(orchard), base_url=LOCAL).post("/v1/chat/completions", json=ask("orchard-rag", f"{QUESTION} tag-ok")).json()
    assert body["choices"][0]["message"]["content"] == "Answer for tag-ok [1]." + FOOTER
    assert body["orchard"]["repair"] is None


def test_the_writer_sends_a_repair_of_nothing_streamed_as_it_is_and_none_for_a_critiqued_draft() -> None:
    from orchard.api.openai_wire import CompletionWriter
    from orchard.events import AnswerRepaired, Token

    repair = AnswerRepaired(kind="retry", reason="empty: nothing", answer=SECOND, cited=(1,), original="")
    [chunk] = CompletionWriter(model="orchard-rag").feed(repair)
    assert chunk["choices"][0]["delta"] == {"content": SECOND}
    assert CompletionWriter(model="orchard-rag", critique=True).feed(repair) == []
    writer = CompletionWriter(model="orchard-rag")
    writer.feed(Token(" "))  # whitespace is not an answer to correct
    assert writer.feed(repair)[0]["choices"][0]["delta"] == {"content": SECOND}
