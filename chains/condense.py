"""Condense a follow-up question and the conversation into one standalone question.

Input: ``{"question": str, "history": [messages]}``; output: the standalone question (str).
With no history the question passes through unchanged and the model is not called.

Small models often return the previous question, or the follow-up unchanged (measured with the
0.5B model: 1 of 4 follow-ups rewritten well). A rewrite that drops a content word of the
follow-up, or changes nothing, is replaced by the last user question followed by the follow-up:
less elegant, but retrieval then sees both the topic and what is asked about it.

Example::

    >>> chain = build_condense_chain(llm=llm)  # doctest: +SKIP
    >>> chain.invoke({"question": "and its inverse?", "history": [("human", "What does json.dumps do?"), ("ai", "...")]})
    'What is the inverse of json.dumps?'
"""

from __future__ import annotations

from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, convert_to_messages
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import Runnable, RunnableConfig, RunnableLambda

HISTORY_TURNS = 6  # messages of history given to the model


def as_messages(history: Any) -> list[BaseMessage]:
    """Accept LangChain messages, ``(role, text)`` pairs or ``{"role", "content"}`` dicts."""
    return convert_to_messages(history or [])[-HISTORY_TURNS:]


def _history_text(history: Any) -> str:
    lines = []
    for message in as_messages(history):
        who = "User" if isinstance(message, HumanMessage) else "Assistant" if isinstance(message, AIMessage) else message.type
        lines.append(f"{who}: {message.text}")
    return "\n".join(lines)


def _clean(text: str, fallback: str) -> str:
    line = text.strip().splitlines()[0].strip() if text.strip() else ""
    for prefix in ("Standalone question:", "Question:", "standalone question:"):
        if line.startswith(prefix):
            line = line[len(prefix) :].strip()
    return line.strip('"') or fallback


def _last_user_text(history: Any) -> str:
    for message in reversed(convert_to_messages(history or [])):
        if isinstance(message, HumanMessage):
            return message.text
    return ""


def accept_rewrite(rewrite: str, question: str, history: Any) -> str:
    """The model's rewrite if it keeps the follow-up's content words and adds something."""
    from orchard.bm25 import tokenize

    asked = set(tokenize(question))
    if rewrite.strip().lower() != question.strip().lower() and asked <= set(tokenize(rewrite)):
        return rewrite
    previous = _last_user_text(history)
    return f"{previous} {question}".strip() if previous else question


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
        return accept_rewrite(_clean(text, question), question, inputs["history"])

    return RunnableLambda(condense).with_config(run_name="condense_question")
