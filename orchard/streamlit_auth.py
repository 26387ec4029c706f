"""Streamlit's login configuration, written from Orchard's settings (team mode, ``ORCHARD_AUTH=oidc``).

Streamlit's own ``st.login`` (OpenID Connect through Authlib) reads an ``[auth]`` section from its
secrets files: ``redirect_uri``, ``cookie_secret``, ``client_id``, ``client_secret`` and
``server_metadata_url``. The deployer never writes that file: ``orchard app`` writes it from the
``ORCHARD_OIDC_*`` settings into the data folder (``<data_dir>/auth/streamlit-secrets.toml``, mode
0600 in a 0700 folder, never in the repository) and points Streamlit at it with its
``secrets.files`` option (``--secrets.files PATH``, :func:`streamlit_flags`).

The cookie secret signs the identity cookie Streamlit keeps after a login: whoever knows it can
forge any identity. It is ``ORCHARD_OIDC_COOKIE_SECRET`` when set (several replicas behind a load
balancer must all be given the same one), else generated once per data folder
(``<data_dir>/auth/cookie-secret``, 0600) and kept.

Example::

    >>> from orchard.config import Settings
    >>> s = Settings(auth="oidc", oidc_issuer="https://id.example.org/", oidc_client_id="orchard",
    ...              oidc_client_secret="s3cret", oidc_cookie_secret="x" * 32)
    >>> auth_section(s, port=8501, address="127.0.0.1")["server_metadata_url"]
    'https://id.example.org/.well-known/openid-configuration'
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from orchard.errors import OrchardError

if TYPE_CHECKING:
    from orchard.config import Settings

__all__ = [
    "auth_section",
    "cookie_secret",
    "provider_label",
    "redirect_uri",
    "secrets_path",
    "streamlit_flags",
    "write_streamlit_secrets",
]

AUTH_DIR = "auth"
SECRETS_FILE = "streamlit-secrets.toml"
COOKIE_SECRET_FILE = "cookie-secret"
MIN_COOKIE_SECRET_CHARS = 32
WILDCARD_ADDRESSES = frozenset({"", "0.0.0.0", "::", "[::]"})


def auth_dir(settings: Settings) -> Path:
    return Path(settings.data_dir) / AUTH_DIR


def secrets_path(settings: Settings) -> Path:
    """Where the secrets file Streamlit reads is written."""
    return auth_dir(settings) / SECRETS_FILE


def redirect_uri(settings: Settings, *, port: int, address: str) -> str:
    """``ORCHARD_OIDC_REDIRECT_URI``, else the app's own address + ``/oauth2callback`` (the URL
    ``orchard app`` prints; ``localhost`` when it listens on every interface). Register this exact
    URL at the OpenID provider."""
    if settings.oidc_redirect_uri:
        return settings.oidc_redirect_uri
    host = "localhost" if address.strip() in WILDCARD_ADDRESSES else address.strip()
    host = f"[{host}]" if ":" in host and not host.startswith("[") else host
    return f"http://{host}:{port}/oauth2callback"


def server_metadata_url(issuer: str) -> str:
    return issuer.rstrip("/") + "/.well-known/openid-configuration"


def provider_label(settings: Settings) -> str:
    """What the login button names: ``ORCHARD_OIDC_PROVIDER_NAME``, else the issuer's host
    (``login.example.org``)."""
    if settings.oidc_provider_name:
        return settings.oidc_provider_name
    parts = urlsplit(settings.oidc_issuer or "")
    return parts.netloc or (settings.oidc_issuer or "your organisation")


def _private_dir(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path, 0o700)


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` readable by the owner only (0600), atomically (a reader never
    sees half a file; the file is never, even briefly, readable by others)."""
    _private_dir(path.parent)
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
        os.replace(temporary, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()


def cookie_secret(settings: Settings) -> str:
    """``ORCHARD_OIDC_COOKIE_SECRET``, else the data folder's generated one (created once).

    Raises:
        OrchardError: the configured secret is shorter than 32 characters.
    """
    if settings.oidc_cookie_secret is not None:
        given = settings.oidc_cookie_secret.get_secret_value()
        if len(given) < MIN_COOKIE_SECRET_CHARS:
            msg = (f"ORCHARD_OIDC_COOKIE_SECRET is {len(given)} characters long: use at least {MIN_COOKIE_SECRET_CHARS} "
                   "random ones, e.g. `python -c 'import secrets; print(secrets.token_urlsafe(32))'`")  # fmt: skip
            raise OrchardError(msg)
        return given
    path = auth_dir(settings) / COOKIE_SECRET_FILE
    _private_dir(path.parent)
    try:  # O_EXCL: of two processes starting at once on one data folder, one writes, both read it
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        kept = path.read_text(encoding="utf-8").strip()
        if len(kept) >= MIN_COOKIE_SECRET_CHARS:
            return kept
        path.unlink()  # empty or truncated (a crash while writing it): make a new one
        return cookie_secret(settings)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(secrets.token_urlsafe(48) + "\n")
    return path.read_text(encoding="utf-8").strip()


def auth_section(settings: Settings, *, port: int, address: str) -> dict[str, str]:
    """The ``[auth]`` section Streamlit's ``st.login()`` (no provider name) reads.

    Raises:
        OrchardError: not team mode, or the OpenID settings are incomplete.
    """
    if not settings.team_mode:
        msg = "Streamlit's login is configured only in team mode (ORCHARD_AUTH=oidc)"
        raise OrchardError(msg)
    if not (settings.oidc_issuer and settings.oidc_client_id and settings.oidc_client_secret):
        msg = "ORCHARD_AUTH=oidc needs ORCHARD_OIDC_ISSUER, ORCHARD_OIDC_CLIENT_ID and ORCHARD_OIDC_CLIENT_SECRET"
        raise OrchardError(msg)
    return {
        "redirect_uri": redirect_uri(settings, port=port, address=address),
        "cookie_secret": cookie_secret(settings),
        "client_id": settings.oidc_client_id,
        "client_secret": settings.oidc_client_secret.get_secret_value(),
        "server_metadata_url": server_metadata_url(settings.oidc_issuer),
    }


def to_toml(section: str, values: dict[str, str]) -> str:
    """One TOML table of strings (JSON's string escapes are TOML basic-string escapes)."""
    lines = ["# Written by `orchard app` from the ORCHARD_OIDC_* settings; rewritten at every start.", f"[{section}]"]
    lines += [f"{key} = {json.dumps(value, ensure_ascii=True)}" for key, value in values.items()]
    return "\n".join(lines) + "\n"


def write_streamlit_secrets(settings: Settings, *, port: int, address: str) -> Path:
    """Write Streamlit's secrets file (only the ``[auth]`` section, 0600); its path."""
    path = secrets_path(settings)
    _write_private(path, to_toml("auth", auth_section(settings, port=port, address=address)))
    return path


def streamlit_flags(settings: Settings, *, port: int, address: str) -> list[str]:
    """The ``streamlit run`` flags of the login configuration: in team mode the secrets file is
    written and named as Streamlit's only secrets file; in personal mode none (unchanged)."""
    if not settings.team_mode:
        return []
    return ["--secrets.files", str(write_streamlit_secrets(settings, port=port, address=address))]
