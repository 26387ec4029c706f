"""What every page shares: Orchard's use cases, the user, the open conversation, short messages.

The :class:`~orchard.usecases.Orchard` is built once per process (the embedder, the store and
the clients inside it are heavy) and shared by every browser session; its heavy parts load in a
background thread (:class:`WarmUp`) while the pages are already usable. Tests inject their own
through ``st.session_state["orchard"]``; that one is used as given. After the settings change,
:func:`use_settings` rebuilds it with :meth:`~orchard.usecases.Orchard.with_settings`, which keeps
the heavy parts that do not depend on what changed.

What survives a page reload lives in the URL: ``?user=NAME&c=CONVERSATION`` (team mode: only
``?c=``; the user is the logged-in identity, :func:`identity`). What survives a server restart
lives in Orchard's state database.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from typing import Any

import streamlit as st

log = logging.getLogger("orchard.ui")

ORCHARD_KEY = "orchard"  # the injection point (tests put an Orchard on a scripted model here)
USER_KEY = "user"
CONVERSATION_KEY = "conversation_id"
STATUS_TTL_SECONDS = 10.0


# --- the use cases ---------------------------------------------------------------------------


@st.cache_resource(show_spinner=False)
def _process() -> dict[str, Any]:
    """Process-wide: the current Orchard (replaced after a settings save), its warm-up, a lock."""
    return {"orchard": None, "warm_up": None, "lock": threading.Lock()}


def _build() -> Any:
    from orchard.usecases import build_orchard

    return build_orchard(notify=_notify)  # settings: environment > .env > saved settings > defaults


def _notify(message: str) -> None:
    """Orchard's one-line news ("starting the embedded model server…") as a toast."""
    try:
        st.toast(message, icon=":material/info:")
    except Exception:  # called outside a page run (a background thread): the log keeps it
        log.info(message)


class WarmUp:
    """Builds an Orchard's heavy parts in one background thread while the pages are usable.

    In a fixed order: the library (Chroma), then :meth:`~orchard.usecases.Orchard.warm_up` (the
    model client, the embedder's model, ~12 s, and the BM25 index). One thread, because importing
    numpy/scipy from two threads at once fails (measured: a circular-import error in the
    embedder's thread). Pages that need these parts wait for :attr:`library` or :attr:`ready`
    (:func:`wait_for`); the rest does not wait. Afterwards the thread keeps :attr:`status` fresh
    every few seconds.
    """

    def __init__(self, target: Any) -> None:
        self.target = target
        self.library = threading.Event()
        self.ready = threading.Event()
        self.status: dict[str, Any] = {"loading": True}
        self._wake = threading.Event()
        self._stopped = False
        threading.Thread(target=self._run, daemon=True, name="orchard-warm-up").start()

    def _run(self) -> None:
        self._step(self.target.library.count, self.library)
        self.refresh()
        self._step(self.target.warm_up, self.ready)
        while not self._stopped:
            self._wake.wait(STATUS_TTL_SECONDS)
            self._wake.clear()
            self.refresh()

    @staticmethod
    def _step(work: Any, done: threading.Event) -> None:
        try:
            work()
        except Exception:  # the page shows the error when it uses the part
            log.exception("warm-up step failed")
        finally:
            done.set()

    def refresh(self) -> dict[str, Any]:
        self.status = _ask_status(self.target)
        return self.status

    def stop(self) -> None:
        self._stopped = True
        self._wake.set()


def _ask_status(target: Any) -> dict[str, Any]:
    try:
        return dict(target.status())
    except Exception as exc:  # the status line must never break the page
        log.warning("status unavailable: %s", exc)
        return {"error": str(exc)}


def _warm_up(target: Any) -> WarmUp:
    holder = _process()
    with holder["lock"]:
        current = holder.get("warm_up")
        if current is None or current.target is not target:
            if current is not None:
                current.stop()
            current = holder["warm_up"] = WarmUp(target)
        return current


def orchard() -> Any:
    """The :class:`~orchard.usecases.Orchard` of this session: an injected one, else the process's."""
    given = st.session_state.get(ORCHARD_KEY)
    if given is not None:
        return given
    holder = _process()
    with holder["lock"]:
        if holder["orchard"] is None:
            holder["orchard"] = _build()
        built = holder["orchard"]
    _warm_up(built)
    return built


def injected() -> bool:
    return st.session_state.get(ORCHARD_KEY) is not None


def wait_for(part: str = "models") -> None:
    """Wait (with a spinner) until the shared Orchard's ``library`` or ``models`` are loaded."""
    if injected():
        return
    warm = _warm_up(orchard())
    event = warm.library if part == "library" else warm.ready
    if event.is_set():
        return
    text = "Opening the library…" if part == "library" else "Loading the embedding model (once per start, ~15 s)…"
    with st.spinner(text):
        event.wait(timeout=600)


def use_settings(settings: Any) -> Any:
    """Use new ``settings`` (after a save): Orchard rebuilt, keeping its heavy parts."""
    new = orchard().with_settings(settings)
    if injected():
        st.session_state[ORCHARD_KEY] = new
    else:
        holder = _process()
        with holder["lock"]:
            holder["orchard"] = new
        _warm_up(new)
    st.session_state.pop("_status", None)
    return new


def status(*, fresh: bool = False) -> dict[str, Any]:
    """Orchard's status (endpoint, model, up or not, passages) without waiting for it:
    ``loading`` until the library is open, ``models_loading`` until the embedder is loaded (the
    first answer waits for it). ``fresh``: ask now (after an upload, a delete)."""
    target = orchard()
    if not injected():
        warm = _warm_up(target)
        info = warm.refresh() if fresh and warm.library.is_set() else warm.status
        return {**info, "models_loading": not warm.ready.is_set()}
    cached = st.session_state.get("_status")  # an injected Orchard: ask it, remember a few seconds
    if not fresh and cached and time.monotonic() - cached[0] < STATUS_TTL_SECONDS:
        return cached[1]
    info = _ask_status(target)
    st.session_state["_status"] = (time.monotonic(), info)
    return info


