"""The chat page on the real use cases, the model answering by rule: answers, sources, agent
steps, critique, history, feedback."""

from __future__ import annotations

import json
import sqlite3

import httpx
import openai
import pytest
from langchain_core.messages import AIMessage, HumanMessage

from tests.app.fakes import CHAT_REPLY, PYTHON_PROGRAM, REVISION_START, SAMPLES
from tests.app.helpers import ask, button, page, texts

pytestmark = pytest.mark.usefixtures("library")


def choose_mode(at, mode: str):
    at.segmented_control[0].set_value(mode).run()
    assert not at.exception, at.exception
    return at


def test_welcome_asks_for_a_name_and_keeps_it_in_the_url(open_app) -> None:
    at = open_app(user=None)
    assert "Welcome to Orchard" in at.title[0].value
    assert not at.chat_input
    at.text_input[0].input("  Ana  ")
    button(at, "Start chatting").click().run()
    assert not at.exception
    assert at.query_params["user"] == "Ana"
    assert at.chat_input(key="question")
    assert "What would you like to know?" in texts(at)


def test_an_empty_name_is_refused_with_a_message(open_app) -> None:
    at = open_app(user=None)
    at.text_input[0].input("   ")
    button(at, "Start chatting").click().run()
    assert not at.exception
    assert "enter a name" in at.error[0].value
    assert "user" not in at.query_params


def test_a_cited_answer_streams_with_numbered_sources(open_app, orchard, model) -> None:
    orchard.feedback.set_profile("ana", "- Answer in one sentence")
    at = choose_mode(open_app(), "rag")
    ask(at, "When are apple trees pruned?")
    assert [m.name for m in at.chat_message] == ["user", "assistant"]
    answer = at.chat_message[1]
    assert "late winter" in answer.markdown[0].value
    assert answer.markdown[0].value.endswith(":green-badge[1]")  # the [1] citation, as a badge
    labels = [e.label for e in at.expander]
    assert labels[0] == "[1] " + orchard.library.search("When are apple trees pruned?", k=1)[0]["source"]
    assert "more passages retrieved, not cited" in labels[1]
    assert "Sources · 1 cited of 3 retrieved" in texts(at)
    assert "Apple and pear trees are pruned in late winter" in at.expander[0].text[0].value
    assert model.questions("rag_answer") == ["When are apple trees pruned?"] and not model.sent("agent_route")  # documents mode
    assert "Answer in one sentence" in model.sent("rag_answer")[0][0].text  # Ana's preferences reach her answer


def test_the_conversation_is_stored_and_resumed_after_a_reload(open_app) -> None:
    at = open_app()
    ask(at, "When are apple trees pruned?")
    conversation = at.query_params["c"]
    reloaded = open_app(c=conversation)  # a new browser session with the same URL
    assert [m.name for m in reloaded.chat_message] == ["user", "assistant"]
    assert reloaded.chat_message[0].markdown[0].value == "When are apple trees pruned?"
    assert "late winter" in reloaded.chat_message[1].markdown[0].value
    assert reloaded.subheader[0].value == "When are apple trees pruned?"  # the first question is the title
    assert [b.label for b in reloaded.sidebar.button if b.key == f"open_{conversation}"] == ["When are apple trees pruned?"]


def test_the_history_goes_with_a_follow_up(open_app, model) -> None:
    at = choose_mode(open_app(), "chat")
    ask(at, "Hi")
    ask(at, "And then?")
    follow_up = model.sent("chat")[1]
    assert [(type(m), m.text) for m in follow_up[1:]] == [(HumanMessage, "Hi"), (AIMessage, CHAT_REPLY), (HumanMessage, "And then?")]
    assert [m.name for m in at.chat_message] == ["user", "assistant", "user", "assistant"]


def test_the_mode_belongs_to_the_conversation(open_app, orchard, model) -> None:
    at = choose_mode(open_app(), "chat")
    ask(at, "Hi")
    chat_id = at.query_params["c"]
    assert orchard.conversations.get("ana", chat_id).mode == "chat"
    button(at, "New chat").click().run()
    ask(at, "When are apple trees pruned?")
    assert model.sent("rag_answer") and not model.sent("agent_route")  # a new chat: auto (settled: no model call)
    at.sidebar.button(key=f"open_{chat_id}").click().run()
    assert at.segmented_control[0].value == "chat"
    ask(at, "Again")
    assert model.questions("chat")[-1] == "Again" and "Again" not in model.questions("agent_route")


def test_auto_says_which_mode_answered_and_why(open_app) -> None:
    at = ask(open_app(), "When are apple trees pruned?")
    footer = [c for c in at.chat_message[1].caption if "Auto → Documents" in c.value]
    assert footer and "qwen2.5-coder-0.5b-instruct" in footer[0].value


