"""The request body limit (``ORCHARD_API_MAX_BODY_MB``), as ASGI middleware.

A declared ``Content-Length`` over the limit is refused before anything is read; a body that
streams past it (chunked uploads, a lying header) stops being read at the limit. Both answer
413 with an OpenAI error object.
"""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from orchard.api.openai_wire import error_response


class BodyTooLarge(HTTPException):
    """Raised while reading a body past the limit (FastAPI passes HTTP exceptions through)."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request body is over the limit of {limit / 1e6:g} MB — send less at once, "
                              "or raise ORCHARD_API_MAX_BODY_MB")  # fmt: skip


class BodyLimit:
    """Refuse request bodies over ``max_bytes`` with 413.

    Args:
        app: the ASGI app inside.
        max_bytes: the largest body accepted.
    """

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(scope, receive, send)
            return
        received = 0
        started = False

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)
            return message

        async def watched(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited, watched)
        except BodyTooLarge:
            if started:
                raise
            await self._refuse(scope, receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        error = BodyTooLarge(self.max_bytes)
        response = error_response(413, str(error.detail), code="request_too_large", headers={"connection": "close"})
        await response(scope, receive, send)
