"""What a model file costs and gives on this machine: size, memory, prompt and decode speed.

``orchard models bench`` (:mod:`orchard.cli_models`) starts a llama.cpp server on each installed
model file and measures, with the functions here:

* **resident memory** of the server process, ``VmRSS`` of ``/proc/<pid>/status`` (:func:`rss_mib`),
  after the load and again after answering (the KV cache and buffers fill in as it works);
* **prompt tokens/s** (:func:`prompt_speed`): a fixed ~500-token prompt read with ``max_tokens=1``;
  its first words change every run, so llama.cpp cannot reuse a KV prefix from an earlier request
  (it re-reads only what differs: a reused prefix would measure nothing);
* **decode tokens/s** (:func:`decode_speed`): 128 tokens at temperature 0 on a prompt that never
  ends by itself (counting), streamed; the rate from the first token to the last, so the prompt
  reading is not in it;
* **answer quality** is measured by the CLI with :mod:`orchard.evaluate` on a question file.

The results live in one JSON file (:func:`results_path`: ``<data_dir>/bench/models.json``), one
entry per model name, read back by ``orchard models list`` and the app's Settings page
(:func:`trade_off_rows`).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import httpx

PROMPT_TOKENS_TARGET = 500
DECODE_TOKENS = 128

# Plain technical prose, repeated to ~500 tokens (Qwen2.5's tokenizer: ~95 tokens a paragraph).
_PARAGRAPH = (
    "The logging module defines functions and classes which implement a flexible event logging "
    "system for applications and libraries. The key benefit of having the logging API provided by "
    "a standard library module is that all Python modules can participate in logging, so your "
    "application log can include your own messages integrated with messages from third-party "
    "modules. Loggers expose the interface that application code directly uses, handlers send the "
    "log records to the appropriate destination, and formatters specify the layout of records.\n"
)


def prompt_text(run: int) -> str:
    """The fixed prefill prompt of run ``run``: its first line differs between runs (no reused
    KV prefix), the rest is identical."""
    return f"Reading test {run * 7919 % 10007}.\n" + _PARAGRAPH * 5 + "Summary:"


DECODE_PROMPT = "Count from 1 to 1000, separated by commas: 1, 2, 3, 4, 5,"


def rss_mib(pid: int) -> float | None:
    """Resident memory of process ``pid`` in MiB (``VmRSS``); None when it has gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


def _client(base_url: str) -> httpx.Client:
    return httpx.Client(base_url=base_url.rstrip("/"), timeout=600.0, trust_env=False)


def prompt_speed(base_url: str, model: str, *, runs: int = 2, first_run: int | None = None) -> dict[str, Any]:
    """Prompt tokens/s: the best of ``runs`` cache-free reads of the ~500-token prompt (the first
    token of each is generated too; at ~10-50 ms it is inside the measurement's noise)."""
    start = first_run if first_run is not None else int(time.time()) % 100_000
    rates, tokens = [], 0
    with _client(base_url) as client:
        for run in range(start, start + runs):
            t0 = time.perf_counter()
            response = client.post("/completions", json={
                "model": model, "prompt": prompt_text(run), "max_tokens": 1, "temperature": 0.0,
            })  # fmt: skip
            elapsed = time.perf_counter() - t0
            response.raise_for_status()
            tokens = int(response.json()["usage"]["prompt_tokens"])
            rates.append(tokens / elapsed)
    return {"prompt_tokens": tokens, "prompt_tokens_per_s": round(max(rates), 1)}


def decode_speed(base_url: str, model: str, *, max_tokens: int = DECODE_TOKENS) -> dict[str, Any]:
    """Decode tokens/s over ``max_tokens`` streamed tokens at temperature 0 (one stream chunk is
    one token in llama-cpp-python's server), timed from the first token to the last."""
    stamps: list[float] = []
    payload = {"model": model, "prompt": DECODE_PROMPT, "max_tokens": max_tokens, "temperature": 0.0, "stream": True}
    with _client(base_url) as client, client.stream("POST", "/completions", json=payload) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if not line.startswith("data: ") or line.strip() == "data: [DONE]":
                continue
            chunk = json.loads(line[len("data: ") :])
            if chunk.get("choices") and chunk["choices"][0].get("text"):
                stamps.append(time.perf_counter())
    if len(stamps) < 2:
        return {"decode_tokens": len(stamps), "decode_tokens_per_s": None}
    return {"decode_tokens": len(stamps), "decode_tokens_per_s": round((len(stamps) - 1) / (stamps[-1] - stamps[0]), 1)}


# --- the saved results ------------------------------------------------------------------------


def results_path(data_dir: Path) -> Path:
    return data_dir / "bench" / "models.json"


def load_results(path: Path) -> dict[str, dict[str, Any]]:
    """Model name -> its last bench record (a missing or unreadable file: none)."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    models = raw.get("models") if isinstance(raw, dict) else None
    return {str(k): v for k, v in models.items() if isinstance(v, dict)} if isinstance(models, dict) else {}


def save_result(path: Path, name: str, record: dict[str, Any]) -> None:
    """Set ``name``'s record in the results file, keeping the others (written atomically)."""
    models = load_results(path)
    models[name] = record
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    partial.write_text(json.dumps({"models": models}, indent=2) + "\n", encoding="utf-8")
    os.replace(partial, path)


TABLE_COLUMNS = ("model", "type", "size_mb", "rss_mb", "prompt_tps", "decode_tps", "right_and_cited")
TABLE_HEADERS = ("Model", "Type", "Size MB", "RAM MB", "Prompt tok/s", "Decode tok/s", "Right & cited")


def trade_off_rows(installed: list[Any], results: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per installed model (:class:`orchard.model.InstalledModel`): its size and, when
    measured, the bench figures (None where not measured). RAM is the larger of the two RSS
    readings (after load, after answering)."""
    rows = []
    for model in installed:
        record = results.get(model.name, {})
        rss = [v for v in (record.get("rss_after_load_mib"), record.get("rss_after_answers_mib")) if v is not None]
        quality = record.get("quality") or {}
        rows.append({
            "model": model.name,
            "type": model.quant_type,
            "size_mb": round(model.size / 1_000_000),
            "rss_mb": round(max(rss)) if rss else None,
            "prompt_tps": record.get("prompt_tokens_per_s"),
            "decode_tps": record.get("decode_tokens_per_s"),
            "right_and_cited": quality.get("right_and_cited"),
            "questions": quality.get("questions"),
            "served_name": model.served_name,
        })  # fmt: skip
    return rows


def markdown_table(rows: list[dict[str, Any]]) -> str:
    """The rows of :func:`trade_off_rows` as a Markdown table ("-" where not measured)."""

    def cell(column: str, value: Any) -> str:
        if value is None:
            return "-"
        return f"{value:.3f}" if column == "right_and_cited" else str(value)

    lines = ["| " + " | ".join(TABLE_HEADERS) + " |", "|" + "---|" * len(TABLE_HEADERS)]
    lines += ["| " + " | ".join(cell(c, row[c]) for c in TABLE_COLUMNS) + " |" for row in rows]
    return "\n".join(lines)
