"""Typed answer events: the one adapter from chain chunks, the one fold, and AnswerStream."""

from __future__ import annotations

import time

import pytest

from orchard.events import (
    AnswerFold,
    AnswerResult,
    AnswerStream,
    Cited,
    CritiqueMade,
    CritiqueRecord,
    Done,
    DraftToken,
    RouteChosen,
    Source,
    SourcesFound,
    Standalone,
    Token,
    ToolCalled,
    ToolCallRecord,
    chunk_events,
    fold,
)

SOURCE = {"n": 1, "source": "docs/prune.md", "section": "Winter", "title": "Pruning", "text": "Prune in winter.",
          "score": 0.5, "relevance": 0.7, "chunk_id": "c1", "page": 3}  # fmt: skip
CALL = {"tool": "python", "input": {"code": "print(1)"}, "output": "1", "ok": True}


def events(chunk: dict) -> list:
    return list(chunk_events(chunk))


# --- chunk -> events ------------------------------------------------------------------------------


def test_each_chunk_kind_becomes_its_event() -> None:
    assert events({"mode": "agent", "route": {"tool": "python", "kind": "compute", "reason": "sums"}}) == [
        RouteChosen(mode="agent", tool="python", kind="compute", reason="sums")
    ]
    assert events({"question": "When to prune?"}) == [Standalone("When to prune?")]
    [found] = events({"sources": [SOURCE]})
    assert isinstance(found, SourcesFound) and found.sources[0].source == "docs/prune.md"
    assert events({"tool_calls": [CALL]}) == [ToolCalled(ToolCallRecord(tool="python", input={"code": "print(1)"}, output="1", ok=True))]
    assert events({"draft": "Dra"}) == [DraftToken("Dra")]
    assert events({"critiques": [{"principle": "cite", "critique": "no [n]", "needs_revision": True}]}) == [
        CritiqueMade(CritiqueRecord(principle="cite", critique="no [n]", needs_revision=True))
    ]
    assert events({"answer": "tok"}) == [Token("tok")]
    assert events({"cited": [1, 2], "grounded": True}) == [Cited((1, 2), True)]


def test_a_chunk_with_several_keys_gives_its_events_in_a_fixed_order_and_empty_parts_none() -> None:
    got = events({"answer": "a", "sources": [], "question": "q", "cited": []})
    assert [type(e) for e in got] == [Standalone, SourcesFound, Token, Cited]
    assert got[1] == SourcesFound(())
    assert got[3] == Cited((), None)  # no documents: neither grounded nor not
    assert events({"answer": ""}) == [] and events({"draft": ""}) == [] and events({}) == []
    assert events({"mode": "chat"}) == [RouteChosen(mode="chat")]


def test_a_tool_call_without_ok_is_taken_as_ok_and_a_route_without_mode_is_the_agent() -> None:
    [called] = events({"tool_calls": [{"tool": "sql", "input": None, "output": 3}]})
    assert called.call == ToolCallRecord(tool="sql", input={}, output="3", ok=True)
    assert events({"route": {"tool": "sql"}}) == [RouteChosen(mode="agent", tool="sql")]


def test_a_source_keeps_unknown_fields_as_extra_and_gives_them_back() -> None:
    source = Source.from_record(SOURCE)
    assert (source.n, source.section, source.relevance, source.chunk_id) == (1, "Winter", 0.7, "c1")
    assert source.extra == {"page": 3}
    assert source.as_dict() == SOURCE
    assert Source.from_record({"n": 2, "score": None}).source == ""  # None fields fall back to defaults


# --- the fold -------------------------------------------------------------------------------------


def test_tokens_concatenate_and_the_answer_is_stripped() -> None:
    folder = AnswerFold(mode="chat", model="m", question="hi")
    for event in (Token(" Hello"), Token(" there"), Token("!\n")):
        folder.feed(event)
    assert folder.answer == " Hello there!\n"
    result = folder.result()
    assert result.answer == "Hello there!" and result.model == "m" and result.question == "hi"
    assert result.standalone_question == "hi"  # no condensed question: the question itself


def test_first_token_timing_is_measured_from_the_start_to_the_first_answer_token() -> None:
    folder = AnswerFold(mode="rag", model="m")
    assert folder.result().timings.first_token_seconds is None
    folder.feed(SourcesFound(()))
    time.sleep(0.05)
    folder.feed(Token("a"))
    time.sleep(0.05)
    folder.feed(Token("b"))
    timings = folder.result().timings
    assert 0.05 <= timings.first_token_seconds < timings.seconds
    assert timings.seconds >= 0.1


