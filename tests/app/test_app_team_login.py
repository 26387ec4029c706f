"""The app in team mode (``ORCHARD_AUTH=oidc``): the login gate, who you are after it, API keys.

Streamlit's ``AppTest.user`` is what a run reads as ``st.user``: ``{"is_logged_in": False}`` is a
visitor before login, the claims with ``"is_logged_in": True`` a logged-in person (what Streamlit
keeps in its login cookie after the OpenID provider's callback). ``AppTest.secrets`` is the
``[auth]`` section ``orchard app`` writes (:mod:`orchard.streamlit_auth`). The login round trip
itself, against a real OpenID provider in a real browser: ``tests/browser/``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from streamlit.testing.v1 import AppTest

from orchard.identity import identity_from_claims
from tests.app.conftest import app_script
from tests.app.fakes import SAMPLES, RuleModel, app_orchard
from tests.app.helpers import page as page_file
from tests.app.helpers import texts

ISSUER = "http://127.0.0.1:9400"
TEAM = {"auth": "oidc", "oidc_issuer": ISSUER, "oidc_client_id": "orchard", "oidc_client_secret": "s3cret",
        "oidc_admins": "root@example.org"}  # fmt: skip
AUTH_SECRETS = {"auth": {"redirect_uri": "http://127.0.0.1:8501/oauth2callback", "cookie_secret": "c" * 48,
                         "client_id": "orchard", "client_secret": "s3cret",
                         "server_metadata_url": f"{ISSUER}/.well-known/openid-configuration"}}  # fmt: skip
ANA_CLAIMS = {"sub": "ana-sub", "email": "ana@example.org", "name": "Ana Lima", "iss": ISSUER}
BOB_CLAIMS = {"sub": "bob-sub", "email": "bob@example.org", "name": "Bob Stone", "iss": ISSUER}
ROOT_CLAIMS = {"sub": "root-sub", "email": "root@example.org", "name": "Root Admin", "iss": ISSUER}
ANA = identity_from_claims(ANA_CLAIMS, issuer=ISSUER)
BOB = identity_from_claims(BOB_CLAIMS, issuer=ISSUER)
SECRET = "tag-ana-secret-plum"


@pytest.fixture
def team(isolated_env: Path) -> Any:
    """Team-mode Orchard with the samples ingested and one conversation of Ana's holding a secret."""
    orchard = app_orchard(isolated_env, model=RuleModel(), **TEAM)
    orchard.library.ingest([str(SAMPLES)], progress=False)
    chat = orchard.conversations.create(ANA.user, title=f"Plums {SECRET}")
    orchard.conversations.ask(ANA.user, chat.id, f"Hi! Remember {SECRET}").result()
    return orchard


def ana_conversation(orchard: Any) -> str:
    [chat] = orchard.conversations.list(ANA.user)
    return chat.id


@pytest.fixture
def open_team(team: Any) -> Callable[..., AppTest]:
    """``open_team(claims=None, page=None, secrets=True, **query)``: a browser session; ``claims``
    None is a visitor who has not logged in."""

    def _open(claims: dict[str, Any] | None = None, *, page: str | None = None, secrets: bool = True, **query: str) -> AppTest:
        at = AppTest.from_file(app_script(), default_timeout=30)
        at.session_state["orchard"] = team
        at.user = {**claims, "is_logged_in": True} if claims else {"is_logged_in": False}
        if secrets:
            at.secrets = {k: dict(v) for k, v in AUTH_SECRETS.items()}
        for name, value in query.items():
            at.query_params[name] = value
        at.run()
        assert not at.exception, at.exception
        if page:
            at.switch_page(page_file(page)).run()
            assert not at.exception, at.exception
        return at

    return _open


def everything_shown(at: AppTest) -> str:
    """All text of the page, the sidebar and every button label and widget label."""
    parts = [texts(at), *(b.label for b in at.button), *(t.value for t in at.title), *(h.value for h in at.header)]
    parts += [e.label for e in at.expander]
    return "\n".join(str(p) for p in parts)


def assert_nothing_readable(at: AppTest) -> None:
    shown = everything_shown(at)
    assert [b.label for b in at.button] == [f"Log in with {ISSUER.removeprefix('http://')}"]
    assert not at.chat_input and not at.sidebar.children and not at.text_input and not at.tabs
    assert SECRET not in shown and "Plums" not in shown
    assert "fruit-tree-care" not in shown and "passages" not in shown  # no document, no library figures


def test_before_login_only_the_login_button_is_drawn(open_team) -> None:
    at = open_team()
    assert_nothing_readable(at)
    assert "Log in to see your conversations and documents." in texts(at)


@pytest.mark.parametrize("page", ["chat", "library", "settings"])
def test_no_page_opens_before_login(open_team, team, page: str) -> None:
    """Neither a page's own URL nor ?user= (a name or the stored key) nor ?c= opens anything."""
    at = open_team(user=ANA.user, c=ana_conversation(team))
    at.switch_page(page_file(page)).run()
    assert not at.exception, at.exception
    assert_nothing_readable(at)
    at = open_team(user="Ana Lima")
    assert_nothing_readable(at)


def test_without_the_login_configuration_the_page_says_how_to_start(open_team) -> None:
    at = open_team(secrets=False)
    assert not at.button and not at.chat_input and not at.sidebar.children
    assert "orchard app" in at.error[0].value and SECRET not in everything_shown(at)


