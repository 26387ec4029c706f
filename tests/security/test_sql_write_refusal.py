"""The ``sql`` and ``table`` tools cannot write: every attempt is refused and no file changes or appears.

Each wall is tested on its own too:

* the parser (sqlglot): every attack through the tool comes back ``refused:`` (only the parser raises
  ToolRefused; the engine's walls fail with ``error:``), before anything runs;
* the read-only engine: the same writes sent straight to the internal ``execute`` (no parser) fail;
* SQLite, one wall at a time: ``mode=ro``, ``query_only`` and the authorizer each refuse writes to
  the database on their own, and only the authorizer stops ATTACH / VACUUM INTO / journal_mode;
* DuckDB: ``enable_external_access=false`` + ``lock_configuration`` refuse COPY, file reads,
  INSTALL/LOAD and ATTACH on their own, and DuckDB's own parser refuses anything but one SELECT.

After every test the database file has the same sha256 and mtime, and its folder the same files (no
``-journal``/``-wal``, no attached or copied database).
"""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import pandas as pd
import pytest

from orchard.tools.base import ToolFailed, ToolRefused, run_tool
from orchard.tools.sql import SQLTool, connect_sqlite
from orchard.tools.table import TableTool
from tests.unit.test_sql_tool import make_db
from tests.unit.test_table_tool import make_files


def snapshot(files: list[Path]) -> dict:
    """Content hash and mtime of each file, and what is in their folders."""
    folders = {f.parent for f in files}
    return {
        "files": {str(f): (hashlib.sha256(f.read_bytes()).hexdigest(), f.stat().st_mtime_ns) for f in files},
        "folders": {str(d): sorted(p.name for p in d.iterdir()) for d in folders},
    }


# --- sql -----------------------------------------------------------------------------------------

SQL_ATTACKS = {
    "delete": ("DELETE FROM orders", "this is a DELETE"),
    "drop": ("DROP TABLE orders", "this is a DROP TABLE"),
    "insert": ("INSERT INTO towns VALUES (9, 'Nowhere', 'West')", "this is an INSERT"),
    "update": ("UPDATE orders SET amount = 0", "this is an UPDATE"),
    "create": ("CREATE TABLE loot AS SELECT * FROM customers", "this is a CREATE TABLE"),
    "create_index": ("CREATE INDEX i ON towns(name)", "this is a CREATE INDEX"),
    "create_temp": ("CREATE TEMP TABLE t(a)", "this is a CREATE TABLE"),
    "create_trigger": ("CREATE TRIGGER t AFTER INSERT ON towns BEGIN DELETE FROM orders; END", "statements"),
    "replace": ("REPLACE INTO towns VALUES (1, 'x', 'y')", "this is a REPLACE"),
    "insert_or_replace": ("INSERT OR REPLACE INTO towns VALUES (1, 'x', 'y')", "this is an INSERT"),
    "alter": ("ALTER TABLE towns ADD COLUMN mayor TEXT", "this is an ALTER"),
    "pragma_wal": ("PRAGMA journal_mode=WAL", "this is a PRAGMA"),
    "pragma_user_version": ("PRAGMA user_version=5", "this is a PRAGMA"),
    "pragma_query_only_off": ("PRAGMA query_only = OFF", "this is a PRAGMA"),
    "attach_new_file": ("ATTACH DATABASE '{dir}/new.db' AS loot", "this is an ATTACH"),
    "attach_short": ("attach '{dir}/new2.db' as loot", "this is an ATTACH"),
    "detach": ("DETACH DATABASE main", "this is a DETACH"),
    "multi_statement": ("SELECT 1; DROP TABLE orders", "this has 2 statements (SELECT, DROP TABLE)"),
    "write_first": ("DELETE FROM orders; SELECT 1", "this has 2 statements (DELETE, SELECT)"),
    "empty_statements": ("SELECT * FROM orders;;DELETE FROM orders;", "2 statements"),
    "cte_with_delete": ("WITH gone AS (DELETE FROM orders RETURNING *) SELECT * FROM gone", "contains a DELETE"),
    "cte_with_insert": ("WITH x AS (INSERT INTO towns VALUES (9, 'a', 'b') RETURNING *) SELECT 1", "contains an INSERT"),
    "vacuum": ("VACUUM", "this is a VACUUM"),
    "vacuum_into": ("VACUUM INTO '{dir}/copy.db'", "this is a VACUUM"),
    "reindex": ("REINDEX", "not a statement"),
    "analyze": ("ANALYZE", "this is an ANALYZE"),
    "begin": ("BEGIN IMMEDIATE", "this is a BEGIN"),
    "commit": ("COMMIT", "this is a COMMIT"),
    "select_into": ("SELECT * INTO loot FROM orders", "contains a SELECT ... INTO"),
    "for_update": ("SELECT * FROM orders FOR UPDATE", "locking clause"),
    "load_extension": ("SELECT load_extension('/tmp/evil.so')", "load_extension() is not allowed"),
    "load_extension_nested": ("SELECT name FROM towns WHERE id IN (SELECT LOAD_EXTENSION('x'))", "not allowed"),
    "writefile": ("SELECT writefile('{dir}/out.txt', 'x')", "writefile() is not allowed"),
    "comment_then_statement": ("SELECT 1 /* harmless */; DELETE FROM orders", "2 statements"),
    "line_comment_newline": ("SELECT 1 --\n; DELETE FROM orders", "2 statements"),
    "comment_closing_trick": ("SELECT 1 -- */\n; DROP TABLE orders", "2 statements"),
    "mixed_case": ("dElEtE fRoM orders", "this is a DELETE"),
    "whitespace": ("\n\t  DELETE\n\tFROM\t orders ;\n", "this is a DELETE"),
    "explain_delete": ("EXPLAIN DELETE FROM orders", "this is an EXPLAIN"),
    "garbage": ("lorem ipsum dolor", "could not be parsed"),
    "half_a_query": ("SELECT FROM WHERE ((", "could not be parsed"),
    "empty": ("   ", "the query is empty"),
    "too_deep_to_check": ("SELECT " + "(" * 500 + "1" + ")" * 500, "nested too deeply"),
}


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return make_db(tmp_path / "db" / "shop.db")


