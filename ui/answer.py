"""Stream one answer into the page and return what to store with it.

The service yields chunks: ``answer`` tokens go to ``st.write_stream``; the others are drawn as
they arrive (the agent's tool calls in an ``st.status``, the critique's draft and checks in
another) or kept for the sources under the answer. The returned ``meta`` holds everything needed
to draw the answer again: sources, cited, grounded, mode, route, tool_calls, draft, critiques,
model, question, and timings: ``asked_epoch`` (when the service was asked), ``first_token_s``
(seconds until the service's first answer token: retrieval, routing and the model's first token)
and ``first_token_epoch`` (when that token arrived; the browser tests compare it with the moment the
token is visible in the page).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import streamlit as st

from orchard.ui import errors, render, state

WAITING = {
    "rag": "Searching your documents…",
    "agent": "Choosing a tool…",
    "auto": "Thinking…",
    "chat": "Thinking…",
}


@dataclass
class Answer:
    """What one streamed answer produced."""

    text: str = ""
    meta: dict[str, Any] = field(default_factory=dict)


class LiveView:
    """The parts of an assistant message drawn while the answer streams."""

    def __init__(self, mode: str) -> None:
        self.top = st.container()
        self.body = st.empty()
        self.body.caption(WAITING.get(mode, "Thinking…"))  # replaced by the first token
        self.below = st.container()
        self._steps: Any = None
        self._critique: Any = None
        self._draft: Any = None
        self._checks: Any = None
        self.calls: list[dict[str, Any]] = []

    def route(self, route: dict[str, Any], mode: str) -> None:
        if mode == "agent" and self._steps is None:
            self._steps = self.top.status("Agent · choosing a tool…", expanded=True)
        if mode == "rag":
            self.body.caption(WAITING["rag"])

    def tool_call(self, call: dict[str, Any]) -> None:
        if self._steps is None:
            self._steps = self.top.status("Agent · working…", expanded=True)
        self.calls.append(call)
        with self._steps:
            render.tool_call(len(self.calls), call)
        self._steps.update(label=render.steps_label(self.calls) + " · writing the answer…")

    def draft(self, text: str) -> None:
        if self._critique is None:
            self._critique = self.top.status("Writing a draft…", expanded=True)
            with self._critique:
                st.markdown("**Draft**")
                self._draft = st.empty()
                self._checks = st.container()
        self._draft.markdown(text + " ▌")

    def checks(self, draft: str, critiques: list[dict[str, Any]]) -> None:
        if self._critique is None:
            self.draft(draft)
        self._draft.markdown(draft)
        with self._checks:
            for item in critiques[-1:]:
                verdict = ":orange-badge[needs revision]" if item.get("needs_revision") else ":green-badge[passes]"
                st.markdown(f"**{item.get('principle', '?')}** {verdict}")
        self._critique.update(label=f"Checking the draft · {len(critiques)} principle(s) so far…")

    def answering(self, draft: str, critiques: list[dict[str, Any]]) -> None:
        """The first answer token: fold the finished steps away."""
        if self._steps is not None:
            failed = any(not c.get("ok", True) for c in self.calls)
            self._steps.update(label=render.steps_label(self.calls), state="error" if failed else "complete", expanded=False)
        if self._critique is not None:
            self._draft.markdown(draft)
            self._critique.update(label=render.critique_label(critiques), state="complete", expanded=False)

    def failed(self) -> None:
        self.body.empty()
        for box in (self._steps, self._critique):
            if box is not None:
                box.update(state="error", expanded=False)


def stream(
    question: str,
    *,
    history: list[dict[str, str]],
    conversation: Any,
    user: str,
    critique: bool,
) -> Answer | None:
    """Stream the answer inside the current ``st.chat_message``; None (error shown) on failure."""
    mode = conversation.mode
    meta: dict[str, Any] = {
        "question": question,
        "requested_mode": mode,
        "mode": mode,
        "sources": [],
        "cited": [],
        "tool_calls": [],
        "route": None,
    }
    if critique:
        meta.update(draft="", critiques=[])
    waited = time.perf_counter()
    state.wait_for("models")  # after a start, the embedder may still be loading (a spinner)
    meta["warm_up_wait_s"] = round(time.perf_counter() - waited, 3)
    view = LiveView(mode)
    started, asked_epoch = time.perf_counter(), time.time()
    clock: dict[str, float] = {}

    def tokens() -> Iterator[str]:
        chunks = state.service().stream(
            question,
            history=history,
            mode=mode,
            db_url=conversation.db_url,
            tables=list(conversation.tables),
            user=user,
            critique=critique,
        )
        for chunk in chunks:
            for key, value in chunk.items():
                if key == "answer":
                    if not clock:
                        clock.update(first=time.perf_counter(), epoch=time.time())
                        view.answering(meta.get("draft", ""), meta.get("critiques", []))
                    yield value
                else:
                    _absorb(meta, view, key, value)

    try:
        with view.body:
            text = st.write_stream(tokens())
    except Exception as exc:  # the question is already stored; say what to do
        view.failed()
        errors.show(exc, action="answering")
        return None
    text = text if isinstance(text, str) else "".join(map(str, text))
    view.body.markdown(render.with_citation_badges(text, len(meta["sources"])) or "_(no answer)_")
    with view.below:
        render.not_grounded(meta)
        render.sources(meta["sources"], meta["cited"])
    meta["model"] = state.model_name()
    meta["seconds"] = round(time.perf_counter() - started, 3)
    meta["asked_epoch"] = asked_epoch
    if clock:
        meta["first_token_s"] = round(clock["first"] - started, 3)
        meta["first_token_epoch"] = clock["epoch"]
    if "draft" in meta:
        meta["draft"] = meta["draft"].strip()
    return Answer(text=text.strip(), meta=meta)


def _absorb(meta: dict[str, Any], view: LiveView, key: str, value: Any) -> None:
    """Keep a non-answer chunk and draw it if it has a live view."""
    if key == "tool_call":
        meta["tool_calls"].append(value)
        view.tool_call(value)
    elif key == "draft":
        meta["draft"] = meta.get("draft", "") + value
        view.draft(meta["draft"])
    elif key == "critiques":
        meta.setdefault("critiques", []).extend(value)
        view.checks(meta.get("draft", ""), meta["critiques"])
    elif key == "route":
        meta["route"] = value
        view.route(value, str(meta.get("mode")))
    elif key == "mode":
        meta["mode"] = value
        view.route(meta.get("route") or {}, str(value))
    elif key == "question":
        meta["standalone_question"] = value
    else:
        meta[key] = value
