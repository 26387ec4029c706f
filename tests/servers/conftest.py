"""Fixtures for tests under tests/servers/ (the plugin's, for this folder)."""

from tests.servers.plugin import postgres_server_fixture, postgres_url_fixture, state_url_fixture  # noqa: F401
