"""``search_docs``: the hybrid retriever as a tool, returning numbered, cited passages.

The model sees the passages as text (``[1] (source — section) ...``, the format of the RAG chain);
the structured source records travel alongside as the tool message's artifact, so the agent's
answer can list its sources the way a RAG answer does.

It searches the retriever it is given and nothing else: in team mode that is the asker's view
(:func:`orchard.retriever.restricted` over their libraries, made per request by
:class:`~orchard.usecases.answering.Answering`), so a query — whatever the model or a document
told it to look for — never reaches another user's private library.
"""

from __future__ import annotations

from typing import Any

from langchain_core.callbacks import CallbackManagerForToolRun
from langchain_core.retrievers import BaseRetriever
from langchain_core.tools import BaseTool
from pydantic import BaseModel, Field

from orchard.chains.rag import fit_context, format_context, source_record
from orchard.tools.base import ToolFailed, error_text, validation_text


class SearchDocsInput(BaseModel):
    query: str = Field(description="What to look for in the user's documents, in a few words.")


class SearchDocsTool(BaseTool):
    """Search the user's documents (hybrid BM25 + dense retrieval)."""

    name: str = "search_docs"
    description: str = (
        "Search the user's documents and return the most relevant passages, numbered [1], [2]... "
        "with their file and section. Use it for questions the documents answer."
    )
    args_schema: type[BaseModel] = SearchDocsInput
    response_format: str = "content_and_artifact"
    handle_tool_error: Any = error_text
    handle_validation_error: Any = validation_text

    retriever: BaseRetriever
    k: int = 4
    max_chars: int = 2400

    def _run(self, query: str, run_manager: CallbackManagerForToolRun | None = None) -> tuple[str, list[dict[str, Any]]]:
        if not query.strip():
            raise ToolFailed("the query is empty: say what to look for")
        docs = fit_context(self.retriever.invoke(query, k=self.k), self.max_chars)
        if not docs:
            return "No passage in the documents matches this query.", []
        return format_context(docs), [source_record(n, d) for n, d in enumerate(docs, start=1)]
