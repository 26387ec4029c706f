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

MODES = ("auto", "rag", "agent", "chat")
AGENT_PROMPTS = ("agent_route", "agent_python", "agent_sql", "agent_answer")
INTERNAL = "orchard:internal"  # tag of model calls whose tokens are not the answer (routing, writing code)


def safe_file_name(name: str) -> str:
    """A name without folders or control characters ("../../x.pdf" -> "x.pdf"; "" if nothing is left)."""
    base = Path(str(name).replace("\\", "/")).name
    cleaned = "".join(ch for ch in base if ch.isprintable() and ch not in '<>:"|?*').strip().lstrip(".")
    return cleaned[:200]


def merge_chunks(chunks: Iterator[dict[str, Any]]) -> dict[str, Any]:
    """Fold streamed chunks into one result (``answer`` and ``draft`` tokens concatenate,
    ``critiques`` lists add up, each ``tool_call`` is appended to ``tool_calls``, other values
    are set)."""
    result: dict[str, Any] = {}
    for chunk in chunks:
        for key, value in chunk.items():
            if key in ("answer", "draft") and key in result:
                result[key] += value
            elif key == "critiques":
                result.setdefault("critiques", []).extend(value)
            elif key == "tool_call":
                result.setdefault("tool_calls", []).append(value)
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

    def chain(self, mode: str, *, user: str | None = None) -> Any:
        """The ``rag`` or ``chat`` chain; with ``user``, their preferences reach the model."""
        from orchard.chains.chat import build_chat_chain
        from orchard.chains.preferences import with_preferences
        from orchard.chains.rag import build_rag_chain
        from orchard.prompts import load_prompt

        user_dir = self.settings.prompts_path
        llm = with_preferences(self.llm, self.preferences(user))
        if mode == "chat":
            return build_chat_chain(llm=llm, prompt=load_prompt("chat", user_dir=user_dir))
        if mode == "rag":
            return build_rag_chain(
                llm=llm,
                retriever=self.retriever,
                answer_prompt=load_prompt("rag_answer", user_dir=user_dir),
                condense_prompt=load_prompt("condense_question", user_dir=user_dir),
                min_relevance=self.settings.min_relevance,
            )
        msg = f"unknown mode {mode!r}: choose one of {', '.join(MODES)}"
        raise OrchardError(msg)

    # --- agent --------------------------------------------------------------------------------

    def tools(self, *, db_url: str | None = None, tables: Any = (), schema_tools: bool | None = None) -> list[Any]:
        """The tools for what is attached (``db_url`` defaults to ORCHARD_DB_URL; search_docs only
        when documents are ingested)."""
        from orchard.tools import build_tools

        s = self.settings
        return build_tools(
            retriever=self.retriever if self.store.count() > 0 else None,
            db_url=db_url or s.db_url,
            tables=list(tables or ()),
            max_rows=s.sql_max_rows,
            timeout=s.tool_timeout,
            schema_tools=(s.tool_calling == "auto") if schema_tools is None else schema_tools,
        )

    def agent_prompts(self) -> dict[str, Any]:
        from orchard.prompts import load_prompt

        return {name: load_prompt(name, user_dir=self.settings.prompts_path) for name in AGENT_PROMPTS}

    def router(self, tools: list[Any]) -> Any:
        from orchard.agents.router import QuestionRouter

        internal = self.llm.bind(temperature=0).with_config(tags=[INTERNAL])
        return QuestionRouter(
            llm=internal,
            prompt=self.agent_prompts()["agent_route"],
            tools=tools,
            relevance=self.relevance,
            min_relevance=self.settings.min_relevance,
        )

    def relevance(self, question: str) -> float:
        """How well the documents match ``question``: the best passage's cosine similarity."""
        if self.store.count() == 0:
            return 0.0
        docs = self.retriever.invoke(question, k=1)
        return max((float(d.metadata.get("dense_score") or 0.0) for d in docs), default=0.0)

    def agent(self, tools: list[Any], *, router: Any = None) -> Any:
        from orchard.agents.agent import build_agent

        return build_agent(
            llm=self.llm,
            tools=tools,
            tool_calling=self.settings.tool_calling,
            prompts=self.agent_prompts(),
            router=router,
            internal_tag=INTERNAL,
        )

    # --- the app's state: conversations, feedback, preference profiles -------------------------

    @cached_property
    def database(self) -> Any:
        from orchard.db import Database, db_path

        return Database(db_path(self.settings.data_dir))

    @cached_property
    def conversations(self) -> Any:
        from orchard.history import ConversationStore

        return ConversationStore(self.database)

    @cached_property
    def feedback(self) -> Any:
        from orchard.feedback import FeedbackStore

        return FeedbackStore(self.database)

    @cached_property
    def profiles(self) -> Any:
        from orchard.feedback import ProfileStore

        return ProfileStore(self.database)

    def rate(self, *, user: str, conversation_id: str, message_id: int, rating: str, comment: str | None = None) -> Any:
        """Store a rating of an answer with its prompt, the context the model saw, its sources and
        model; then refresh the user's preference profile from their ratings."""
        messages = self.conversations.messages(user, conversation_id)
        answer, question = None, ""
        for message in messages:
            versions = (message, *message.alternatives)
            found = next((v for v in versions if v.id == message_id), None)
            if found is not None:
                answer = found
                break
            if message.role == "user":
                question = message.content
        if answer is None or answer.role != "assistant":
            from orchard.db import NotFound

            raise NotFound(f"no answer {message_id} in this conversation")
        meta = answer.meta
        record = self.feedback.add(
            user=user,
            prompt=meta.get("question") or question,
            response=answer.content,
            rating=rating,
            comment=comment or None,
            conversation_id=conversation_id,
            message_id=message_id,
            context=[s.get("text", "") for s in meta.get("sources", [])] or None,
            sources=[{k: s.get(k) for k in ("n", "source", "section")} for s in meta.get("sources", [])],
            model=meta.get("model") or self.settings.llm_model,
        )
        self.profiles.update_profile_from_feedback(user)
        return record

    def unrate(self, *, user: str, conversation_id: str, message_id: int) -> bool:
        """Remove the user's rating of an answer (and refresh their profile); True if there was one."""
        mine = [f for f in self.feedback.list(user) if f.conversation_id == conversation_id and f.message_id == message_id]
        for record in mine:
            self.feedback.delete(record.id, user=user)
        if mine:
            self.profiles.update_profile_from_feedback(user)
        return bool(mine)

    def delete_conversation(self, user: str, conversation_id: str) -> None:
        """Delete a conversation, its messages and the files attached to it (ratings stay: they
        are training data, deleted from the feedback view)."""
        import shutil

        self.conversations.delete(user, conversation_id)
        shutil.rmtree(self.tables_dir(conversation_id), ignore_errors=True)

    def preferences(self, user: str | None) -> str:
        """What the user's profile adds to their prompts ('' without a user or a profile)."""
        if not user:
            return ""
        from orchard.feedback import profile_instructions

        return profile_instructions(self.profiles.get(user))

    # --- the document library -----------------------------------------------------------------

    @property
    def uploads_dir(self) -> Path:
        return self.settings.data_dir / "uploads"

    def documents(self) -> list[dict[str, Any]]:
        """Every document in the store: ``source``, ``chunks``, ``uploaded`` (kept by the app)."""
        return [
            {"source": source, "chunks": chunks, "uploaded": source.startswith("uploads/")}
            for source, chunks in sorted(self.store.sources().items())
        ]

    def delete_document(self, source: str) -> int:
        """Remove a document's chunks (and the app's copy of an uploaded file); chunks removed."""
        removed = self.store.delete(self.store.chunk_ids(source))
        if source.startswith("uploads/"):
            target = (self.settings.data_dir / source).resolve()
            if target.is_relative_to(self.uploads_dir.resolve()):
                target.unlink(missing_ok=True)
        return removed

    def upload(self, files: list[tuple[str, bytes]], *, on_file: Any = None) -> Any:
        """Keep uploaded files under ``<data_dir>/uploads`` and ingest them (incrementally).

        Names are reduced to a safe file name; the report lists each file by ``uploads/NAME``.
        """
        from orchard.ingest import IngestReport

        self.uploads_dir.mkdir(parents=True, exist_ok=True)
        given: list[str] = []
        refused = IngestReport()
        for name, data in files:
            safe = safe_file_name(name)
            if not safe:
                refused.files_failed.append({"path": name, "error": "not a usable file name"})
                continue
            (self.uploads_dir / safe).write_bytes(data)
            given.append(f"uploads/{safe}")
        report = self.ingest(given, progress=False, on_file=on_file, base=self.settings.data_dir) if given else refused
        if given:
            report.files_failed[:0] = refused.files_failed
        return report

    def reindex(self, *, on_file: Any = None) -> Any:
        """Read every uploaded file again (changed ones are re-embedded, deleted ones pruned)."""
        self.uploads_dir.mkdir(parents=True, exist_ok=True)
        return self.ingest(["uploads"], prune=True, progress=False, on_file=on_file, base=self.settings.data_dir)

    def attach_table(self, conversation_id: str, name: str, data: bytes) -> Path:
        """Keep a CSV/XLSX attached to a conversation under ``<data_dir>/tables/<conversation>``."""
        safe = safe_file_name(name)
        if not safe or Path(safe).suffix.lower() not in (".csv", ".tsv", ".xlsx"):
            msg = f"{name}: attach a CSV, TSV or XLSX file"
            raise OrchardError(msg)
        folder = self.tables_dir(conversation_id)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / safe).write_bytes(data)
        return folder / safe

    def tables_dir(self, conversation_id: str) -> Path:
        return self.settings.data_dir / "tables" / safe_file_name(conversation_id)

    def detach_table(self, conversation_id: str, path: str | Path) -> bool:
        """Delete an attached file (only one kept under this conversation's folder)."""
        target = Path(path).resolve()
        if not target.is_relative_to(self.tables_dir(conversation_id).resolve()) or not target.is_file():
            return False
        target.unlink()
        return True

    # --- prompt templates and the constitution (the same files `orchard prompts` uses) --------

    def prompt_rows(self) -> list[dict[str, str]]:
        from orchard.prompts import list_prompts

        return list_prompts(user_dir=self.settings.prompts_path)

    def prompt_text(self, name: str, *, packaged: bool = False) -> str:
        from orchard.prompts import prompt_text

        return prompt_text(name, user_dir=self.settings.prompts_path, packaged=packaged)

    def validate_prompt(self, name: str, text: str) -> list[str]:
        from orchard.prompts import validate_prompt_text

        return validate_prompt_text(name, text)

    def save_prompt(self, name: str, text: str) -> Path:
        from orchard.prompts import save_prompt

        return save_prompt(name, text, user_dir=self.settings.prompts_path)

    def reset_prompt(self, name: str) -> bool:
        from orchard.prompts import reset_prompt

        return reset_prompt(name, user_dir=self.settings.prompts_path)

    def constitution_text(self, *, packaged: bool = False) -> str:
        from orchard.constitution import constitution_text

        return constitution_text(None if packaged else self.settings.prompts_path)

    def validate_constitution(self, text: str) -> list[str]:
        from orchard.constitution import validate_constitution_text

        return validate_constitution_text(text)

    def save_constitution(self, text: str) -> Path:
        from orchard.constitution import save_constitution

        return save_constitution(text, self.settings.prompts_path)

    def reset_constitution(self) -> bool:
        from orchard.constitution import reset_constitution

        return reset_constitution(self.settings.prompts_path)

    # --- settings the app edits ---------------------------------------------------------------

    def save_settings(self, changes: dict[str, Any]) -> tuple[Any, dict[str, str]]:
        """Validate and persist ``changes``: (new settings, {}) or (None, {field: message}).
        The caller builds a new service from the new settings (clients depend on them)."""
        from orchard.user_settings import save_changes

        return save_changes(self.settings, changes)

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
        if server.is_listening(s.llm_base_url):
            # Something holds the port: llama.cpp's server does not answer while it is busy with
            # another request (measured). Wait for it rather than start a second server.
            server.wait_until_serving(s.llm_base_url, timeout=s.llm_timeout)
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

    def stream(
        self,
        question: str,
        *,
        history: Any = None,
        mode: str = "auto",
        db_url: str | None = None,
        tables: Any = (),
        user: str | None = None,
        critique: bool = False,
    ) -> Iterator[dict[str, Any]]:
        """Stream the answer as chunks.

        Every mode yields ``answer`` tokens; ``rag`` also ``question``, ``sources``, ``grounded``;
        ``agent`` yields ``route``, one ``tool_call`` ({tool, input, output, ok}) per call and
        ``sources`` from search_docs; ``auto`` first yields ``mode`` (the one it chose) and
        ``route``, then the chosen mode's chunks. ``user``: their preference profile is added to
        the rag and chat prompts. ``critique``: the answer streams as ``draft``, then one
        ``critiques`` chunk per principle of the constitution, then the final ``answer``.

        Raises:
            EmptyStore: a documents question with nothing ingested.
            ModelServerUnavailable: the model endpoint does not answer.
        """
        import openai

        if mode not in MODES:
            msg = f"unknown mode {mode!r}: choose one of {', '.join(MODES)}"
            raise OrchardError(msg)
        if mode == "rag" and self.store.count() == 0:
            raise EmptyStore(self.store.where)
        self.ensure_model_server()
        try:
            if mode in ("auto", "agent"):
                chunks = self._stream_routed(question, history=history, mode=mode, db_url=db_url, tables=tables, user=user)
            else:
                chunks = self.chain(mode, user=user).stream({"question": question, "history": history or []})
            yield from (self._critiqued(question, chunks) if critique else chunks)
        except (openai.APIConnectionError, openai.APITimeoutError) as exc:
            raise ModelServerUnavailable(self.settings.llm_base_url, type(exc).__name__) from exc
        except openai.APIError as exc:
            msg = (
                f"the model server at {self.settings.llm_base_url} refused the request ({exc}) — "
                f"check ORCHARD_LLM_MODEL ({self.settings.llm_model!r}) against the server's models"
            )
            raise OrchardError(msg) from exc

    def _critiqued(self, question: str, chunks: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        """Stream ``chunks`` with the answer as ``draft``; then critique and revise it."""
        from orchard.chains.constitutional import build_critique_chain
        from orchard.chains.rag import cited_numbers
        from orchard.constitution import load_constitution

        critic = build_critique_chain(llm=self.llm, constitution=load_constitution(self.settings.prompts_path))
        draft, result = "", {}
        for chunk in chunks:
            for key, value in chunk.items():
                if key == "answer":
                    draft += value
                    yield {"draft": value}
                else:
                    result[key] = value
                    yield {key: value}
        sources = result.get("sources") or []
        context = "\n\n".join(f"[{s['n']}] {s.get('text', '')}" for s in sources)
        answer = ""
        for chunk in critic.stream({"question": result.get("question") or question, "answer": draft.strip(), "context": context}):
            if "critiques" in chunk:
                yield {"critiques": chunk["critiques"]}
            if "answer" in chunk:
                answer += chunk["answer"]
                yield {"answer": chunk["answer"]}
        if answer.strip() != draft.strip() and sources:
            cited = cited_numbers(answer, len(sources))
            yield {"cited": cited, "grounded": bool(cited) and bool(result.get("grounded", True))}

    def _stream_routed(
        self, question: str, *, history: Any, mode: str, db_url: str | None, tables: Any, user: str | None = None
    ) -> Iterator[dict[str, Any]]:
        from orchard.agents.router import describe_route

        tools = self.tools(db_url=db_url, tables=tables)
        router = self.router(tools)
        if mode == "auto":
            route = router.route(question)
            if route.tool is None and route.kind == "documents":
                raise EmptyStore(self.store.where)
            yield {"mode": route.mode, "route": describe_route(route)}
            if route.mode != "agent":
                yield from self.chain(route.mode, user=user).stream({"question": question, "history": history or []})
                return
        yield from self._stream_agent(self.agent(tools, router=router), question, history=history)

    def _stream_agent(self, agent: Any, question: str, *, history: Any) -> Iterator[dict[str, Any]]:
        from langchain_core.messages import AIMessage, HumanMessage, ToolMessage

        from orchard.agents.agent import add_sources, tool_call_record
        from orchard.chains.condense import as_messages

        messages = [*as_messages(history), HumanMessage(question)]
        calls: dict[str, dict[str, Any]] = {}
        sources: list[dict[str, Any]] = []
        # The answer comes from the model node's update, not its tokens: the routed agent checks
        # the answer against the tool's result and may replace it (agents/checks.py).
        for update in (u for step in agent.stream({"messages": messages}, stream_mode="updates") for u in step.values()):
            for message in (update or {}).get("messages", []):
                if isinstance(message, AIMessage):
                    if "orchard_route" in message.response_metadata:
                        yield {"route": message.response_metadata["orchard_route"]}
                    calls.update({c["id"]: c for c in message.tool_calls})
                    if not message.tool_calls and message.content:
                        yield {"answer": str(message.content)}
                elif isinstance(message, ToolMessage):
                    yield {"tool_call": tool_call_record(message, calls.get(message.tool_call_id))}
                    if (more := add_sources(sources, message)) is not sources:  # a search added some
                        sources = more
                        yield {"sources": list(sources)}

    def ask(
        self,
        question: str,
        *,
        history: Any = None,
        mode: str = "auto",
        db_url: str | None = None,
        tables: Any = (),
        user: str | None = None,
        critique: bool = False,
    ) -> dict[str, Any]:
        """The whole answer at once: ``answer``, ``sources``, ``tool_calls``, ``mode`` (the one that
        answered), ``route``, ``grounded``, ``model``, ``seconds`` (with ``critique``: also
        ``draft`` and ``critiques``)."""
        started = time.perf_counter()
        chunks = self.stream(question, history=history, mode=mode, db_url=db_url, tables=tables, user=user, critique=critique)
        result = merge_chunks(chunks)
        if critique:
            result["draft"] = result.get("draft", "").strip()
            result.setdefault("critiques", [])
        result["answer"] = result.get("answer", "").strip()
        result.setdefault("sources", [])
        result.setdefault("tool_calls", [])
        result.setdefault("mode", mode)
        result.setdefault("route", None)
        if result["mode"] == "rag":
            result.setdefault("grounded", False)
        result["model"] = self.settings.llm_model
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

    def ingest(
        self, paths: list[str | Path], *, prune: bool = False, progress: bool = True, on_file: Any = None, base: Path | None = None
    ) -> Any:
        from orchard.ingest import ingest

        with self._lock:  # one ingestion at a time per process (two browser tabs uploading)
            return ingest(paths, store=self.store, prune=prune, progress=progress, on_file=on_file, base=base)

    def warm_up(self) -> None:
        """Build what the first question needs: the model client, the embedder (~12 s to import)
        and the BM25 index (seconds for a large store). The app runs this in a thread at start."""
        _ = self.llm
        warm = getattr(self.embeddings, "warm_up", None)
        if warm is not None:
            warm()
        if self.store.count():
            self.store.lexical_search("warm up", 1)

    def status(self) -> dict[str, Any]:
        """Endpoint, model and store facts for a status line (never raises for a down server)."""
        from orchard import server

        s = self.settings
        up = server.is_serving(s.llm_base_url, timeout=1.0)
        return {
            "llm_base_url": s.llm_base_url,
            "llm_model": s.llm_model,
            "model_server_up": up,
            # llama.cpp does not answer while it generates: listening but silent is busy, not down
            "model_server_busy": not up and server.is_listening(s.llm_base_url, timeout=0.5),
            "store": s.chroma_url or str(s.store_path),
            "chunks": self.store.count(),
        }
