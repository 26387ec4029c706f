"""The model client's retry before the first token (orchard/llm_client.py), against a scripted
OpenAI-compatible HTTP server on loopback: every failure is a real one on the wire (a refused
port, a reset connection, a 503, a chunked stream cut before or after its first token)."""

from __future__ import annotations

import json
import socket
import struct
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

pytestmark = pytest.mark.enable_socket

# --- a scripted server -------------------------------------------------------------------------------


def _chunk(content: str | None, *, role: bool = False, finish: str | None = None) -> bytes:
    delta: dict[str, Any] = {"role": "assistant"} if role else {}
    if content is not None:
        delta["content"] = content
    body = {"id": "c1", "object": "chat.completion.chunk", "created": 0, "model": "m",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}  # fmt: skip
    return f"data: {json.dumps(body)}\n\n".encode()


def _completion(content: str, n: int = 1) -> bytes:
    choices = [{"index": i, "message": {"role": "assistant", "content": f"{content}{'' if i == 0 else i}"},
                "finish_reason": "stop"} for i in range(n)]  # fmt: skip
    return json.dumps({"id": "c1", "object": "chat.completion", "created": 0, "model": "m", "choices": choices}).encode()


class Script:
    """What the server does for each request, in order: ``ok``, ``503``, ``reset`` (RST before any
    byte), ``cut-before`` (headers and a role-only chunk, then the connection drops), ``cut-after``
    (two text chunks, then it drops)."""

    def __init__(self, *actions: str) -> None:
        self.actions = list(actions)
        self.requests: list[dict[str, Any]] = []
        self.not_found = 0
        self.lock = threading.Lock()

    def next(self, body: dict[str, Any]) -> str:
        with self.lock:
            self.requests.append(body)
            return self.actions.pop(0) if self.actions else "ok"


def _handler(script: Script) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["content-length"])))
            if self.path != "/v1/chat/completions":
                script.not_found += 1
                self.send_response(404)
                self.send_header("content-length", "0")
                self.end_headers()
                return
            action = script.next(body)
            if action == "reset":
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.rfile.close()
                self.wfile.close()
                self.connection.close()  # the last reference: the kernel sends RST
                self.close_connection = True
                return
            if action == "503":
                payload = b'{"error": {"message": "no server is available to handle this request"}}'
                self.send_response(503)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
                return
            if not body.get("stream"):
                payload = _completion("Prune in late winter [1].", n=int(body.get("n") or 1))
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
                return
            self.send_response(200)
            self.send_header("content-type", "text/event-stream")
            self.send_header("transfer-encoding", "chunked")
            self.end_headers()
            events = [_chunk("", role=True)]
            if action in ("ok", "cut-after"):
                events += [_chunk("Prune in "), _chunk("late winter [1].")]
            if action == "ok":
                events += [_chunk(None, finish="stop"), b"data: [DONE]\n\n"]
            for event in events:
                self.wfile.write(f"{len(event):x}\r\n".encode() + event + b"\r\n")
                self.wfile.flush()
            if action == "ok":
                self.wfile.write(b"0\r\n\r\n")
            else:  # the server dies mid-body: an incomplete chunked read for the client
                self.connection.shutdown(socket.SHUT_RDWR)
                self.close_connection = True

    return Handler


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # the scripted failures break connections on purpose


class ScriptedServer:
    """The scripted server on a port, started now or later (:meth:`start`)."""

    def __init__(self, script: Script, port: int | None = None) -> None:
        self.script, self.port = script, port or _free_port()
        self.httpd: ThreadingHTTPServer | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> None:
        self.httpd = QuietServer(("127.0.0.1", self.port), _handler(self.script))
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def stop(self) -> None:
        if self.httpd is not None:
            self.httpd.shutdown()
            self.httpd.server_close()


