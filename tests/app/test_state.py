"""The app's process-wide parts: the warm-up thread that keeps the pages usable while it loads."""

from __future__ import annotations

import threading
from typing import Any

from orchard.ui.state import WarmUp


class SlowOrchard:
    """Heavy parts that take their time; records the order they were built in."""

    def __init__(self) -> None:
        self.built: list[str] = []
        self.release_store = threading.Event()
        self.release_embedder = threading.Event()
        self.library = self

    def count(self) -> int:  # library.count(): opens the store
        self.release_store.wait(5)
        self.built.append("store")
        return 3

    def warm_up(self) -> None:  # like Orchard.warm_up: the model client, then the embedder's model
        self.built.append("llm")
        self.release_embedder.wait(5)
        self.built.append("embedder")

    def status(self) -> dict[str, Any]:
        return {"chunks": 3, "model_server_up": True}


def test_the_library_opens_before_the_embedder_loads_and_the_status_follows() -> None:
    target = SlowOrchard()
    warm = WarmUp(target)
    try:
        assert warm.status == {"loading": True} and not warm.library.is_set()
        target.release_store.set()
        assert warm.library.wait(5)
        assert not warm.ready.is_set()  # the embedder is still loading: documents are browsable
        target.release_embedder.set()
        assert warm.ready.wait(5)
        assert target.built == ["store", "llm", "embedder"]  # one thread, in order
        assert warm.status == {"chunks": 3, "model_server_up": True}
    finally:
        warm.stop()


def test_a_failing_part_does_not_block_the_pages() -> None:
    class Broken(SlowOrchard):
        def count(self) -> int:
            raise RuntimeError("no disk")

    target = Broken()
    target.release_embedder.set()
    warm = WarmUp(target)
    try:
        assert warm.library.wait(5) and warm.ready.wait(5)  # the page then shows the error itself
    finally:
        warm.stop()
