"""Orchard's use cases, and :class:`Orchard`, the object every face (CLI, Streamlit, HTTP API) uses.

=====================  =====================================================================
``orchard.answers``        :class:`~orchard.usecases.answering.Answering` — stream/ask, routing, agent, critique
``orchard.conversations``  :class:`~orchard.usecases.conversations.Conversations` — turns stored, ratings
``orchard.library``        :class:`~orchard.usecases.library.Library` — ingest, upload, list, delete, search
``orchard.feedback``       :class:`~orchard.usecases.feedback.Feedback` — ratings as training data, profiles
``orchard.customization``  :class:`~orchard.usecases.customization.Customization` — prompts, constitution, settings
``orchard.model_server``   :class:`~orchard.usecases.model_server.ModelServer` — ensure, launch, serve, stop
``orchard.keys``           :class:`~orchard.keys.KeyStore` — the HTTP API's keys
``orchard.audit``          :class:`~orchard.usecases.audit.Audit` — who did what, for admins
``orchard.users``          :class:`~orchard.users.UserDirectory` — who logged in (team mode)
=====================  =====================================================================

Example::

    >>> from orchard.usecases import build_orchard
    >>> orchard = build_orchard()  # doctest: +SKIP
    >>> orchard.answers.ask(AnswerRequest(question="How do I shuffle a list?")).answer  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from orchard.components import Components
from orchard.config import Settings
from orchard.usecases.answering import MODES, Answering, AnswerRequest
from orchard.usecases.audit import Audit
from orchard.usecases.conversations import Conversations
from orchard.usecases.customization import Customization
from orchard.usecases.feedback import Feedback
from orchard.usecases.learning import Learning, Tuning
from orchard.usecases.library import Library
from orchard.usecases.model_server import ModelServer

__all__ = ["MODES", "AnswerRequest", "Orchard", "build_orchard"]


@dataclass(frozen=True, kw_only=True)
class Orchard:
    """The use cases over one set of components (build it with :func:`build_orchard`)."""

    settings: Settings
    components: Components
    answers: Answering
    conversations: Conversations
    library: Library
    feedback: Feedback
    learning: Learning
    tuning: Tuning
    customization: Customization
    model_server: ModelServer
    keys: Any
    audit: Audit
    users: Any
    notify: Callable[[str], None]

    def with_settings(self, settings: Settings) -> Orchard:
        """Orchard for new settings (after the app saved them), keeping the heavy parts that do
        not depend on what changed (embedder, store, database)."""
        return build_orchard(settings, components=self.components.with_settings(settings), notify=self.notify,
                             model_server=None if isinstance(self.model_server, ModelServer) else self.model_server)  # fmt: skip

    def warm_up(self) -> None:
        """Build what the first question needs: the model client, the embedder (~12 s to import)
        and the BM25 index (seconds for a large store). The app runs this in a thread at start."""
        parts = self.components
        _ = parts.llm
        warm = getattr(parts.embeddings, "warm_up", None)
        if warm is not None:
            warm()
        if self.settings.team_mode:  # chunks of an older store count as shared: say so in their metadata, once
            parts.store.backfill_libraries()
        if parts.store.count():
            parts.store.lexical_search("warm up", 1)

    def close(self) -> None:
        """Dispose of what holds connections (the agent's tool sessions)."""
        self.components.close()

    def status(self) -> dict[str, Any]:
        """Endpoint, model and store facts for a status line (never raises for a down server)."""
        from orchard.errors import StoreInUse, StoreUnavailable

        try:
            chunks, store_note = self.library.count(), None
        except (StoreInUse, StoreUnavailable) as exc:  # held by another process, or the server is down: say so
            chunks, store_note = None, str(exc)
        return {
            **self.model_server.status(),
            "store": self.settings.chroma_url or str(self.settings.store_path),
            "chunks": chunks,
            **({"store_note": store_note} if store_note else {}),
        }


def build_orchard(
    settings: Settings | None = None,
    *,
    components: Components | None = None,
    notify: Callable[[str], None] | None = None,
    model_server: Any = None,
) -> Orchard:
    """Orchard from settings (default: :func:`orchard.config.load_settings`: environment, ``.env``,
    the app's saved settings, defaults).

    Args:
        settings: the configuration.
        components: ready parts (tests: a scripted model, fake embeddings); default: built from
            ``settings``, lazily.
        notify: where one-line news goes ("starting the embedded model server…").
        model_server: something with ``ensure()`` and ``status()`` in place of the real model
            server lifecycle (tests with a scripted model).
    """
    from orchard.config import load_settings
    from orchard.keys import KeyStore

    settings = settings or (components.settings if components is not None else load_settings())
    components = components or Components(settings)
    notify = notify or (lambda message: None)
    server = model_server or ModelServer(settings, notify=notify)
    answers = Answering(components=components, ensure_model=server.ensure)
    return Orchard(
        settings=settings,
        components=components,
        answers=answers,
        conversations=Conversations(components=components, answers=answers),
        library=Library(components=components),
        feedback=Feedback(components=components),
        learning=Learning(components=components),
        tuning=Tuning(components=components),
        customization=Customization(settings=settings),
        model_server=server,
        keys=KeyStore(components.database),
        audit=Audit(components=components),
        users=components.users,
        notify=notify,
    )
