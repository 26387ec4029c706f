"""The load-and-fault proof (issue 12), on loopback with every service a real process:

    20 simulated users x 5 questions, concurrency 8, streamed through haproxy -> 2 `orchard api`
    -> haproxy -> 2 stub model servers; a `chroma run` server; Postgres when the state store uses
    ORCHARD_STATE_URL (else the shared SQLite file); every process in team mode (ORCHARD_AUTH=oidc:
    a key on every request), each user with a private document holding a secret (a canary)

while faults are injected at fixed points of the run: one model server SIGKILLed, one API
process SIGKILLed mid-stream (and started again, as a supervisor would), the Chroma server
restarted, Postgres restarted. Bounded: a fixed number of requests, a time limit.

Reported (JSON in the test's tmp dir, and printed): answered (first try / after the user asked
again), retried by the model client, failed with a clear error, failed without one; answers and
ratings lost (stored vs received/sent: must be 0); cross-user leaks (each user's conversation and
answer ids probed with another user's key: must all be 404; no answer, search or direct question
of a user holds another user's canary, while some users do get their own back; no key: 401);
p50/p95 latency; ``uptime``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.deployment.harness import (
    API_LIVENESS,
    ROOT,
    Deployment,
    HaproxyLB,
    ModelServers,
    OrchardEnv,
    Service,
    chroma_server,
    orchard_apis,
    orchard_command,
    postgres_server,
)
from tests.deployment.load import Load, LoadReport, User

pytestmark = [pytest.mark.enable_socket]
USERS, QUESTIONS, CONCURRENCY, TIME_LIMIT_S = 20, 5, 8, 100.0


class Faults:
    """Faults fired (each in its own thread) when the run has finished ``at`` questions."""

    def __init__(self) -> None:
        self.planned: list[tuple[int, str, Any]] = []
        self.fired: list[str] = []
        self.threads: list[threading.Thread] = []
        self.errors: list[str] = []
        self._lock = threading.Lock()
        self._start = time.monotonic()

    def at(self, done: int, name: str, action: Any) -> None:
        self.planned.append((done, name, action))

    def step(self, done: int) -> None:
        with self._lock:
            due = [p for p in self.planned if p[0] <= done]
            self.planned = [p for p in self.planned if p[0] > done]
        for _, name, action in due:
            self.fired.append(f"{time.monotonic() - self._start:.1f}s after {done} questions: {name}")
            thread = threading.Thread(target=self._run, args=(name, action), name=f"fault-{name}")
            thread.start()
            self.threads.append(thread)

    def _run(self, name: str, action: Any) -> None:
        try:
            action()
        except BaseException as exc:  # reported, and the run goes on
            self.errors.append(f"{name}: {type(exc).__name__}: {exc}")

    def finish(self) -> None:
        for thread in self.threads:
            thread.join(timeout=120)


def _when(busy: Any, *, timeout: float = 15.0) -> int:
    """Wait until ``busy()`` (a count of open streams) is at least 1; that count (0: timed out)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError, KeyError, ValueError):
            if (count := int(busy())) > 0:
                return count
        time.sleep(0.05)
    return 0


def _kill_model_mid_stream(model: Service, notes: list[str]) -> None:
    open_streams = _when(
        lambda: httpx.get(model.health_url.replace("/v1/models", "/health"), timeout=2, trust_env=False).json()["active"]
    )
    model.kill()
    notes.append(f"model server killed with {open_streams} stream(s) open")


def _ready(api: Service, key: str, timeout: float = 120.0) -> float:
    """Wait until ``api`` answers a question (a readiness probe: a search, then one
    answer, with the probe user's key); seconds it took."""
    base = api.health_url.removesuffix(API_LIVENESS)
    headers = {"authorization": f"Bearer {key}"}
    start = time.monotonic()
    deadline = start + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            found = httpx.get(f"{base}/api/search", params={"q": "ready"}, headers=headers, timeout=60, trust_env=False)
            if found.status_code == 200:
                body = {"model": "orchard-rag", "messages": [{"role": "user", "content": "When should apple trees be pruned?"}]}
                answer = httpx.post(f"{base}/v1/chat/completions", json=body, headers=headers, timeout=60, trust_env=False)
                if answer.status_code == 200:
                    return time.monotonic() - start
        time.sleep(0.5)
    raise AssertionError(f"{api.name} did not answer within {timeout:.0f} s: {api.log}")


