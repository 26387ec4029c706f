"""The chat service: Orchard's composition root.

This is the only place that reads :class:`~orchard.config.Settings` and builds clients (the model
client, the Chroma client, the embedder); everything below receives objects. The UI and the CLI
talk to a :class:`ChatService` and nothing else. Heavy objects are built lazily, once per service.

Example::

    >>> service = ChatService(Settings())  # doctest: +SKIP
    >>> for chunk in service.stream("How do I shuffle a list?"):  # doctest: +SKIP
    ...     print(chunk.get("answer", ""), end="")
"""

from __future__ import annotations

import fcntl
import threading
import time
from collections.abc import Iterator
from functools import cached_property
from pathlib import Path
from typing import Any

from orchard.config import Settings
from orchard.errors import EmptyStore, ModelServerUnavailable, OrchardError
from orchard.server import is_loopback

MODES = ("rag", "chat")


def merge_chunks(chunks: Iterator[dict[str, Any]]) -> dict[str, Any]:
    """Fold streamed chunks into one result (strings concatenate, other values are set)."""
    result: dict[str, Any] = {}
    for chunk in chunks:
        for key, value in chunk.items():
            if key == "answer" and key in result:
                result[key] += value
            else:
                result[key] = value
    return result


class ChatService:
    """Everything the UI and the CLI need, built from one :class:`Settings`.

    Args:
        settings: the configuration.
        notify: called with a one-line message when the service does something the user should
            know about (for example starting the embedded model server).
    """

    def __init__(self, settings: Settings, *, notify: Any = None) -> None:
        self.settings = settings
        self.notify = notify or (lambda message: None)
        self._lock = threading.RLock()

    # --- building blocks (lazy, once) ---------------------------------------------------------

    @cached_property
    def embeddings(self) -> Any:
        from orchard.embeddings import MiniLMEmbeddings

        return MiniLMEmbeddings()

    @cached_property
    def store(self) -> Any:
        from orchard.store import DocumentStore, make_chroma_client

        with self._lock:
            s = self.settings
            if s.chroma_url:
                client, where = make_chroma_client(url=s.chroma_url), s.chroma_url
            else:
                client, where = make_chroma_client(path=s.store_path), str(s.store_path)
            return DocumentStore(client=client, collection=s.collection, embeddings=self.embeddings, where=where)

    @cached_property
    def retriever(self) -> Any:
        from orchard.retriever import HybridRetriever

        return HybridRetriever(store=self.store, k=self.settings.top_k, dense_weight=self.settings.dense_weight)

    @cached_property
    def llm(self) -> Any:
        from langchain_openai import ChatOpenAI

        s = self.settings
        extra = {}
        if is_loopback(s.llm_base_url):  # a proxy from the environment must not see local traffic
            import httpx

            extra = {"http_client": httpx.Client(trust_env=False), "http_async_client": httpx.AsyncClient(trust_env=False)}
        return ChatOpenAI(
            **extra,
            model=s.llm_model,
            base_url=s.llm_base_url,
            api_key=s.llm_api_key,
            temperature=s.llm_temperature,
            max_tokens=s.llm_max_tokens,
            # langchain-openai sends the limit as `max_completion_tokens`, which llama-cpp-python's
            # server ignores (measured: 237 tokens for a limit of 128); `max_tokens` works for both.
            extra_body={"max_tokens": s.llm_max_tokens},
            timeout=s.llm_timeout,
            max_retries=1,
            stream_usage=False,
        )

    def chain(self, mode: str) -> Any:
        from chains.chat import build_chat_chain
        from chains.rag import build_rag_chain
        from orchard.prompts import load_prompt

        user_dir = self.settings.prompts_dir
        if mode == "chat":
            return build_chat_chain(llm=self.llm, prompt=load_prompt("chat", user_dir=user_dir))
        if mode == "rag":
            return build_rag_chain(
                llm=self.llm,
                retriever=self.retriever,
                answer_prompt=load_prompt("rag_answer", user_dir=user_dir),
                condense_prompt=load_prompt("condense_question", user_dir=user_dir),
                min_relevance=self.settings.min_relevance,
            )
        msg = f"unknown mode {mode!r}: choose one of {', '.join(MODES)}"
        raise OrchardError(msg)

    # --- model server ---------------------------------------------------------------------------

    def ensure_model_server(self, *, timeout: float = 180.0) -> None:
        """Make sure the model endpoint answers.

        At the default local URL, start the embedded server if nothing answers (and say so);
        any other URL fails within seconds with a message saying what to do.

        Raises:
            ModelServerUnavailable: nothing answers and nothing could be started.
        """
        from orchard import server

        s = self.settings
        if server.is_serving(s.llm_base_url):
            return
        if not s.is_default_llm_url:
            raise ModelServerUnavailable(s.llm_base_url)
        run_dir = s.data_dir / "run"
        run_dir.mkdir(parents=True, exist_ok=True)
        with (run_dir / "server.lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # two processes must not start two servers
            if server.is_serving(s.llm_base_url):
                return
            log = s.data_dir / "logs" / "model-server.log"
            self.notify(
                f"No model server at {s.llm_base_url}: starting the embedded one "
                f"({s.model_preset}; log: {log}; stop it with `orchard stop`)…"
            )
            handle = server.start_server(
                self.embedded_server_command(), base_url=s.llm_base_url, log=log, timeout=timeout, detach=True
            )
            server.write_pidfile(run_dir / "model-server.pid", handle.process.pid)
            self.notify(f"Embedded model server ready at {s.llm_base_url}.")

    def embedded_server_command(self, *, model: str | None = None, port: int | None = None) -> list[str]:
        from orchard import server
        from orchard.model import resolve_model

        s = self.settings
        path, served = resolve_model(model or s.model_preset, cache_dir=s.cache_path)
        if model is None and s.llm_model:
            served = s.llm_model  # the name clients ask for
        return server.llamacpp_command(
            model_path=path,
            served_name=served,
            port=port or server.port_of(s.llm_base_url),
            threads=s.server_threads or server.default_threads(),
            n_ctx=s.server_ctx,
        )

    # --- use cases ----------------------------------------------------------------------------

    def stream(self, question: str, *, history: Any = None, mode: str = "rag") -> Iterator[dict[str, Any]]:
        """Stream the answer as chunks (``question``, ``sources``, ``answer`` tokens, ``grounded``).

        Raises:
            EmptyStore: mode ``rag`` with nothing ingested.
            ModelServerUnavailable: the model endpoint does not answer.
        """
        import openai

        if mode == "rag" and self.store.count() == 0:
            raise EmptyStore(self.store.where)
        chain = self.chain(mode)
        self.ensure_model_server()
        try:
            yield from chain.stream({"question": question, "history": history or []})
        except (openai.APIConnectionError, openai.APITimeoutError) as exc:
            raise ModelServerUnavailable(self.settings.llm_base_url, type(exc).__name__) from exc
        except openai.APIError as exc:
            msg = (
                f"the model server at {self.settings.llm_base_url} refused the request ({exc}) — "
                f"check ORCHARD_LLM_MODEL ({self.settings.llm_model!r}) against the server's models"
            )
            raise OrchardError(msg) from exc

    def ask(self, question: str, *, history: Any = None, mode: str = "rag") -> dict[str, Any]:
        """The whole answer at once: ``answer``, ``sources``, ``grounded``, ``model``, ``seconds``."""
        started = time.perf_counter()
        result = merge_chunks(self.stream(question, history=history, mode=mode))
        result.setdefault("answer", "")
        result.setdefault("sources", [])
        result.setdefault("grounded", False)
        result["model"] = self.settings.llm_model
        result["mode"] = mode
        result["seconds"] = round(time.perf_counter() - started, 3)
        return result

    def search(self, query: str, *, k: int | None = None) -> list[dict[str, Any]]:
        docs = self.retriever.invoke(query, k=k or self.settings.top_k)
        return [
            {
                "source": d.metadata.get("source", ""),
                "section": d.metadata.get("section", ""),
                "score": d.metadata.get("score"),
                "text": d.page_content,
                "chunk_id": d.id,
            }
            for d in docs
        ]

    def ingest(self, paths: list[str | Path], *, prune: bool = False, progress: bool = True, on_file: Any = None) -> Any:
        from orchard.ingest import ingest

        return ingest(paths, store=self.store, prune=prune, progress=progress, on_file=on_file)

    def status(self) -> dict[str, Any]:
        """Endpoint, model and store facts for a status line (never raises for a down server)."""
        from orchard import server

        s = self.settings
        return {
            "llm_base_url": s.llm_base_url,
            "llm_model": s.llm_model,
            "model_server_up": server.is_serving(s.llm_base_url, timeout=1.0),
            "store": s.chroma_url or str(s.store_path),
            "chunks": self.store.count(),
        }
