"""The API over the real use cases with an :class:`~tests.api.fakes.EchoModel` (one document ingested)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.api.fakes import APPLES, EchoModel
from tests.api.helpers import LOCAL
from tests.fakes import scripted_orchard


@pytest.fixture
def echo() -> EchoModel:
    return EchoModel()


@pytest.fixture
def orchard(tmp_path: Path, echo: EchoModel):
    orchard = scripted_orchard(tmp_path / "data", llm=echo, answer_checks=False)  # the echo answers are not meant to pass them
    report = orchard.library.upload([("apples.md", APPLES)])
    assert report.files_indexed == 1
    return orchard


@pytest.fixture
def app(orchard):
    from orchard.api import create_app

    return create_app(orchard)


@pytest.fixture
def client(app):
    from fastapi.testclient import TestClient

    with TestClient(app, base_url=LOCAL) as client:
        yield client
