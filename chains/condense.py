"""Condense a follow-up question and the conversation into one standalone question.

Input: ``{"question": str, "history": [messages]}``; output: the standalone question (str).
With no history the question passes through unchanged and the model is not called.

Example::

    >>> chain = build_condense_chain(llm=llm)  # doctest: +SKIP
    >>> chain.invoke({"question": "and its inverse?", "history": [("human", "What does json.dumps do?"), ("ai", "...")]})
    'What is the inverse of json.dumps?'
"""

from __future__ import annotations

from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, HumanMessage, convert_to_messages
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import Runnable, RunnableConfig, RunnableLambda

HISTORY_TURNS = 6


def _history_text(history: Any) -> str:
    lines = []
    for message in convert_to_messages(history or [])[-HISTORY_TURNS:]:
        who = "User" if isinstance(message, HumanMessage) else "Assistant" if isinstance(message, AIMessage) else message.type
        lines.append(f"{who}: {message.text}")
    return "\n".join(lines)


def _clean(text: str, fallback: str) -> str:
    line = text.strip().splitlines()[0].strip() if text.strip() else ""
    for prefix in ("Standalone question:", "Question:", "standalone question:"):
        if line.startswith(prefix):
            line = line[len(prefix) :].strip()
    return line.strip('"') or fallback


def build_condense_chain(*, llm: BaseChatModel, prompt: ChatPromptTemplate | None = None) -> Runnable:
    """Build the condensing step (default prompt: the packaged ``condense_question``)."""
    from orchard.prompts import load_prompt

    prompt = prompt or load_prompt("condense_question")
    rewrite = prompt | llm | StrOutputParser()

    def condense(inputs: dict[str, Any], config: RunnableConfig) -> str:
        question = str(inputs["question"]).strip()
        if not inputs.get("history"):
            return question
        text = rewrite.invoke({"history_text": _history_text(inputs["history"]), "question": question}, config)
        return _clean(text, question)

    return RunnableLambda(condense).with_config(run_name="condense_question")
