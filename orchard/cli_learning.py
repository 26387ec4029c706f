"""``orchard reward train|list|activate|score``: the reward model learned from a user's ratings.

Calls :attr:`Orchard.learning <orchard.usecases.Orchard>` (:mod:`orchard.usecases.learning`).
``train`` fits the user's model (``--user``; without it the global model, over everyone's
ratings) and prints its held-out pair accuracy; ``score`` scores answers to a prompt the way
best-of-n does (``orchard ask --best-of N``). Errors a user can fix are one line on stderr, exit 1.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

app = typer.Typer(
    help="The reward model learned from ratings: train it, list its versions, pin one, score answers.",
    no_args_is_help=True,
    add_completion=False,
)

UserOpt = Annotated[
    str | None, typer.Option("--user", help="Whose model (default: the global one, trained on everyone's ratings).")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON on stdout.")]


def _learning() -> Any:
    from orchard.cli import command_orchard

    return command_orchard().learning


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(1)


def _user(user: str | None) -> str | None:
    """The user name, trimmed (the stores check it further: a bad one is a ValueError, said in one line)."""
    if user is not None and not user.strip():
        _fail("the user name is empty — enter a name (it keeps your conversations and ratings apart)")
    return None if user is None else user.strip()


@app.command()
def train(user: UserOpt = None, as_json: JsonOpt = False) -> None:
    """Train the reward model now (a new version); prints pairs, points and held-out pair accuracy."""
    try:
        result = _learning().train_reward(_user(user))
    except (ValueError, RuntimeError) as exc:  # not enough feedback, a bad name; another process training
        _fail(str(exc))
    if as_json:
        typer.echo(json.dumps(result, ensure_ascii=False, default=str))
        return
    accuracy = result.get("heldout_pair_accuracy")
    shown = "n/a (too few pairs to hold out)" if accuracy is None else f"{accuracy:.3f} on {result.get('heldout_pairs')} pairs"
    typer.echo(f"reward model v{result['version']}: {result.get('n_pairs')} pairs, {result.get('n_points')} rated answers; "
               f"held-out pair accuracy {shown} ({result.get('seconds', 0):.1f} s); {result.get('gate')}")  # fmt: skip


@app.command("list")
def list_versions(user: UserOpt = None, as_json: JsonOpt = False) -> None:
    """The versions of the reward model, with what each was trained on and its held-out accuracy."""
    rows = _learning().reward_versions(_user(user))
    if as_json:
        typer.echo(json.dumps(rows, ensure_ascii=False, default=str))
        return
    if not rows:
        typer.echo("no reward model yet — rate answers, then `orchard reward train`")
        return
    for row in rows:
        accuracy = row.get("heldout_pair_accuracy")
        typer.echo(f"{'*' if row['active'] else ' '} v{row['version']}: trained on {row.get('trained_on')} ratings, "
                   f"{row.get('n_pairs')} pairs, held-out accuracy {'n/a' if accuracy is None else format(accuracy, '.3f')}")  # fmt: skip


@app.command()
def activate(version: Annotated[int | None, typer.Argument(help="The version to pin (omit: back to the latest).")] = None,
             user: UserOpt = None) -> None:  # fmt: skip
    """Pin the version best-of-n uses (without VERSION: the latest again)."""
    try:
        _learning().activate_reward(_user(user), version)
    except ValueError as exc:  # no such version, a bad name
        _fail(str(exc))
    typer.echo(f"reward model: {'v' + str(version) if version is not None else 'the latest version'} is active")


@app.command()
def score(
    prompt: Annotated[str, typer.Argument(help="The question the answers are for.")],
    answers: Annotated[list[str], typer.Argument(help="Answers to score.")],
    user: UserOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Score answers with the user's reward model (their own, else the global one); best first."""
    try:
        result = _learning().score(prompt, answers, user=_user(user))
    except ValueError as exc:  # no reward model yet, a bad name
        _fail(str(exc))
    if as_json:
        typer.echo(json.dumps(result, ensure_ascii=False))
        return
    typer.echo(f"({result['model']})", err=True)
    for i in sorted(range(len(answers)), key=lambda i: -result["scores"][i]):
        typer.echo(f"{result['scores'][i]:+.3f}  {answers[i]}")
