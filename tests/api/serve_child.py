"""`serve()` with a stand-in model server that is a real child process (a tiny HTTP server).

Run as ``python -m tests.api.serve_child DATA_DIR API_PORT MODEL_PORT [SECONDS_PER_WORD]``: the
test sends SIGTERM and checks that both this process and its child are gone. Answers come from
an :class:`~tests.api.fakes.EchoModel` (``SECONDS_PER_WORD``: a slow one, to stop mid-answer). The stand-in answers ``GET /models``
like an OpenAI-compatible server, so :func:`orchard.server.start_server` sees it come up.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from orchard import server
from tests.api.fakes import EchoModel
from tests.fakes import AlwaysUp, scripted_orchard


class ChildModelServer(AlwaysUp):
    """``start_for_app`` starts ``python -m http.server`` (serving a ``models`` file) and returns its handle."""

    def __init__(self, port: int, folder: Path) -> None:
        super().__init__()
        self.port, self.folder = port, folder

    def start_for_app(self, *, echo: Any) -> server.ServerHandle:
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / "models").write_text("{}")
        command = [sys.executable, "-m", "http.server", str(self.port), "--bind", "127.0.0.1", "--directory", str(self.folder)]
        handle = server.start_server(command, base_url=f"http://127.0.0.1:{self.port}", log=self.folder / "log", timeout=30)
        echo(f"model server pid {handle.process.pid}")
        return handle


def main() -> int:
    from orchard.api import serve

    data_dir, api_port, model_port = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    delay = float(sys.argv[4]) if len(sys.argv) > 4 else 0.0
    model_server = ChildModelServer(model_port, data_dir / "model")
    orchard = scripted_orchard(data_dir, llm=EchoModel(delay=delay), model_server=model_server)
    return serve(orchard, host="127.0.0.1", port=api_port, echo=lambda m: print(m, file=sys.stderr, flush=True), warm_up=False)


if __name__ == "__main__":
    sys.exit(main())
