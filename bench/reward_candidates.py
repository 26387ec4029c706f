"""Real candidates for the reward-model simulation: 4 answers per Python-docs question from the 0.5B.

Usage (starts its own llama.cpp server on --port, holding the CPU lock one batch at a time)::

    .venv/bin/python bench/reward_candidates.py                 # every question, resumes
    .venv/bin/python bench/reward_candidates.py --limit 4       # a quick look

Questions: /work/shared/eval/pydocs-questions.jsonl, bench/heldout-answers.jsonl,
bench/heldout-questions.jsonl and bench/paraphrase-dev.jsonl (100, deduplicated). Each question
goes through Orchard's own RAG prompt path: the store's hybrid retriever at ORCHARD_DATA_DIR
(default /tmp/pyd, opened read-only), :func:`orchard.chains.context.fit_passages` with the default
budget, :func:`~orchard.chains.context.format_context` and the packaged ``rag_answer`` prompt. Each
candidate keeps the model's ``raw`` answer and ``text``, the answer as Orchard shows it: with
``[n]`` added by :func:`orchard.chains.rag.cite` where a sentence's source is clear (the chain's
citation attribution; no repair), so the rater sees what a user would. Diversity: temperature 0.9 and seeds 1..4, one request each — llama-cpp-python's
server drops ``n`` (it is in the server's ``exclude`` set: ``n=2`` returns one choice, checked
by :func:`check_n`), and since the prompt is the same, llama.cpp reuses its KV prefix and only
decoding costs for candidates 2-4.

Output: bench/reward-candidates.jsonl, one line per question
``{"q", "source_file", "context_sources", "candidates": [{"seed", "raw", "text", "seconds", "tokens"}]}``.
A rerun skips questions already in the file.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
os.environ["LANGSMITH_TRACING"] = "false"
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

OUT = ROOT / "bench" / "reward-candidates.jsonl"
QUESTION_FILES = [
    Path("/work/shared/eval/pydocs-questions.jsonl"),
    ROOT / "bench" / "heldout-answers.jsonl",
    ROOT / "bench" / "heldout-questions.jsonl",
    ROOT / "bench" / "paraphrase-dev.jsonl",
]
LOCK = "/tmp/orchard-cpu.lock"
MODEL = ROOT / ".orchard" / "cache" / "models" / "qwen-0.5b.gguf"


def load_questions() -> list[dict]:
    seen, rows = set(), []
    for path in QUESTION_FILES:
        for line in path.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            item = json.loads(line)
            key = " ".join(item["q"].lower().split())
            if key not in seen:
                seen.add(key)
                rows.append({"q": item["q"], "source_file": path.name})
    return rows


@contextlib.contextmanager
def cpu_lock() -> Iterator[None]:
    with open(LOCK, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def start_model_server(port: int):  # -> orchard.server.ServerHandle
    from orchard.server import default_threads, llamacpp_command, start_server

    command = llamacpp_command(model_path=MODEL, served_name="qwen-0.5b", port=port, threads=default_threads())
    return start_server(command, base_url=f"http://127.0.0.1:{port}/v1", log=ROOT / "bench" / "out" / "reward_server.log")


def chat(base_url: str, messages: list[dict], *, seed: int, temperature: float, max_tokens: int, n: int = 1) -> dict:
    body = {"model": "qwen-0.5b", "messages": messages, "temperature": temperature, "seed": seed,
            "max_tokens": max_tokens, "n": n}  # fmt: skip
    with httpx.Client(trust_env=False, timeout=300) as client:
        response = client.post(base_url + "/chat/completions", json=body)
    response.raise_for_status()
    return response.json()


def check_n(base_url: str) -> int:
    """How many choices the server returns for ``n=2`` (llama-cpp-python 0.3.36: 1)."""
    reply = chat(base_url, [{"role": "user", "content": "Say hi."}], seed=1, temperature=0.9, max_tokens=4, n=2)
    return len(reply["choices"])


def rag_messages(question: str, retriever, prompt) -> tuple[list[dict], list]:
    from orchard.chains.context import DEFAULT_CONTEXT_TOKENS, fit_passages, format_context

    docs = retriever.invoke(question)
    docs = fit_passages(docs, question=question, max_tokens=DEFAULT_CONTEXT_TOKENS)
    value = prompt.invoke({"context": format_context(docs), "question": question, "history": []})
    roles = {"system": "system", "human": "user", "ai": "assistant"}
    messages = [{"role": roles[m.type], "content": m.content} for m in value.to_messages()]
    return messages, docs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, default=8771)
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--batch", type=int, default=10, help="questions per hold of the CPU lock")
    parser.add_argument("--candidates", type=int, default=4)
    parser.add_argument("--temperature", type=float, default=0.9)
    parser.add_argument("--max-tokens", type=int, default=320)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()

    from orchard.chains.rag import cite
    from orchard.components import Components
    from orchard.config import Settings
    from orchard.prompts import load_prompt

    questions = load_questions()[: args.limit]
    done = set()
    if args.out.exists():
        done = {json.loads(line)["q"] for line in args.out.read_text(encoding="utf-8").splitlines() if line.strip()}
    todo = [q for q in questions if q["q"] not in done]
    print(f"{len(questions)} questions, {len(todo)} to generate", flush=True)
    settings = Settings(data_dir=Path(os.environ.get("ORCHARD_DATA_DIR", "/tmp/pyd")))
    parts = Components(settings)
    prompt = load_prompt("rag_answer")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    base_url = f"http://127.0.0.1:{args.port}/v1"
    checked_n = False
    for start in range(0, len(todo), args.batch):
        batch = todo[start : start + args.batch]
        with cpu_lock():
            print(Path("/proc/loadavg").read_text().strip(), time.strftime("%H:%M:%S"), flush=True)  # load at batch start
            server = start_model_server(args.port)
            try:
                if not checked_n:
                    print(f"server returned {check_n(base_url)} choice(s) for n=2", flush=True)
                    checked_n = True
                for item in batch:
                    messages, docs = rag_messages(item["q"], parts.retriever, prompt)
                    sources = [d.metadata.get("source", "?") for d in docs]
                    candidates = []
                    for seed in range(1, args.candidates + 1):
                        began = time.perf_counter()
                        reply = chat(base_url, messages, seed=seed, temperature=args.temperature, max_tokens=args.max_tokens)
                        text = reply["choices"][0]["message"]["content"] or ""
                        candidates.append({
                            "seed": seed,
                            "raw": text,
                            "text": cite(text, docs)[0],
                            "seconds": round(time.perf_counter() - began, 2),
                            "tokens": reply.get("usage", {}).get("completion_tokens"),
                        })  # fmt: skip
                    row = {**item, "context_sources": sources, "candidates": candidates,
                           "temperature": args.temperature, "max_tokens": args.max_tokens}  # fmt: skip
                    with args.out.open("a", encoding="utf-8") as out:
                        out.write(json.dumps(row, ensure_ascii=False) + "\n")
                    secs = [c["seconds"] for c in candidates]
                    print(f"{start + batch.index(item) + 1}/{len(todo)} {item['q'][:60]!r} {secs}", flush=True)
            finally:
                server.stop()


if __name__ == "__main__":
    main()
