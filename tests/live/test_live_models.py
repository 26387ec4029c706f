"""`orchard models bench` on the real 0.5B, and a quantized variant made with llama.cpp's
quantize API and served under its own name (each test starts its own llama.cpp server)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port
from tests.live.conftest import ROOT, orchard_with

pytestmark = pytest.mark.live

QUESTION = {"q": "When should apple trees be pruned?", "pages": ["fruit-tree-care.html"], "facts": ["winter"]}


def cache_with_the_05b(model_path: Path, cache: Path) -> Path:
    """A cache folder of this test's whose assembled 0.5B is the session's (a link, with its stamp)."""
    (cache / "models").mkdir(parents=True)
    (cache / "models" / model_path.name).symlink_to(model_path)
    stamp = model_path.with_suffix(".verified.json")
    shutil.copy(stamp, cache / "models" / stamp.name)
    return cache


def test_models_bench_measures_the_05b_and_list_shows_it(model_path: Path, embedder, tmp_path: Path) -> None:
    data = tmp_path / "data"
    library = orchard_with(embedder, data).library  # a tiny store of its own: the sample documents
    assert library.ingest([str(ROOT / "samples")], progress=False).files_indexed == 4
    library.components.close()  # an embedded store belongs to one process: hand it to `orchard models bench`
    questions = tmp_path / "questions.jsonl"
    questions.write_text(json.dumps(QUESTION) + "\n")
    env = {**os.environ, "ORCHARD_DATA_DIR": str(data), "ORCHARD_CACHE_DIR": str(cache_with_the_05b(model_path, tmp_path / "cache")),
           "ORCHARD_LLM_TEMPERATURE": "0", "ORCHARD_LLM_MAX_TOKENS": "80"}  # fmt: skip
    orchard = [sys.executable, "-m", "orchard", "models"]
    bench = subprocess.run(
        [*orchard, "bench", "qwen-0.5b", "--questions", "1", "--answers", str(questions), "--port", str(free_port()),
         "--decode-tokens", "32", "--json"],
        env=env, capture_output=True, text=True, timeout=900,  # ~1 min idle; minutes on a loaded machine
    )  # fmt: skip
    assert bench.returncode == 0, bench.stderr
    [record] = json.loads(bench.stdout)["models"]
    assert record["served_name"] == "qwen2.5-coder-0.5b-instruct" and record["size_bytes"] == model_path.stat().st_size
    assert 200 < record["rss_after_load_mib"] <= record["rss_after_answers_mib"] < 4000, record
    assert 400 <= record["prompt_tokens"] <= 600 and record["prompt_tokens_per_s"] > 0, record
    assert record["decode_tokens"] >= 24 and record["decode_tokens_per_s"] > 0, record
    quality = record["quality"]
    assert quality["questions"] == 1 and quality["errors"] == 0 and quality["store"] == str(data / "store"), quality
    assert quality["answers"][0]["answer"].strip(), quality
    listed = json.loads(subprocess.run([*orchard, "list", "--json"], env=env, capture_output=True, text=True, timeout=60).stdout)
    [row] = listed["models"]
    assert row["selected"] and row["decode_tps"] == record["decode_tokens_per_s"] and row["right_and_cited"] == quality["right_and_cited"]


def test_a_quantized_05b_is_made_and_served_under_its_own_name(model_path: Path, tmp_path: Path) -> None:
    from orchard import server
    from orchard.config import Settings
    from orchard.quantize import quantize_preset
    from orchard.usecases.model_server import ModelServer

    cache = cache_with_the_05b(model_path, tmp_path / "cache")
    made = quantize_preset("qwen-0.5b", "Q2_K", cache_dir=cache)
    assert made == cache / "models" / "qwen-0.5b-q2_k.gguf"
    assert made.read_bytes()[:4] == b"GGUF" and made.stat().st_size < model_path.stat().st_size

    port = free_port()
    settings = Settings(data_dir=tmp_path / "data", cache_dir=cache, model_preset="qwen-0.5b-q2_k")
    command = ModelServer(settings).embedded_command(port=port)
    assert command[command.index("--model") + 1] == str(made)
    base_url = f"http://127.0.0.1:{port}/v1"
    handle = server.start_server(command, base_url=base_url, log=tmp_path / "server.log", timeout=180)
    try:
        with httpx.Client(base_url=base_url, timeout=120, trust_env=False) as client:
            served = client.get("/models").json()["data"]
            assert [m["id"] for m in served] == [settings.llm_model] == ["qwen2.5-coder-0.5b-instruct-q2_k"]
            reply = client.post("/chat/completions", json={
                "model": settings.llm_model, "temperature": 0, "max_tokens": 16,
                "messages": [{"role": "user", "content": "What is the capital of France? One word."}],
            }).json()  # fmt: skip
    finally:
        handle.stop()
    assert reply["choices"][0]["message"]["content"].strip(), reply
