"""API keys for ``orchard api``: created and revoked by their owner, stored only as a hash.

A key reads ``orch_<id>_<secret>``; the database keeps its id, owner, name and the sha256 of the
whole key — a leaked database gives no usable key. :meth:`KeyStore.verify` compares hashes in
constant time and returns the key's owner. Creating and revoking a key each write an audit entry
(``key.create``, ``key.revoke``; :mod:`orchard.audit`) in the same transaction as the key.

Example::

    >>> keys = KeyStore(Database(db_path(data_dir)))  # doctest: +SKIP
    >>> created = keys.create(user="ana", name="laptop")  # doctest: +SKIP
    >>> keys.verify(created.key).user  # doctest: +SKIP
    'ana'
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from pathlib import Path

from orchard.audit import AuditLog
from orchard.db import Database, NotFound, now, validate_user
from orchard.errors import OrchardError

PREFIX = "orch"
NAME_MAX_CHARS = 64
LAST_USED_RESOLUTION_S = 60.0  # `last_used_at` is kept to the minute


@dataclass(frozen=True)
class ApiKey:
    """A key as listed (never with its secret)."""

    id: str
    user: str
    name: str
    created_at: float
    last_used_at: float | None
    revoked_at: float | None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


@dataclass(frozen=True)
class CreatedKey:
    """A new key: ``key`` is shown once, here, and never again."""

    key: str
    info: ApiKey


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


class KeyStore:
    """The API keys in the state database."""

    def __init__(self, db: str | Path | Database) -> None:
        self.db = Database.coerce(db)

    def create(self, *, user: str, name: str) -> CreatedKey:
        """A new key for ``user`` (shown once, in the result); audited as ``key.create``."""
        user = validate_user(user)
        name = " ".join(str(name).split())[:NAME_MAX_CHARS]
        if not name:
            msg = "give the key a name (--name), so you can tell your keys apart"
            raise OrchardError(msg)
        key_id = secrets.token_hex(6)
        key = f"{PREFIX}_{key_id}_{secrets.token_urlsafe(32)}"
        stamp = now()
        with self.db.transaction() as conn:
            conn.execute(
                "INSERT INTO api_keys (id, owner, name, secret_hash, created_at) VALUES (:id, :owner, :name, :hash, :stamp)",
                {"id": key_id, "owner": user, "name": name, "hash": _hash(key), "stamp": stamp},
            )
            AuditLog.write(conn, user, "key.create", key_id, name=name)
        return CreatedKey(key=key, info=ApiKey(key_id, user, name, stamp, None, None))

    def list(self, user: str | None = None) -> list[ApiKey]:
        """Keys (of ``user``, or everyone's), newest first, revoked ones included."""
        sql = "SELECT id, owner, name, created_at, last_used_at, revoked_at FROM api_keys"
        rows = self.db.read(sql + (" WHERE owner = :owner" if user else "") + " ORDER BY created_at DESC",
                            {"owner": validate_user(user)} if user else {})  # fmt: skip
        return [ApiKey(*tuple(row)) for row in rows]

    def active_count(self) -> int:
        return int(self.db.read("SELECT COUNT(*) FROM api_keys WHERE revoked_at IS NULL")[0][0])

    def revoke(self, key_id: str, *, user: str | None = None, by: str | None = None) -> ApiKey:
        """Revoke a key (``user``: only one of theirs); audited as ``key.revoke`` by ``by``
        (default: ``user``; neither: ``(local admin)``, the CLI)."""
        with self.db.transaction() as conn:
            row = conn.execute("SELECT owner, revoked_at FROM api_keys WHERE id = :id" + conn.for_update,
                               {"id": str(key_id)}).fetchone()  # fmt: skip
            if row is None or (user is not None and row["owner"] != validate_user(user)):
                raise NotFound(f"no key {key_id}" + (" of yours" if user else ""))
            conn.execute("UPDATE api_keys SET revoked_at = COALESCE(revoked_at, :stamp) WHERE id = :id",
                         {"stamp": now(), "id": str(key_id)})  # fmt: skip
            if row["revoked_at"] is None:
                AuditLog.write(conn, by or user or "(local admin)", "key.revoke", str(key_id), owner=row["owner"])
        return next(k for k in self.list() if k.id == key_id)

    def verify(self, key: str) -> ApiKey | None:
        """The active key ``key`` is, or None (wrong, unknown or revoked)."""
        parts = str(key or "").split("_")
        if len(parts) < 3 or parts[0] != PREFIX:
            return None
        rows = self.db.read("SELECT * FROM api_keys WHERE id = :id", {"id": parts[1]})
        if not rows or rows[0]["revoked_at"] is not None:
            return None
        row = rows[0]
        if not hmac.compare_digest(row["secret_hash"], _hash(key)):
            return None
        stamp, used = now(), row["last_used_at"]
        if used is None or stamp - used > LAST_USED_RESOLUTION_S:  # not a write per request
            with self.db.transaction() as conn:
                conn.execute("UPDATE api_keys SET last_used_at = :stamp WHERE id = :id", {"stamp": stamp, "id": row["id"]})
            used = stamp
        return ApiKey(row["id"], row["owner"], row["name"], row["created_at"], used, None)
