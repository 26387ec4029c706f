"""A failed answer is replaced on the page, marked as a quote, live and after a reload."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from pydantic import Field

from orchard.events import AnswerRepaired, AnswerResult, Done, Token
from orchard.ui.answer import tokens
from tests.app.helpers import ask, texts

EMPTY = "The simplest way to do it is [1]."


class EmptyAnswers(BaseChatModel):
    """Answers every prompt with an empty sentence, the failure seen with the 0.5B model."""

    calls: list[list[BaseMessage]] = Field(default_factory=list)

    @property
    def _llm_type(self) -> str:
        return "empty-answers"

    def _generate(self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kwargs: Any) -> ChatResult:
        self.calls.append(list(messages))
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content=EMPTY))])

    def _stream(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kwargs: Any
    ) -> Iterator[ChatGenerationChunk]:
        self.calls.append(list(messages))
        for word in EMPTY.split(" "):
            yield ChatGenerationChunk(message=AIMessageChunk(content=word + " "))


@pytest.fixture
def model() -> EmptyAnswers:  # replaces the rule model of tests/app/conftest.py
    return EmptyAnswers()


@pytest.mark.usefixtures("library")
def test_an_empty_answer_is_replaced_by_a_marked_quote(open_app, model) -> None:
    at = open_app()
    at.segmented_control[0].set_value("rag").run()
    ask(at, "When are apple trees pruned?")
    answer = at.chat_message[1]
    assert len(model.calls) == 2  # the answer, then one retry (same prompt, a nudge)
    assert "late winter" in answer.markdown[0].value and "simplest way" not in answer.markdown[0].value
    assert answer.markdown[0].value.startswith("“") and ":green-badge[" in answer.markdown[0].value
    assert "Quoted from the documents (the model's answer was replaced: it was empty)" in texts(at)
    again = open_app(c=at.query_params["c"][0] if isinstance(at.query_params["c"], list) else at.query_params["c"])
    assert "Quoted from the documents" in texts(again) and "late winter" in again.chat_message[1].markdown[0].value


def test_the_live_view_takes_the_repaired_answer_from_the_result() -> None:
    repaired = AnswerRepaired(kind="extractive", reason="empty: x", answer="“Prune in late winter” [1]", cited=(1,))
    result = AnswerResult(answer=repaired.answer, mode="rag", model="m", repair=repaired)
    done: list[AnswerResult] = []

    class View:
        answering = True

    assert "".join(tokens([Token(EMPTY), repaired, Done(result)], View(), done)) == EMPTY
    assert done == [result] and done[0].as_dict()["repair"]["kind"] == "extractive"
