"""Settings → API keys: a person creates, lists and revokes their own keys for ``orchard api``.

A new key is shown once, right after it is made (only its hash is stored: :mod:`orchard.keys`);
the list shows names, ids and dates, never a secret. Every call names the current user, so a key
id of someone else's is reported as not found (:meth:`orchard.keys.KeyStore.revoke`).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import streamlit as st

from orchard.ui import errors, state

NEW_KEY = "new_api_key"  # the secret of the key just made, shown until dismissed


def section() -> None:
    user = state.user()
    if not user:
        st.info("Enter your name on the Chat page to make API keys.", icon=":material/account_circle:")
        return
    keys = state.orchard().keys
    if state.team_mode():
        st.caption("Keys let programs use Orchard's HTTP API (`orchard api`, any OpenAI client) as you: "
                   "they reach your conversations and ratings, never anyone else's. Revoke a key you no longer use.")  # fmt: skip
    else:
        st.caption("Keys let programs use Orchard's HTTP API (`orchard api`). While no key exists the API is open "
                   "on this machine; once one does, every request needs a key.")  # fmt: skip
    shown_once()
    with st.form("create_api_key", border=True, clear_on_submit=True):
        name = st.text_input("Name of the new key", key="api_key_name", max_chars=64, placeholder="e.g. laptop, CI")
        create = st.form_submit_button("Create key", type="primary", icon=":material/key:")
    if create:
        _create(keys, user, name)
    listing(keys, user)


def _create(keys: Any, user: str, name: str) -> None:
    try:
        created = keys.create(user=user, name=name)
    except Exception as exc:
        errors.show(exc, action="creating the key")
        return
    st.session_state[NEW_KEY] = (created.info.name, created.key)
    st.rerun()


def shown_once() -> None:
    made = st.session_state.get(NEW_KEY)
    if not made:
        return
    name, secret = made
    with st.container(border=True, key="new_key_box"):
        st.success(f"Key “{state.plain(name)}” created. Copy it now: it is not shown again.", icon=":material/key:")
        st.code(secret, language=None)
        st.button("Done, I have copied it", key="dismiss_new_key", on_click=lambda: st.session_state.pop(NEW_KEY, None))


def _when(stamp: float | None) -> str:
    return dt.datetime.fromtimestamp(stamp).strftime("%d %b %Y %H:%M") if stamp else "never"


def listing(keys: Any, user: str) -> None:
    try:
        found = keys.list(user)
    except Exception as exc:
        errors.show(exc, action="listing your keys")
        return
    if not found:
        st.caption("You have no API keys.")
        return
    st.markdown("**Your keys**")
    for key in found:
        with st.container(border=True, horizontal=True, vertical_alignment="center", key=f"api_key_{key.id}"):
            status = ":green-badge[active]" if key.active else f":gray-badge[revoked {_when(key.revoked_at)}]"
            st.markdown(f"**{state.plain(key.name)}** · `{key.id}` · created {_when(key.created_at)} · "
                        f"last used {_when(key.last_used_at)} · {status}")  # fmt: skip
            if key.active:
                st.button("Revoke", key=f"revoke_{key.id}", icon=":material/block:", on_click=_revoke, args=(user, key.id))


def _revoke(user: str, key_id: str) -> None:
    try:
        state.orchard().keys.revoke(key_id, user=user)
    except Exception as exc:
        state.flash(errors.message(exc, action="revoking the key"), kind="error")
        return
    state.flash(f"Key {key_id} revoked: requests with it are refused from now on.")
