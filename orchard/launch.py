"""``orchard app``: the model server (if none answers) and Streamlit, started and stopped together."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from orchard import server
from orchard.config import Settings
from orchard.service import ChatService

APP = Path(__file__).resolve().parent.parent / "app.py"


def streamlit_command(*, port: int, address: str) -> list[str]:
    return [
        sys.executable, "-m", "streamlit", "run", str(APP),
        "--server.port", str(port),
        "--server.address", address,
        "--server.headless", "true",
        "--server.fileWatcherType", "none",
        "--browser.gatherUsageStats", "false",
    ]  # fmt: skip


def launch_app(settings: Settings, *, port: int, address: str, echo: Callable[[str], None]) -> int:
    """Run until Streamlit exits, Ctrl-C or SIGTERM; returns Streamlit's exit code."""

    def _terminate(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt  # SIGTERM (service managers, `kill`) stops both, like Ctrl-C

    signal.signal(signal.SIGTERM, _terminate)
    handle = None
    serving = server.is_serving(settings.llm_base_url)
    if not serving and server.is_listening(settings.llm_base_url):
        # A llama.cpp server busy with a request does not answer: use it, do not start a second.
        echo(f"a model server is listening at {settings.llm_base_url} (busy); using it")
        serving = True
    if settings.is_default_llm_url and not serving:
        command = ChatService(settings).embedded_server_command()
        log = settings.data_dir / "logs" / "model-server.log"
        echo(f"starting the embedded model server at {settings.llm_base_url} (log: {log}) …")
        handle = server.start_server(command, base_url=settings.llm_base_url, log=log, timeout=180)
        echo("model server ready")
    elif not serving:
        echo(f"warning: no model server answers at {settings.llm_base_url}; the app will say so")
    env = dict(os.environ, ORCHARD_DATA_DIR=str(settings.data_dir))
    echo(f"Orchard is at http://{address}:{port}  (Ctrl-C stops it)")
    app = subprocess.Popen(streamlit_command(port=port, address=address), env=env)
    try:
        return app.wait()
    except KeyboardInterrupt:
        app.send_signal(signal.SIGINT)
        try:
            return app.wait(timeout=10)
        except subprocess.TimeoutExpired:
            app.kill()
            return 130
    finally:
        if handle is not None:
            handle.stop()
