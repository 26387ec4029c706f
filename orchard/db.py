"""The app's state database: one SQLite file, ``<data_dir>/orchard.sqlite3``.

Conversations (:mod:`orchard.history`), ratings and preference profiles (:mod:`orchard.feedback`)
live in this one file. :class:`Database` owns one connection shared by the threads of a process
(Streamlit runs callbacks on several): every statement runs under a lock, writes run in
``BEGIN IMMEDIATE`` transactions, and WAL mode plus a busy timeout let a second process (the CLI)
use the same file. The schema is created idempotently; ``PRAGMA user_version`` counts the
migrations applied, so a later schema change is one more entry in :data:`MIGRATIONS`.

Example::

    >>> db = Database(db_path(Settings().data_dir))  # doctest: +SKIP
    >>> history, ratings = ConversationStore(db), FeedbackStore(db)  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from orchard.errors import NotFound, OrchardError

__all__ = ["DB_FILENAME", "GLOBAL_SLOT", "Database", "NotFound", "db_path", "now", "to_json", "user_slot", "validate_user"]

DB_FILENAME = "orchard.sqlite3"
USER_MAX_CHARS = 64

# One entry per schema version; entry i takes the database from user_version i to i + 1.
MIGRATIONS: list[list[str]] = [
    [
        """CREATE TABLE conversations (
            id TEXT PRIMARY KEY,                  -- uuid4 hex
            user TEXT NOT NULL,
            title TEXT,                           -- NULL until set: the first question fills it
            mode TEXT NOT NULL DEFAULT 'auto',
            db_url TEXT,                          -- the agent's database for this conversation
            tables TEXT NOT NULL DEFAULT '[]',    -- JSON list of attached table file paths
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL              -- last message (sidebar order)
        )""",
        "CREATE INDEX conversations_by_user ON conversations (user, updated_at DESC)",
        """CREATE TABLE messages (
            id INTEGER PRIMARY KEY,
            conversation_id TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
            parent_id INTEGER REFERENCES messages (id) ON DELETE CASCADE,  -- NULL: first version
            is_current INTEGER NOT NULL DEFAULT 1,  -- the version shown, one per turn
            role TEXT NOT NULL CHECK (role IN ('user', 'assistant')),
            content TEXT NOT NULL,
            meta TEXT NOT NULL DEFAULT '{}',      -- JSON: sources, tool_calls, route, model, ...
            created_at REAL NOT NULL
        )""",
        "CREATE INDEX messages_by_conversation ON messages (conversation_id, id)",
        "CREATE INDEX messages_by_parent ON messages (parent_id)",
        """CREATE TABLE feedback (
            id INTEGER PRIMARY KEY,
            user TEXT NOT NULL,
            conversation_id TEXT,                 -- no foreign key: ratings outlive a chat
            message_id INTEGER,
            prompt TEXT NOT NULL,
            context TEXT,                         -- JSON: what the model saw besides the prompt
            response TEXT NOT NULL,
            sources TEXT NOT NULL DEFAULT '[]',   -- JSON list
            model TEXT,
            rating TEXT NOT NULL CHECK (rating IN ('up', 'down')),
            comment TEXT,
            created_at REAL NOT NULL              -- time of the latest rating
        )""",
        "CREATE INDEX feedback_by_user ON feedback (user, created_at)",
        """CREATE UNIQUE INDEX feedback_one_per_message ON feedback (user, message_id)
            WHERE message_id IS NOT NULL""",
        """CREATE TABLE profiles (
            user TEXT PRIMARY KEY,
            manual TEXT NOT NULL DEFAULT '',      -- lines the user wrote (never overwritten)
            derived TEXT NOT NULL DEFAULT '',     -- lines derived from feedback (recomputed)
            dismissed TEXT NOT NULL DEFAULT '[]', -- JSON: derived lines the user removed
            since REAL NOT NULL DEFAULT 0,        -- derive only from feedback after this time
            updated_at REAL NOT NULL
        )""",
    ],
    [
        """CREATE TABLE api_keys (
            id TEXT PRIMARY KEY,                  -- public key id (the key's prefix)
            user TEXT NOT NULL,                   -- whose data the key reaches
            name TEXT NOT NULL,
            secret_hash TEXT NOT NULL,            -- sha256 of the whole key; the key is never stored
            created_at REAL NOT NULL,
            last_used_at REAL,
            revoked_at REAL
        )""",
        "CREATE INDEX api_keys_by_user ON api_keys (user, created_at)",
    ],
    [
        # Preference pairs that are not two thumbs on one prompt (those are derived from
        # `feedback` at export): the critique's revision over its draft, a best-of-n candidate
        # the user preferred over the one picked for them.
        """CREATE TABLE preference_pairs (
            id INTEGER PRIMARY KEY,
            user TEXT NOT NULL,
            source TEXT NOT NULL CHECK (source IN ('ai-feedback', 'best-of-n')),
            prompt TEXT NOT NULL,
            chosen TEXT NOT NULL,
            rejected TEXT NOT NULL,
            principle TEXT,                       -- ai-feedback: the principles the draft failed
            conversation_id TEXT,
            message_id INTEGER,                   -- the answer (the chosen one) it came from
            created_at REAL NOT NULL
        )""",
        "CREATE INDEX preference_pairs_by_user ON preference_pairs (user, created_at)",
    ],
]
SCHEMA_VERSION = len(MIGRATIONS)


def db_path(data_dir: str | Path) -> Path:
    """Where the state database lives inside ``data_dir`` (``Settings().data_dir``)."""
    return Path(data_dir) / DB_FILENAME


def validate_user(user: object) -> str:
    """The user name, trimmed; ``ValueError`` if empty, longer than 64 characters or not text."""
    if not isinstance(user, str):
        msg = f"the user name must be text, not {type(user).__name__}"
        raise ValueError(msg)
    name = user.strip()
    if not name:
        msg = "the user name is empty — enter a name (it keeps your conversations and ratings apart)"
        raise ValueError(msg)
    if len(name) > USER_MAX_CHARS:
        msg = f"the user name is {len(name)} characters long — at most {USER_MAX_CHARS} are allowed"
        raise ValueError(msg)
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in name):
        msg = "the user name contains control characters (newlines, tabs, ...) — use plain text"
        raise ValueError(msg)
    return name


GLOBAL_SLOT = "_global"


def user_slot(user: str | None) -> str:
    """A user's name in paths and files: ``u-`` + the first 24 hex digits of the SHA-256 of the
    name (any name is path-safe and never appears itself); ``None`` (everyone's): ``_global``."""
    if user is None:
        return GLOBAL_SLOT
    return "u-" + hashlib.sha256(validate_user(user).encode("utf-8")).hexdigest()[:24]


def to_json(value: Any) -> str:
    """JSON text for a column; objects JSON cannot represent (paths, dates) are stored as text."""
    return json.dumps(value, ensure_ascii=False, default=str)


class Database:
    """One SQLite file, safe to share between threads. Use :meth:`transaction` and :meth:`read`."""

    def __init__(self, path: str | Path, *, timeout: float = 30.0) -> None:
        self.path = Path(path).expanduser().resolve()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        new = not self.path.exists()
        self._lock = threading.RLock()
        # isolation_level=None: no implicit transactions; transaction() issues BEGIN itself.
        self._conn = sqlite3.connect(
            self.path, timeout=timeout, check_same_thread=False, isolation_level=None
        )
        if new:  # conversations and ratings are private: owner-only (WAL files inherit the mode)
            try:
                os.chmod(self.path, 0o600)
            except OSError:
                pass
        self._conn.row_factory = sqlite3.Row
        self._conn.execute("PRAGMA journal_mode = WAL")
        self._conn.execute("PRAGMA foreign_keys = ON")
        self._conn.execute("PRAGMA synchronous = NORMAL")
        try:
            self._migrate()
        except BaseException:
            self._conn.close()
            raise

    @classmethod
    def coerce(cls, target: str | Path | Database) -> Database:
        """``target`` itself if it is a :class:`Database`, else a new one opened at that path."""
        return target if isinstance(target, Database) else cls(target)

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction (``BEGIN IMMEDIATE``): committed on success, rolled back on error."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def read(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        """All rows of one query."""
        with self._lock:
            return self._conn.execute(sql, params).fetchall()

    @property
    def user_version(self) -> int:
        return int(self.read("PRAGMA user_version")[0][0])

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def _migrate(self) -> None:
        with self.transaction() as conn:
            version = int(conn.execute("PRAGMA user_version").fetchone()[0])
            if version > SCHEMA_VERSION:
                msg = (
                    f"{self.path} has schema version {version}, newer than this Orchard"
                    f" ({SCHEMA_VERSION}) — upgrade Orchard, or point ORCHARD_DATA_DIR elsewhere"
                )
                raise OrchardError(msg)
            for number in range(version, SCHEMA_VERSION):
                for statement in MIGRATIONS[number]:
                    conn.execute(statement)
            if version != SCHEMA_VERSION:
                conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


def now() -> float:
    """Seconds since the epoch (UTC), the timestamp stored in every table."""
    return time.time()
