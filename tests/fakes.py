"""Test doubles: a scripted chat model that records what it was sent, and bag-of-words embeddings."""

from __future__ import annotations

import hashlib
import math
from typing import Any

from langchain_core.embeddings import Embeddings
from langchain_core.language_models import BaseChatModel
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatResult
from pydantic import Field

from orchard.bm25 import tokenize


class ScriptedChatModel(GenericFakeChatModel):
    """Answers from a queue of scripted replies and records every list of messages it was sent."""

    calls: list[list[BaseMessage]] = Field(default_factory=list)

    @classmethod
    def with_replies(cls, *replies: str) -> ScriptedChatModel:
        return cls(messages=iter([AIMessage(content=r) for r in replies]))

    def _generate(self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kwargs: Any) -> ChatResult:
        self.calls.append(list(messages))
        return super()._generate(messages, stop=stop, run_manager=run_manager, **kwargs)

    # GenericFakeChatModel._stream calls _generate, so streaming is recorded once too.


class HashEmbeddings(Embeddings):
    """Deterministic bag-of-words vectors: texts sharing words are similar (cosine), offline, fast."""

    name = "fake-hash"
    dimension = 128

    def __init__(self, name: str = "fake-hash", dimension: int = 128) -> None:
        self.name, self.dimension = name, dimension
        self.calls = 0

    def _vector(self, text: str) -> list[float]:
        vec = [0.0] * self.dimension
        for token in tokenize(text):
            slot = int(hashlib.md5(token.encode()).hexdigest(), 16) % self.dimension
            vec[slot] += 1.0
        norm = math.sqrt(sum(v * v for v in vec)) or 1.0
        return [v / norm for v in vec]

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        self.calls += 1
        return [self._vector(t) for t in texts]

    def embed_query(self, text: str) -> list[float]:
        return self._vector(text)


class ScriptedToolModel(BaseChatModel):
    """A tool-calling fake: answers from a queue of scripted replies (text or tool calls) and records
    every list of messages it was sent and every ``bind_tools`` (tool names and tool_choice).

    A reply is a string (plain text) or a dict ``{"tool": name, "args": {...}}`` (one tool call).
    """

    replies: list[Any] = Field(default_factory=list)
    calls: list[list[BaseMessage]] = Field(default_factory=list)
    bound: list[dict[str, Any]] = Field(default_factory=list)

    @property
    def _llm_type(self) -> str:
        return "scripted-tool-model"

    def bind_tools(self, tools: Any, *, tool_choice: Any = None, **kwargs: Any) -> Any:
        from langchain_core.utils.function_calling import convert_to_openai_tool

        names = [convert_to_openai_tool(t)["function"]["name"] for t in tools]
        self.bound.append({"tools": names, "tool_choice": tool_choice})
        return self

    def _generate(self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kwargs: Any) -> ChatResult:
        from langchain_core.outputs import ChatGeneration

        self.calls.append(list(messages))
        if not self.replies:
            raise AssertionError(f"the scripted model was called more often than scripted; last messages: {messages}")
        reply = self.replies.pop(0)
        if isinstance(reply, dict):
            call = {"name": reply["tool"], "args": reply["args"], "id": f"call_{len(self.calls)}", "type": "tool_call"}
            message = AIMessage(content="", tool_calls=[call])
        else:
            message = AIMessage(content=reply)
        return ChatResult(generations=[ChatGeneration(message=message)])


class AlwaysUp:
    """A model server that is always up: for use cases over a scripted model (no network)."""

    def __init__(self, settings: Any = None) -> None:
        self.settings = settings
        self.ensured = 0

    def ensure(self, *, timeout: float = 0) -> None:
        self.ensured += 1

    def status(self) -> dict[str, Any]:
        url = getattr(self.settings, "llm_base_url", "http://127.0.0.1:8000/v1")
        model = getattr(self.settings, "llm_model", "scripted")
        return {"llm_base_url": url, "llm_model": model, "model_server_up": True, "model_server_busy": False}


def scripted_orchard(data_dir: Any, *replies: Any, llm: Any = None, model_server: Any = None, **settings: Any) -> Any:
    """Orchard on ``data_dir`` with a scripted model (``replies``, or ``llm``), bag-of-words
    embeddings and a model server that is always up."""
    from orchard.components import Components
    from orchard.config import Settings
    from orchard.usecases import build_orchard

    config = Settings(data_dir=data_dir, **settings)
    model = llm if llm is not None else ScriptedChatModel.with_replies(*replies)
    parts = Components(config, llm=model, embeddings=HashEmbeddings())
    return build_orchard(components=parts, model_server=model_server or AlwaysUp(config))
