"""What the HTTP API adds per request: `orchard api` against the use cases called directly.

The model is scripted (answers at once), so only Orchard's own time is measured: the use case
alone (`orchard.answers.ask`), the stored turn the API runs (`orchard.conversations.ask`), and a
chat completion over real HTTP (uvicorn on loopback, httpx), not streamed and streamed. Median of
20 after 3 warm-up requests, for the chat and rag modes (rag: one document, bag-of-words
embeddings). Prints one JSON object.

Usage (from the repository root): .venv/bin/python bench/api_overhead.py [--runs 20]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from orchard.api import create_app  # noqa: E402
from orchard.usecases import AnswerRequest  # noqa: E402
from tests.api.fakes import APPLES, EchoModel  # noqa: E402
from tests.api.helpers import serving  # noqa: E402
from tests.fakes import scripted_orchard  # noqa: E402

QUESTION = "When should apple trees be pruned? tag-bench"
WARM_UP = 3


def median_ms(run: Callable[[], object], runs: int) -> dict[str, float]:
    for _ in range(WARM_UP):
        run()
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        run()
        times.append((time.perf_counter() - started) * 1000)
    return {"median_ms": round(statistics.median(times), 2), "min_ms": round(min(times), 2), "max_ms": round(max(times), 2)}


def measure(runs: int) -> dict[str, object]:
    import httpx

    results: dict[str, object] = {}
    with tempfile.TemporaryDirectory() as tmp:
        orchard = scripted_orchard(Path(tmp) / "data", llm=EchoModel(delay=0.0))
        orchard.library.upload([("apples.md", APPLES)])
        with serving(create_app(orchard)) as base_url, httpx.Client(base_url=base_url, timeout=60, trust_env=False) as http:
            for mode in ("chat", "rag"):
                body = {"model": f"orchard-{mode}", "messages": [{"role": "user", "content": QUESTION}]}

                def direct(mode: str = mode) -> object:
                    return orchard.answers.ask(AnswerRequest(question=QUESTION, mode=mode))

                def stored(mode: str = mode) -> object:
                    conversation = orchard.conversations.create("bench", mode=mode)
                    return orchard.conversations.ask("bench", conversation.id, QUESTION, history=[]).result()

                def api(body: dict = body) -> object:
                    response = http.post("/v1/chat/completions", json=body)
                    response.raise_for_status()
                    return response.json()

                def api_stream(body: dict = body) -> object:
                    with http.stream("POST", "/v1/chat/completions", json={**body, "stream": True}) as response:
                        response.raise_for_status()
                        text = response.read().decode()
                    assert text.rstrip().endswith("data: [DONE]")
                    return text

                timings = {name: median_ms(fn, runs) for name, fn in
                           (("direct", direct), ("conversation", stored), ("api", api), ("api_stream", api_stream))}  # fmt: skip
                base = timings["direct"]["median_ms"]
                timings["overhead_ms"] = {
                    "api_vs_direct": round(timings["api"]["median_ms"] - base, 2),
                    "api_stream_vs_direct": round(timings["api_stream"]["median_ms"] - base, 2),
                    "api_vs_conversation": round(timings["api"]["median_ms"] - timings["conversation"]["median_ms"], 2),
                }
                results[mode] = timings
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    summary = {
        "benchmark": "api_overhead",
        "runs": args.runs,
        "model": "scripted (EchoModel, no delay)",
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "modes": measure(args.runs),
    }
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
