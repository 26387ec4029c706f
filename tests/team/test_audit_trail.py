"""The audit trail hears who asked, uploaded, deleted and exported (issue 12, item 6) — and only
admins read it. Scripted model, team mode, the real state database."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchard.errors import PermissionDenied
from orchard.identity import Identity
from tests.fakes import ScriptedChatModel, scripted_orchard
from tests.team.test_isolation import ADMIN, ANA, TEAM


def test_asks_uploads_deletes_and_exports_are_recorded_for_admins_only(tmp_path: Path) -> None:
    orchard = scripted_orchard(tmp_path / "data", llm=ScriptedChatModel.with_replies(*["Late winter [1]."] * 4), answer_checks=False, **TEAM)
    try:
        orchard.library.upload([("notes.md", b"# Notes\n\nApples are pruned in late winter.\n")], identity=ANA)
        chat = orchard.conversations.create(ANA.user)
        orchard.conversations.ask(ANA.user, chat.id, "When are apples pruned?").result()
        orchard.feedback.export("jsonl", tmp_path / "out.jsonl", user=ANA.user)
        assert orchard.library.delete("uploads/notes.md", identity=ANA) > 0

        trail = orchard.audit.entries(ADMIN, user=ANA.user)
        assert [e.action for e in reversed(trail)] == ["upload", "ask", "export", "delete"]
        ask = next(e for e in trail if e.action == "ask")
        assert ask.target == chat.id and "When are apples" not in str(ask.detail)  # who and when, never what
        assert next(e for e in trail if e.action == "delete").target == "uploads/notes.md"
        with pytest.raises(PermissionDenied):
            orchard.audit.entries(ANA)
        with pytest.raises(PermissionDenied):
            orchard.audit.export(Identity(user=ANA.user, name="Ana", team=True))
        assert "ask" in orchard.audit.export(ADMIN, fmt="csv")
        assert orchard.audit.entries(ADMIN, action="export", user=ADMIN.user)  # reading the whole trail out is itself recorded
    finally:
        orchard.close()
