"""The state database itself: URLs, rows, concurrent writers from several processes on SQLite and
Postgres, a Postgres that is down, restarted, or comes back while a request waits."""

from __future__ import annotations

import multiprocessing
import threading
import time
from pathlib import Path

import pytest

from orchard.db import HEAD_REVISION, Database, StateUnavailable, database_url, statement
from orchard.errors import OrchardError
from orchard.feedback import FeedbackStore
from orchard.history import ConversationStore
from tests.servers.plugin import postgres_server_fixture, postgres_url_fixture, state_url_fixture  # noqa: F401
from tests.servers.postgres import PostgresServer

WORKERS, ROUNDS = 4, 50


def test_a_path_is_an_sqlite_file_and_postgres_urls_mean_psycopg(tmp_path: Path) -> None:
    assert str(database_url(tmp_path / "a.sqlite3")) == f"sqlite:///{tmp_path / 'a.sqlite3'}"
    assert database_url("postgresql://u:secret@db/orchard").drivername == "postgresql+psycopg"
    assert database_url("postgres://u@db/orchard").drivername == "postgresql+psycopg"
    with pytest.raises(OrchardError, match="neither SQLite nor Postgres"):
        database_url("mysql://u@db/orchard")
    db = Database(f"sqlite:///{tmp_path / 'sub' / 'b.sqlite3'}")
    assert db.path == tmp_path / "sub" / "b.sqlite3" and db.revision == HEAD_REVISION
    assert "secret" not in Database("postgresql+psycopg://u:secret@/x?host=/nowhere", migrate=False).display_url


def test_rows_read_by_name_and_position_and_qmark_sql_still_works(state_url: str) -> None:
    db = Database(state_url)
    with db.transaction() as conn:
        conn.execute("INSERT INTO api_keys (id, owner, name, secret_hash, created_at) VALUES (?, ?, ?, ?, ?)",
                     ("k1", "ana", "it's a '?' name", "h", 1.5))  # fmt: skip
        inserted = conn.execute("SELECT id, owner FROM api_keys WHERE name = :name", {"name": "it's a '?' name"}).fetchone()
    assert inserted["owner"] == inserted[1] == "ana" and tuple(inserted) == ("k1", "ana") and inserted.keys() == ["id", "owner"]
    with pytest.raises(KeyError, match="no column 'user'"):
        inserted["user"]
    assert db.read("SELECT COUNT(*) FROM api_keys WHERE owner = ?", ("ana",))[0][0] == 1
    assert statement("SELECT '?' AS q, ? AS p", (7,))[1] == {"p0": 7}  # a quoted ? is not a placeholder