# --- who is chatting, and in which conversation (kept in the URL) ---------------------------
#
# Personal mode: the user is the name typed on the first visit, kept in the URL (``?user=``).
# Team mode (``ORCHARD_AUTH=oidc``): the user is the logged-in person (``st.user``, Streamlit's
# login cookie), and only that: ``?user=`` grants nothing and is dropped from the URL.


def team_mode() -> bool:
    """Is login required (``ORCHARD_AUTH=oidc``)?"""
    return bool(getattr(orchard().settings, "team_mode", False))


def login_claims() -> dict[str, Any] | None:
    """The ID token's claims of the logged-in person (``st.user``), or None before login."""
    try:
        claims = st.user.to_dict()
    except Exception:  # no login configured in this process: nobody is logged in
        return None
    return claims if claims.get("is_logged_in") is True else None


def identity() -> Any:
    """Who is asking (:class:`orchard.identity.Identity`), or None: nobody logged in (team mode),
    or no name given yet (personal mode)."""
    from orchard.identity import identity_from_claims, personal_identity

    if team_mode():
        claims = login_claims()
        if claims is None:
            return None
        settings = orchard().settings
        try:
            found = identity_from_claims(claims, issuer=settings.oidc_issuer or "", admins=settings.oidc_admins,
                                         groups_claim=settings.oidc_groups_claim)  # fmt: skip
        except ValueError:  # a login without a subject identifies nobody
            log.warning("a login without a subject (sub claim) was refused")
            return None
        _note_login(found)
        return found
    name = user()
    return personal_identity(name) if name else None


LOGIN_NOTED_KEY = "_login_noted"


def _note_login(found: Any) -> None:
    """Note a login once per browser session in the directory of people who logged in
    (``orchard.users.seen``, which also writes the ``login`` audit entry); never stops the page."""
    if st.session_state.get(LOGIN_NOTED_KEY) == found.user:
        return
    st.session_state[LOGIN_NOTED_KEY] = found.user
    try:
        orchard().users.seen(found)
    except Exception:
        log.warning("could not record a login", exc_info=True)


def user() -> str | None:
    """The stored key of whoever is asking: in team mode the logged-in identity's, else the
    name of this session or the URL (a reload keeps it)."""
    if team_mode():
        st.query_params.pop("user", None)  # grants nothing here: not kept, not shown
        found = identity()
        return found.user if found is not None else None
    name = st.session_state.get(USER_KEY)
    if name is None:
        name = (st.query_params.get("user") or "").strip() or None
        if name:
            st.session_state[USER_KEY] = name
    if name and st.query_params.get("user") != name:
        st.query_params["user"] = name  # page switches drop the query string
    return name


def display_name() -> str:
    """The name the pages show: the identity's (team mode: from the claims), else the user's."""
    found = identity()
    return found.name if found is not None else ""


_MARKDOWN = re.compile(r"([\\`*_{}\[\]()<>#+\-.!|~:$])")


def plain(text: str | None) -> str:
    """``text`` shown as itself in Streamlit's Markdown (a name from a login is not markup)."""
    return _MARKDOWN.sub(r"\\\1", " ".join(str(text or "").split()))


def set_user(name: str | None) -> None:
    """Personal mode: become ``name``. Team mode: refused (the login decides who you are)."""
    if team_mode():
        msg = "in team mode you are who you logged in as: log out to change"
        raise PermissionError(msg)
    st.session_state[USER_KEY] = name
    open_conversation(None)
    if name:
        st.query_params["user"] = name
    else:
        st.query_params.pop("user", None)


def library(operation: str) -> Any:
    """The library use case's ``operation`` (``documents``, ``upload``, ``delete``, ``reindex``)
    for whoever is asking: called with their ``identity=``, so it reads and writes only the
    libraries that person may (team mode: shared + their private one; uploads to the shared one
    for admins only)."""
    import functools

    return functools.partial(getattr(orchard().library, operation), identity=identity())


def conversation() -> Any:
    """The open conversation of the current user (from the session or the URL), or None."""
    name = user()
    if not name:
        return None
    wanted = st.session_state.get(CONVERSATION_KEY)
    if wanted is None:
        wanted = st.query_params.get("c")
    if not wanted:
        return None
    try:
        found = orchard().conversations.get(name, wanted)
    except Exception:  # unknown, deleted or another user's: start afresh
        open_conversation(None)
        return None
    st.session_state[CONVERSATION_KEY] = found.id
    if st.query_params.get("c") != found.id:
        st.query_params["c"] = found.id
    return found


def open_conversation(conversation_id: str | None) -> None:
    st.session_state[CONVERSATION_KEY] = conversation_id
    if conversation_id:
        st.query_params["c"] = conversation_id
    else:
        st.query_params.pop("c", None)
    for key in ("regenerate", "retry", "new_mode", "mode_new"):  # a new chat starts in Auto
        st.session_state.pop(key, None)


# --- messages that outlive a rerun (callbacks run before the page is drawn) ------------------


def flash(text: str, *, kind: str = "success") -> None:
    """Show ``text`` on the next run: ``success`` as a toast, ``error`` as an error box."""
    st.session_state.setdefault("_flash", []).append((kind, text))


def show_flashes() -> None:
    for kind, text in st.session_state.pop("_flash", []):
        if kind == "error":
            st.error(text, icon=":material/error:")
        else:
            st.toast(text, icon=":material/check_circle:")
