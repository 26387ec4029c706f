"""``orchard tune sft|dpo|distill`` and ``orchard adapters list|gate|activate|deactivate``.

Calls :attr:`Orchard.tuning <orchard.usecases.Orchard>` (:mod:`orchard.usecases.learning`).
``tune`` trains a LoRA adapter here, on the CPU (TRL + PEFT over the packaged model's weights),
and keeps it as ``--out NAME`` (a GGUF adapter for llama.cpp and a PEFT folder for vLLM); it does
not answer until ``adapters activate NAME``, which needs a passed gate (``adapters gate NAME``:
the held-out answer evaluation and the red-team set, the adapter against what answers now).
"""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from orchard.errors import OrchardError

tune_app = typer.Typer(help="Train a LoRA adapter here: sft, dpo or distill.", no_args_is_help=True, add_completion=False)
adapters_app = typer.Typer(help="LoRA adapters trained here: list, gate, activate, deactivate.", no_args_is_help=True,
                           add_completion=False)  # fmt: skip

ROOT = Path(__file__).resolve().parents[1]
UserOpt = Annotated[
    str | None, typer.Option("--user", help="Whose adapter (default: ORCHARD_DEFAULT_USER, the personal mode's user).")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON on stdout.")]
NameOpt = Annotated[str, typer.Option("--out", help="The adapter's name (lower-case letters, digits, . _ -).")]
ModelOpt = Annotated[str | None, typer.Option("--model", help="The preset to adapt (default: ORCHARD_MODEL_PRESET).")]
StepsOpt = Annotated[int | None, typer.Option("--steps", min=1, help="Optimizer steps (default: one epoch over the rows).")]


def _tuning() -> Any:
    from orchard.cli import command_orchard

    return command_orchard().tuning


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(1)


def _user(user: str | None) -> str:
    """The user (default: ORCHARD_DEFAULT_USER), trimmed; the stores check it further."""
    from orchard.config import load_settings

    name = (user if user is not None else load_settings().default_user).strip()
    if not name:
        _fail("the user name is empty — enter a name (it keeps your conversations and ratings apart)")
    return name


def _train(
    method: str, *, rows_of: Any, name: str, user: str | None, model: str | None, steps: int | None, as_json: bool
) -> None:
    from tqdm import tqdm

    tuning, who = _tuning(), _user(user)
    bar = None

    def progress(p: Any) -> None:
        nonlocal bar
        if bar is None:
            bar = tqdm(total=p.total, desc=f"{method} {name}", unit="step", file=typer.get_text_stream("stderr"))
        bar.set_postfix_str(
            f"loss {p.loss:.3f}, {p.seconds_left:.0f} s left" if p.loss is not None else f"{p.seconds_left:.0f} s left"
        )
        bar.update(p.step - bar.n)

    try:
        # transformers' Trainer prints its log lines on stdout: they go to stderr, so --json stays one object
        with contextlib.redirect_stdout(sys.stderr):
            rows = rows_of(tuning, who)
            adapter = tuning.train(method, name=name, user=who, rows=rows, model=model, steps=steps, progress=progress)
    except (OrchardError, ValueError) as exc:
        _fail(str(exc))
    finally:
        if bar is not None:
            bar.close()
    data = adapter.as_dict(who)
    if as_json:
        typer.echo(json.dumps(data, default=str))
        return
    t = data["training"]
    typer.echo(f"adapter {name}: {method} on {data['rows']} rows, {t.get('steps')} steps, {t.get('seconds_per_step', 0):.1f} s/step, "
               f"final loss {(t.get('losses') or [None])[-1]}; not active yet — `orchard adapters gate {name}`, then `orchard adapters activate {name}`")  # fmt: skip


@tune_app.command()
def sft(out: NameOpt, data: Annotated[Path | None, typer.Option(help="JSONL {prompt, completion} (default: your up-rated answers).")] = None,
        model: ModelOpt = None, steps: StepsOpt = None, user: UserOpt = None, as_json: JsonOpt = False) -> None:  # fmt: skip
    """Supervised fine-tuning on good answers."""
    _train(
        "sft",
        rows_of=lambda t, u: t.rows("sft", user=u, data=data),
        name=out,
        user=user,
        model=model,
        steps=steps,
        as_json=as_json,
    )


@tune_app.command()
def dpo(out: NameOpt, data: Annotated[Path | None, typer.Option(help="JSONL {prompt, chosen, rejected} (default: your pairs, every source).")] = None,
        model: ModelOpt = None, steps: StepsOpt = None, user: UserOpt = None, as_json: JsonOpt = False) -> None:  # fmt: skip
    """Direct preference optimisation on preference pairs."""
    _train(
        "dpo",
        rows_of=lambda t, u: t.rows("dpo", user=u, data=data),
        name=out,
        user=user,
        model=model,
        steps=steps,
        as_json=as_json,
    )


@tune_app.command()
def distill(
    out: NameOpt,
    teacher_url: Annotated[str, typer.Option(help="The teacher's OpenAI-compatible endpoint, e.g. `orchard serve --model qwen-1.5b --port 8002` "
                                             "-> http://127.0.0.1:8002/v1, or a vLLM server.")],
    teacher_model: Annotated[str, typer.Option(help="The model name the teacher serves.")] = "qwen2.5-coder-1.5b-instruct",
    questions: Annotated[int, typer.Option(min=1, help="Questions written from your documents (one per sampled passage).")] = 40,
    model: ModelOpt = None, steps: StepsOpt = None, user: UserOpt = None, as_json: JsonOpt = False,
) -> None:  # fmt: skip
    """The student (the embedded model) learns the teacher's cited answers to questions from your documents."""

    def rows_of(tuning: Any, who: str) -> Any:
        typer.echo(f"the teacher writes and answers {questions} questions from your documents …", err=True)
        return tuning.distill_rows(teacher_url=teacher_url, teacher_model=teacher_model, questions=questions)

    _train("distill", rows_of=rows_of, name=out, user=user, model=model, steps=steps, as_json=as_json)


@adapters_app.command("list")
def list_adapters(user: UserOpt = None, as_json: JsonOpt = False) -> None:
    """Your adapters and the shared ones: method, rows, gate, which one answers."""
    rows = _tuning().list(_user(user))
    if as_json:
        typer.echo(json.dumps(rows, default=str))
        return
    if not rows:
        typer.echo("no adapters yet — `orchard tune sft|dpo|distill --out NAME`")
        return
    for row in rows:
        gate = row.get("gate")
        verdict = "not gated" if gate is None else ("gate passed" if gate.get("passed") else "gate failed")
        typer.echo(
            f"{'*' if row['active'] else ' '} {row['name']}: {row['method']} on {row['base']}, {row['rows']} rows, {verdict}"
        )


@adapters_app.command()
def gate(
    name: Annotated[str, typer.Argument(help="The adapter.")],
    questions: Annotated[Path, typer.Option(help="Held-out questions {q, pages, facts}.")] = ROOT
    / "bench"
    / "heldout-answers.jsonl",
    redteam: Annotated[Path, typer.Option(help="Red-team set {id, kind, q}.")] = ROOT / "bench" / "redteam-heldout.jsonl",
    limit: Annotated[int, typer.Option(min=1, help="Questions and red-team prompts asked per side.")] = 10,
    user: UserOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Evaluate the adapter against what answers now; the report is kept with it."""
    try:
        report = _tuning().gate(name, user=_user(user), questions=questions, redteam=redteam, limit=limit,
                                log=lambda m: typer.echo(m, err=True))  # fmt: skip
    except (OrchardError, ValueError) as exc:
        _fail(str(exc))
    if as_json:
        typer.echo(json.dumps(report, default=str))
        return
    for side in ("current", "candidate"):
        r = report[side]
        typer.echo(f"{side:9} {r['adapter'] or 'base model'}: right and cited {r['right_and_cited']:.2f}, harmful declined "
                   f"{r['harmful_declined']}/{r['harmful']}, benign helped {r['benign_helped']}/{r['benign']}")  # fmt: skip
    typer.echo(
        "gate passed" if report["passed"] else "gate failed: " + ", ".join(k for k, ok in report["checks"].items() if not ok)
    )


@adapters_app.command()
def activate(name: Annotated[str, typer.Argument(help="The adapter.")],
             force: Annotated[bool, typer.Option("--force", help="Activate without a passed gate.")] = False,
             user: UserOpt = None) -> None:  # fmt: skip
    """Answer with this adapter (after a passed gate); the embedded server loads it at its next start."""
    try:
        _tuning().activate(name, user=_user(user), force=force)
    except (OrchardError, ValueError) as exc:
        _fail(str(exc))
    typer.echo(f"adapter {name} is active; restart the model server (`orchard serve`, `make run`) to load it")


@adapters_app.command()
def deactivate(user: UserOpt = None) -> None:
    """Back to the base model."""
    _tuning().deactivate(user=_user(user))
    typer.echo("no adapter is active; restart the model server to unload it")
