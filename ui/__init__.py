"""Orchard's Streamlit front end: pages and parts, each calling Orchard's use cases only.

``orchard app`` serves :mod:`orchard.ui.entry.streamlit_app` (the checkout's ``app.py`` is the
same call, :func:`~orchard.ui.shell.run`), which draws :func:`main`. Pages: Chat (:mod:`orchard.ui.chat`),
Library (:mod:`orchard.ui.library`), Settings (:mod:`orchard.ui.settings`); the sidebar
(:mod:`orchard.ui.sidebar`) is on every page. Shared state (the :class:`~orchard.usecases.Orchard`,
the user, the open conversation) is in :mod:`orchard.ui.state`.
"""

from __future__ import annotations

from orchard.ui.shell import main, run

__all__ = ["main", "run"]
