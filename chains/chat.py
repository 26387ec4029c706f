"""Plain chat (no documents): the model answers from what it knows, streamed.

Input: ``{"question": str, "history": [...]}``; output chunks ``{"question", "sources": []}``,
``{"answer": token}`` ..., then ``{"cited": [], "grounded": False}`` — the same shape as the RAG
chain, so callers handle both alike. Sync and async run the same plan (:mod:`orchard.chains.plans`).

Example::

    >>> chain = build_chat_chain(llm=llm)  # doctest: +SKIP
    >>> chain.invoke({"question": "Say hi"})["answer"]  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import Runnable

from orchard.chains.condense import as_messages
from orchard.chains.plans import Plan, Stream, plan_chain


def build_chat_chain(*, llm: BaseChatModel, prompt: ChatPromptTemplate | None = None) -> Runnable:
    """Build the chat chain (default prompt: the packaged ``chat``)."""
    from orchard.prompts import load_prompt

    reply = ((prompt or load_prompt("chat")) | llm | StrOutputParser()).with_config(run_name="chat_answer")

    def answer(inputs: dict[str, Any]) -> Plan:
        question = str(inputs["question"]).strip()
        yield {"question": question, "sources": []}
        yield Stream(reply, {"question": question, "history": as_messages(inputs.get("history"))}, _token)
        yield {"cited": [], "grounded": False}

    return plan_chain(answer, run_name="orchard_chat")


def _token(token: str) -> list[dict[str, Any]]:
    return [{"answer": token}]
