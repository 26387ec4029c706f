"""The real path: embedded llama.cpp server, MiniLM embeddings, Chroma, the cited RAG chain,
through the answering use case (typed events) and the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from orchard.chains.rag import NO_ANSWER
from orchard.events import Token
from orchard.usecases import AnswerRequest

pytestmark = pytest.mark.live
ROOT = Path(__file__).resolve().parents[2]


def test_cited_answer_from_the_documents(live_orchard) -> None:
    result = live_orchard.answers.ask(AnswerRequest(question="When should apple trees be pruned?", mode="rag"))
    assert result.grounded is True, result
    assert result.cited, f"no inline citation in: {result.answer!r}"
    cited_sources = {result.sources[n - 1].source for n in result.cited}
    assert any(s.endswith("fruit-tree-care.html") for s in cited_sources), result
    assert "winter" in result.answer.lower()


def test_question_the_documents_cannot_answer(live_orchard) -> None:
    result = live_orchard.answers.ask(AnswerRequest(question="What is the boiling point of liquid nitrogen?", mode="rag"))
    assert result.grounded is False
    assert result.answer == NO_ANSWER or "do not answer" in result.answer.lower()


def test_answer_streams_token_by_token(live_orchard) -> None:
    stamps = []
    stream = live_orchard.answers.stream(AnswerRequest(question="Who coordinates the volunteers?", mode="rag"))
    for event in stream:
        if isinstance(event, Token):
            stamps.append(time.perf_counter())
    assert len(stamps) > 3
    assert stamps[-1] - stamps[0] > 0.05  # tokens arrived over time, not all at once
    timings = stream.result().timings
    assert timings.first_token_seconds is not None and 0 < timings.first_token_seconds < timings.seconds


def test_follow_up_question_uses_the_conversation(live_orchard) -> None:
    history = [
        {"role": "user", "content": "When are apple trees pruned?"},
        {"role": "assistant", "content": "In late winter [1]."},
    ]
    result = live_orchard.answers.ask(AnswerRequest(question="And plums?", history=tuple(history), mode="rag"))
    assert "plum" in result.standalone_question.lower()
    assert result.grounded is True
    assert "summer" in result.answer.lower(), result.answer


def test_cli_ask_json(live_server: str, tmp_path: Path) -> None:
    env = {
        **os.environ,
        "ORCHARD_LLM_BASE_URL": live_server,
        "ORCHARD_DATA_DIR": str(tmp_path / "data"),
        "ORCHARD_LLM_TEMPERATURE": "0",
    }
    orchard = [sys.executable, "-m", "orchard"]
    ingest = subprocess.run([*orchard, "ingest", str(ROOT / "samples"), "--json"], env=env, capture_output=True, text=True, timeout=300)
    assert ingest.returncode == 0, ingest.stderr
    assert json.loads(ingest.stdout)["files_indexed"] == 4
    ask = subprocess.run(
        [*orchard, "ask", "How many kilograms of Bramley were harvested in 2025?", "--json"],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert ask.returncode == 0, ask.stderr
    result = json.loads(ask.stdout)
    assert set(result) >= {"answer", "sources", "grounded", "model", "seconds", "first_token_seconds"}
    assert 0 < result["first_token_seconds"] < result["seconds"], result
    assert "412" in result["answer"], result["answer"]
    assert any(s["source"].endswith("apple-varieties.csv") for s in result["sources"])
