"""``orchard feedback`` and ``orchard profile``: ratings as training data, and preference profiles.

Both call :attr:`Orchard.feedback <orchard.usecases.Orchard>` (:mod:`orchard.usecases.feedback`).
``feedback add`` imports a rating made elsewhere (another tool, a spreadsheet of reviews) into the
same store the chat app's thumbs write to (``<ORCHARD_DATA_DIR>/orchard.sqlite3``); ``feedback
list`` shows them; ``feedback export`` writes them as JSONL for fine-tuning: ``dpo`` (TRL's
*preference* layout ``{"prompt", "chosen", "rejected"}``), ``sft`` (*prompt-completion*
``{"prompt", "completion"}``) or ``jsonl`` (every field). See docs/fine-tuning.md.

``profile show|set|delete`` reads and edits the preference profile added to a user's prompts
(``orchard ask --user NAME``). A rating added here updates the user's derived profile lines like a
thumb in the app does.

Errors a user can fix (a bad rating, an empty user name, an unknown format) are one line on
stderr with exit code 1.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from orchard.errors import OrchardError

app = typer.Typer(
    help=(
        "Ratings of answers: add (import) one, list them, export them as DPO/SFT/JSONL training "
        "data (docs/fine-tuning.md)."
    ),
    no_args_is_help=True,
    add_completion=False,
)
profile_app = typer.Typer(
    help="Show, set or delete a user's preference profile (added to their prompts: `orchard ask --user`).",
    no_args_is_help=True,
    add_completion=False,
)

UserOpt = Annotated[str, typer.Option("--user", help="The user name (keeps ratings and profiles apart).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON on stdout.")]


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(1)


def _feedback() -> Any:
    """The feedback use case of the command's Orchard (:func:`orchard.cli.command_orchard`)."""
    from orchard.cli import command_orchard

    return command_orchard().feedback


def _row(item: Any) -> dict[str, Any]:
    """A rating as JSON (the fields of the ``jsonl`` export; ``created_at`` in ISO 8601, UTC)."""
    row = asdict(item)
    row["sources"] = list(item.sources)
    row["created_at"] = datetime.fromtimestamp(item.created_at, UTC).isoformat()
    return row


def _one_line(text: str, width: int) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _print_json(data: Any) -> None:
    typer.echo(json.dumps(data, ensure_ascii=False, indent=2))


# --- feedback ---------------------------------------------------------------------------------


