"""Live tests: Orchard's real use cases over the sample documents (server fixtures: tests/conftest.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def orchard_with(embedder, data_dir: Path, **settings):
    """Orchard on real components, sharing the session's loaded embedder (``settings``: e.g. the
    ``llm_base_url`` of the session's model server)."""
    from orchard.components import Components
    from orchard.config import Settings
    from orchard.usecases import build_orchard

    config = Settings(data_dir=data_dir, **settings)
    return build_orchard(components=Components(config, embeddings=embedder))


@pytest.fixture
def live_orchard(live_server: str, embedder, tmp_path: Path):
    """Real components (embedder, store, model) over the sample documents."""
    orchard = orchard_with(embedder, tmp_path / "data", llm_base_url=live_server, llm_max_tokens=200, llm_temperature=0.0)
    report = orchard.library.ingest([str(ROOT / "samples")], progress=False)
    assert report.files_indexed == 4 and not report.files_failed
    return orchard
