"""Team mode's front door: before login the page shows a "Log in with <provider>" button and
nothing else — no sidebar, no navigation, no conversation, no document, no chat input.

The login itself is Streamlit's (``st.login``: OpenID Connect through Authlib, configured by the
``[auth]`` secrets section that ``orchard app`` writes from Orchard's settings,
:mod:`orchard.streamlit_auth`). Started another way (``streamlit run app.py``), there is no such
section, and the page says how to start it instead of offering a login that cannot work.
"""

from __future__ import annotations

import streamlit as st

from orchard.ui import state


def login_configured() -> bool:
    """Does this Streamlit process have a login configuration (an ``[auth]`` secrets section)?"""
    try:
        return bool(st.secrets.get("auth"))
    except Exception:  # no secrets file at all
        return False


def page() -> None:
    """The only page a logged-out visitor sees."""
    from orchard.streamlit_auth import provider_label

    provider = provider_label(state.orchard().settings)
    _, middle, _ = st.columns([1, 2, 1])
    with middle:
        st.space("large")
        st.title(":green[:material/nutrition:] Orchard", anchor=False)
        if not login_configured():
            st.error(
                "This Orchard is in team mode (`ORCHARD_AUTH=oidc`), but Streamlit was started without its "
                "login configuration. Start the app with `orchard app` (or `make run`): it writes the "
                "configuration from the `ORCHARD_OIDC_*` settings.",
                icon=":material/lock:",
            )
            return
        st.markdown("Log in to see your conversations and documents.")
        st.button(f"Log in with {provider}", key="login", type="primary", icon=":material/login:", on_click=st.login)


def logout_button() -> None:
    st.button("Log out", key="logout", icon=":material/logout:", type="tertiary", on_click=st.logout)
