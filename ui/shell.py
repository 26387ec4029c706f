"""The frame around the pages: navigation and the sidebar."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from orchard.ui import errors, sidebar, state, style, toolbar

PAGES = Path(__file__).resolve().parent / "pages"


def main() -> None:
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
