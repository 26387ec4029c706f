"""The frame around the pages: the page's configuration, navigation and the sidebar.

:func:`run` is what a Streamlit script calls (the packaged :mod:`orchard.ui.entry.streamlit_app`,
which ``orchard app`` serves, and the checkout's ``app.py``). In team mode a visitor who has not
logged in gets :func:`orchard.ui.login.page` and nothing else.
"""

from __future__ import annotations

import os
from pathlib import Path

import streamlit as st

from orchard.ui import errors, login, sidebar, state, style, toolbar

PAGES = Path(__file__).resolve().parent / "pages"


def run() -> None:
    """Private defaults, the page's configuration, then the app."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
    os.environ["LANGSMITH_TRACING"] = "false"  # private by default: nothing goes to a tracing service
    os.environ["LANGCHAIN_TRACING_V2"] = "false"
    st.set_page_config(page_title="Orchard", page_icon="🍏", layout="wide", initial_sidebar_state="expanded")
    main()


def main() -> None:
    if state.team_mode() and state.identity() is None:  # team mode: nothing is drawn before login
        login.page()
        return
    chat_page = st.Page(PAGES / "chat.py", title="Chat", icon=":material/forum:", url_path="chat", default=True)
    pages = [
        chat_page,
        st.Page(PAGES / "library.py", title="Library", icon=":material/library_books:", url_path="library"),
        st.Page(PAGES / "settings.py", title="Settings", icon=":material/tune:", url_path="settings"),
    ]
    current = st.navigation(pages, position="top" if state.user() else "hidden")
    style.apply()
    try:
        state.conversation()  # resolve ?c= before the sidebar marks the open conversation
        toolbar.critique_on()  # keep ?critique=on in the URL on every page
        sidebar.render(chat_page)
        current.run()
    except Exception as exc:  # a last net: a message, never a traceback (st.rerun/st.stop pass)
        errors.show(exc, action="showing this page")
