"""Errors become messages in the page, never tracebacks.

An :class:`~orchard.errors.OrchardError` already says what to do; a few get a hint about where to
do it in the app. Invalid input (``ValueError`` from the stores: an empty title, a long comment)
is shown as it is. Anything else gets a short message, and its traceback goes to the server log.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

import streamlit as st

log = logging.getLogger("orchard.ui")

UPLOAD_HINT = "Or add files here: **Add documents** in the sidebar, or the **Library** page."


def message(exc: BaseException, *, action: str = "doing that") -> str:
    """What the user reads for ``exc``."""
    from orchard.errors import EmptyStore, OrchardError

    if isinstance(exc, OrchardError):
        text = _sentence(str(exc))
        return f"{text}\n\n{UPLOAD_HINT}" if isinstance(exc, EmptyStore) else text
    if isinstance(exc, ValueError):
        return _sentence(str(exc))
    log.error("unexpected error while %s", action, exc_info=exc)
    return (
        f"Something went wrong while {action} ({type(exc).__name__}). "
        "Nothing you typed was lost; the details are in the server log."
    )


def show(exc: BaseException, *, action: str = "doing that") -> None:
    st.error(message(exc, action=action), icon=":material/error:")


@contextlib.contextmanager
def guard(action: str) -> Iterator[None]:
    """Run a block; an error in it becomes a message in its place."""
    try:
        yield
    except Exception as exc:  # the page never shows a traceback (st.rerun/st.stop are BaseExceptions)
        show(exc, action=action)


def _sentence(text: str) -> str:
    text = text.strip()
    return text[:1].upper() + text[1:] if text else "Something went wrong."