def _kill_api_mid_stream(api: Service, lb: Service, name: str, key: str, notes: list[str], pause: float = 2.0) -> None:
    """SIGKILL ``api`` while it serves, start it again, and put it back behind the balancer once it
    answers a real question of the store (a readiness probe: a process that takes traffic while
    it warms up can break for good — see the report)."""
    open_streams = _when(lambda: HaproxyLB.stats(lb)[name]["scur"])
    api.kill()
    HaproxyLB.command(lb, f"disable server {HaproxyLB.backend(lb.name)}/{name}")
    notes.append(f"API process killed with {open_streams} request(s) open")
    time.sleep(pause)
    api.start()
    seconds = _ready(api, key)
    HaproxyLB.command(lb, f"enable server {HaproxyLB.backend(lb.name)}/{name}")
    notes.append(f"restarted API process answered its first question {seconds:.1f} s after it listened")
    notes.append(f"API process back behind the balancer after {api.starts - 1} restart(s), ready")


def _users(shared: OrchardEnv, count: int, workdir: Path) -> list[User]:
    """One API key per user: the first made with `orchard keys create` (the real CLI), the rest
    through the same key store in this process (19 more CLI starts would cost a minute)."""
    from orchard.usecases import build_orchard
    from tests.fakes import AlwaysUp

    made = subprocess.run([*orchard_command(), "keys", "create", "--name", "load", "--user", "user-00", "--json"],
                          env={**shared.env(), "PYTHONPATH": str(ROOT)}, cwd=workdir, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert made.returncode == 0, made.stderr
    users = [User("user-00", json.loads(made.stdout)["key"])]
    keys = build_orchard(shared.settings(), model_server=AlwaysUp()).keys
    users += [User(f"user-{i:02}", keys.create(user=f"user-{i:02}", name="load").key) for i in range(1, count)]
    return users


#: Team mode for every Orchard process (the API checks keys only; no login page is served here).
TEAM_MODE = {"ORCHARD_AUTH": "oidc", "ORCHARD_OIDC_ISSUER": "http://127.0.0.1:9/unused-by-the-api",
             "ORCHARD_OIDC_CLIENT_ID": "orchard", "ORCHARD_OIDC_CLIENT_SECRET": "load-test"}  # fmt: skip


def _canary(user: User) -> str:
    return f"CANARY-{user.name}-{hashlib.sha256(user.key.encode()).hexdigest()[:10]}"


def _plant_canaries(api_url: str, users: list[User]) -> dict[str, str]:
    """Each user uploads a private document about the questions everyone asks, holding a secret
    of theirs: retrieval that ignored the library filter would hand it to the others."""
    canaries = {}
    for user in users:
        canaries[user.name] = secret = _canary(user)
        text = (f"# Pruning notes of {user.name}\n\nApple trees should be pruned in late winter; plum trees in"
                f" summer. The volunteers are coordinated by {secret}. My private code is {secret}.\n")  # fmt: skip
        reply = httpx.post(f"{api_url}/api/documents", files={"files": (f"notes-{user.name}.md", text.encode())},
                           headers={"authorization": f"Bearer {user.key}"}, timeout=120, trust_env=False)  # fmt: skip
        assert reply.status_code == 200 and reply.json()["files_indexed"], reply.text
    return canaries


def _canary_leaks(report: LoadReport, api_url: str, users: list[User], canaries: dict[str, str]) -> list[str]:
    """Every answer a user received, and a search and a direct question for each other user's
    secret: none may hold another user's canary. Returns what leaked (empty: nothing)."""
    leaks, seen_own = [], 0
    with httpx.Client(trust_env=False, timeout=60) as client:
        for user in users:
            others = [c for name, c in canaries.items() if name != user.name]
            answers = [a.text for q in user.questions for a in q.attempts]
            seen_own += any(canaries[user.name] in t for t in answers)
            for victim in others[:3]:
                headers = {"authorization": f"Bearer {user.key}"}
                found = client.get(f"{api_url}/api/search", params={"q": victim}, headers=headers).json()["results"]
                direct = client.post(f"{api_url}/v1/chat/completions", headers=headers, json={
                    "model": "orchard-rag", "messages": [{"role": "user", "content": f"What is {victim}? Who coordinates the volunteers?"}]}).json()
                # what came back, not the question echoed: the passages found, the answer and its sources
                answers += [json.dumps(found), direct["choices"][0]["message"]["content"], json.dumps(direct.get("orchard", {}).get("sources"))]
                report.cross_user_probes += 2
            leaked = [c for c in others for t in answers if c in t]
            report.cross_user_leaks += len(leaked)
            leaks += [f"{user.name} saw {c}" for c in leaked]
        anonymous = [client.get(f"{api_url}/api/search", params={"q": "CANARY"}).status_code,
                     client.post(f"{api_url}/v1/chat/completions", json={"model": "orchard-rag", "messages": [
                         {"role": "user", "content": "Who coordinates the volunteers?"}]}).status_code,
                     client.get(f"{api_url}/api/documents").status_code]  # fmt: skip
    assert anonymous == [401, 401, 401], anonymous  # team mode: no key, nothing
    assert seen_own > 0, "no user ever got their own private document back: the canary check could not see a leak"
    return leaks


def _probe_key(shared: OrchardEnv) -> str:
    """The readiness probe's own user (its questions are not part of the load)."""
    from orchard.usecases import build_orchard
    from tests.fakes import AlwaysUp

    return build_orchard(shared.settings(), model_server=AlwaysUp()).keys.create(user="probe", name="readiness").key


def _verify(report: LoadReport, api_url: str, users: list[User], shared: OrchardEnv) -> None:
    """Stored vs received, and every cross-user probe."""
    from orchard.usecases import build_orchard
    from tests.fakes import AlwaysUp

    orchard = build_orchard(shared.settings(), model_server=AlwaysUp())
    for user in users:
        received = {q.final.message_id for q in user.questions if q.final.outcome == "answered"}
        rated = {q.final.message_id for q in user.questions if q.rated}
        stored, ratings = set(), set()
        for conversation in orchard.conversations.list(user.name):
            for message in orchard.conversations.messages(user.name, conversation.id):
                stored |= {str(v.id) for v in (message, *message.alternatives) if v.role == "assistant"}
            ratings |= {str(mid) for mid in orchard.conversations.ratings(user.name, conversation.id)}
        report.answers_stored += len(received & stored)
        report.messages_lost += len(received - stored)
        report.ratings_stored += len(rated & ratings)
        report.ratings_lost += len(rated - ratings)
    with httpx.Client(base_url=api_url, trust_env=False, timeout=30) as client:
        for i, user in enumerate(users):
            other = users[(i + 1) % len(users)]
            answers = [q.final.message_id for q in other.questions if q.final.message_id]
            probes = []
            if other.conversation_id:
                probes.append(("GET", f"/api/conversations/{other.conversation_id}", None))
                probes.append(("DELETE", f"/api/conversations/{other.conversation_id}", None))
            if answers:
                probes.append(("POST", "/api/feedback", {"message_id": answers[0], "rating": "down"}))
            for method, path, body in probes:
                reply = client.request(method, path, json=body, headers={"authorization": f"Bearer {user.key}"})
                report.cross_user_probes += 1
                if reply.status_code != 404:
                    report.cross_user_leaks += 1
            mine = client.get("/api/conversations", headers={"authorization": f"Bearer {user.key}"}).json()["conversations"]
            report.cross_user_probes += 1
            if other.conversation_id in {c["id"] for c in mine}:
                report.cross_user_leaks += 1


def _unclear_while(load: Load, window: list[float], grace: float = 1.0) -> int:
    """Questions whose last try failed without a clear error while Chroma was restarting."""
    from tests.deployment.load import is_clear

    if len(window) < 2:
        return 0
    start, end = window[0], window[1] + grace
    finals = [q.final for u in load.users for q in u.questions if q.final.outcome != "answered"]
    return sum(1 for a in finals if not is_clear(a) and a.started <= end and a.started + a.seconds >= start)


def test_load_and_faults(tmp_path: Path) -> None:
    started = time.monotonic()
    faults = Faults()
    report: LoadReport | None = None
    leaks: list[str] = []
    postgres = chroma = None
    try:
        postgres = postgres_server(tmp_path)
        chroma = chroma_server(tmp_path)
        with Deployment(tmp_path) as d:
            models = d.add(ModelServers.stub(tmp_path, count=2, first_token_delay=0.3, token_delay=0.02))
            model_lb, model_url = HaproxyLB.service(tmp_path, models.addresses, name="haproxy-models")
            d.add(model_lb)
            state_url = postgres.create_database("orchard") if postgres is not None else None
            shared = OrchardEnv(data_dir=tmp_path / "data", llm_base_url=f"{model_url}/v1",
                                chroma_url=chroma.url, state_url=state_url, extra=TEAM_MODE)  # fmt: skip
            ingest = subprocess.run([*orchard_command(), "ingest", str(ROOT / "samples")], env={**shared.env(), "PYTHONPATH": str(ROOT)},
                                    cwd=tmp_path, capture_output=True, text=True, timeout=240)  # fmt: skip
            assert ingest.returncode == 0, ingest.stdout + ingest.stderr
            users = _users(shared, USERS, tmp_path)
            probe = _probe_key(shared)
            apis = d.add(orchard_apis(tmp_path, shared, count=2))
            cold = [round(_ready(api, probe), 1) for api in apis.services]  # the load starts on warm processes
            api_lb, api_url = HaproxyLB.service(tmp_path, apis.addresses, name="haproxy-api", health_path=API_LIVENESS)
            d.add(api_lb)
            canaries = _plant_canaries(api_url, users)
            setup_s = time.monotonic() - started

            notes: list[str] = []
            faults.at(10, "model server 1 killed mid-stream (SIGKILL)", lambda: _kill_model_mid_stream(models[0], notes))
            faults.at(25, "API process 1 killed mid-stream (SIGKILL), started again after 2 s",
                      lambda: _kill_api_mid_stream(apis[0], api_lb, "api-1", probe, notes))  # fmt: skip
            chroma_window: list[float] = []

            def restart_chroma() -> None:
                chroma_window.append(time.monotonic())
                chroma.restart()
                chroma_window.append(time.monotonic())

            faults.at(45, "Chroma server restarted", restart_chroma)
            if postgres is not None:
                faults.at(65, "Postgres restarted", postgres.restart)
            load = Load(api_url, users, questions=QUESTIONS, concurrency=CONCURRENCY, time_limit=TIME_LIMIT_S,
                        on_progress=faults.step)  # fmt: skip
            seconds = load.run()
            faults.finish()
            report = load.report(seconds)
            report.faults = faults.fired + notes + [f"fault failed: {e}" for e in faults.errors]
            if postgres is None:
                report.faults.append(
                    "Postgres not restarted: the state store does not read ORCHARD_STATE_URL yet (shared SQLite file)"
                )
            _verify(report, api_url, users, shared)
            leaks = _canary_leaks(report, api_url, users, canaries)
            report.model_client_retries = sum(Path(s.log).read_text().count("retrying (") for s in apis.services)
            report.balancer_retries = HaproxyLB.retried_requests(model_lb) + HaproxyLB.retried_requests(api_lb)
            report_extra_unclear = _unclear_while(load, chroma_window)
            report.uptime = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
            extra = {"setup_seconds": round(setup_s, 1), "cold_start_first_answer_s": cold, "logs": d.logs(),
                     "model_servers": HaproxyLB.states(model_lb), "api_processes": HaproxyLB.states(api_lb)}  # fmt: skip
            extra["logs"]["chroma"] = str(next(tmp_path.glob("chroma-*.log"), ""))
    finally:
        if chroma is not None:
            chroma.stop()
        if postgres is not None:
            postgres.cleanup()  # stops it, removes its temp folder
    assert report is not None
    extra["unclear_while_chroma_restarted"] = report_extra_unclear
    result = {**report.as_dict(), **extra, "total_seconds": round(time.monotonic() - started, 1)}
    (tmp_path / "load-report.json").write_text(json.dumps(result, indent=2))
    print("\nload-and-fault report:", json.dumps(result, indent=2))

    assert not faults.errors, faults.errors
    assert report.messages_lost == 0 and report.ratings_lost == 0, result
    assert report.cross_user_leaks == 0 and not leaks, (leaks, result)
    assert report.failed_without_clear_error == 0, result  # every failure said what failed (Chroma down: 503)
    assert report.asked >= 50, result  # the time limit left most of the run
    assert report.answered_first_try + report.answered_after_user_retry >= 0.9 * report.asked, result
    assert not d.left_running(), d.left_running()
