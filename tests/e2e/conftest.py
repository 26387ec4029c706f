"""Browser tests: `orchard app` (the packaged Streamlit script) driven by Playwright in Debian's
chromium.

One app server per module, over the sample documents, answering with the live model. It runs
outside the checkout (no .streamlit/config.toml, no app.py: what a wheel install has). Each test
signs in under its own user name, so its conversations are its own (the app scopes history by
user); the library is shared.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import free_port, running

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
ANSWER_TIMEOUT_MS = 180_000  # a real answer on 2 busy cores


@pytest.fixture(scope="module")  # Playwright's sync API keeps an event loop running until it stops:
def browser():  # ended with this module, so later async tests can start their own
    if not Path(CHROMIUM).exists():
        pytest.fail("chromium is missing: `make test` installs it (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@dataclass
class AppServer:
    """A running ``orchard app`` and the data folder it keeps its state in."""

    data_dir: Path
    workdir: Path
    env: dict[str, str]
    url: str = ""
    _stack: ExitStack = field(default_factory=ExitStack)

    def start(self) -> None:
        port = free_port()
        command = [sys.executable, "-m", "orchard", "app", "--port", str(port), "--address", "127.0.0.1"]
        self.url = f"http://127.0.0.1:{port}"
        log = self.workdir / f"streamlit-{port}.log"
        self._stack.enter_context(
            running(command, health_url=f"{self.url}/_stcore/health", log=log, env=self.env, cwd=self.workdir)
        )

    def stop(self) -> None:
        self._stack.close()
        self._stack = ExitStack()

    def restart(self) -> None:
        """Stop the server process (SIGTERM) and start a new one on the same data (a server restart)."""
        self.stop()
        self.start()

    def orchard(self) -> Any:
        """Orchard on the same data folder, to look at what the app stored (no model use)."""
        from orchard.config import Settings
        from orchard.usecases import build_orchard
        from tests.fakes import AlwaysUp

        return build_orchard(Settings(data_dir=self.data_dir), model_server=AlwaysUp())

    def seed_answer(self, user: str, question: str, answer: str, meta: dict[str, Any]) -> tuple[str, int]:
        """A stored question and answer (conversation id, answer id), written to the state
        database directly: a test's setup, without the model."""
        from orchard.components import Components
        from orchard.config import Settings

        turns = Components(Settings(data_dir=self.data_dir)).conversations
        chat = turns.create(user)
        turns.add_message(user, chat.id, "user", question)
        return chat.id, turns.add_message(user, chat.id, "assistant", answer, meta=meta).id


@pytest.fixture(scope="module")
def app_server(tmp_path_factory: pytest.TempPathFactory, live_server: str, embedder) -> Iterator[AppServer]:
    """The real app on a free port, over the sample documents, answering with the live model."""
    from orchard.components import Components
    from orchard.config import Settings
    from orchard.usecases import build_orchard
    from tests.fakes import AlwaysUp

    workdir = tmp_path_factory.mktemp("app")
    data = workdir / "data"
    library = build_orchard(components=Components(Settings(data_dir=data), embeddings=embedder), model_server=AlwaysUp()).library
    library.ingest(["samples"], progress=False, base=ROOT)  # read below ROOT; sources read samples/NAME
    library.components.close()  # an embedded store belongs to one process: hand it to the app
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("ORCHARD_")},
        "ORCHARD_DATA_DIR": str(data),
        "ORCHARD_LLM_BASE_URL": live_server,
        "ORCHARD_LLM_TEMPERATURE": "0",
        "ORCHARD_LLM_MAX_TOKENS": "120",
        "ORCHARD_TOP_K": "3",  # fewer passages to read: faster answers on a CPU
    }
    server = AppServer(data_dir=data, workdir=workdir, env=env)
    server.start()
    yield server
    server.stop()


def screenshot_dir(tmp_path: Path) -> Path:
    """``SCREENSHOT_DIR=docs`` refreshes the screenshots kept in docs/; tests never write there otherwise."""
    return Path(os.environ.get("SCREENSHOT_DIR") or tmp_path)
