"""``orchard models list|quantize|bench``: which model, which quantization, on this computer.

* ``list`` — the installed model files (assembled presets and quantized variants under
  ``<cache_dir>/models``): type, size, served name, which one is selected, and the bench figures.
* ``quantize PRESET --type T`` — another quantization of a preset (:mod:`orchard.quantize`),
  selectable as ``ORCHARD_MODEL_PRESET=<preset>-<type>`` or ``orchard serve --model ...``.
* ``bench [MODELS...]`` — for each model file: size, resident memory, prompt and decode tokens/s
  (:mod:`orchard.model_bench`) and the answers' quality (:mod:`orchard.evaluate`) on the first
  N questions of a question file, over the configured documents store; saved in
  ``<data_dir>/bench/models.json``.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer

app = typer.Typer(no_args_is_help=True, add_completion=False)

#: The public question file, beside the repository (``../shared/eval``) as in the project's layout.
PUBLIC_QUESTIONS = Path(__file__).resolve().parents[2] / "shared" / "eval" / "pydocs-questions.jsonl"


def _echo(message: str) -> None:
    typer.echo(message, err=True)


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(1)


def _settings(**overrides: Any) -> Any:
    from orchard.cli import cli_settings

    return cli_settings(**overrides)


def model_table() -> tuple[Any, list[dict[str, Any]]]:
    """The settings and the rows of ``orchard models list`` (:func:`orchard.usecases.model_server.model_table`)."""
    from orchard.usecases.model_server import model_table as rows

    settings = _settings()
    return settings, rows(settings)


@app.command("list")
def list_models(as_json: Annotated[bool, typer.Option("--json", help="Print the rows as JSON.")] = False) -> None:
    """The installed model files, the selected one (*), and their bench figures if measured."""
    from orchard.model_bench import markdown_table

    settings, rows = model_table()
    if as_json:
        typer.echo(json.dumps({"selected": settings.model_preset, "models": rows}, indent=2))
        return
    if not rows:
        typer.echo(f"no model files in {settings.cache_path / 'models'}: run `orchard model` (or `make model`)")
        return
    for row in rows:
        row["model"] = ("* " if row["selected"] else "  ") + row["model"]
    typer.echo(markdown_table(rows))
    typer.echo(f"\n* selected (ORCHARD_MODEL_PRESET={settings.model_preset}); served names:")
    for row in rows:
        typer.echo(f"  {row['model'].strip('* ').strip():22} {row['served_name']}")
    if not any(row["decode_tps"] for row in rows):
        typer.echo("no bench figures yet: `orchard models bench`")


@app.command("quantize")
def quantize(
    preset: Annotated[str, typer.Argument(help="The packaged model to start from (qwen-0.5b, qwen-1.5b).")],
    types: Annotated[
        list[str], typer.Option("--type", "-t", help="Q8_0, Q6_K, Q5_K_M, Q4_0, Q3_K_M or Q2_K (repeatable).")
    ],
    force: Annotated[bool, typer.Option(help="Remake a variant that exists already.")] = False,
    threads: Annotated[int, typer.Option(help="Threads for llama.cpp (0: all cores).")] = 0,
) -> None:
    """Make other quantizations of a packaged (Q4_K_M) model with llama.cpp's quantize API.

    Each variant is requantized from the Q4_K_M file and keeps its error: Q8_0 is bigger and
    slower, not better. Example: `orchard models quantize qwen-0.5b --type Q3_K_M`, then
    `ORCHARD_MODEL_PRESET=qwen-0.5b-q3_k_m orchard ask ...`.
    """
    from orchard.model import PRESETS
    from orchard.quantize import quant_type, quantize_preset

    if preset not in PRESETS:
        _fail(f"unknown preset {preset!r}: choose one of {', '.join(PRESETS)}")
    canonical = [quant_type(t) for t in types]  # every type is checked before any work starts
    settings = _settings()
    for type_name in canonical:
        t0 = time.monotonic()
        path = quantize_preset(
            preset, type_name, cache_dir=settings.cache_path, force=force, threads=threads,
            on_start=lambda source, target: _echo(f"quantizing {source.name} -> {target.name} …"),
        )  # fmt: skip
        _echo(f"{path.stem}: {path.stat().st_size / 1e6:.0f} MB ({time.monotonic() - t0:.0f} s)")
        typer.echo(str(path))


@contextlib.contextmanager
def _cpu_lock(path: Path | None) -> Iterator[None]:
    """Hold ``flock(path)`` (shared machines: one timing run at a time); no-op for None."""
    if path is None:
        yield
        return
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _load_average() -> float | None:
    try:
        return float(Path("/proc/loadavg").read_text().split()[0])
    except (OSError, ValueError):
        return None


def bench_one(
    name: str,
    *,
    settings: Any,
    questions: list[dict[str, Any]],
    questions_file: Path,
    port: int,
    cpu_lock: Path | None,
    decode_tokens: int = 128,
) -> dict[str, Any]:
    """Serve model ``name`` on ``port``, measure it, stop it; its bench record."""
    from orchard import model_bench, server
    from orchard.cli import make_orchard
    from orchard.evaluate import evaluate_answers
    from orchard.model import resolve_model
    from orchard.usecases import AnswerRequest

    path, served = resolve_model(name, cache_dir=settings.cache_path)
    base_url = f"http://127.0.0.1:{port}/v1"
    if server.is_listening(base_url):
        _fail(f"port {port} is in use: give another with --port")
    threads = settings.server_threads or server.default_threads()
    command = server.llamacpp_command(model_path=path, served_name=served, port=port, threads=threads, n_ctx=settings.server_ctx)
    log = settings.data_dir / "bench" / "logs" / f"{name}.log"
    _echo(f"{name}: starting the server ({path.name}, log: {log}) …")
    t0 = time.monotonic()
    handle = server.start_server(command, base_url=base_url, log=log, timeout=600.0)
    record: dict[str, Any] = {"model": name, "served_name": served, "file": str(path), "size_bytes": path.stat().st_size,
                              "threads": threads, "load_seconds": round(time.monotonic() - t0, 1)}  # fmt: skip
    try:
        pid = handle.process.pid
        record["rss_after_load_mib"] = model_bench.rss_mib(pid)
        with _cpu_lock(cpu_lock):
            record["load_average_before_timing"] = _load_average()
            record.update(model_bench.prompt_speed(base_url, served))
            record.update(model_bench.decode_speed(base_url, served, max_tokens=decode_tokens))
        _echo(f"{name}: prompt {record['prompt_tokens_per_s']} tok/s, decode {record['decode_tokens_per_s']} tok/s")
        if questions:
            orchard = make_orchard(settings.model_copy(update={"llm_base_url": base_url, "llm_model": served}))

            def said(row: dict[str, Any]) -> None:
                _echo(f"  {'ok  ' if row['right_and_cited'] else 'FAIL'} {row.get('seconds') or 0:5.1f}s {row['q'][:70]}")

            result = evaluate_answers(questions, answer=lambda q: orchard.answers.ask(AnswerRequest(question=q, mode="rag")), on_row=said)
            record["quality"] = {**result["summary"], "questions_file": str(questions_file), "store": str(settings.store_path),
                                 "answers": [{"q": r["q"], "right_and_cited": r["right_and_cited"], "answer": r["answer"]}
                                             for r in result["questions"]]}  # fmt: skip
        record["rss_after_answers_mib"] = model_bench.rss_mib(pid)
    finally:
        handle.stop()
    record["measured_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return record


@app.command("bench")
def bench(
    models: Annotated[list[str] | None, typer.Argument(help="Model names (default: every installed model file).")] = None,
    questions: Annotated[int, typer.Option("--questions", "-n", help="Answer the first N questions (0: speed and memory only).")] = 12,
    answers: Annotated[
        Path | None, typer.Option("--answers", help='Question file ({"q", "pages", "facts"} JSONL; default: the public Python-docs questions).')
    ] = None,
    store: Annotated[Path | None, typer.Option("--store", help="Documents store the questions are answered from (default: ORCHARD_STORE_DIR).")] = None,
    port: Annotated[int, typer.Option(help="Port for the bench's own model server.")] = 8710,
    cpu_lock: Annotated[
        Path | None, typer.Option("--cpu-lock", help="Hold flock(FILE) while timing each model (a machine shared with other timing runs).")
    ] = None,
    decode_tokens: Annotated[int, typer.Option(help="Tokens generated for the decode speed.")] = 128,
    as_json: Annotated[bool, typer.Option("--json", help="Print the records as JSON.")] = False,
) -> None:
    """Measure each model file on this machine: size, resident memory, prompt and decode tokens/s,
    and right-and-cited answers; saved in <data_dir>/bench/models.json for `orchard models list`
    and the app's Settings.
    """
    from orchard.evaluate import load_questions
    from orchard.model import installed_models
    from orchard.model_bench import markdown_table, results_path, save_result, trade_off_rows

    if questions < 0 or decode_tokens < 2:
        _fail("--questions must be 0 or more, --decode-tokens 2 or more")
    settings = _settings(**({"store_dir": store} if store else {}))
    names = list(models or [m.name for m in installed_models(settings.cache_path)])
    if not names:
        _fail(f"no model files in {settings.cache_path / 'models'}: run `orchard model` first")
    subset: list[dict[str, Any]] = []
    questions_file = answers or PUBLIC_QUESTIONS
    if questions:
        if not questions_file.is_file():
            _fail(f"question file {questions_file} not found: give one with --answers")
        subset = load_questions(questions_file)[:questions]
        if not settings.store_path.is_dir():
            _fail(f"no documents store at {settings.store_path}: `orchard ingest` first, or --store, or --questions 0")
        _echo(f"quality: the first {len(subset)} questions of {questions_file}, answered from {settings.store_path}")
    out = results_path(settings.data_dir)
    records = []
    # `kill` must stop the bench's model server too: SIGTERM unwinds like Ctrl-C (bench_one's finally).
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    for name in names:
        record = bench_one(name, settings=settings, questions=subset, questions_file=questions_file, port=port, cpu_lock=cpu_lock,
                           decode_tokens=decode_tokens)
        save_result(out, name, record)
        records.append(record)
    if as_json:
        typer.echo(json.dumps({"results": str(out), "models": records}, indent=2))
        return
    from orchard.model import installed_models as installed

    measured = [m for m in installed(settings.cache_path) if m.name in names]
    typer.echo(markdown_table(trade_off_rows(measured, {r["model"]: r for r in records})))
    print(f"(saved in {out})", file=sys.stderr)
