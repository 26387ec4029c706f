"""Settings saved from the app: validated, persisted in ``<data_dir>/settings.json``.

The app's settings page changes a few fields (:data:`~orchard.config.EDITABLE`). They are saved
as JSON next to the rest of the app's state; :class:`~orchard.config.Settings` reads them below
the environment and ``.env`` (a pydantic-settings source), so the CLI, the app and the API all
see them.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from orchard.config import EDITABLE, SAVED_SETTINGS_FILE, Settings, saved_overrides


def settings_file(data_dir: Path) -> Path:
    return Path(data_dir) / SAVED_SETTINGS_FILE


def set_elsewhere() -> dict[str, str]:
    """Editable fields the environment or ``.env`` sets (they win over a saved value): field ->
    variable name."""
    from pydantic_settings import DotEnvSettingsSource, EnvSettingsSource

    found = {**DotEnvSettingsSource(Settings)(), **EnvSettingsSource(Settings)()}
    return {name: f"ORCHARD_{name.upper()}" for name in EDITABLE if name in found}


def validate_changes(current: Settings, changes: dict[str, Any]) -> tuple[Settings | None, dict[str, str]]:
    """(the new settings, {}) or (None, {field: message}) for invalid changes."""
    unknown = sorted(set(changes) - set(EDITABLE))
    if unknown:
        return None, {name: "not editable here" for name in unknown}
    pinned = {name: variable for name, variable in set_elsewhere().items() if name in changes and changes[name] != getattr(current, name)}
    if pinned:  # saved, it would be overridden at the next start: say so instead
        return None, {name: f"set by {variable} in the environment (or .env) — change it there" for name, variable in pinned.items()}
    try:
        fields = current.model_dump(exclude_unset=False)
        fields = {k: (v.get_secret_value() if hasattr(v, "get_secret_value") else v) for k, v in fields.items()}
        return Settings(**{**fields, **changes}), {}
    except ValidationError as exc:
        errors: dict[str, str] = {}
        for error in exc.errors():
            field = str(error["loc"][0]) if error["loc"] else "settings"
            errors[field] = error["msg"]
        return None, errors


def save_changes(current: Settings, changes: dict[str, Any]) -> tuple[Settings | None, dict[str, str]]:
    """Validate ``changes`` and persist them with the earlier saved ones (atomically)."""
    new, errors = validate_changes(current, changes)
    if new is None:
        return None, errors
    path = settings_file(current.data_dir)
    merged = {**saved_overrides(current.data_dir), **{k: getattr(new, k) for k in changes}}
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".settings-", suffix=".json", dir=path.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(merged, handle, indent=2)
    os.replace(tmp, path)
    return new, {}


def reset_saved(data_dir: Path) -> None:
    settings_file(data_dir).unlink(missing_ok=True)
