"""Time to first token, total time and decode speed per mode: through Orchard and straight to the
model server, on the same questions and the same final prompts.

Orchard: the answering use case in-process (as ``orchard ask`` runs it: ``answers.stream``), over
the real store and the model server at ``--base-url``; first token = the first answer ``Token``
event. Every model call Orchard makes is recorded (a callback on the model client); the last one
is the answer's prompt. Raw: that same final prompt (messages, temperature, max_tokens) POSTed to
``/v1/chat/completions`` with ``stream: true`` (httpx), first token = the first content chunk.
Decode tokens/s = (completion tokens - 1) / (last token time - first token time); Orchard's
completion tokens are counted at the model client (one per streamed chunk, as the server sends
them), its times at the events the user sees. Greedy decoding (temperature 0) on both sides so
the two produce the same tokens.

Order matters because llama.cpp reuses the KV prefix of the previous prompt: each round runs all
questions through Orchard, then all recorded prompts raw, each pass after one short unrelated call,
so neither side re-reads a prompt it just read (both reuse only the fixed instructions, as a user
asking new questions does). With
``--repeat R`` the rounds are repeated and medians taken over every run.

Usage (repository root, a model server of your own, timing under the CPU lock)::

    flock /tmp/orchard-cpu.lock .venv/bin/python bench/latency_path.py \\
        --base-url http://127.0.0.1:8720/v1 --modes chat,rag,auto -n 6 --repeat 1 --json

Environment: ORCHARD_DATA_DIR (the store: /tmp/pyd holds the Python docs), other ORCHARD_* as usual.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
ROOT = Path(__file__).resolve().parent.parent
DEFAULT_QUESTIONS = ROOT.parent / "shared" / "eval" / "pydocs-questions.jsonl"

from langchain_core.callbacks import BaseCallbackHandler  # noqa: E402


class CallRecorder(BaseCallbackHandler):
    """Records each chat-model call's messages and parameters, and its streamed tokens' times."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def on_chat_model_start(self, serialized: Any, messages: list[list[Any]], **kwargs: Any) -> None:
        params = kwargs.get("invocation_params") or {}
        self.calls.append({"messages": messages[0], "params": params, "token_times": []})

    def on_llm_new_token(self, token: str, **kwargs: Any) -> None:
        if self.calls:
            self.calls[-1]["token_times"].append(time.perf_counter())


def decode_rate(count: int, first: float | None, last: float | None) -> float | None:
    if count < 2 or first is None or last is None or last <= first:
        return None
    return (count - 1) / (last - first)


def through_orchard(orchard: Any, recorder: CallRecorder, question: str, mode: str) -> dict[str, Any]:
    from orchard.events import Done, SourcesFound, Token
    from orchard.usecases import AnswerRequest

    recorder.calls.clear()
    start = time.perf_counter()
    first = last = sources_at = None
    answer = ""
    for event in orchard.answers.stream(AnswerRequest(question=question, mode=mode)):
        now = time.perf_counter()
        if isinstance(event, SourcesFound) and sources_at is None:
            sources_at = now - start
        elif isinstance(event, Token):
            first = first if first is not None else now
            last = now
            answer += event.text
        elif isinstance(event, Done):
            result = event.result
    total = time.perf_counter() - start
    streamed = [call for call in recorder.calls if call["token_times"]]
    final = streamed[0] if streamed else recorder.calls[-1]  # the answer: the first streamed call
    return {
        "mode": result.mode,
        "first_token_seconds": None if first is None else first - start,
        "sources_seconds": sources_at,
        "seconds": total,
        "model_calls": len(recorder.calls),
        "completion_tokens": len(final["token_times"]),
        "decode_tokens_per_second": decode_rate(len(final["token_times"]), first, last),
        "answer": answer,
        "final_prompt": final,
    }


def raw_server(client: Any, base_url: str, model: str, call: dict[str, Any]) -> dict[str, Any]:
    from langchain_openai.chat_models.base import _convert_message_to_dict

    params = call["params"]
    body = {
        "model": model,
        "messages": [_convert_message_to_dict(m) for m in call["messages"]],
        "temperature": params.get("temperature", 0.0),
        "max_tokens": params.get("max_tokens") or params.get("max_completion_tokens") or 512,
        "stream": True,
    }
    start = time.perf_counter()
    first = last = None
    count = 0
    text = ""
    with client.stream("POST", base_url.rstrip("/") + "/chat/completions", json=body) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            delta = json.loads(line[6:])["choices"][0].get("delta", {}).get("content")
            if delta:
                now = time.perf_counter()
                first = first if first is not None else now
                last = now
                count += 1
                text += delta
    total = time.perf_counter() - start
    return {
        "first_token_seconds": None if first is None else first - start,
        "seconds": total,
        "completion_tokens": count,
        "decode_tokens_per_second": decode_rate(count, first, last),
        "answer": text,
    }


