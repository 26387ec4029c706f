"""Streamlit's login configuration written from Orchard's settings (:mod:`orchard.streamlit_auth`)."""

from __future__ import annotations

import stat
import tomllib
from pathlib import Path

import pytest

from orchard import streamlit_auth
from orchard.config import Settings
from orchard.errors import OrchardError
from orchard.launch import streamlit_command

TEAM = {"auth": "oidc", "oidc_issuer": "https://id.example.org/realms/x/", "oidc_client_id": "orchard",
        "oidc_client_secret": 'se"cr\\et\n'}  # fmt: skip


def team(data: Path, **more: object) -> Settings:
    return Settings(data_dir=data, **{**TEAM, **more})


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_auth_section_is_what_st_login_reads(tmp_path: Path) -> None:
    path = streamlit_auth.write_streamlit_secrets(team(tmp_path), port=8501, address="127.0.0.1")
    section = tomllib.loads(path.read_text())["auth"]
    assert section == {
        "redirect_uri": "http://127.0.0.1:8501/oauth2callback",
        "cookie_secret": section["cookie_secret"],
        "client_id": "orchard",
        "client_secret": 'se"cr\\et\n',  # quoted so TOML reads back exactly what was configured
        "server_metadata_url": "https://id.example.org/realms/x/.well-known/openid-configuration",
    }
    assert len(section["cookie_secret"]) >= 32


def test_the_files_are_private_and_in_the_data_folder(tmp_path: Path) -> None:
    path = streamlit_auth.write_streamlit_secrets(team(tmp_path), port=8501, address="127.0.0.1")
    assert path.parent == tmp_path / "auth"
    assert mode(path) == 0o600 and mode(path.parent) == 0o700
    assert mode(tmp_path / "auth" / "cookie-secret") == 0o600
    assert sorted(p.name for p in path.parent.iterdir()) == ["cookie-secret", "streamlit-secrets.toml"]  # no temporary left


def test_the_generated_cookie_secret_is_kept_and_a_given_one_wins(tmp_path: Path) -> None:
    first = streamlit_auth.cookie_secret(team(tmp_path))
    assert streamlit_auth.cookie_secret(team(tmp_path)) == first  # a restart keeps the logins valid
    assert streamlit_auth.cookie_secret(team(tmp_path / "other")) != first
    shared = "s" * 40
    assert streamlit_auth.cookie_secret(team(tmp_path, oidc_cookie_secret=shared)) == shared  # replicas set one
    with pytest.raises(OrchardError, match="at least 32"):
        streamlit_auth.cookie_secret(team(tmp_path, oidc_cookie_secret="short"))
    (tmp_path / "auth" / "cookie-secret").write_text("")  # a truncated file is replaced, not used
    assert len(streamlit_auth.cookie_secret(team(tmp_path))) >= 32


def test_redirect_uri_follows_the_address_unless_configured(tmp_path: Path) -> None:
    settings = team(tmp_path)
    assert streamlit_auth.redirect_uri(settings, port=9000, address="0.0.0.0") == "http://localhost:9000/oauth2callback"
    assert streamlit_auth.redirect_uri(settings, port=9000, address="::1") == "http://[::1]:9000/oauth2callback"
    given = team(tmp_path, oidc_redirect_uri="https://orchard.example.org/oauth2callback")
    assert streamlit_auth.redirect_uri(given, port=9000, address="0.0.0.0") == "https://orchard.example.org/oauth2callback"


def test_personal_mode_passes_nothing_and_team_mode_names_the_file(tmp_path: Path) -> None:
    assert streamlit_auth.streamlit_flags(Settings(data_dir=tmp_path), port=8501, address="127.0.0.1") == []
    assert not (tmp_path / "auth").exists()
    flags = streamlit_auth.streamlit_flags(team(tmp_path), port=8501, address="127.0.0.1")
    assert flags == ["--secrets.files", str(tmp_path / "auth" / "streamlit-secrets.toml")]
    command = streamlit_command(port=8501, address="127.0.0.1", extra=flags)
    assert command[-2:] == flags and command[command.index("run") + 1].endswith("streamlit_app.py")


def test_the_login_button_names_the_provider(tmp_path: Path) -> None:
    assert streamlit_auth.provider_label(team(tmp_path)) == "id.example.org"


def test_incomplete_settings_write_nothing(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    with pytest.raises(OrchardError, match="team mode"):
        streamlit_auth.auth_section(settings, port=8501, address="127.0.0.1")
    with pytest.raises(ValueError, match="ORCHARD_OIDC_CLIENT_SECRET"):
        Settings(data_dir=tmp_path, auth="oidc", oidc_issuer="https://id.example.org", oidc_client_id="x")
