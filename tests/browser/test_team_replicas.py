"""Team mode as deployed: two Streamlit replicas (``orchard app``) behind nginx with sticky
sessions, one Chroma server and one state database for both, login through a real OpenID provider
in a real browser — a person stays logged in across reloads wherever nginx sends them, and the
next person sees nothing of theirs.

Real parts only: Debian's nginx with ``deploy/nginx/streamlit.conf.template``, ``chroma run``,
``oidc-provider-mock``, chromium, the project's launcher; both replicas share
``ORCHARD_OIDC_COOKIE_SECRET`` and the public redirect URI (nginx's), as ``docs/team-login.md``
tells a deployer to.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.browser.conftest import TeamApp
from tests.browser.test_team_login import STEP_MS, app_text, log_in, log_out
from tests.conftest import free_port
from tests.deployment.harness import BIN, Deployment, Group, NginxSticky, Service, base_env, chroma_server

pytestmark = [pytest.mark.e2e, pytest.mark.enable_socket]

SECRET = "tag-alice-pear-secret"


@pytest.fixture(scope="module")
def replicas(tmp_path_factory: pytest.TempPathFactory, oidc_provider: str) -> Iterator[tuple[TeamApp, list[str]]]:
    """nginx's URL (as a :class:`TeamApp`) and the two replicas' addresses."""
    workdir = tmp_path_factory.mktemp("team-replicas")
    chroma = chroma_server(workdir)
    ports = [free_port(), free_port()]
    addresses = [f"127.0.0.1:{p}" for p in ports]
    nginx, url = NginxSticky.service(workdir, addresses)
    env = base_env(
        ORCHARD_DATA_DIR=str(workdir / "data"),  # one state database (SQLite in WAL mode) for both
        ORCHARD_CHROMA_URL=chroma.url,  # an embedded store belongs to one process
        ORCHARD_AUTH="oidc",
        ORCHARD_OIDC_ISSUER=oidc_provider,
        ORCHARD_OIDC_CLIENT_ID="orchard-test",
        ORCHARD_OIDC_CLIENT_SECRET="not-a-real-secret",
        ORCHARD_OIDC_REDIRECT_URI=f"{url}/oauth2callback",  # the public URL: a login may come back to either
        ORCHARD_OIDC_COOKIE_SECRET=secrets.token_urlsafe(48),  # the same on every replica
        ORCHARD_LLM_BASE_URL=f"http://127.0.0.1:{free_port()}/v1",  # no model: nothing here asks one
    )
    apps = Group([Service(f"app-{i}", [str(BIN / "orchard"), "app", "--port", str(port), "--address", "127.0.0.1"],
                          f"http://127.0.0.1:{port}/_stcore/health", workdir / "logs" / f"app-{i}.log", env=env, cwd=workdir,
                          timeout=120) for i, port in enumerate(ports, 1)])  # fmt: skip
    try:
        with Deployment(workdir) as deployment:
            deployment.add(apps)
            deployment.add(nginx)
            yield TeamApp(url=url, issuer=oidc_provider, data_dir=workdir / "data"), addresses
            assert not deployment.left_running(), deployment.left_running()
    finally:
        chroma.stop()


def replica_cookie(page: Any) -> str | None:
    return next((c["value"] for c in page.context.cookies() if c["name"] == "orchard_replica"), None)


def test_a_login_holds_across_replicas_and_the_next_person_sees_nothing(browser: Any, replicas: tuple[TeamApp, list[str]]) -> None:
    app, addresses = replicas
    chat_id = app.seed_conversation("alice", "Pear plans", f"Our grafting day is {SECRET}")
    alice = browser.new_context(viewport={"width": 1300, "height": 900})
    page = alice.new_page()
    log_in(page, app, "alice")
    page.get_by_test_id("stSidebar").get_by_text("Pear plans").wait_for(timeout=STEP_MS)
    sticky = replica_cookie(page)
    assert sticky, "nginx set no orchard_replica cookie: sessions would not stick"
    for _ in range(3):  # reloads: the same replica (the cookie), still logged in
        page.reload()
        page.get_by_test_id("stSidebar").get_by_text("Alice Apple").wait_for(timeout=STEP_MS)
        assert replica_cookie(page) == sticky
    page.goto(f"{app.url}/?c={chat_id}")
    page.get_by_text(SECRET).wait_for(timeout=STEP_MS)  # the control: her own conversation opens

    # A login cookie signed on one replica is honoured by the other (the shared cookie secret):
    # the same browser, routed to the other replica by another sticky value, is still Alice.
    home = _replica_of(sticky, app.url)
    assert home in addresses
    other = next(v for v in (f"x{n}" for n in range(64)) if _replica_of(v, app.url) != home)
    alice.add_cookies([{"name": "orchard_replica", "value": other, "url": app.url}])
    page.goto(app.url)
    page.get_by_test_id("stSidebar").get_by_text("Alice Apple").wait_for(timeout=STEP_MS)
    page.get_by_test_id("stSidebar").get_by_text("Pear plans").wait_for(timeout=STEP_MS)
    log_out(page, "Alice Apple")
    alice.close()

    bob = browser.new_context(viewport={"width": 1300, "height": 900})
    page = bob.new_page()
    log_in(page, app, "bob")
    page.get_by_test_id("stSidebar").get_by_text("Your conversations will appear here.").wait_for(timeout=STEP_MS)
    for url in (f"{app.url}/?c={chat_id}", f"{app.url}/?user={app.user_key('alice')}&c={chat_id}"):
        page.goto(url)
        page.get_by_test_id("stSidebar").get_by_text("Bob Pear").wait_for(timeout=STEP_MS)
        page.get_by_test_id("stChatInput").wait_for(timeout=STEP_MS)
        page.wait_for_timeout(500)
        shown = app_text(page)
        assert SECRET not in shown and "Pear plans" not in shown and "Alice" not in shown, shown[:500]
    bob.close()


def _replica_of(cookie: str, url: str) -> str:
    """The replica nginx sends a browser with this ``orchard_replica`` cookie to (its
    ``X-Orchard-Replica`` header)."""
    reply = httpx.get(f"{url}/_stcore/health", cookies={"orchard_replica": cookie}, timeout=30, trust_env=False)
    return reply.headers["x-orchard-replica"]
