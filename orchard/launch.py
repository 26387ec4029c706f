"""``orchard app``: the model server (if none answers) and Streamlit, started and stopped together.

Streamlit runs the packaged script :mod:`orchard.ui.entry.streamlit_app` (an installed wheel needs
nothing from a checkout), with the app's options as command-line flags (:data:`STREAMLIT_OPTIONS`:
a wheel has no ``.streamlit/config.toml``). The model server's lifecycle is the model-server use
case's (:meth:`~orchard.usecases.model_server.ModelServer.start_for_app`); Streamlit runs in its
own process group (:func:`orchard.server.run_foreground`), so SIGTERM or Ctrl-C stop it with
every child it has, and then the model server this launcher started.

Team mode (``ORCHARD_AUTH=oidc``): before Streamlit starts, the launcher writes Streamlit's login
configuration from Orchard's settings and names it Streamlit's secrets file
(:mod:`orchard.streamlit_auth`); personal mode passes nothing more.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import signal
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

from orchard import server
from orchard.config import Settings

#: The app's Streamlit options (the checkout's ``.streamlit/config.toml`` says the same; a test
#: keeps the two equal).
STREAMLIT_OPTIONS: dict[str, str] = {
    "server.headless": "true",
    "server.fileWatcherType": "none",  # a venv next to the app would flood the file watcher
    "browser.gatherUsageStats": "false",
    "client.toolbarMode": "minimal",  # a finished app, not a developer tool: no Deploy button
    "client.showErrorDetails": "none",  # uncaught errors: a short message, never a traceback
    "theme.base": "light",
    "theme.primaryColor": "#2e7d32",
}


def app_script() -> Path:
    """The packaged Streamlit script (found without importing the UI into the launcher)."""
    spec = importlib.util.find_spec("orchard.ui")
    if spec is None or not spec.submodule_search_locations:
        msg = "orchard.ui is not installed: reinstall orchard (pip install orchard)"
        raise RuntimeError(msg)
    return Path(next(iter(spec.submodule_search_locations))) / "entry" / "streamlit_app.py"


def streamlit_command(*, port: int, address: str, extra: list[str] | None = None) -> list[str]:
    """``streamlit run`` of the packaged script with the app's options (and ``extra`` flags: the
    login configuration in team mode, :func:`orchard.streamlit_auth.streamlit_flags`)."""
    flags = [part for name, value in STREAMLIT_OPTIONS.items() for part in (f"--{name}", value)]
    return [
        sys.executable, "-m", "streamlit", "run", str(app_script()),
        "--server.port", str(port), "--server.address", address, *flags, *(extra or []),
    ]  # fmt: skip


class _Stopped(KeyboardInterrupt):
    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


@contextlib.contextmanager
def _signals_interrupt() -> Iterator[None]:
    """SIGTERM (service managers, ``kill``) and SIGINT interrupt the model server's start, so the
    start is undone; the previous handlers come back afterwards."""

    def _interrupt(signum: int, _frame: object) -> None:
        raise _Stopped(signum)

    previous = {sig: signal.signal(sig, _interrupt) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def launch_app(settings: Settings, *, port: int, address: str, echo: Callable[[str], None]) -> int:
    """Run until Streamlit exits, Ctrl-C or SIGTERM; Streamlit's exit code (128 + the signal's
    number when a signal stopped it)."""
    from orchard.streamlit_auth import provider_label, redirect_uri, streamlit_flags
    from orchard.usecases import build_orchard

    login_flags = streamlit_flags(settings, port=port, address=address)  # team mode: Streamlit's [auth], 0600
    if login_flags:
        echo(f"team mode: people log in with {provider_label(settings)} "
             f"(redirect URI to register there: {redirect_uri(settings, port=port, address=address)})")  # fmt: skip
    orchard = build_orchard(settings)
    handle = None
    with _signals_interrupt():
        try:
            handle = orchard.model_server.start_for_app(echo=echo)
            env = dict(os.environ, ORCHARD_DATA_DIR=str(settings.data_dir))
            echo(f"Orchard is at http://{address}:{port}  (Ctrl-C stops it)")
            # While Streamlit runs, its handlers replace ours: SIGTERM/SIGINT stop its process group.
            return server.run_foreground(streamlit_command(port=port, address=address, extra=login_flags), env=env)
        except _Stopped as stopped:
            return 128 + stopped.signum
        finally:
            if handle is not None:
                handle.stop()
