"""``table`` and ``table_schema``: read-only DuckDB SQL over the user's CSV and XLSX files.

Each file becomes a table named after its stem as an identifier (``orders-2024.csv`` ->
``orders_2024``; clashes get ``_2``, ``_3``); each sheet of a workbook with several sheets becomes
``<stem>_<sheet>``. CSVs are read by DuckDB's ``read_csv_auto``; XLSX by pandas + openpyxl (DuckDB's
excel extension would be downloaded at run time). The model queries them by computation: rows only
reach the prompt as query results, capped at ``max_rows``.

Read-only by construction:

1. :func:`tools.sql_guard.checked_select` (duckdb dialect) accepts one SELECT, then DuckDB's own
   parser must agree that the rendered statement is exactly one SELECT.
2. The data is loaded into a private in-memory DuckDB, then ``enable_external_access=false`` and
   ``lock_configuration=true``: no file, extension, ATTACH, COPY or ``read_csv('/etc/passwd')`` can be
   reached by any statement, and the setting cannot be switched back. (Views over ``read_csv_auto``
   stop working once external access is off, so the files are materialised as tables first.) The
   in-memory copy is the only thing a statement that got past both parsers could change.

A query is interrupted after ``timeout_s`` (a timer calls DuckDB's ``interrupt()``).
"""

from __future__ import annotations

import hashlib
import re
import threading
import time
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
from langchain_core.callbacks import CallbackManagerForToolRun
from langchain_core.tools import BaseTool
from pydantic import BaseModel, Field, PrivateAttr

from orchard.tools.base import ToolFailed, ToolRefused, error_text, validation_text
from orchard.tools.sql_guard import ONE_SELECT, checked_select, hint_for, render_rows

_RACY_NS = 3 * 10**9  # a file modified this recently is also compared by content
CSV_SUFFIXES = {".csv", ".tsv"}
XLSX_SUFFIXES = {".xlsx", ".xlsm"}
_CONFIG = {
    "threads": 2,
    "memory_limit": "1GB",
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
    "python_enable_replacements": False,  # no query may read a Python variable by its name
}


def table_name(stem: str, taken: set[str], reserved: set[str] = frozenset()) -> str:
    """``orders-2024`` -> ``orders_2024``, unique among ``taken`` (which it extends)."""
    name = re.sub(r"[^0-9a-z]+", "_", stem.lower()).strip("_") or "table"
    if name[0].isdigit():
        name = f"t_{name}"
    if name in reserved:
        name = f"{name}_"
    unique, n = name, 1
    while unique in taken:
        n += 1
        unique = f"{name}_{n}"
    taken.add(unique)
    return unique


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _clean_sheet(df: pd.DataFrame) -> pd.DataFrame:
    """Headers as unique strings, no empty rows, one type per column (mixed objects become text)."""
    df = df.dropna(how="all")
    df = df.loc[:, [not (str(c).startswith("Unnamed:") and df[c].isna().all()) for c in df.columns]].copy()
    names: list[str] = []
    for i, col in enumerate(df.columns, start=1):
        name = str(col).strip()
        name = f"column_{i}" if not name or name.startswith("Unnamed:") else name
        while name in names:
            name += "_"
        names.append(name)
    df.columns = names
    for col in df.columns:
        if df[col].isna().all():
            df[col] = df[col].astype("string")
        elif df[col].dtype == object and df[col].dropna().map(type).nunique() > 1:
            df[col] = df[col].map(lambda v: v if v is None or (isinstance(v, float) and pd.isna(v)) else str(v))
    return df.convert_dtypes()  # whole numbers stay integers even when a cell is empty


