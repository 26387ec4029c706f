"""The balancers from deploy/, on loopback: haproxy in front of two model servers (spreads
requests, takes a killed one out, retries a refused connection on the other) and the model
client's retry through it; nginx in front of two Streamlit replicas (sticky per browser, the
websocket upgraded)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest

from tests.deployment.harness import Deployment, HaproxyLB, ModelServers, NginxSticky, OrchardEnv, streamlit_replicas

pytestmark = [pytest.mark.enable_socket]


def _ask(base_url: str, question: str = "hi", *, stream: bool = False) -> httpx.Response:
    body = {"model": "stub-model", "messages": [{"role": "user", "content": question}], "stream": stream}
    return httpx.post(f"{base_url}/v1/chat/completions", json=body, timeout=30, trust_env=False)


def test_haproxy_spreads_requests_and_routes_around_a_killed_model_server(tmp_path: Path) -> None:
    with Deployment(tmp_path) as d:
        models = d.add(ModelServers.stub(tmp_path, count=2, first_token_delay=0.0, token_delay=0.0))
        lb, url = HaproxyLB.service(tmp_path, models.addresses)
        d.add(lb)
        deadline = time.monotonic() + 10
        while set(HaproxyLB.states(lb).values()) != {"UP"} and time.monotonic() < deadline:
            time.sleep(0.2)
        assert HaproxyLB.states(lb) == {"models-1": "UP", "models-2": "UP"}
        served = {_ask(url).json()["system_fingerprint"] for _ in range(8)}
        assert served == {"model-1", "model-2"}

        models[0].kill()  # a crash: the port refuses at once
        replies = [_ask(url) for _ in range(10)]  # before and after the health check notices
        assert [r.status_code for r in replies] == [200] * 10, [r.text for r in replies]
        assert {r.json()["system_fingerprint"] for r in replies} == {"model-2"}
        deadline = time.monotonic() + 5
        while not HaproxyLB.states(lb)["models-1"].startswith("DOWN") and time.monotonic() < deadline:
            time.sleep(0.2)
        assert HaproxyLB.states(lb)["models-1"].startswith("DOWN")

        models[0].start()  # back: taken in again after one good check
        deadline = time.monotonic() + 10
        while HaproxyLB.states(lb)["models-1"] != "UP" and time.monotonic() < deadline:
            time.sleep(0.2)
        assert HaproxyLB.states(lb)["models-1"] == "UP"
    assert not d.left_running()


def test_the_model_client_streams_through_haproxy_while_a_server_dies(tmp_path: Path) -> None:
    """Streams through the balancer with one server killed in the middle: the streams it was
    serving before their first token are retried (by haproxy or the client), those it had
    started raise the clear "broke off" error; none hangs, none is answered twice."""
    from concurrent.futures import ThreadPoolExecutor

    import httpx as h

    from orchard.errors import OrchardError
    from orchard.llm_client import RetryingChatOpenAI

    with Deployment(tmp_path) as d:
        models = d.add(ModelServers.stub(tmp_path, count=2, first_token_delay=0.3, token_delay=0.05))
        lb, url = HaproxyLB.service(tmp_path, models.addresses)
        d.add(lb)
        llm = RetryingChatOpenAI(model="stub-model", base_url=f"{url}/v1", api_key="x", max_retries=0, timeout=20,
                                 first_token_retries=1, http_client=h.Client(trust_env=False))  # fmt: skip

        def ask(i: int) -> str:
            try:
                return "".join(str(c.content) for c in llm.stream(f"question {i} with several words to stream"))
            except OrchardError as exc:
                return f"error: {exc}"

        with ThreadPoolExecutor(6) as pool:
            futures = [pool.submit(ask, i) for i in range(12)]
            time.sleep(0.5)
            models[0].kill()
            results = [f.result(timeout=60) for f in futures]
    answered = [r for r in results if not r.startswith("error:")]
    errors = [r for r in results if r.startswith("error:")]
    assert all(r.endswith("stream") for r in answered), answered  # whole answers, each once
    assert all("broke off the answer" in e and "not retried" in e for e in errors), errors
    assert len(answered) >= 6, results
    print(json.dumps({"answered": len(answered), "broke_off_with_clear_error": len(errors)}))


def test_nginx_keeps_each_browser_on_one_streamlit_replica(tmp_path: Path) -> None:
    """Real `orchard app` replicas behind nginx: a cookie-keeping client always reaches the same
    replica, different clients reach both, and the websocket at /_stcore/stream is upgraded."""
    with Deployment(tmp_path) as d:
        models = d.add(ModelServers.stub(tmp_path, count=1))
        model_lb, model_url = HaproxyLB.service(tmp_path, models.addresses)
        d.add(model_lb)
        shared = OrchardEnv(data_dir=tmp_path / "data", llm_base_url=f"{model_url}/v1")
        apps = d.add(streamlit_replicas(tmp_path, shared, count=2))
        nginx, url = NginxSticky.service(tmp_path, apps.addresses)
        d.add(nginx)

        seen_by_client = []
        for _ in range(8):
            with httpx.Client(trust_env=False, timeout=10) as browser:
                replicas = {browser.get(f"{url}/").headers["x-orchard-replica"] for _ in range(5)}
                assert browser.cookies.get("orchard_replica"), "nginx set no session cookie"
                seen_by_client.append(replicas)
        assert all(len(r) == 1 for r in seen_by_client), seen_by_client  # sticky
        assert set().union(*seen_by_client) == set(apps.addresses)  # both replicas used

        from websockets.sync.client import connect

        with connect(f"ws://{url.removeprefix('http://')}/_stcore/stream", open_timeout=10, proxy=None) as socket:
            assert socket.response.status_code == 101  # switched protocols through nginx
            assert socket.response.headers["x-orchard-replica"] in apps.addresses
    assert not d.left_running()
