"""The smoke part of the proof: two real llama.cpp servers (`orchard serve`, the packaged 0.5B
model, one thread each) behind haproxy, one `orchard api` over the sample documents. Two
questions at once reach both servers and come back cited; with one server killed, the next
question is still answered (haproxy takes the dead one out, the model client retries)."""

from __future__ import annotations

import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.deployment.harness import (
    API_LIVENESS,
    ROOT,
    Deployment,
    HaproxyLB,
    ModelServers,
    OrchardEnv,
    orchard_apis,
    orchard_command,
)

pytestmark = [pytest.mark.live]


def _ask(api_url: str, question: str) -> tuple[str, dict]:
    import openai

    client = openai.OpenAI(base_url=f"{api_url}/v1", api_key="personal", max_retries=0, timeout=600)
    chunks = list(client.chat.completions.create(model="orchard-rag", stream=True,
                                                 messages=[{"role": "user", "content": question}]))  # fmt: skip
    return "".join(c.choices[0].delta.content or "" for c in chunks), chunks[-1].model_extra["orchard"]


def test_two_llamacpp_servers_behind_haproxy_answer_and_survive_one_dying(tmp_path: Path, model_path: Path) -> None:
    with Deployment(tmp_path) as d:
        models = d.add(ModelServers.llamacpp(tmp_path, count=2, threads=1))
        lb, model_url = HaproxyLB.service(tmp_path, models.addresses, check_timeout="300s")
        d.add(lb)
        shared = OrchardEnv(data_dir=tmp_path / "data", llm_base_url=f"{model_url}/v1",
                            extra={"ORCHARD_LLM_MAX_TOKENS": "120", "ORCHARD_LLM_TEMPERATURE": "0"})  # fmt: skip
        ingest = subprocess.run([*orchard_command(), "ingest", str(ROOT / "samples")], env={**shared.env(), "PYTHONPATH": str(ROOT)},
                                cwd=tmp_path, capture_output=True, text=True, timeout=300)  # fmt: skip
        assert ingest.returncode == 0, ingest.stdout + ingest.stderr
        api = d.add(orchard_apis(tmp_path, shared, count=1))
        api_url = api[0].health_url.removesuffix(API_LIVENESS)

        with ThreadPoolExecutor(2) as pool:
            answers = list(
                pool.map(lambda q: _ask(api_url, q), ["When should apple trees be pruned?", "Who coordinates the volunteers?"])
            )
        for text, extra in answers:
            assert extra["grounded"] is True and extra["cited"], text
        served = [line for s in models.services for line in s.log.read_text().splitlines() if "POST /v1/chat/completions" in line]
        assert {s.name for s in models.services if "POST /v1/chat/completions" in s.log.read_text()} == {
            "llamacpp-1",
            "llamacpp-2",
        }, served

        models[0].kill()
        text, extra = _ask(api_url, "When are plum trees pruned?")
        assert extra["grounded"] is True and "summer" in text.lower(), text
    assert not d.left_running()
