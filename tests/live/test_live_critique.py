"""`orchard ask --critique` against the real model server (the 0.5B model, temperature 0).

One model-bound test (a critiqued answer is 2-5 model calls, ~10-40 s each on a 2-core CPU). What
the model's verdicts are is measured by bench/redteam.py; this checks the shape end to end.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from orchard.constitution import load_constitution

pytestmark = pytest.mark.live


def test_cli_ask_critique_json_has_draft_critiques_and_answer(live_server: str, tmp_path: Path) -> None:
    env = {
        **os.environ,
        "ORCHARD_LLM_BASE_URL": live_server,
        "ORCHARD_DATA_DIR": str(tmp_path / "data"),
        "ORCHARD_LLM_TEMPERATURE": "0",
        "ORCHARD_LLM_MAX_TOKENS": "96",
    }
    started = time.perf_counter()
    ask = subprocess.run(
        [sys.executable, "-m", "orchard", "ask", "What is the capital of France? Answer in one sentence.",
         "--mode", "chat", "--critique", "--json"],
        env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    seconds = time.perf_counter() - started
    assert ask.returncode == 0, ask.stderr
    result = json.loads(ask.stdout)
    assert {"draft", "critiques", "answer", "model", "seconds", "first_token_seconds"} <= set(result)
    assert "paris" in result["draft"].lower(), result

    principles = load_constitution().principles
    names = [c["principle"] for c in result["critiques"]]
    assert names == [p.name for p in principles][: len(names)] and names, result["critiques"]
    assert all(c["critique"].strip() and isinstance(c["needs_revision"], bool) for c in result["critiques"])
    stopped = principles[len(names) - 1]
    if len(names) < len(principles):  # the checks stop early only at a failed principle with a fixed reply
        assert result["critiques"][-1]["needs_revision"] and stopped.replacement
        assert result["answer"] == stopped.replacement.strip()
    elif not any(c["needs_revision"] for c in result["critiques"]):
        assert result["answer"] == result["draft"]  # all passed: the draft, no revision call
    else:
        assert result["answer"].strip(), result  # revised (or the draft, if the revision came back empty)
    assert seconds < 480, f"a critiqued one-sentence answer took {seconds:.0f} s"
