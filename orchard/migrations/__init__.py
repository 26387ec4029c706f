"""The state database's schema, as Alembic revisions (``versions/NNNN_*.py``), one for both engines.

==========  ==================================================================  ==================
revision    what                                                                pre-Alembic file
==========  ==================================================================  ==================
0001        conversations, messages, feedback, profiles                         user_version 1
0002        api_keys                                                            user_version 2
0003        preference_pairs                                                    user_version 3
0004        the ``user`` columns renamed ``owner`` (``user`` is reserved in PG)
0005        users (who logged in: issuer, subject, name, e-mail, admin, logins)
0006        audit (who asked, uploaded, deleted, exported, created a key)
==========  ==================================================================  ==================

:func:`upgrade` is what :class:`orchard.db.Database` runs on open and what ``orchard db upgrade``
calls. It runs inside one transaction that first takes a lock, so two processes opening a fresh
database at once do not both migrate: Postgres ``pg_advisory_xact_lock`` (DDL is transactional
there), SQLite ``BEGIN IMMEDIATE`` (the write lock on the file). The second process waits, then
finds the schema at head and does nothing.

An SQLite file written before Alembic has no ``alembic_version`` table and counts its
migrations in ``PRAGMA user_version``: it is stamped at the revision with that number (1 ->
0001, 2 -> 0002, 3 -> 0003: they create exactly what the old migrations did) and upgraded from
there, in place, data kept. After an upgrade an SQLite file's ``user_version`` is the head's
number (6), so an Orchard from before Alembic refuses it as "newer" instead of failing on the
renamed columns.

No ``alembic.ini`` is needed: :func:`alembic_config` builds the configuration in code, with the
script location inside the installed package.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from alembic.config import Config

    from orchard.db import Database

__all__ = ["LEGACY_REVISIONS", "alembic_config", "upgrade"]

#: ``PRAGMA user_version`` of a pre-Alembic SQLite file -> the revision that file is at.
LEGACY_REVISIONS = {1: "0001", 2: "0002", 3: "0003"}
#: The key of the Postgres advisory lock held while migrating ("orchard1" as a number).
MIGRATION_LOCK = 0x6F72636861726431
HERE = Path(__file__).resolve().parent


def alembic_config(connection: Any = None, url: str | None = None) -> Config:
    """Alembic's configuration for Orchard's revisions, without an ini file."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(HERE))
    if url:
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def known_revisions() -> set[str]:
    from alembic.script import ScriptDirectory

    return {script.revision for script in ScriptDirectory.from_config(alembic_config()).walk_revisions()}


def upgrade(target: str | Path | Database, revision: str = "head") -> str | None:
    """Bring the state database at ``target`` (a URL, a path or an open :class:`Database`) to
    ``revision`` (default: head); returns the revision it is at afterwards.

    Safe to call from several processes at once (module docstring). A pre-Alembic SQLite file is
    stamped and upgraded in place.

    Raises:
        orchard.db.StateUnavailable: the database cannot be reached.
        orchard.errors.OrchardError: the database was written by a newer Orchard.
    """
    from alembic import command
    from sqlalchemy import exc as sa_exc

    from orchard.db import SCHEMA_VERSION, Database, _sqlite_user_version, current_revision

    db = target if isinstance(target, Database) else Database(target, migrate=False)
    connection = db._connect()
    try:
        if db.dialect == "sqlite":
            connection = connection.execution_options(sqlite_begin="IMMEDIATE")
        with connection.begin():
            if db.dialect == "postgresql":
                connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})")
            current = current_revision(connection)
            stamp = None
            if db.dialect == "sqlite":
                legacy = _sqlite_user_version(connection)
                if legacy > SCHEMA_VERSION or (current is None and legacy and legacy not in LEGACY_REVISIONS):
                    raise _newer(db, f"schema version {legacy}")
                if current is None and legacy:
                    stamp = LEGACY_REVISIONS[legacy]
            if current is not None and current not in known_revisions():
                raise _newer(db, f"schema revision {current}")
            config = alembic_config(connection)
            if stamp:
                command.stamp(config, stamp)
            command.upgrade(config, revision)
            reached = current_revision(connection)
            if db.dialect == "sqlite" and reached:
                connection.exec_driver_sql(f"PRAGMA user_version = {int(reached)}")
        return reached
    except sa_exc.DBAPIError as error:
        raise db._error(error) from error
    finally:
        connection.close()
        if db is not target:
            db.close()


def _newer(db: Database, what: str) -> Exception:
    from orchard.db import HEAD_REVISION
    from orchard.errors import OrchardError

    return OrchardError(
        f"the state database at {db.display_url} has {what}, newer than this Orchard (revision {HEAD_REVISION})"
        " — upgrade Orchard, or point ORCHARD_STATE_URL / ORCHARD_DATA_DIR elsewhere"
    )
