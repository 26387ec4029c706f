"""Does llama-cpp-python's prompt cache (``--cache``) shorten the wait for the first token?

Without it the server keeps one KV state: the live one, reused only for the prefix the next
prompt shares with the previous one. Auto mode sends the router's prompt, then the answer's, so
the answer never finds its instructions in the live state. With ``--cache True --cache_type ram``
the server also saves each finished prompt's state and restores the saved state sharing the
longest prefix with a new prompt (llama_cpp/llama.py ``_create_completion``), at the cost of
saving a state after every call.

Two servers, the same flags but for the cache, get the same calls, interleaved question by question:
``auto``: the router prompt, then the RAG answer prompt (question i); ``regenerate``: the router
prompt, then the same answer prompt again (what the app's regenerate does in auto mode). The
answer prompts are the real ones (packaged prompt files, passages retrieved from the store at
ORCHARD_DATA_DIR and fitted as the RAG chain fits them). Reported: median first-token seconds of
the answer call, and median total seconds of the router call (where saving a state would show).

Usage (repository root; the two servers are yours; timing under the CPU lock)::

    flock /tmp/orchard-cpu.lock .venv/bin/python bench/prompt_cache.py \\
        --cached http://127.0.0.1:8721/v1 --plain http://127.0.0.1:8722/v1 -n 6
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
ROOT = Path(__file__).resolve().parent.parent
DEFAULT_QUESTIONS = ROOT.parent / "shared" / "eval" / "pydocs-questions.jsonl"
MODEL = "qwen2.5-coder-0.5b-instruct"


def messages_for(questions: list[str]) -> list[tuple[list[dict], list[dict]]]:
    """(router messages, answer messages) per question, as Orchard renders them."""
    from langchain_openai.chat_models.base import _convert_message_to_dict

    from orchard.chains.context import fit_passages, format_context
    from orchard.components import Components
    from orchard.config import Settings
    from orchard.prompts import load_prompt

    retriever = Components(Settings()).retriever
    route, answer = load_prompt("agent_route"), load_prompt("rag_answer")
    pairs = []
    for q in questions:
        docs = fit_passages(retriever.invoke(q), question=q, max_tokens=250)
        r = route.format_messages(question=q, tables="none attached")
        a = answer.format_messages(context=format_context(docs), question=q, history=[])
        pairs.append(([_convert_message_to_dict(m) for m in r], [_convert_message_to_dict(m) for m in a]))
    return pairs


def call(client: Any, base_url: str, messages: list[dict], max_tokens: int) -> dict[str, float]:
    body = {"model": MODEL, "messages": messages, "temperature": 0.0, "max_tokens": max_tokens, "stream": True}
    start = time.perf_counter()
    first = None
    with client.stream("POST", base_url.rstrip("/") + "/chat/completions", json=body) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            is_data = first is None and line.startswith("data: ") and line != "data: [DONE]"
            if is_data and json.loads(line[6:])["choices"][0].get("delta", {}).get("content"):
                first = time.perf_counter() - start
    return {"first": first if first is not None else float("nan"), "total": time.perf_counter() - start}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cached", required=True, help="base URL of the server started with --cache True")
    parser.add_argument("--plain", required=True, help="base URL of the same server without the cache")
    parser.add_argument("--questions", type=Path, default=DEFAULT_QUESTIONS)
    parser.add_argument("-n", type=int, default=6)
    parser.add_argument("--answer-tokens", type=int, default=40)
    args = parser.parse_args()

    import httpx

    questions = [json.loads(line)["q"] for line in args.questions.read_text().splitlines() if line.strip()][: args.n]
    pairs = messages_for(questions)
    client = httpx.Client(timeout=600, trust_env=False)
    servers = {"cached": args.cached, "plain": args.plain}
    results: dict[str, dict[str, list[float]]] = {
        s: {"router_total": [], "auto_first": [], "regenerate_first": []} for s in servers
    }
    for url in servers.values():  # warm up: the instructions are in both servers' states
        call(client, url, pairs[-1][1], 4)
    for router_messages, answer_messages in pairs:
        for name, url in servers.items():
            results[name]["router_total"].append(call(client, url, router_messages, 4)["total"])
            results[name]["auto_first"].append(call(client, url, answer_messages, args.answer_tokens)["first"])
            call(client, url, router_messages, 4)
            results[name]["regenerate_first"].append(call(client, url, answer_messages, args.answer_tokens)["first"])
    summary = {name: {key: round(statistics.median(values), 3) for key, values in r.items()} for name, r in results.items()}
    print(json.dumps({"n": len(pairs), "median_seconds": summary, "runs": results, "load": os.getloadavg()}, indent=2))


if __name__ == "__main__":
    main()
