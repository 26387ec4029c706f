"""ORCHARD_CHROMA_URL: the same ingestion and search against a real `chroma run` server."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.conftest import free_port, running
from tests.live.conftest import orchard_with

pytestmark = pytest.mark.chroma_server
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def chroma_url(tmp_path: Path):
    port = free_port()
    chroma = Path(sys.executable).parent / "chroma"
    url = f"http://127.0.0.1:{port}"
    command = [str(chroma), "run", "--path", str(tmp_path / "chroma-data"), "--port", str(port), "--host", "127.0.0.1"]
    with running(command, health_url=f"{url}/api/v2/heartbeat", log=tmp_path / "chroma.log"):
        yield url


def test_ingest_and_search_through_a_chroma_server(chroma_url: str, tmp_path: Path, embedder) -> None:
    def orchard():  # no model calls here
        return orchard_with(embedder, tmp_path / "data", chroma_url=chroma_url)

    library = orchard().library
    report = library.ingest([str(ROOT / "samples")], progress=False)
    assert report.files_indexed == 4 and report.chunks_total > 4
    assert not (tmp_path / "data" / "store").exists()  # nothing written to the embedded store
    hits = library.search("who coordinates the volunteers", k=3)
    assert hits[0]["source"].endswith("volunteer-notes.txt")
    again = orchard().library.ingest([str(ROOT / "samples")], progress=False)  # another Orchard, same server
    assert again.files_unchanged == 4 and again.chunks_added == 0
