"""The critique judges the repaired answer: a ``repair`` chunk from the RAG chain's answer checks
replaces the draft that the constitution's principles (and the revision) see."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from langchain_core.runnables import RunnableGenerator, RunnableLambda
from langchain_core.runnables.utils import AddableDict

from orchard.chains.constitutional import with_critique
from orchard.events import AnswerFold, AnswerRepaired, DraftToken, Token, chunk_events
from tests.fakes import ScriptedChatModel
from tests.unit.test_constitution import human_text, rules

SOURCES = [{"n": 1, "source": "guide.md", "section": "Pruning", "text": "Prune apple trees in late winter."}]
FAILED = "The simplest way to do it is [1]."
REPAIRED = "“Prune apple trees in late winter.” [1]"
REPAIR = {"kind": "extractive", "reason": "empty: no content", "answer": REPAIRED, "cited": [1]}


def repairing_rag_chain() -> RunnableGenerator:
    """Streams like the RAG chain whose answer failed the checks: the failed answer token by
    token, then the repair chunk, then cited/grounded describing the repaired answer."""

    def stream(items: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for inputs in items:
            yield AddableDict({"question": inputs["question"], "sources": SOURCES})
            for token in FAILED.split(" "):
                yield AddableDict({"answer": token + " "})
            yield AddableDict({"repair": REPAIR})
            yield AddableDict({"cited": [1], "grounded": True})

    return RunnableGenerator(stream)


def test_every_principle_judges_the_repaired_answer_and_a_pass_keeps_it() -> None:
    llm = ScriptedChatModel.with_replies("NO", "NO", "NO")
    chunks = list(with_critique(repairing_rag_chain(), llm=llm, constitution=rules()).stream({"question": "When to prune?"}))
    assert len(llm.calls) == 3
    for call in llm.calls:
        assert REPAIRED in human_text(call) and FAILED not in human_text(call)
    assert "".join(c.get("draft", "") for c in chunks).strip() == FAILED  # the tokens streamed as they came
    assert [c["repair"] for c in chunks if "repair" in c] == [REPAIR]  # passed on once
    assert "".join(c.get("answer", "") for c in chunks) == REPAIRED
    assert chunks[-1] == {"cited": [1], "grounded": True}  # the repaired answer's, unchanged


def test_the_revision_rewrites_the_repaired_answer() -> None:
    llm = ScriptedChatModel.with_replies("NO", "YES\nIt quotes without explaining.", "NO", "Prune in late winter [1].")
    out = with_critique(repairing_rag_chain(), llm=llm, constitution=rules()).invoke({"question": "When to prune?"})
    revision = human_text(llm.calls[-1])
    assert f"Old answer:\n{REPAIRED}" in revision and FAILED not in revision
    assert out["answer"] == "Prune in late winter [1]." and out["cited"] == [1] and out["grounded"] is True


def test_an_invoked_chain_with_a_repair_in_its_output() -> None:
    output = {"question": "q", "sources": SOURCES, "answer": FAILED, "repair": REPAIR, "cited": [1], "grounded": True}
    llm = ScriptedChatModel.with_replies("NO", "NO", "NO")
    out = with_critique(RunnableLambda(lambda _: output), llm=llm, constitution=rules(), stream_draft=False).invoke({"question": "q"})
    assert all(REPAIRED in human_text(call) and FAILED not in human_text(call) for call in llm.calls)
    assert out["answer"] == REPAIRED and out["repair"] == REPAIR


def test_the_folded_result_has_the_repaired_draft_and_the_original() -> None:
    llm = ScriptedChatModel.with_replies("NO", "NO", "NO")
    fold = AnswerFold(mode="rag", model="m", question="When to prune?", critiqued=True)
    events = [e for chunk in with_critique(repairing_rag_chain(), llm=llm, constitution=rules()).stream({"question": "When to prune?"})
              for e in chunk_events(chunk)]  # fmt: skip
    repaired = [e for e in events if isinstance(e, AnswerRepaired)]
    assert len(repaired) == 1
    assert events.index(repaired[0]) < min(i for i, e in enumerate(events) if isinstance(e, Token))  # before the answer
    assert max(i for i, e in enumerate(events) if isinstance(e, DraftToken)) < events.index(repaired[0])
    for event in events:
        fold.feed(event)
    result = fold.result()
    assert result.answer == result.draft == REPAIRED
    assert result.repair is not None and result.repair.original == FAILED and result.cited == (1,)
