"""``orchard api``: the model server (if none answers) and the HTTP API, started and stopped together.

SIGTERM and SIGINT stop uvicorn gracefully (open streams get a few seconds), then the embedded
model server this process started — nothing is left listening.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from typing import Any

from orchard.api.auth import CREATE_KEY, is_loopback_host
from orchard.errors import OrchardError

GRACEFUL_SECONDS = 5


def check_exposure(orchard: Any, host: str) -> None:
    """Refuse to serve beyond loopback without an active API key (personal mode; team mode always
    asks every request for a key, and people create theirs after the deployment is up).

    Raises:
        OrchardError: ``host`` is not loopback and no key is active.
    """
    if not is_loopback_host(host) and not orchard.settings.team_mode and orchard.keys.active_count() == 0:
        msg = (
            f"refusing to listen on {host} without an API key: anyone who reaches this machine could read "
            f"your documents and conversations — {CREATE_KEY}, or listen on 127.0.0.1"
        )
        raise OrchardError(msg)


def serve(orchard: Any, *, host: str, port: int, echo: Callable[[str], None], warm_up: bool = True,
          log_level: str = "info") -> int:  # fmt: skip
    """Serve the API until SIGTERM/SIGINT; returns the exit code.

    Args:
        orchard: the use cases.
        host: interface to listen on (not loopback: API keys required, see :func:`check_exposure`).
        port: port to listen on.
        echo: where one-line news goes (stderr).
        warm_up: load the model client, the embedder and the BM25 index in the background, so the
            first question does not wait for them.
        log_level: uvicorn's log level.
    """
    import uvicorn

    from orchard.api.app import create_app

    check_exposure(orchard, host)
    handle = None
    with _sigterm_as_interrupt():
        try:
            handle = orchard.model_server.start_for_app(echo=echo)
            app = create_app(orchard, host=host)
            if warm_up:  # /api/health answers 503 "starting" until this is done: a balancer waits for it
                app.state.ready.clear()
                threading.Thread(target=_warm_up, args=(orchard, echo, app.state.ready), name="orchard-warm-up",
                                 daemon=True).start()  # fmt: skip
            config = uvicorn.Config(app, host=host, port=port, log_level=log_level, timeout_graceful_shutdown=GRACEFUL_SECONDS)
            server = uvicorn.Server(config)
            shown = f"[{host}]" if ":" in host else host
            echo(f"Orchard API at http://{shown}:{port}/v1 (docs: http://{shown}:{port}/docs; Ctrl-C stops it)")
            server.run()
            return 0 if server.started else 1
        except KeyboardInterrupt:  # a signal before uvicorn ran, or the one it passes on after stopping
            return 0
        finally:
            if handle is not None:
                echo("stopping the embedded model server")
                handle.stop()


def _warm_up(orchard: Any, echo: Callable[[str], None], ready: threading.Event) -> None:
    try:
        orchard.warm_up()
    except Exception as exc:  # the first request will say what is wrong, in its own words
        echo(f"warning: warming up failed ({exc}); the first request tries again")
    finally:
        ready.set()


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM raises KeyboardInterrupt (like Ctrl-C), so ``finally`` blocks stop what we started.

    uvicorn installs its own handlers while it serves and raises the signal again once stopped;
    without this handler that second SIGTERM would end the process before the model server stops.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
