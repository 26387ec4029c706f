"""``orchard api`` (serve the HTTP API) and ``orchard keys`` (its API keys)."""

from __future__ import annotations

import json
import time
from typing import Annotated, Any

import typer

keys_app = typer.Typer(no_args_is_help=True, add_completion=False)


def _echo(message: str) -> None:
    typer.echo(message, err=True)


def _orchard() -> Any:
    from orchard.cli import command_orchard

    return command_orchard()  # the CLI's one builder (tests inject parts there)


def api_command(
    host: Annotated[
        str | None,
        typer.Option(
            help="Interface to listen on (default: ORCHARD_API_HOST, 127.0.0.1). "
            "Anything but loopback needs an API key (`orchard keys create`)."
        ),
    ] = None,
    port: Annotated[int | None, typer.Option(help="Port (default: ORCHARD_API_PORT, 8400).")] = None,
    warm_up: Annotated[bool, typer.Option(help="Load the embedder and the indexes in the background at start.")] = True,
) -> None:
    """Serve Orchard's OpenAI-compatible HTTP API (docs at /docs); starts the embedded model
    server first if none answers. Ctrl-C or SIGTERM stops both.

    Example: `orchard api`, then point any OpenAI client at http://127.0.0.1:8400/v1 with model
    `orchard-rag` (answers from your documents, with citations).
    """
    from orchard.api import serve

    orchard = _orchard()
    settings = orchard.settings
    code = serve(orchard, host=host or settings.api_host, port=port or settings.api_port, echo=_echo, warm_up=warm_up)
    raise typer.Exit(code)


@keys_app.command("create")
def create_key(
    name: Annotated[str, typer.Option("--name", help="What the key is for (e.g. laptop, ci).")],
    user: Annotated[
        str | None, typer.Option("--user", help="Whose conversations the key reaches (default: ORCHARD_DEFAULT_USER).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help='Print {"key", "id", "user", "name"} as JSON.')] = False,
) -> None:
    """Create an API key (shown once; only its hash is stored)."""
    orchard = _orchard()
    created = orchard.keys.create(user=user or orchard.settings.default_user, name=name)
    if as_json:
        typer.echo(json.dumps({"key": created.key, "id": created.info.id, "user": created.info.user, "name": created.info.name}))
        return
    typer.echo(created.key)
    _echo(f"key {created.info.id} for {created.info.user} ({created.info.name}) — copy it now: it is not shown again")


@keys_app.command("list")
def list_keys(as_json: Annotated[bool, typer.Option("--json", help="Print a JSON list.")] = False) -> None:
    """The API keys (never their secrets), newest first."""
    keys = _orchard().keys.list()
    if as_json:
        typer.echo(json.dumps([{"id": k.id, "user": k.user, "name": k.name, "created_at": k.created_at,
                                "last_used_at": k.last_used_at, "revoked_at": k.revoked_at, "active": k.active}
                               for k in keys], indent=2))  # fmt: skip
        return
    if not keys:
        typer.echo("no API keys — create one with `orchard keys create --name NAME`")
    for key in keys:
        state = "active" if key.active else f"revoked {_when(key.revoked_at)}"
        used = _when(key.last_used_at) if key.last_used_at else "never"
        typer.echo(f"{key.id}  {key.user:16} {key.name:20} created {_when(key.created_at)}  last used {used}  {state}")


@keys_app.command("revoke")
def revoke_key(key_id: Annotated[str, typer.Argument(help="The key's id (`orchard keys list`).")]) -> None:
    """Revoke an API key: requests with it get 401 from now on."""
    key = _orchard().keys.revoke(key_id)
    typer.echo(f"revoked key {key.id} ({key.user}, {key.name})")


def _when(stamp: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(stamp)) if stamp else "-"
