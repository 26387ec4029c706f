"""Orchard's LangChain tools, and :func:`build_tools` that assembles the set a question may use.

=============== ================= ==========================================================
name            input             what it does
=============== ================= ==========================================================
python          {"code"}          runs a program in the sandbox, returns what it prints (PAL)
sql             {"query"}         one read-only SELECT on the database (SQLAlchemy URL)
sql_schema      {"table"?}        the database's tables, columns, keys, sample rows
table           {"query"}         one read-only DuckDB SELECT over CSV/XLSX files
table_schema    {"table"?}        the tables made from the files, with sample rows
search_docs     {"query"}         the hybrid retriever: numbered passages with sources
=============== ================= ==========================================================

Every tool follows :mod:`tools.base`: a refused or failed call is text for the model, never a crash.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from langchain_core.retrievers import BaseRetriever
from langchain_core.tools import BaseTool

TOOL_NAMES = ("python", "sql", "sql_schema", "table", "table_schema", "search_docs")
#: What each tool needs before it can be built.
NEEDS = {"sql": "a database (--db URL)", "sql_schema": "a database (--db URL)", "table": "a file (--table PATH)",
         "table_schema": "a file (--table PATH)", "search_docs": "ingested documents"}  # fmt: skip


def build_tools(
    *,
    retriever: BaseRetriever | None = None,
    db_url: str | None = None,
    tables: Sequence[str | Path] = (),
    max_rows: int = 200,
    timeout: float = 10.0,
    schema_tools: bool = True,
) -> list[BaseTool]:
    """The tools that can work with what is attached: python always; sql with a database URL;
    table with files; search_docs with a retriever. ``schema_tools`` adds sql_schema/table_schema
    (useful to a model that calls tools itself; the routed agent puts the schema in its prompt)."""
    from orchard.tools.python_sandbox import PythonTool, SandboxLimits

    built: list[BaseTool] = [PythonTool(limits=SandboxLimits(wall_seconds=max(timeout, 1.0)))]
    if db_url:
        from orchard.tools.sql import ReadOnlyDatabase, SQLSchemaTool, SQLTool

        database = ReadOnlyDatabase(db_url, timeout)  # one engine for both tools
        built.append(SQLTool(url=db_url, max_rows=max_rows, timeout_s=timeout, database=database))
        if schema_tools:
            built.append(SQLSchemaTool(url=db_url, timeout_s=timeout, database=database))
    if tables:
        from orchard.tools.table import TableDatabase, TableSchemaTool, TableTool

        files = TableDatabase(list(tables), timeout)  # the files are loaded once, for both tools
        built.append(TableTool(paths=list(tables), max_rows=max_rows, timeout_s=timeout, database=files))
        if schema_tools:
            built.append(TableSchemaTool(paths=list(tables), timeout_s=timeout, database=files))
    if retriever is not None:
        from orchard.tools.search_docs import SearchDocsTool

        built.append(SearchDocsTool(retriever=retriever))
    return built


def describe_tools(available: Sequence[BaseTool]) -> list[dict[str, Any]]:
    """One row per known tool: name, description, arguments, and whether it is available."""
    by_name = {t.name: t for t in available}
    rows = []
    for name in TOOL_NAMES:
        tool = by_name.get(name)
        rows.append(
            {
                "name": name,
                "available": tool is not None,
                "needs": None if tool is not None else NEEDS.get(name),
                "args": sorted(tool.args) if tool is not None else [],
                "description": tool.description if tool is not None else "",
            }
        )
    return rows