@pytest.mark.parametrize(("query", "why"), list(SQL_ATTACKS.values()), ids=list(SQL_ATTACKS))
def test_sql_refuses_every_write_and_the_file_stays_the_same(db: Path, query: str, why: str) -> None:
    tool = SQLTool(url=f"sqlite:///{db}")
    before = snapshot([db])
    result = run_tool(tool, {"query": query.format(dir=db.parent)})
    assert result["ok"] is False
    assert result["error"].startswith("refused: "), result["error"]  # the parser stopped it: nothing ran
    assert why in result["error"]
    assert snapshot([db]) == before
    assert run_tool(tool, {"query": "SELECT count(*) FROM orders"})["output"].startswith("COUNT(*)\n6\n")


ENGINE_WRITES = [
    "DELETE FROM orders", "INSERT INTO towns VALUES (9, 'a', 'b')", "UPDATE orders SET amount = 0",
    "DROP TABLE orders", "CREATE TABLE loot(a)", "CREATE INDEX i ON towns(name)", "REPLACE INTO towns VALUES (1, 'x', 'y')",
    "ALTER TABLE towns ADD COLUMN mayor", "PRAGMA user_version=5", "PRAGMA journal_mode=WAL", "PRAGMA query_only=OFF",
    "PRAGMA writable_schema=ON", "VACUUM", "REINDEX", "ANALYZE", "CREATE TEMP TABLE t(a)", "BEGIN IMMEDIATE",
    "SAVEPOINT s", "ATTACH DATABASE '{dir}/new.db' AS loot", "VACUUM INTO '{dir}/copy.db'",
    "SELECT load_extension('/tmp/evil.so')", "SELECT 1; DELETE FROM orders", "UPDATE sqlite_master SET sql = 'x'",
    "WITH gone AS (DELETE FROM orders RETURNING *) SELECT * FROM gone",
]


@pytest.mark.parametrize("query", ENGINE_WRITES)
def test_without_the_parser_the_read_only_connection_still_refuses(db: Path, query: str) -> None:
    tool = SQLTool(url=f"sqlite:///{db}")
    before = snapshot([db])
    with pytest.raises(ToolFailed):
        tool.db.execute(query.format(dir=db.parent), 10)  # the internal execute: no sqlglot check
    assert snapshot([db]) == before


WALLS = {
    "mode=ro only": {"read_only_uri": True, "query_only": False, "authorizer": False},
    "query_only only": {"read_only_uri": False, "query_only": True, "authorizer": False},
    "authorizer only": {"read_only_uri": False, "query_only": False, "authorizer": True},
}
DATABASE_WRITES = [
    "DELETE FROM orders", "INSERT INTO towns VALUES (9, 'a', 'b')", "UPDATE orders SET amount = 0", "DROP TABLE orders",
    "CREATE TABLE loot(a)", "CREATE INDEX i ON towns(name)", "REPLACE INTO towns VALUES (1, 'x', 'y')",
    "ALTER TABLE towns ADD COLUMN mayor", "PRAGMA user_version=5", "REINDEX", "ANALYZE", "VACUUM",
]


