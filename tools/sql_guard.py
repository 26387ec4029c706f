"""What the ``sql`` and ``table`` tools share: the read-only check and how results read.

:func:`checked_select` parses the model's SQL with sqlglot in the engine's dialect and accepts
exactly one SELECT (``WITH ... SELECT``, ``UNION``, subqueries included) whose whole tree holds no
write, DDL, session or file operation and no function known to have side effects. It returns the
statement re-rendered by sqlglot without comments: what was checked is what runs, so a comment or a
parser disagreement cannot smuggle a second statement past it. This is only the first wall; each
tool also opens its engine read-only (see ``tools/sql.py`` and ``tools/table.py``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import sqlglot
from sqlglot import exp
from sqlglot.errors import ErrorLevel, SqlglotError

from orchard.tools.base import ToolRefused

# SQLAlchemy backend name -> sqlglot dialect.
DIALECTS = {"postgresql": "postgres", "mariadb": "mysql", "mssql": "tsql"}

# Nodes that must not appear anywhere in the tree (DML and DDL via their base classes).
FORBIDDEN_NODES: tuple[type[exp.Expression], ...] = (
    exp.DML, exp.DDL, exp.Drop, exp.Alter, exp.TruncateTable, exp.Command, exp.Set, exp.Pragma,
    exp.Transaction, exp.Commit, exp.Rollback, exp.Attach, exp.Detach, exp.Install, exp.Use,
    exp.Analyze, exp.LoadData, exp.Into, exp.Lock, exp.Grant, exp.Revoke, exp.Cache, exp.Uncache,
    exp.Refresh, exp.Export, exp.Kill, exp.Declare, exp.Execute, exp.Comment, exp.Put, exp.Get,
)

# Functions that write, read files, sleep, take locks, change settings or run SQL given as text.
FORBIDDEN_FUNCTIONS = frozenset("""
    load_extension writefile readfile edit fts3_tokenizer fsdir
    pg_sleep pg_sleep_for pg_sleep_until pg_read_file pg_read_binary_file pg_ls_dir pg_stat_file
    pg_ls_logdir pg_ls_waldir pg_ls_tmpdir pg_file_write pg_file_unlink pg_file_rename
    lo_import lo_export lo_unlink lo_create lo_creat lo_put lo_from_bytea lo_open lowrite
    dblink dblink_exec dblink_connect dblink_send_query set_config nextval setval
    pg_terminate_backend pg_cancel_backend pg_reload_conf pg_rotate_logfile pg_promote
    pg_switch_wal pg_create_restore_point pg_notify pg_logical_emit_message pg_stat_reset
    pg_advisory_lock pg_advisory_xact_lock pg_try_advisory_lock pg_advisory_lock_shared
    query_to_xml query_to_xml_and_xmlschema query_to_xmlschema cursor_to_xml txid_current
    sleep benchmark load_file get_lock release_lock release_all_locks master_pos_wait
    source_pos_wait sys_exec sys_eval
    read_csv read_csv_auto read_parquet parquet_scan parquet_metadata parquet_schema read_json
    read_json_auto read_json_objects read_ndjson read_ndjson_auto read_ndjson_objects read_text
    read_blob read_xlsx glob sniff_csv query query_table sqlite_scan sqlite_attach postgres_scan
    postgres_attach mysql_scan iceberg_scan delta_scan getenv
