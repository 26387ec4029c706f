"""The OpenAI wire format, in one place: models, completions, stream chunks, SSE lines, errors.

Everything :mod:`orchard.api` sends to an OpenAI client is built here. A completion's text is
Orchard's answer (citing ``[1]``-style) followed, for plain clients, by the cited sources::

    Prune apple trees in late winter [1].

    Sources:
    [1] library/fruit-tree-care.html — Pruning

and the response (or, streaming, the last chunk) carries one extra top-level field, ``orchard``,
with the structured facts: ``sources``, ``cited``, ``grounded``, ``message_id``,
``conversation_id``, ``mode``, ``route``, ``tool_calls`` and ``repair``.

A failed answer replaced by the answer checks (:class:`~orchard.events.AnswerRepaired`: the
model's second try, or a quote from the documents) is the response's content when not streamed.
Streamed, the tokens already sent cannot be taken back: the replacement follows them, after
:data:`CORRECTION_RULE`, as a line a reader of ``content`` alone understands (then the sources
of the replacement)::

    The simplest way to do it is [1].

    ---
    Corrected answer (quoted from the documents; the answer above was empty): Prune apple trees in late winter [1].

Either way ``orchard.repair`` is ``{"kind": "retry"|"extractive", "reason", "original", "answer"}``
(``None`` when nothing was replaced). Nothing streamed yet, the replacement is sent as it is; with
critique on, the draft is what gets repaired, before the answer streams: no correction either.

Example::

    >>> writer = CompletionWriter(model="orchard-chat")
    >>> writer.feed(Token("Hi"))[0]["choices"][0]["delta"]
    {'content': 'Hi'}
    >>> sse({"a": 1})
    'data: {"a": 1}\\n\\n'
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from starlette.responses import JSONResponse

from orchard.events import AnswerEvent, AnswerRepaired, AnswerResult, Done, Token

#: The models a client can ask for, and the Orchard mode each one answers with.
MODELS: dict[str, str] = {
    "orchard-auto": "auto",
    "orchard-rag": "rag",
    "orchard-agent": "agent",
    "orchard-chat": "chat",
}
SSE_DONE = "data: [DONE]\n\n"
#: Between a streamed answer and its replacement (a Markdown rule on a line of its own).
CORRECTION_RULE = "\n\n---\n"
#: The answer checks' detector kinds (:mod:`orchard.chains.answer_checks`), in words.
REPAIR_REASONS = {
    "empty": "was empty",
    "restated": "only restated the question",
    "unsupported": "named something no passage holds",
    "miscited": "cited a passage that does not say it",
    "refused": "refused although the documents hold the answer",
}
#: Orchard's errors say what to do: retrying the same request would only store the question again.
NO_RETRY = {"x-should-retry": "false"}


def model_list(created: int = 0) -> dict[str, Any]:
    """``GET /v1/models``."""
    return {"object": "list", "data": [model_card(name, created) for name in MODELS]}


def model_card(name: str, created: int = 0) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": created, "owned_by": "orchard"}


def sse(data: Any) -> str:
    """One server-sent event carrying ``data`` as JSON."""
    return f"data: {json.dumps(data, ensure_ascii=False)}\n\n"


# --- errors -----------------------------------------------------------------------------------


def error_body(message: str, *, type: str = "invalid_request_error", code: str | None = None,
               param: str | None = None) -> dict[str, Any]:  # fmt: skip
    """An OpenAI error object: ``{"error": {"message", "type", "param", "code"}}``."""
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def error_response(status: int, message: str, *, type: str = "invalid_request_error", code: str | None = None,
                   param: str | None = None, headers: dict[str, str] | None = None) -> JSONResponse:  # fmt: skip
    """The error object as a response with ``status`` (and ``x-should-retry: false``)."""
    return JSONResponse(error_body(message, type=type, code=code, param=param), status_code=status,
                        headers={**NO_RETRY, **(headers or {})})  # fmt: skip


# --- the answer's text and its extra field ------------------------------------------------------


def sources_footer(result: AnswerResult) -> str:
    """The numbered list of the sources the answer cites ('' when it cites none)."""
    by_number = {s.n: s for s in result.sources}
    lines = []
    for n in result.cited:
        source = by_number.get(n)
        if source is not None:
            lines.append(f"[{n}] {source.source}" + (f" — {source.section}" if source.section else ""))
    return "\n\nSources:\n" + "\n".join(lines) if lines else ""


def repair_field(repair: AnswerRepaired | None) -> dict[str, Any] | None:
    """``orchard.repair``: how the answer was replaced, why, the answer that streamed first and
    the replacement (None: not replaced)."""
    if repair is None:
        return None
    return {**repair.as_dict(), "answer": repair.answer}


def correction(repair: AnswerRepaired) -> str:
    """The replacement as streamed after a failed answer: the rule, then a labelled line."""
    kinds = [part.split(":", 1)[0].strip() for part in repair.reason.split("; ")]
    why = ", ".join(dict.fromkeys(REPAIR_REASONS[k] for k in kinds if k in REPAIR_REASONS)) or "failed a check"
    how = "quoted from the documents" if repair.kind == "extractive" else "the model's second answer"
    return f"{CORRECTION_RULE}Corrected answer ({how}; the answer above {why}): {repair.answer.strip()}"


def orchard_field(result: AnswerResult) -> dict[str, Any]:
    """The ``orchard`` field: what a client needs to show sources and to rate the answer."""
    return {
        "sources": [{"n": s.n, "source": s.source, "section": s.section} for s in result.sources],
        "cited": list(result.cited),
        "grounded": bool(result.grounded),  # chat answers are not grounded in the documents
        "message_id": None if result.message_id is None else str(result.message_id),
        "conversation_id": result.conversation_id,
        "mode": result.mode,
        "route": result.route.as_dict() if result.route else None,
        "tool_calls": [call.as_dict() for call in result.tool_calls],
        "repair": repair_field(result.repair),
    }


class CompletionWriter:
    """One completion's wire objects: stream chunks from answer events, or the whole response.

    Args:
        model: the model name the client asked for (echoed back, as OpenAI does).
        critique: the answer is critiqued (a repair then replaces the draft, not streamed text).
    """

    def __init__(self, *, model: str, critique: bool = False) -> None:
        self.model, self.critique = model, critique
        self.id = f"chatcmpl-{uuid.uuid4().hex}"
        self.created = int(time.time())
        self.streamed = False  # has answer text gone out (so a repair must follow it, marked)?

    def chunk(self, delta: dict[str, Any], *, finish_reason: str | None = None, **extra: Any) -> dict[str, Any]:
        """A ``chat.completion.chunk`` with one choice."""
        return {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
            **extra,
        }

    def first(self) -> dict[str, Any]:
        """The opening chunk (the role, as OpenAI sends it)."""
        return self.chunk({"role": "assistant", "content": ""})

    def feed(self, event: AnswerEvent) -> list[dict[str, Any]]:
        """The chunks for one event: a token is text; a repair after streamed text is the
        :func:`correction`; :class:`Done` adds the source list and closes with
        ``finish_reason: "stop"`` and the ``orchard`` field. Other events (sources found, tool
        calls, the draft of a critiqued answer) reach the client through ``orchard``."""
        if isinstance(event, Token):
            self.streamed = self.streamed or bool(event.text.strip())
            return [self.chunk({"content": event.text})]
        if isinstance(event, AnswerRepaired):
            if self.critique:  # the draft was repaired: the answer streams next, nothing to correct
                return []
            text = correction(event) if self.streamed else event.answer
            self.streamed = True
            return [self.chunk({"content": text})]
        if isinstance(event, Done):
            footer = sources_footer(event.result)
            out = [self.chunk({"content": footer})] if footer else []
            return [*out, self.chunk({}, finish_reason="stop", orchard=orchard_field(event.result))]
        return []

    def response(self, result: AnswerResult) -> dict[str, Any]:
        """The whole ``chat.completion`` for a non-streamed request."""
        return {
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": result.answer + sources_footer(result)},
                "logprobs": None,
                "finish_reason": "stop",
            }],
            "usage": None,  # the model server's token counts do not reach Orchard's answer
            "orchard": orchard_field(result),
        }  # fmt: skip
