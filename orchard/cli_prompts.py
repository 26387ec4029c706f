"""``orchard prompts``: list, show and check the prompt templates.

Packaged prompts live in :mod:`orchard.prompts`; a file of the same name in ``ORCHARD_PROMPTS_DIR``
(default ``<data_dir>/prompts``, where the app's editor saves) overrides one. The commands call
:attr:`Orchard.customization <orchard.usecases.Orchard>`. Errors go to stderr with exit code 1.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from orchard.errors import PromptError

app = typer.Typer(
    help=(
        "List, show and check prompt templates. Override one by copying it (`orchard prompts show"
        " NAME`) into ORCHARD_PROMPTS_DIR under the same file name and editing it."
    ),
    no_args_is_help=True,
    add_completion=False,
)


def _customization() -> Any:
    from orchard.cli import command_orchard

    return command_orchard().customization


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(1)


@app.command("list")
def list_command(
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON list.")] = False,
) -> None:
    """Each prompt with its origin (packaged or override) and description."""
    rows = _customization().prompts()
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
    customization = _customization()
    try:
        text = customization.prompt_text(name)
    except PromptError as exc:
        return _fail(str(exc))
    except (OSError, UnicodeDecodeError) as exc:
        return _fail(f"prompt {name}: its file cannot be read ({exc})")
    row = next(r for r in customization.prompts() if r["name"] == name)
    typer.echo(f"# {row['origin']} prompt file: {row['path']}")
    typer.echo(text, nl=not text.endswith("\n"))


@app.command("check")
def check_command() -> None:
    """Validate every prompt (packaged and overrides); exit code 1 if any is invalid."""
    customization = _customization()
    problems = customization.check_prompts()
    for row in customization.prompts():
        if not any(f"prompt file {row['path']}:" in problem for problem in problems):
            typer.echo(f"ok     {row['name']:<18} {row['origin']:<8}  {row['path']}")
    for problem in problems:
        typer.echo(f"error: {problem}", err=True)
    if problems:
        raise typer.Exit(1)
