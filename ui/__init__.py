"""Orchard's Streamlit front end: pages and parts, each talking only to the chat service.

``app.py`` calls :func:`main`. Pages: Chat (:mod:`ui.chat`), Library (:mod:`ui.library`),
Settings (:mod:`ui.settings`); the sidebar (:mod:`ui.sidebar`) is on every page. Shared state
(the service, the user, the open conversation) is in :mod:`ui.state`.
"""

from __future__ import annotations

from orchard.ui.shell import main

__all__ = ["main"]
