"""Migrations: Alembic revisions on both engines, the in-place upgrade of an SQLite file written
before Alembic (its data intact), a database from a newer Orchard refused, and several processes
opening a fresh database at once (one migrates, the others wait and find it done)."""

from __future__ import annotations

import multiprocessing
import sqlite3
from pathlib import Path

import pytest
import sqlalchemy as sa

from orchard.db import HEAD_REVISION, SCHEMA_VERSION, Database
from orchard.errors import OrchardError
from orchard.feedback import FeedbackStore, ProfileStore
from orchard.history import ConversationStore
from orchard.keys import KeyStore
from orchard.migrations import LEGACY_REVISIONS, alembic_config, upgrade
from tests.servers.plugin import postgres_server_fixture, postgres_url_fixture, state_url_fixture  # noqa: F401
from tests.servers.postgres import PostgresServer

# The schema as Orchard wrote it before Alembic: `MIGRATIONS` of orchard/db.py, verbatim (entry i
# takes a file from PRAGMA user_version i to i + 1).
LEGACY_MIGRATIONS: list[list[str]] = [
    [
        """CREATE TABLE conversations (
            id TEXT PRIMARY KEY,                  -- uuid4 hex
            user TEXT NOT NULL,
            title TEXT,                           -- NULL until set: the first question fills it
            mode TEXT NOT NULL DEFAULT 'auto',
            db_url TEXT,                          -- the agent's database for this conversation
            tables TEXT NOT NULL DEFAULT '[]',    -- JSON list of attached table file paths
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL              -- last message (sidebar order)
        )""",
        """CREATE INDEX conversations_by_user ON conversations (user, updated_at DESC)""",
        """CREATE TABLE messages (
            id INTEGER PRIMARY KEY,
            conversation_id TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
            parent_id INTEGER REFERENCES messages (id) ON DELETE CASCADE,  -- NULL: first version
            is_current INTEGER NOT NULL DEFAULT 1,  -- the version shown, one per turn
            role TEXT NOT NULL CHECK (role IN ('user', 'assistant')),
            content TEXT NOT NULL,
            meta TEXT NOT NULL DEFAULT '{}',      -- JSON: sources, tool_calls, route, model, ...
            created_at REAL NOT NULL
        )""",
        """CREATE INDEX messages_by_conversation ON messages (conversation_id, id)""",
        """CREATE INDEX messages_by_parent ON messages (parent_id)""",
        """CREATE TABLE feedback (
            id INTEGER PRIMARY KEY,
            user TEXT NOT NULL,
            conversation_id TEXT,                 -- no foreign key: ratings outlive a chat
            message_id INTEGER,
            prompt TEXT NOT NULL,
            context TEXT,                         -- JSON: what the model saw besides the prompt
            response TEXT NOT NULL,
            sources TEXT NOT NULL DEFAULT '[]',   -- JSON list
            model TEXT,
            rating TEXT NOT NULL CHECK (rating IN ('up', 'down')),
            comment TEXT,
            created_at REAL NOT NULL              -- time of the latest rating
        )""",
        """CREATE INDEX feedback_by_user ON feedback (user, created_at)""",
        """CREATE UNIQUE INDEX feedback_one_per_message ON feedback (user, message_id)
            WHERE message_id IS NOT NULL""",
        """CREATE TABLE profiles (
            user TEXT PRIMARY KEY,
            manual TEXT NOT NULL DEFAULT '',      -- lines the user wrote (never overwritten)
            derived TEXT NOT NULL DEFAULT '',     -- lines derived from feedback (recomputed)
            dismissed TEXT NOT NULL DEFAULT '[]', -- JSON: derived lines the user removed
            since REAL NOT NULL DEFAULT 0,        -- derive only from feedback after this time
            updated_at REAL NOT NULL
        )""",
    ],
    [
        """CREATE TABLE api_keys (
            id TEXT PRIMARY KEY,                  -- public key id (the key's prefix)
            user TEXT NOT NULL,                   -- whose data the key reaches
            name TEXT NOT NULL,
            secret_hash TEXT NOT NULL,            -- sha256 of the whole key; the key is never stored
            created_at REAL NOT NULL,
            last_used_at REAL,
            revoked_at REAL
        )""",
        """CREATE INDEX api_keys_by_user ON api_keys (user, created_at)""",
    ],
    [
        """CREATE TABLE preference_pairs (
            id INTEGER PRIMARY KEY,
            user TEXT NOT NULL,
            source TEXT NOT NULL CHECK (source IN ('ai-feedback', 'best-of-n')),
            prompt TEXT NOT NULL,
            chosen TEXT NOT NULL,
            rejected TEXT NOT NULL,
            principle TEXT,                       -- ai-feedback: the principles the draft failed
            conversation_id TEXT,
            message_id INTEGER,                   -- the answer (the chosen one) it came from
            created_at REAL NOT NULL
        )""",
        """CREATE INDEX preference_pairs_by_user ON preference_pairs (user, created_at)""",
    ],
]


