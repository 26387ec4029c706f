"""The sidebar on every page: new chat, add documents, the user's conversations, who is
chatting (team mode: who is logged in, and Log out), and a status line (model server, library size)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import streamlit as st

from orchard.ui import documents, errors, state

LIST_LIMIT = 30


def render(chat_page: Any) -> None:
    name = state.user()
    with st.sidebar:
        st.markdown("## :green[:material/nutrition:] Orchard")
        if not name:
            st.caption("Private chat with your documents and data. Everything stays on this machine.")
            status_line()
            return
        if st.button("New chat", icon=":material/edit_square:", type="primary", use_container_width=True, key="new_chat"):
            state.open_conversation(None)
            st.switch_page(chat_page)
        with st.expander("Add documents", icon=":material/upload_file:"):
            documents.uploader("sidebar")
        conversations(name, chat_page)
        st.divider()
        if state.team_mode():
            account_box()
        else:
            user_box(name)
        status_line()


def conversations(user: str, chat_page: Any) -> None:
    try:
        found = state.orchard().conversations.list(user)
    except Exception as exc:
        errors.show(exc, action="listing your conversations")
        return
    if not found:
        st.caption("Your conversations will appear here.")
        return
    shown = found if st.session_state.get("show_all_conversations") else found[:LIST_LIMIT]
    current = st.session_state.get(state.CONVERSATION_KEY)
    with st.container(key="conversation_list", gap=None):
        _conversation_buttons(shown, current, chat_page)
    if len(found) > len(shown):
        st.button(f"Show all {len(found)}", key="show_all", type="tertiary",
                  on_click=lambda: st.session_state.update(show_all_conversations=True))  # fmt: skip


def _conversation_buttons(shown: list[Any], current: str | None, chat_page: Any) -> None:
    group = None
    for conversation in shown:
        when = _group(conversation.updated_at)
        if when != group:
            st.caption(when)
            group = when
        is_current = conversation.id == current
        if st.button(
            conversation.title,
            key=f"open_{conversation.id}",
            type="secondary" if is_current else "tertiary",
            use_container_width=True,
            help=conversation.title if len(conversation.title) > 28 else None,
        ):
            state.open_conversation(conversation.id)
            st.switch_page(chat_page)


def _group(stamp: float) -> str:
    day = dt.datetime.fromtimestamp(stamp).date()
    today = dt.date.today()
    if day == today:
        return "Today"
    if day == today - dt.timedelta(days=1):
        return "Yesterday"
    if day > today - dt.timedelta(days=7):
        return "Previous 7 days"
    if day > today - dt.timedelta(days=30):
        return "Previous 30 days"
    return "Older"


def account_box() -> None:
    """Team mode: who is logged in (the name and e-mail from the login), and Log out."""
    from orchard.ui import login

    me = state.identity()
    with st.popover(state.plain(me.name), icon=":material/account_circle:", type="tertiary", use_container_width=True,
                    key="user_box"):  # fmt: skip
        st.markdown(f"**{state.plain(me.name)}**" + (f"  \n{state.plain(me.email)}" if me.email else ""))
        if me.is_admin:
            st.caption(":material/shield_person: Administrator")
        st.caption("Your conversations, ratings, preferences and keys are yours alone.")
        login.logout_button()


def user_box(name: str) -> None:
    with st.popover(name, icon=":material/account_circle:", type="tertiary", use_container_width=True, key="user_box"):
        st.caption("Your name keeps your conversations, ratings and preferences apart from other people's.")
        with st.form("switch_user_form", border=False):
            new = st.text_input("Switch to another name", key="switch_user", max_chars=64)
            switch = st.form_submit_button("Switch")
        if switch:
            change_user(new)


def change_user(name: str) -> None:
    """Switch to ``name`` (the store checks it: not empty, at most 64 characters, plain text)."""
    try:
        state.orchard().conversations.list(name)
    except Exception as exc:
        errors.show(exc, action="switching users")
        return
    state.set_user(name.strip())
    st.rerun()


def status_line() -> None:
    info = state.status()
    if info.get("loading"):
        st.caption(":material/hourglass_top: Starting up: opening the library…")
        return
    if "error" in info:
        st.caption(f":material/error: Status unavailable: {info['error']}")
        return
    if info.get("model_server_up"):
        st.caption(f":green[●] {info.get('llm_model')}", help=f"Model server at {info.get('llm_base_url')}")
    elif info.get("model_server_busy"):
        st.caption(f":orange[●] {info.get('llm_model')} is busy", help="The model server is answering another request.")
    else:
        st.caption(
            ":orange[●] Model server busy or offline",
            help=f"Nothing answers at {info.get('llm_base_url')} (stopped, or busy with a long request). "
            "`orchard serve` starts the embedded one; Settings can point to another server.",
        )
    st.caption(f":material/library_books: {info.get('chunks', 0):,} passages in the library")
    if info.get("models_loading"):
        st.caption(":material/hourglass_top: Loading the embedding model: the first answer waits for it (~15 s)")