def test_an_in_memory_database_works_across_threads() -> None:
    store = ConversationStore("sqlite://")
    chat = store.create("ana")
    threads = [threading.Thread(target=store.add_message, args=("ana", chat.id, "user", f"q{i}")) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(store.messages("ana", chat.id)) == 8


def _writer(url: str, index: int, barrier: multiprocessing.synchronize.Barrier, shared_message: int) -> None:
    """One process: its own conversation of ROUNDS questions and answers, each answer rated,
    and every process re-rating one shared message (the upsert's race)."""
    history, ratings = ConversationStore(url), FeedbackStore(url)
    user = f"worker{index}"
    chat = history.create(user)
    barrier.wait()
    for n in range(ROUNDS):
        history.add_message(user, chat.id, "user", f"q{n}")
        answer = history.add_message(user, chat.id, "assistant", f"a{n}")
        ratings.add(user=user, prompt=f"q{n}", response=f"a{n}", rating="up" if n % 2 else "down", message_id=answer.id)
        ratings.add(user="everyone", prompt="shared", response="x", rating="up" if n % 2 else "down", message_id=shared_message,
                    comment=f"{index}/{n}")  # fmt: skip


def test_concurrent_writers_from_several_processes_lose_nothing(state_url: str) -> None:
    db = Database(state_url)
    history = ConversationStore(db)
    shared = history.add_message("everyone", history.create("everyone").id, "assistant", "shared answer")
    context = multiprocessing.get_context("fork")
    barrier = context.Barrier(WORKERS)
    started = time.monotonic()
    workers = [context.Process(target=_writer, args=(state_url, i, barrier, shared.id)) for i in range(WORKERS)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
    elapsed = time.monotonic() - started
    assert [w.exitcode for w in workers] == [0] * WORKERS  # no "database is locked", no unique violation escaped
    ratings = FeedbackStore(db)
    for index in range(WORKERS):
        user = f"worker{index}"
        (chat,) = history.list(user)
        assert [m.content for m in history.messages(user, chat.id)][-2:] == [f"q{ROUNDS - 1}", f"a{ROUNDS - 1}"]
        assert len(history.messages(user, chat.id)) == 2 * ROUNDS
        assert len(ratings.list(user)) == ROUNDS
    assert len(ratings.list("everyone")) == 1  # one rating per (user, message), whoever wrote last
    print(f"{WORKERS} processes x {ROUNDS} rounds (3 writes + 1 upsert each) on {db.dialect}: {elapsed:.2f} s")


def test_a_postgres_that_is_not_there_says_which_url_failed_and_what_to_do(tmp_path: Path) -> None:
    url = f"postgresql+psycopg://orchard:pw@/orchard?host={tmp_path}&port=5999"  # no server on this socket
    started = time.monotonic()
    with pytest.raises(StateUnavailable) as caught:
        Database(url, reconnect_wait=0.5)
    message = str(caught.value)
    assert "postgresql+psycopg://orchard:***@/orchard" in message and "pw" not in message.replace("***", "")
    assert "is Postgres running" in message and "ORCHARD_STATE_URL" in message
    assert time.monotonic() - started < 5


def test_a_request_after_a_postgres_restart_works(postgres_server: PostgresServer, postgres_url: str) -> None:
    history = ConversationStore(postgres_url)
    chat = history.create("ana")
    history.add_message("ana", chat.id, "user", "before")
    postgres_server.restart()  # every pooled connection is now dead
    history.add_message("ana", chat.id, "assistant", "after")  # pre-ping replaces them
    assert [m.content for m in history.messages("ana", chat.id)] == ["before", "after"]


def test_a_write_waits_for_postgres_to_come_back(postgres_server: PostgresServer, postgres_url: str) -> None:
    history = ConversationStore(Database(postgres_url, reconnect_wait=20))
    chat = history.create("ana")
    postgres_server.stop()
    restart = threading.Timer(1.0, postgres_server.start)
    restart.start()
    try:
        started = time.monotonic()
        history.add_message("ana", chat.id, "user", "while it was down")
        waited = time.monotonic() - started
    finally:
        restart.join()
    assert waited >= 0.9 and [m.content for m in history.messages("ana", chat.id)] == ["while it was down"]


def test_a_write_that_loses_its_connection_midway_runs_again(postgres_server: PostgresServer, postgres_url: str) -> None:
    db = Database(postgres_url)
    attempts: list[int] = []

    def end_my_backend(conn) -> None:
        """What a Postgres restart does to a transaction in flight: the server ends its backend."""
        with postgres_server.connect() as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (conn.execute("SELECT pg_backend_pid()").scalar(),))
        conn.execute("SELECT 1")  # the next statement finds the connection gone

    def work(conn) -> None:
        attempts.append(conn.execute("SELECT pg_backend_pid()").scalar())
        conn.execute("INSERT INTO api_keys (id, owner, name, secret_hash, created_at) VALUES ('k', 'ana', 'n', 'h', 1)")
        if len(attempts) == 1:
            end_my_backend(conn)

    db.write(work)
    assert len(attempts) == 2 and attempts[0] != attempts[1]
    assert db.read("SELECT COUNT(*) FROM api_keys")[0][0] == 1  # the first attempt was rolled back, not doubled
    with pytest.raises(StateUnavailable, match="failed"):  # with no retry left, the loss is reported
        db.write(end_my_backend, retries=0)


def test_a_wrong_database_name_is_reported_at_once(postgres_server: PostgresServer) -> None:
    started = time.monotonic()
    with pytest.raises(StateUnavailable, match='database "no_such_db" does not exist'):
        Database(postgres_server.url("no_such_db"), reconnect_wait=30)
    assert time.monotonic() - started < 5  # not retried for reconnect_wait


def test_a_killed_postgres_keeps_every_acknowledged_write(postgres_server: PostgresServer, postgres_url: str) -> None:
    """What the loopback fault test relies on: SIGKILL the postmaster, start it, nothing committed is lost."""
    history = ConversationStore(postgres_url)
    chat = history.create("ana")
    for n in range(20):
        history.add_message("ana", chat.id, "user", f"q{n}")
    postgres_server.kill()
    assert not postgres_server.running
    postgres_server.start()
    assert [m.content for m in history.messages("ana", chat.id)] == [f"q{n}" for n in range(20)]