def test_agent_steps_show_each_tool_with_the_program_as_code(open_app) -> None:
    at = choose_mode(open_app(), "agent")
    ask(at, "What is 17 * 23?")
    steps = at.chat_message[1].status[0]
    assert steps.label == "Agent · 1 step: Python program"
    assert steps.state == "complete"
    program = [c for c in steps.code if c.language == "python"]
    assert program and program[0].value == PYTHON_PROGRAM
    assert any(c.value == "391" for c in steps.code)
    assert at.chat_message[1].markdown[-1].value == "17 × 23 = 391."


def test_critique_shows_the_draft_each_check_and_the_revision(open_app, model) -> None:
    at = choose_mode(open_app(), "rag")
    at.toggle[0].set_value(True).run()
    ask(at, "When are apple trees pruned?")
    assert len(model.sent("critique")) == 3 and len(model.sent("revision")) == 1  # every principle, one rewrite
    box = at.chat_message[1].status[0]
    assert box.label == "Critique & revision · revised for: honest"
    shown = "\n".join(m.value for m in box.markdown)
    assert "late winter" in shown  # the draft
    assert "**harmless** :green-badge[passes]" in shown and "**honest** :orange-badge[needs revision]" in shown
    assert "It sounds too sure." in "\n".join(c.value for c in box.caption)
    assert "YES" not in "\n".join(c.value for c in box.caption)  # the badge says it
    assert any(m.value.startswith(REVISION_START) for m in at.chat_message[1].markdown)
    assert "The answer below is the revision." in "\n".join(c.value for c in box.caption)


def test_the_critique_toggle_survives_a_page_switch(open_app) -> None:
    at = open_app()
    at.toggle[0].set_value(True).run()
    at.switch_page(page("library")).run()
    at.switch_page(page("chat")).run()
    assert not at.exception
    assert at.toggle[0].value is True


def test_the_critique_choice_survives_a_reload(open_app) -> None:
    at = open_app()
    at.toggle[0].set_value(True).run()
    assert at.query_params["critique"] == "on"
    reloaded = open_app(critique=at.query_params["critique"])
    assert reloaded.toggle[0].value is True
    reloaded.toggle[0].set_value(False).run()
    assert "critique" not in reloaded.query_params


def test_an_unexpected_error_in_a_page_is_a_message_not_a_traceback(open_app, orchard, monkeypatch) -> None:
    def broken(user: str) -> None:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(orchard.conversations, "list", broken)
    at = open_app()
    assert not at.exception
    assert "Something went wrong while listing your conversations (RuntimeError)" in at.error[0].value


def test_a_thumb_is_stored_with_prompt_answer_sources_and_model(open_app, orchard) -> None:
    at = choose_mode(open_app(), "rag")
    ask(at, "When are apple trees pruned?")
    at.feedback[0].set_value(1).run()
    assert not at.exception
    [rating] = orchard.feedback.list("ana")
    assert rating.rating == "up" and rating.prompt == "When are apple trees pruned?"
    assert "late winter" in rating.response and rating.model == "qwen2.5-coder-0.5b-instruct"
    assert rating.sources[0]["n"] == 1 and rating.context and "late winter" in rating.context[0]
    assert "Thanks, your feedback is saved." in [t.value for t in at.toast]


def test_clearing_a_thumb_removes_the_rating(open_app, orchard) -> None:
    at = choose_mode(open_app(), "rag")
    ask(at, "When are apple trees pruned?")
    at.feedback[0].set_value(1).run()
    assert len(orchard.feedback.list("ana")) == 1
    at.feedback[0].set_value(None).run()
    assert not at.exception
    assert orchard.feedback.list("ana") == []


def test_switching_users_shows_only_their_conversations(open_app, orchard) -> None:
    at = ask(open_app(), "Ana's question")
    at.text_input(key="switch_user").input("bob")
    button(at, "Switch").click().run()
    assert not at.exception
    assert at.query_params["user"] == "bob" and "c" not in at.query_params
    assert not at.chat_message and "Your conversations will appear here." in texts(at)
    ask(at, "Bob's question")
    assert [c.title for c in orchard.conversations.list("bob")] == ["Bob's question"]
    assert [c.title for c in orchard.conversations.list("ana")] == ["Ana's question"]


