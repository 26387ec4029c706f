"""First visit: who is chatting? The name keeps each person's conversations and ratings apart."""

from __future__ import annotations

import streamlit as st

from orchard.ui import errors, state


def page() -> None:
    _, middle, _ = st.columns([1, 2, 1])
    with middle:
        st.space("large")
        st.title(":green[:material/nutrition:] Welcome to Orchard", anchor=False)
        st.markdown(
            "Chat with your documents and your data, privately: the model, your files and your "
            "conversations stay on this machine."
        )
        with st.form("welcome", border=True):
            name = st.text_input("Your name", max_chars=64, placeholder="e.g. Ana",
                                 help="Keeps your conversations, ratings and preferences apart from other people's.")  # fmt: skip
            go = st.form_submit_button("Start chatting", type="primary", icon=":material/arrow_forward:")
        if go:
            start(name)


def start(name: str) -> None:
    try:
        state.orchard().conversations.list(name)  # the store checks the name
    except Exception as exc:
        errors.show(exc, action="checking your name")
        return
    state.set_user(name.strip())
    st.rerun()
