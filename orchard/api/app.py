"""The HTTP API's app factory: :func:`create_app` over an :class:`~orchard.usecases.Orchard`.

Example::

    >>> from orchard.usecases import build_orchard
    >>> app = create_app(build_orchard())  # doctest: +SKIP
    >>> # uvicorn.run(app, host="127.0.0.1", port=8400) — or `orchard api`
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from fastapi import FastAPI

from orchard.api.auth import KeyAuth, is_loopback_host
from orchard.api.errors import install_error_handlers
from orchard.api.limits import BodyLimit
from orchard.api.routes_api import router as api_router
from orchard.api.routes_openai import router as openai_router

DESCRIPTION = """\
Orchard's answers over your documents, for any OpenAI client, and Orchard's own routes.

* `POST /v1/chat/completions` — `model` picks the mode: `orchard-auto`, `orchard-rag`
  (from the documents, citing `[n]`), `orchard-agent` (tools), `orchard-chat`. Streams with
  `stream: true`. The answer ends with its cited sources; the response (streamed: its last
  chunk) carries an extra field `orchard`: `sources`, `cited`, `grounded`, `message_id`,
  `conversation_id`, `tool_calls`. Each request is a stored conversation turn — continue a
  conversation with `"orchard": {"conversation_id": ...}` or the `X-Orchard-Conversation-Id` header.
* `/api/...` — documents (upload, list, delete), search, your conversations, feedback, health.

Authentication: `Authorization: Bearer <key>` (`orchard keys create --name NAME`; in team mode
each person makes their own in the app, Settings → API keys). Served on loopback with no keys, the
API is open (personal mode); in team mode (`ORCHARD_AUTH=oidc`) every request needs a key, loopback
included. Errors are OpenAI error objects.
"""


def create_app(orchard: Any, *, host: str = "127.0.0.1", max_streams: int = 32) -> FastAPI:
    """The FastAPI app over ``orchard``'s use cases (documented at ``/docs``).

    Args:
        orchard: the use cases (:func:`orchard.usecases.build_orchard`).
        host: the interface the app is served on: without API keys it is open only on loopback
            (and never in team mode).
        max_streams: answers computed at once (each holds a worker thread; the model server
            queues what it cannot run in parallel).
    """
    settings = orchard.settings
    executor = ThreadPoolExecutor(max_workers=max_streams, thread_name_prefix="orchard-answer")

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            executor.shutdown(wait=False, cancel_futures=True)

    from orchard import __version__

    app = FastAPI(title="Orchard API", version=__version__, description=DESCRIPTION, lifespan=lifespan)
    app.state.orchard = orchard
    app.state.ready = threading.Event()  # set by `serve` once warmed up; /api/health says "starting" until then
    app.state.ready.set()
    app.state.executor = executor
    install_error_handlers(app)
    app.include_router(openai_router)
    app.include_router(api_router)
    # Added last = outermost: the key is checked before the body limit, before any body is read.
    app.add_middleware(BodyLimit, max_bytes=int(settings.api_max_body_mb * 1_000_000))
    app.add_middleware(KeyAuth, keys=orchard.keys, default_user=settings.default_user, personal=is_loopback_host(host),
                       team=bool(getattr(settings, "team_mode", False)))  # fmt: skip
    return app
