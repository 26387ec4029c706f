"""The users directory: a login upserts the person's row (name, e-mail, admin flag from the
claims, first/last login, count) and leaves a ``login`` audit entry — on both engines."""

from __future__ import annotations

import pytest

from orchard.audit import AuditLog
from orchard.db import Database, NotFound
from orchard.identity import identity_from_claims, personal_identity
from orchard.users import UserDirectory
from tests.servers.plugin import postgres_server_fixture, postgres_url_fixture, state_url_fixture  # noqa: F401

ISSUER = "https://id.example.org"


@pytest.fixture
def db(state_url: str) -> Database:
    return Database(state_url)


def test_a_login_is_recorded_and_a_second_one_updates_the_claims(db: Database) -> None:
    users = UserDirectory(db)
    first = identity_from_claims({"sub": "42", "email": "ana@example.org", "name": "Ana"}, issuer=ISSUER, admins="ana@example.org")
    record = users.seen(first)
    assert (record.user, record.name, record.email, record.is_admin, record.logins) == (first.user, "Ana", "ana@example.org", True, 1)
    assert (record.issuer, record.subject) == (ISSUER, "42") and record.first_login_at == record.last_login_at

    renamed = identity_from_claims({"sub": "42", "email": "ana@new.example.org", "name": "Ana M."}, issuer=ISSUER, admins="")
    again = users.seen(renamed)
    assert again.user == first.user and (again.name, again.email, again.is_admin, again.logins) == ("Ana M.", "ana@new.example.org", False, 2)
    assert again.first_login_at == record.first_login_at and again.last_login_at >= record.last_login_at
    assert users.get(first.user) == again


def test_users_are_listed_most_recent_login_first_and_unknown_ones_are_not_found(db: Database) -> None:
    users = UserDirectory(db)
    bob = identity_from_claims({"sub": "7", "name": "Bob"}, issuer=ISSUER)
    users.seen(personal_identity("local"))
    users.seen(bob)
    assert [u.user for u in users.list()] == [bob.user, "local"]
    assert users.get("local").issuer is None and users.get("local").is_admin
    with pytest.raises(NotFound, match="no user"):
        users.get("nobody")


def test_each_login_is_in_the_audit_trail(db: Database) -> None:
    users, audit = UserDirectory(db), AuditLog(db)
    ana = identity_from_claims({"sub": "42", "email": "ana@example.org"}, issuer=ISSUER, admins="ana@example.org")
    users.seen(ana)
    users.seen(ana)
    users.seen(ana, audit=False)
    logins = audit.entries(action="login")
    assert [e.user for e in logins] == [ana.user, ana.user] and logins[0].detail == {"admin": True, "team": True}
