"""The chat page: the conversation, a streamed answer to each question, feedback, regenerate.

The page stores nothing itself: :meth:`Conversations.ask <orchard.usecases.conversations.Conversations.ask>`
stores every question before it is answered, so a failed answer loses nothing (the question stays
in the conversation with a button to answer it again, ``answer_pending``), and stores the answer
when it is complete. Regenerate keeps the earlier answer as an alternative ("answer 2 of 2"), so a
preferred and a rejected answer exist for the same prompt.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import streamlit as st

from orchard.ui import answer, errors, render, state, toolbar

USER_AVATAR = ":material/person:"
ASSISTANT_AVATAR = ":material/nutrition:"
REGENERATE_KEY = "regenerate"
RETRY_KEY = "retry"


def page() -> None:
    user = state.user()
    if not user:
        from orchard.ui import welcome

        welcome.page()
        return
    state.show_flashes()
    conversation = state.conversation()
    # Pinned to the bottom wherever it is called: read first, so a first question hides the welcome.
    question = st.chat_input(_placeholder(conversation), key="question")
    question = question.strip() if isinstance(question, str) else ""
    toolbar.header(user, conversation)
    messages: list[Any] = []
    if conversation is not None:
        with errors.guard("loading the conversation"):
            messages = state.orchard().conversations.messages(user, conversation.id)
    if not messages and not question:
        empty_state(conversation)
    ratings = _ratings(user, conversation)
    for message in messages:
        if message.role == "user":
            user_message(message.content)
        elif st.session_state.get(REGENERATE_KEY) in _version_ids(message):
            regenerate(user, conversation, message)
        else:
            assistant_message(user, conversation, message, ratings)
    if messages and messages[-1].role == "user" and not question:
        unanswered(user, conversation, messages)
    if question:
        ask(user, conversation, question)


def _placeholder(conversation: Any) -> str:
    mode = conversation.mode if conversation is not None else st.session_state.get(toolbar.NEW_MODE_KEY, "auto")
    return {
        "rag": "Ask your documents…",
        "agent": "Ask for a computation or about your data…",
        "chat": "Message the model…",
    }.get(mode, "Ask anything: your documents, your data, or a computation…")


def empty_state(conversation: Any) -> None:
    info = state.status()
    with st.container(border=True, key="empty_state"):
        st.markdown("#### What would you like to know?")
        chunks = info.get("chunks")
        if info.get("loading"):
            st.markdown("Getting ready: opening your library. You can type your question already.")
        elif chunks:
            st.markdown(
                f"Answers cite the passages they come from: **{chunks:,}** passages from your library "
                "are searched for each question. Attach a CSV, an Excel file or a database under "
                "**Data sources** to ask about your data. Nothing leaves this machine."
            )
        elif "error" not in info:
            st.markdown(
                "Your library is empty. Add files with **Add documents** in the sidebar or on the "
                "**Library** page; until then, *Chat* and *Agent* modes still work."
            )
    if info.get("model_server_up") is False and not info.get("model_server_busy"):
        st.warning(
            f"The model server at {info.get('llm_base_url')} is not answering. If it is not busy with "
            "another request, start it with `orchard serve` (or `make run`), or change the endpoint in "
            "**Settings**.",
            icon=":material/power_off:",
        )


# --- messages --------------------------------------------------------------------------------


def user_message(text: str) -> None:
    with st.chat_message("user", avatar=USER_AVATAR):
        st.markdown(text)


def assistant_message(user: str, conversation: Any, message: Any, ratings: dict[int, Any]) -> None:
    meta = message.meta or {}
    with st.chat_message("assistant", avatar=ASSISTANT_AVATAR):
        render.steps(list(meta.get("tool_calls") or []))
        render.critique(meta, message.content)
        render.repaired(meta)
        render.answer_text(message.content, meta)
        render.not_grounded(meta)
        render.sources(list(meta.get("sources") or []), meta.get("cited") or [])
        footer(user, conversation, message, ratings)


def footer(user: str, conversation: Any, message: Any, ratings: dict[int, Any]) -> None:
    """Versions, thumbs, a comment, regenerate, and what answered in how long."""
    with st.container(horizontal=True, vertical_alignment="center", gap="small", key=f"footer_{message.id}"):
        versions(user, message)
        rated = ratings.get(message.id)
        key = f"rating_{message.id}"
        st.feedback(
            "thumbs",
            key=key,
            default={"up": 1, "down": 0}.get(getattr(rated, "rating", None)),
            on_change=_rate,
            args=(user, conversation.id, message.id, key),
        )
        comment(user, conversation, message, rated)
        st.button(
            "Regenerate",
            key=f"regenerate_{message.id}",
            icon=":material/refresh:",
            type="tertiary",
            help="Answer again; this answer is kept as an alternative.",
            on_click=_set,
            args=(REGENERATE_KEY, message.id),
        )
        st.caption(render.footer_caption(message.meta or {}), help=render.route_help(message.meta or {}))


def versions(user: str, message: Any) -> None:
    every = sorted([message, *message.alternatives], key=lambda v: v.id)
    if len(every) < 2:
        return
    at = next(i for i, v in enumerate(every) if v.id == message.id)
    st.button(
        "", key=f"older_{message.id}", icon=":material/chevron_left:", type="tertiary", disabled=at == 0,
        help="Earlier answer", on_click=_show_version, args=(user, every[max(at - 1, 0)].id),
    )  # fmt: skip
    st.caption(f"Answer {at + 1} of {len(every)}")
    st.button(
        "", key=f"newer_{message.id}", icon=":material/chevron_right:", type="tertiary",
        disabled=at == len(every) - 1, help="Later answer", on_click=_show_version,
        args=(user, every[min(at + 1, len(every) - 1)].id),
    )  # fmt: skip


def comment(user: str, conversation: Any, message: Any, rated: Any) -> None:
    with st.popover("Comment", icon=":material/chat_bubble:", type="tertiary", key=f"comment_box_{message.id}"):
        key = f"comment_{message.id}"
        if key not in st.session_state and rated is not None and rated.comment:
            st.session_state[key] = rated.comment
        st.text_area("What was good or bad about this answer?", key=key, max_chars=2000, height=100)
        rating_key = f"rating_{message.id}"
        value = st.session_state.get(rating_key)
        chosen = {1: "up", 0: "down"}.get(value) if value is not None else getattr(rated, "rating", None)
        st.button(
            "Send feedback", key=f"send_comment_{message.id}", type="primary", disabled=chosen is None,
            help=None if chosen else "Rate the answer with :material/thumb_up: or :material/thumb_down: first.",
            on_click=_comment, args=(user, conversation.id, message.id, chosen, key),
        )  # fmt: skip
        if chosen is None:
            st.caption("Rate the answer with :material/thumb_up: or :material/thumb_down: first.")


def unanswered(user: str, conversation: Any, messages: list[Any]) -> None:
    """The last question has no answer (it failed, or the page was closed): answer it now."""
    if st.session_state.pop(RETRY_KEY, None) == messages[-1].id:
        respond(lambda o: o.conversations.answer_pending(user, conversation.id, critique=toolbar.critique_on(),
                                                         best_of=toolbar.best_of(conversation)),
                conversation, failed=lambda: retry_button(user, conversation))  # fmt: skip
        return
    with st.chat_message("assistant", avatar=ASSISTANT_AVATAR):
        st.caption("This question has no answer yet.")
        retry_button(user, conversation)


def retry_button(user: str, conversation: Any) -> None:
    """The "Answer it now" button for the conversation's last question, if it has no answer."""
    try:
        last = state.orchard().conversations.messages(user, conversation.id)[-1]
    except Exception:  # the page shows the conversation's own error
        return
    if last.role == "user":
        st.button("Answer it now", key=f"retry_{last.id}", icon=":material/replay:", help="Your question is kept: answer it again.",
                  on_click=_set, args=(RETRY_KEY, last.id))  # fmt: skip


