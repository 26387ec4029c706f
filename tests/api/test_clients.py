"""Real clients against a real uvicorn: the `openai` package and `langchain_openai.ChatOpenAI`."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from tests.api.helpers import serving

pytestmark = pytest.mark.enable_socket  # loopback only: the server is a thread of this test
QUESTION = "When should apple trees be pruned?"


@pytest.fixture
def base_url(app):
    with serving(app) as url:
        yield url


@pytest.fixture
def client(base_url: str):
    import openai

    return openai.OpenAI(base_url=f"{base_url}/v1", api_key="personal-mode-ignores-it", max_retries=0)


def test_models_are_the_modes(client) -> None:
    assert [m.id for m in client.models.list()] == ["orchard-auto", "orchard-rag", "orchard-agent", "orchard-chat"]
    assert client.models.retrieve("orchard-rag").owned_by == "orchard"


def test_a_cited_answer_with_the_openai_client(client, orchard) -> None:
    completion = client.chat.completions.create(
        model="orchard-rag", messages=[{"role": "user", "content": f"{QUESTION} tag-one"}]
    )
    text = completion.choices[0].message.content
    assert text == "Answer for tag-one [1].\n\nSources:\n[1] uploads/apples.md"
    extra = completion.model_extra["orchard"]
    assert extra["cited"] == [1] and extra["grounded"] is True
    assert extra["sources"] == [{"n": 1, "source": "uploads/apples.md", "section": ""}]
    assert extra["tool_calls"] == [] and extra["mode"] == "rag"
    stored = orchard.conversations.messages("local", extra["conversation_id"])
    assert [(m.role, m.content) for m in stored] == [("user", f"{QUESTION} tag-one"), ("assistant", "Answer for tag-one [1].")]
    assert str(stored[1].id) == extra["message_id"]


def test_streaming_with_the_openai_client(client, orchard) -> None:
    chunks = list(client.chat.completions.create(
        model="orchard-rag", stream=True, messages=[{"role": "user", "content": f"{QUESTION} tag-two"}],
    ))  # fmt: skip
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert text == "Answer for tag-two [1].\n\nSources:\n[1] uploads/apples.md"
    assert len(chunks) > 4  # token by token
    assert chunks[0].choices[0].delta.role == "assistant"
    last = chunks[-1]
    assert last.choices[0].finish_reason == "stop"
    assert last.model_extra["orchard"]["cited"] == [1] and last.model_extra["orchard"]["grounded"] is True
    assert all("orchard" not in c.model_extra for c in chunks[:-1])
    message_id = int(last.model_extra["orchard"]["message_id"])
    assert orchard.conversations.find_answer("local", message_id)[1].content == "Answer for tag-two [1]."


def test_earlier_messages_are_the_history(client, echo) -> None:
    client.chat.completions.create(model="orchard-chat", messages=[
        {"role": "system", "content": "You are a pirate."},  # ignored: Orchard's prompts are its own
        {"role": "user", "content": "My name is Ana."},
        {"role": "assistant", "content": "Hello Ana."},
        {"role": "user", "content": "What is my name? tag-three"},
    ])  # fmt: skip
    sent = [(m.type, m.content) for m in echo.calls[-1]]
    assert sent[1:] == [("human", "My name is Ana."), ("ai", "Hello Ana."), ("human", "What is my name? tag-three")]
    assert "pirate" not in str(sent)


def test_continuing_a_conversation_uses_its_stored_turns(client, orchard, echo) -> None:
    first = client.chat.completions.create(model="orchard-chat", messages=[{"role": "user", "content": "Remember tag-apple."}])
    conversation = first.model_extra["orchard"]["conversation_id"]
    second = client.chat.completions.create(
        model="orchard-chat", messages=[{"role": "user", "content": "What did I say? tag-pear"}],
        extra_body={"orchard": {"conversation_id": conversation}},
    )  # fmt: skip
    assert second.model_extra["orchard"]["conversation_id"] == conversation
    sent = [m.content for m in echo.calls[-1]]
    assert sent[1:] == ["Remember tag-apple.", "Answer for tag-apple [1].", "What did I say? tag-pear"]
    assert [m.role for m in orchard.conversations.messages("local", conversation)] == ["user", "assistant"] * 2


def test_errors_reach_the_openai_client_as_its_exceptions(client) -> None:
    import openai

    with pytest.raises(openai.NotFoundError, match="unknown model"):
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(openai.BadRequestError, match="last message"):
        client.chat.completions.create(model="orchard-chat", messages=[{"role": "assistant", "content": "hi"}])


def test_chat_openai_invoke_and_stream(base_url: str) -> None:
    from langchain_openai import ChatOpenAI

    llm = ChatOpenAI(base_url=f"{base_url}/v1", api_key="unused", model="orchard-rag", max_retries=0)
    reply = llm.invoke(f"{QUESTION} tag-lc")
    assert reply.content.startswith("Answer for tag-lc [1].")
    assert "Sources:\n[1] uploads/apples.md" in reply.content
    streamed = "".join(chunk.content for chunk in llm.stream(f"{QUESTION} tag-lcs"))
    assert streamed == "Answer for tag-lcs [1].\n\nSources:\n[1] uploads/apples.md"


async def test_chat_openai_async_and_in_a_chain(base_url: str) -> None:
    from langchain_core.output_parsers import StrOutputParser
    from langchain_core.prompts import ChatPromptTemplate
    from langchain_openai import ChatOpenAI

    llm = ChatOpenAI(base_url=f"{base_url}/v1", api_key="unused", model="orchard-chat", max_retries=0)
    chain = ChatPromptTemplate.from_messages([("human", "Say hello to {name}")]) | llm | StrOutputParser()
    assert await chain.ainvoke({"name": "tag-bob"}) == "Answer for tag-bob [1]."


async def test_eight_parallel_streams_each_get_their_own_answer(base_url: str, orchard, echo) -> None:
    import openai

    echo.delay = 0.05  # 0.25 s per answer: far longer than starting one
    client = openai.AsyncOpenAI(base_url=f"{base_url}/v1", api_key="unused", max_retries=0, timeout=60)
    arrivals: list[str] = []

    async def one(n: int) -> tuple[str, dict]:
        stream = await client.chat.completions.create(
            model="orchard-rag", stream=True, messages=[{"role": "user", "content": f"{QUESTION} tag-p{n}"}]
        )
        text, extra = "", {}
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                text += chunk.choices[0].delta.content
                arrivals.append(f"tag-p{n}")
            extra = chunk.model_extra.get("orchard", extra)
        return text, extra

    results = await asyncio.gather(*(one(n) for n in range(8)))
    for n, (text, extra) in enumerate(results):
        assert text == f"Answer for tag-p{n} [1].\n\nSources:\n[1] uploads/apples.md"
        stored = orchard.conversations.find_answer("local", int(extra["message_id"]))[1]
        assert stored.content == f"Answer for tag-p{n} [1]."
    assert len({extra["conversation_id"] for _, extra in results}) == 8
    assert len({extra["message_id"] for _, extra in results}) == 8
    switches = sum(1 for a, b in itertools.pairwise(arrivals) if a != b)
    assert switches > 8, "the streams did not run at the same time"  # one after the other: 7 switches
    assert echo.peak >= 4, echo.peak  # answers were written at the same time, not queued behind each other
