"""An editor for a YAML file with a packaged default: a prompt template or the constitution.

Shows the packaged default, edits an override, validates (each problem listed: the variable or
field it is about), saves, resets to the default. The draft lives in the session under its own key,
so a failed validation never loses what was typed, and switching tabs keeps it too.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import streamlit as st

from orchard.ui import errors, state


@dataclass(frozen=True)
class Document:
    """What the editor edits, as use-case calls."""

    key: str  # unique per edited file: session keys derive from it
    label: str
    current: Callable[[], str]  # the text in effect (the override, else the default)
    default: Callable[[], str]  # the packaged text
    validate: Callable[[str], list[str]]
    save: Callable[[str], Any]
    reset: Callable[[], Any]
    overridden: bool


def editor(doc: Document) -> None:
    draft_key, area_key = f"draft_{doc.key}", f"area_{doc.key}"
    problems_key = f"problems_{doc.key}"
    try:
        if draft_key not in st.session_state:
            st.session_state[draft_key] = doc.current()
        default = doc.default()
    except Exception as exc:
        errors.show(exc, action=f"reading {doc.label}")
        return
    if doc.overridden:
        st.caption(f":material/edit_note: Using **your version** of {doc.label}. Reset to go back to the default.")
    else:
        st.caption(f":material/inventory_2: Using the **default** version of {doc.label}. Saving creates your own.")
    edit, original = st.tabs(["Your version", "Default"], key=f"tabs_{doc.key}")
    with original:
        st.code(default, language="yaml", line_numbers=True)
    with edit:
        if area_key not in st.session_state:  # the widget's state is dropped on a page switch; the draft is not
            st.session_state[area_key] = st.session_state[draft_key]
        st.text_area(
            doc.label, key=area_key, height=340, label_visibility="collapsed",
            on_change=lambda: st.session_state.update({draft_key: st.session_state[area_key]}),
        )  # fmt: skip
        with st.container(horizontal=True):
            st.button("Save", key=f"save_{doc.key}", type="primary", icon=":material/save:", on_click=_save, args=(doc,))
            st.button("Validate", key=f"validate_{doc.key}", icon=":material/rule:", on_click=_validate, args=(doc,))
            st.button("Discard changes", key=f"discard_{doc.key}", type="tertiary", on_click=_discard, args=(doc,))
            st.button(
                "Reset to default", key=f"reset_{doc.key}", type="tertiary", icon=":material/restart_alt:",
                disabled=not doc.overridden, on_click=_reset, args=(doc,),
            )  # fmt: skip
        problems = st.session_state.get(problems_key)
        if problems:
            st.error(
                f"Not saved: {len(problems)} problem{'s' if len(problems) != 1 else ''} to fix. Your text is kept.",
                icon=":material/error:",
            )
            for problem in problems:
                st.markdown(f"- {problem}")
        elif problems == []:
            st.success("Valid.", icon=":material/check_circle:")


def _set_draft(doc: Document, text: str) -> None:
    st.session_state[f"draft_{doc.key}"] = text
    st.session_state[f"area_{doc.key}"] = text


def _check(doc: Document) -> list[str] | None:
    area = st.session_state.get(f"area_{doc.key}")
    if area is not None:  # the text area's own callback may not have run yet
        st.session_state[f"draft_{doc.key}"] = area
    try:
        return list(doc.validate(st.session_state.get(f"draft_{doc.key}", "")))
    except Exception as exc:
        return [errors.message(exc, action="validating")]


def _validate(doc: Document) -> None:
    st.session_state[f"problems_{doc.key}"] = _check(doc)


def _save(doc: Document) -> None:
    problems = _check(doc)
    st.session_state[f"problems_{doc.key}"] = problems or None
    if problems:
        return
    try:
        doc.save(st.session_state[f"draft_{doc.key}"])
    except Exception as exc:
        st.session_state[f"problems_{doc.key}"] = [errors.message(exc, action="saving")]
        return
    state.flash(f"Saved your version of {doc.label}: it is used from the next question on.")


def _discard(doc: Document) -> None:
    st.session_state.pop(f"problems_{doc.key}", None)
    try:
        _set_draft(doc, doc.current())
    except Exception as exc:
        state.flash(errors.message(exc), kind="error")


def _reset(doc: Document) -> None:
    st.session_state.pop(f"problems_{doc.key}", None)
    try:
        doc.reset()
        _set_draft(doc, doc.default())
    except Exception as exc:
        state.flash(errors.message(exc, action="resetting"), kind="error")
        return
    state.flash(f"{doc.label[:1].upper()}{doc.label[1:]} reset to the default.")