def test_a_comment_goes_with_the_rating(open_app, orchard) -> None:
    at = choose_mode(open_app(), "rag")
    ask(at, "When are apple trees pruned?")
    send = button(at, "Send feedback")
    assert send.disabled  # rate first
    at.feedback[0].set_value(0).run()
    message_id = orchard.feedback.list("ana")[0].message_id
    at.text_area(key=f"comment_{message_id}").input("Too long; answer in one sentence.")
    button(at, "Send feedback").click().run()
    assert not at.exception
    [rating] = orchard.feedback.list("ana")
    assert rating.rating == "down" and rating.comment == "Too long; answer in one sentence."
    assert orchard.feedback.profile("ana")  # the profile learned from it


def test_regenerate_keeps_the_earlier_answer_as_an_alternative(open_app, orchard, model, tmp_path) -> None:
    at = choose_mode(open_app(), "rag")
    ask(at, "When are apple trees pruned?")
    first = orchard.conversations.messages("ana", at.query_params["c"])[1]
    at.feedback[0].set_value(0).run()  # the first answer: rejected
    button(at, "Regenerate").click().run()
    assert not at.exception
    assert model.questions("rag_answer") == ["When are apple trees pruned?"] * 2  # answered again
    [_, answer] = orchard.conversations.messages("ana", at.query_params["c"])
    assert [a.id for a in answer.alternatives] == [first.id]
    assert "Answer 2 of 2" in texts(at)
    at.feedback(key=f"rating_{answer.id}").set_value(1).run()  # the second: preferred
    assert orchard.feedback.export("dpo", tmp_path / "dpo.jsonl", user="ana") == 1
    [pair] = [json.loads(line) for line in (tmp_path / "dpo.jsonl").read_text().splitlines()]
    assert pair["prompt"] == "When are apple trees pruned?" and pair["chosen"] == answer.content
    at.button(key=f"older_{answer.id}").click().run()  # view the earlier answer
    assert "Answer 1 of 2" in texts(at)
    assert orchard.conversations.messages("ana", at.query_params["c"])[1].id == first.id


def test_a_failed_regeneration_keeps_the_earlier_answer(open_app, orchard, model) -> None:
    at = choose_mode(open_app(), "rag")
    ask(at, "When are apple trees pruned?")
    [_, first] = orchard.conversations.messages("ana", at.query_params["c"])
    model.error = RuntimeError("boom")
    button(at, "Regenerate").click().run()
    assert not at.exception
    assert "Something went wrong while answering (RuntimeError)" in at.error[0].value
    [_, kept] = orchard.conversations.messages("ana", at.query_params["c"])
    assert kept.id == first.id and kept.content == first.content and not kept.alternatives
    button(at, "Show the earlier answer").click().run()
    assert "late winter" in at.chat_message[1].markdown[0].value


def server_down(orchard, model) -> None:
    model.error = openai.APIConnectionError(request=httpx.Request("POST", "http://127.0.0.1:8000/v1/chat/completions"))


def library_emptied(orchard, model) -> None:
    for document in orchard.library.documents():
        orchard.library.delete(document["source"])


def a_bug(orchard, model) -> None:
    model.error = RuntimeError("boom")


def repaired(orchard, model) -> None:
    model.error = None
    if not orchard.library.count():
        orchard.library.ingest([str(SAMPLES)], progress=False)


@pytest.mark.parametrize(
    ("failure", "expected"),
    [
        (server_down, "orchard serve"),
        (library_emptied, "Add documents"),
        (a_bug, "Something went wrong while answering (RuntimeError)"),
    ],
)
def test_errors_are_messages_and_the_question_is_kept(open_app, orchard, model, failure, expected) -> None:
    failure(orchard, model)
    at = ask(open_app(), "Will this work?")
    assert expected in at.error[0].value
    assert at.chat_message[0].markdown[0].value == "Will this work?"
    [stored] = orchard.conversations.messages("ana", at.query_params["c"])
    assert stored.content == "Will this work?"
    assert button(at, "Answer it now")  # offered at once, under the error
    repaired(orchard, model)
    reloaded = open_app(c=at.query_params["c"])
    assert "This question has no answer yet." in texts(reloaded)
    button(reloaded, "Answer it now").click().run()
    assert not reloaded.exception
    assert [m.name for m in reloaded.chat_message] == ["user", "assistant"]
    assert len(orchard.conversations.messages("ana", at.query_params["c"])) == 2


def test_nobody_sees_another_users_conversations(open_app) -> None:
    ana = ask(open_app(), "Ana's private question")
    ana_chat = ana.query_params["c"]
    bob = open_app(user="bob", c=ana_chat)  # even with Ana's link
    assert not bob.chat_message
    assert "Ana's private question" not in texts(bob) + " ".join(b.label for b in bob.sidebar.button)
    assert bob.query_params.get("c") in (None, "")
    assert "Your conversations will appear here." in texts(bob)


