"""Team mode in a real browser: Debian's chromium (Playwright), a real OpenID provider on loopback
(``oidc-provider-mock``), and the app started by the project's own launcher (``orchard app``) in
team mode against it. No model is needed: the conversations the tests look for are seeded in the
state database, and the model endpoint points at a port where nothing listens."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import free_port, running
from tests.e2e.conftest import browser  # noqa: F401  (the one chromium fixture, Debian's browser)

#: The people the provider offers on its login form (its "predefined users" buttons, by subject).
PEOPLE = {
    "alice": {"sub": "alice", "email": "alice@example.org", "email_verified": True, "name": "Alice Apple"},
    "bob": {"sub": "bob", "email": "bob@example.org", "email_verified": True, "name": "Bob Pear"},
}


@pytest.fixture(scope="module")
def oidc_provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The issuer URL of a real OpenID provider on a free loopback port (``oidc-provider-mock``)."""
    port = free_port()
    issuer = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "oidc_provider_mock", "--port", str(port)]
    for claims in PEOPLE.values():
        command += ["--user-claims", json.dumps(claims)]
    log = tmp_path_factory.mktemp("oidc") / "provider.log"
    with running(command, health_url=f"{issuer}/.well-known/openid-configuration", log=log, timeout=30):
        yield issuer


@dataclass
class TeamApp:
    url: str
    issuer: str
    data_dir: Path

    def user_key(self, subject: str) -> str:
        """The stored key of the person with ``subject`` at this issuer (what the app keys their data by)."""
        from orchard.identity import oidc_user_key

        return oidc_user_key(self.issuer, subject)

    def seed_conversation(self, subject: str, title: str, question: str) -> str:
        """A stored conversation with one question, written to the state database directly (a
        test's setup, without a model); its id."""
        from orchard.components import Components
        from orchard.config import Settings

        turns = Components(Settings(data_dir=self.data_dir)).conversations
        chat = turns.create(self.user_key(subject), title=title)
        turns.add_message(self.user_key(subject), chat.id, "user", question)
        return chat.id


@pytest.fixture(scope="module")
def team_app(tmp_path_factory: pytest.TempPathFactory, oidc_provider: str) -> Iterator[TeamApp]:
    """``orchard app`` in team mode on a free port, logging in with ``oidc_provider``."""
    workdir = tmp_path_factory.mktemp("team-app")
    data, port, nothing = workdir / "data", free_port(), free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("ORCHARD_")},
        "ORCHARD_DATA_DIR": str(data),
        "ORCHARD_AUTH": "oidc",
        "ORCHARD_OIDC_ISSUER": oidc_provider,
        "ORCHARD_OIDC_CLIENT_ID": "orchard-test",
        "ORCHARD_OIDC_CLIENT_SECRET": "not-a-real-secret",
        "ORCHARD_LLM_BASE_URL": f"http://127.0.0.1:{nothing}/v1",  # no model: nothing here asks one
        "HF_HUB_OFFLINE": "1",
    }
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "orchard", "app", "--port", str(port), "--address", "127.0.0.1"]
    with running(command, health_url=f"{url}/_stcore/health", log=workdir / "app.log", env=env, cwd=workdir, timeout=90):
        yield TeamApp(url=url, issuer=oidc_provider, data_dir=data)
