"""The cited RAG chain: condense the follow-up, retrieve, answer with inline citations, stream.

Input: ``{"question": str, "history": [messages or (role, text) pairs]}`` (history optional).

Output (``invoke``), and the same keys spread over chunks when streaming (``answer`` arrives token
by token; ``question`` and ``sources`` come first, ``grounded`` and ``cited`` last)::

    {"question": "standalone question", "answer": "... [1] ...",
     "sources": [{"n": 1, "source": "library/json.html", "section": "...", "text": "...", ...}],
     "cited": [1], "grounded": True}

Before the model is called, a calibrated gate (:mod:`orchard.chains.gate`) judges the retrieved
passages: too weak, and the chain answers :data:`NO_ANSWER` without calling the model, with
``grounded: False``; strong, and the model's refusal counts as a failure. After the answer has
streamed, failure detectors (:mod:`orchard.chains.answer_checks`: empty, restated, a value in no
passage, a wrong citation, a refusal despite strong evidence) may fire; then the chain asks once
more (greedy, the same prompt plus a nudge, so llama.cpp reuses the KV prefix and only decoding
costs) and, if that fails too, quotes the passage sentence that best answers the question. The
replacement comes as one ``{"repair": {"kind": "retry"|"extractive", "reason", "answer", "cited"}}``
chunk before the closing ``cited``/``grounded`` chunk (which then describes the repaired answer):
with ``invoke`` the streamed ``answer`` stays the first one and ``repair["answer"]`` is final.

``invoke``, ``stream``, ``ainvoke`` and ``astream`` run the same plan (:mod:`orchard.chains.plans`):
condense (with history), retrieve, then stream the answer through the citer.

Example::

    >>> chain = build_rag_chain(llm=ChatOpenAI(base_url=...), retriever=retriever)  # doctest: +SKIP
    >>> for chunk in chain.stream({"question": "How do I parse JSON?"}):  # doctest: +SKIP
    ...     print(chunk.get("answer", ""), end="")
"""

from __future__ import annotations

import re
from collections.abc import Callable, Generator, Sequence
from contextvars import ContextVar
from typing import Any

from langchain_core.documents import Document
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage, HumanMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.retrievers import BaseRetriever
from langchain_core.runnables import Runnable, RunnableLambda

from orchard.chains.answer_checks import Finding, check_answer, extractive_answer
from orchard.chains.answer_checks import is_refusal as is_refusal
from orchard.chains.citations import StreamingCiter
from orchard.chains.condense import as_messages
from orchard.chains.context import DEFAULT_CONTEXT_TOKENS, fit_context, fit_passages, format_context
from orchard.chains.gate import Gate, GateVerdict
from orchard.chains.plans import Call, Plan, Stream, plan_chain

NO_ANSWER = "The documents do not answer this question."
_CITATION = re.compile(r"\[(\d{1,2})\]")


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


#: The nudge added after the question when the evidence is strong and the model refused.
MAY_NOT_REFUSE = (
    "The numbered sources above do contain the answer. Answer the question from them in one or two "
    "sentences: give the exact name, value or code they state, and cite its source number like [1]."
)
#: The nudge added after the question when the first answer failed a check.
STATE_THE_VALUE = (
    "Answer the question again from the numbered sources above, in one or two sentences: give the "
    "exact name, value or code they state, and cite its source number like [1]. If they do not "
    "contain it, reply exactly: " + NO_ANSWER
)
#: A quote stands in for a failed answer only when it holds this share of the question's words
#: (when the gate judged the evidence strong, any quote that shares a word does).
MIN_QUOTE_COVERAGE = 0.5
Checks = Callable[..., list[Finding]]

# The prompt the answer was asked with, for the retry (same prefix); a list per plan run.
_PROMPTS: ContextVar[list[Any] | None] = ContextVar("orchard_rag_prompts", default=None)


def _remember_prompt(prompt_value: Any) -> Any:
    seen = _PROMPTS.get()
    if seen is not None:
        seen.append(prompt_value)
    return prompt_value


def cite(text: str, docs: Sequence[Document]) -> tuple[str, list[int]]:
    """``text`` with ``[n]`` added where a sentence's source is clear, and the numbers it cites."""
    citer = StreamingCiter([d.page_content for d in docs])
    return "".join(citer.feed(text) + citer.finish()), citer.cited


def _describe(findings: list[Finding]) -> str:
    return "; ".join(f"{f.kind}: {f.detail}" for f in findings)


