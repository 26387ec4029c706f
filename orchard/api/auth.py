"""Who is asking: API keys (``Authorization: Bearer orch_...``), or personal mode.

* Team mode (``ORCHARD_AUTH=oidc``): every request but the health check and the documentation
  needs an active key, wherever the API is served — loopback included, with or without keys in
  the store: there is no personal fallback. The key's owner (an OIDC identity's stored key; people
  make their keys in the app, Settings → API keys) is the user.
* Keys configured (``orchard keys create``): every request needs an active key; the key's owner
  is the user whose conversations and ratings the request reaches.
* No active key and the API served on loopback: personal mode — open, every request is
  ``settings.default_user`` (whatever bearer an OpenAI client sends).
* Served beyond loopback: keys are always required (``orchard api`` refuses to start without
  one; revoking the last one closes the API, it never opens it).

The check is ASGI middleware, so it runs before a body is read: a caller without a key learns
nothing about the request it sent (not even whether it was valid JSON).
"""

from __future__ import annotations

import ipaddress
from typing import Any

import anyio
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from orchard.api.openai_wire import error_response
from orchard.identity import Identity, personal_identity

#: Paths anyone may read: the documentation and the health check.
PUBLIC_PATHS = frozenset({"/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json", "/api/health"})
CREATE_KEY = "create one with `orchard keys create --name NAME`"
CREATE_KEY_TEAM = "create one in the app: Settings → API keys"


def is_loopback_host(host: str) -> bool:
    """True for an interface only this machine reaches (127.0.0.0/8, ::1, localhost)."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:
        return False


def bearer_token(headers: Headers) -> str | None:
    scheme, _, token = headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


class KeyAuth:
    """ASGI middleware: sets ``request.state.user`` and ``request.state.identity`` or answers 401
    (see the module docstring).

    Args:
        app: the ASGI app inside.
        keys: the key store (``orchard.keys``: ``active_count()``, ``verify(key)``).
        default_user: the user of personal mode.
        personal: personal mode is allowed (the API is served on loopback, not in team mode).
        team: team mode: a key always, and the identities are team identities.
    """

    def __init__(self, app: ASGIApp, *, keys: Any, default_user: str, personal: bool, team: bool = False) -> None:
        self.app = app
        self.keys = keys
        self.default_user = default_user
        self.team = team
        self.personal = personal and not team

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in PUBLIC_PATHS:
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        if self.personal and not from_this_machine(headers):
            # Served on loopback, the API must not answer a page from elsewhere: a cross-site
            # form post carries the page's Origin, a DNS-rebinding attack a foreign Host.
            msg = "requests to an API served on loopback must come from this machine (Host and Origin 127.0.0.1, localhost or [::1])"
            await error_response(403, msg, code="forbidden_origin")(scope, receive, send)
            return
        token = bearer_token(headers)
        user, problem = await anyio.to_thread.run_sync(self.identify, token)
        if user is None:
            response = error_response(401, problem, code="invalid_api_key", headers={"www-authenticate": "Bearer"})
            await response(scope, receive, send)
            return
        state = scope.setdefault("state", {})
        state["user"] = user
        state["identity"] = self.identity_of(user)
        await self.app(scope, receive, send)

    def identity_of(self, user: str) -> Identity:
        """The identity a request acts as: personal mode's one person (an admin of their own
        machine), or in team mode the key owner's team identity (not an admin through a key)."""
        if not self.team:
            return personal_identity(user)
        return Identity(user=user, name=user, team=True)

    def identify(self, token: str | None) -> tuple[str | None, str]:
        """(the caller's user, '') or (None, what is wrong and what to do)."""
        create = CREATE_KEY_TEAM if self.team else CREATE_KEY
        if self.personal and self.keys.active_count() == 0:
            return self.default_user, ""
        if token is None:
            if self.team:
                return None, f"this Orchard is in team mode: every request needs an API key — send `Authorization: Bearer <key>` ({create})"
            if not self.personal and self.keys.active_count() == 0:
                return None, f"this API is served beyond loopback and has no active API key: {create}"
            return None, f"no API key: send `Authorization: Bearer <key>` ({create})"
        key = self.keys.verify(token)
        if key is None:
            return None, f"invalid or revoked API key: check the key, or {create}"
        return key.user, ""


LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "::1"})


def _hostname(value: str) -> str:
    """``"[::1]:8400"`` -> ``"::1"``, ``"localhost:8400"`` -> ``"localhost"`` (scheme dropped)."""
    from urllib.parse import urlsplit

    return (urlsplit(value if "//" in value else f"//{value}").hostname or "").lower()


def from_this_machine(headers: Headers) -> bool:
    """Host names loopback, and so does Origin when a browser sends one."""
    origin = headers.get("origin")
    return _hostname(headers.get("host", "")) in LOOPBACK_NAMES and (origin is None or _hostname(origin) in LOOPBACK_NAMES)


_bearer = HTTPBearer(auto_error=False, description="An Orchard API key (`orchard keys create`); none in personal mode.")


def caller(request: Request, _credentials: HTTPAuthorizationCredentials | None = Depends(_bearer)) -> str:
    """The user of the request (a dependency; :class:`KeyAuth` has checked the key)."""
    return str(request.state.user)


def caller_identity(request: Request, _credentials: HTTPAuthorizationCredentials | None = Depends(_bearer)) -> Identity:
    """The :class:`~orchard.identity.Identity` of the request (a dependency, like :func:`caller`):
    what the use cases that check permissions (libraries, audit) are given."""
    return request.state.identity