def flush(client: Any, base_url: str, model: str) -> None:
    """One short unrelated call, so that neither side finds the other's last prompt in the KV cache."""
    body = {"model": model, "messages": [{"role": "user", "content": "Reply OK."}], "max_tokens": 1}
    client.post(base_url.rstrip("/") + "/chat/completions", json=body).raise_for_status()


def median(values: list[Any]) -> float | None:
    values = [v for v in values if v is not None]
    return round(statistics.median(values), 3) if values else None


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    orch, raw = [r["orchard"] for r in rows], [r["raw"] for r in rows]
    orch_rate, raw_rate = (
        median([o["decode_tokens_per_second"] for o in orch]),
        median([r["decode_tokens_per_second"] for r in raw]),
    )
    return {
        "runs": len(rows),
        "orchard_first_token_median": median([o["first_token_seconds"] for o in orch]),
        "raw_first_token_median": median([r["first_token_seconds"] for r in raw]),
        "orchard_sources_median": median([o["sources_seconds"] for o in orch]),
        "orchard_total_median": median([o["seconds"] for o in orch]),
        "raw_total_median": median([r["seconds"] for r in raw]),
        "orchard_decode_tps_median": orch_rate,
        "raw_decode_tps_median": raw_rate,
        "decode_ratio": round(orch_rate / raw_rate, 3) if orch_rate and raw_rate else None,
        "same_answer": sum(o["answer"].strip() == r["answer"].strip() for o, r in zip(orch, raw, strict=True)),
        "model_calls": sorted({o["model_calls"] for o in orch}),
        "modes_answered": sorted({o["mode"] for o in orch}),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-url", default=os.environ.get("ORCHARD_LLM_BASE_URL", "http://127.0.0.1:8000/v1"))
    parser.add_argument("--questions", type=Path, default=DEFAULT_QUESTIONS)
    parser.add_argument("-n", type=int, default=6, help="questions (the first N of the file)")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--modes", default="chat,rag,auto")
    parser.add_argument("--max-tokens", type=int, default=200)
    parser.add_argument("--json", action="store_true", help="print every run, not only the summary")
    args = parser.parse_args()

    import httpx

    from orchard.components import Components
    from orchard.config import Settings
    from orchard.usecases import AnswerRequest, build_orchard

    settings = Settings(llm_base_url=args.base_url, llm_temperature=0.0, llm_max_tokens=args.max_tokens)
    components = Components(settings)
    recorder = CallRecorder()
    components.llm.callbacks = [recorder]
    orchard = build_orchard(settings, components=components)
    questions = [json.loads(line)["q"] for line in args.questions.read_text().splitlines() if line.strip()][: args.n]
    client = httpx.Client(timeout=300, trust_env=False)

    orchard.answers.ask(AnswerRequest(question="Say hello.", mode="chat"))  # loads the embedder, opens the store
    report: dict[str, Any] = {
        "settings": {"base_url": args.base_url, "n": len(questions), "repeat": args.repeat, "max_tokens": args.max_tokens}
    }
    for mode in args.modes.split(","):
        rows: list[dict[str, Any]] = []
        for _ in range(args.repeat):
            flush(client, args.base_url, settings.llm_model)
            batch = [{"q": q, "orchard": through_orchard(orchard, recorder, q, mode)} for q in questions]
            flush(client, args.base_url, settings.llm_model)
            for row in batch:
                row["raw"] = raw_server(client, args.base_url, settings.llm_model, row["orchard"].pop("final_prompt"))
                print(
                    f"{mode:5} first {row['orchard']['first_token_seconds']:.2f}/{row['raw']['first_token_seconds']:.2f} s"
                    f"  total {row['orchard']['seconds']:.2f}/{row['raw']['seconds']:.2f} s  {row['q'][:50]}",
                    file=sys.stderr,
                )
            rows += batch
        report[mode] = summarize(rows)
        if args.json:
            report[mode]["rows"] = rows
    report["load"] = os.getloadavg()
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
