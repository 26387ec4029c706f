"""OpenAI-compatible routes: ``GET /v1/models``, ``POST /v1/chat/completions``.

Each completion is a stored conversation turn
(:meth:`~orchard.usecases.conversations.Conversations.ask`): the question is stored first, the
answer when it is complete — a failed or interrupted answer leaves the question and no answer.
A new conversation is created per request unless the client names one of its own
(``orchard.conversation_id`` in the body, or the ``X-Orchard-Conversation-Id`` header); every
response names the conversation in that header.

Streaming, failures before the first event (model server down, no documents) get their status
code; a failure mid-stream arrives as a last ``data: {"error": ...}`` event.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Depends, Header, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse, Response

from orchard.api.auth import caller
from orchard.api.bridge import EventStreamResponse, ThreadedEvents
from orchard.api.errors import ApiError, api_error
from orchard.api.openai_wire import MODELS, SSE_DONE, CompletionWriter, model_card, model_list, sse
from orchard.api.schemas import ChatCompletionRequest, OrchardOptions
from orchard.errors import EmptyStore

router = APIRouter(tags=["OpenAI-compatible"])
CONVERSATION_HEADER = "X-Orchard-Conversation-Id"


@router.get("/v1/models", summary="The Orchard modes, as models")
def list_models(_user: str = Depends(caller)) -> dict[str, Any]:
    return model_list()


@router.get("/v1/models/{model}", summary="One model")
def get_model(model: str, _user: str = Depends(caller)) -> dict[str, Any]:
    if model not in MODELS:
        raise _unknown_model(model)
    return model_card(model)


@router.post("/v1/chat/completions", summary="Answer the last user message (streamed with `stream: true`)")
async def chat_completions(
    body: ChatCompletionRequest,
    request: Request,
    user: str = Depends(caller),
    conversation_header: str | None = Header(None, alias=CONVERSATION_HEADER),
) -> Response:
    """OpenAI's chat completion. ``model`` picks the mode (``orchard-rag`` answers from the
    documents with ``[n]`` citations); the answer ends with its cited sources, and the
    response (streamed: its last chunk) carries the ``orchard`` field (sources, cited,
    grounded, message_id, conversation_id, tool_calls, repair). A streamed answer the answer
    checks replace is followed by a marked "Corrected answer" line."""
    mode = MODELS.get(body.model)
    if mode is None:
        raise _unknown_model(body.model)
    question, history = body.question_and_history()
    options = body.orchard or OrchardOptions()
    orchard = request.app.state.orchard
    wanted = options.conversation_id or conversation_header
    conversation_id, stream = await run_in_threadpool(
        _open_turn, orchard, user, mode, wanted, question, history, critique=options.critique
    )
    headers = {CONVERSATION_HEADER: conversation_id}
    writer = CompletionWriter(model=body.model, critique=options.critique)
    executor = request.app.state.executor
    if not body.stream:
        try:
            result = await asyncio.get_running_loop().run_in_executor(executor, stream.result)
        except Exception as exc:  # every failure leaves as an error object
            return api_error(exc).response(headers)
        return JSONResponse(writer.response(result), headers=headers)
    events = ThreadedEvents(stream, executor)
    del stream  # the worker thread holds the only reference: the answer closes there
    try:
        first = await anext(events)
    except StopAsyncIteration:
        first = None
    except Exception as exc:  # before the first event: a proper status code
        await events.aclose()
        return api_error(exc).response(headers)
    return EventStreamResponse(_sse(writer, first, events), headers={**headers, "cache-control": "no-cache"})


async def _sse(writer: CompletionWriter, first: Any, events: ThreadedEvents) -> AsyncIterator[str]:
    async with events:
        yield sse(writer.first())
        try:
            if first is not None:
                for chunk in writer.feed(first):
                    yield sse(chunk)
            async for event in events:
                for chunk in writer.feed(event):
                    yield sse(chunk)
        except Exception as exc:  # mid-stream: the error is the last event
            yield sse(api_error(exc).body())
            return
    yield SSE_DONE


def _open_turn(orchard: Any, user: str, mode: str, conversation_id: str | None, question: str,
               history: list[dict[str, str]], *, critique: bool) -> tuple[str, Any]:  # fmt: skip
    """Store the question in the caller's conversation (a new one by default); its answer stream."""
    if mode == "rag" and orchard.library.count() == 0:
        raise EmptyStore(orchard.library.where)  # refused as a whole: nothing to store
    conversations = orchard.conversations
    if conversation_id:
        conversation = conversations.get(user, conversation_id)  # NotFound for anyone else's
        if conversation.mode != mode:
            conversations.set_mode(user, conversation.id, mode)
        turns = history or None  # only the new question: the stored turns are the history
    else:
        conversation = conversations.create(user, mode=mode)
        turns = history
    return conversation.id, conversations.ask(user, conversation.id, question, history=turns, critique=critique, mode=mode)


def _unknown_model(model: str) -> ApiError:
    msg = f"unknown model {model!r}: choose one of {', '.join(MODELS)} (GET /v1/models)"
    return ApiError(404, msg, "model_not_found", param="model")