def test_after_login_the_user_is_the_identity(open_team, team) -> None:
    at = open_team(ANA_CLAIMS)
    sidebar = [b.label for b in at.sidebar.button]
    assert f"Plums {SECRET}" in sidebar
    assert at.sidebar.get("popover")[0].proto.popover.label == "Ana Lima"  # the name from the claims
    assert at.chat_input(key="question") is not None
    assert "ana@example.org" in "\n".join(m.value for m in at.sidebar.markdown).replace("\\", "")


def test_user_in_the_url_grants_nothing_in_team_mode(open_team, team) -> None:
    """Bob, logged in, types Ana's name, her stored key and her conversation id into the URL:
    he sees his own (empty) sidebar and a new chat, nothing of hers; ``?user=`` is dropped."""
    for who in ("Ana Lima", ANA.user, "ana@example.org"):
        at = open_team(BOB_CLAIMS, user=who, c=ana_conversation(team))
        shown = everything_shown(at) + "\n".join(b.label for b in at.sidebar.button)
        assert SECRET not in shown and "Plums" not in shown
        assert "Your conversations will appear here." in texts(at)
        assert "user" not in at.query_params and "c" not in at.query_params
    assert team.conversations.list(BOB.user) == []


def test_log_out_goes_back_to_the_login_button(open_team) -> None:
    at = open_team(ANA_CLAIMS)
    at.button(key="logout").click().run()
    assert not at.exception, at.exception
    assert at.user == {"is_logged_in": False}
    at.run()
    assert_nothing_readable(at)


def test_api_keys_are_made_shown_once_listed_and_revoked_by_their_owner(open_team, team) -> None:
    at = open_team(ANA_CLAIMS, page="settings")
    assert [t.label for t in at.tabs] == ["My preferences", "API keys"]  # not an admin: no global settings
    at.text_input(key="api_key_name").input("laptop")
    at.button(key="FormSubmitter:create_api_key-Create key").click().run()
    assert not at.exception, at.exception
    [shown] = [c.value for c in at.code]
    assert shown.startswith("orch_") and team.keys.verify(shown).user == ANA.user
    [key] = team.keys.list(ANA.user)
    assert key.name == "laptop" and any(key.id in m.value for m in at.markdown)
    at.button(key="dismiss_new_key").click().run()
    assert not at.code  # shown once: gone once dismissed, and never listed
    assert shown not in everything_shown(at)

    bob = open_team(BOB_CLAIMS, page="settings")
    assert not any(key.id in m.value for m in bob.markdown)  # Ana's key is not in Bob's list
    assert not [b for b in bob.button if b.key == f"revoke_{key.id}"]

    at.button(key=f"revoke_{key.id}").click().run()
    assert not at.exception, at.exception
    assert team.keys.verify(shown) is None and not team.keys.list(ANA.user)[0].active


def test_only_admins_change_what_everyone_depends_on(open_team) -> None:
    admin = open_team(ROOT_CLAIMS, page="settings")
    labels = {t.label for t in admin.tabs}
    assert {"Model & retrieval", "Prompts", "Constitution", "My preferences", "API keys"} <= labels
    assert "Administrator" in "\n".join(c.value for c in admin.sidebar.caption)


def test_the_library_page_lists_what_the_identity_may_read(open_team, team) -> None:
    """Shared documents for everyone; a private upload for its owner only."""
    team.library.upload([("ana-notes.md", f"# Ana's notes\n\n{SECRET} grows in row 7.\n".encode())], identity=ANA)
    bob = everything_shown(open_team(BOB_CLAIMS, page="library"))
    assert "fruit-tree-care" in bob  # the shared library (the samples)
    assert "ana-notes" not in bob and SECRET not in bob
    ana = everything_shown(open_team(ANA_CLAIMS, page="library"))
    assert "fruit-tree-care" in ana and "ana-notes" in ana


def test_personal_mode_is_unchanged(open_app, orchard) -> None:
    """No login: the name in the URL is the user, as before (the AppTest's default ``st.user``,
    an e-mail without a login, grants nothing either)."""
    chat = orchard.conversations.create("ana", title="Ana's own")
    at = open_app("ana")
    assert "Ana's own" in [b.label for b in at.sidebar.button]
    assert not [b for b in at.button if b.key == "login"]
    at = open_app(None)
    assert "Welcome to Orchard" in at.title[0].value and chat.id not in str(at.query_params)


ROOT = identity_from_claims(ROOT_CLAIMS, issuer=ISSUER, admins=TEAM["oidc_admins"])


def test_admins_read_and_download_the_audit_trail(open_team, team: Any) -> None:
    team.keys.create(user=ANA.user, name="laptop")  # recorded as key.create, in the key's own transaction
    at = open_team(ROOT_CLAIMS, page="settings")
    assert "Audit" in {t.label for t in at.tabs}
    [table] = [d for d in at.dataframe if "action" in d.value.columns]
    assert "key.create" in list(table.value["action"])  # the key's id is the target
    assert ANA.user in list(table.value["user"])
    assert len(at.get("download_button")) == 1
    assert not team.audit.entries(ROOT, action="export")  # made (and recorded) only when clicked

    at = open_team(BOB_CLAIMS, page="settings")
    assert "Audit" not in {t.label for t in at.tabs}  # not an admin: no tab, nothing read
    assert not [d for d in at.dataframe if "action" in d.value.columns]


def test_a_login_is_recorded_once_per_session(open_team, team: Any) -> None:
    at = open_team(ANA_CLAIMS)  # one run
    at.run()  # and a second in the same session
    assert not at.exception, at.exception
    logins = team.audit.entries(ROOT, action="login", user=ANA.user)
    assert len(logins) == 1 and logins[0].detail["admin"] is False
    assert team.users.get(ANA.user).name == "Ana Lima"
