"""The model server: one ensure / launch / serve / stop, used by answering, the CLI and the launcher.

* :meth:`ModelServer.ensure` — before answering: at the default local URL start the embedded
  server if nothing answers (detached, under a file lock so two processes never start two);
  elsewhere fail within seconds saying what to do.
* :meth:`ModelServer.start_for_app` — ``orchard app``/``orchard api``: a server that lives as
  long as the face (stopped with it), unless one already answers.
* :meth:`ModelServer.serve` — ``orchard serve``: the server in the foreground; SIGTERM and SIGINT
  stop its whole process tree (:func:`orchard.server.run_foreground`).
"""

from __future__ import annotations

import fcntl
from collections.abc import Callable
from pathlib import Path
from typing import Any

from orchard import server
from orchard.config import Settings
from orchard.errors import ModelAssemblyError, ModelServerUnavailable


class ModelServer:
    """Model-server lifecycle for one :class:`Settings`.

    Args:
        settings: the configuration (endpoint URL, preset, threads, context).
        notify: called with a one-line message when something the user should know happens.
    """

    def __init__(self, settings: Settings, *, notify: Callable[[str], None] | None = None) -> None:
        self.settings = settings
        self.notify = notify or (lambda message: None)

    @property
    def run_dir(self) -> Path:
        return self.settings.data_dir / "run"

    @property
    def log(self) -> Path:
        return self.settings.data_dir / "logs" / "model-server.log"

    def embedded_command(self, *, model: str | None = None, port: int | None = None, host: str = "127.0.0.1",
                         served_name: str | None = None) -> list[str]:  # fmt: skip
        """The llama.cpp server command for a preset or a .gguf path (default: ORCHARD_MODEL_PRESET).

        The served name is ``served_name``; else ORCHARD_LLM_MODEL when serving the configured
        preset (the name clients ask for); else the model's own name (another preset's, or the
        .gguf file's): ``orchard serve --model qwen-1.5b`` must not pose as the 0.5B.

        Raises:
            ModelAssemblyError: an unknown preset, a missing file, or part packages not installed.
        """
        from orchard.model import resolve_model

        s = self.settings
        chosen = model or s.model_preset
        path, served = resolve_model(chosen, cache_dir=s.cache_path)
        if served_name:
            served = served_name
        elif chosen == s.model_preset and s.llm_model:
            served = s.llm_model
        return server.llamacpp_command(
            model_path=path,
            served_name=served,
            port=port or server.port_of(s.llm_base_url),
            host=host,
            threads=s.server_threads or server.default_threads(),
            n_ctx=s.server_ctx,
            lora_path=self.active_adapter(chosen),
        )

    def active_adapter(self, model: str) -> Path | None:
        """The GGUF LoRA adapter active for the default user (personal mode), when it was trained
        on ``model``; an adapter for another model is not loaded (and said so)."""
        from orchard.adapters import AdapterStore

        adapter = AdapterStore(self.settings.data_dir).active(self.settings.default_user)
        if adapter is None:
            return None
        if adapter.base != model:
            self.notify(f"adapter {adapter.name!r} was trained on {adapter.base}, not {model}: serving the model without it")
            return None
        return adapter.gguf

    def vllm_command(self, *, model: str, port: int | None = None, host: str = "127.0.0.1", served_name: str | None = None,
                     tool_call_parser: str = "hermes", quantization: str | None = None,
                     max_model_len: int | None = None) -> list[str]:  # fmt: skip
        """vLLM's OpenAI-compatible server for ``model`` (a GPU host), served as ``served_name``
        (default: ORCHARD_LLM_MODEL, the name Orchard asks for) on ``port`` (default: the port
        of ORCHARD_LLM_BASE_URL)."""
        s = self.settings
        return server.vllm_command(
            model=model,
            served_name=served_name or s.llm_model,
            port=port or server.port_of(s.llm_base_url),
            host=host,
            tool_call_parser=tool_call_parser,
            quantization=quantization,
            max_model_len=max_model_len,
        )

    def model_file(self, preset: str | None = None) -> Path:
        """The packaged model ``preset`` (default: ORCHARD_MODEL_PRESET) as one verified GGUF,
        assembled from its PyPI parts on first use.

        Raises:
            ModelAssemblyError: an unknown preset, or its part packages are missing or damaged.
        """
        from orchard.model import PRESETS, assemble_model

        name = preset or self.settings.model_preset
        if name not in PRESETS:
            msg = f"unknown preset {name!r}: choose one of {', '.join(PRESETS)}"
            raise ModelAssemblyError(msg)
        return assemble_model(PRESETS[name], cache_dir=self.settings.cache_path)

    def models(self) -> list[dict[str, Any]]:
        """:func:`model_table` for these settings."""
        return model_table(self.settings)

    def answering(self) -> bool:
        """True when the endpoint answers, or is listening but busy (llama.cpp does not answer
        while it generates: measured)."""
        url = self.settings.llm_base_url
        return server.is_serving(url) or server.is_listening(url)

    def ensure(self, *, timeout: float = 180.0) -> None:
        """Make sure the model endpoint answers (see the module docstring). Runs before every
        answer, so it only connects: a listening server is up or busy (llama.cpp's ``/models``
        waits while it generates; the request then queues at the server, where it belongs).

        Raises:
            ModelServerUnavailable: nothing answers and nothing could be started.
        """
        s = self.settings
        if server.is_listening(s.llm_base_url):
            return
        if not s.is_default_llm_url:
            raise ModelServerUnavailable(s.llm_base_url)
        handle = self._start(detach=True, timeout=timeout, echo=self.notify, note="; stop it with `orchard stop`")
        if handle is not None:
            server.write_pidfile(self.run_dir / "model-server.pid", handle.process.pid)
            self.notify(f"Embedded model server ready at {s.llm_base_url}.")

    def start_for_app(self, *, echo: Callable[[str], None]) -> server.ServerHandle | None:
        """Start the embedded server for a face that runs in the foreground (None: one answers
        already, or the endpoint is not ours to start — then the face says so when asked)."""
        s = self.settings
        if self.answering():
            if not server.is_serving(s.llm_base_url):
                echo(f"a model server is listening at {s.llm_base_url} (busy); using it")
            return None
        if not s.is_default_llm_url:
            echo(f"warning: no model server answers at {s.llm_base_url}; answers will say so")
            return None
        handle = self._start(detach=False, timeout=180.0, echo=echo)
        if handle is not None:
            echo("model server ready")
        return handle

    def _start(self, *, detach: bool, timeout: float, echo: Callable[[str], None], note: str = "") -> server.ServerHandle | None:
        """Start the embedded server under a file lock (two processes never start two); None
        when another process started one meanwhile. ``detach``: it outlives this process."""
        s = self.settings
        self.run_dir.mkdir(parents=True, exist_ok=True)
        with (self.run_dir / "server.lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if server.is_serving(s.llm_base_url):
                return None
            echo(f"No model server at {s.llm_base_url}: starting the embedded one ({s.model_preset}; log: {self.log}{note})…")
            return server.start_server(self.embedded_command(), base_url=s.llm_base_url, log=self.log, timeout=timeout, detach=detach)

    def serve(self, command: list[str]) -> int:
        """Run ``command`` in the foreground until it exits, SIGINT or SIGTERM (which stop its
        whole process tree: :func:`orchard.server.run_foreground`); its exit code."""
        return server.run_foreground(command)

    def stop(self) -> bool:
        """Stop the embedded server `orchard ask` or the app started; True if one was running."""
        return server.stop_pidfile(self.run_dir / "model-server.pid")

    def status(self) -> dict[str, Any]:
        """Endpoint facts for a status line (never raises for a down server)."""
        url = self.settings.llm_base_url
        up = server.is_serving(url, timeout=1.0)
        return {
            "llm_base_url": url,
            "llm_model": self.settings.llm_model,
            "model_server_up": up,
            "model_server_busy": not up and server.is_listening(url, timeout=0.5),
        }


def model_table(settings: Settings) -> list[dict[str, Any]]:
    """The installed model files (presets and quantized variants in ``<cache_dir>/models``),
    each with its bench figures from ``<data_dir>/bench/models.json`` (None where not measured:
    ``orchard models bench``) and ``selected`` for ORCHARD_MODEL_PRESET's."""
    from orchard.model import installed_models
    from orchard.model_bench import load_results, results_path, trade_off_rows

    installed = installed_models(settings.cache_path)
    rows = trade_off_rows(installed, load_results(results_path(settings.data_dir)))
    for row, model in zip(rows, installed, strict=True):
        row["selected"] = model.name == settings.model_preset
        row["path"] = str(model.path)
    return rows
