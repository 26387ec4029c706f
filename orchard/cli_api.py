"""``orchard api`` and ``orchard keys`` (being written)."""

from __future__ import annotations

import typer

keys_app = typer.Typer(no_args_is_help=True, add_completion=False)


def api_command() -> None:
    """Serve Orchard's OpenAI-compatible HTTP API."""
    raise typer.Exit(1)
