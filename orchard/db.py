"""The app's state database: SQLite (the embedded default) or Postgres (a team), one schema.

Conversations (:mod:`orchard.history`), ratings and preference profiles (:mod:`orchard.feedback`),
API keys (:mod:`orchard.keys`), the users who logged in (:mod:`orchard.users`) and the audit trail
(:mod:`orchard.audit`) live in one database, reached through :class:`Database`:

* ``Database("sqlite:////srv/orchard/orchard.sqlite3")`` or a plain path (an SQLite file, as
  ``Database(db_path(data_dir))``): WAL, a 30 s busy timeout and foreign keys on every
  connection; every write is a ``BEGIN IMMEDIATE`` transaction, so writers from several threads
  and processes queue instead of failing.
* ``Database("postgresql+psycopg://orchard:pw@db.internal/orchard")``: a connection pool
  (``pool_pre_ping``: a connection Postgres dropped, e.g. after a restart, is replaced before
  use; a Postgres that refuses connections is retried for ``reconnect_wait`` seconds; a write
  that loses its connection midway is run again once, :meth:`Database.write`), transactions at
  READ COMMITTED; concurrent writers are safe because the stores write with single statements
  whose constraints and ``ON CONFLICT`` clauses do the arbitration.

The schema is managed by Alembic (:mod:`orchard.migrations`); opening a :class:`Database`
upgrades it to :data:`HEAD_REVISION`, under a lock (see :func:`orchard.migrations.upgrade`). An
SQLite file written before Alembic (``PRAGMA user_version`` 1..3) is upgraded in place.

SQL is written with named parameters (``:owner``); ``?`` placeholders with a tuple still work.
Rows read as ``row["owner"]`` and ``row[0]``. ``user`` is a reserved word in Postgres, so the
column holding a record's user key is called ``owner`` everywhere (migration 0004).

Example::

    >>> db = Database(db_path(Settings().data_dir))  # doctest: +SKIP
    >>> history, ratings = ConversationStore(db), FeedbackStore(db)  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import URL, make_url
from sqlalchemy.pool import StaticPool

from orchard.errors import NotFound, OrchardError

__all__ = [
    "DB_FILENAME",
    "GLOBAL_SLOT",
    "HEAD_REVISION",
    "Database",
    "NotFound",
    "Row",
    "StateUnavailable",
    "database_url",
    "db_path",
    "now",
    "to_json",
    "user_slot",
    "validate_user",
]

DB_FILENAME = "orchard.sqlite3"
USER_MAX_CHARS = 64
#: The Alembic revision this code reads and writes (orchard/migrations/versions/NNNN_*.py).
HEAD_REVISION = "0006"
#: Revisions are numbered; an SQLite file's ``PRAGMA user_version`` is set to the number too, so
#: an Orchard from before Alembic (which knew versions 1..3) refuses a newer file.
SCHEMA_VERSION = int(HEAD_REVISION)
SUPPORTED = ("sqlite", "postgresql")
T = TypeVar("T")
#: Connection failures that waiting does not cure: reported at once, not retried.
PERMANENT_FAILURES = ("authentication failed", "does not exist", "no pg_hba.conf entry", "unable to open database file")


class StateUnavailable(OrchardError):
    """The state database cannot be reached or used; the message names the URL and what to do."""


def db_path(data_dir: str | Path) -> Path:
    """Where the state database lives inside ``data_dir`` (``Settings().data_dir``)."""
    return Path(data_dir) / DB_FILENAME


def database_url(target: str | Path | URL) -> URL:
    """The SQLAlchemy URL of ``target``: a URL as given, a plain path as an SQLite file.

    ``postgresql://`` and ``postgres://`` mean psycopg 3 (``postgresql+psycopg://``).
    """
    if isinstance(target, URL):
        url = target
    elif isinstance(target, str) and "://" in target:
        try:
            url = make_url(target.strip())
        except sa_exc.ArgumentError as error:
            raise OrchardError(f"invalid state database URL {target!r} ({error}) — e.g. postgresql+psycopg://user:pw@host/db") from None
    else:
        url = URL.create("sqlite", database=str(Path(target).expanduser().resolve()))
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:") and not url.database.startswith("file:"):
        url = url.set(database=str(Path(url.database).expanduser().resolve()))  # a relative path means here, now
    if url.drivername in ("postgresql", "postgres"):
        url = url.set(drivername="postgresql+psycopg")
    if url.get_backend_name() not in SUPPORTED:
        shown = url.render_as_string(hide_password=True)
        raise OrchardError(f"the state database {shown} is neither SQLite nor Postgres — use sqlite:///PATH or postgresql+psycopg://...")
    return url


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


def now() -> float:
    """Seconds since the epoch (UTC), the timestamp stored in every table."""
    return time.time()


# Rows and results --------------------------------------------------------------------------


class Row(Sequence[Any]):
    """One result row: ``row[0]`` by position, ``row["owner"]`` by column name, ``keys()``."""

    __slots__ = ("_names", "_values")

    def __init__(self, values: tuple[Any, ...], names: Mapping[str, int]) -> None:
        self._values = values
        self._names = names

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            try:
                return self._values[self._names[key]]
            except KeyError:
                raise KeyError(f"no column {key!r} in this row (columns: {', '.join(self._names)})") from None
        return self._values[key]

    def __len__(self) -> int:
        return len(self._values)

    def keys(self) -> list[str]:
        return list(self._names)

    def __eq__(self, other: object) -> bool:
        return tuple(self) == (tuple(other) if isinstance(other, (Row, tuple)) else other)

    def __hash__(self) -> int:
        return hash(self._values)

    def __repr__(self) -> str:
        return f"Row({dict(zip(self._names, self._values, strict=False))!r})"


class Result:
    """What :meth:`Transaction.execute` returns: ``fetchone()``, ``fetchall()``, ``rowcount``."""

    def __init__(self, result: sa.CursorResult[Any]) -> None:
        self._result = result
        self.rowcount: int = result.rowcount
        self._names = {name: i for i, name in enumerate(result.keys())} if result.returns_rows else {}

    def fetchone(self) -> Row | None:
        row = self._result.fetchone() if self._names else None
        return None if row is None else Row(tuple(row), self._names)

    def fetchall(self) -> list[Row]:
        return [Row(tuple(row), self._names) for row in self._result.fetchall()] if self._names else []

    def scalar(self) -> Any:
        row = self.fetchone()
        return None if row is None else row[0]


_QMARK = re.compile(r"'(?:[^']|'')*'|\?")
_text = functools.lru_cache(maxsize=1024)(sa.text)  # parsing the same SQL once, not per call


def statement(sql: str | sa.Executable, params: Mapping[str, Any] | Sequence[Any] | None) -> tuple[Any, dict[str, Any]]:
    """``(statement, parameters)`` for SQLAlchemy: ``:name`` text as is, ``?`` text with a tuple
    numbered ``:p0, :p1 ...``, SQLAlchemy constructs (``text()``, Core) untouched."""
    if not isinstance(sql, str):
        return sql, dict(params or {})
    if params is None or isinstance(params, Mapping):
        return _text(sql), dict(params or {})
    values = list(params)
    count = iter(range(len(values) + 1))
    named = _QMARK.sub(lambda m: m.group(0) if m.group(0) != "?" else f":p{next(count)}", sql)
    return _text(named), {f"p{i}": value for i, value in enumerate(values)}


class Transaction:
    """One connection inside a transaction: ``execute(sql, params) -> Result``; ``dialect``."""

    def __init__(self, connection: sa.Connection) -> None:
        self.connection = connection
        self.dialect: str = connection.dialect.name

    def execute(self, sql: str | sa.Executable, params: Mapping[str, Any] | Sequence[Any] | None = None) -> Result:
        return Result(self.connection.execute(*statement(sql, params)))

    @property
    def for_update(self) -> str:
        """`` FOR UPDATE`` on Postgres (row locks at READ COMMITTED); SQLite's write transactions
        are already exclusive."""
        return " FOR UPDATE" if self.dialect == "postgresql" else ""


# The database --------------------------------------------------------------------------------


class Database:
    """The state database (SQLite file or Postgres), safe to share between threads and processes.

    Args:
        target: a SQLAlchemy URL (``sqlite:///PATH``, ``postgresql+psycopg://...``) or a path.
        timeout: SQLite: how long a writer waits for another (busy timeout); Postgres: the
            connect and pool timeouts.
        reconnect_wait: how long to keep retrying a connection that cannot be made (Postgres
            restarting) before saying so.
        migrate: upgrade the schema to :data:`HEAD_REVISION` on open (the default).
    """

    def __init__(self, target: str | Path | URL, *, timeout: float = 30.0, reconnect_wait: float = 10.0,
                 migrate: bool = True) -> None:  # fmt: skip
        self.url = database_url(target)
        self.dialect: str = self.url.get_backend_name()
        self.display_url = self.url.render_as_string(hide_password=True)
        self.reconnect_wait = reconnect_wait
        memory = self.dialect == "sqlite" and self.url.database in (None, "", ":memory:")
        uri = self.dialect == "sqlite" and str(self.url.database or "").startswith("file:")  # SQLite URI: as given
        self.path: Path | None = None if self.dialect != "sqlite" or memory or uri else Path(self.url.database)
        # An in-memory SQLite database is one connection: serialize its users.
        self._serial: Any = threading.RLock() if memory else contextlib.nullcontext()
        if self.path is not None:
            self._create_private_file(self.path)
        self.engine = self._make_engine(timeout, memory)
        if migrate:
            try:
                self._migrate()
            except BaseException:
                self.engine.dispose()
                raise

    @classmethod
    def coerce(cls, target: str | Path | URL | Database) -> Database:
        """``target`` itself if it is a :class:`Database`, else a new one opened at that URL/path."""
        return target if isinstance(target, Database) else cls(target)

    # --- the public API -----------------------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[Transaction]:
        """A write transaction: committed on success, rolled back on error (SQLite:
        ``BEGIN IMMEDIATE``, so writers queue for the busy timeout instead of failing)."""
        with self._serial:
            connection = self._connect()
            try:
                if self.dialect == "sqlite":
                    connection = connection.execution_options(sqlite_begin="IMMEDIATE")
                with connection.begin():
                    yield Transaction(connection)
            except sa_exc.DBAPIError as error:
                raise self._error(error) from error
            finally:
                connection.close()

    def write(self, work: Callable[[Transaction], T], *, retries: int = 1) -> T:
        """``work(conn)`` in a write transaction; when the connection is lost in the middle
        (Postgres restarted: the transaction was rolled back), it runs once more on a new one.

        Use it for writes that must not be lost to a restart (messages, ratings); ``work`` must be
        safe to run again from the start (no side effects outside ``conn``).
        """
        for attempt in range(retries + 1):
            try:
                with self.transaction() as conn:
                    return work(conn)
            except StateUnavailable as error:
                lost = isinstance(error.__cause__, sa_exc.DBAPIError) and error.__cause__.connection_invalidated
                if attempt == retries or not lost:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    def read(self, sql: str | sa.Executable, params: Mapping[str, Any] | Sequence[Any] | None = None) -> list[Row]:
        """All rows of one query. A connection that turns out dropped is replaced and the query
        run once more (reads are idempotent)."""
        for attempt in range(2):
            with self._serial:
                try:
                    connection = self._connect()
                    try:
                        if self.dialect == "sqlite":  # one statement reads one snapshot: no BEGIN needed
                            connection = connection.execution_options(sqlite_begin=None)
                        with connection.begin():
                            return Transaction(connection).execute(sql, params).fetchall()
                    finally:
                        connection.close()
                except sa_exc.DBAPIError as error:
                    if attempt == 0 and error.connection_invalidated:
                        continue
                    raise self._error(error) from error
        raise AssertionError("unreachable")  # pragma: no cover

    @property
    def revision(self) -> str | None:
        """The Alembic revision the database is at (None: not managed by Alembic yet)."""
        with self._serial:
            connection = self._connect()
            try:
                with connection.begin():
                    return current_revision(connection)
            finally:
                connection.close()

    @property
    def user_version(self) -> int:
        """The schema's number: SQLite's ``PRAGMA user_version``; Postgres: the revision's number."""
        if self.dialect == "sqlite":
            return int(self.read("PRAGMA user_version")[0][0])
        return int(self.revision or 0)

    def close(self) -> None:
        """Close every pooled connection (the object can still be used: it reconnects)."""
        self.engine.dispose()

    def __repr__(self) -> str:
        return f"Database({self.display_url!r})"

    # --- internals ----------------------------------------------------------------------------

    @staticmethod
    def _create_private_file(path: Path) -> None:
        """Conversations and ratings are private: a new file is owner-only (WAL files inherit it)."""
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
        except OSError as error:
            raise StateUnavailable(f"cannot create the state database {path} ({error.strerror}) — check ORCHARD_DATA_DIR / ORCHARD_STATE_URL") from None

    def _make_engine(self, timeout: float, memory: bool) -> sa.Engine:
        if self.dialect == "sqlite":
            options: dict[str, Any] = {"poolclass": StaticPool} if memory else {"pool_size": 5, "max_overflow": 15}
            engine = sa.create_engine(self.url, connect_args={"timeout": timeout, "check_same_thread": False}, **options)
            busy_ms = int(timeout * 1000)

            @event.listens_for(engine, "connect")
            def _configure(dbapi_connection: Any, _record: Any) -> None:
                dbapi_connection.isolation_level = None  # no implicit transactions: "begin" below issues BEGIN
                cursor = dbapi_connection.cursor()
                for pragma in ("journal_mode = WAL", "foreign_keys = ON", "synchronous = NORMAL", f"busy_timeout = {busy_ms}"):
                    cursor.execute(f"PRAGMA {pragma}")
                cursor.close()

            @event.listens_for(engine, "begin")
            def _begin(connection: sa.Connection) -> None:
                mode = connection.get_execution_options().get("sqlite_begin", "DEFERRED")
                if mode:  # None: a single read statement, in SQLite's own implicit transaction
                    connection.exec_driver_sql(f"BEGIN {mode}")

            return engine
        return sa.create_engine(
            self.url,
            pool_pre_ping=True,
            pool_size=5,
            max_overflow=15,
            pool_timeout=timeout,
            pool_recycle=1800,
            isolation_level="READ COMMITTED",
            connect_args={"connect_timeout": max(1, int(min(timeout, 10))), "application_name": "orchard"},
        )

    def _connect(self) -> sa.Connection:
        """A pooled connection; a database that refuses connections is retried for
        ``reconnect_wait`` seconds (Postgres restarting), then reported."""
        deadline = time.monotonic() + self.reconnect_wait
        delay = 0.1
        while True:
            try:
                return self.engine.connect()
            except sa_exc.DBAPIError as error:
                transient = isinstance(error, (sa_exc.OperationalError, sa_exc.InterfaceError)) and not any(
                    words in str(error.orig) for words in PERMANENT_FAILURES
                )
                if not transient or time.monotonic() + delay > deadline:
                    raise self._error(error) from error
                time.sleep(delay)
                delay = min(delay * 2, 1.0)

    def _error(self, error: sa_exc.DBAPIError) -> Exception:
        """An :class:`OrchardError` naming the URL and the fix for connection-level failures;
        other database errors (constraints) as they are."""
        if not isinstance(error, (sa_exc.OperationalError, sa_exc.InterfaceError)):
            return error
        detail = (str(error.orig).strip().splitlines() or ["?"])[0]
        if self.dialect == "postgresql":
            hint = ("is Postgres running and reachable, and are the user, password and database in ORCHARD_STATE_URL right?"
                    " The request can be retried once it is back")  # fmt: skip
        elif "locked" in detail or "busy" in detail:
            hint = "another process kept the file locked for longer than the busy timeout; try again"
        else:
            hint = "check that the file's folder exists and is writable (ORCHARD_DATA_DIR / ORCHARD_STATE_URL)"
        return StateUnavailable(f"the state database at {self.display_url} failed: {detail} — {hint}")

    def _migrate(self) -> None:
        """Upgrade to :data:`HEAD_REVISION` unless the database is already there (checked
        without importing Alembic: one cheap query when nothing is to do)."""
        with self._serial:
            connection = self._connect()
            try:
                with connection.begin():
                    at_head = current_revision(connection) == HEAD_REVISION and (
                        self.dialect != "sqlite" or _sqlite_user_version(connection) == SCHEMA_VERSION
                    )
            except sa_exc.DBAPIError as error:
                raise self._error(error) from error
            finally:
                connection.close()
            if not at_head:
                from orchard.migrations import upgrade

                upgrade(self)


def current_revision(connection: sa.Connection) -> str | None:
    """The revision in ``alembic_version``, or None when the table does not exist."""
    if connection.dialect.name == "sqlite":
        exists = connection.exec_driver_sql("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'alembic_version'").first()
    else:
        exists = connection.exec_driver_sql("SELECT to_regclass('alembic_version')").scalar()
    if not exists:
        return None
    return connection.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()


def _sqlite_user_version(connection: sa.Connection) -> int:
    return int(connection.exec_driver_sql("PRAGMA user_version").scalar() or 0)
