"""A few style rules Streamlit has no option for (by the keys the widgets are given)."""

from __future__ import annotations

import streamlit as st

CSS = """
<style>
/* Conversation titles read left to right, one line each, like a list. */
.st-key-conversation_list button, .st-key-conversation_list button > div { justify-content: flex-start; text-align: left; }
.st-key-conversation_list button p { white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
.st-key-conversation_list [data-testid="stCaptionContainer"] { margin-top: 0.6rem; }
/* The user menu at the foot of the sidebar reads like the list above it. */
.st-key-user_box button, .st-key-user_box button > div { justify-content: flex-start; }
</style>
"""


def apply() -> None:
    st.html(CSS)
