"""The people who logged in: one row per identity, upserted at each login.

:meth:`UserDirectory.seen` is called once per login — when the app first sees a logged-in
``st.user`` in a session, not on every rerun; a request with an API key is not a login — with the
:class:`orchard.identity.Identity` of :func:`orchard.identity.identity_from_claims`. The row keeps
the latest name, e-mail and admin flag from the claims, the first and last login times and the
number of logins, and a ``login`` entry goes to the audit trail in the same transaction.

Example::

    >>> users = UserDirectory(Database(db_path(data_dir)))  # doctest: +SKIP
    >>> users.seen(identity).logins  # doctest: +SKIP
    1
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from orchard.audit import AuditLog
from orchard.db import Database, NotFound, Row, Transaction, now, validate_user
from orchard.identity import Identity

__all__ = ["UserDirectory", "UserRecord"]


@dataclass(frozen=True)
class UserRecord:
    """A person as stored: ``user`` is :attr:`Identity.user`, the key every other table uses."""

    user: str
    name: str
    email: str | None
    is_admin: bool
    issuer: str | None
    subject: str | None
    first_login_at: float
    last_login_at: float
    logins: int


class UserDirectory:
    """The ``users`` table. ``db``: a state database URL, an SQLite file or a shared Database."""

    def __init__(self, db: str | Path | Database) -> None:
        self.db = Database.coerce(db)

    def seen(self, identity: Identity, *, audit: bool = True) -> UserRecord:
        """Record a login of ``identity`` (insert, or refresh name/e-mail/admin and count it);
        with ``audit``, a ``login`` entry in the same transaction."""
        user = validate_user(identity.user)
        stamp = now()
        values = {"user_key": user, "issuer": identity.issuer, "subject": identity.subject,
                  "name": (identity.name or user).strip()[:200], "email": identity.email,
                  "is_admin": bool(identity.is_admin), "stamp": stamp}  # fmt: skip

        def upsert(conn: Transaction) -> Row:
            row = conn.execute(
                "INSERT INTO users (user_key, issuer, subject, name, email, is_admin, first_login_at, last_login_at, logins)"
                " VALUES (:user_key, :issuer, :subject, :name, :email, :is_admin, :stamp, :stamp, 1)"
                " ON CONFLICT (user_key) DO UPDATE SET issuer = excluded.issuer, subject = excluded.subject,"
                " name = excluded.name, email = excluded.email, is_admin = excluded.is_admin,"
                " last_login_at = excluded.last_login_at, logins = users.logins + 1"
                " RETURNING *",
                values,
            ).fetchone()
            if audit:
                AuditLog.write(conn, user, "login", None, admin=bool(identity.is_admin), team=identity.team)
            return row

        return _record(self.db.write(upsert))

    def get(self, user: str) -> UserRecord:
        """The stored record; :class:`~orchard.db.NotFound` if this user never logged in."""
        rows = self.db.read("SELECT * FROM users WHERE user_key = :user", {"user": validate_user(user)})
        if not rows:
            raise NotFound(f"no user {user!r} has logged in")
        return _record(rows[0])

    def list(self) -> list[UserRecord]:
        """Everyone who logged in, most recent login first."""
        return [_record(row) for row in self.db.read("SELECT * FROM users ORDER BY last_login_at DESC, user_key")]


def _record(row: Row) -> UserRecord:
    return UserRecord(
        user=row["user_key"],
        name=row["name"],
        email=row["email"],
        is_admin=bool(row["is_admin"]),
        issuer=row["issuer"],
        subject=row["subject"],
        first_login_at=row["first_login_at"],
        last_login_at=row["last_login_at"],
        logins=int(row["logins"]),
    )
