"""A user's preferences, added to what the model is asked.

:func:`with_preferences` wraps a chat model so that every call carries the user's preference
instructions (from :func:`orchard.feedback.profile_instructions`) at the end of the system
message, without touching any prompt template: RAG, chat and the agent's prompts stay the user's
own files, and their variables stay fixed.

Example::

    >>> llm = with_preferences(ChatOpenAI(...), "The user prefers:\\n- Keep answers short.")  # doctest: +SKIP
    >>> chain = build_chat_chain(llm=llm, prompt=load_prompt("chat"))  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

from langchain_core.messages import BaseMessage, SystemMessage, convert_to_messages
from langchain_core.runnables import Runnable, RunnableLambda


def add_instructions(value: Any, instructions: str) -> list[BaseMessage]:
    """The messages of ``value`` (a prompt value, messages or a string) with ``instructions``
    appended to the first system message (or added as one)."""
    if hasattr(value, "to_messages"):
        messages = value.to_messages()
    elif isinstance(value, str):
        messages = convert_to_messages([("human", value)])
    else:
        messages = convert_to_messages(value)
    if messages and isinstance(messages[0], SystemMessage):
        return [SystemMessage(content=f"{messages[0].text.rstrip()}\n\n{instructions}"), *messages[1:]]
    return [SystemMessage(content=instructions), *messages]


def with_preferences(llm: Runnable, instructions: str) -> Runnable:
    """``llm`` itself when there is nothing to add, else ``llm`` behind :func:`add_instructions`."""
    if not instructions.strip():
        return llm
    return RunnableLambda(lambda value: add_instructions(value, instructions), name="add_preferences") | llm