def test_a_route_replaces_the_mode_asked_for() -> None:
    folder = AnswerFold(mode="auto", model="m")
    route = RouteChosen(mode="agent", tool="python", kind="compute", reason="sums")
    folder.feed(route)
    folder.feed(ToolCalled(ToolCallRecord(**CALL)))
    result = folder.result()
    assert result.mode == "agent" and result.route == route
    assert result.tool_calls == (ToolCallRecord(**CALL),)
    assert result.as_dict()["route"] == {"tool": "python", "kind": "compute", "mode": "agent", "reason": "sums"}


def test_sources_citations_and_grounding_are_kept() -> None:
    folder = AnswerFold(mode="rag", model="m", question="q")
    folder.feed(Standalone("standalone q"))
    folder.feed(SourcesFound((Source.from_record(SOURCE),)))
    folder.feed(Token("Prune in winter [1]."))
    folder.feed(Cited((1,), True))
    result = folder.result()
    assert result.standalone_question == "standalone q"
    assert result.sources[0].n == 1 and result.cited == (1,) and result.grounded is True


def test_an_answer_without_a_grounding_verdict_is_ungrounded_in_rag_and_unjudged_elsewhere() -> None:
    assert AnswerFold(mode="rag", model="m").result().grounded is False
    assert AnswerFold(mode="chat", model="m").result().grounded is None
    assert AnswerFold(mode="agent", model="m").result().grounded is None


def test_a_critiqued_answer_keeps_its_draft_and_critiques() -> None:
    folder = AnswerFold(mode="rag", model="m", critiqued=True)
    critique = CritiqueRecord(principle="cite", critique="add [1]", needs_revision=True)
    for event in (DraftToken("Prune "), DraftToken("in winter. "), CritiqueMade(critique), Token("Prune in winter [1].")):
        folder.feed(event)
    result = folder.result()
    assert result.draft == "Prune in winter." and result.critiques == (critique,)
    assert result.answer == "Prune in winter [1]."
    data = result.as_dict()
    assert data["draft"] == "Prune in winter." and data["critiques"] == [{"principle": "cite", "critique": "add [1]", "needs_revision": True}]


def test_an_answer_not_critiqued_has_no_draft_in_its_json() -> None:
    folder = AnswerFold(mode="chat", model="m")
    folder.feed(DraftToken("ignored"))
    result = folder.result()
    assert result.draft is None and "draft" not in result.as_dict() and "critiques" not in result.as_dict()


def test_as_dict_is_the_json_shape_of_ask() -> None:
    data = AnswerResult(answer="a", mode="chat", model="m").as_dict()
    assert set(data) == {"answer", "mode", "model", "question", "standalone_question", "sources", "cited", "grounded",
                         "route", "tool_calls", "first_token_seconds", "seconds", "conversation_id", "message_id"}  # fmt: skip
    with_ids = AnswerResult(answer="a", mode="chat", model="m").with_ids(conversation_id="c", message_id=7)
    assert (with_ids.conversation_id, with_ids.message_id) == ("c", 7)


def test_fold_returns_the_result_of_done_else_folds_the_events() -> None:
    closing = AnswerResult(answer="from Done", mode="rag", model="m", message_id=3)
    assert fold([Token("ignored"), Done(closing), Token("after")], mode="chat", model="m") is closing
    folded = fold([Token("a"), Token("b")], mode="chat", model="m")
    assert folded.answer == "ab" and folded.mode == "chat"


# --- AnswerStream ---------------------------------------------------------------------------------


def test_a_stream_yields_its_events_and_result_reads_the_rest() -> None:
    closing = AnswerResult(answer="ab", mode="chat", model="m")
    stream = AnswerStream(iter([Token("a"), Token("b"), Done(closing)]))
    first = next(iter(stream))
    assert first == Token("a")
    assert stream.result() is closing  # reads what is left
    assert stream.text() == "ab"  # and keeps it


def test_iterating_a_stream_ends_with_done() -> None:
    closing = AnswerResult(answer="a", mode="chat", model="m")
    assert list(AnswerStream(iter([Token("a"), Done(closing)]))) == [Token("a"), Done(closing)]


def test_a_stream_without_done_is_an_error() -> None:
    with pytest.raises(RuntimeError, match="without a Done event"):
        AnswerStream(iter([Token("a")])).result()


def test_an_error_in_the_stream_reaches_the_caller() -> None:
    def failing():
        yield Token("a")
        raise ValueError("model crashed")

    with pytest.raises(ValueError, match="model crashed"):
        AnswerStream(failing()).result()
