"""``orchard prompts``: list, show and check the prompt templates.

Packaged prompts live in :mod:`orchard.prompts`; a file of the same name in ``ORCHARD_PROMPTS_DIR``
overrides one. Errors go to stderr with exit code 1.
"""

from __future__ import annotations

import json
from typing import Annotated

import typer

from orchard.config import Settings
from orchard.errors import PromptError
from orchard.prompts import check_prompts, list_prompts, prompt_source

app = typer.Typer(
    help=(
        "List, show and check prompt templates. Override one by copying it (`orchard prompts show"
        " NAME`) into ORCHARD_PROMPTS_DIR under the same file name and editing it."
    ),
    no_args_is_help=True,
    add_completion=False,
)


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(1)


@app.command("list")
def list_command(
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON list.")] = False,
) -> None:
    """Each prompt with its origin (packaged or override) and description."""
    rows = list_prompts(user_dir=Settings().prompts_path)
    if as_json:
        typer.echo(json.dumps(rows, ensure_ascii=False, indent=2))
        return
    name_w = max(len("NAME"), *(len(r["name"]) for r in rows))
    origin_w = len("packaged")
    typer.echo(f"{'NAME':<{name_w}}  {'ORIGIN':<{origin_w}}  DESCRIPTION")
    for row in rows:
        typer.echo(f"{row['name']:<{name_w}}  {row['origin']:<{origin_w}}  {row['description']}")


@app.command("show")
def show_command(
    name: Annotated[str, typer.Argument(help="Prompt name, e.g. rag_answer.")],
) -> None:
    """Print the YAML of the prompt file in use, after a comment saying which file it is."""
    try:
        path, origin = prompt_source(name, user_dir=Settings().prompts_path)
    except PromptError as exc:
        return _fail(str(exc))
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return _fail(f"prompt file {path}: cannot be read ({exc})")
    typer.echo(f"# {origin} prompt file: {path}")
    typer.echo(text, nl=not text.endswith("\n"))


@app.command("check")
def check_command() -> None:
    """Validate every prompt (packaged and overrides); exit code 1 if any is invalid."""
    settings = Settings()
    # An explicit ORCHARD_PROMPTS_DIR must exist; the default folder only once something is saved.
    user_dir = settings.prompts_dir or (settings.prompts_path if settings.prompts_path.is_dir() else None)
    problems = check_prompts(user_dir=user_dir)
    for row in list_prompts(user_dir=user_dir):
        if not any(f"prompt file {row['path']}:" in problem for problem in problems):
            typer.echo(f"ok     {row['name']:<18} {row['origin']:<8}  {row['path']}")
    for problem in problems:
        typer.echo(f"error: {problem}", err=True)
    if problems:
        raise typer.Exit(1)
