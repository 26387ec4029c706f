"""The gate (chains/gate.py) and the repair of failed answers in the RAG chain, with a scripted model."""

from __future__ import annotations

import json
from pathlib import Path

from langchain_core.documents import Document
from langchain_core.messages import HumanMessage
from langchain_core.retrievers import BaseRetriever

from orchard.chains.gate import Gate, gate_features, threshold_gate
from orchard.chains.rag import MAY_NOT_REFUSE, NO_ANSWER, STATE_THE_VALUE, build_rag_chain
from orchard.events import AnswerFold, AnswerRepaired, Cited, chunk_events
from tests.fakes import ScriptedChatModel

ROOT = Path(__file__).resolve().parents[2]


class ListRetriever(BaseRetriever):
    docs: list[Document]

    def _get_relevant_documents(self, query: str, *, run_manager) -> list[Document]:
        return [d.model_copy(deep=True) for d in self.docs]


def doc(text: str, source: str, dense: float, bm25: float) -> Document:
    return Document(page_content=text, metadata={"source": source, "dense_score": dense, "bm25_score": bm25}, id=source)


SECRETS = doc("secrets > How many bytes should tokens use?\nTo be secure, tokens need sufficient randomness. "
              "It is believed that 32 bytes (256 bits) of randomness is sufficient for security tokens.",
              "library/secrets.html", 0.8, 14.0)  # fmt: skip
LOGGING = doc("logging > Levels\nThe numeric value of WARNING is 30. Handlers send log records to a destination.",
              "library/logging.html", 0.27, 2.0)  # fmt: skip
QUESTION = "How many bytes of randomness should security tokens use?"


def fold(chunks: list[dict]) -> object:
    folder = AnswerFold(mode="rag", model="m")
    for chunk in chunks:
        for event in chunk_events(chunk):
            folder.feed(event)
    return folder.result()


def test_the_gate_refuses_a_lighthouse_question_over_library_pages_and_is_strict_on_a_real_one() -> None:
    gate = Gate.default()
    lighthouse = gate.decide("How many lanterns does the lighthouse keeper on Skerry Island keep?", [LOGGING])
    assert lighthouse.decision == "refuse" and lighthouse.features["top_coverage"] == 0.0
    assert gate.decide(QUESTION, [SECRETS, LOGGING]).decision == "strict"
    assert gate.decide("Why?", [SECRETS]).decision == "answer"  # no content words: never strict
    assert threshold_gate(0.3).decide("How many lanterns?", [doc("x", "x", 0.31, 0.0)]).decision == "answer"


def test_features_measure_coverage_of_the_question_words() -> None:
    features = gate_features(QUESTION, [LOGGING, SECRETS])
    assert features["top_coverage"] < 0.3 <= features["best_coverage"] and features["best_dense"] == 0.8


def test_the_fitted_gate_on_its_test_split() -> None:
    """The shipped coefficients on the recorded test-split features (bench/fit_gate.py): no
    answerable question refused, no uncovered one strict, most uncovered ones refused outright."""
    rows = [json.loads(line) for line in (ROOT / "bench" / "gate-features.jsonl").read_text().splitlines()]
    test = [r for r in rows if r["split"] == "test"]
    gate = Gate.default()
    answerable = [gate.decide_features(r["features"]) for r in test if r["covered"]]
    uncovered = [gate.decide_features(r["features"]) for r in test if not r["covered"]]
    assert len(answerable) >= 20 and len(uncovered) >= 20
    assert "refuse" not in answerable and "strict" not in uncovered
    assert uncovered.count("refuse") > len(uncovered) / 2


def test_a_weak_match_is_refused_without_calling_the_model() -> None:
    llm = ScriptedChatModel.with_replies("keeps 1 lantern [1].")
    chain = build_rag_chain(llm=llm, retriever=ListRetriever(docs=[LOGGING]))
    result = chain.invoke({"question": "How many lanterns does the lighthouse keeper on Skerry Island keep?"})
    assert result["answer"] == NO_ANSWER and llm.calls == []


