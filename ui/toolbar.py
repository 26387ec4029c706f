"""The bar above a conversation: its title and menu (rename, delete), the answer mode, the
critique and best-of-n toggles and the conversation's data sources (CSV/XLSX files and a database URL)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import streamlit as st

from orchard.ui import errors, render, state

NEW_MODE_KEY = "new_mode"  # the mode chosen before the conversation exists
CRITIQUE_KEY = "critique_on"  # kept outside the widget's key: it survives a page switch
BEST_OF_KEY = "best_of_on"  # conversation id -> on/off (this session); default: ORCHARD_BEST_OF > 1
BEST_OF_N = 4  # candidates when the toggle is on and ORCHARD_BEST_OF does not say how many
TABLE_TYPES = ["csv", "tsv", "xlsx"]
DB_URL_HELP = (
    "A SQLAlchemy URL the agent reads with read-only SQL, e.g. `sqlite:////home/me/shop.db` or "
    "`postgresql://reader@localhost/shop`. It is stored with this conversation on this machine."
)


def header(user: str, conversation: Any) -> None:
    with st.container(horizontal=True, vertical_alignment="center", key="chat_header"):
        st.subheader(conversation.title if conversation else "New chat", anchor=False)
        if conversation is not None:
            action = st.menu_button(
                "", options=["Rename", "Delete"], key="conversation_menu", icon=":material/more_horiz:",
                type="tertiary", help="Rename or delete this conversation",
                format_func=lambda o: {"Rename": ":material/edit: Rename", "Delete": ":material/delete: Delete"}[o],
            )  # fmt: skip
            if action:
                st.session_state["conversation_action"] = (action, conversation.id)
    pending = st.session_state.get("conversation_action")
    if conversation is not None and pending and pending[1] == conversation.id:
        (rename_form if pending[0] == "Rename" else delete_confirmation)(user, conversation)
    with st.container(horizontal=True, vertical_alignment="center", key="chat_toolbar"):
        mode_control(user, conversation)
        st.toggle(
            "Critique & revise",
            value=critique_on(),
            key="critique_toggle",
            on_change=lambda: set_critique(st.session_state["critique_toggle"]),
            help="Check each draft against the constitution (Settings → Constitution) and revise it. "
            "Shows the draft, each check and the revision. Slower: up to four more model calls.",
        )
        conversation_key = conversation.id if conversation is not None else "new"
        st.toggle(
            f"Best of {best_of_n()}",
            value=best_of_on(conversation),
            key=f"best_of_toggle_{conversation_key}",
            on_change=lambda: set_best_of(conversation, st.session_state[f"best_of_toggle_{conversation_key}"]),
            help=f"Write {best_of_n()} answers and let your reward model (learned from your ratings) pick one; "
            "the others stay as alternatives you can open with the arrows and rate. "
            "Each extra answer costs its writing time (the question is read once).",
        )
        data_sources(user, conversation)


def critique_on() -> bool:
    """Whether answers are critiqued and revised (kept in the URL: a reload keeps it)."""
    if CRITIQUE_KEY not in st.session_state:
        st.session_state[CRITIQUE_KEY] = st.query_params.get("critique") == "on"
    on = bool(st.session_state[CRITIQUE_KEY])
    if on and st.query_params.get("critique") != "on":
        st.query_params["critique"] = "on"  # page switches drop the query string
    return on


def best_of_n() -> int:
    """Candidates per answer when best-of-n is on: ORCHARD_BEST_OF if it is above 1, else 4."""
    configured = int(state.orchard().settings.best_of)
    return configured if configured > 1 else BEST_OF_N


def best_of_on(conversation: Any) -> bool:
    """Whether this conversation's answers are best-of-n (default: on when ORCHARD_BEST_OF > 1)."""
    chosen = st.session_state.setdefault(BEST_OF_KEY, {})
    key = conversation.id if conversation is not None else "new"
    return bool(chosen.get(key, state.orchard().settings.best_of > 1))


def best_of(conversation: Any) -> int:
    """The ``best_of`` to ask with for this conversation (1: off)."""
    return best_of_n() if best_of_on(conversation) else 1


def set_best_of(conversation: Any, on: bool) -> None:
    st.session_state.setdefault(BEST_OF_KEY, {})[conversation.id if conversation is not None else "new"] = bool(on)


def set_critique(on: bool) -> None:
    st.session_state[CRITIQUE_KEY] = bool(on)
    if on:
        st.query_params["critique"] = "on"
    else:
        st.query_params.pop("critique", None)


# --- mode --------------------------------------------------------------------------------------


def mode_control(user: str, conversation: Any) -> None:
    key = f"mode_{conversation.id}" if conversation is not None else "mode_new"
    current = conversation.mode if conversation is not None else st.session_state.get(NEW_MODE_KEY, "auto")
    st.segmented_control(
        "Answer with",
        options=list(render.MODE_LABELS),
        format_func=lambda m: f"{render.MODE_ICONS[m]} {render.MODE_LABELS[m]}",
        default=current if current in render.MODE_LABELS else "auto",
        required=True,
        key=key,
        help=render.MODE_HELP,
        label_visibility="collapsed",
        on_change=_set_mode,
        args=(user, conversation.id if conversation is not None else None, key),
    )


