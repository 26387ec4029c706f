"""Small helpers for reading and driving an AppTest page."""

from __future__ import annotations

from typing import Any

from streamlit.testing.v1 import AppTest


def page(name: str) -> str:
    """A page's file for ``at.switch_page`` (relative to the packaged script, in ui/entry)."""
    return f"../pages/{name}.py"


def ask(at: AppTest, question: str) -> AppTest:
    at.chat_input(key="question").set_value(question).run()
    assert not at.exception, at.exception
    return at


def texts(at: AppTest) -> str:
    """Everything readable on the page (markdown, captions, alerts), one string."""
    parts = [m.value for m in at.markdown] + [c.value for c in at.caption]
    parts += [e.value for e in (*at.error, *at.warning, *at.info, *at.success)]
    return "\n".join(str(p) for p in parts)


def button(at: AppTest, label: str, *, nth: int = 0) -> Any:
    found = [b for b in at.button if b.label == label]
    assert len(found) > nth, f"no button {label!r}; buttons: {[b.label for b in at.button]}"
    return found[nth]
