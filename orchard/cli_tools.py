"""``orchard tools``: list the agent's tools and run one by hand.

For users debugging a tool (what does the sandbox say to this program? is this query refused?) and
for tests. The tools are those an agent question gets (:meth:`orchard.usecases.answering.Answering.tools`).
``run`` prints ``{"ok", "output", "error"}`` with ``--json``; a refused or failed call is
``ok: false`` with the reason in ``error`` (exit code 1 without ``--json``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

app = typer.Typer(
    help="List the agent's tools and run one by hand: python, sql, sql_schema, table, table_schema, search_docs.",
    no_args_is_help=True,
    add_completion=False,
)

DbOpt = Annotated[str | None, typer.Option("--db", help="SQLAlchemy URL of a database (default: ORCHARD_DB_URL), e.g. sqlite:///shop.db.")]
TableOpt = Annotated[list[Path] | None, typer.Option("--table", help="A CSV/XLSX file for the table tool (repeatable).")]
StoreOpt = Annotated[Path | None, typer.Option("--store", help="Chroma store folder (default: ORCHARD_STORE_DIR).")]


def _orchard(store: Path | None) -> Any:
    """The command's Orchard, with the schema tools on (a person running a tool
    by hand may want sql_schema/table_schema, whatever ORCHARD_TOOL_CALLING says)."""
    from orchard.cli import cli_settings, make_orchard
    from orchard.components import ToolSessions

    settings = cli_settings(store)
    sessions = ToolSessions(max_rows=settings.sql_max_rows, timeout=settings.tool_timeout, schema_tools=True)
    return make_orchard(settings, tool_sessions=sessions)


@app.command("list")
def list_command(
    db: DbOpt = None,
    table: TableOpt = None,
    store: StoreOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON list.")] = False,
) -> None:
    """Every tool, whether it is available with what is attached, and its arguments."""
    from orchard.tools import describe_tools

    rows = describe_tools(_orchard(store).answers.tools(db_url=db, tables=table or ()))
    if as_json:
        typer.echo(json.dumps(rows, ensure_ascii=False, indent=2))
        return
    for row in rows:
        state = "ready" if row["available"] else f"needs {row['needs']}"
        args = ", ".join(row["args"])
        typer.echo(f"{row['name']:<13} {{{args}}}  {state}")


@app.command("run")
def run_command(
    name: Annotated[str, typer.Argument(help="The tool: python, sql, sql_schema, table, table_schema or search_docs.")],
    input_json: Annotated[str, typer.Option("--input", help='Its arguments as JSON, e.g. \'{"code": "print(2**10)"}\'.')],
    db: DbOpt = None,
    table: TableOpt = None,
    store: StoreOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help='Print {"ok", "output", "error"}.')] = False,
) -> None:
    """Run one tool with the given arguments, outside any agent."""
    from orchard.tools import NEEDS, TOOL_NAMES
    from orchard.tools.base import run_tool

    try:
        arguments = json.loads(input_json)
    except json.JSONDecodeError as exc:
        result: dict[str, Any] = {"ok": False, "output": "", "error": f"--input is not JSON: {exc}"}
    else:
        orchard = _orchard(store)
        available = {t.name: t for t in orchard.answers.tools(db_url=db, tables=tuple(table or ()))}
        if name not in TOOL_NAMES:
            result = {"ok": False, "output": "", "error": f"no tool named {name!r}; tools: {', '.join(TOOL_NAMES)}"}
        elif name not in available:
            result = {"ok": False, "output": "", "error": f"{name} needs {NEEDS[name]}"}
        elif not isinstance(arguments, dict):
            result = {"ok": False, "output": "", "error": "--input must be a JSON object, e.g. {\"query\": \"...\"}"}
        else:
            result = run_tool(available[name], arguments)
        orchard.close()  # the sql tool's connection pool
    if as_json:
        typer.echo(json.dumps(result, ensure_ascii=False, indent=2))
        return
    if result["ok"]:
        typer.echo(result["output"])
        return
    typer.echo(result["error"], err=True)
    raise typer.Exit(1)
