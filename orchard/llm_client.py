"""The model client: ``ChatOpenAI`` that retries a call or stream failing before its first token.

Behind a load balancer (haproxy in front of llama.cpp servers, a router in front of vLLM
replicas), a model server can die between two requests or while it reads a prompt. The request
then fails before the user has seen any text — connection refused or reset, a 5xx from the
balancer (no healthy server yet), a timeout, or a stream that ends before its first token — and
asking again reaches a live server. :class:`RetryingChatOpenAI` does that, ``retries`` times
(``ORCHARD_LLM_FIRST_TOKEN_RETRIES``, default 1), then raises :class:`ModelServerFailed`, which
says which URL failed, how, that it was retried, and what to do.

A stream that fails *after* text was streamed is never retried: the user has read the start of
the answer, and a second answer would not continue it. It raises :class:`ModelStreamBroken`
(the text so far is incomplete; ask again).

Why a subclass and not a LangChain wrapper: ``Runnable.with_retry`` (``RunnableRetry``,
langchain-core 1.8) retries ``invoke`` only — its ``stream`` is the plain binding's, and
``with_fallbacks([llm])`` does retry a stream only before its first chunk, but it is not a chat
model (``create_agent`` calls ``bind_tools`` on a ``BaseChatModel``), ``generate(..., n=)``
(best-of-n) bypasses it, an empty role-only first chunk counts as "first", and it re-raises the
raw ``httpx`` error. Subclassing keeps everything ChatOpenAI does (``bind``, ``bind_tools``,
``with_structured_output``, ``generate(n=)``, callbacks) and adds the retry to its four entry
points (``_stream``, ``_astream``, ``_generate``, ``_agenerate``).

The openai SDK's own retry (``max_retries``) only covers the request, not a stream that breaks
before its first token: the client is built with ``max_retries=0`` so that this is the one retry
and the error can say how often it retried.

Example::

    >>> llm = RetryingChatOpenAI(base_url="http://127.0.0.1:8300/v1", model="m", api_key="x",
    ...                          first_token_retries=1, max_retries=0)  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, TypeVar

from langchain_openai import ChatOpenAI

from orchard.errors import ModelServerUnavailable, OrchardError

log = logging.getLogger("orchard.llm_client")

T = TypeVar("T")
#: HTTP statuses worth asking again: the server (or the balancer in front of it) had a problem.
RETRYABLE_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})
#: Pause before a retry: long enough for haproxy to mark a dead server down on a refused
#: connection (it redispatches at once), short against a first token of ~1-6 s.
RETRY_PAUSE_S = 0.25


class ModelServerFailed(ModelServerUnavailable):
    """The model endpoint failed before the first token, on every try."""

    def __init__(self, base_url: str, error: BaseException, *, tries: int) -> None:
        OrchardError.__init__(
            self,
            f"the model server at {base_url} failed before answering ({describe(error)}), "
            f"{_tried(tries)} — check that the model servers behind {base_url} are running "
            "(`orchard status`; behind a load balancer: its health page), or point ORCHARD_LLM_BASE_URL "
            "at a running OpenAI-compatible server (`orchard serve`)",
        )
        self.base_url = base_url
        self.tries = tries


class ModelStreamBroken(ModelServerUnavailable):
    """The model endpoint broke off a stream after text was sent (never retried)."""

    def __init__(self, base_url: str, error: BaseException, *, chunks: int) -> None:
        OrchardError.__init__(
            self,
            f"the model server at {base_url} broke off the answer after {chunks} streamed chunk(s) "
            f"({describe(error)}) — the text so far is incomplete and was not retried because it was "
            "already shown: ask again",
        )
        self.base_url = base_url
        self.chunks = chunks


def describe(error: BaseException) -> str:
    """``"ConnectError: [Errno 111] Connection refused"``, ``"HTTP 503: ..."`` (one line, short)."""
    status = getattr(error, "status_code", None)
    text = " ".join(str(error).split())[:200]
    root = _root_cause(error)
    if root is not error:  # openai's "Connection error." hides httpx's "[Errno 111] Connection refused"
        text = f"{text} ({describe(root)})" if text else describe(root)
    if status is not None:
        return f"HTTP {status}: {text}" if text else f"HTTP {status}"
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _root_cause(error: BaseException) -> BaseException:
    seen = {id(error)}
    while (cause := error.__cause__ or error.__context__) is not None and id(cause) not in seen:
        seen.add(id(cause))
        error = cause
    return error


def _tried(tries: int) -> str:
    retries = tries - 1
    if retries <= 0:
        return "not retried (ORCHARD_LLM_FIRST_TOKEN_RETRIES=0)"
    return "retried once" if retries == 1 else f"retried {retries} times"


def is_retryable(error: BaseException) -> bool:
    """A failure another try may not have: the connection, a timeout, a 5xx/429, a cut stream."""
    import httpx
    import openai

    if isinstance(error, openai.APIStatusError):
        return error.status_code in RETRYABLE_STATUS
    if isinstance(error, openai.APIConnectionError | httpx.TransportError | ConnectionError | TimeoutError):
        return True  # APITimeoutError is an APIConnectionError; RemoteProtocolError a TransportError
    cause = error.__cause__  # langchain-openai re-raises some API errors as its own
    return cause is not None and cause is not error and is_retryable(cause)


def has_text(chunk: Any) -> bool:
    """Did this generation chunk give the user something: text, or a tool call?"""
    message = getattr(chunk, "message", None)
    return bool(getattr(chunk, "text", "") or getattr(message, "tool_call_chunks", None) or getattr(message, "tool_calls", None))


# --- the retry, for any stream or call -------------------------------------------------------------


def retry_stream(start: Callable[[], Iterator[T]], *, retries: int, base_url: str,
                 pause: float | None = None) -> Iterator[T]:  # fmt: skip
    """The chunks of ``start()``; started again (up to ``retries`` times) when it fails retryably
    before its first chunk with text (:func:`has_text`; the empty chunks before it are held back
    and dropped on a retry). Raises :class:`ModelServerFailed` after the last try,
    :class:`ModelStreamBroken` on a retryable failure after text."""
    tries = 0
    while True:
        tries += 1
        held: list[T] = []
        iterator = start()
        try:
            for chunk in iterator:
                held.append(chunk)
                if has_text(chunk):
                    break
        except Exception as exc:
            _close(iterator)
            if not is_retryable(exc):
                raise
            if tries > retries:
                raise ModelServerFailed(base_url, exc, tries=tries) from exc
            log.warning("model stream failed before its first token at %s (%s): retrying (%d of %d)",
                        base_url, describe(exc), tries, retries)  # fmt: skip
            time.sleep(RETRY_PAUSE_S if pause is None else pause)
            continue
        break
    yield from held
    sent = len(held)
    try:
        for chunk in iterator:
            yield chunk
            sent += 1
    except Exception as exc:
        if is_retryable(exc):
            raise ModelStreamBroken(base_url, exc, chunks=sent) from exc
        raise


async def aretry_stream(start: Callable[[], AsyncIterator[T]], *, retries: int, base_url: str,
                        pause: float | None = None) -> AsyncIterator[T]:  # fmt: skip
    """:func:`retry_stream` for an async stream."""
    tries = 0
    while True:
        tries += 1
        held: list[T] = []
        iterator = start()
        try:
            async for chunk in iterator:
                held.append(chunk)
                if has_text(chunk):
                    break
        except Exception as exc:
            await _aclose(iterator)
            if not is_retryable(exc):
                raise
            if tries > retries:
                raise ModelServerFailed(base_url, exc, tries=tries) from exc
            log.warning("model stream failed before its first token at %s (%s): retrying (%d of %d)",
                        base_url, describe(exc), tries, retries)  # fmt: skip
            await asyncio.sleep(RETRY_PAUSE_S if pause is None else pause)
            continue
        break
    for chunk in held:
        yield chunk
    sent = len(held)
    try:
        async for chunk in iterator:
            yield chunk
            sent += 1
    except Exception as exc:
        if is_retryable(exc):
            raise ModelStreamBroken(base_url, exc, chunks=sent) from exc
        raise


def retry_call(call: Callable[[], T], *, retries: int, base_url: str, pause: float | None = None) -> T:
    """``call()``, again (up to ``retries`` times) when it fails retryably (nothing was shown)."""
    tries = 0
    while True:
        tries += 1
        try:
            return call()
        except Exception as exc:
            if not is_retryable(exc):
                raise
            if tries > retries:
                raise ModelServerFailed(base_url, exc, tries=tries) from exc
            log.warning("model call failed at %s (%s): retrying (%d of %d)", base_url, describe(exc), tries, retries)
            time.sleep(RETRY_PAUSE_S if pause is None else pause)


async def aretry_call(call: Callable[[], Any], *, retries: int, base_url: str, pause: float | None = None) -> Any:
    """:func:`retry_call` for a coroutine function."""
    tries = 0
    while True:
        tries += 1
        try:
            return await call()
        except Exception as exc:
            if not is_retryable(exc):
                raise
            if tries > retries:
                raise ModelServerFailed(base_url, exc, tries=tries) from exc
            log.warning("model call failed at %s (%s): retrying (%d of %d)", base_url, describe(exc), tries, retries)
            await asyncio.sleep(RETRY_PAUSE_S if pause is None else pause)


def _close(iterator: Any) -> None:
    close = getattr(iterator, "close", None)
    if callable(close):
        try:
            close()
        except Exception:  # a broken stream may fail to close; the retry matters
            log.debug("closing a failed model stream failed", exc_info=True)


async def _aclose(iterator: Any) -> None:
    close = getattr(iterator, "aclose", None)
    if callable(close):
        try:
            await close()
        except Exception:  # as above
            log.debug("closing a failed model stream failed", exc_info=True)


# --- the chat model ----------------------------------------------------------------------------------


class RetryingChatOpenAI(ChatOpenAI):
    """``ChatOpenAI`` whose calls and streams are retried before their first token (module docstring).

    ``first_token_retries``: how often (0: never). Build it with ``max_retries=0``.
    """

    first_token_retries: int = 1

    @property
    def _endpoint(self) -> str:
        return str(self.openai_api_base or "the OpenAI API")

    def _stream(self, *args: Any, **kwargs: Any) -> Iterator[Any]:
        start = lambda: ChatOpenAI._stream(self, *args, **kwargs)  # noqa: E731
        return retry_stream(start, retries=self.first_token_retries, base_url=self._endpoint)

    async def _astream(self, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        start = lambda: ChatOpenAI._astream(self, *args, **kwargs)  # noqa: E731
        async for chunk in aretry_stream(start, retries=self.first_token_retries, base_url=self._endpoint):
            yield chunk

    def _generate(self, *args: Any, **kwargs: Any) -> Any:
        if self.streaming:  # ChatOpenAI's _generate then reads self._stream, which retries
            return ChatOpenAI._generate(self, *args, **kwargs)
        return retry_call(lambda: ChatOpenAI._generate(self, *args, **kwargs), retries=self.first_token_retries,
                          base_url=self._endpoint)  # fmt: skip

    async def _agenerate(self, *args: Any, **kwargs: Any) -> Any:
        if self.streaming:
            return await ChatOpenAI._agenerate(self, *args, **kwargs)
        return await aretry_call(lambda: ChatOpenAI._agenerate(self, *args, **kwargs), retries=self.first_token_retries,
                                 base_url=self._endpoint)  # fmt: skip
