"""Ratings as training data, outside a conversation: import, list, delete, export; profiles.

Ratings made in a conversation go through :meth:`Conversations.rate`
(:mod:`orchard.usecases.conversations`), which finds the prompt, context and sources itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from orchard.components import Components
from orchard.feedback import EXPORT_FORMATS, RATINGS  # what add() and export() accept

__all__ = ["EXPORT_FORMATS", "RATINGS", "Feedback"]


class Feedback:
    """The feedback use case over the state database's ratings and profiles."""

    def __init__(self, *, components: Components) -> None:
        self.components = components

    def add(self, **rating: Any) -> Any:
        """Store a rating made elsewhere (``user``, ``prompt``, ``response``, ``rating`` ...) and
        refresh that user's derived preference lines, as a thumb in the app does."""
        record = self.components.feedback.add(**rating)
        self.components.profiles.update_profile_from_feedback(record.user)
        # No background retrain here: an import is a batch of ratings in a short-lived command;
        # `orchard reward train` trains once after it (the app and the API retrain as they rate).
        return record

    def list(self, user: str | None = None) -> list[Any]:
        return self.components.feedback.list(user)

    def delete(self, feedback_id: int, *, user: str | None = None) -> None:
        self.components.feedback.delete(feedback_id, user=user)

    def export(self, fmt: str, path: str | Path, *, user: str | None = None) -> int:
        """Write ``dpo``/``sft``/``jsonl`` training data to ``path``; rows written."""
        rows = self.components.feedback.write_export(fmt, path, user=user)
        self.components.audit.record(user, "export", f"feedback.{fmt}", rows=rows)
        return rows

    def profile(self, user: str) -> str:
        return self.components.profiles.get(user)

    def set_profile(self, user: str, text: str) -> str:
        return self.components.profiles.set(user, text)

    def delete_profile(self, user: str) -> None:
        self.components.profiles.delete(user)
