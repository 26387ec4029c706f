"""Typed answer events and the one fold that turns them into a whole answer.

Every way of answering (RAG, chat, the agent, any of them critiqued) streams the same events,
and every face (CLI, Streamlit, the HTTP API) and every test fake matches on their types:

=================  ===============================================================
event              meaning
=================  ===============================================================
:class:`RouteChosen`   auto mode chose a mode (and a tool) for the question
:class:`Standalone`    the standalone question retrieval used (RAG condenses follow-ups)
:class:`SourcesFound`  the numbered passages the answer may cite
:class:`ToolCalled`    the agent called a tool (input, output, ok)
:class:`DraftToken`    a token of the draft (critique on: the draft streams first)
:class:`CritiqueMade`  one principle of the constitution checked
:class:`Token`         a token of the answer the user reads
:class:`Cited`         the citation numbers the answer carries, and whether it is grounded
:class:`AnswerRepaired` a failure detector fired: the answer is replaced (a retry, or a quote)
:class:`CandidatesRanked` best-of-n: the candidates, their reward scores and which was picked
:class:`Done`          the end: carries the whole :class:`AnswerResult`
=================  ===============================================================

The chains (``orchard.chains``) stream plain dict chunks, LangChain's way (``{"answer": token}``,
``{"sources": [...]}``); :func:`chunk_events` is the one adapter from those chunks to events, and
:class:`AnswerFold` the one fold from events to the result.

Example::

    >>> fold = AnswerFold(mode="chat", model="m")
    >>> for event in (Token("Hello"), Token(" there")):
    ...     fold.feed(event)
    >>> fold.result().answer
    'Hello there'
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

#: Keys of a chain's source record that become :class:`Source` fields; others go to ``extra``.
_SOURCE_FIELDS = ("n", "source", "title", "section", "text", "score", "relevance", "chunk_id")


@dataclass(frozen=True, kw_only=True)
class Source:
    """A numbered passage an answer may cite as ``[n]``."""

    n: int
    source: str
    section: str = ""
    title: str = ""
    text: str = ""
    score: float | None = None
    relevance: float | None = None
    chunk_id: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)  # page, rows ...

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Source:
        known = {k: record[k] for k in _SOURCE_FIELDS if k in record and record[k] is not None}
        extra = {k: v for k, v in record.items() if k not in _SOURCE_FIELDS}
        return cls(**{"source": "", **known}, extra=extra)

    def as_dict(self) -> dict[str, Any]:
        """The record as stored and sent (``extra`` spread next to the fields)."""
        data = {k: getattr(self, k) for k in _SOURCE_FIELDS}
        return {**data, **dict(self.extra)}


@dataclass(frozen=True, kw_only=True)
class ToolCallRecord:
    tool: str
    input: Mapping[str, Any]
    output: str
    ok: bool

    def as_dict(self) -> dict[str, Any]:
        return {"tool": self.tool, "input": dict(self.input), "output": self.output, "ok": self.ok}


@dataclass(frozen=True, kw_only=True)
class CritiqueRecord:
    principle: str
    critique: str
    needs_revision: bool

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# --- the events -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Token:
    text: str


@dataclass(frozen=True, slots=True)
class DraftToken:
    text: str


@dataclass(frozen=True, kw_only=True)
class RouteChosen:
    """Which mode answers (``rag``, ``agent``, ``chat``) and, for the agent, which tool and why."""

    mode: str
    tool: str | None = None
    kind: str = ""
    reason: str = ""

    @classmethod
    def from_route(cls, route: Mapping[str, Any] | None, mode: str | None = None) -> RouteChosen:
        route = route or {}
        return cls(
            mode=str(mode or route.get("mode") or "agent"),
            tool=route.get("tool"),
            kind=str(route.get("kind") or ""),
            reason=str(route.get("reason") or ""),
        )

    def as_dict(self) -> dict[str, Any]:
        return {"tool": self.tool, "kind": self.kind, "mode": self.mode, "reason": self.reason}


@dataclass(frozen=True, slots=True)
class Standalone:
    question: str


@dataclass(frozen=True, slots=True)
class SourcesFound:
    sources: tuple[Source, ...]


@dataclass(frozen=True, slots=True)
class ToolCalled:
    call: ToolCallRecord


@dataclass(frozen=True, slots=True)
class CritiqueMade:
    critique: CritiqueRecord


@dataclass(frozen=True, slots=True)
class Cited:
    cited: tuple[int, ...]
    grounded: bool | None = None  # None: this answer has no documents to be grounded in


@dataclass(frozen=True, kw_only=True)
class AnswerRepaired:
    """The streamed answer failed a check (:mod:`orchard.chains.answer_checks`) and is replaced.

    ``kind``: ``"retry"`` (the model answered again, greedy, with a nudge) or ``"extractive"``
    (a quote of the passage sentence that best answers the question, cited). ``reason`` names
    the detectors that fired; ``original`` is the answer that streamed first.
    """

    kind: Literal["retry", "extractive"]
    reason: str
    answer: str
    cited: tuple[int, ...] = ()
    original: str = ""

    @classmethod
    def from_chunk(cls, data: Mapping[str, Any]) -> AnswerRepaired:
        kind = "extractive" if data.get("kind") == "extractive" else "retry"
        return cls(kind=kind, reason=str(data.get("reason", "")), answer=str(data.get("answer", "")),
                   cited=tuple(data.get("cited") or ()), original=str(data.get("original", "")))  # fmt: skip

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "reason": self.reason, "original": self.original}


@dataclass(frozen=True, kw_only=True)
class CandidatesRanked:
    """Best-of-n (:mod:`orchard.chains.best_of`): every candidate, its score under the user's
    reward model (None: no reward model yet, candidate 0 kept), the index picked and by what."""

    texts: tuple[str, ...]
    scores: tuple[float, ...] | None
    picked: int
    scorer: str = ""

    @classmethod
    def from_chunk(cls, data: Mapping[str, Any]) -> CandidatesRanked:
        scores = data.get("scores")
        return cls(texts=tuple(str(t) for t in data.get("texts") or ()), scores=None if scores is None else tuple(float(x) for x in scores),
                   picked=int(data.get("picked") or 0), scorer=str(data.get("scorer") or ""))  # fmt: skip

    def as_dict(self) -> dict[str, Any]:
        return {"texts": list(self.texts), "scores": None if self.scores is None else list(self.scores),
                "picked": self.picked, "scorer": self.scorer}  # fmt: skip


@dataclass(frozen=True, kw_only=True)
class Timings:
    first_token_seconds: float | None = None
    seconds: float = 0.0


@dataclass(frozen=True, kw_only=True)
class AnswerResult:
    """The whole answer: what every face shows and every store keeps."""

    answer: str
    mode: str
    model: str
    question: str = ""
    standalone_question: str = ""
    sources: tuple[Source, ...] = ()
    cited: tuple[int, ...] = ()
    grounded: bool | None = None
    route: RouteChosen | None = None
    tool_calls: tuple[ToolCallRecord, ...] = ()
    draft: str | None = None  # set when the answer was critiqued
    critiques: tuple[CritiqueRecord, ...] = ()
    repair: AnswerRepaired | None = None  # set when a failure detector replaced the answer
    candidates: CandidatesRanked | None = None  # set for a best-of-n answer
    timings: Timings = field(default_factory=Timings)
    conversation_id: str | None = None
    message_id: int | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready (the shape of ``orchard ask --json`` and of a stored message's ``meta``)."""
        data: dict[str, Any] = {
            "answer": self.answer,
            "mode": self.mode,
            "model": self.model,
            "question": self.question,
            "standalone_question": self.standalone_question,
            "sources": [s.as_dict() for s in self.sources],
            "cited": list(self.cited),
            "grounded": self.grounded,
            "route": self.route.as_dict() if self.route else None,
            "tool_calls": [c.as_dict() for c in self.tool_calls],
            "first_token_seconds": self.timings.first_token_seconds,
            "seconds": self.timings.seconds,
            "conversation_id": self.conversation_id,
            "message_id": self.message_id,
        }
        if self.draft is not None:
            data["draft"] = self.draft
            data["critiques"] = [c.as_dict() for c in self.critiques]
        if self.repair is not None:
            data["repair"] = self.repair.as_dict()
        if self.candidates is not None:
            data["candidates"] = self.candidates.as_dict()
        return data

    def with_ids(self, *, conversation_id: str, message_id: int) -> AnswerResult:
        return replace(self, conversation_id=conversation_id, message_id=message_id)