# --- asking (the use case stores the question first and the answer when it is complete) ---------


def ask(user: str, conversation: Any, question: str) -> None:
    """Ask ``question`` in the open conversation (started if there is none)."""
    orchard = state.orchard()
    try:
        if conversation is None:
            best_of = toolbar.best_of(None)  # chosen before the conversation existed
            conversation = orchard.conversations.create(user, mode=st.session_state.get(toolbar.NEW_MODE_KEY, "auto"))
            toolbar.set_best_of(conversation, best_of > 1)
            state.open_conversation(conversation.id)
        events = orchard.conversations.ask(user, conversation.id, question, critique=toolbar.critique_on(),
                                           best_of=toolbar.best_of(conversation))  # fmt: skip
    except Exception as exc:
        errors.show(exc, action="saving your question")
        st.caption("Your question, to copy and send again:")
        st.code(question, language=None, wrap_lines=True)
        return
    user_message(question)
    respond(lambda o: events, conversation, failed=lambda: retry_button(user, conversation))


def regenerate(user: str, conversation: Any, message: Any) -> None:
    """Answer the question of ``message`` again; the old answer becomes an alternative."""
    st.session_state.pop(REGENERATE_KEY, None)
    respond(lambda o: o.conversations.regenerate(user, conversation.id, message.id, critique=toolbar.critique_on(),
                                                 best_of=toolbar.best_of(conversation)),
            conversation, failed=lambda: st.button("Show the earlier answer", key="show_earlier", icon=":material/undo:"))  # fmt: skip