class TableDatabase:
    """The files, loaded into a locked in-memory DuckDB on first use (and again if a file changes)."""

    dialect = "duckdb"

    def __init__(self, paths: list[str | Path], timeout_s: float = 10):
        self.paths = [Path(p).resolve() for p in paths]
        for path in self.paths:
            if not path.is_file():
                raise ValueError(f"no file at {path}")
            if path.suffix.lower() not in CSV_SUFFIXES | XLSX_SUFFIXES:
                raise ValueError(f"{path.name}: only CSV, TSV and XLSX files can be tables")
        self.timeout_s = timeout_s
        self.sources: dict[str, str] = {}  # table -> where it came from
        self._con: duckdb.DuckDBPyConnection | None = None
        self._loaded_from: tuple | None = None
        self._reserved: set[str] = set()
        self._lock = threading.Lock()

    @property
    def loaded(self) -> bool:
        """Whether the files are loaded (an open DuckDB holds them)."""
        return self._con is not None

    def _signature(self) -> tuple:
        """What identifies the files' contents: path, mtime, size — and, for a file written in the
        last seconds, a digest: a rewrite within one timestamp tick (milliseconds on most file
        systems, seconds on some) keeps mtime and, often, the size (git's "racily clean" files)."""
        now = time.time_ns()
        parts = []
        for path in self.paths:
            stat = path.stat()
            recent = now - stat.st_mtime_ns < _RACY_NS
            digest = hashlib.sha256(path.read_bytes()).hexdigest() if recent else ""
            parts.append((str(path), stat.st_mtime_ns, stat.st_size, digest))
        return tuple(parts)

    def _cursor(self) -> duckdb.DuckDBPyConnection:
        with self._lock:
            try:
                signature = self._signature()
            except OSError as exc:
                raise ToolFailed(f"a data file is gone: {exc}") from None
            if self._con is None or signature != self._loaded_from:
                self._load()
                self._loaded_from = signature
            return self._con.cursor()

    def _load(self) -> None:
        """A fresh in-memory DuckDB holding every file as a table, then locked away from the file system."""
        con = duckdb.connect(":memory:", config=dict(_CONFIG))
        keywords = "SELECT keyword_name FROM duckdb_keywords() WHERE keyword_category = 'reserved'"
        reserved = {r[0] for r in con.execute(keywords).fetchall()}
        taken: set[str] = set()
        sources: dict[str, str] = {}
        try:
            for path in self.paths:
                if path.suffix.lower() in CSV_SUFFIXES:
                    name = table_name(path.stem, taken, reserved)
                    con.execute(f"CREATE TABLE {_quote(name)} AS SELECT * FROM read_csv_auto($1)", [str(path)])
                    sources[name] = path.name
                    continue
                book = pd.read_excel(path, sheet_name=None, engine="openpyxl")
                sheets = {sheet: _clean_sheet(df) for sheet, df in book.items()}
                sheets = {sheet: df for sheet, df in sheets.items() if len(df.columns)}  # skip empty sheets
                for sheet, df in sheets.items():
                    name = table_name(path.stem if len(sheets) == 1 else f"{path.stem}_{sheet}", taken, reserved)
                    con.register("orchard_sheet", df)
                    con.execute(f"CREATE TABLE {_quote(name)} AS SELECT * FROM orchard_sheet")
                    con.unregister("orchard_sheet")
                    sources[name] = f"{path.name}, sheet {sheet}"
        except (duckdb.Error, ValueError, OSError) as exc:
            con.close()
            raise ToolFailed(f"could not load {path.name}: {str(exc).splitlines()[0]}") from None
        con.execute("SET enable_external_access = false")
        con.execute("SET lock_configuration = true")
        # a cursor still running on the previous connection keeps it alive until it is done
        self._con, self.sources, self._reserved = con, sources, reserved

    def check_select(self, sql: str) -> None:
        """DuckDB's own parser must see exactly one SELECT too."""
        cur = self._cursor()
        try:
            statements = cur.extract_statements(sql)
        except duckdb.Error as exc:
            raise ToolRefused(f"{ONE_SELECT}; DuckDB could not parse it ({str(exc).splitlines()[0]})") from None
        finally:
            cur.close()
        if len(statements) != 1 or statements[0].type != duckdb.StatementType.SELECT:
            kinds = ", ".join(s.type.name for s in statements)
            raise ToolRefused(f"{ONE_SELECT}; DuckDB reads this as {kinds}")

    def execute(self, sql: str, max_rows: int, referenced: tuple[str, ...] = (),
                params: list | None = None) -> tuple[list[str], list[tuple], bool]:
        """Run one statement as given -> (columns, rows, more than max_rows?).

        No parser check here: only the engine's walls. :class:`TableTool` calls it after both parsers.
        """
        cur = self._cursor()
        timer = threading.Timer(self.timeout_s, cur.interrupt)
        timer.start()
        try:
            cur.execute(sql, params)
            if cur.description is None:
                return [], [], False
            columns = [d[0] for d in cur.description]
            rows = cur.fetchmany(max_rows + 1)
            return columns, rows[:max_rows], len(rows) > max_rows
        except duckdb.InterruptException:
            raise ToolFailed(f"the query took longer than {self.timeout_s:g}s and was stopped; "
                             "filter, aggregate or add LIMIT") from None
        except duckdb.Error as exc:
            message = str(exc).strip().splitlines()[0]
            hint = hint_for(message, self.columns_by_table(), referenced)
            raise ToolFailed(f"{message} ({hint})" if hint else message) from None
        finally:
            timer.cancel()
            cur.close()

    def columns_by_table(self) -> dict[str, list[str]]:
        _, rows, _ = self.execute("SELECT table_name, column_name FROM information_schema.columns "
                                  "ORDER BY table_name, ordinal_position", 100_000)
        columns: dict[str, list[str]] = {name: [] for name in self.sources}
        for table, column in rows:
            columns.setdefault(table, []).append(column)
        return columns

    def describe(self, table: str | None = None, sample_rows: int = 3) -> str:
        """Each table: where it came from, row count, columns with types, a few sample rows."""
        self._cursor().close()  # load, so that the names are known
        names = list(self.sources)
        if table is not None:
            match = {n.lower(): n for n in names}.get(table.strip().strip('"').lower())
            if match is None:
                raise ToolFailed(f"no table named {table!r}; tables: {', '.join(names) or '(none)'}")
            names = [match]
        return "\n".join(self._describe_one(name, sample_rows) for name in names) or "No tables."

    def _describe_one(self, name: str, sample_rows: int) -> str:
        _, types, _ = self.execute("SELECT column_name, data_type FROM information_schema.columns "
                                   "WHERE table_name = $1 ORDER BY ordinal_position", 10_000, params=[name])
        count = self.execute(f"SELECT count(*) FROM {_quote(name)}", 1)[1][0][0]
        columns = ", ".join(f"{self._identifier(col)} {kind}" for col, kind in types)
        text = f"table {name} ({self.sources[name]}, {count} row{'' if count == 1 else 's'}): {columns}"
        if sample_rows and count:
            head, rows, _ = self.execute(f"SELECT * FROM {_quote(name)} LIMIT {int(sample_rows)}", sample_rows)
            table = render_rows(head, rows, width=30, note_count=False)
            text += "\n" + "\n".join("  " + line for line in table.splitlines())
        return text

    def _identifier(self, name: str) -> str:
        """A column name as the model must write it: quoted if it is not a plain lower-case word."""
        plain = re.fullmatch(r"[a-z_][a-z0-9_]*", name) and name not in self._reserved
        return name if plain else _quote(name)

    def close(self) -> None:
        with self._lock:
            if self._con is not None:
                self._con.close()
                self._con = None


