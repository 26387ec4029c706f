"""Fixtures for the app's AppTest suite: a scripted chat service and a way to open a page."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from streamlit.testing.v1 import AppTest

from tests.app.fakes import FakeChatService

ROOT = Path(__file__).resolve().parents[2]
APP = str(ROOT / "app.py")
SAMPLES = ROOT / "samples"


@pytest.fixture
def service(isolated_env: Path) -> FakeChatService:
    """The real service on this test's data folder, with the model side scripted."""
    return FakeChatService.at(isolated_env)


@pytest.fixture
def library(service: FakeChatService) -> FakeChatService:
    """The service with the sample documents ingested."""
    service.ingest([str(SAMPLES)], progress=False)
    return service


@pytest.fixture
def open_app(service: FakeChatService) -> Callable[..., AppTest]:
    """``open_app(user="ana", page=None, c=None)``: a fresh browser session (a reload) on a page."""

    def _open(user: str | None = "ana", *, page: str | None = None, c: str | None = None, run: bool = True, **params: str) -> AppTest:
        at = AppTest.from_file(APP, default_timeout=30)
        at.session_state["chat_service"] = service
        for name, value in {"user": user, "c": c, **params}.items():
            if value:
                at.query_params[name] = value
        if run:
            at.run()
            assert not at.exception, at.exception
            if page:
                at.switch_page(f"ui/pages/{page}.py").run()
                assert not at.exception, at.exception
        return at

    return _open