def run_raw(db: Path, query: str, **walls: bool) -> None:
    conn = connect_sqlite(db, **walls)
    try:
        conn.execute(query.format(dir=db.parent)).fetchall()
    finally:
        conn.close()


@pytest.mark.parametrize("query", DATABASE_WRITES)
@pytest.mark.parametrize("wall", list(WALLS))
def test_each_sqlite_wall_alone_refuses_writes_to_the_database(db: Path, wall: str, query: str) -> None:
    before = snapshot([db])
    with pytest.raises(sqlite3.Error, match=r"readonly|not authorized|authorization denied"):
        run_raw(db, query, **WALLS[wall])
    assert snapshot([db]) == before


@pytest.mark.parametrize("query", [
    "ATTACH DATABASE '{dir}/new.db' AS loot", "VACUUM INTO '{dir}/copy.db'", "PRAGMA journal_mode=WAL",
    "PRAGMA query_only=OFF", "PRAGMA writable_schema=ON", "SELECT load_extension('/tmp/evil.so')", "BEGIN IMMEDIATE",
    "CREATE TEMP TABLE t(a)",
])
def test_the_authorizer_alone_refuses_what_escapes_the_file(db: Path, query: str) -> None:
    before = snapshot([db])
    with pytest.raises(sqlite3.Error, match=r"not authorized|authorization denied"):
        run_raw(db, query, **WALLS["authorizer only"])
    assert snapshot([db]) == before


def test_why_the_authorizer_is_needed(tmp_path: Path) -> None:
    """Without it, ``mode=ro`` lets ATTACH and VACUUM INTO create files and ``query_only`` lets
    ``journal_mode=WAL`` rewrite the database header (SQLite 3.40 behaviour, kept here as evidence)."""
    db = make_db(tmp_path / "a" / "shop.db")
    run_raw(db, "ATTACH DATABASE '{dir}/new.db' AS loot", **WALLS["mode=ro only"])
    run_raw(db, "VACUUM INTO '{dir}/copy.db'", **WALLS["mode=ro only"])
    assert (db.parent / "new.db").exists() and (db.parent / "copy.db").exists()
    other = make_db(tmp_path / "b" / "shop.db")
    before = snapshot([other])
    run_raw(other, "PRAGMA journal_mode=WAL", **WALLS["query_only only"])
    assert snapshot([other])["files"] != before["files"]


# --- table ----------------------------------------------------------------------------------------

TABLE_ATTACKS = {
    "copy_to": ("COPY orders_2024 TO '{dir}/out.csv'", "this is a COPY"),
    "copy_query_to": ("COPY (SELECT * FROM customers) TO '{dir}/out.parquet' (FORMAT parquet)", "this is a COPY"),
    "read_csv_passwd": ("SELECT * FROM read_csv('/etc/passwd')", "read_csv() is not allowed"),
    "read_csv_auto_passwd": ("SELECT * FROM read_csv_auto('/etc/passwd', header = false)", "read_csv_auto() is not allowed"),
    "read_text_passwd": ("SELECT content FROM read_text('/etc/passwd')", "read_text() is not allowed"),
    "replacement_scan": ("SELECT * FROM '/etc/passwd'", "is a file path"),
    "quoted_path": ('FROM "/etc/passwd"', "is a file path"),
    "glob": ("SELECT * FROM glob('/*')", "glob() is not allowed"),
    "query_function": ("SELECT * FROM query('COPY customers TO ''x.csv''')", "query() is not allowed"),
    "install": ("INSTALL httpfs", "this is an INSTALL"),
    "load": ("LOAD httpfs", "this is a LOAD"),
    "attach": ("ATTACH '{dir}/new.duckdb' AS loot", "this is an ATTACH"),
    "create_table": ("CREATE TABLE loot AS SELECT * FROM customers", "this is a CREATE TABLE"),
    "drop": ("DROP TABLE customers", "this is a DROP TABLE"),
    "delete": ("DELETE FROM customers", "this is a DELETE"),
    "insert": ("INSERT INTO customers VALUES ('Zed', DATE '2024-01-01')", "this is an INSERT"),
    "set_access": ("SET enable_external_access = true", "this is a SET"),
    "pragma": ("PRAGMA enable_external_access", "this is a PRAGMA"),
    "export": ("EXPORT DATABASE '{dir}/dump'", "could not be parsed"),
    "call": ("CALL pragma_version()", "this is a CALL"),
    "multi": ("SELECT 1; COPY customers TO '{dir}/out.csv'", "2 statements"),
    "comment": ("SELECT 1 /* x */; COPY customers TO '{dir}/out.csv'", "2 statements"),
    "cte_insert": ("WITH x AS (INSERT INTO customers VALUES ('Zed', NULL) RETURNING *) SELECT * FROM x", "contains an INSERT"),
    "getenv": ("SELECT getenv('HOME')", "getenv() is not allowed"),
    "garbage": ("!!", "could not be parsed"),
}


