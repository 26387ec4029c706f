"""The cited RAG chain: condense the follow-up, retrieve, answer with inline citations, stream.

Input: ``{"question": str, "history": [messages or (role, text) pairs]}`` (history optional).

Output (``invoke``), and the same keys spread over chunks when streaming (``answer`` arrives token
by token; ``question`` and ``sources`` come first, ``grounded`` and ``cited`` last)::

    {"question": "standalone question", "answer": "... [1] ...",
     "sources": [{"n": 1, "source": "library/json.html", "section": "...", "text": "...", ...}],
     "cited": [1], "grounded": True}

When no retrieved chunk is relevant enough (best cosine similarity below ``min_relevance``) the
chain does not call the model: it answers :data:`NO_ANSWER`, with ``grounded: False``.

``invoke``, ``stream``, ``ainvoke`` and ``astream`` run the same plan (:mod:`orchard.chains.plans`):
condense (with history), retrieve, then stream the answer through the citer.

Example::

    >>> chain = build_rag_chain(llm=ChatOpenAI(base_url=...), retriever=retriever)  # doctest: +SKIP
    >>> for chunk in chain.stream({"question": "How do I parse JSON?"}):  # doctest: +SKIP
    ...     print(chunk.get("answer", ""), end="")
"""

from __future__ import annotations

import re
from typing import Any

from langchain_core.documents import Document
from langchain_core.language_models import BaseChatModel
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.retrievers import BaseRetriever
from langchain_core.runnables import Runnable

from orchard.chains.citations import StreamingCiter
from orchard.chains.condense import as_messages
from orchard.chains.plans import Call, Plan, Stream, plan_chain

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


class _CitedAnswer:
    """The answer's tokens as they stream (``[n]`` added on the way), then ``cited``/``grounded``."""

    def __init__(self, docs: list[Document], *, attribute_citations: bool) -> None:
        self.citer = StreamingCiter([d.page_content for d in docs])
        self.attribute = attribute_citations
        self.parts: list[str] = []

    def feed(self, token: str) -> list[dict[str, Any]]:
        return self._pieces(self.citer.feed(token) if self.attribute else [token])

    def finish(self) -> list[dict[str, Any]]:
        chunks = self._pieces(self.citer.finish() if self.attribute else [])
        answer = "".join(self.parts)
        if self.attribute:
            tail = {"cited": self.citer.cited, "grounded": self.citer.supported > 0 and not is_refusal(answer)}
        else:
            tail = {"cited": cited_numbers(answer, len(self.citer.sources)), "grounded": not is_refusal(answer)}
        return [*chunks, tail]

    def _pieces(self, pieces: list[str]) -> list[dict[str, Any]]:
        self.parts += pieces
        return [{"answer": piece} for piece in pieces]


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

    def answer(inputs: dict[str, Any]) -> Plan:
        question = str(inputs["question"]).strip()
        history = as_messages(inputs.get("history"))
        standalone = (yield Call(condense, {"question": question, "history": history})) if history else question
        docs = yield Call(retriever, standalone)
        scores = [d.metadata["dense_score"] for d in docs if "dense_score" in d.metadata]
        relevant = bool(docs) and (not scores or max(scores) >= min_relevance)
        docs = fit_context(docs, max_context_chars) if relevant else []
        yield {"question": standalone, "sources": [source_record(n, d) for n, d in enumerate(docs, start=1)]}
        if not docs:
            yield {"answer": NO_ANSWER}
            yield {"cited": [], "grounded": False}
            return
        cited = _CitedAnswer(docs, attribute_citations=attribute_citations)
        yield Stream(answer_chain, {"context": format_context(docs), "question": question, "history": history}, cited.feed)
        yield from cited.finish()

    return plan_chain(answer, run_name="orchard_rag")
