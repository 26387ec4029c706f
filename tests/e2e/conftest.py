"""Browser tests: `streamlit run app.py` driven by Playwright in Debian's chromium.

One app server per module, over the sample documents, answering with the live model. Each test
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
    """A running ``streamlit run app.py`` and the data folder it keeps its state in."""

    data_dir: Path
    workdir: Path
    env: dict[str, str]
    url: str = ""
    _stack: ExitStack = field(default_factory=ExitStack)

    def start(self) -> None:
        port = free_port()
        command = [
            sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"), "--server.port", str(port),
            "--server.address", "127.0.0.1", "--server.headless", "true",
            "--server.fileWatcherType", "none", "--browser.gatherUsageStats", "false",
        ]  # fmt: skip
        self.url = f"http://127.0.0.1:{port}"
        log = self.workdir / f"streamlit-{port}.log"
        self._stack.enter_context(
            running(command, health_url=f"{self.url}/_stcore/health", log=log, env=self.env, cwd=self.workdir)
        )

    def stop(self) -> None:
        self._stack.close()
        self._stack = ExitStack()

    def restart(self) -> None:
        """Stop the server process and start a new one on the same data (a server restart)."""
        self.stop()
        self.start()

    def service(self) -> Any:
        """A service on the same data folder, to look at what the app stored (no model use)."""
        from orchard.config import Settings
        from orchard.service import ChatService

        return ChatService(Settings(data_dir=self.data_dir))


@pytest.fixture(scope="module")
def app_server(tmp_path_factory: pytest.TempPathFactory, live_server: str, embedder) -> Iterator[AppServer]:
    """The real app on a free port, over the sample documents, answering with the live model."""
    from orchard.config import Settings
    from orchard.service import ChatService

    workdir = tmp_path_factory.mktemp("app")
    data = workdir / "data"
    service = ChatService(Settings(data_dir=data))
    service.__dict__["embeddings"] = embedder
    service.ingest(["samples"], progress=False, base=ROOT)  # sources read samples/NAME
    shutil.copytree(ROOT / ".streamlit", workdir / ".streamlit")  # the app's theme and toolbar
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
