"""Draw one answer as its events arrive (:mod:`orchard.events`).

The use case streams typed events and stores the answer itself when the stream ends; this module
only draws them: :class:`~orchard.events.Token` goes to ``st.write_stream``; the agent's
:class:`~orchard.events.ToolCalled` steps appear in an ``st.status``, the critique's
:class:`~orchard.events.DraftToken` and :class:`~orchard.events.CritiqueMade` in another, and
the closing :class:`~orchard.events.Done` carries the whole answer (sources, citations, timings,
the stored ``message_id``). After it, the page redraws from the stored message.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import streamlit as st

from orchard.events import (
    AnswerEvent,
    AnswerRepaired,
    AnswerResult,
    Cited,
    CritiqueMade,
    Done,
    DraftToken,
    RouteChosen,
    SourcesFound,
    Token,
    ToolCalled,
)
from orchard.ui import errors, render, state

WAITING = {
    "rag": "Searching your documents…",
    "agent": "Choosing a tool…",
    "auto": "Thinking…",
    "chat": "Thinking…",
}


class LiveView:
    """The parts of an assistant message drawn while the answer streams."""

    def __init__(self, mode: str) -> None:
        self.top = st.container()
        self.body = st.empty()
        self.body.caption(WAITING.get(mode, "Thinking…"))  # replaced by the first token
        self.below = st.container()
        self._steps: Any = None
        self._critique: Any = None
        self._draft_box: Any = None
        self._checks: Any = None
        self.calls: list[dict[str, Any]] = []
        self.draft = ""
        self.critiques: list[dict[str, Any]] = []
        self.answering = False

    def route(self, route: RouteChosen) -> None:
        if route.mode == "agent" and self._steps is None:
            self._steps = self.top.status("Agent · choosing a tool…", expanded=True)
        if route.mode == "rag":
            self.body.caption(WAITING["rag"])

    def sources_found(self, sources: tuple[Any, ...]) -> None:
        """Before the first token (the model is still reading): say what it reads."""
        if self.answering or not sources:
            return
        files = list(dict.fromkeys(s.source.rsplit("/", 1)[-1] for s in sources))
        shown = ", ".join(files[:3]) + (f" and {len(files) - 3} more" if len(files) > 3 else "")
        self.body.caption(f"Reading {len(sources)} passage{'s' if len(sources) != 1 else ''} from {shown} — writing the answer…")

    def tool_call(self, call: dict[str, Any]) -> None:
        if self._steps is None:
            self._steps = self.top.status("Agent · working…", expanded=True)
        self.calls.append(call)
        with self._steps:
            render.tool_call(len(self.calls), call)
        self._steps.update(label=render.steps_label(self.calls) + " · writing the answer…")

    def draft_token(self, text: str) -> None:
        if self._critique is None:
            self._critique = self.top.status("Writing a draft…", expanded=True)
            with self._critique:
                st.markdown("**Draft**")
                self._draft_box = st.empty()
                self._checks = st.container()
        self.draft += text
        self._draft_box.markdown(self.draft + " ▌")

    def check(self, item: dict[str, Any]) -> None:
        if self._critique is None:
            self.draft_token("")
        self.critiques.append(item)
        self._draft_box.markdown(self.draft)
        verdict = ":orange-badge[needs revision]" if item.get("needs_revision") else ":green-badge[passes]"
        with self._checks:
            st.markdown(f"**{item.get('principle', '?')}** {verdict}")
        self._critique.update(label=f"Checking the draft · {len(self.critiques)} principle(s) so far…")

    def first_token(self) -> None:
        """The first answer token: fold the finished steps away."""
        self.answering = True
        if self._steps is not None:
            failed = any(not c.get("ok", True) for c in self.calls)
            self._steps.update(label=render.steps_label(self.calls), state="error" if failed else "complete", expanded=False)
        if self._critique is not None:
            self._draft_box.markdown(self.draft)
            self._critique.update(label=render.critique_label(self.critiques), state="complete", expanded=False)

    def finish(self, result: AnswerResult) -> None:
        """The whole answer: citation badges, the grounding note and the sources."""
        meta = result.as_dict()
        with self.top:
            render.repaired(meta)  # the streamed answer is replaced: say so above it
        self.body.markdown(render.with_citation_badges(result.answer, len(result.sources)) or "_(no answer)_")
        with self.below:
            render.not_grounded(meta)
            render.sources(meta["sources"], meta["cited"])

    def failed(self) -> None:
        self.body.empty()
        for box in (self._steps, self._critique):
            if box is not None:
                box.update(state="error", expanded=False)


def tokens(events: Iterable[AnswerEvent], view: LiveView, done: list[AnswerResult]) -> Iterator[str]:
    """The answer's text for ``st.write_stream``; every other event drawn in ``view`` (the
    closing :class:`~orchard.events.Done` result is appended to ``done``)."""
    for event in events:
        match event:
            case Token(text):
                if not view.answering:
                    view.first_token()
                yield text
            case DraftToken(text):
                view.draft_token(text)
            case CritiqueMade(critique):
                view.check(critique.as_dict())
            case ToolCalled(call):
                view.tool_call(call.as_dict())
            case RouteChosen():
                view.route(event)
            case SourcesFound(sources):
                view.sources_found(sources)  # the list itself is drawn under the answer from Done's result
            case AnswerRepaired():
                pass  # the result (Done) carries the repaired answer: finish() draws it, marked
            case Cited():
                pass
            case Done(result):
                done.append(result)


def stream(events: Iterable[AnswerEvent], *, mode: str) -> AnswerResult | None:
    """Draw an answer stream inside the current ``st.chat_message``; its result, or None (the
    error shown, saying what to do) if answering failed."""
    state.wait_for("models")  # after a start, the embedder may still be loading (a spinner)
    view = LiveView(mode)
    done: list[AnswerResult] = []
    try:
        with view.body:
            st.write_stream(tokens(events, view, done))
        if not done:
            msg = "the answer ended before it was complete"
            raise RuntimeError(msg)
    except Exception as exc:  # the question is already stored: "Answer it now" retries it
        view.failed()
        errors.show(exc, action="answering")
        return None
    view.finish(done[-1])
    return done[-1]
