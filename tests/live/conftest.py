"""Live tests: a real service over the sample documents (server fixtures: tests/conftest.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


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
