"""Live tests: the real embedded llama.cpp server, started once for the session."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from orchard import server
from orchard.model import PRESETS, assemble_model
from tests.conftest import USER_DATA_DIR

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def model_path() -> Path:
    return assemble_model(PRESETS["qwen-0.5b"], cache_dir=USER_DATA_DIR / "cache")


@pytest.fixture(scope="session")
def live_server(model_path: Path, tmp_path_factory: pytest.TempPathFactory):
    """Base URL of a real llama.cpp server on a free port (stopped at the end of the session)."""
    port = _free_port()
    base_url = f"http://127.0.0.1:{port}/v1"
    command = server.llamacpp_command(
        model_path=model_path, served_name="qwen2.5-coder-0.5b-instruct", port=port, threads=server.default_threads()
    )
    log = tmp_path_factory.mktemp("server") / "model-server.log"
    handle = server.start_server(command, base_url=base_url, log=log, timeout=180)
    yield base_url
    handle.stop()


@pytest.fixture(scope="session")
def embedder():
    from orchard.embeddings import MiniLMEmbeddings

    return MiniLMEmbeddings()


@pytest.fixture
def live_service(live_server: str, embedder, tmp_path: Path):
    """A real service (real embedder, real store, real model) over the sample documents."""
    from orchard.config import Settings
    from orchard.service import ChatService

    settings = Settings(llm_base_url=live_server, data_dir=tmp_path / "data", llm_max_tokens=200, llm_temperature=0.0)
    service = ChatService(settings)
    service.__dict__["embeddings"] = embedder  # share the loaded model across tests
    report = service.ingest([str(ROOT / "samples")], progress=False)
    assert report.files_indexed == 4 and not report.files_failed
    return service