@dataclass(frozen=True, slots=True)
class Done:
    result: AnswerResult


AnswerEvent = (
    RouteChosen | Standalone | SourcesFound | ToolCalled | DraftToken | CritiqueMade | Token | AnswerRepaired | Cited
    | CandidatesRanked | Done
)


# --- chain chunks -> events -------------------------------------------------------------------


def chunk_events(chunk: Mapping[str, Any]) -> Iterator[AnswerEvent]:
    """The events in one chain chunk (the dict protocol of ``orchard.chains``), in a fixed order."""
    if chunk.get("route") is not None or chunk.get("mode"):
        yield RouteChosen.from_route(chunk.get("route"), chunk.get("mode"))
    if chunk.get("question"):
        yield Standalone(str(chunk["question"]))
    if "sources" in chunk:
        yield SourcesFound(tuple(Source.from_record(s) for s in chunk["sources"] or ()))
    for call in chunk.get("tool_calls") or ():  # the agent chain's: a list, so chunks add up (invoke)
        yield ToolCalled(ToolCallRecord(**_tool_call_fields(call)))
    if chunk.get("draft"):
        yield DraftToken(str(chunk["draft"]))
    for item in chunk.get("critiques") or ():
        yield CritiqueMade(CritiqueRecord(principle=str(item.get("principle", "")), critique=str(item.get("critique", "")),
                                          needs_revision=bool(item.get("needs_revision"))))  # fmt: skip
    if chunk.get("answer"):
        yield Token(str(chunk["answer"]))
    if chunk.get("repair"):
        yield AnswerRepaired.from_chunk(chunk["repair"])
    if "cited" in chunk or "grounded" in chunk:
        yield Cited(tuple(chunk.get("cited") or ()), chunk.get("grounded"))
    if chunk.get("candidates"):
        yield CandidatesRanked.from_chunk(chunk["candidates"])


