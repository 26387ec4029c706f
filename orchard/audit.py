"""The audit trail: who asked, uploaded, deleted, exported, created or revoked a key, logged in.

One row per action in the state database's ``audit`` table (time, actor = the user key, action,
target, a JSON ``detail``). :meth:`AuditLog.record` never raises into the caller's request: a
trail that cannot be written is logged (``orchard.audit`` logger) and the request goes on.
Writes that must not happen without their trail (a key created, a key revoked: :mod:`orchard.keys`)
use :meth:`AuditLog.write` inside their own transaction instead, so both commit or neither.

Admins read it through :class:`orchard.usecases.audit.Audit` (``entries``, ``export``).

Example::

    >>> log = AuditLog(Database(db_path(data_dir)))  # doctest: +SKIP
    >>> log.record("oidc-1f2e...", "upload", "shared/handbook.pdf", library="shared", chunks=42)  # doctest: +SKIP
    >>> log.entries(action="upload")[0].target  # doctest: +SKIP
    'shared/handbook.pdf'
"""

from __future__ import annotations

import csv
import io
import json
import logging
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from orchard.db import Database, Row, Transaction, now, to_json

__all__ = ["ACTIONS", "AuditEntry", "AuditLog"]

log = logging.getLogger("orchard.audit")

#: The actions Orchard records. Other names of the same form (``library.share``) are accepted.
ACTIONS = ("ask", "upload", "delete", "export", "key.create", "key.revoke", "login")
ACTION_PATTERN = re.compile(r"^[a-z][a-z0-9_.-]{0,39}$")
ACTOR_MAX_CHARS = 64
TARGET_MAX_CHARS = 500
DEFAULT_LIMIT = 200
CSV_COLUMNS = ("id", "at", "user", "action", "target", "detail")


@dataclass(frozen=True)
class AuditEntry:
    """One recorded action. ``at``: seconds since the epoch (UTC); ``user``: who did it."""

    id: int
    at: float
    user: str
    action: str
    target: str | None
    detail: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """The export's shape: ``at`` as ISO 8601 (UTC)."""
        return {"id": self.id, "at": _iso(self.at), "user": self.user, "action": self.action, "target": self.target,
                "detail": self.detail}  # fmt: skip


class AuditLog:
    """The ``audit`` table. ``db``: a state database URL, an SQLite file or a shared Database."""

    def __init__(self, db: str | Path | Database) -> None:
        self.db = Database.coerce(db)

    def record(self, user: str | None, action: str, target: Any = None, **detail: Any) -> bool:
        """Record one action in its own transaction; True if written. Never raises: a failure is
        logged with the entry, and the caller's request goes on."""
        try:
            self.db.write(lambda conn: self.write(conn, user, action, target, **detail))
            return True
        except Exception:
            log.exception("could not record audit entry %s %s %r", user, action, target)
            return False

    @staticmethod
    def write(conn: Transaction, user: str | None, action: str, target: Any = None, **detail: Any) -> None:
        """Record inside the caller's transaction (it commits or rolls back with theirs).

        Raises:
            ValueError: ``action`` is not a short lower-case name.
        """
        if not isinstance(action, str) or not ACTION_PATTERN.match(action):
            raise ValueError(f"invalid audit action {action!r} — expected one of {', '.join(ACTIONS)}")
        actor = " ".join(str(user or "").split())[:ACTOR_MAX_CHARS] or "(anonymous)"
        shown_target = None if target is None else str(target)[:TARGET_MAX_CHARS]
        conn.execute(
            "INSERT INTO audit (at, actor, action, target, detail) VALUES (:at, :actor, :action, :target, :detail)",
            {"at": now(), "actor": actor, "action": action, "target": shown_target, "detail": to_json(detail)},
        )

    def entries(self, *, user: str | None = None, action: str | None = None, since: float | datetime | None = None,
                limit: int | None = DEFAULT_LIMIT) -> list[AuditEntry]:  # fmt: skip
        """Entries, newest first: of one ``user``, one ``action``, at or after ``since`` (a
        timestamp or an aware datetime); at most ``limit`` (None: all)."""
        clauses, params = [], {}
        if user is not None:
            clauses.append("actor = :actor")
            params["actor"] = str(user)
        if action is not None:
            clauses.append("action = :action")
            params["action"] = str(action)
        if since is not None:
            clauses.append("at >= :since")
            params["since"] = since.timestamp() if isinstance(since, datetime) else float(since)
        sql = "SELECT * FROM audit" + (" WHERE " + " AND ".join(clauses) if clauses else "") + " ORDER BY at DESC, id DESC"
        if limit is not None:
            sql += " LIMIT :limit"
            params["limit"] = max(0, int(limit))
        return [_entry(row) for row in self.db.read(sql, params)]

    def export_jsonl(self, **filters: Any) -> str:
        """Every matching entry (default: all), oldest first, one JSON object a line."""
        rows = reversed(self.entries(**{"limit": None, **filters}))
        return "".join(json.dumps(entry.as_dict(), ensure_ascii=False) + "\n" for entry in rows)

    def export_csv(self, **filters: Any) -> str:
        """Every matching entry (default: all), oldest first, as CSV with a header row
        (``detail`` as JSON). Cells a spreadsheet would run as a formula (``=``, ``+``, ``-``,
        ``@``) are prefixed with ``'``."""
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(CSV_COLUMNS)
        for entry in reversed(self.entries(**{"limit": None, **filters})):
            item = entry.as_dict()
            item["detail"] = json.dumps(entry.detail, ensure_ascii=False)
            writer.writerow([_cell(item[column]) for column in CSV_COLUMNS])
        return out.getvalue()


def _entry(row: Row) -> AuditEntry:
    try:
        detail = json.loads(row["detail"] or "{}")
    except ValueError:
        detail = {"raw": row["detail"]}
    return AuditEntry(id=row["id"], at=row["at"], user=row["actor"], action=row["action"], target=row["target"],
                      detail=detail if isinstance(detail, dict) else {"value": detail})  # fmt: skip


def _iso(stamp: float) -> str:
    return datetime.fromtimestamp(stamp, UTC).isoformat()


def _cell(value: Any) -> Any:
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return "" if value is None else value