@app.command("add")
def add_command(
    user: UserOpt,
    prompt: Annotated[str, typer.Option("--prompt", help="The question the answer was for.")],
    response: Annotated[str, typer.Option("--response", help="The answer that was rated.")],
    rating: Annotated[str, typer.Option("--rating", help="up or down.")],
    comment: Annotated[str | None, typer.Option("--comment", help="Why (e.g. 'too long'): feeds the user's profile.")] = None,
    model: Annotated[str | None, typer.Option("--model", help="The model that wrote the answer.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Add a rating made elsewhere; the user's derived profile lines are updated from it."""
    from orchard.usecases.feedback import RATINGS

    if rating not in RATINGS:
        _fail(f"invalid rating {rating!r} — expected 'up' or 'down'")
    feedback = _feedback()
    try:
        record = feedback.add(user=user, prompt=prompt, response=response, rating=rating, comment=comment, model=model)
    except (ValueError, OrchardError) as exc:
        _fail(str(exc))
    if as_json:
        _print_json(_row(record))
        return
    typer.echo(f"rating {record.id} added ({record.rating}, user {record.user})")


@app.command("list")
def list_command(
    user: Annotated[str | None, typer.Option("--user", help="Only this user's ratings.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Every rating (or one user's), oldest first."""
    feedback = _feedback()
    try:
        items = feedback.list(user)
    except (ValueError, OrchardError) as exc:
        return _fail(str(exc))
    if as_json:
        _print_json([_row(item) for item in items])
        return
    if not items:
        typer.echo("no ratings" + (f" for user {user.strip()}" if user else ""), err=True)
        return
    for item in items:
        when = datetime.fromtimestamp(item.created_at).strftime("%Y-%m-%d %H:%M")
        line = f"{item.id:>5}  {when}  {item.user:<12} {item.rating:<4}  {_one_line(item.prompt, 40)!s:<40}  → {_one_line(item.response, 50)}"
        if item.comment:
            line += f"  ({_one_line(item.comment, 40)})"
        typer.echo(line)


@app.command("delete")
def delete_command(
    feedback_id: Annotated[int, typer.Argument(help="The rating's id (see `orchard feedback list`).")],
    user: Annotated[str | None, typer.Option("--user", help="Only if it is this user's rating.")] = None,
) -> None:
    """Delete one rating."""
    feedback = _feedback()
    try:
        feedback.delete(feedback_id, user=user)
    except (ValueError, OrchardError) as exc:
        return _fail(str(exc))
    typer.echo(f"rating {feedback_id} deleted")


@app.command("export")
def export_command(
    fmt: Annotated[str, typer.Option("--format", help="dpo (prompt/chosen/rejected pairs), sft (prompt/completion) or jsonl (every field).")],
    out: Annotated[Path, typer.Option("--out", help="The JSONL file to write (replaced atomically).")],
    user: Annotated[str | None, typer.Option("--user", help="Only this user's ratings.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Write the ratings as JSONL training data; prints the number of rows written.

    dpo: every up-rated answer paired with every down-rated one of the same prompt (an answer
    rated both ways is left out); load with `datasets.load_dataset("json", data_files=FILE)`.
    """
    from orchard.usecases.feedback import EXPORT_FORMATS

    if fmt not in EXPORT_FORMATS:
        _fail(f"unknown export format {fmt!r} — expected one of {', '.join(EXPORT_FORMATS)}")
    feedback = _feedback()
    try:
        rows = feedback.export(fmt, out, user=user)
    except (ValueError, OrchardError, OSError) as exc:
        return _fail(str(exc))
    if as_json:
        _print_json({"format": fmt, "rows": rows, "path": str(out)})
        return
    typer.echo(f"{rows} {fmt} rows written to {out}")


# --- profile ----------------------------------------------------------------------------------


@profile_app.command("show")
def profile_show(user: UserOpt, as_json: JsonOpt = False) -> None:
    """The user's profile (their lines, then lines derived from their ratings)."""
    feedback = _feedback()
    try:
        text = feedback.profile(user)
    except (ValueError, OrchardError) as exc:
        return _fail(str(exc))
    if as_json:
        _print_json({"user": user.strip(), "profile": text})
    elif text:
        typer.echo(text)
    else:
        typer.echo(f"no profile for user {user.strip()}", err=True)


@profile_app.command("set")
def profile_set(
    user: UserOpt,
    text: Annotated[str, typer.Option("--text", help="The whole profile, one preference per line ('-' reads stdin).")],
    as_json: JsonOpt = False,
) -> None:
    """Replace the profile with TEXT (at most 600 characters); prints the profile now in use.

    Derived lines left out are dismissed (not derived again); lines you write are never overwritten.
    """
    if text == "-":
        import sys

        text = sys.stdin.read()
    feedback = _feedback()
    try:
        saved = feedback.set_profile(user, text)
    except (ValueError, OrchardError) as exc:
        return _fail(str(exc))
    if as_json:
        _print_json({"user": user.strip(), "profile": saved})
    else:
        typer.echo(saved or f"profile of {user.strip()} is now empty")


@profile_app.command("delete")
def profile_delete(user: UserOpt) -> None:
    """Forget the profile and (for the profile only) the ratings given so far."""
    feedback = _feedback()
    try:
        feedback.delete_profile(user)
    except (ValueError, OrchardError) as exc:
        return _fail(str(exc))
    typer.echo(f"profile of {user.strip()} deleted")