def _set_mode(user: str, conversation_id: str | None, key: str) -> None:
    mode = st.session_state.get(key) or "auto"
    if conversation_id is None:
        st.session_state[NEW_MODE_KEY] = mode
        return
    try:
        state.orchard().conversations.set_mode(user, conversation_id, mode)
    except Exception as exc:
        state.flash(errors.message(exc, action="changing the mode"), kind="error")


# --- rename and delete -------------------------------------------------------------------------


def rename_form(user: str, conversation: Any) -> None:
    with st.form("rename", border=True):
        title = st.text_input("New title", value=conversation.title, max_chars=200)
        with st.container(horizontal=True):
            save = st.form_submit_button("Rename", type="primary")
            cancel = st.form_submit_button("Cancel")
    if cancel:
        st.session_state.pop("conversation_action", None)
        st.rerun()
    if save:
        try:
            state.orchard().conversations.rename(user, conversation.id, title)
        except Exception as exc:
            errors.show(exc, action="renaming the conversation")
            return
        st.session_state.pop("conversation_action", None)
        state.flash("Conversation renamed.")
        st.rerun()


def delete_confirmation(user: str, conversation: Any) -> None:
    with st.container(border=True):
        st.warning(f"Delete **{conversation.title}** and all its messages? This cannot be undone.", icon=":material/delete:")
        with st.container(horizontal=True):
            if st.button("Delete conversation", type="primary", key="confirm_delete"):
                try:
                    state.orchard().conversations.delete(user, conversation.id)
                except Exception as exc:
                    errors.show(exc, action="deleting the conversation")
                    return
                st.session_state.pop("conversation_action", None)
                state.open_conversation(None)
                state.flash("Conversation deleted.")
                st.rerun()
            if st.button("Cancel", key="cancel_delete"):
                st.session_state.pop("conversation_action", None)
                st.rerun()


# --- data sources ------------------------------------------------------------------------------


def data_sources(user: str, conversation: Any) -> None:
    tables = list(conversation.tables) if conversation is not None else []
    db_url = conversation.db_url if conversation is not None else None
    count = len(tables) + (1 if db_url else 0)
    label = f"Data sources · {count}" if count else "Data sources"
    with st.popover(label, icon=":material/database:", type="tertiary", key="data_sources"):
        st.caption("The agent answers questions about these with read-only SQL. They belong to this conversation.")
        nonce = st.session_state.get("tables_nonce", 0)
        uploader_key = f"tables_{nonce}"
        st.file_uploader(
            "Attach CSV or Excel files", type=TABLE_TYPES, accept_multiple_files=True, key=uploader_key,
            on_change=_attach_tables, args=(user, uploader_key),
        )  # fmt: skip
        for path in tables:
            with st.container(horizontal=True, vertical_alignment="center"):
                st.markdown(f":material/table: `{Path(path).name}`")
                st.button("", key=f"detach_{path}", icon=":material/close:", type="tertiary", help="Detach",
                          on_click=_detach_table, args=(user, path))  # fmt: skip
        url_key = f"db_url_{conversation.id if conversation is not None else 'new'}"
        st.text_input("Database URL", value=db_url or "", key=url_key, placeholder="sqlite:////path/to/data.db", help=DB_URL_HELP)
        with st.container(horizontal=True):
            st.button("Save URL", key="save_db_url", on_click=_save_db_url, args=(user, url_key))
            if db_url:
                st.button("Remove URL", key="remove_db_url", type="tertiary", on_click=_save_db_url, args=(user, None))


def _conversation_for(user: str) -> Any:
    """The open conversation, created if there is none yet (attaching data starts one)."""
    found = state.conversation()
    if found is None:
        found = state.orchard().conversations.create(user, mode=st.session_state.get(NEW_MODE_KEY, "auto"))
        state.open_conversation(found.id)
    return found


def _attach_tables(user: str, key: str) -> None:
    files = st.session_state.get(key) or []
    if not files:
        return
    try:
        conversation = _conversation_for(user)
        conversations = state.orchard().conversations
        attached = []
        for upload in files:
            try:
                conversations.attach_table(user, conversation.id, upload.name, upload.getvalue())
                attached.append(upload.name)
            except Exception as exc:
                state.flash(f"{upload.name}: {errors.message(exc, action='attaching the file')}", kind="error")
        if attached:
            state.flash(f"Attached {', '.join(attached)}: ask in Agent or Auto mode.")
    except Exception as exc:
        state.flash(errors.message(exc, action="attaching the files"), kind="error")
    st.session_state["tables_nonce"] = st.session_state.get("tables_nonce", 0) + 1


def _detach_table(user: str, path: str) -> None:
    try:
        conversation = _conversation_for(user)
        state.orchard().conversations.detach_table(user, conversation.id, path)
        state.flash(f"Detached {Path(path).name}.")
    except Exception as exc:
        state.flash(errors.message(exc, action="detaching the file"), kind="error")


def _save_db_url(user: str, key: str | None) -> None:
    url = (st.session_state.get(key) or "").strip() if key else ""
    try:
        conversation = _conversation_for(user)
        state.orchard().conversations.set_database(user, conversation.id, url or None)
        if key is None:
            st.session_state.pop(f"db_url_{conversation.id}", None)
        state.flash("Database URL saved for this conversation." if url else "Database URL removed.")
    except Exception as exc:
        state.flash(errors.message(exc, action="saving the database URL"), kind="error")
