"""Conversation history: CRUD, isolation between users, restarts, regenerate, threads — on SQLite
and on a real Postgres (the ``state_url`` fixture runs each store test on both)."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from orchard.config import Settings
from orchard.db import SCHEMA_VERSION, Database, NotFound, db_path, validate_user
from orchard.history import DEFAULT_TITLE, ConversationStore, auto_title
from tests.servers.plugin import postgres_server_fixture, postgres_url_fixture, state_url_fixture  # noqa: F401


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "orchard.sqlite3"


@pytest.fixture
def store(state_url: str) -> ConversationStore:
    return ConversationStore(state_url)


def test_the_database_lives_in_the_data_dir_with_wal_foreign_keys_and_a_schema_version(
    isolated_env: Path,
) -> None:
    target = db_path(Settings().data_dir)
    assert target == isolated_env / "orchard.sqlite3"
    db = Database(target)
    assert target.exists() and (target.stat().st_mode & 0o777) == 0o600
    assert db.read("PRAGMA journal_mode")[0][0] == "wal"
    assert db.read("PRAGMA foreign_keys")[0][0] == 1
    assert db.user_version == SCHEMA_VERSION
    Database(target)  # opening again is a no-op migration
    tables = {row[0] for row in db.read("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"conversations", "messages", "feedback", "profiles"} <= tables


def test_a_database_from_a_newer_orchard_is_refused(path: Path) -> None:
    Database(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(Exception, match="newer than this Orchard"):
        Database(path)


def test_create_get_list_rename_delete(store: ConversationStore) -> None:
    first = store.create("ana")
    assert first.title == DEFAULT_TITLE and first.mode == "auto" and first.user == "ana"
    assert first.db_url is None and first.tables == ()
    second = store.create("ana", title="Budget", mode="rag")
    assert store.get("ana", second.id) == second
    assert [c.id for c in store.list("ana")] == [second.id, first.id]

    renamed = store.rename("ana", first.id, "  Trip   plans ")
    assert renamed.title == "Trip plans" and store.get("ana", first.id).title == "Trip plans"

    store.delete("ana", second.id)
    assert [c.id for c in store.list("ana")] == [first.id]
    with pytest.raises(NotFound):
        store.get("ana", second.id)
    with pytest.raises(NotFound):
        store.delete("ana", second.id)


def test_the_list_is_ordered_by_the_last_message(store: ConversationStore) -> None:
    old = store.create("ana")
    new = store.create("ana")
    assert [c.id for c in store.list("ana")] == [new.id, old.id]
    store.add_message("ana", old.id, "user", "hello again")
    assert [c.id for c in store.list("ana")] == [old.id, new.id]
    store.rename("ana", new.id, "Renamed")  # renaming does not move a conversation
    assert [c.id for c in store.list("ana")] == [old.id, new.id]


def test_messages_keep_order_and_meta(store: ConversationStore) -> None:
    chat = store.create("ana")
    question = store.add_message("ana", chat.id, "user", "What is in Q3.pdf?")
    meta = {"sources": [{"source": "Q3.pdf", "page": 2}], "route": "rag", "model": "qwen", "path": Path("/x")}
    answer = store.add_message("ana", chat.id, "assistant", "Revenue rose [1].", meta=meta)
    assert isinstance(answer.id, int) and answer.id > question.id
    listed = store.messages("ana", chat.id)
    assert [(m.role, m.content) for m in listed] == [
        ("user", "What is in Q3.pdf?"),
        ("assistant", "Revenue rose [1]."),
    ]
    assert listed[1].meta == {**meta, "path": "/x"}  # non-JSON values are stored as text
    assert listed[0].meta == {} and listed[1].alternatives == ()
    assert listed[1].turn_id == listed[1].id


def test_the_first_question_becomes_the_title_unless_one_was_given(store: ConversationStore) -> None:
    chat = store.create("ana")
    store.add_message("ana", chat.id, "assistant", "Hi! Ask me anything.")  # not a question
    assert store.get("ana", chat.id).title == DEFAULT_TITLE
    long_question = "How did   the revenue of the northern region develop over the last three quarters of 2024?"
    store.add_message("ana", chat.id, "user", long_question)
    store.add_message("ana", chat.id, "user", "second question")
    title = store.get("ana", chat.id).title
    assert title == auto_title(long_question)
    assert title.startswith("How did the revenue") and title.endswith("…") and len(title) <= 60

    named = store.create("ana", title="Mine")
    store.add_message("ana", named.id, "user", "a question")
    assert store.get("ana", named.id).title == "Mine"


def test_auto_title_short_questions_are_kept_whole() -> None:
    assert auto_title("  What is X?\n") == "What is X?"
    assert auto_title("   ") == DEFAULT_TITLE
    assert len(auto_title("x" * 500)) <= 60


def test_mode_and_data_sources_are_per_conversation(store: ConversationStore) -> None:
    chat = store.create("ana")
    other = store.create("ana")
    assert store.set_mode("ana", chat.id, "agent").mode == "agent"
    updated = store.set_data_sources(
        "ana", chat.id, db_url="sqlite:///sales.db", tables=["/data/a.csv", Path("/data/b.xlsx"), "/data/a.csv"]
    )
    assert updated.db_url == "sqlite:///sales.db" and updated.tables == ("/data/a.csv", "/data/b.xlsx")
    assert store.get("ana", other.id).db_url is None and store.get("ana", other.id).mode == "auto"
    cleared = store.set_data_sources("ana", chat.id)
    assert cleared.db_url is None and cleared.tables == ()
    with pytest.raises(ValueError, match="list of file paths"):
        store.set_data_sources("ana", chat.id, tables="/data/a.csv")
    with pytest.raises(ValueError, match="invalid mode"):
        store.set_mode("ana", chat.id, "  ")


def test_delete_removes_the_messages_too(store: ConversationStore) -> None:
    chat = store.create("ana")
    answer_id = store.add_message("ana", chat.id, "assistant", "v1").id
    store.add_alternative("ana", answer_id, "v2")
    store.add_message("ana", chat.id, "user", "q")
    store.delete("ana", chat.id)
    assert store.db.read("SELECT COUNT(*) FROM messages")[0][0] == 0


def test_invalid_input_is_rejected_with_a_clear_message(store: ConversationStore) -> None:
    chat = store.create("ana")
    with pytest.raises(ValueError, match="invalid role"):
        store.add_message("ana", chat.id, "system", "x")
    with pytest.raises(ValueError, match="title is empty"):
        store.rename("ana", chat.id, "   ")
    with pytest.raises(ValueError, match="at most 200"):
        store.rename("ana", chat.id, "x" * 201)
    with pytest.raises(ValueError, match="must be text"):
        store.add_message("ana", chat.id, "user", None)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("name", "error"),
    [("", "empty"), ("   ", "empty"), ("x" * 65, "at most 64"), ("a\nb", "control"), (None, "must be text")],
)
def test_user_names_are_validated(store: ConversationStore, name: object, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        store.create(name)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=error):
        store.list(name)  # type: ignore[arg-type]


def test_user_names_are_trimmed() -> None:
    assert validate_user("  ana ") == "ana"
    assert validate_user("x" * 64) == "x" * 64


def test_trimmed_user_names_name_the_same_user(store: ConversationStore) -> None:
    chat = store.create(" ana ")
    assert store.get("ana", chat.id).user == "ana"


def test_users_never_see_each_other(store: ConversationStore) -> None:
    mine = store.create("ana", title="Ana's")
    answer = store.add_message("ana", mine.id, "assistant", "secret")
    store.create("bob", title="Bob's")
    assert [c.title for c in store.list("bob")] == ["Bob's"]

    missing = "0" * 32
    calls = [
        lambda cid: store.get("bob", cid),
        lambda cid: store.rename("bob", cid, "mine now"),
        lambda cid: store.delete("bob", cid),
        lambda cid: store.set_mode("bob", cid, "chat"),
        lambda cid: store.set_data_sources("bob", cid, db_url="sqlite://"),
        lambda cid: store.add_message("bob", cid, "user", "hi"),
        lambda cid: store.messages("bob", cid),
    ]
    for call in calls:
        with pytest.raises(NotFound) as foreign:
            call(mine.id)
        with pytest.raises(NotFound) as absent:
            call(missing)
        # another user's conversation looks exactly like a missing one
        assert str(foreign.value).replace(mine.id, "ID") == str(absent.value).replace(missing, "ID")
        assert isinstance(foreign.value, KeyError)
    with pytest.raises(NotFound):
        store.add_alternative("bob", answer.id, "overwritten")
    with pytest.raises(NotFound):
        store.set_current("bob", answer.id)

    assert store.get("ana", mine.id).title == "Ana's"  # nothing changed
    assert [m.content for m in store.messages("ana", mine.id)] == ["secret"]


def test_everything_survives_a_restart(state_url: str) -> None:
    before = ConversationStore(state_url)
    chat = before.create("ana", mode="rag")
    before.add_message("ana", chat.id, "user", "question")
    first = before.add_message("ana", chat.id, "assistant", "answer 1", meta={"model": "m"})
    before.add_alternative("ana", first.id, "answer 2")
    before.set_data_sources("ana", chat.id, db_url="sqlite:///x.db", tables=["t.csv"])
    before.db.close()

    after = ConversationStore(state_url)  # a new process on the same database
    assert after.list("ana") == [after.get("ana", chat.id)]
    restored = after.get("ana", chat.id)
    assert (restored.title, restored.mode) == ("question", "rag")
    assert (restored.db_url, restored.tables) == ("sqlite:///x.db", ("t.csv",))
    listed = after.messages("ana", chat.id)
    assert [m.content for m in listed] == ["question", "answer 2"]
    assert [a.content for a in listed[1].alternatives] == ["answer 1"]
    assert listed[1].alternatives[0].meta == {"model": "m"}


def test_regenerate_keeps_the_earlier_answers_as_alternatives(store: ConversationStore) -> None:
    chat = store.create("ana")
    store.add_message("ana", chat.id, "user", "q1")
    first = store.add_message("ana", chat.id, "assistant", "a1", meta={"model": "m1"})
    store.add_message("ana", chat.id, "user", "q2")
    store.add_message("ana", chat.id, "assistant", "b1")

    second = store.add_alternative("ana", first.id, "a2", {"model": "m2"})
    assert second.id != first.id and second.turn_id == first.id
    assert [a.content for a in second.alternatives] == ["a1"]
    third = store.add_alternative("ana", second.id, "a3")  # any version of the turn works
    assert [a.content for a in third.alternatives] == ["a1", "a2"]

    listed = store.messages("ana", chat.id)
    assert [m.content for m in listed] == ["q1", "a3", "q2", "b1"]  # the turn keeps its place
    assert [a.content for a in listed[1].alternatives] == ["a1", "a2"]
    assert [a.meta for a in listed[1].alternatives] == [{"model": "m1"}, {"model": "m2"}]
    assert {a.id for a in listed[1].alternatives} == {first.id, second.id}  # each can be rated

    chosen = store.set_current("ana", first.id)  # the user prefers the first answer after all
    assert chosen.content == "a1" and [a.content for a in chosen.alternatives] == ["a2", "a3"]
    assert [m.content for m in store.messages("ana", chat.id)] == ["q1", "a1", "q2", "b1"]


def test_only_answers_can_be_regenerated(store: ConversationStore) -> None:
    chat = store.create("ana")
    question = store.add_message("ana", chat.id, "user", "q")
    with pytest.raises(ValueError, match="only answers"):
        store.add_alternative("ana", question.id, "x")
    with pytest.raises(NotFound):
        store.add_alternative("ana", 999_999, "x")
    with pytest.raises(ValueError, match="integer"):
        store.add_alternative("ana", "1", "x")  # type: ignore[arg-type]


def test_two_stores_on_one_database_share_state(state_url: str) -> None:
    db = Database(state_url)
    one, two = ConversationStore(db), ConversationStore(db)
    chat = one.create("ana")
    assert two.get("ana", chat.id) == chat


def test_concurrent_writes_from_threads_do_not_fail(state_url: str) -> None:
    shared = ConversationStore(state_url)
    separate = ConversationStore(state_url)  # a second engine on the same database
    errors: list[BaseException] = []
    barrier = threading.Barrier(8)

    def work(index: int) -> None:
        store = shared if index % 2 else separate
        user = f"user{index % 3}"
        try:
            barrier.wait()
            chat = store.create(user)
            for turn in range(10):
                store.add_message(user, chat.id, "user", f"q{turn}")
                answer = store.add_message(user, chat.id, "assistant", f"a{turn}")
                store.add_alternative(user, answer.id, f"a{turn}'")
            store.rename(user, chat.id, f"chat {index}")
            store.list(user)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    reopened = ConversationStore(state_url)
    chats = [c for user in ("user0", "user1", "user2") for c in reopened.list(user)]
    assert len(chats) == 8
    for chat in chats:
        listed = reopened.messages(chat.user, chat.id)
        assert len(listed) == 20 and all(len(m.alternatives) == 1 for m in listed if m.role == "assistant")