@pytest.fixture
def files(tmp_path: Path) -> list[Path]:
    return make_files(tmp_path / "data")


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[Path], TableTool]:
    """One loaded tool shared by the tests that only try to escape (loading takes ~0.3 s)."""
    files = make_files(tmp_path_factory.mktemp("shared") / "data")
    tool = TableTool(paths=files)
    tool.db.execute("SELECT 1", 1)
    return files, tool


@pytest.mark.parametrize(("query", "why"), list(TABLE_ATTACKS.values()), ids=list(TABLE_ATTACKS))
def test_table_refuses_every_write_and_file_access(tmp_path: Path, files: list[Path], query: str, why: str) -> None:
    tool = TableTool(paths=files)
    before = snapshot(files)
    result = run_tool(tool, {"query": query.format(dir=files[0].parent)})
    assert result["ok"] is False
    assert result["error"].startswith("refused: "), result["error"]
    assert why in result["error"]
    assert snapshot(files) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]


ENGINE_ESCAPES = [
    "COPY orders_2024 TO '{dir}/out.csv'", "COPY (SELECT 42) TO '{dir}/out.parquet' (FORMAT parquet)",
    "SELECT * FROM read_csv('/etc/passwd')", "SELECT * FROM read_csv_auto('/etc/passwd')",
    "SELECT * FROM read_text('/etc/passwd')", "SELECT * FROM '/etc/passwd'", "SELECT * FROM glob('/*')",
    "SELECT * FROM read_csv('{dir}/customers.csv')", "INSTALL httpfs", "LOAD httpfs", "ATTACH '{dir}/new.duckdb' AS loot",
    "SET enable_external_access = true", "SET lock_configuration = false", "RESET enable_external_access",
    "EXPORT DATABASE '{dir}/dump'", "SELECT * FROM orchard_sheet",
]


@pytest.mark.parametrize("query", ENGINE_ESCAPES)
def test_without_the_parsers_duckdb_still_cannot_reach_a_file(loaded: tuple[list[Path], TableTool], query: str) -> None:
    files, tool = loaded
    before = snapshot(files)  # the data folder's listing included: COPY/ATTACH/EXPORT would add to it
    with pytest.raises(ToolFailed) as failed:
        tool.db.execute(query.format(dir=files[0].parent), 10)  # the internal execute: no sqlglot, no DuckDB check
    assert "root:" not in str(failed.value)
    assert snapshot(files) == before


def test_a_python_variable_is_not_a_table(loaded: tuple[list[Path], TableTool]) -> None:
    secret_frame = pd.DataFrame({"secret": ["hunter2"]})  # noqa: F841 - DuckDB could otherwise find it by name
    tool = loaded[1]
    with pytest.raises(ToolFailed, match="secret_frame does not exist"):
        tool.db.execute("SELECT * FROM secret_frame", 10)


def test_an_in_memory_write_that_got_past_both_parsers_touches_no_file(tmp_path: Path, files: list[Path]) -> None:
    """The loaded copy lives in memory: a statement that bypassed the parsers could change it, never the files."""
    tool = TableTool(paths=files)
    before = snapshot(files)
    tool.db.execute("CREATE TABLE loot AS SELECT * FROM customers", 10)
    tool.db.execute("DELETE FROM customers", 10)
    assert snapshot(files) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]


@pytest.mark.parametrize("query", [
    "COPY customers TO 'x.csv'", "CREATE TABLE loot AS SELECT 1", "SELECT 1; DROP TABLE customers", "INSTALL httpfs",
    "ATTACH 'x.duckdb'", "SET enable_external_access = true", "DELETE FROM customers", "PRAGMA version",
])
def test_duckdbs_own_parser_alone_accepts_only_one_select(loaded: tuple[list[Path], TableTool], query: str) -> None:
    tool = loaded[1]
    with pytest.raises(ToolRefused, match="only a single SELECT statement is allowed; DuckDB"):
        tool.db.check_select(query)
    tool.db.check_select("WITH t AS (SELECT 1 AS x) SELECT x FROM t UNION ALL SELECT 2")
