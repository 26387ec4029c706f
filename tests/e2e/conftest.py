"""Browser tests: `streamlit run app.py` driven by Playwright in Debian's chromium."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

from tests.conftest import free_port, running

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip


@pytest.fixture(scope="module")  # Playwright's sync API keeps an event loop running until it stops:
def browser():  # ended with this module, so later async tests can start their own
    if not Path(CHROMIUM).exists():
        pytest.fail("chromium is missing: `make test` installs it (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def streamlit_app(tmp_path: Path, live_server: str, embedder):
    """The real app on a free port, over the sample documents, answering with the live model."""
    from orchard.config import Settings
    from orchard.service import ChatService

    data = tmp_path / "data"
    service = ChatService(Settings(data_dir=data))
    service.__dict__["embeddings"] = embedder
    service.ingest([str(ROOT / "samples")], progress=False)
    port = free_port()
    env = {
        **os.environ,
        "ORCHARD_DATA_DIR": str(data),
        "ORCHARD_LLM_BASE_URL": live_server,
        "ORCHARD_LLM_TEMPERATURE": "0",
        "ORCHARD_LLM_MAX_TOKENS": "120",
    }
    command = [
        sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"), "--server.port", str(port),
        "--server.address", "127.0.0.1", "--server.headless", "true", "--server.fileWatcherType", "none",
        "--browser.gatherUsageStats", "false",
    ]  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    with running(command, health_url=f"{url}/_stcore/health", log=tmp_path / "streamlit.log", env=env, cwd=tmp_path):
        yield url
