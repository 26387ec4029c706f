"""Fakes for the API tests: a model whose answer depends on the question (so answers mixed
between concurrent requests show), one that fails mid-answer, one whose first answer fails the
answer checks, a model server that is down."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from pydantic import Field, PrivateAttr

from orchard.errors import ModelServerUnavailable

TAG = re.compile(r"\btag-[a-z0-9]+\b")
APPLES = b"# Apples\n\nPrune apple trees in late winter, while they are dormant.\n"


def tag_of(messages: list[BaseMessage]) -> str:
    """The last ``tag-...`` word of the last message that has one — a retry's nudge comes after
    the question ('tag-none' if there is none)."""
    for message in reversed(messages):
        if found := TAG.findall(str(message.content)):
            return found[-1]
    return "tag-none"


class EchoModel(BaseChatModel):
    """Answers "Answer for <tag> [1]." for the last ``tag-...`` word of the last message,
    streamed word by word with a pause (``delay``) so concurrent streams interleave.
    Records every list of messages it was sent, and ``peak``: the most answers streamed at once."""

    delay: float = 0.01
    calls: list[list[BaseMessage]] = Field(default_factory=list)
    peak: int = 0
    _active: int = PrivateAttr(default=0)
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    @property
    def _llm_type(self) -> str:
        return "echo-model"

    def reply(self, messages: list[BaseMessage]) -> str:
        with self._lock:
            self.calls.append(list(messages))
        return f"Answer for {tag_of(messages)} [1]."

    def _generate(self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kwargs: Any) -> ChatResult:
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content=self.reply(messages)))])

    def _stream(self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None,
                **kwargs: Any) -> Iterator[ChatGenerationChunk]:  # fmt: skip
        words = self.reply(messages).split(" ")
        with self._lock:
            self._active += 1
            self.peak = max(self.peak, self._active)
        try:
            for i, word in enumerate(words):
                time.sleep(self.delay)
                chunk = ChatGenerationChunk(message=AIMessageChunk(content=word if i == 0 else " " + word))
                if run_manager is not None:
                    run_manager.on_llm_new_token(chunk.text, chunk=chunk)
                yield chunk
        finally:
            with self._lock:
                self._active -= 1


class BrokenModel(EchoModel):
    """Streams ``tokens`` words, then the connection to the model server breaks."""

    tokens: int = 2

    def _stream(self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None,
                **kwargs: Any) -> Iterator[ChatGenerationChunk]:  # fmt: skip
        import httpx
        import openai

        for i, chunk in enumerate(super()._stream(messages, stop, run_manager, **kwargs)):
            if i == self.tokens:
                raise openai.APIConnectionError(request=httpx.Request("POST", "http://127.0.0.1:9/v1/chat/completions"))
            yield chunk

    def _generate(self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kwargs: Any) -> ChatResult:
        chunks = list(self._stream(messages, stop, run_manager, **kwargs))
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content="".join(c.text for c in chunks)))])


#: A dangling sentence, as the 0.5B model writes: the answer checks' ``empty`` detector fires.
FAILED_ANSWER = "The simplest way to do it is [1]."


class FailsFirstModel(EchoModel):
    """Answers :data:`FAILED_ANSWER` to every prompt (critiques included: no verdict, a pass);
    asked again with the answer checks' nudge, answers ``second`` (None: the failed answer again,
    so the chain quotes the passage instead)."""

    second: str | None = None

    def reply(self, messages: list[BaseMessage]) -> str:
        from orchard.chains.rag import MAY_NOT_REFUSE, STATE_THE_VALUE

        with self._lock:
            self.calls.append(list(messages))
        nudged = str(messages[-1].content) in (STATE_THE_VALUE, MAY_NOT_REFUSE)
        return self.second if nudged and self.second is not None else FAILED_ANSWER


class DownServer:
    """A model server that does not answer (``ensure`` raises, ``status`` says down)."""

    base_url = "http://127.0.0.1:9/v1"

    def ensure(self, *, timeout: float = 0) -> None:
        raise ModelServerUnavailable(self.base_url)

    def status(self) -> dict[str, Any]:
        return {"llm_base_url": self.base_url, "llm_model": "m", "model_server_up": False, "model_server_busy": False}
