"""The composition root: settings in, components out.

:class:`Components` is the only place that turns :class:`~orchard.config.Settings` into clients:
the model client, the embedder, the Chroma client and store, the hybrid retriever, the state
database (and its stores), and the agent's tool sessions. Each part is built lazily, once, under
a lock; any part can be given ready-made instead (tests pass a scripted model and bag-of-words
embeddings this way — no attribute pokes)::

    >>> from orchard.config import Settings
    >>> parts = Components(Settings(), llm=my_fake_model, embeddings=my_embeddings)  # doctest: +SKIP

:meth:`Components.with_settings` makes the parts for new settings, keeping those that do not
depend on what changed (the embedder, the store and the database are heavy).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchard.config import Settings

#: Settings each buildable part depends on: a part is kept by :meth:`Components.with_settings`
#: when none of them changed.
DEPENDS_ON: dict[str, tuple[str, ...]] = {
    "embeddings": ("embedder", "chroma_url", "store_dir", "data_dir", "collection", "cache_dir"),
    "chroma_client": ("chroma_url", "store_dir", "data_dir"),
    "store": ("chroma_url", "store_dir", "data_dir", "collection"),
    "retriever": ("chroma_url", "store_dir", "data_dir", "collection", "top_k", "dense_weight", "query_rewrite", "auth",
                  "llm_base_url", "llm_model", "llm_api_key", "llm_timeout"),
    "llm": ("llm_base_url", "llm_model", "llm_api_key", "llm_temperature", "llm_max_tokens", "llm_timeout",
            "llm_first_token_retries"),
    "database": ("data_dir", "state_url"),
    "conversations": ("data_dir", "state_url"),
    "feedback": ("data_dir", "state_url"),
    "profiles": ("data_dir", "state_url"),
    "users": ("data_dir", "state_url"),
    "audit": ("data_dir", "state_url"),
    "tool_sessions": ("sql_max_rows", "tool_timeout", "tool_calling"),
    "rewards": ("data_dir",),
    "reward_trainer": ("data_dir", "reward_retrain_every", "embedder", "chroma_url", "store_dir", "collection", "cache_dir"),
    "adapters": ("data_dir",),
}
INTERNAL_TAG = "orchard:internal"  # tag of model calls whose tokens are not the answer


class Components:
    """Every client Orchard uses, built from one :class:`Settings` (see the module docstring).

    Keyword arguments named like a part (``llm``, ``embeddings``, ``store`` ...) are used as given.
    """

    def __init__(self, settings: Settings, **given: Any) -> None:
        unknown = sorted(set(given) - set(DEPENDS_ON))
        if unknown:
            msg = f"unknown component(s) {', '.join(unknown)}: choose from {', '.join(DEPENDS_ON)}"
            raise TypeError(msg)
        self.settings = settings
        self._parts: dict[str, Any] = {k: v for k, v in given.items() if v is not None}
        self._lock = threading.RLock()

    def _part(self, name: str, build: Callable[[], Any]) -> Any:
        part = self._parts.get(name)
        if part is not None:
            return part
        with self._lock:
            if name not in self._parts:
                self._parts[name] = build()
            return self._parts[name]

    def built(self, name: str) -> bool:
        return name in self._parts

    def with_settings(self, settings: Settings) -> Components:
        """Components for ``settings``, sharing every built part whose settings did not change."""
        changed = {k for k in Settings.model_fields if getattr(settings, k) != getattr(self.settings, k)}
        kept = {name: part for name, part in self._parts.items() if not changed & set(DEPENDS_ON[name])}
        if "tool_sessions" in self._parts and "tool_sessions" not in kept:
            self._parts["tool_sessions"].close()
        return Components(settings, **kept)

    # --- model ----------------------------------------------------------------------------------

    @property
    def llm(self) -> Any:
        return self._part("llm", self._build_llm)

    def _build_llm(self) -> Any:
        import httpx

        from orchard.llm_client import RetryingChatOpenAI
        from orchard.server import is_loopback

        s = self.settings
        extra = {}
        if is_loopback(s.llm_base_url):  # a proxy from the environment must not see local traffic
            extra = {"http_client": httpx.Client(trust_env=False), "http_async_client": httpx.AsyncClient(trust_env=False)}
        return RetryingChatOpenAI(
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
            # the one retry (orchard/llm_client.py): before the first token, ORCHARD_LLM_FIRST_TOKEN_RETRIES
            # times, then a clear error; the SDK's own would only cover the request and double the count
            max_retries=0,
            first_token_retries=s.llm_first_token_retries,
            stream_usage=False,
        )

    @property
    def internal_llm(self) -> Any:
        """The model for routing and writing code: greedy, tagged so its tokens are not the answer."""
        llm = self.llm
        greedy = llm.bind(temperature=0) if hasattr(llm, "temperature") else llm
        return greedy.with_config(tags=[INTERNAL_TAG])

    # --- documents ------------------------------------------------------------------------------

    @property
    def embeddings(self) -> Any:
        def build() -> Any:
            from orchard.embeddings import embeddings_for
            from orchard.store import recorded_embedder

            s = self.settings
            # An existing store keeps the embedder that built it; ORCHARD_EMBEDDER picks a new one's.
            recorded = recorded_embedder(self.chroma_client, s.collection)
            try:
                return embeddings_for(recorded or s.embedder, cache_dir=s.cache_path)
            except ValueError:  # recorded by something else: the store's check says what to do
                return embeddings_for(s.embedder, cache_dir=s.cache_path)

        return self._part("embeddings", build)

    @property
    def chroma_client(self) -> Any:
        def build() -> Any:
            from orchard.store import make_chroma_client

            s = self.settings
            return make_chroma_client(url=s.chroma_url) if s.chroma_url else make_chroma_client(path=s.store_path)

        return self._part("chroma_client", build)

    @property
    def store(self) -> Any:
        def build() -> Any:
            from orchard.store import DocumentStore

            s = self.settings
            where = s.chroma_url or str(s.store_path)
            return DocumentStore(client=self.chroma_client, collection=s.collection, embeddings=self.embeddings, where=where)

        return self._part("store", build)

    @property
    def retriever(self) -> Any:
        def build() -> Any:
            from orchard.retriever import HybridRetriever, RewriteFusionRetriever, llm_rewriter

            s = self.settings
            hybrid = HybridRetriever(store=self.store, k=s.top_k, dense_weight=s.dense_weight)
            if s.team_mode:  # a path that forgets the asker's view reads the shared library only
                from orchard.identity import SHARED_LIBRARY

                hybrid = hybrid.with_libraries([SHARED_LIBRARY])
            if s.query_rewrite == "off":
                return hybrid
            # A short greedy call, tagged internal: its tokens are never part of an answer
            # (`max_tokens` in extra_body too: llama.cpp ignores `max_completion_tokens`).
            short = self.internal_llm.bind(max_tokens=40, extra_body={"max_tokens": 40})
            rewriter = llm_rewriter(short, style="keywords")
            settled = None
            if s.query_rewrite == "auto":  # the answer's own gate: strong evidence needs no rewrite
                from orchard.chains.gate import Gate

                gate = Gate.default()
                settled = lambda question, docs: gate.decide(question, docs).decision == "strict"  # noqa: E731
            return RewriteFusionRetriever(base=hybrid, rewrite=rewriter, k=s.top_k, settled=settled)

        return self._part("retriever", build)

    # --- state ----------------------------------------------------------------------------------

    @property
    def database(self) -> Any:
        def build() -> Any:
            from orchard.db import Database

            return Database(self.settings.state_database_url)

        return self._part("database", build)

    @property
    def users(self) -> Any:
        """Who logged in (:class:`orchard.users.UserDirectory`)."""
        from orchard.users import UserDirectory

        return self._part("users", lambda: UserDirectory(self.database))

    @property
    def audit(self) -> Any:
        """The audit trail (:class:`orchard.audit.AuditLog`)."""
        from orchard.audit import AuditLog

        return self._part("audit", lambda: AuditLog(self.database))

    @property
    def conversations(self) -> Any:
        from orchard.history import ConversationStore

        return self._part("conversations", lambda: ConversationStore(self.database))

    @property
    def feedback(self) -> Any:
        from orchard.feedback import FeedbackStore

        return self._part("feedback", lambda: FeedbackStore(self.database))

    @property
    def profiles(self) -> Any:
        from orchard.feedback import ProfileStore

        return self._part("profiles", lambda: ProfileStore(self.database))

    # --- learning from feedback -------------------------------------------------------------------

    @property
    def rewards(self) -> Any:
        """Reward-model versions per user and global (:class:`orchard.reward.RewardStore`)."""
        from orchard.reward import RewardStore

        return self._part("rewards", lambda: RewardStore(self.settings.data_dir))

    @property
    def reward_trainer(self) -> Any:
        """Retrains a user's reward model after ``reward_retrain_every`` new ratings, in the background."""
        from orchard.reward import RewardTrainer

        every = max(1, self.settings.reward_retrain_every)
        return self._part("reward_trainer", lambda: RewardTrainer(self.feedback, self.rewards, embed=self.embeddings, every=every))

    @property
    def adapters(self) -> Any:
        """LoRA adapters trained here, one active per user (:class:`orchard.adapters.AdapterStore`)."""
        from orchard.adapters import AdapterStore

        return self._part("adapters", lambda: AdapterStore(self.settings.data_dir))

    def reward_scorer(self, user: str | None, question: str) -> RewardScorer | None:
        """What scores best-of-n candidates for ``user``: their reward model, else the global one, else None."""
        found = self.rewards.scoring(user)
        if found is None:
            return None
        owner, version = found
        model = self.rewards.load(owner, version, embed=self.embeddings)
        return RewardScorer(name=f"{'the global' if owner is None else 'your'} reward model v{version}",
                            score=lambda texts: model.score(question, list(texts)))  # fmt: skip

    # --- tools ----------------------------------------------------------------------------------

    @property
    def tool_sessions(self) -> ToolSessions:
        s = self.settings
        return self._part(
            "tool_sessions",
            lambda: ToolSessions(max_rows=s.sql_max_rows, timeout=s.tool_timeout, schema_tools=s.tool_calling == "auto"),
        )

    def tools(self, *, db_url: str | None = None, tables: Sequence[str | Path] = (), retriever: Any = None) -> list[Any]:
        """The tools for what is attached (``db_url`` defaults to ORCHARD_DB_URL; search_docs only
        when documents are ingested, over ``retriever`` — default: the hybrid retriever)."""
        search = (retriever or self.retriever) if self.store.count() > 0 else None
        return self.tool_sessions.tools(db_url=db_url or self.settings.db_url, tables=tables, retriever=search)

    def close(self) -> None:
        if "tool_sessions" in self._parts:
            self._parts["tool_sessions"].close()
        if "reward_trainer" in self._parts:
            self._parts["reward_trainer"].close(wait=True)
        if "store" in self._parts:  # gives the embedded store's lock back
            self._parts["store"].close()
        elif "chroma_client" in self._parts:
            from orchard.store import close_chroma_client

            close_chroma_client(self._parts["chroma_client"])
        if "database" in self._parts:  # reconnects if used again
            self._parts["database"].close()


