"""The service starts the embedded server when nothing answers at the default URL."""

from __future__ import annotations

import time

import pytest

from orchard import config, server
from orchard.config import Settings
from orchard.service import ChatService
from tests.conftest import USER_DATA_DIR, free_port

pytestmark = pytest.mark.live


def test_default_url_starts_the_embedded_server_and_says_so(monkeypatch: pytest.MonkeyPatch, tmp_path, model_path) -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    monkeypatch.setattr(config, "DEFAULT_LLM_BASE_URL", url)  # the "default" URL, on a free port
    messages: list[str] = []
    settings = Settings(llm_base_url=url, data_dir=tmp_path / "data", cache_dir=USER_DATA_DIR / "cache")
    service = ChatService(settings, notify=messages.append)
    assert not server.is_serving(url)
    service.ensure_model_server()
    try:
        assert server.is_serving(url)
        assert "starting the embedded one" in messages[0] and "orchard stop" in messages[0]
        reply = service.llm.invoke("Say OK.")
        assert reply.content.strip()
        service.ensure_model_server()  # already up: nothing more is started
        assert len(messages) == 2
    finally:
        pidfile = settings.data_dir / "run" / "model-server.pid"
        assert server.stop_pidfile(pidfile)
    deadline = time.monotonic() + 15
    while server.is_serving(url) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not server.is_serving(url)