""".split())

ONE_SELECT = "only a single SELECT statement is allowed"


@dataclass(frozen=True)
class CheckedSelect:
    sql: str  # the statement as it will run: re-rendered by sqlglot, comments dropped
    tables: tuple[str, ...]  # tables it reads (CTE names excluded), for error hints


def sqlglot_dialect(backend: str) -> str:
    """The sqlglot dialect for a SQLAlchemy backend name (``postgresql`` -> ``postgres``)."""
    return DIALECTS.get(backend, backend)


def checked_select(sql: str, dialect: str) -> CheckedSelect:
    """The one read-only SELECT in ``sql``, or :class:`ToolRefused` saying what is wrong."""
    if not sql or not sql.strip():
        raise ToolRefused(f"{ONE_SELECT}; the query is empty")
    try:
        parsed = sqlglot.parse(sql, read=dialect, error_level=ErrorLevel.RAISE)
        # None and Semicolon are empty statements (``;;``, ``SELECT 1; -- done``): nothing would run
        statements = [s for s in parsed if s is not None and not isinstance(s, exp.Semicolon)]
    except SqlglotError as exc:
        raise ToolRefused(f"{ONE_SELECT}; this could not be parsed as {dialect} SQL ({_first_line(exc)})") from None
    except RecursionError:
        raise ToolRefused(f"{ONE_SELECT}; this is nested too deeply to check: simplify it") from None
    if len(statements) != 1:
        kinds = ", ".join(_kind(s) for s in statements) or "nothing"
        raise ToolRefused(f"{ONE_SELECT}; this has {len(statements)} statements ({kinds})")
    tree = statements[0]
    if not isinstance(tree, exp.Select | exp.SetOperation | exp.Subquery):
        raise ToolRefused(f"{ONE_SELECT}; this is {_a(_kind(tree))}")
    _check_tree(tree)
    try:
        rendered = tree.sql(dialect=dialect, comments=False, normalize_functions=False,
                            unsupported_level=ErrorLevel.RAISE)
    except SqlglotError as exc:
        raise ToolRefused(f"{ONE_SELECT}; this uses something that cannot run read-only ({_first_line(exc)})") from None
    except RecursionError:
        raise ToolRefused(f"{ONE_SELECT}; this is nested too deeply to check: simplify it") from None
    return CheckedSelect(sql=rendered, tables=_tables(tree))


def _check_tree(tree: exp.Expression) -> None:
    for node in tree.walk():
        if isinstance(node, FORBIDDEN_NODES):
            raise ToolRefused(f"{ONE_SELECT}; this SELECT contains {_a(_kind(node))}")
        if isinstance(node, exp.Func):
            name = _function_name(node)
            if name in FORBIDDEN_FUNCTIONS:
                raise ToolRefused(f"the function {name}() is not allowed "
                                  "(it has side effects or reaches outside the database)")
        if isinstance(node, exp.Placeholder):
            raise ToolRefused("query parameters (?, :name, $1) cannot be supplied: write the values into the SELECT")
        if isinstance(node, exp.Table) and isinstance(node.this, exp.Identifier) and _looks_like_path(node.name):
            raise ToolRefused(f"'{node.name}' is a file path, not a table: query the tables listed by the schema tool")


def _function_name(node: exp.Func) -> str:
    return (node.name if isinstance(node, exp.Anonymous) else node.sql_name()).lower()


def _looks_like_path(name: str) -> bool:
    return any(ch in name for ch in "/\\.:")


def _tables(tree: exp.Expression) -> tuple[str, ...]:
    ctes = {cte.alias_or_name for cte in tree.find_all(exp.CTE)}
    names = (t.name for t in tree.find_all(exp.Table) if isinstance(t.this, exp.Identifier))
    return tuple(dict.fromkeys(n for n in names if n and n not in ctes))


_KIND_WORDS = {exp.Transaction: "BEGIN", exp.Into: "SELECT ... INTO", exp.Lock: "locking clause (FOR UPDATE/SHARE)",
               exp.TruncateTable: "TRUNCATE", exp.SetOperation: "SELECT", exp.Select: "SELECT", exp.Subquery: "SELECT"}
_OTHER_STATEMENTS = (exp.Describe, exp.Summarize, exp.Show, exp.Values, exp.Pivot)


def _kind(node: exp.Expression) -> str:
    """A word the model knows for a statement or clause: DELETE, CREATE TABLE, VACUUM..."""
    if isinstance(node, exp.Command):
        return node.name.upper()
    if isinstance(node, exp.Create | exp.Drop) and node.args.get("kind"):
        return f"{node.key.upper()} {node.args['kind'].upper()}"
    for cls, word in _KIND_WORDS.items():
        if isinstance(node, cls):
            return word
    if isinstance(node, FORBIDDEN_NODES + _OTHER_STATEMENTS):
        return node.key.upper()
    return "not a statement (check the syntax)"


def _a(kind: str) -> str:
    if kind.startswith("not "):
        return kind
    return f"an {kind}" if kind[0] in "AEIOU" else f"a {kind}"


def _first_line(exc: Exception) -> str:
    errors = getattr(exc, "errors", None)
    if errors:
        err = errors[0]
        return f"{err.get('description')} at line {err.get('line')}, column {err.get('col')}"
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


# --- how results read -------------------------------------------------------------------------


def render_value(value: Any, width: int) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bytes | bytearray | memoryview):
        return f"<{len(bytes(value))} bytes>"
    if isinstance(value, float):  # 12.300000000000001 -> 12.3, but keep tiny values readable
        value = round(value, 6) if abs(value) >= 1e-4 or value == 0 else float(f"{value:.6g}")
    text = str(value).replace("\r", " ").replace("\n", " ")
    return text if len(text) <= width else text[: width - 1] + "…"


def render_rows(columns: Sequence[str], rows: Iterable[Sequence[Any]], *, more: bool = False, width: int = 60,
                max_rows: int | None = None, note_count: bool = True) -> str:
    """A compact table: a ``a | b`` header, one line per row, then how many rows there were."""
    rows = list(rows)
    lines = [" | ".join(columns)]
    lines += [" | ".join(render_value(v, width) for v in row) for row in rows]
    if more:
        lines.append(f"(showing first {max_rows or len(rows)} of more rows; add LIMIT or aggregate)")
    elif note_count:
        lines.append(f"({len(rows)} row{'' if len(rows) == 1 else 's'})" if rows else "(no rows)")
    return "\n".join(lines)


def hint_for(message: str, tables: dict[str, list[str]], referenced: Sequence[str]) -> str:
    """For an unknown column or table, the names that do exist (empty for other errors)."""
    low = message.lower()
    known = {t.lower(): t for t in tables}
    if "column" in low and ("no such" in low or "not exist" in low or "unknown" in low or "not found" in low):
        picked = [known[r.lower()] for r in referenced if r.lower() in known] or list(tables)
        return "; ".join(f"columns of {t}: {', '.join(tables[t])}" for t in picked)
    if ("table" in low or "relation" in low) and ("no such" in low or "not exist" in low or "doesn't exist" in low):
        return f"tables: {', '.join(tables)}"
    return ""
