"""The audit trail: recording never breaks a request, filters, CSV/JSONL export (formula cells
neutralized), and the admin-only use case — the store on both engines."""

from __future__ import annotations

import csv
import io
import json
import logging
from types import SimpleNamespace

import pytest

from orchard.audit import ACTIONS, AuditLog
from orchard.db import Database
from orchard.errors import PermissionDenied
from orchard.identity import Identity, personal_identity
from orchard.usecases.audit import Audit
from tests.servers.plugin import postgres_server_fixture, postgres_url_fixture, state_url_fixture  # noqa: F401


@pytest.fixture
def log(state_url: str) -> AuditLog:
    return AuditLog(Database(state_url))


def test_entries_are_recorded_newest_first_and_filtered(log: AuditLog) -> None:
    assert log.record("ana", "ask", "c1", mode="rag", question_chars=42)
    assert log.record("bob", "upload", "shared/handbook.pdf", library="shared", chunks=12)
    assert log.record("ana", "delete", "user:ana/notes.md")
    everything = log.entries()
    assert [(e.user, e.action, e.target) for e in everything] == [
        ("ana", "delete", "user:ana/notes.md"), ("bob", "upload", "shared/handbook.pdf"), ("ana", "ask", "c1")]  # fmt: skip
    assert everything[-1].detail == {"mode": "rag", "question_chars": 42}
    assert [e.action for e in log.entries(user="ana")] == ["delete", "ask"]
    assert [e.user for e in log.entries(action="upload")] == ["bob"]
    assert [e.action for e in log.entries(since=everything[1].at)] == ["delete", "upload"]
    assert len(log.entries(limit=1)) == 1 and log.entries(user="nobody") == []
    assert set(ACTIONS) >= {"ask", "upload", "delete", "export", "key.create", "key.revoke", "login"}


def test_recording_never_raises_into_the_request(log: AuditLog, caplog: pytest.LogCaptureFixture) -> None:
    assert log.record("ana", "Not An Action!") is False  # refused, logged
    with log.db.transaction() as conn:
        conn.execute("DROP TABLE audit")
    with caplog.at_level(logging.ERROR, logger="orchard.audit"):
        assert log.record("ana", "ask", "c1") is False
    assert "could not record audit entry ana ask" in caplog.text


def test_exports_have_every_entry_oldest_first(log: AuditLog) -> None:
    log.record("ana", "upload", "=HYPERLINK(\"http://evil\")", size=3)
    log.record("bob", "export", "ratings", format="dpo")
    rows = list(csv.DictReader(io.StringIO(log.export_csv())))
    assert [r["user"] for r in rows] == ["ana", "bob"] and list(rows[0]) == ["id", "at", "user", "action", "target", "detail"]
    assert rows[0]["target"].startswith("'=HYPERLINK")  # a spreadsheet shows it, does not run it
    assert json.loads(rows[0]["detail"]) == {"size": 3} and rows[0]["at"].endswith("+00:00")
    lines = [json.loads(line) for line in log.export_jsonl().splitlines()]
    assert [(r["user"], r["action"], r["detail"]) for r in lines] == [("ana", "upload", {"size": 3}), ("bob", "export", {"format": "dpo"})]
    assert [r["user"] for r in map(json.loads, log.export_jsonl(user="bob").splitlines())] == ["bob"]


def test_only_admins_read_or_export_and_an_export_is_itself_recorded(log: AuditLog) -> None:
    audit = Audit(components=SimpleNamespace(audit=log))  # type: ignore[arg-type]
    log.record("ana", "ask", "c1")
    member = Identity(user="oidc-bob", name="Bob", team=True)
    for call in (lambda: audit.entries(member), lambda: audit.export(member, "csv")):
        with pytest.raises(PermissionDenied, match="only an admin"):
            call()
    admin = personal_identity("local")
    assert [e.action for e in audit.entries(admin)] == ["ask"]
    assert "ana,ask,c1" in audit.export(admin, "csv")
    with pytest.raises(ValueError, match="csv, jsonl"):
        audit.export(admin, "xml")
    exported = audit.entries(admin, action="export")
    assert [(e.user, e.target, e.detail) for e in exported] == [("local", "audit", {"format": "csv"})]
