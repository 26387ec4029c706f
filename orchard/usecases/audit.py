"""The audit trail, for admins: read it, export it (``orchard.audit``).

Every method takes the asker's :class:`~orchard.identity.Identity` first and raises
:class:`~orchard.errors.PermissionDenied` unless they are an admin (personal mode: the one user
is the admin of their machine). An export is itself recorded (``export``, target ``audit``).
"""

from __future__ import annotations

from typing import Any

from orchard.audit import ACTIONS, AuditEntry
from orchard.components import Components
from orchard.errors import PermissionDenied
from orchard.identity import Identity

__all__ = ["ACTIONS", "EXPORT_FORMATS", "Audit"]

EXPORT_FORMATS = ("csv", "jsonl")


class Audit:
    """Admins' view of who asked, uploaded, deleted, exported, created or revoked a key, logged in."""

    def __init__(self, *, components: Components) -> None:
        self.components = components

    @property
    def log(self) -> Any:
        """The :class:`~orchard.audit.AuditLog` (``components.audit``)."""
        return self.components.audit

    def entries(self, identity: Identity, *, user: str | None = None, action: str | None = None, since: Any = None,
                limit: int | None = 200) -> list[AuditEntry]:  # fmt: skip
        """Entries, newest first, filtered by ``user`` (their key), ``action``, ``since``."""
        _require_admin(identity, "read the audit trail")
        return self.log.entries(user=user, action=action, since=since, limit=limit)

    def export(self, identity: Identity, fmt: str = "csv", **filters: Any) -> str:
        """The whole trail (or the filtered part) as ``csv`` or ``jsonl`` text; recorded as an export."""
        _require_admin(identity, "export the audit trail")
        if fmt not in EXPORT_FORMATS:
            raise ValueError(f"unknown audit export format {fmt!r} — expected one of {', '.join(EXPORT_FORMATS)}")
        text = self.log.export_csv(**filters) if fmt == "csv" else self.log.export_jsonl(**filters)
        self.log.record(identity.user, "export", "audit", format=fmt, **{k: str(v) for k, v in filters.items()})
        return text


def _require_admin(identity: Identity, what: str) -> None:
    if not getattr(identity, "is_admin", False):
        raise PermissionDenied(f"only an admin may {what} — ask one of this Orchard's admins (ORCHARD_OIDC_ADMINS)")
