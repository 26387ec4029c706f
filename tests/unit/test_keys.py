"""The API key lifecycle on both engines: create (shown once, stored as a hash), verify, list,
revoke — each create and revoke in the audit trail, in the same transaction as the key."""

from __future__ import annotations

import hashlib

import pytest

from orchard.audit import AuditLog
from orchard.db import Database, NotFound
from orchard.errors import OrchardError
from orchard.keys import KeyStore
from tests.servers.plugin import postgres_server_fixture, postgres_url_fixture, state_url_fixture  # noqa: F401


@pytest.fixture
def db(state_url: str) -> Database:
    return Database(state_url)


def test_a_key_is_shown_once_stored_as_a_hash_and_verified(db: Database) -> None:
    keys = KeyStore(db)
    created = keys.create(user="ana", name="  my   laptop ")
    assert created.key.startswith(f"orch_{created.info.id}_") and created.info.name == "my laptop"
    (stored,) = db.read("SELECT * FROM api_keys")
    assert stored["secret_hash"] == hashlib.sha256(created.key.encode()).hexdigest()
    assert created.key not in {str(value) for value in stored}
    found = keys.verify(created.key)
    assert found is not None and found.user == "ana" and found.last_used_at is not None
    assert keys.verify(created.key + "x") is None and keys.verify("orch_nope_x") is None and keys.verify("") is None
    with pytest.raises(OrchardError, match="give the key a name"):
        keys.create(user="ana", name="   ")


def test_keys_are_listed_per_user_and_revoked_only_by_their_owner(db: Database) -> None:
    keys = KeyStore(db)
    ana, bob = keys.create(user="ana", name="a"), keys.create(user="bob", name="b")
    assert [k.id for k in keys.list("ana")] == [ana.info.id] and len(keys.list()) == 2 and keys.active_count() == 2
    with pytest.raises(NotFound, match="of yours"):
        keys.revoke(bob.info.id, user="ana")
    revoked = keys.revoke(ana.info.id, user="ana")
    assert not revoked.active and keys.verify(ana.key) is None and keys.verify(bob.key) is not None
    assert keys.revoke(ana.info.id, user="ana").revoked_at == revoked.revoked_at  # revoking twice changes nothing
    assert keys.active_count() == 1
    with pytest.raises(NotFound):
        keys.revoke("missing")


def test_creating_and_revoking_keys_is_audited(db: Database) -> None:
    keys, audit = KeyStore(db), AuditLog(db)
    created = keys.create(user="ana", name="laptop")
    keys.revoke(created.info.id, user="ana")
    keys.revoke(created.info.id, user="ana")  # already revoked: not a second entry
    other = keys.create(user="bob", name="ci")
    keys.revoke(other.info.id)  # the CLI's admin revoke names no user
    entries = audit.entries()
    assert [(e.user, e.action, e.target) for e in reversed(entries)] == [
        ("ana", "key.create", created.info.id),
        ("ana", "key.revoke", created.info.id),
        ("bob", "key.create", other.info.id),
        ("(local admin)", "key.revoke", other.info.id),
    ]
    assert entries[-1].detail == {"name": "laptop"} and entries[0].detail == {"owner": "bob"}
    assert all(created.key not in str(e) for e in entries)  # the secret never reaches the trail


def test_a_key_without_its_audit_entry_is_not_created(db: Database) -> None:
    with db.transaction() as conn:
        conn.execute("DROP TABLE audit")
    with pytest.raises(Exception, match="audit"):
        KeyStore(db).create(user="ana", name="laptop")
    assert db.read("SELECT COUNT(*) FROM api_keys")[0][0] == 0
