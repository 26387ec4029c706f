"""Parse files in a separate process, so a parser that hangs is stopped after a time limit.

A hostile or broken file can make a parser loop for minutes (a deeply nested HTML page, a PDF
with a cyclic page tree). :class:`ParseWorker` runs :func:`orchard.loaders.load_file` in one
long-lived child process (started once, ~1 s, then reused for every file) and waits at most
``timeout`` seconds per file; past that the child is killed, the file is reported as failed, and
a fresh child serves the next file. ``LoadError``/``SkipFile`` raised by the parser come back as
they are.

Example::

    >>> worker = ParseWorker()  # doctest: +SKIP
    >>> sections = worker.parse(Path("notes.md"), b"# Notes\\n\\nText", timeout=30)  # doctest: +SKIP
"""

from __future__ import annotations

import multiprocessing
import os
import threading
from collections.abc import Callable
from multiprocessing.pool import Pool
from pathlib import Path

from orchard.loaders import LoadError, Section, load_file


class ParseWorker:
    """One child process that parses files, replaced when a parse runs out of time."""

    def __init__(self, parser: Callable[[Path, bytes], list[Section]] = load_file) -> None:
        self._parser = parser  # a module-level function: the child imports it by name
        self._pool: Pool | None = None
        self._lock = threading.Lock()

    def parse(self, path: Path, data: bytes, *, timeout: float) -> list[Section]:
        """``load_file(path, data)`` in the child, or ``LoadError`` after ``timeout`` seconds."""
        with self._lock:
            if self._pool is None:
                # spawn: the parent holds threads (torch, Chroma); a forked child could inherit a held lock.
                # A process group of its own: a SIGTERM to the app's group (how `orchard app` stops
                # Streamlit) killed the idle worker holding the pool's queue lock, and the pool's exit
                # handler then waited for that lock forever (one Streamlit left per `make test`).
                self._pool = multiprocessing.get_context("spawn").Pool(1, initializer=os.setpgrp)
            pending = self._pool.apply_async(self._parser, (path, data))
            try:
                return pending.get(timeout)
            except multiprocessing.TimeoutError:
                self._pool.terminate()
                self._pool = None
                msg = f"parsing took longer than {timeout:g} s and was stopped (limit: ORCHARD_PARSE_TIMEOUT_S)"
                raise LoadError(msg) from None

    def close(self) -> None:
        with self._lock:
            if self._pool is not None:
                self._pool.terminate()
                self._pool = None


_shared: ParseWorker | None = None
_shared_lock = threading.Lock()


def shared_worker() -> ParseWorker:
    """The process's one parse worker (its child is started on first use)."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = ParseWorker()
        return _shared
