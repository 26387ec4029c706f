"""Simulated users for the load-and-fault test: each asks its questions through the HTTP API with
its own key (streamed ``/v1/chat/completions``, one conversation per user), rates every answer
(``POST /api/feedback``), and asks again once when a request fails — as a person would.

What a run measured is a :class:`LoadReport` (``as_dict()`` is the JSON written next to the
test's logs): requests answered (first try / after the user's retry), failed with a clear error
(an OpenAI error object with a message) or without one, latencies, and what was sent.
"""

from __future__ import annotations

import json
import statistics
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

import httpx

QUESTIONS = (
    "When should apple trees be pruned?",
    "When are plum trees pruned?",
    "Who coordinates the volunteers?",
    "How do I point Orchard at a vLLM server?",
    "How do I add my documents to Orchard?",
)


#: How long a simulated user waits before asking a failed question again.
RETRY_AFTER_S = 3.0


@dataclass
class Attempt:
    """One request: how it ended (``answered``, ``error`` with a message, ``broken``: the
    connection dropped or the body was not an answer), and what came back."""

    outcome: str
    seconds: float
    status: int = 0
    message: str = ""
    message_id: str | None = None
    conversation_id: str | None = None
    text: str = ""
    started: float = 0.0  # time.monotonic() when it was sent


@dataclass
class Question:
    user: str
    number: int
    attempts: list[Attempt] = field(default_factory=list)
    rated: bool = False

    @property
    def final(self) -> Attempt:
        return self.attempts[-1]


@dataclass
class User:
    name: str
    key: str
    conversation_id: str | None = None
    questions: list[Question] = field(default_factory=list)


def ask(base_url: str, user: User, question: str, *, timeout: float = 60) -> Attempt:
    """One streamed question in the user's conversation (:class:`Attempt`)."""
    body: dict[str, Any] = {"model": "orchard-rag", "stream": True, "messages": [{"role": "user", "content": question}]}
    if user.conversation_id:
        body["orchard"] = {"conversation_id": user.conversation_id}
    headers = {"authorization": f"Bearer {user.key}"}
    start = time.monotonic()
    text, extra, error = [], None, None
    stamp = {"started": start}
    try:
        with httpx.Client(trust_env=False, timeout=timeout) as client, \
                client.stream("POST", f"{base_url}/v1/chat/completions", json=body, headers=headers) as response:  # fmt: skip
            if response.status_code != 200:
                response.read()
                failed = _error_attempt(response.status_code, response.text, time.monotonic() - start)
                failed.started = start
                return failed
            for line in response.iter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                event = json.loads(line[6:])
                if "error" in event:
                    error = event["error"]
                    continue
                for choice in event.get("choices", []):
                    text.append((choice.get("delta") or {}).get("content") or "")
                extra = event.get("orchard") or extra
    except (httpx.HTTPError, json.JSONDecodeError) as exc:
        return Attempt("broken", time.monotonic() - start, message=f"{type(exc).__name__}: {exc}", text="".join(text), **stamp)
    seconds = time.monotonic() - start
    if error is not None:
        return Attempt("error", seconds, 200, str(error.get("message") or ""), text="".join(text), **stamp)
    if not extra or not extra.get("message_id"):
        return Attempt("broken", seconds, 200, "the stream ended without Orchard's final chunk", text="".join(text), **stamp)
    return Attempt("answered", seconds, 200, message_id=str(extra["message_id"]), conversation_id=extra.get("conversation_id"),
                   text="".join(text), **stamp)  # fmt: skip


def _error_attempt(status: int, body: str, seconds: float) -> Attempt:
    try:
        message = str(json.loads(body)["error"]["message"])
    except (ValueError, KeyError, TypeError):  # haproxy's own 502/503 page: no OpenAI error object
        return Attempt("broken", seconds, status, body[:200])
    return Attempt("error", seconds, status, message)


#: What a message must not be to count as a clear error: the API's catch-all says nothing of what failed.
UNCLEAR_MESSAGES = ("internal error in Orchard",)


def is_clear(attempt: Attempt) -> bool:
    """A failure the user can act on: an error object whose message says what failed."""
    return attempt.outcome == "error" and bool(attempt.message) and not any(m in attempt.message for m in UNCLEAR_MESSAGES)


def rate(base_url: str, user: User, message_id: str, rating: str, *, tries: int = 4) -> bool:
    """Rate an answer, trying again (1 s apart) while the deployment is recovering; True once stored."""
    for _ in range(tries):
        try:
            reply = httpx.post(f"{base_url}/api/feedback", json={"message_id": message_id, "rating": rating},
                               headers={"authorization": f"Bearer {user.key}"}, timeout=30, trust_env=False)  # fmt: skip
            if reply.status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(1.0)
    return False


