"""Pytest fixtures for a real Postgres (register with ``pytest_plugins = ["tests.servers.plugin"]``
in tests/conftest.py, or import them into a test module: ``from tests.servers.plugin import
state_url_fixture`` — each fixture's name is given explicitly, so the imported function's name
does not clash with the parameter that uses it).

``postgres_server``  the session's one :class:`~tests.servers.postgres.PostgresServer`
                     (started once per test process; a missing binary fails the test with
                     "run `make` (installs postgresql)" — never a skip)
``postgres_url``     the test database: at the schema's head, empty (truncated before each test)
``state_url``        parametrized ``sqlite`` / ``postgres``: a state database URL on each engine,
                     so one store test runs on both
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.servers.postgres import PostgresServer, PostgresUnavailable, shared_server

TEMPLATE = "orchard_template"
WORKSPACE = "orchard_test"
_tables: dict[int, list[str]] = {}  # server port -> the tables of a migrated database


@pytest.fixture(scope="session", name="postgres_server")
def postgres_server_fixture() -> PostgresServer:
    try:
        return shared_server()
    except PostgresUnavailable as error:
        pytest.fail(str(error), pytrace=False)


def migrated_template(server: PostgresServer) -> str:
    """A database at the schema's head that the test database is copied from (once per server)."""
    if server.port not in _tables:
        from orchard.db import Database

        Database(server.create_database(TEMPLATE)).close()  # closed: a template must have no connections
        with server.connect(TEMPLATE) as conn:
            rows = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'alembic_version'")
            _tables[server.port] = sorted(row[0] for row in rows)
        server.create_database(WORKSPACE, template=TEMPLATE)
    return TEMPLATE


def fresh_workspace(server: PostgresServer) -> str:
    """The test database, emptied: earlier tests' connections ended, every table truncated (ids
    restart); copied anew from the template when a test changed its schema (dropped a table, set
    a newer revision). ~40 ms instead of ~100+ ms for a CREATE DATABASE per test."""
    from orchard.db import HEAD_REVISION

    migrated_template(server)
    tables = _tables[server.port]
    try:
        with server.connect(WORKSPACE) as conn:
            conn.execute("SET lock_timeout = '5s'")
            conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                         " WHERE datname = current_database() AND pid <> pg_backend_pid()")  # fmt: skip
            present = conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public' AND tablename = ANY(%s)",
                                   (tables,)).fetchone()[0]  # fmt: skip
            revision = conn.execute("SELECT version_num FROM alembic_version").fetchone()
            if present != len(tables) or revision is None or revision[0] != HEAD_REVISION:
                raise LookupError("schema changed by the last test")
            conn.execute(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE")
    except Exception:  # any doubt: start over from the template
        server.create_database(WORKSPACE, template=TEMPLATE)
    return server.url(WORKSPACE)


@pytest.fixture(name="postgres_url")
def postgres_url_fixture(postgres_server: PostgresServer) -> str:
    """A Postgres state database at the schema's head, empty."""
    if not postgres_server.running:  # a fault test stopped it
        postgres_server.start()
    return fresh_workspace(postgres_server)


@pytest.fixture(name="state_url", params=["sqlite", "postgres"])
def state_url_fixture(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A state database URL on each engine: SQLite in tmp_path, a fresh Postgres database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'state' / 'orchard.sqlite3'}"
    return request.getfixturevalue("postgres_url")
