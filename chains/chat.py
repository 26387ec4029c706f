"""Plain chat (no documents): the model answers from what it knows, streamed.

Input: ``{"question": str, "history": [...]}``; output chunks ``{"answer": token}`` then
``{"sources": [], "cited": [], "grounded": False}`` — the same shape as the RAG chain, so callers
handle both alike.

Example::

    >>> chain = build_chat_chain(llm=llm)  # doctest: +SKIP
    >>> chain.invoke({"question": "Say hi"})["answer"]  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import Runnable, RunnableConfig, RunnableGenerator
from langchain_core.runnables.utils import AddableDict

from orchard.chains.condense import as_messages


def build_chat_chain(*, llm: BaseChatModel, prompt: ChatPromptTemplate | None = None) -> Runnable:
    """Build the chat chain (default prompt: the packaged ``chat``)."""
    from orchard.prompts import load_prompt

    reply = ((prompt or load_prompt("chat")) | llm | StrOutputParser()).with_config(run_name="chat_answer")

    def _input(inputs: dict[str, Any]) -> dict[str, Any]:
        return {"question": str(inputs["question"]).strip(), "history": as_messages(inputs.get("history"))}

    def stream(items: Iterator[dict[str, Any]], config: RunnableConfig) -> Iterator[dict[str, Any]]:
        for inputs in items:
            yield AddableDict({"question": str(inputs["question"]).strip(), "sources": []})
            for token in reply.stream(_input(inputs), config):
                yield AddableDict({"answer": token})
            yield AddableDict({"cited": [], "grounded": False})

    async def astream(items: AsyncIterator[dict[str, Any]], config: RunnableConfig) -> AsyncIterator[dict[str, Any]]:
        async for inputs in items:
            yield AddableDict({"question": str(inputs["question"]).strip(), "sources": []})
            async for token in reply.astream(_input(inputs), config):
                yield AddableDict({"answer": token})
            yield AddableDict({"cited": [], "grounded": False})

    return RunnableGenerator(stream, astream).with_config(run_name="orchard_chat")
