"""Async that works: ``ainvoke``/``astream`` give what ``invoke``/``stream`` give, for every chain.

Each case builds the same chain over a fresh scripted model four times and runs it each way
(``stream``, ``astream``, ``invoke``, ``ainvoke``): the chunks, the result and what the model
was sent must be the same. Then the same through the answering use case (``ask`` / ``aask``).
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from functools import reduce
from pathlib import Path
from typing import Any

import pytest
from langchain_core.documents import Document
from langchain_core.messages import HumanMessage
from langchain_core.retrievers import BaseRetriever
from langchain_core.runnables import Runnable

from orchard.agents.agent import agent_result, build_agent, build_agent_chain
from orchard.chains.chat import build_chat_chain
from orchard.chains.constitutional import build_critique_chain, with_critique
from orchard.chains.rag import NO_ANSWER, build_rag_chain
from orchard.constitution import Constitution, Principle
from orchard.events import (
    Cited,
    CritiqueMade,
    Done,
    DraftToken,
    RouteChosen,
    SourcesFound,
    Standalone,
    Token,
    ToolCalled,
    chunk_events,
)
from orchard.usecases import AnswerRequest
from tests.fakes import ScriptedChatModel, ScriptedToolModel, scripted_orchard
from tests.unit.test_agent import FakeSQL, python, search_docs

Build = Callable[[], tuple[Runnable, Any]]  # a fresh (chain, its scripted model)


class ListRetriever(BaseRetriever):
    docs: list[Document]

    def _get_relevant_documents(self, query: str, *, run_manager: Any) -> list[Document]:
        return [d.model_copy(deep=True) for d in self.docs]


DOCS = [
    Document(page_content="Prune apple trees in late winter.", metadata={"source": "guide.md", "dense_score": 0.8}, id="a"),
    Document(page_content="Soapy water deters aphids.", metadata={"source": "pests.md", "dense_score": 0.6}, id="b"),
]


def sent(model: Any) -> list[list[tuple[str, str]]]:
    """What the model was sent (tool-call ids differ between runs, so types and texts only)."""
    return [[(m.type, str(m.content)) for m in call] for call in model.calls]


async def four_ways(build: Build, inputs: Any) -> dict[str, Any]:
    """Run a fresh chain each way; assert the four agree; return the sync stream and result."""
    chain, model = build()
    chunks = list(chain.stream(inputs))
    calls = sent(model)
    chain, model = build()
    achunks = [chunk async for chunk in chain.astream(inputs)]
    assert achunks == chunks
    assert sent(model) == calls
    chain, model = build()
    result = chain.invoke(inputs)
    assert sent(model) == calls
    chain, model = build()
    assert await chain.ainvoke(inputs) == result
    assert sent(model) == calls
    assert result == reduce(operator.add, chunks)
    return {"chunks": chunks, "result": result, "calls": calls}


def rag(*replies: str, docs: list[Document] = DOCS) -> Build:
    def build() -> tuple[Runnable, Any]:
        llm = ScriptedChatModel.with_replies(*replies)
        return build_rag_chain(llm=llm, retriever=ListRetriever(docs=docs)), llm

    return build


# --- the chains -----------------------------------------------------------------------------


async def test_rag_chain_async_gives_the_same_cited_answer() -> None:
    run = await four_ways(rag("Prune in late winter [1]."), {"question": "When do I prune?"})
    assert run["result"]["answer"] == "Prune in late winter [1]."
    assert run["result"]["cited"] == [1] and run["result"]["grounded"] is True
    assert len([c for c in run["chunks"] if "answer" in c]) > 1  # token by token


async def test_rag_chain_async_condenses_a_follow_up_the_same_way() -> None:
    history = [("human", "When do I prune apple trees?"), ("ai", "In late winter [1].")]
    run = await four_ways(rag("When do I prune pear trees?", "Also late winter."), {"question": "And pears?", "history": history})
    assert run["result"]["question"] == "When do I prune pear trees?"
    assert len(run["calls"]) == 2  # condense, answer
    assert run["result"]["answer"].startswith("Also late winter")


async def test_rag_chain_async_refuses_without_relevant_documents() -> None:
    weak = [Document(page_content="Pears ripen.", metadata={"source": "p.md", "dense_score": 0.01})]
    run = await four_ways(rag("unused", docs=weak), {"question": "Capital of France?"})
    assert run["result"]["answer"] == NO_ANSWER and run["calls"] == []


async def test_chat_chain_async_gives_the_same_answer() -> None:
    def build() -> tuple[Runnable, Any]:
        llm = ScriptedChatModel.with_replies("Hello there, gardener!")
        return build_chat_chain(llm=llm), llm

    run = await four_ways(build, {"question": "Hi", "history": [("human", "x"), ("ai", "y")]})
    assert run["result"] == {"question": "Hi", "sources": [], "answer": "Hello there, gardener!", "cited": [], "grounded": False}


# --- the routed agent -------------------------------------------------------------------------

AGENT_CASES = {
    "compute": (["compute", "```python\nprint(sum(i*i for i in range(1, 101)))\n```", "The sum is 338350."], "What is the sum of the squares from 1 to 100?"),
    "retry": (["data", "```sql\nSELECT MAX(total) FROM orders\n```", "```sql\nSELECT COUNT(*) FROM orders\n```", "42 orders."], "How many orders?"),
    "documents": (["documents", "Prune in late winter [1]."], "When do I prune?"),
    "small talk": (["chat", "Hello! Ask me about your data."], "hi!"),
    "checked answer": (["compute", "```python\nprint(sum(i*i for i in range(1, 101)))\n```", "It is 338,000."], "Sum of the squares from 1 to 100?"),
}  # fmt: skip


def agent_tools() -> list[Any]:
    return [python, FakeSQL(seen=[]), search_docs]


@pytest.mark.parametrize("case", list(AGENT_CASES))
async def test_the_routed_graph_ainvoke_gives_the_same_state(case: str) -> None:
    replies, question = AGENT_CASES[case]
    results = []
    for way in ("invoke", "ainvoke"):
        model = ScriptedToolModel(replies=list(replies))
        agent = build_agent(llm=model, tools=agent_tools())
        state_in = {"messages": [HumanMessage(question)]}
        state = agent.invoke(state_in) if way == "invoke" else await agent.ainvoke(state_in)
        results.append((agent_result(state), sent(model)))
    assert results[0] == results[1]
    answer = results[0][0]["answer"]
    if case == "checked answer":
        assert answer == "The python result is 338350."  # the answer check runs async too
    if case == "retry":
        assert [c["ok"] for c in results[0][0]["tool_calls"]] == [False, True]


def agent_chain(replies: list[Any], tool_calling: str = "routed") -> Build:
    def build() -> tuple[Runnable, Any]:
        model = ScriptedToolModel(replies=list(replies))
        return build_agent_chain(build_agent(llm=model, tools=agent_tools(), tool_calling=tool_calling)), model

    return build


@pytest.mark.parametrize("case", list(AGENT_CASES))
async def test_the_routed_agent_chain_streams_the_same_chunks_async(case: str) -> None:
    replies, question = AGENT_CASES[case]
    run = await four_ways(agent_chain(replies), {"question": question})
    assert run["result"]["mode"] == "agent" and "route" in run["result"]
    assert run["result"]["answer"]
    if case == "documents":
        assert run["result"]["sources"] == [{"n": 1, "source": "guide.md", "text": "Prune in late winter."}]
        assert run["result"]["tool_calls"][0]["input"] == {"query": "When do I prune?"}


async def test_the_auto_agent_chain_streams_the_same_chunks_async() -> None:
    replies = [{"tool": "python", "args": {"code": "print(sum(i*i for i in range(1, 101)))"}}, "338350"]
    run = await four_ways(agent_chain(replies, tool_calling="auto"), {"question": "sum of squares to 100?"})
    assert run["result"]["answer"] == "338350"
    assert run["result"]["tool_calls"][0]["output"] == "338350"


# --- the critique -----------------------------------------------------------------------------


def rules() -> Constitution:
    return Constitution(
        description="test",
        principles=[
            Principle(name="harmless", critique="CHECK-HARM?", revision="FIX-HARM.", replacement="I can't help with that."),
            Principle(name="honest", critique="CHECK-HONEST?", revision="FIX-HONEST.", use_context=True),
            Principle(name="helpful", critique="CHECK-HELP?", revision="FIX-HELP."),
        ],
    )


@pytest.mark.parametrize(
    ("replies", "answer"),
    [
        (["NO", "NO", "NO"], "surely"),
        (["NO", "YES\nIt guesses.", "NO", "Revised answer: I am not sure, maybe."], "I am not sure, maybe."),
        (["YES, it hurts people."], "I can't help with that."),
        (["NO", "YES", "NO", "Revised answer:"], "surely"),  # an empty revision keeps the draft
    ],
)
async def test_the_critique_chain_async_gives_the_same_critiques_and_answer(replies: list[str], answer: str) -> None:
    def build() -> tuple[Runnable, Any]:
        llm = ScriptedChatModel.with_replies(*replies)
        return build_critique_chain(llm=llm, constitution=rules()), llm

    run = await four_ways(build, {"question": "q?", "answer": "surely", "context": "[1] a source"})
    assert run["result"]["draft"] == "surely" and run["result"]["answer"] == answer


def event_types(chunks: list[dict[str, Any]]) -> list[type]:
    return [type(e) for chunk in chunks for e in chunk_events(chunk)]


async def test_with_critique_over_rag_async_revises_and_recomputes_the_citations() -> None:
    replies = ["Prune in summer [2].", "NO", "YES\nSource 2 is about aphids.", "NO", "Revised answer: Prune in late winter [1]."]

    def build() -> tuple[Runnable, Any]:
        llm = ScriptedChatModel.with_replies(*replies)
        return with_critique(build_rag_chain(llm=llm, retriever=ListRetriever(docs=DOCS)), llm=llm, constitution=rules()), llm

    run = await four_ways(build, {"question": "When do I prune?"})
    out = run["result"]
    assert out["draft"] == "Prune in summer [2]." and out["answer"] == "Prune in late winter [1]."
    assert out["cited"] == [1] and out["grounded"] is True
    honest = run["calls"][2][-1][1]
    assert "Sources:\n[1] (guide.md)\nPrune apple trees in late winter.\n\n[2] (pests.md)" in honest
    types = event_types(run["chunks"])
    assert types[:3] == [Standalone, SourcesFound, DraftToken]
    assert types.count(CritiqueMade) == 3 and types.count(Cited) == 1 and types[-1] is Cited
    first_token = types.index(Token)
    assert DraftToken not in types[first_token:] and CritiqueMade not in types[first_token:]


@pytest.mark.parametrize("tool_calling", ["routed", "auto"])
async def test_with_critique_over_the_agent_chain_async(tool_calling: str) -> None:
    if tool_calling == "routed":
        replies: list[Any] = ["Prune in late winter [1]."]
    else:
        replies = [{"tool": "search_docs", "args": {"query": "pruning"}}, "Prune in late winter [1]."]
    replies += ["NO", "YES\nIt does not say which trees.", "NO", "Prune apple trees in late winter [1]."]

    def build() -> tuple[Runnable, Any]:
        model = ScriptedToolModel(replies=list(replies))
        agent = build_agent(llm=model, tools=agent_tools(), tool_calling=tool_calling)
        return with_critique(build_agent_chain(agent), llm=model, constitution=rules()), model

    run = await four_ways(build, {"question": "When do I prune?"})
    out = run["result"]
    assert out["draft"] == "Prune in late winter [1]." and out["answer"] == "Prune apple trees in late winter [1]."
    assert "cited" not in out and "grounded" not in out  # the agent sends neither: none invented
    assert "Sources:\n[1] (guide.md)\nPrune in late winter." in run["calls"][-3][-1][1]  # honest saw them
    types = event_types(run["chunks"])
    assert {ToolCalled, SourcesFound, DraftToken, CritiqueMade, Token} <= set(types)
    assert (RouteChosen in types) is (tool_calling == "routed")  # only the routed agent routes
    assert Cited not in types


# --- through the answering use case -----------------------------------------------------------

GUIDE = "# Pruning\n\nPrune apple trees in late winter, before the buds open.\n"


def comparable(result: Any) -> dict[str, Any]:
    data = result.as_dict()
    data.pop("seconds"), data.pop("first_token_seconds")
    return data


@pytest.mark.parametrize(
    ("mode", "critique", "replies"),
    [
        ("rag", False, ["Prune apple trees in late winter [1]."]),
        ("chat", False, ["Hello, gardener!"]),
        ("agent", False, ["Prune in late winter [1]."]),
        ("rag", True, ["Prune in summer.", "NO", "YES\nIt contradicts source 1.", "NO", "Prune in late winter [1]."]),
        ("agent", True, ["Prune in late winter [1].", "NO", "NO", "NO"]),
        ("chat", True, ["Hello, gardener!", "NO", "NO", "NO"]),
    ],
)
async def test_aask_gives_what_ask_gives(tmp_path: Path, mode: str, critique: bool, replies: list[str]) -> None:
    (tmp_path / "guide.md").write_text(GUIDE)
    request = AnswerRequest(question="When do I prune apple trees?", mode=mode, critique=critique)
    runs = []
    for way in ("sync", "async"):
        orchard = scripted_orchard(tmp_path / way, *replies)
        orchard.library.ingest([tmp_path / "guide.md"], progress=False)
        if way == "sync":
            events = list(orchard.answers.stream(request))
        else:
            events = [event async for event in orchard.answers.astream(request)]
        assert isinstance(events[-1], Done)
        runs.append(([type(e) for e in events], comparable(events[-1].result), sent(orchard.answers.components.llm)))
    assert runs[0] == runs[1]
    assert len(runs[0][2]) == len(replies)  # every scripted reply used, each once
    result = runs[0][1]
    assert result["mode"] == mode and result["answer"]
    if critique:
        assert result["draft"] and len(result["critiques"]) == 3
    if mode == "rag":
        assert result["cited"] == [1] and result["grounded"] is True
    if mode == "agent":
        assert result["tool_calls"][0]["tool"] == "search_docs" and result["grounded"] is None


async def test_aask_returns_the_result(tmp_path: Path) -> None:
    orchard = scripted_orchard(tmp_path / "data", "Hello, gardener!")
    result = await orchard.answers.aask(AnswerRequest(question="hi", mode="chat"))
    assert result.answer == "Hello, gardener!" and result.mode == "chat"
