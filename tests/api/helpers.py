"""Helpers: serve an app with a real uvicorn on a free loopback port (in a thread), request bodies, SSE."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

LOCAL = "http://127.0.0.1"  # the API served on loopback answers only requests to a loopback host


@contextlib.contextmanager
def serving(app: Any, *, timeout: float = 10.0) -> Iterator[str]:
    """The base URL (``http://127.0.0.1:PORT``) of ``app`` served until the block ends."""
    import socket

    import uvicorn

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", timeout_graceful_shutdown=2))
    thread = threading.Thread(target=server.run, name="uvicorn-test", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"uvicorn did not start on port {port}")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def ask(model: str, question: str, **body: Any) -> dict[str, Any]:
    """A chat completion request body with one user message."""
    return {"model": model, "messages": [{"role": "user", "content": question}], **body}


def sse_events(text: str) -> list[Any]:
    """The ``data:`` payloads of an event stream (JSON decoded; ``[DONE]`` as the string)."""
    out = []
    for line in text.splitlines():
        if line.startswith("data: "):
            payload = line[len("data: ") :]
            out.append(payload if payload == "[DONE]" else json.loads(payload))
    return out