def test_a_refusal_despite_strong_evidence_is_retried_with_the_same_prompt_and_a_nudge() -> None:
    llm = ScriptedChatModel.with_replies(NO_ANSWER, "Security tokens should use 32 bytes of randomness [1].")
    chunks = list(build_rag_chain(llm=llm, retriever=ListRetriever(docs=[SECRETS, LOGGING])).stream({"question": QUESTION}))
    first, retry = llm.calls
    assert retry[:-1] == first and retry[-1] == HumanMessage(MAY_NOT_REFUSE)  # same prefix: the KV cache is reused
    repair = next(c["repair"] for c in chunks if "repair" in c)
    assert repair["kind"] == "retry" and repair["reason"].startswith("refused")
    assert chunks[-1] == {"cited": [1], "grounded": True}
    result = fold(chunks)
    assert result.answer == "Security tokens should use 32 bytes of randomness [1]."
    assert result.repair.kind == "retry" and result.repair.original == NO_ANSWER and result.grounded


def test_when_the_retry_fails_too_the_best_sentence_is_quoted() -> None:
    llm = ScriptedChatModel.with_replies("The simplest way is [1].", "Tokens should use 64 bytes [1].")
    chunks = list(build_rag_chain(llm=llm, retriever=ListRetriever(docs=[SECRETS, LOGGING])).stream({"question": QUESTION}))
    assert llm.calls[1][-1] == HumanMessage(STATE_THE_VALUE)
    events = [e for c in chunks for e in chunk_events(c)]
    repaired = next(e for e in events if isinstance(e, AnswerRepaired))
    assert repaired.kind == "extractive" and repaired.cited == (1,) and "32 bytes (256 bits)" in repaired.answer
    assert isinstance(events[-1], Cited) and events[-1].cited == (1,)
    result = fold(chunks)
    assert result.answer == repaired.answer and result.cited == (1,)
    assert result.as_dict()["repair"] == {"kind": "extractive", "reason": repaired.reason, "original": "The simplest way is [1]."}


def test_a_good_answer_is_left_alone_and_checks_can_be_turned_off() -> None:
    llm = ScriptedChatModel.with_replies("Use 32 bytes of randomness [1].")
    chunks = list(build_rag_chain(llm=llm, retriever=ListRetriever(docs=[SECRETS])).stream({"question": QUESTION}))
    assert not any("repair" in c for c in chunks) and len(llm.calls) == 1
    llm = ScriptedChatModel.with_replies("The simplest way is [1].")
    chain = build_rag_chain(llm=llm, retriever=ListRetriever(docs=[SECRETS]), checks=None)
    assert "repair" not in chain.invoke({"question": QUESTION}) and len(llm.calls) == 1


async def test_the_repair_runs_the_same_way_async() -> None:
    llm = ScriptedChatModel.with_replies(NO_ANSWER, "Use 32 bytes [1].")
    result = await build_rag_chain(llm=llm, retriever=ListRetriever(docs=[SECRETS])).ainvoke({"question": QUESTION})
    assert result["repair"]["kind"] == "retry" and result["repair"]["answer"] == "Use 32 bytes [1]."
    assert len(llm.calls) == 2 and llm.calls[1][:-1] == llm.calls[0]


def test_a_repaired_draft_of_a_critiqued_answer_stays_the_draft() -> None:
    from orchard.events import DraftToken, Token

    folder = AnswerFold(mode="rag", model="m", critiqued=True)
    for event in (DraftToken("The simplest way is [1]."), AnswerRepaired(kind="extractive", reason="empty: x", answer="“32 bytes” [1]"),
                  Token("Use 32 bytes [1].")):  # fmt: skip
        folder.feed(event)
    result = folder.result()
    assert (result.draft, result.answer) == ("“32 bytes” [1]", "Use 32 bytes [1].")
    assert result.repair.original == "The simplest way is [1]."
