"""``sql`` and ``sql_schema``: read-only SELECTs over a database, and what the database holds.

Read-only by construction, three walls, each enough on its own against a write:

1. :func:`tools.sql_guard.checked_select` accepts one SELECT and nothing else (sqlglot, in the
   engine's dialect); the statement that runs is sqlglot's rendering of what it checked.
2. The connection is read-only. SQLite: opened as ``file:<path>?mode=ro`` (the same as
   ``sqlite+pysqlite:///file:<path>?mode=ro&uri=true``) with ``PRAGMA query_only=ON``; Postgres and
   MySQL: a read-only session set on connect.
3. On SQLite, an authorizer (``set_authorizer``) that allows reads, SELECTs and harmless functions
   and denies everything else, ATTACH and ``VACUUM INTO`` included (``mode=ro`` alone does not stop
   those from creating files).

Results are capped at ``max_rows``; a query stops after ``timeout_s`` (SQLite: a progress handler;
Postgres/MySQL: a statement timeout).
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from langchain_core.callbacks import CallbackManagerForToolRun
from langchain_core.tools import BaseTool
from pydantic import BaseModel, Field, PrivateAttr
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.pool import StaticPool

from orchard.tools.base import ToolFailed, error_text, validation_text
from orchard.tools.sql_guard import FORBIDDEN_FUNCTIONS, checked_select, hint_for, render_rows, sqlglot_dialect

# --- the SQLite walls ---------------------------------------------------------------------------

_READ_ACTIONS = {sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_RECURSIVE}
# Pragmas that only describe the schema (SQLAlchemy's inspector uses them); any other is denied.
_SCHEMA_PRAGMAS = {"table_info", "table_xinfo", "table_list", "index_list", "index_info", "index_xinfo",
                   "foreign_key_list", "database_list", "collation_list"}


def _authorize(action: int, arg1: str | None, arg2: str | None, _db: str | None, _trigger: str | None) -> int:
    if action in _READ_ACTIONS:
        return sqlite3.SQLITE_OK
    if action == sqlite3.SQLITE_FUNCTION:
        return sqlite3.SQLITE_DENY if (arg2 or "").lower() in FORBIDDEN_FUNCTIONS else sqlite3.SQLITE_OK
    if action == sqlite3.SQLITE_PRAGMA:
        name = (arg1 or "").lower()
        ok = name in _SCHEMA_PRAGMAS or (name == "read_uncommitted" and arg2 is None)
        return sqlite3.SQLITE_OK if ok else sqlite3.SQLITE_DENY
    if action == sqlite3.SQLITE_UPDATE and arg1 == "sqlite_master":
        # SQLite asks this when it first instantiates an eponymous virtual table (json_each,
        # pragma_table_info). sqlite_master itself cannot be written without PRAGMA writable_schema,
        # which is denied above.
        return sqlite3.SQLITE_OK
    return sqlite3.SQLITE_DENY


def connect_sqlite(path: str | Path | None, *, read_only_uri: bool = True, query_only: bool = True,
                   authorizer: bool = True) -> sqlite3.Connection:
    """A SQLite connection with the walls switched on (each can be switched off to test the others).

    ``path=None`` is a private in-memory database.
    """
    if path is None:
        conn = sqlite3.connect(":memory:", check_same_thread=False)
    elif read_only_uri:
        conn = sqlite3.connect(Path(path).resolve().as_uri() + "?mode=ro", uri=True, check_same_thread=False)
    else:
        conn = sqlite3.connect(path, check_same_thread=False)
    if query_only:
        conn.execute("PRAGMA query_only=ON")
    if authorizer:
        conn.set_authorizer(_authorize)
    return conn


# --- the database --------------------------------------------------------------------------------


def _session_setup(statements: list[str]):
    def on_connect(dbapi_conn: Any, _record: Any) -> None:
        cursor = dbapi_conn.cursor()
        for statement in statements:
            cursor.execute(statement)
        cursor.close()
        dbapi_conn.commit()  # a SET inside a transaction that is later rolled back would not stick

    return on_connect


def _make_engine(url: str, timeout_s: float) -> Engine:
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    ms = int(timeout_s * 1000)
    if backend == "sqlite":
        database = parsed.database or ""
        if database in ("", ":memory:"):
            return sa.create_engine("sqlite+pysqlite://", creator=lambda: connect_sqlite(None), poolclass=StaticPool)
        path = Path(database.removeprefix("file:")).resolve()
        if not path.is_file():
            raise ValueError(f"no SQLite database at {path}")
        return sa.create_engine("sqlite+pysqlite://", creator=lambda: connect_sqlite(path))
    if backend == "postgresql":
        setup = ["SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY", f"SET statement_timeout = {ms}"]
    elif backend in ("mysql", "mariadb"):
        setup = ["SET SESSION TRANSACTION READ ONLY", f"SET SESSION max_execution_time = {ms}"]
    elif backend == "duckdb":
        config = {"enable_external_access": False, "autoinstall_known_extensions": False,
                  "autoload_known_extensions": False}
        return sa.create_engine(url, connect_args={"read_only": True, "config": config})
    else:
        raise ValueError(f"no read-only session is known for {backend}: use SQLite, Postgres, MySQL or DuckDB")
    engine = sa.create_engine(url)
    sa.event.listen(engine, "connect", _session_setup(setup))
    return engine


class ReadOnlyDatabase:
    """A database reached only through read-only connections, with a deadline on every query."""

    def __init__(self, url: str, timeout_s: float = 10):
        self.backend = make_url(url).get_backend_name()
        self.dialect = sqlglot_dialect(self.backend)
        self.timeout_s = timeout_s
        self.engine = _make_engine(url, timeout_s)

    @contextlib.contextmanager
    def _deadline(self, raw: Any) -> Iterator[None]:
        deadline = time.monotonic() + self.timeout_s
        if isinstance(raw, sqlite3.Connection):
            raw.set_progress_handler(lambda: time.monotonic() > deadline, 1000)
            try:
                yield
            finally:
                raw.set_progress_handler(None, 0)
        elif self.backend == "duckdb" and hasattr(raw, "interrupt"):
            timer = threading.Timer(self.timeout_s, raw.interrupt)
            timer.start()
            try:
                yield
            finally:
                timer.cancel()
        else:  # the server enforces the statement timeout set on connect
            yield

    def execute(self, sql: str | sa.Executable, max_rows: int,
                referenced: tuple[str, ...] = ()) -> tuple[list[str], list[tuple], bool]:
        """Run one statement as given -> (columns, rows, more than max_rows?).

        No parser check here: only the engine's walls. The tools call it after :func:`checked_select`.
        """
        started = time.monotonic()
        try:
            with self.engine.connect() as conn, self._deadline(conn.connection.dbapi_connection):
                if isinstance(sql, str):
                    result = conn.execution_options(no_parameters=True).exec_driver_sql(sql)
                else:
                    result = conn.execute(sql)
                if not result.returns_rows:
                    return [], [], False
                rows = [tuple(r) for r in result.fetchmany(max_rows + 1)]
                return list(result.keys()), rows[:max_rows], len(rows) > max_rows
        except DBAPIError as exc:
            raise self._failure(exc, time.monotonic() - started, referenced) from None
        except SQLAlchemyError as exc:
            raise ToolFailed(str(exc).splitlines()[0]) from None

    def _failure(self, exc: DBAPIError, elapsed: float, referenced: tuple[str, ...]) -> ToolFailed:
        message = str(exc.orig).strip().splitlines()[0] if exc.orig is not None else str(exc)
        low = message.lower()
        if elapsed >= self.timeout_s * 0.9 and ("interrupt" in low or "timeout" in low or "execution time" in low):
            return ToolFailed(f"the query took longer than {self.timeout_s:g}s and was stopped; "
                              "filter, aggregate or add LIMIT")
        with contextlib.suppress(SQLAlchemyError, ToolFailed):
            hint = hint_for(message, self.columns_by_table(), referenced)
            if hint:
                message = f"{message} ({hint})"
        return ToolFailed(message)

    def columns_by_table(self) -> dict[str, list[str]]:
        insp = sa.inspect(self.engine)
        names = insp.get_table_names() + insp.get_view_names()
        return {name: [c["name"] for c in insp.get_columns(name)] for name in names}

    def describe(self, table: str | None = None, sample_rows: int = 3, max_tables_with_samples: int = 12) -> str:
        """Tables, columns (type, primary/foreign keys) and a few sample rows, compactly."""
        try:
            insp = sa.inspect(self.engine)
            kinds = {name: "table" for name in insp.get_table_names()}
            kinds |= {name: "view" for name in insp.get_view_names()}
            if table is not None:
                match = {n.lower(): n for n in kinds}.get(table.strip().strip('"').lower())
                if match is None:
                    raise ToolFailed(f"no table named {table!r}; tables: {', '.join(kinds) or '(none)'}")
                kinds = {match: kinds[match]}
            if not kinds:
                return "The database has no tables."
            samples = sample_rows if len(kinds) <= max_tables_with_samples else 0
            parts = [self._describe_one(insp, name, kind, samples) for name, kind in kinds.items()]
        except DBAPIError as exc:
            raise self._failure(exc, 0, ()) from None
        if not samples and sample_rows:
            parts.append("(call sql_schema with table=NAME for sample rows)")
        return "\n".join(parts)

    def _describe_one(self, insp: Any, name: str, kind: str, sample_rows: int) -> str:
        """``table orders: id INTEGER primary key, customer_id INTEGER references customers.id, ...`` + samples."""
        pk = set(insp.get_pk_constraint(name).get("constrained_columns") or []) if kind == "table" else set()
        refs = {}
        for fk in insp.get_foreign_keys(name) if kind == "table" else []:
            for col, ref in zip(fk["constrained_columns"], fk["referred_columns"], strict=False):
                refs[col] = f"references {fk['referred_table']}.{ref}"
        described = []
        for col in insp.get_columns(name):
            words = [col["name"], self._type_name(col["type"]), "primary key" if col["name"] in pk else "",
                     refs.get(col["name"], "")]
            described.append(" ".join(w for w in words if w))
        text = f"{kind} {name}: {', '.join(described)}"
        if sample_rows:
            query = sa.select(sa.literal_column("*")).select_from(sa.table(name)).limit(sample_rows)
            names, rows, _ = self.execute(query, sample_rows)
            if rows:
                table = render_rows(names, rows, width=30, note_count=False)
                text += "\n" + "\n".join("  " + line for line in table.splitlines())
        return text

    def _type_name(self, type_: sa.types.TypeEngine) -> str:
        if isinstance(type_, sa.types.NullType):  # e.g. a view's computed column in SQLite
            return ""
        try:
            return type_.compile(dialect=self.engine.dialect)
        except SQLAlchemyError:
            return type(type_).__name__.upper()

    def dispose(self) -> None:
        self.engine.dispose()


def describe_database(url: str, timeout_s: float = 10) -> str:
    """What :class:`SQLSchemaTool` returns for the whole database, to put in a prompt directly."""
    db = ReadOnlyDatabase(url, timeout_s)
    try:
        return db.describe()
    finally:
        db.dispose()


# --- the tools -------------------------------------------------------------------------------------


class SQLInput(BaseModel):
    query: str = Field(description=(
        "One SQL SELECT statement (SQLite dialect unless the schema says otherwise). "
        "Call sql_schema first to see the tables and columns. Aggregate (COUNT, SUM, GROUP BY) or add LIMIT "
        "instead of listing many rows."
    ))


class SQLSchemaInput(BaseModel):
    table: str | None = Field(default=None, description="One table to describe; leave empty for all tables.")


class _DatabaseTool(BaseTool):
    """A tool over one :class:`ReadOnlyDatabase`: its own, or ``database`` shared with another tool
    (``sql`` and ``sql_schema`` of one session share one engine, one connection pool)."""

    url: str
    timeout_s: float = 10
    database: ReadOnlyDatabase | None = Field(default=None, exclude=True)
    handle_tool_error: Any = error_text
    handle_validation_error: Any = validation_text
    _db: ReadOnlyDatabase = PrivateAttr()

    def model_post_init(self, context: Any, /) -> None:
        super().model_post_init(context)
        self._db = self.database or ReadOnlyDatabase(self.url, self.timeout_s)

    @property
    def db(self) -> ReadOnlyDatabase:
        return self._db

    def close(self) -> None:
        """Close the database's pooled connections (a later call opens new ones)."""
        self._db.dispose()


class SQLTool(_DatabaseTool):
    """Run one read-only SELECT against the configured database."""

    name: str = "sql"
    description: str = (
        "Run one read-only SQL SELECT against the database and get the rows back as a small table. "
        "Only SELECT is allowed. Use sql_schema first to learn the table and column names."
    )
    args_schema: type[BaseModel] = SQLInput
    max_rows: int = 200

    def _run(self, query: str, run_manager: CallbackManagerForToolRun | None = None) -> str:
        checked = checked_select(query, self.db.dialect)
        columns, rows, more = self.db.execute(checked.sql, self.max_rows, checked.tables)
        return render_rows(columns, rows, more=more, max_rows=self.max_rows)


class SQLSchemaTool(_DatabaseTool):
    """The database's tables, columns, keys and sample rows."""

    name: str = "sql_schema"
    description: str = (
        "List the database's tables: columns with types, primary and foreign keys, and 3 sample rows each. "
        "Call it before writing SQL; pass table to see only one table."
    )
    args_schema: type[BaseModel] = SQLSchemaInput
    sample_rows: int = 3

    def _run(self, table: str | None = None, run_manager: CallbackManagerForToolRun | None = None) -> str:
        return self.db.describe(table or None, self.sample_rows)
