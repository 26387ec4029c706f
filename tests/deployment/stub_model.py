"""A fast, deterministic OpenAI-compatible model server for load tests: ``python -m
tests.deployment.stub_model --port 8301``.

It answers a RAG prompt (Orchard's ``rag_answer``: numbered ``[1] (source — section)`` passages in
the system message) by quoting the first sentences of passage [1] followed by ``[1]``, so
Orchard's answer checks (cited, grounded, the quote supported by its passage) pass; anything else
gets the last user message back. Streams word by word (``--token-delay``) after
``--first-token-delay``; ``GET /v1/models`` lists ``--model``. Every reply names the server
(``--name``) in the response's ``system_fingerprint``, so a test sees which replica answered.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse

PASSAGE = re.compile(r"^\[1\] \([^\n]*\)\n(?P<text>.*?)(?=\n\n\[2\] \(|\Z)", re.S | re.M)
SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def answer_for(messages: list[dict[str, Any]]) -> str:
    """The deterministic reply to ``messages`` (module docstring)."""
    system = "\n".join(str(m.get("content") or "") for m in messages if m.get("role") == "system")
    found = PASSAGE.search(system)
    if found:
        lines = [line for line in found.group("text").strip().splitlines() if line.strip()]
        body = " ".join(lines[1:] if len(lines) > 1 else lines)  # a passage starts with its title line
        sentences = [s for s in SENTENCE_END.split(body) if s.strip()]
        quote = " ".join(sentences[:2]).strip().rstrip(".") if sentences else body.strip()
        return f"{quote[:400]} [1]."
    users = [m for m in messages if m.get("role") == "user"]
    return str(users[-1].get("content") or "OK") if users else "OK"


def create_app(*, model: str, name: str, first_token_delay: float, token_delay: float) -> FastAPI:
    app = FastAPI()
    served = {"requests": 0, "active": 0}

    @app.get("/v1/models")
    def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": model, "object": "model", "owned_by": name}]}

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {"status": "ok", "name": name, "requests": served["requests"], "active": served["active"]}

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Any:
        body = await request.json()
        served["requests"] += 1
        text = answer_for(body.get("messages") or [])
        created = int(time.time())
        base = {"id": f"stub-{served['requests']}", "created": created, "model": body.get("model") or model,
                "system_fingerprint": name}  # fmt: skip
        n = int(body.get("n") or 1)
        if not body.get("stream"):
            await asyncio.sleep(first_token_delay + token_delay * len(text.split()))
            choices = [{"index": i, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"} for i in range(n)]
            usage = {"prompt_tokens": 1, "completion_tokens": len(text.split()), "total_tokens": 1 + len(text.split())}
            return JSONResponse({**base, "object": "chat.completion", "choices": choices, "usage": usage})

        async def events() -> AsyncIterator[str]:
            def chunk(delta: dict[str, Any], finish: str | None = None) -> str:
                payload = {**base, "object": "chat.completion.chunk",
                           "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}  # fmt: skip
                return f"data: {json.dumps(payload)}\n\n"

            served["active"] += 1
            try:
                await asyncio.sleep(first_token_delay)
                yield chunk({"role": "assistant", "content": ""})
                words = text.split(" ")
                for i, word in enumerate(words):
                    yield chunk({"content": word if i == 0 else " " + word})
                    await asyncio.sleep(token_delay)
                yield chunk({}, "stop")
                yield "data: [DONE]\n\n"
            finally:
                served["active"] -= 1

        return StreamingResponse(events(), media_type="text/event-stream")

    return app


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--model", default="stub-model")
    parser.add_argument("--name", default="stub")
    parser.add_argument("--first-token-delay", type=float, default=0.05, help="seconds before the first token")
    parser.add_argument("--token-delay", type=float, default=0.005, help="seconds between tokens")
    args = parser.parse_args(argv)
    app = create_app(model=args.model, name=args.name, first_token_delay=args.first_token_delay, token_delay=args.token_delay)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