def respond(start: Callable[[Any], Any], conversation: Any, *, failed: Callable[[], Any]) -> None:
    """Draw the answer stream ``start(orchard)`` gives in an assistant message, then redraw the
    page from what the use case stored. If answering fails, the error says what to do and
    ``failed()`` draws what comes next (a retry button)."""
    with st.chat_message("assistant", avatar=ASSISTANT_AVATAR):
        try:
            result = answer.stream(start(state.orchard()), mode=conversation.mode)
        except Exception as exc:  # the use case refused before streaming (a deleted answer, ...)
            errors.show(exc, action="answering")
            result = None
        if result is None:
            failed()
            return
    state.status(fresh=True)  # the model just answered: the status line should say it is up
    st.rerun()  # the page is drawn again from the stored answer


# --- callbacks (run before the page is drawn; messages go through state.flash) --------------


def _set(key: str, value: Any) -> None:
    st.session_state[key] = value


def _version_ids(message: Any) -> set[int]:
    return {message.id, *(v.id for v in message.alternatives)}


def _ratings(user: str, conversation: Any) -> dict[int, Any]:
    if conversation is None:
        return {}
    try:
        return state.orchard().conversations.ratings(user, conversation.id)
    except Exception:
        return {}


def _rate(user: str, conversation_id: str, message_id: int, key: str) -> None:
    value = st.session_state.get(key)
    try:
        if value is None:
            _unrate(user, conversation_id, message_id)
            return
        rating = "up" if value == 1 else "down"
        comment_text = st.session_state.get(f"comment_{message_id}") or None
        state.orchard().conversations.rate(user, conversation_id, message_id, rating, comment=comment_text)
        state.flash("Thanks, your feedback is saved." if rating == "up" else "Thanks: noted. Add a comment to say why.")
    except Exception as exc:
        state.flash(errors.message(exc, action="saving your rating"), kind="error")


def _unrate(user: str, conversation_id: str, message_id: int) -> None:
    state.orchard().conversations.unrate(user, conversation_id, message_id)
    state.flash("Rating removed.")


def _comment(user: str, conversation_id: str, message_id: int, rating: str | None, key: str) -> None:
    if rating is None:
        return
    try:
        state.orchard().conversations.rate(user, conversation_id, message_id, rating, comment=st.session_state.get(key) or None)
        state.flash("Thanks, your comment is saved.")
    except Exception as exc:
        state.flash(errors.message(exc, action="saving your comment"), kind="error")


def _show_version(user: str, message_id: int) -> None:
    try:
        state.orchard().conversations.show_version(user, message_id)
    except Exception as exc:
        state.flash(errors.message(exc, action="switching answers"), kind="error")