def legacy_file(path: Path, version: int) -> Path:
    """An SQLite file as the Orchard before Alembic left it at ``user_version = version``, with data."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("BEGIN")
    for number in range(version):
        for sql in LEGACY_MIGRATIONS[number]:
            conn.execute(sql)
    conn.execute(f"PRAGMA user_version = {version}")
    conn.execute("INSERT INTO conversations (id, user, title, mode, tables, created_at, updated_at)"
                 " VALUES ('c1', 'ana', 'Budget', 'rag', '[\"t.csv\"]', 10.5, 12.25)")  # fmt: skip
    conn.execute("INSERT INTO messages (id, conversation_id, role, content, created_at) VALUES (1, 'c1', 'user', 'q?', 11)")
    conn.execute("INSERT INTO messages (id, conversation_id, role, content, meta, created_at)"
                 " VALUES (2, 'c1', 'assistant', 'a1', '{\"model\": \"m\"}', 12)")  # fmt: skip
    conn.execute("INSERT INTO messages (id, conversation_id, parent_id, is_current, role, content, created_at)"
                 " VALUES (3, 'c1', 2, 0, 'assistant', 'a2', 12.25)")  # fmt: skip
    conn.execute("UPDATE messages SET is_current = 1 WHERE id = 2")
    conn.execute("INSERT INTO feedback (user, conversation_id, message_id, prompt, response, sources, rating, comment, created_at)"
                 " VALUES ('ana', 'c1', 2, 'q?', 'a1', '[]', 'up', 'too long', 13)")  # fmt: skip
    conn.execute("INSERT INTO profiles (user, manual, derived, updated_at) VALUES ('ana', 'Answer in French.', '', 14)")
    if version >= 2:
        conn.execute("INSERT INTO api_keys (id, user, name, secret_hash, created_at) VALUES ('k1', 'ana', 'laptop', 'h', 15)")
    if version >= 3:
        conn.execute("INSERT INTO preference_pairs (user, source, prompt, chosen, rejected, created_at)"
                     " VALUES ('ana', 'best-of-n', 'q?', 'a2', 'a1', 16)")  # fmt: skip
    conn.execute("COMMIT")
    conn.close()
    return path


@pytest.mark.parametrize("version", sorted(LEGACY_REVISIONS))
def test_a_file_from_before_alembic_is_upgraded_in_place_with_its_data(tmp_path: Path, version: int) -> None:
    path = legacy_file(tmp_path / "orchard.sqlite3", version)
    db = Database(path)  # opening upgrades
    assert db.revision == HEAD_REVISION and db.user_version == SCHEMA_VERSION

    history = ConversationStore(db)
    (chat,) = history.list("ana")
    assert (chat.id, chat.title, chat.mode, chat.tables, chat.created_at, chat.updated_at) == ("c1", "Budget", "rag", ("t.csv",), 10.5, 12.25)
    messages = history.messages("ana", "c1")
    assert [m.content for m in messages] == ["q?", "a1"] and messages[1].meta == {"model": "m"}
    assert [a.content for a in messages[1].alternatives] == ["a2"]
    (rating,) = FeedbackStore(db).list("ana")
    assert (rating.message_id, rating.rating, rating.comment) == (2, "up", "too long")
    assert ProfileStore(db).get("ana").startswith("- Answer in French.")
    if version >= 2:
        assert [k.id for k in KeyStore(db).list("ana")] == ["k1"]
    if version >= 3:
        assert FeedbackStore(db).stored_pairs("ana")[0]["chosen"] == "a2"
    # and it keeps working: new rows get fresh ids, the one-rating-per-message rule still holds
    new = history.add_message("ana", "c1", "user", "again")
    assert new.id == 4
    FeedbackStore(db).add(user="ana", prompt="q?", response="a1", rating="down", message_id=2)
    assert [f.rating for f in FeedbackStore(db).list("ana")] == ["down"]
    with pytest.raises(sa.exc.IntegrityError), db.transaction() as conn:  # foreign keys are still enforced
        conn.execute("INSERT INTO messages (conversation_id, role, content, created_at) VALUES ('nope', 'user', 'x', 1)")


def _shape(db: Database) -> dict[str, object]:
    """Tables -> columns (name, affinity, not null, default, pk) and indexes (name, unique, columns, partial)."""
    def affinity(declared: str) -> str:
        declared = declared.upper()
        return "INTEGER" if "INT" in declared else "TEXT" if "TEXT" in declared else "REAL" if declared in ("REAL", "FLOAT") else declared

    shape: dict[str, object] = {}
    tables = [r[0] for r in db.read("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")]
    for table in sorted(set(tables) - {"alembic_version"}):
        # Primary keys count as NOT NULL: an INTEGER one is the rowid (never NULL); a TEXT one is
        # declared NOT NULL in a fresh file and not in an old one (SQLite does not imply it), and
        # Orchard never writes a NULL id.
        columns = [(r["name"], affinity(r["type"]), r["notnull"] or int(r["pk"] > 0),
                    (r["dflt_value"] or "").strip("'"), r["pk"])
                   for r in db.read(f"PRAGMA table_info({table})")]  # fmt: skip
        indexes = sorted((r["name"], r["unique"], r["partial"], tuple(c["name"] for c in db.read(f"PRAGMA index_info({r['name']})")))
                         for r in db.read(f"PRAGMA index_list({table})") if not r["name"].startswith("sqlite_"))  # fmt: skip
        foreign = sorted((*r[2:5], r["on_delete"]) for r in db.read(f"PRAGMA foreign_key_list({table})"))
        shape[table] = (columns, indexes, foreign)
    return shape


def test_an_upgraded_file_has_the_same_schema_as_a_fresh_one(tmp_path: Path) -> None:
    upgraded = Database(legacy_file(tmp_path / "old.sqlite3", 3))
    fresh = Database(tmp_path / "new.sqlite3")
    assert _shape(upgraded) == _shape(fresh)
    assert "owner" in {c[0] for c in _shape(fresh)["conversations"][0]}  # type: ignore[index]


def test_the_head_revision_in_the_code_is_the_last_migration() -> None:
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(alembic_config())
    assert script.get_current_head() == HEAD_REVISION
    assert [s.revision for s in reversed(list(script.walk_revisions()))] == [f"{n:04d}" for n in range(1, SCHEMA_VERSION + 1)]


def test_upgrade_is_idempotent_and_returns_the_revision(state_url: str) -> None:
    assert upgrade(state_url) == HEAD_REVISION
    assert upgrade(state_url) == HEAD_REVISION
    assert Database(state_url).read("SELECT COUNT(*) FROM alembic_version")[0][0] == 1


def test_a_database_from_a_newer_orchard_is_refused(state_url: str) -> None:
    db = Database(state_url)
    with db.transaction() as conn:
        conn.execute("UPDATE alembic_version SET version_num = '9999'")
    with pytest.raises(OrchardError, match="revision 9999, newer than this Orchard"):
        Database(state_url)


def test_an_old_orchard_would_refuse_an_upgraded_file(tmp_path: Path) -> None:
    """The Orchard before Alembic refused files with user_version > 3: an upgraded file has 6."""
    path = legacy_file(tmp_path / "orchard.sqlite3", 3)
    Database(path).close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION > len(LEGACY_MIGRATIONS)


def _open(url: str, barrier: multiprocessing.synchronize.Barrier) -> None:
    barrier.wait()
    Database(url).close()


def _open_at_once(url: str, count: int = 4) -> list[int | None]:
    context = multiprocessing.get_context("fork")
    barrier = context.Barrier(count)
    processes = [context.Process(target=_open, args=(url, barrier)) for _ in range(count)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=120)
    return [p.exitcode for p in processes]


def test_processes_opening_a_fresh_sqlite_file_at_once_migrate_it_once(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fresh.sqlite3'}"
    assert _open_at_once(url) == [0, 0, 0, 0]
    assert Database(url).read("SELECT version_num FROM alembic_version") == [(HEAD_REVISION,)]


def test_processes_opening_a_fresh_postgres_database_at_once_migrate_it_once(postgres_server: PostgresServer) -> None:
    url = postgres_server.create_database("fresh_concurrent")  # empty: no template
    try:
        assert _open_at_once(url) == [0, 0, 0, 0]
        assert Database(url).read("SELECT version_num FROM alembic_version") == [(HEAD_REVISION,)]
    finally:
        postgres_server.drop_database("fresh_concurrent")


def test_postgres_gets_the_same_tables_and_columns(postgres_url: str, tmp_path: Path) -> None:
    def columns(db: Database) -> dict[str, set[str]]:
        inspector = sa.inspect(db.engine)
        return {t: {c["name"] for c in inspector.get_columns(t)} for t in inspector.get_table_names()}

    on_postgres, on_sqlite = columns(Database(postgres_url)), columns(Database(tmp_path / "s.sqlite3"))
    assert on_postgres == on_sqlite and "owner" in on_postgres["feedback"]
    kinds = {c["name"]: type(c["type"]).__name__ for c in sa.inspect(Database(postgres_url).engine).get_columns("messages")}
    assert kinds["created_at"] == "DOUBLE_PRECISION"  # seconds since the epoch keep their fraction

