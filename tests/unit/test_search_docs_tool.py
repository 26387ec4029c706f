"""The search_docs tool: numbered passages for the model, source records as the artifact."""

from __future__ import annotations

from pathlib import Path

import pytest
from langchain_tests.integration_tests import ToolsIntegrationTests
from langchain_tests.unit_tests import ToolsUnitTests

from orchard.ingest import ingest
from orchard.retriever import HybridRetriever
from orchard.store import DocumentStore, make_chroma_client
from orchard.tools.base import run_tool
from orchard.tools.search_docs import SearchDocsTool
from tests.fakes import HashEmbeddings


def library(tmp_path: Path) -> HybridRetriever:
    docs = tmp_path / "docs"
    docs.mkdir(exist_ok=True)
    (docs / "care.md").write_text("# Care\n\n## Pruning\n\nPrune apple trees in late winter, before the buds open.\n")
    (docs / "notes.txt").write_text("The pressing day is in the second week of October.\n")
    store = DocumentStore(client=make_chroma_client(path=tmp_path / "store"), collection="docs", embeddings=HashEmbeddings())
    ingest([docs], store=store, progress=False)
    return HybridRetriever(store=store, k=4)


def test_passages_are_numbered_with_their_source_and_records_travel_as_the_artifact(tmp_path: Path) -> None:
    tool = SearchDocsTool(retriever=library(tmp_path))
    message = tool.invoke({"type": "tool_call", "id": "1", "name": "search_docs", "args": {"query": "when to prune apple trees"}})
    assert message.content.startswith("[1] (")
    assert "Prune apple trees in late winter" in message.content
    first = message.artifact[0]
    assert first["n"] == 1 and first["source"].endswith("care.md") and first["section"] == "Pruning"


def test_an_empty_query_is_an_error_the_model_can_read(tmp_path: Path) -> None:
    assert run_tool(SearchDocsTool(retriever=library(tmp_path)), {"query": "  "}) == {
        "ok": False, "output": "", "error": "error: the query is empty: say what to look for"
    }  # fmt: skip


class _Params:
    @pytest.fixture(autouse=True)
    def _library(self, tmp_path: Path) -> None:
        self.retriever = library(tmp_path)

    @property
    def tool_constructor(self) -> type[SearchDocsTool]:
        return SearchDocsTool

    @property
    def tool_constructor_params(self) -> dict:
        return {"retriever": self.retriever}

    @property
    def tool_invoke_params_example(self) -> dict:
        return {"query": "pressing day"}


class TestSearchDocsToolUnit(_Params, ToolsUnitTests):
    pass


class TestSearchDocsToolIntegration(_Params, ToolsIntegrationTests):
    pass