@dataclass(frozen=True)
class RewardScorer:
    """A reward model bound to one question: ``score(answers) -> floats``, and what it is."""

    name: str
    score: Callable[[Sequence[str]], Sequence[float]]


class ToolSessions:
    """The agent's data tools, built once per (database URL, attached files) and reused.

    A SQL tool holds a connection pool and a table tool a DuckDB database loaded from its files:
    building them for every question would open a pool per question (never disposed) and read
    every attached file again. :meth:`release` disposes of the tools of a detached source.

    A file changed on disk under the same path is loaded again by its table tool (it compares
    mtime, size and, for a file just written, its digest before every query), so a session is
    keyed by paths alone.
    """

    def __init__(self, *, max_rows: int, timeout: float, schema_tools: bool) -> None:
        self.max_rows, self.timeout, self.schema_tools = max_rows, timeout, schema_tools
        self._sessions: dict[tuple[str | None, tuple[str, ...]], list[Any]] = {}
        self._lock = threading.Lock()

    @staticmethod
    def key(db_url: str | None, tables: Sequence[str | Path]) -> tuple[str | None, tuple[str, ...]]:
        return (db_url or None, tuple(sorted({_file_key(t) for t in tables})))

    def tools(self, *, db_url: str | None, tables: Sequence[str | Path], retriever: Any) -> list[Any]:
        """The session's data tools (built on first use), plus search_docs over ``retriever``.

        Raises:
            OrchardError: a file is missing or not a table, or the database cannot be opened.
        """
        from orchard.errors import OrchardError
        from orchard.tools import build_tools

        key = self.key(db_url, tables)
        with self._lock:
            data = self._sessions.get(key)
            if data is None:
                try:
                    data = build_tools(db_url=key[0], tables=list(key[1]), max_rows=self.max_rows, timeout=self.timeout,
                                       schema_tools=self.schema_tools)  # fmt: skip
                except ValueError as exc:  # "no file at ...", "no SQLite database at ...": the user's to fix
                    raise OrchardError(str(exc)) from exc
                self._sessions[key] = data
        if retriever is None:
            return list(data)
        from orchard.tools.search_docs import SearchDocsTool

        return [*data, SearchDocsTool(retriever=retriever)]

    def open_sessions(self) -> list[tuple[str | None, tuple[str, ...]]]:
        with self._lock:
            return list(self._sessions)

    def release(self, *, db_url: str | None = None, table: str | Path | None = None) -> int:
        """Dispose of every session that uses ``db_url`` or ``table``; how many were disposed."""
        with self._lock:
            doomed = [
                key
                for key in self._sessions
                if (db_url is not None and key[0] == db_url) or (table is not None and _file_key(table) in key[1])
            ]
            tools = [t for key in doomed for t in self._sessions.pop(key)]
        for tool in tools:
            _dispose(tool)
        return len(doomed)

    def close(self) -> None:
        with self._lock:
            tools = [t for ts in self._sessions.values() for t in ts]
            self._sessions.clear()
        for tool in tools:
            _dispose(tool)


def _file_key(path: str | Path) -> str:
    return str(Path(path).resolve())


def _dispose(tool: Any) -> None:
    close = getattr(tool, "close", None)
    if callable(close):
        close()
