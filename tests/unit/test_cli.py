"""The CLI as a user runs it (in-process with Typer's runner; real embedder, store under tmp_path)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from orchard.cli import app

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False)


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "pruning.md").write_text("# Pruning\n\nPrune apple trees in late winter; plums in summer.\n")
    (folder / "volunteers.txt").write_text("Maya Okafor coordinates the volunteers on Saturdays.")
    (folder / "broken.pdf").write_bytes(b"%PDF-1.4 broken")
    (folder / "empty.md").write_text("")
    return folder


def test_help_explains_the_commands() -> None:
    result = invoke("--help")
    assert result.exit_code == 0
    for command in ("ingest", "search", "eval", "ask", "serve", "prompts", "model"):
        assert command in result.output


def test_ingest_json_summary_then_unchanged(docs: Path) -> None:
    first = json.loads(invoke("ingest", "docs", "--json").stdout)
    assert set(first) == {
        "files_indexed", "files_unchanged", "files_skipped", "files_failed",
        "chunks_added", "chunks_removed", "chunks_total", "seconds",
    }  # fmt: skip
    assert first["files_indexed"] == 2 and first["chunks_total"] == first["chunks_added"] == 2
    assert first["files_failed"][0]["path"] == "docs/broken.pdf"
    assert first["files_skipped"] == [{"path": "docs/empty.md", "reason": "empty file"}]
    second = json.loads(invoke("ingest", "docs", "--json").stdout)
    assert second["files_unchanged"] == 2 and second["chunks_added"] == 0 and second["chunks_total"] == 2


def test_search_json_ranks_the_right_file(docs: Path) -> None:
    invoke("ingest", "docs", "--json")
    hits = json.loads(invoke("search", "who leads the volunteers", "-k", "2", "--json").stdout)
    assert [set(h) for h in hits] == [{"source", "section", "score", "text", "chunk_id"}] * 2
    assert hits[0]["source"] == "docs/volunteers.txt"


def test_eval_reports_hit_at_k_and_mrr(docs: Path, tmp_path: Path) -> None:
    invoke("ingest", "docs", "--json")
    questions = tmp_path / "q.jsonl"
    questions.write_text(
        json.dumps({"q": "When are plums pruned?", "pages": ["pruning.md"]}) + "\n"
        + json.dumps({"q": "Who coordinates volunteers?", "pages": ["docs/volunteers.txt"]}) + "\n"
    )  # fmt: skip
    result = json.loads(invoke("eval", str(questions), "-k", "1", "--json").stdout)
    assert result["hit_at_k"] == 1.0 and result["mrr"] == 1.0
    assert result["questions"][0]["sources"] == ["docs/pruning.md"]


def test_user_errors_are_one_line_without_traceback(tmp_path: Path) -> None:
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "orchard", "ask", "anything", "--mode", "rag", "--store", str(tmp_path / "nothing")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: the document store at {tmp_path / 'nothing'} is empty — add documents with `orchard ingest PATH...`"
    )
    assert "Traceback" not in result.stderr


def test_serve_dry_run_builds_the_vllm_command() -> None:
    result = invoke(
        "serve", "--engine", "vllm", "--model", "Qwen/Qwen2.5-7B-Instruct-AWQ", "--quantization", "awq",
        "--max-model-len", "8192", "--port", "8100", "--dry-run",
    )  # fmt: skip
    assert result.exit_code == 0
    command = result.stdout.strip()
    assert command.endswith(
        "-m vllm.entrypoints.openai.api_server --model Qwen/Qwen2.5-7B-Instruct-AWQ --served-model-name "
        "qwen2.5-coder-0.5b-instruct --host 127.0.0.1 --port 8100 --enable-auto-tool-choice "
        "--tool-call-parser hermes --quantization awq --max-model-len 8192"
    )


def test_unknown_engine_is_an_error() -> None:
    result = runner.invoke(app, ["serve", "--engine", "tgi", "--dry-run"])
    assert result.exit_code == 1 and "unknown engine" in result.output


@pytest.mark.parametrize(
    ("args", "env", "expected"),
    [
        (["search", "x"], {"ORCHARD_TOP_K": "many"}, "error: invalid setting — ORCHARD_TOP_K"),
        (["eval", "no-such-file.jsonl"], {}, "error: [Errno 2] No such file or directory"),
    ],
)
def test_bad_settings_and_missing_files_are_one_line(args: list[str], env: dict, expected: str) -> None:
    import os
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "orchard", *args], capture_output=True, text=True, timeout=120, env={**os.environ, **env}
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith(expected), result.stderr
    assert "Traceback" not in result.stderr