@dataclass
class LoadReport:
    users: int
    questions_per_user: int
    concurrency: int
    seconds: float
    answered_first_try: int
    answered_after_user_retry: int
    failed_with_clear_error: int
    failed_without_clear_error: int
    model_client_retries: int = 0
    ratings_sent: int = 0
    ratings_stored: int = 0
    answers_received: int = 0
    answers_stored: int = 0
    messages_lost: int = 0
    ratings_lost: int = 0
    cross_user_probes: int = 0
    cross_user_leaks: int = 0
    #: answered questions, from the first try to the answer (a user's second try included)
    latency_p50_s: float = 0.0
    latency_p95_s: float = 0.0
    #: answered at the first try: that request alone
    first_try_p50_s: float = 0.0
    first_try_p95_s: float = 0.0
    asked: int = 0
    not_asked_time_limit: int = 0
    faults: list[str] = field(default_factory=list)
    clear_errors: list[str] = field(default_factory=list)
    unclear_failures: list[str] = field(default_factory=list)
    #: every failed attempt, also those the user's second try recovered: "clear|UNCLEAR outcome status: message" -> count
    failed_attempts: dict[str, int] = field(default_factory=dict)
    balancer_retries: int = 0
    uptime: str = ""

    @property
    def requests(self) -> int:
        return self.users * self.questions_per_user

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "requests": self.requests}


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(sorted(values), n=100, method="inclusive")[int(q) - 1]


class Load:
    """``users`` ask ``questions`` each at ``concurrency``; ``on_progress(done)`` is called after
    every finished question (the fault schedule hangs on it)."""

    def __init__(self, base_url: str, users: list[User], *, questions: int = 5, concurrency: int = 8,
                 time_limit: float = 120.0, on_progress: Callable[[int], None] | None = None) -> None:  # fmt: skip
        self.base_url, self.users, self.questions, self.concurrency = base_url, users, questions, concurrency
        self.time_limit, self.on_progress = time_limit, on_progress
        self.done = 0
        self._lock = threading.Lock()
        self._deadline = 0.0

    def run(self) -> float:
        start = time.monotonic()
        self._deadline = start + self.time_limit
        with ThreadPoolExecutor(self.concurrency, thread_name_prefix="user") as pool:
            for future in [pool.submit(self._user, user) for user in self.users]:
                future.result()
        return time.monotonic() - start

    def _user(self, user: User) -> None:
        for n in range(self.questions):
            if time.monotonic() > self._deadline:
                return
            question = Question(user.name, n)
            user.questions.append(question)
            text = QUESTIONS[(n + len(user.name)) % len(QUESTIONS)]
            attempt = ask(self.base_url, user, text)
            question.attempts.append(attempt)
            if attempt.outcome != "answered":  # the person asks again, once, a moment later
                time.sleep(RETRY_AFTER_S)
                question.attempts.append(ask(self.base_url, user, text))

            final = question.final
            if final.outcome == "answered" and final.message_id:
                user.conversation_id = final.conversation_id or user.conversation_id
                question.rated = rate(self.base_url, user, final.message_id, "up" if n % 2 == 0 else "down")
            with self._lock:
                self.done += 1
                done = self.done
            if self.on_progress is not None:
                self.on_progress(done)

    def report(self, seconds: float) -> LoadReport:
        questions = [q for u in self.users for q in u.questions]
        answered = [q for q in questions if q.final.outcome == "answered"]
        clear = [q for q in questions if is_clear(q.final)]
        unclear = [q for q in questions if q.final.outcome != "answered" and not is_clear(q.final)]
        seen: dict[str, int] = {}
        for attempt in (a for q in questions for a in q.attempts if a.outcome != "answered"):
            kind = "clear" if is_clear(attempt) else "UNCLEAR"
            key = f"{kind} {attempt.outcome} {attempt.status}: {attempt.message[:200]}"
            seen[key] = seen.get(key, 0) + 1
        latencies = [q.final.started + q.final.seconds - q.attempts[0].started for q in answered]
        first_try = [q.final.seconds for q in answered if len(q.attempts) == 1]
        return LoadReport(
            users=len(self.users), questions_per_user=self.questions, concurrency=self.concurrency, seconds=round(seconds, 1),
            answered_first_try=sum(1 for q in answered if len(q.attempts) == 1),
            answered_after_user_retry=sum(1 for q in answered if len(q.attempts) > 1),
            failed_with_clear_error=len(clear), failed_without_clear_error=len(unclear),
            ratings_sent=sum(1 for q in answered if q.rated), answers_received=len(answered),
            latency_p50_s=round(percentile(latencies, 50), 3), latency_p95_s=round(percentile(latencies, 95), 3),
            first_try_p50_s=round(percentile(first_try, 50), 3), first_try_p95_s=round(percentile(first_try, 95), 3),
            asked=len(questions), not_asked_time_limit=len(self.users) * self.questions - len(questions),
            clear_errors=sorted({f"{q.final.status}: {q.final.message[:240]}" for q in clear}),
            unclear_failures=sorted({f"{q.final.status}: {q.final.message[:240]}" for q in unclear}),
            failed_attempts=dict(sorted(seen.items(), key=lambda kv: -kv[1])),
        )  # fmt: skip