def _tool_call_fields(call: Mapping[str, Any]) -> dict[str, Any]:
    return {"tool": str(call.get("tool", "")), "input": dict(call.get("input") or {}), "output": str(call.get("output", "")),
            "ok": bool(call.get("ok", True))}  # fmt: skip


# --- the fold ---------------------------------------------------------------------------------


class AnswerFold:
    """Folds events into an :class:`AnswerResult`; also keeps the clock (first token, total).

    Args:
        mode: the mode asked for (a :class:`RouteChosen` replaces it with the one that answered).
        model: the model name to record.
        question: the user's question.
        critiqued: the answer is critiqued (``draft`` and ``critiques`` are part of the result).
    """

    def __init__(self, *, mode: str, model: str, question: str = "", critiqued: bool = False) -> None:
        self.mode, self.model, self.question, self.critiqued = mode, model, question, critiqued
        self.started = time.perf_counter()
        self.first_token_at: float | None = None
        self.route: RouteChosen | None = None
        self.standalone = ""
        self.sources: tuple[Source, ...] = ()
        self.cited: tuple[int, ...] = ()
        self.grounded: bool | None = None
        self.tool_calls: list[ToolCallRecord] = []
        self.draft: list[str] = []
        self.critiques: list[CritiqueRecord] = []
        self.tokens: list[str] = []
        self.repair: AnswerRepaired | None = None
        self.candidates: CandidatesRanked | None = None

    def feed(self, event: AnswerEvent) -> None:
        match event:
            case Token(text):
                if self.first_token_at is None:
                    self.first_token_at = time.perf_counter()
                self.tokens.append(text)
            case DraftToken(text):
                self.draft.append(text)
            case RouteChosen():
                self.route, self.mode = event, event.mode
            case Standalone(question):
                self.standalone = question
            case SourcesFound(sources):
                self.sources += sources  # an agent's second search adds to its first
            case ToolCalled(call):
                self.tool_calls.append(call)
            case CritiqueMade(critique):
                self.critiques.append(critique)
            case AnswerRepaired():  # critiqued: the draft is what was repaired (the revision follows)
                streamed = "".join(self.draft if self.critiqued else self.tokens).strip()
                self.repair = replace(event, original=event.original or streamed)
                if self.critiqued:
                    self.draft = [event.answer]
                else:
                    self.tokens = [event.answer]
                    self.cited = event.cited
            case Cited(cited, grounded):
                self.cited, self.grounded = cited, grounded
            case CandidatesRanked():
                self.candidates = event
            case Done():
                pass

    @property
    def answer(self) -> str:
        return "".join(self.tokens)

    def result(self) -> AnswerResult:
        now = time.perf_counter()
        first = None if self.first_token_at is None else round(self.first_token_at - self.started, 3)
        grounded = self.grounded
        if grounded is None and self.mode == "rag":
            grounded = False
        return AnswerResult(
            answer=self.answer.strip(),
            mode=self.mode,
            model=self.model,
            question=self.question,
            standalone_question=self.standalone or self.question,
            sources=self.sources,
            cited=self.cited,
            grounded=grounded,
            route=self.route,
            tool_calls=tuple(self.tool_calls),
            draft="".join(self.draft).strip() if self.critiqued else None,
            critiques=tuple(self.critiques),
            repair=self.repair,
            candidates=self.candidates,
            timings=Timings(first_token_seconds=first, seconds=round(now - self.started, 3)),
        )


def fold(events: Iterable[AnswerEvent], **kwargs: Any) -> AnswerResult:
    """The result of a stream: its :class:`Done` event's, else the fold of its events."""
    folder = AnswerFold(**kwargs)
    for event in events:
        if isinstance(event, Done):
            return event.result
        folder.feed(event)
    return folder.result()


class AnswerStream:
    """An answer being streamed: iterate for the events (ending with :class:`Done`); ``result()``
    reads what is left and returns the whole answer (like simonw/llm's ``Response.text()``)."""

    def __init__(self, events: Iterator[AnswerEvent]) -> None:
        self._events = events
        self._result: AnswerResult | None = None

    def __iter__(self) -> Iterator[AnswerEvent]:
        for event in self._events:
            if isinstance(event, Done):
                self._result = event.result
            yield event

    def result(self) -> AnswerResult:
        for _ in self:
            pass
        if self._result is None:
            msg = "the answer stream ended without a Done event"
            raise RuntimeError(msg)
        return self._result

    def text(self) -> str:
        return self.result().answer
