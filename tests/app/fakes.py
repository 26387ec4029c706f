"""A chat service for the app's tests: the real :class:`ChatService` with its model side scripted.

Conversations, ratings, profiles, the library (upload, delete, re-index), prompts, the
constitution and saved settings are the real ones, on the test's temporary data folder, with
bag-of-words embeddings (no model download, milliseconds per file). ``stream`` is scripted per
mode and records every call; ``status`` never touches the network. Documents answers quote the
best passage the real hybrid retriever finds, so an uploaded file's content reaches the answer.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from orchard.config import Settings
from orchard.errors import EmptyStore
from orchard.service import ChatService
from tests.fakes import HashEmbeddings

PYTHON_PROGRAM = "result = 17 * 23\nprint(result)"
CRITIQUES = [
    {"principle": "harmless", "critique": "NO. Nothing harmful.", "needs_revision": False},
    {"principle": "honest", "critique": "YES. It sounds too sure.", "needs_revision": True},
    {"principle": "helpful", "critique": "NO. It answers.", "needs_revision": False},
]


class FakeChatService(ChatService):
    """The real service; ``stream`` and ``status`` scripted. Set ``error`` to make answers fail."""

    def __init__(self, settings: Settings, *, notify: Any = None) -> None:
        super().__init__(settings, notify=notify)
        self.__dict__["embeddings"] = HashEmbeddings()
        self.calls: list[dict[str, Any]] = []
        self.error: Exception | None = None
        self.server_up = True

    @classmethod
    def at(cls, data_dir: Path, **settings: Any) -> FakeChatService:
        return cls(Settings(data_dir=data_dir, **settings))

    def status(self) -> dict[str, Any]:
        return {
            "llm_base_url": self.settings.llm_base_url,
            "llm_model": self.settings.llm_model,
            "model_server_up": self.server_up,
            "store": str(self.settings.store_path),
            "chunks": self.store.count(),
        }

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
        self.calls.append(
            {"question": question, "history": list(history or []), "mode": mode, "db_url": db_url,
             "tables": list(tables or ()), "user": user, "critique": critique}
        )  # fmt: skip
        if self.error is not None:
            raise self.error
        if mode == "auto":
            chosen = "agent" if re.search(r"\d\s*[*x×]\s*\d", question) else ("rag" if self.store.count() else "chat")
            yield {"mode": chosen, "route": {"tool": None, "kind": chosen, "mode": chosen, "reason": "scripted route"}}
            mode = chosen
        chunks = {"rag": self._rag, "agent": self._agent, "chat": self._chat}[mode](question)
        yield from (self._critiqued(chunks) if critique else chunks)

    def _rag(self, question: str) -> Iterator[dict[str, Any]]:
        if self.store.count() == 0:
            raise EmptyStore(str(self.settings.store_path))
        found = self.search(question, k=3)
        sources = [
            {"n": i, "source": f["source"], "title": Path(f["source"]).stem, "section": f["section"],
             "text": f["text"], "score": f["score"], "relevance": 0.5, "chunk_id": f["chunk_id"]}
            for i, f in enumerate(found, 1)
        ]  # fmt: skip
        yield {"question": question, "sources": sources}
        best = _best_sentence(question, sources[0]["text"]) if sources else "I found nothing."
        if sum(call["question"] == question for call in self.calls) > 1:
            best = f"In short: {best}"  # asked again (regenerate): another answer to prefer or reject
        for token in re.findall(r"\S+\s*", f"{best} [1]"):
            yield {"answer": token}
        yield {"cited": [1], "grounded": True}

    def _agent(self, question: str) -> Iterator[dict[str, Any]]:
        yield {"route": {"tool": "python", "kind": "compute", "mode": "agent", "reason": "a computation"}}
        yield {"tool_call": {"tool": "python", "input": {"code": PYTHON_PROGRAM}, "output": "391", "ok": True}}
        yield {"answer": "17 × 23 = 391."}

    def _chat(self, question: str) -> Iterator[dict[str, Any]]:
        for token in ["Hello! ", "How can ", "I help?"]:
            yield {"answer": token}

    def _critiqued(self, chunks: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for chunk in chunks:
            yield {("draft" if k == "answer" else k): v for k, v in chunk.items()}
        for item in CRITIQUES:
            yield {"critiques": [item]}
        yield {"answer": "Revised: I am not certain, but the sources suggest late winter [1]."}


def _best_sentence(question: str, text: str) -> str:
    """The passage's sentence sharing the most words with the question (an extractive answer)."""
    words = {w for w in re.findall(r"[a-z]+", question.lower()) if len(w) > 3}
    sentences = [" ".join(s.split()) for s in re.split(r"(?<=[.!?])\s+|\n\n", text) if s.strip()]
    return max(sentences, key=lambda s: len(words & set(re.findall(r"[a-z]+", s.lower()))))