@pytest.fixture
def serve() -> Iterator[Any]:
    servers: list[ScriptedServer] = []

    def start(*actions: str, started: bool = True) -> ScriptedServer:
        server = ScriptedServer(Script(*actions))
        if started:
            server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def client(base_url: str, retries: int = 1, **kwargs: Any) -> Any:
    import httpx

    from orchard.llm_client import RetryingChatOpenAI

    return RetryingChatOpenAI(model="m", base_url=base_url, api_key="x", max_retries=0, timeout=10, first_token_retries=retries,
                              http_client=httpx.Client(trust_env=False), http_async_client=httpx.AsyncClient(trust_env=False),
                              **kwargs)  # fmt: skip


@pytest.fixture(autouse=True)
def no_pause(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("orchard.llm_client.RETRY_PAUSE_S", 0.0)


def _text(chunks: list[Any]) -> str:
    return "".join(str(c.content) for c in chunks)


# --- streams -----------------------------------------------------------------------------------------


def test_a_refused_connection_then_a_server_gives_one_answer(serve: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing listens at first (connection refused); the server is up when the retry comes."""
    server = serve(started=False)
    monkeypatch.setattr("orchard.llm_client.time.sleep", lambda _s: server.start())  # it comes up during the pause
    chunks = list(client(server.base_url).stream("When are apple trees pruned?"))
    assert _text(chunks) == "Prune in late winter [1]."
    assert len(server.script.requests) == 1  # the refused try never reached it


@pytest.mark.parametrize("failure", ["reset", "503", "cut-before"])
def test_a_stream_failing_before_its_first_token_is_retried_once(serve: Any, failure: str) -> None:
    server = serve(failure, "ok")
    chunks = list(client(server.base_url).stream("When are apple trees pruned?"))
    assert _text(chunks) == "Prune in late winter [1]."  # once: the failed try's empty chunk was dropped
    assert len(server.script.requests) == 2


def test_failing_twice_raises_a_clear_error(serve: Any) -> None:
    from orchard.errors import ModelServerUnavailable, OrchardError

    server = serve("503", "503", "ok")
    with pytest.raises(ModelServerUnavailable) as raised:
        list(client(server.base_url).stream("When are apple trees pruned?"))
    message = str(raised.value)
    assert isinstance(raised.value, OrchardError)
    assert server.base_url in message and "HTTP 503" in message and "retried once" in message
    assert "ORCHARD_LLM_BASE_URL" in message  # what to do
    assert len(server.script.requests) == 2


def test_a_refused_port_names_the_url_and_the_refusal() -> None:
    from orchard.errors import ModelServerUnavailable

    base_url = f"http://127.0.0.1:{_free_port()}/v1"
    with pytest.raises(ModelServerUnavailable) as raised:
        client(base_url, retries=2).invoke("hi")
    assert base_url in str(raised.value) and "retried 2 times" in str(raised.value)
    assert "APIConnectionError" in str(raised.value) or "refused" in str(raised.value).lower()


def test_a_stream_failing_after_its_first_token_is_not_retried(serve: Any) -> None:
    from orchard.llm_client import ModelStreamBroken

    server = serve("cut-after", "ok")
    seen: list[str] = []
    with pytest.raises(ModelStreamBroken) as raised:
        for chunk in client(server.base_url).stream("When are apple trees pruned?"):
            seen.append(str(chunk.content))
    assert "".join(seen) == "Prune in late winter [1]."  # what was streamed before the cut, once
    assert len(server.script.requests) == 1  # never asked again
    assert "not retried" in str(raised.value) and server.base_url in str(raised.value)


def test_no_retries_configured_fails_at_once(serve: Any) -> None:
    from orchard.errors import ModelServerUnavailable

    server = serve("reset", "ok")
    with pytest.raises(ModelServerUnavailable, match="not retried"):
        list(client(server.base_url, retries=0).stream("hi"))
    assert len(server.script.requests) == 1


def test_a_bad_request_is_not_retried(serve: Any) -> None:
    """A 4xx is the request's fault: asking again would fail the same way."""
    import openai

    server = serve()
    with pytest.raises(openai.NotFoundError):
        client(server.base_url.replace("/v1", "/nowhere")).invoke("hi")
    assert server.script.not_found == 1


async def test_async_stream_is_retried_before_its_first_token(serve: Any) -> None:
    server = serve("cut-before", "ok")
    chunks = [c async for c in client(server.base_url).astream("When are apple trees pruned?")]
    assert _text(chunks) == "Prune in late winter [1]."
    assert len(server.script.requests) == 2


async def test_async_stream_cut_after_text_raises(serve: Any) -> None:
    from orchard.llm_client import ModelStreamBroken

    server = serve("cut-after")
    with pytest.raises(ModelStreamBroken):
        _ = [c async for c in client(server.base_url).astream("hi")]
    assert len(server.script.requests) == 1


# --- calls: invoke, bind, generate(n=), with the retry --------------------------------------------------


def test_invoke_is_retried_and_binding_keeps_the_retry(serve: Any) -> None:
    server = serve("reset", "ok")
    reply = client(server.base_url).bind(temperature=0, max_tokens=40).invoke("hi")
    assert reply.content == "Prune in late winter [1]."
    assert server.script.requests[-1]["temperature"] == 0


async def test_ainvoke_is_retried(serve: Any) -> None:
    server = serve("503", "ok")
    reply = await client(server.base_url).ainvoke("hi")
    assert reply.content == "Prune in late winter [1]."
    assert len(server.script.requests) == 2


def test_generate_with_n_is_retried_and_returns_n_candidates(serve: Any) -> None:
    """best-of-n on vLLM asks once with ``n`` (chains/best_of.py)."""
    from langchain_core.messages import HumanMessage

    server = serve("503", "ok")
    result = client(server.base_url).generate([[HumanMessage("hi")]], n=3)
    assert len(result.generations[0]) == 3
    assert server.script.requests[-1]["n"] == 3


def test_tools_bind_and_the_model_stays_a_chat_model(serve: Any) -> None:
    from langchain_core.language_models import BaseChatModel
    from langchain_core.tools import tool

    @tool
    def search_docs(query: str) -> str:
        """Search the documents."""
        return query

    server = serve("reset", "ok")
    llm = client(server.base_url)
    assert isinstance(llm, BaseChatModel) and hasattr(llm, "temperature")  # what create_agent and the chains check
    reply = llm.bind_tools([search_docs]).invoke("hi")
    assert reply.content == "Prune in late winter [1]."
    assert server.script.requests[-1]["tools"][0]["function"]["name"] == "search_docs"


# --- the retry on its own, over scripted iterators (no HTTP) -------------------------------------------


def test_retry_stream_passes_other_errors_through_untouched() -> None:
    from orchard.llm_client import retry_stream

    calls = []

    def start() -> Iterator[Any]:
        calls.append(1)
        raise ValueError("a bug, not the network")
        yield  # pragma: no cover

    with pytest.raises(ValueError, match="a bug"):
        list(retry_stream(start, retries=3, base_url="http://x/v1", pause=0))
    assert len(calls) == 1


def test_is_retryable_sorts_failures() -> None:
    import httpx
    import openai

    from orchard.llm_client import is_retryable

    request = httpx.Request("POST", "http://x/v1/chat/completions")

    def status(code: int) -> openai.APIStatusError:
        return openai.APIStatusError("x", response=httpx.Response(code, request=request), body=None)

    assert is_retryable(httpx.RemoteProtocolError("incomplete chunked read"))
    assert is_retryable(openai.APIConnectionError(request=request))
    assert is_retryable(openai.APITimeoutError(request=request))
    assert is_retryable(status(503)) and is_retryable(status(502)) and is_retryable(status(429))
    assert not is_retryable(status(400)) and not is_retryable(status(404)) and not is_retryable(status(401))
    assert not is_retryable(ValueError("x"))