def test_rename_and_delete_a_conversation(open_app, orchard) -> None:
    at = ask(open_app(), "First question")
    chat_id = at.query_params["c"]
    at.menu_button[0].click("Rename").run()
    field = next(t for t in at.text_input if t.label == "New title")
    field.input("Pruning notes")
    button(at, "Rename").click().run()
    assert not at.exception
    assert orchard.conversations.get("ana", chat_id).title == "Pruning notes"
    assert at.subheader[0].value == "Pruning notes"
    at.menu_button[0].click("Delete").run()
    assert "cannot be undone" in at.warning[0].value
    button(at, "Cancel").click().run()
    assert orchard.conversations.list("ana")
    at.menu_button[0].click("Delete").run()
    button(at, "Delete conversation").click().run()
    assert not at.exception
    assert orchard.conversations.list("ana") == []
    assert at.subheader[0].value == "New chat" and not at.chat_message


def test_new_chat_starts_an_empty_conversation(open_app, orchard, model) -> None:
    at = ask(open_app(), "Hi")  # small talk: auto answers it with the chat chain
    button(at, "New chat").click().run()
    assert not at.chat_message and "c" not in at.query_params
    ask(at, "Good morning!")
    assert len(orchard.conversations.list("ana")) == 2
    assert [(type(m), m.text) for m in model.sent("chat")[-1][1:]] == [(HumanMessage, "Good morning!")]  # no history


def test_data_sources_are_attached_to_the_conversation(open_app, orchard, model, tmp_path) -> None:
    database = tmp_path / "shop.db"
    with sqlite3.connect(database) as db:
        db.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)")
    at = open_app()
    at.file_uploader[0].upload("sales.csv", b"region,total\nnorth,10\nsouth,32\n", "text/csv").run()
    assert not at.exception
    chat_id = at.query_params["c"]
    [table] = orchard.conversations.get("ana", chat_id).tables
    assert table.endswith("sales.csv")
    at.text_input(key=f"db_url_{chat_id}").input(f"sqlite:///{database}")
    button(at, "Save URL").click().run()
    assert orchard.conversations.get("ana", chat_id).db_url == f"sqlite:///{database}"
    choose_mode(at, "agent")
    ask(at, "What is 17 * 23?")
    tools = {t.name for t in orchard.answers.tools(db_url=f"sqlite:///{database}", tables=(table,))}
    assert {"sql", "table", "python"} <= tools  # both sources reach the agent (17 * 23 is routed to python without a model call)
    assert at.chat_message[1].markdown[-1].value == "17 × 23 = 391."


def test_an_answer_stored_by_an_earlier_version_still_shows(open_app, orchard) -> None:
    """Messages stored before the typed events (the app folded the stream itself) keep their meta."""
    turns = orchard.components.conversations  # seeding the state database as the old app left it
    chat = turns.create("ana", mode="auto")
    turns.add_message("ana", chat.id, "user", "When are apple trees pruned?")
    old_meta = {
        "question": "When are apple trees pruned?", "requested_mode": "auto", "mode": "rag", "route": {"tool": "search_docs",
        "kind": "documents", "mode": "rag", "reason": "a question for the documents"}, "tool_calls": [], "cited": [1],
        "sources": [{"n": 1, "source": "samples/fruit-tree-care.html", "section": "Pruning", "text": "Prune in late winter."}],
        "grounded": True, "model": "qwen2.5-coder-0.5b-instruct", "seconds": 2.5, "first_token_s": 1.2,
        "asked_epoch": 1700000000.0, "first_token_epoch": 1700000001.2, "warm_up_wait_s": 0.0,
    }  # fmt: skip
    turns.add_message("ana", chat.id, "assistant", "In late winter [1].", meta=old_meta)
    at = open_app(c=chat.id)
    assert at.chat_message[1].markdown[0].value == "In late winter :green-badge[1]."
    assert at.expander[0].label == "[1] samples/fruit-tree-care.html · Pruning"
    assert "Auto → Documents · qwen2.5-coder-0.5b-instruct · 2.5 s" in texts(at)


def test_best_of_n_writes_four_answers_and_says_what_picked_one(open_app, model) -> None:
    at = choose_mode(open_app(), "rag")
    best = next(t for t in at.toggle if t.label.startswith("Best of"))
    assert best.label == "Best of 4" and best.value is False
    best.set_value(True).run()
    ask(at, "When are apple trees pruned?")
    assert not at.exception, at.exception
    assert model.questions("rag_answer") == ["When are apple trees pruned?"] * 4  # four candidates, one shown
    assert "late winter" in at.chat_message[1].markdown[0].value
    assert "best of 4, no reward model yet: the first kept" in texts(at)
