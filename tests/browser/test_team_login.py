"""Team mode, as a person sees it: log in with the OpenID provider, see your own name and
conversations, log out; the next person sees nothing of yours — not in the sidebar, not by
opening your conversation's URL.

Real parts only: ``orchard app`` (the launcher writes Streamlit's login configuration), Streamlit's
``st.login`` (Authlib), ``oidc-provider-mock`` (authorization code flow, signed ID tokens, its own
login and end-session forms), chromium.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.browser.conftest import PEOPLE, TeamApp

pytestmark = [pytest.mark.e2e]

STEP_MS = 30_000
SECRET = "tag-alice-cider-secret"


def log_in(page: Any, app: TeamApp, subject: str) -> None:
    """From the app's front door through the provider's form, back to the app as ``subject``."""
    page.goto(app.url)
    button = page.get_by_role("button", name=re.compile(r"Log in with 127\.0\.0\.1"))
    button.wait_for(timeout=STEP_MS)
    button.click()
    page.wait_for_url(re.compile(r"/oauth2/authorize"), timeout=STEP_MS)
    page.get_by_role("button", name=subject, exact=True).click()  # the provider's predefined user
    page.wait_for_url(re.compile(re.escape(app.url)), timeout=STEP_MS)
    page.get_by_test_id("stSidebar").get_by_text(PEOPLE[subject]["name"]).wait_for(timeout=STEP_MS)


def log_out(page: Any, name: str) -> None:
    page.get_by_test_id("stSidebar").get_by_text(name).click()  # the account popover
    page.get_by_role("button", name=re.compile("Log out")).click()
    page.wait_for_url(re.compile(r"/oauth2/end_session"), timeout=STEP_MS)  # the provider's end-session form
    page.get_by_role("button", name="End session").click()
    page.get_by_role("button", name=re.compile("Log in with")).wait_for(timeout=STEP_MS)


def app_text(page: Any) -> str:
    return page.get_by_test_id("stApp").inner_text()


def test_each_person_logs_in_and_sees_only_their_own(browser: Any, team_app: TeamApp) -> None:
    chat_id = team_app.seed_conversation("alice", "Cider plans", f"Our press date is {SECRET}")
    page = browser.new_page(viewport={"width": 1300, "height": 900})

    page.goto(f"{team_app.url}/?user={team_app.user_key('alice')}&c={chat_id}")  # before login: only the button
    page.get_by_role("button", name=re.compile("Log in with")).wait_for(timeout=STEP_MS)
    page.wait_for_timeout(500)
    before = app_text(page)
    assert "Cider plans" not in before and SECRET not in before
    assert page.get_by_test_id("stChatInput").count() == 0 and page.get_by_test_id("stSidebar").count() == 0

    log_in(page, team_app, "alice")
    sidebar = page.get_by_test_id("stSidebar")
    sidebar.get_by_text("Cider plans").wait_for(timeout=STEP_MS)  # her conversation, keyed by her identity
    page.goto(f"{team_app.url}/?c={chat_id}")
    page.get_by_text(SECRET).wait_for(timeout=STEP_MS)  # the control: the URL opens it for its owner
    log_out(page, "Alice Apple")
    assert SECRET not in app_text(page)

    log_in(page, team_app, "bob")
    sidebar = page.get_by_test_id("stSidebar")
    sidebar.get_by_text("Your conversations will appear here.").wait_for(timeout=STEP_MS)
    assert "Cider plans" not in sidebar.inner_text() and "Alice" not in sidebar.inner_text()
    for url in (f"{team_app.url}/?c={chat_id}", f"{team_app.url}/?user={team_app.user_key('alice')}&c={chat_id}"):
        page.goto(url)
        page.get_by_test_id("stSidebar").get_by_text("Bob Pear").wait_for(timeout=STEP_MS)
        page.get_by_test_id("stChatInput").wait_for(timeout=STEP_MS)
        page.wait_for_timeout(500)  # the page has settled (no rerun pending)
        shown = app_text(page)
        assert SECRET not in shown and "Cider plans" not in shown and "Alice" not in shown, shown[:500]
        assert "c=" not in page.url and "user=" not in page.url
    page.close()