def repair_plan(
    *,
    question: str,
    answer: str,
    docs: Sequence[Document],
    verdict: GateVerdict,
    checks: Checks,
    retry: Runnable | None,
    prompt: Any,
) -> Generator[Call, Any, dict[str, Any] | None]:
    """Check ``answer``; if a detector fires, retry once, then quote. The repair chunk, or None.

    ``retry`` runs on the first call's messages plus a nudge (None: no retry). Use as
    ``repair = yield from repair_plan(...)`` inside a plan.
    """
    passages = [d.page_content for d in docs]
    names = [f"{d.metadata.get('source', '')} {d.metadata.get('section') or d.metadata.get('title') or ''}" for d in docs]
    strict = verdict.decision == "strict"
    findings = checks(question, answer, passages, strict=strict, names=names)
    if not findings:
        return None
    reason = _describe(findings)
    if retry is not None and prompt is not None:
        refused = any(f.kind == "refused" for f in findings)
        messages: list[BaseMessage] = [*prompt.to_messages(), HumanMessage(MAY_NOT_REFUSE if refused else STATE_THE_VALUE)]
        text = str((yield Call(retry, messages)) or "").strip()
        text, cited = cite(text, docs)
        if text and not checks(question, text, passages, strict=strict, names=names):
            grounded = bool(cited) and not is_refusal(text)
            return {"kind": "retry", "reason": reason, "answer": text, "cited": cited, "grounded": grounded}
    quote = extractive_answer(question, passages, min_coverage=0.0 if strict else MIN_QUOTE_COVERAGE)
    if quote is not None:
        text, cited = quote
        return {"kind": "extractive", "reason": reason, "answer": text, "cited": cited, "grounded": True}
    if not is_refusal(answer):  # nothing in the passages answers it: say so rather than keep a bad answer
        return {"kind": "extractive", "reason": reason, "answer": NO_ANSWER, "cited": [], "grounded": False}
    return None


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
    max_context_tokens: int = DEFAULT_CONTEXT_TOKENS,
    max_context_chars: int | None = None,
    attribute_citations: bool = True,
    gate: Gate | None = None,
    checks: Checks | None = check_answer,
    retry: bool = True,
    answer_llm: Runnable | None = None,
) -> Runnable:
    """Build the cited RAG chain (see the module docstring for input and output).

    Args:
        llm: any chat model (``ChatOpenAI(base_url=...)`` for a local server).
        retriever: returns Documents; ``metadata["dense_score"]`` (cosine similarity) is used to
            judge relevance when present.
        answer_prompt: needs ``context``, ``question`` and a ``history`` placeholder (default: the
            packaged ``rag_answer`` prompt).
        condense_prompt: needs ``history_text`` and ``question`` (default: ``condense_question``).
        min_relevance: below this best similarity the documents are taken not to answer (a hard
            floor under the gate).
        max_context_tokens: the passages' budget in estimated tokens (:func:`chains.context.fit_passages`:
            each passage cut to its sentences closest to the question); it bounds the wait for the first token.
        max_context_chars: the older budget, whole passages up to this many characters; when given, it
            replaces ``max_context_tokens``.
        attribute_citations: add ``[n]`` to answer sentences the model left uncited, matched to
            the source that supports them (see :mod:`chains.citations`).
        gate: decides refuse / answer / strict from the retrieved passages (default: the gate
            fitted by ``bench/fit_gate.py``, with ``min_relevance`` as its floor;
            :func:`~orchard.chains.gate.threshold_gate` is the old single threshold).
        checks: the failure detectors run on the finished answer (None: none, no repair).
        retry: on a failure, ask once more (greedy, plus a nudge) before quoting the passages.
        answer_llm: the model for the answer call only (default ``llm``; Orchard passes a
            best-of-n picker, :func:`orchard.chains.best_of.best_of_n`, so condensing and the
            retry stay single calls).
    """
    from orchard.chains.condense import build_condense_chain
    from orchard.prompts import load_prompt

    answer_prompt = answer_prompt or load_prompt("rag_answer")
    condense = build_condense_chain(llm=llm, prompt=condense_prompt)
    answer_chain = (answer_prompt | RunnableLambda(_remember_prompt) | (answer_llm or llm) | StrOutputParser()).with_config(
        run_name="rag_answer"
    )
    gate = gate or Gate.default(min_relevance=min_relevance)
    greedy = llm.bind(temperature=0) if hasattr(llm, "temperature") else llm
    retry_chain = (greedy | StrOutputParser()).with_config(run_name="rag_retry") if retry else None

    def answer(inputs: dict[str, Any]) -> Plan:
        question = str(inputs["question"]).strip()
        history = as_messages(inputs.get("history"))
        standalone = (yield Call(condense, {"question": question, "history": history})) if history else question
        docs = yield Call(retriever, standalone)
        verdict = gate.decide(standalone, docs)
        relevant = verdict.decision != "refuse"
        fitted = fit_passages(docs, question=standalone, max_tokens=max_context_tokens) if max_context_chars is None else fit_context(docs, max_context_chars)
        docs = fitted if relevant else []
        yield {"question": standalone, "sources": [source_record(n, d) for n, d in enumerate(docs, start=1)]}
        if not docs:
            yield {"answer": NO_ANSWER}
            yield {"cited": [], "grounded": False}
            return
        cited = _CitedAnswer(docs, attribute_citations=attribute_citations)
        prompts: list[Any] = []
        _PROMPTS.set(prompts)
        yield Stream(answer_chain, {"context": format_context(docs), "question": question, "history": history}, cited.feed)
        *pieces, tail = cited.finish()
        yield from pieces
        if checks is not None:
            fix = yield from repair_plan(question=standalone, answer="".join(cited.parts), docs=docs, verdict=verdict,
                                         checks=checks, retry=retry_chain, prompt=prompts[-1] if prompts else None)  # fmt: skip
            if fix is not None:
                yield {"repair": {k: fix[k] for k in ("kind", "reason", "answer", "cited")}}
                tail = {"cited": fix["cited"], "grounded": fix["grounded"]}
        yield tail

    return plan_chain(answer, run_name="orchard_rag")
