"""Orchard: private chat over your documents and data (Streamlit).

Run with ``make run`` (or ``orchard app``). The pages live in ``ui/``; they talk to one chat-service
object and nothing else. Tests put a fake one in ``st.session_state["chat_service"]``.
"""

from __future__ import annotations

import os

import streamlit as st

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
os.environ["LANGSMITH_TRACING"] = "false"  # private by default: nothing goes to a tracing service
os.environ["LANGCHAIN_TRACING_V2"] = "false"

st.set_page_config(page_title="Orchard", page_icon="🍏", layout="wide", initial_sidebar_state="expanded")

from orchard.ui import main  # noqa: E402  (after set_page_config and the environment)

main()
