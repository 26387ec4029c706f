"""Fixtures shared by the unit tests of the CLI."""

from __future__ import annotations

import pytest

from tests.fakes import AlwaysUp, HashEmbeddings, ScriptedChatModel


@pytest.fixture
def scripted(monkeypatch: pytest.MonkeyPatch):
    """``scripted(*replies)``: every command's Orchard (on the settings the CLI loaded) answers
    with a ScriptedChatModel and embeds with bag-of-words vectors, through the CLI's one builder;
    returns the model."""
    from orchard.components import Components
    from orchard.usecases import build_orchard

    def make(*replies: str) -> ScriptedChatModel:
        model = ScriptedChatModel.with_replies(*replies)

        def build(settings, **parts):
            components = Components(settings, llm=model, embeddings=HashEmbeddings(), **parts)
            return build_orchard(components=components, model_server=AlwaysUp(settings))

        monkeypatch.setattr("orchard.cli.make_orchard", build)
        return model

    return make
