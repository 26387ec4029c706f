"""Fixtures for the app's AppTest suite: the real Orchard on a rule-answering model, and a way to
open a page of the packaged Streamlit script."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from streamlit.testing.v1 import AppTest

from tests.app.fakes import SAMPLES, RuleModel, app_orchard
from tests.app.helpers import page as page_file


def app_script() -> str:
    """The script ``orchard app`` serves (inside the installed package, not the checkout's app.py)."""
    from orchard.launch import app_script

    return str(app_script())


@pytest.fixture
def model() -> RuleModel:
    return RuleModel()


@pytest.fixture
def orchard(isolated_env: Path, model: RuleModel) -> Any:
    """The real use cases on this test's data folder, with the model answering by rule."""
    return app_orchard(isolated_env, model=model)


@pytest.fixture
def library(orchard: Any) -> Any:
    """Orchard with the sample documents ingested."""
    orchard.library.ingest([str(SAMPLES)], progress=False)
    return orchard


@pytest.fixture
def open_app(orchard: Any) -> Callable[..., AppTest]:
    """``open_app(user="ana", page=None, c=None)``: a fresh browser session (a reload) on a page."""

    def _open(user: str | None = "ana", *, page: str | None = None, c: str | None = None, run: bool = True, **params: str) -> AppTest:
        at = AppTest.from_file(app_script(), default_timeout=30)
        at.session_state["orchard"] = orchard
        for name, value in {"user": user, "c": c, **params}.items():
            if value:
                at.query_params[name] = value
        if run:
            at.run()
            assert not at.exception, at.exception
            if page:
                at.switch_page(page_file(page)).run()
                assert not at.exception, at.exception
        return at

    return _open
