"""Conversations: turns stored by the use case (question first, answer at Done), regenerate, ratings,
attached files, and every method reaching only the user's own conversations."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from orchard.db import NotFound
from orchard.errors import ModelServerUnavailable, OrchardError
from orchard.events import Done, Token
from tests.fakes import ScriptedChatModel, scripted_orchard
from tests.unit.test_answering import PRUNING, FailingModel


def chat_orchard(tmp_path: Path, *replies: str, **kwargs: Any) -> Any:
    return scripted_orchard(tmp_path / "data", llm=ScriptedChatModel.with_replies(*replies), **kwargs)


def contents(orchard: Any, user: str, conversation_id: str) -> list[tuple[str, str]]:
    return [(m.role, m.content) for m in orchard.conversations.messages(user, conversation_id)]


# --- asking -----------------------------------------------------------------------------------------


def test_the_question_is_stored_before_answering_and_the_answer_at_done(tmp_path: Path) -> None:
    orchard = chat_orchard(tmp_path, "Hello there!")
    conversation = orchard.conversations.create("ana", mode="chat")
    stream = orchard.conversations.ask("ana", conversation.id, "hi")
    assert contents(orchard, "ana", conversation.id) == [("user", "hi")]  # before a single token
    seen_while_streaming = None
    for event in stream:
        if isinstance(event, Token) and seen_while_streaming is None:
            seen_while_streaming = contents(orchard, "ana", conversation.id)
        if isinstance(event, Done):
            done = event
    assert seen_while_streaming == [("user", "hi")]
    messages = orchard.conversations.messages("ana", conversation.id)
    assert [(m.role, m.content) for m in messages] == [("user", "hi"), ("assistant", "Hello there!")]
    answer = messages[-1]
    assert done.result.message_id == answer.id and done.result.conversation_id == conversation.id
    assert answer.meta["mode"] == "chat" and answer.meta["requested_mode"] == "chat" and "answer" not in answer.meta
    assert answer.meta["question"] == "hi" and answer.meta["model"] == orchard.settings.llm_model


def test_a_rag_answer_keeps_its_sources_and_the_next_question_sees_the_earlier_turns(tmp_path: Path) -> None:
    model = ScriptedChatModel.with_replies("Prune them in late winter [1].", "When do pears flower?", "In spring [1].")
    orchard = scripted_orchard(tmp_path / "data", llm=model)
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "pruning.md").write_text(PRUNING)
    orchard.library.ingest(["docs"], progress=False)
    conversation = orchard.conversations.create("ana", mode="rag")
    first = orchard.conversations.ask("ana", conversation.id, "When should I prune pear trees?").result()
    assert first.grounded and first.cited == (1,)
    stored = orchard.conversations.messages("ana", conversation.id)[-1].meta
    assert stored["sources"][0]["source"] == "docs/pruning.md" and stored["cited"] == [1] and stored["grounded"] is True
    orchard.conversations.ask("ana", conversation.id, "And when do they flower?").result()
    condense_prompt = "\n".join(str(m.content) for m in model.calls[1])
    assert "When should I prune pear trees?" in condense_prompt and "late winter" in condense_prompt


def test_a_failing_model_leaves_the_question_and_no_answer_and_answer_pending_answers_it(tmp_path: Path) -> None:
    down = openai.APIConnectionError(request=httpx.Request("POST", "http://127.0.0.1:8000/v1/chat/completions"))
    failing = scripted_orchard(tmp_path / "data", llm=FailingModel(error=down))
    conversation = failing.conversations.create("ana", mode="chat")
    with pytest.raises(ModelServerUnavailable):
        failing.conversations.ask("ana", conversation.id, "hi").result()
    assert contents(failing, "ana", conversation.id) == [("user", "hi")]

    working = chat_orchard(tmp_path, "Hello!")  # the same data dir: the server is back
    with pytest.raises(OrchardError, match="no unanswered question"):
        working.conversations.answer_pending("ana", working.conversations.create("ana", mode="chat").id)
    result = working.conversations.answer_pending("ana", conversation.id).result()
    assert contents(working, "ana", conversation.id) == [("user", "hi"), ("assistant", "Hello!")]
    assert result.message_id == working.conversations.messages("ana", conversation.id)[-1].id


def test_an_answer_stream_left_unfinished_stores_no_answer(tmp_path: Path) -> None:
    orchard = chat_orchard(tmp_path, "Hello there!")
    conversation = orchard.conversations.create("ana", mode="chat")
    stream = iter(orchard.conversations.ask("ana", conversation.id, "hi"))
    next(stream)
    assert contents(orchard, "ana", conversation.id) == [("user", "hi")]


def test_regenerate_stores_an_alternative_and_keeps_the_earlier_answer(tmp_path: Path) -> None:
    orchard = chat_orchard(tmp_path, "First answer.", "Second answer.")
    conversation = orchard.conversations.create("ana", mode="chat")
    first = orchard.conversations.ask("ana", conversation.id, "hi").result()
    again = orchard.conversations.regenerate("ana", conversation.id, first.message_id).result()
    assert again.answer == "Second answer." and again.message_id != first.message_id
    [question, answer] = orchard.conversations.messages("ana", conversation.id)
    assert question.content == "hi" and answer.id == again.message_id and answer.content == "Second answer."
    assert [v.content for v in answer.alternatives] == ["First answer."]
    shown = orchard.conversations.show_version("ana", first.message_id)
    assert shown.content == "First answer."
    with pytest.raises(NotFound, match="no answer"):
        orchard.conversations.regenerate("ana", conversation.id, question.id)  # a question is not an answer


# --- ratings ----------------------------------------------------------------------------------------


def test_rate_stores_the_prompt_and_answer_and_refreshes_the_profile_and_unrate_forgets_it(tmp_path: Path) -> None:
    orchard = chat_orchard(tmp_path, "A very long answer.")
    conversation = orchard.conversations.create("ana", mode="chat")
    result = orchard.conversations.ask("ana", conversation.id, "Total kg?").result()
    record = orchard.conversations.rate("ana", conversation.id, result.message_id, "down", comment="too long")
    assert (record.prompt, record.response, record.rating, record.comment) == ("Total kg?", "A very long answer.", "down", "too long")
    assert record.model == orchard.settings.llm_model and record.conversation_id == conversation.id
    assert orchard.feedback.profile("ana")  # the comment became a preference
    assert set(orchard.conversations.ratings("ana", conversation.id)) == {result.message_id}
    assert orchard.conversations.find_answer("ana", result.message_id)[0] == conversation.id
    assert orchard.conversations.unrate("ana", conversation.id, result.message_id) is True
    assert orchard.feedback.list("ana") == [] and orchard.conversations.ratings("ana", conversation.id) == {}
    assert orchard.conversations.unrate("ana", conversation.id, result.message_id) is False


def test_only_answers_can_be_rated(tmp_path: Path) -> None:
    orchard = chat_orchard(tmp_path, "Hi.")
    conversation = orchard.conversations.create("ana", mode="chat")
    orchard.conversations.ask("ana", conversation.id, "hi").result()
    question = orchard.conversations.messages("ana", conversation.id)[0]
    with pytest.raises(NotFound):
        orchard.conversations.rate("ana", conversation.id, question.id, "up")
    assert orchard.feedback.list("ana") == []


# --- one user's conversations -----------------------------------------------------------------------


def test_another_user_can_neither_read_nor_ask_nor_rate_nor_delete(tmp_path: Path) -> None:
    orchard = chat_orchard(tmp_path, "Hello!")
    conversations = orchard.conversations
    mine = conversations.create("ana", mode="chat")
    answer = conversations.ask("ana", mine.id, "hi").result()
    attempts = [
        lambda: conversations.get("bob", mine.id),
        lambda: conversations.messages("bob", mine.id),
        lambda: conversations.ask("bob", mine.id, "what did ana ask?"),
        lambda: conversations.answer_pending("bob", mine.id),
        lambda: conversations.regenerate("bob", mine.id, answer.message_id),
        lambda: conversations.rate("bob", mine.id, answer.message_id, "down"),
        lambda: conversations.find_answer("bob", answer.message_id),
        lambda: conversations.rename("bob", mine.id, "mine now"),
        lambda: conversations.attach_table("bob", mine.id, "x.csv", b"a\n1\n"),
        lambda: conversations.delete("bob", mine.id),
    ]
    for attempt in attempts:
        with pytest.raises(NotFound):
            attempt()
    assert conversations.list("bob") == []
    assert contents(orchard, "ana", mine.id) == [("user", "hi"), ("assistant", "Hello!")]  # nothing added or lost
    assert conversations.get("ana", mine.id).tables == () and orchard.feedback.list() == []
    assert not conversations.tables_dir(mine.id).exists()


# --- attached data ----------------------------------------------------------------------------------


def test_attached_files_get_a_safe_name_in_the_conversations_folder(tmp_path: Path) -> None:
    orchard = chat_orchard(tmp_path)
    conversation = orchard.conversations.create("ana", mode="agent")
    updated = orchard.conversations.attach_table("ana", conversation.id, "../../harvest.csv", b"variety,kg\nGala,3\n")
    [path] = updated.tables
    assert Path(path) == orchard.conversations.tables_dir(conversation.id) / "harvest.csv" and Path(path).is_file()
    again = orchard.conversations.attach_table("ana", conversation.id, "harvest.csv", b"variety,kg\nGala,4\n")
    assert again.tables == (path,) and Path(path).read_bytes() == b"variety,kg\nGala,4\n"  # replaced, not doubled
    for name in ("notes.txt", "..", ""):
        with pytest.raises(OrchardError, match="attach a CSV, TSV or XLSX file"):
            orchard.conversations.attach_table("ana", conversation.id, name, b"x")


def test_detaching_deletes_only_orchards_own_copy(tmp_path: Path) -> None:
    orchard = chat_orchard(tmp_path)
    conversation = orchard.conversations.create("ana", mode="agent")
    outside = tmp_path / "mine.csv"
    outside.write_text("a\n1\n")
    assert orchard.conversations.detach_table("ana", conversation.id, outside).tables == ()
    assert outside.exists()  # not Orchard's copy: left alone


def test_deleting_a_conversation_removes_its_attached_files(tmp_path: Path) -> None:
    orchard = chat_orchard(tmp_path, "3 kg.")
    conversation = orchard.conversations.create("ana", mode="chat")
    [attached] = orchard.conversations.attach_table("ana", conversation.id, "harvest.csv", b"variety,kg\nGala,3\n").tables
    answer = orchard.conversations.ask("ana", conversation.id, "Total kg?").result()
    orchard.conversations.rate("ana", conversation.id, answer.message_id, "up")
    orchard.conversations.delete("ana", conversation.id)
    assert not Path(attached).exists() and not orchard.conversations.tables_dir(conversation.id).exists()
    assert orchard.conversations.list("ana") == []
    assert len(orchard.feedback.list("ana")) == 1  # ratings are training data: they stay


def test_a_database_is_attached_and_detached(tmp_path: Path) -> None:
    orchard = chat_orchard(tmp_path)
    conversation = orchard.conversations.create("ana", mode="agent")
    assert orchard.conversations.set_database("ana", conversation.id, "sqlite:///shop.db").db_url == "sqlite:///shop.db"
    assert orchard.conversations.set_database("ana", conversation.id, "").db_url is None