def describe_tables(paths: list[str | Path], timeout_s: float = 10) -> str:
    """What :class:`TableSchemaTool` returns for all the files, to put in a prompt directly."""
    db = TableDatabase(paths, timeout_s)
    try:
        return db.describe()
    finally:
        db.close()


class TableInput(BaseModel):
    query: str = Field(description=(
        "One DuckDB SQL SELECT over the tables made from the user's files (see table_schema for their names and "
        "columns). Compute the answer in SQL (COUNT, SUM, AVG, GROUP BY, ORDER BY ... LIMIT) rather than listing rows."
    ))


class TableSchemaInput(BaseModel):
    table: str | None = Field(default=None, description="One table to describe; leave empty for all tables.")


class _TablesTool(BaseTool):
    """A tool over one :class:`TableDatabase`: its own, or ``database`` shared with another tool
    (``table`` and ``table_schema`` of one session load the files once)."""

    paths: list[str | Path]
    timeout_s: float = 10
    database: TableDatabase | None = Field(default=None, exclude=True)
    handle_tool_error: Any = error_text
    handle_validation_error: Any = validation_text
    _db: TableDatabase = PrivateAttr()

    def model_post_init(self, context: Any, /) -> None:
        super().model_post_init(context)
        self._db = self.database or TableDatabase(self.paths, self.timeout_s)

    @property
    def db(self) -> TableDatabase:
        return self._db

    def close(self) -> None:
        """Close the in-memory DuckDB (a later call loads the files again)."""
        self._db.close()


class TableTool(_TablesTool):
    """Run one read-only DuckDB SELECT over the user's CSV/XLSX files."""

    name: str = "table"
    description: str = (
        "Run one read-only SQL SELECT (DuckDB dialect) over the user's spreadsheet and CSV files, each loaded as a "
        "table, and get the result as a small table. Use table_schema first to learn the table and column names."
    )
    args_schema: type[BaseModel] = TableInput
    max_rows: int = 200

    def _run(self, query: str, run_manager: CallbackManagerForToolRun | None = None) -> str:
        checked = checked_select(query, "duckdb")
        self.db.check_select(checked.sql)
        columns, rows, more = self.db.execute(checked.sql, self.max_rows, checked.tables)
        return render_rows(columns, rows, more=more, max_rows=self.max_rows)


class TableSchemaTool(_TablesTool):
    """The tables made from the files: columns, types, row counts, sample rows."""

    name: str = "table_schema"
    description: str = (
        "List the tables made from the user's CSV and spreadsheet files: source file, row count, columns with types "
        "and 3 sample rows each. Call it before writing SQL for the table tool; pass table to see only one."
    )
    args_schema: type[BaseModel] = TableSchemaInput
    sample_rows: int = 3

    def _run(self, table: str | None = None, run_manager: CallbackManagerForToolRun | None = None) -> str:
        return self.db.describe(table or None, self.sample_rows)
