"""The answer path makes only the model calls it needs, and shows the sources before the first token.

On this CPU every model call re-reads a prompt (~120 tokens/s for the 0.5B), so a call that is not
needed is seconds of waiting: condensing only runs with history, routing only in auto mode.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from orchard.events import SourcesFound, Token
from orchard.usecases import AnswerRequest
from tests.fakes import ScriptedChatModel, scripted_orchard

PRUNING = "# Pruning\n\nPrune pear trees in late winter, removing crossing branches.\n"
QUESTION = "When should I prune pear trees?"
ANSWER = "Prune pear trees in late winter [1]."


@pytest.fixture
def orchard_with_docs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    def make(*replies: str):
        model = ScriptedChatModel.with_replies(*replies)
        orchard = scripted_orchard(tmp_path / "data", llm=model)
        (tmp_path / "docs").mkdir(exist_ok=True)
        (tmp_path / "docs" / "pruning.md").write_text(PRUNING)
        monkeypatch.chdir(tmp_path)
        orchard.library.ingest(["docs"], progress=False)
        return orchard, model

    return make


def test_a_first_documents_question_is_one_model_call(orchard_with_docs) -> None:
    orchard, model = orchard_with_docs(ANSWER)
    result = orchard.answers.ask(AnswerRequest(question=QUESTION, mode="rag"))
    assert result.answer.startswith("Prune pear trees") and len(model.calls) == 1  # no condense, no route


def test_a_follow_up_is_condensed_first(orchard_with_docs) -> None:
    orchard, model = orchard_with_docs("When should I prune pear trees in winter?", ANSWER)
    history = (("human", "Tell me about pear trees."), ("ai", "They need pruning [1]."))
    orchard.answers.ask(AnswerRequest(question="When do I prune them?", mode="rag", history=history))
    assert len(model.calls) == 2
    assert "Follow-up question: When do I prune them?" in model.calls[0][-1].content


def test_chat_mode_is_one_call_and_auto_adds_only_the_route(orchard_with_docs) -> None:
    orchard, model = orchard_with_docs("Hello!", "documents", ANSWER)
    orchard.answers.ask(AnswerRequest(question="Say hello", mode="chat"))
    assert len(model.calls) == 1
    result = orchard.answers.ask(AnswerRequest(question=QUESTION, mode="auto"))
    assert result.mode == "rag" and len(model.calls) <= 3  # at most the route, then the answer


def test_sources_are_shown_before_the_first_token(orchard_with_docs) -> None:
    orchard, _ = orchard_with_docs(ANSWER)
    events = list(orchard.answers.stream(AnswerRequest(question=QUESTION, mode="rag")))
    kinds = [type(e) for e in events]
    assert SourcesFound in kinds and Token in kinds
    assert kinds.index(SourcesFound) < kinds.index(Token)
    assert events[kinds.index(SourcesFound)].sources[0].source.endswith("pruning.md")
