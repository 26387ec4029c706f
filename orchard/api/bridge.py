"""A synchronous event stream, iterated in a worker thread, read from asyncio.

:meth:`orchard.usecases.conversations.Conversations.ask` streams an
:class:`~orchard.events.AnswerStream` (storing the answer when it ends); the HTTP API reads it
without blocking the event loop, so many answers stream at once (the model server queues them).
Each stream gets its own thread for its whole life — LangChain's callbacks and the model
client's connection stay in the thread that opened them — and hands its events over through
an :class:`asyncio.Queue`.

Example::

    >>> async def main():  # doctest: +SKIP
    ...     async with ThreadedEvents(iter([1, 2]), executor) as events:
    ...         return [e async for e in events]
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterable
from concurrent.futures import Executor
from typing import Any

from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

_END = object()


class ThreadedEvents:
    """Async iterator over ``events`` (a sync iterable) run in ``executor``.

    An exception raised while iterating is raised here, at that point of the stream.
    :meth:`aclose` stops the worker at the next event and closes the sync iterator there (an
    answer stopped that way never reaches :class:`~orchard.events.Done`, so it is not stored).
    """

    def __init__(self, events: Iterable[Any], executor: Executor) -> None:
        self._loop = asyncio.get_running_loop()
        self._queue: asyncio.Queue[tuple[Any, BaseException | None]] = asyncio.Queue()
        self._stop = threading.Event()
        self._ended = False
        self._worker = self._loop.run_in_executor(executor, self._work, events)

    def _put(self, item: Any, error: BaseException | None = None) -> None:
        try:
            self._loop.call_soon_threadsafe(self._queue.put_nowait, (item, error))
        except RuntimeError:  # the loop is gone (the server stopped): nobody is listening
            self._stop.set()

    def _work(self, events: Iterable[Any]) -> None:
        iterator = iter(events)
        try:
            for event in iterator:
                if self._stop.is_set():
                    break
                self._put(event)
        except BaseException as exc:  # handed to the reader, raised there
            self._put(None, exc)
            return
        finally:
            close = getattr(iterator, "close", None)
            if close is not None:
                close()
        self._put(_END)

    def __aiter__(self) -> ThreadedEvents:
        return self

    async def __anext__(self) -> Any:
        if self._ended:
            raise StopAsyncIteration
        item, error = await self._queue.get()
        if error is not None:
            self._ended = True
            raise error
        if item is _END:
            self._ended = True
            raise StopAsyncIteration
        return item

    async def aclose(self) -> None:
        """Stop the worker (at its next event) without waiting for it."""
        self._stop.set()
        self._ended = True

    async def __aenter__(self) -> ThreadedEvents:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.aclose()


class EventStreamResponse(StreamingResponse):
    """``text/event-stream`` whose body generator is closed when the response ends, however it
    ends (a client that disconnects stops the answer at once, not when the generator is collected)."""

    media_type = "text/event-stream"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            close = getattr(self.body_iterator, "aclose", None)
            if close is not None:
                await close()
