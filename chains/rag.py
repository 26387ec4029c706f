"""The cited RAG chain: condense the follow-up, retrieve, answer with inline citations, stream.

Input: ``{"question": str, "history": [messages or (role, text) pairs]}`` (history optional).

Output (``invoke``), and the same keys spread over chunks when streaming (``answer`` arrives token
by token; ``question`` and ``sources`` come first, ``grounded`` and ``cited`` last)::

    {"question": "standalone question", "answer": "... [1] ...",
     "sources": [{"n": 1, "source": "library/json.html", "section": "...", "text": "...", ...}],
     "cited": [1], "grounded": True}

When no retrieved chunk is relevant enough (best cosine similarity below ``min_relevance``) the
chain does not call the model: it answers :data:`NO_ANSWER`, with ``grounded: False``.

Example::

    >>> chain = build_rag_chain(llm=ChatOpenAI(base_url=...), retriever=retriever)  # doctest: +SKIP
    >>> for chunk in chain.stream({"question": "How do I parse JSON?"}):  # doctest: +SKIP
    ...     print(chunk.get("answer", ""), end="")
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from typing import Any

from langchain_core.documents import Document
from langchain_core.language_models import BaseChatModel
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.retrievers import BaseRetriever
from langchain_core.runnables import Runnable, RunnableConfig, RunnableGenerator, RunnableLambda
from langchain_core.runnables.utils import AddableDict

from orchard.chains.citations import StreamingCiter
from orchard.chains.condense import as_messages

NO_ANSWER = "The documents do not answer this question."
_CITATION = re.compile(r"\[(\d{1,2})\]")
def format_context(docs: list[Document]) -> str:
    """Number the passages the way the answer must cite them: ``[1] (source — section)``."""
    blocks = []
    for n, doc in enumerate(docs, start=1):
        where = doc.metadata.get("source", "?")
        section = doc.metadata.get("section") or doc.metadata.get("title")
        if section:
            where += f" — {section}"
        blocks.append(f"[{n}] ({where})\n{doc.page_content}")
    return "\n\n".join(blocks)


def source_record(n: int, doc: Document) -> dict[str, Any]:
    meta = doc.metadata
    record = {
        "n": n,
        "source": meta.get("source", ""),
        "title": meta.get("title", ""),
        "section": meta.get("section", ""),
        "text": doc.page_content,
        "score": meta.get("score"),
        "relevance": meta.get("dense_score"),
        "chunk_id": meta.get("chunk_id") or doc.id,
    }
    for key in ("page", "rows"):
        if key in meta:
            record[key] = meta[key]
    return record


def cited_numbers(answer: str, count: int) -> list[int]:
    """Citation numbers used in ``answer`` that point at one of ``count`` sources, in order."""
    seen: list[int] = []
    for match in _CITATION.finditer(answer):
        n = int(match.group(1))
        if 1 <= n <= count and n not in seen:
            seen.append(n)
    return seen


def fit_context(docs: list[Document], max_chars: int) -> list[Document]:
    """The best-ranked documents whose text fits in ``max_chars`` (at least one).

    On a CPU the model reads its prompt at ~60-100 tokens/s (measured), so every passage costs
    seconds before the first token: the budget bounds that wait.
    """
    kept: list[Document] = []
    used = 0
    for doc in docs:
        if kept and used + len(doc.page_content) > max_chars:
            break
        kept.append(doc)
        used += len(doc.page_content)
    return kept


def is_refusal(answer: str) -> bool:
    return "do not answer this question" in answer.lower() or "don't answer this question" in answer.lower()


def build_rag_chain(
    *,
    llm: BaseChatModel,
    retriever: BaseRetriever,
    answer_prompt: ChatPromptTemplate | None = None,
    condense_prompt: ChatPromptTemplate | None = None,
    min_relevance: float = 0.3,
    max_context_chars: int = 2400,
    attribute_citations: bool = True,
) -> Runnable:
    """Build the cited RAG chain (see the module docstring for input and output).

    Args:
        llm: any chat model (``ChatOpenAI(base_url=...)`` for a local server).
        retriever: returns Documents; ``metadata["dense_score"]`` (cosine similarity) is used to
            judge relevance when present.
        answer_prompt: needs ``context``, ``question`` and a ``history`` placeholder (default: the
            packaged ``rag_answer`` prompt).
        condense_prompt: needs ``history_text`` and ``question`` (default: ``condense_question``).
        min_relevance: below this best similarity the documents are taken not to answer.
        max_context_chars: passages given to the model, best first, up to this many characters.
        attribute_citations: add ``[n]`` to answer sentences the model left uncited, matched to
            the source that supports them (see :mod:`chains.citations`).
    """
    from orchard.chains.condense import build_condense_chain
    from orchard.prompts import load_prompt

    answer_prompt = answer_prompt or load_prompt("rag_answer")
    condense = build_condense_chain(llm=llm, prompt=condense_prompt)
    answer_chain = (answer_prompt | llm | StrOutputParser()).with_config(run_name="rag_answer")

    def prepare(inputs: dict[str, Any], config: RunnableConfig) -> dict[str, Any]:
        question = str(inputs["question"]).strip()
        history = as_messages(inputs.get("history"))
        standalone = condense.invoke({"question": question, "history": history}, config) if history else question
        docs = retriever.invoke(standalone, config)
        scores = [d.metadata["dense_score"] for d in docs if "dense_score" in d.metadata]
        relevant = bool(docs) and (not scores or max(scores) >= min_relevance)
        docs = fit_context(docs, max_context_chars) if relevant else []
        return {"question": question, "standalone": standalone, "history": history, "docs": docs}

    def _head(prepared: dict[str, Any]) -> dict[str, Any]:
        sources = [source_record(n, d) for n, d in enumerate(prepared["docs"], start=1)]
        return {"question": prepared["standalone"], "sources": sources}

    def _answer_input(prepared: dict[str, Any]) -> dict[str, Any]:
        return {"context": format_context(prepared["docs"]), "question": prepared["question"], "history": prepared["history"]}

    def _citer(prepared: dict[str, Any]) -> StreamingCiter:
        return StreamingCiter([d.page_content for d in prepared["docs"]])

    def _tail(answer: str, citer: StreamingCiter | None) -> dict[str, Any]:
        if citer is None:
            return {"cited": [], "grounded": False}
        if not attribute_citations:
            cited = cited_numbers(answer, len(citer.sources))
            return {"cited": cited, "grounded": not is_refusal(answer)}
        return {"cited": citer.cited, "grounded": citer.supported > 0 and not is_refusal(answer)}

    def _pieces(token: str, citer: StreamingCiter) -> list[str]:
        return citer.feed(token) if attribute_citations else [token]

    def stream_answer(items: Iterator[dict[str, Any]], config: RunnableConfig) -> Iterator[dict[str, Any]]:
        for prepared in items:
            yield AddableDict(_head(prepared))
            if not prepared["docs"]:
                yield AddableDict({"answer": NO_ANSWER})
                yield AddableDict(_tail(NO_ANSWER, None))
                continue
            citer, parts = _citer(prepared), []
            for token in answer_chain.stream(_answer_input(prepared), config):
                for piece in _pieces(token, citer):
                    parts.append(piece)
                    yield AddableDict({"answer": piece})
            for piece in citer.finish() if attribute_citations else []:
                parts.append(piece)
                yield AddableDict({"answer": piece})
            yield AddableDict(_tail("".join(parts), citer))

    async def astream_answer(items: AsyncIterator[dict[str, Any]], config: RunnableConfig) -> AsyncIterator[dict[str, Any]]:
        async for prepared in items:
            yield AddableDict(_head(prepared))
            if not prepared["docs"]:
                yield AddableDict({"answer": NO_ANSWER})
                yield AddableDict(_tail(NO_ANSWER, None))
                continue
            citer, parts = _citer(prepared), []
            async for token in answer_chain.astream(_answer_input(prepared), config):
                for piece in _pieces(token, citer):
                    parts.append(piece)
                    yield AddableDict({"answer": piece})
            for piece in citer.finish() if attribute_citations else []:
                parts.append(piece)
                yield AddableDict({"answer": piece})
            yield AddableDict(_tail("".join(parts), citer))

    chain = RunnableLambda(prepare).with_config(run_name="rag_retrieve") | RunnableGenerator(
        stream_answer, astream_answer
    ).with_config(run_name="rag_generate")
    return chain.with_config(run_name="orchard_rag")
