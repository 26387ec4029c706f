"""The live view of an answer: each typed event reaches the part of the page that draws it, in order."""

from __future__ import annotations

from typing import Any

from orchard.events import AnswerResult, Done, RouteChosen, Source, SourcesFound, Token
from orchard.ui.answer import tokens


class RecordingView:
    """Records what the live view was asked to draw (the page itself needs a Streamlit run)."""

    def __init__(self) -> None:
        self.drawn: list[tuple[str, Any]] = []
        self.answering = False

    def route(self, route: Any) -> None:
        self.drawn.append(("route", route.mode))

    def sources_found(self, sources: Any) -> None:
        self.drawn.append(("sources", [s.source for s in sources]))

    def first_token(self) -> None:
        self.answering = True
        self.drawn.append(("first token", None))


def test_the_sources_are_shown_before_the_first_token_and_the_result_is_kept() -> None:
    result = AnswerResult(answer="Late winter [1].", mode="rag", model="m")
    events = [RouteChosen(mode="rag"), SourcesFound((Source(n=1, source="samples/fruit-tree-care.html"),)),
              Token("Late winter"), Token(" [1]."), Done(result)]  # fmt: skip
    view, done = RecordingView(), []
    assert "".join(tokens(events, view, done)) == "Late winter [1]."
    assert view.drawn == [("route", "rag"), ("sources", ["samples/fruit-tree-care.html"]), ("first token", None)]
    assert done == [result]
