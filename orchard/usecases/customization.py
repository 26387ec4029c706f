"""What a user customizes: prompt templates, the constitution, and the settings the app edits.

The same files ``orchard prompts`` reads: the packaged ones, shadowed by name by the user's
folder (``ORCHARD_PROMPTS_DIR``, default ``<data_dir>/prompts``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from orchard.config import Settings


class Customization:
    """Prompts, the constitution and saved settings for one :class:`Settings`."""

    def __init__(self, *, settings: Settings) -> None:
        self.settings = settings

    @property
    def folder(self) -> Path:
        return self.settings.prompts_path

    # --- prompt templates -----------------------------------------------------------------------

    def prompts(self) -> list[dict[str, str]]:
        from orchard.prompts import list_prompts

        return list_prompts(user_dir=self.folder)

    def check_prompts(self) -> list[str]:
        """Problems of every prompt file, packaged and overrides (empty: all valid). An explicit
        ORCHARD_PROMPTS_DIR must exist; the default folder only once something is saved there."""
        from orchard.prompts import check_prompts

        s = self.settings
        return check_prompts(user_dir=s.prompts_dir or (self.folder if self.folder.is_dir() else None))

    def prompt_text(self, name: str, *, packaged: bool = False) -> str:
        from orchard.prompts import prompt_text

        return prompt_text(name, user_dir=self.folder, packaged=packaged)

    def validate_prompt(self, name: str, text: str) -> list[str]:
        from orchard.prompts import validate_prompt_text

        return validate_prompt_text(name, text)

    def save_prompt(self, name: str, text: str) -> Path:
        from orchard.prompts import save_prompt

        return save_prompt(name, text, user_dir=self.folder)

    def reset_prompt(self, name: str) -> bool:
        from orchard.prompts import reset_prompt

        return reset_prompt(name, user_dir=self.folder)

    # --- the constitution -----------------------------------------------------------------------

    def constitution_text(self, *, packaged: bool = False) -> str:
        from orchard.constitution import constitution_text

        return constitution_text(None if packaged else self.folder)

    def validate_constitution(self, text: str) -> list[str]:
        from orchard.constitution import validate_constitution_text

        return validate_constitution_text(text)

    def save_constitution(self, text: str) -> Path:
        from orchard.constitution import save_constitution

        return save_constitution(text, self.folder)

    def reset_constitution(self) -> bool:
        from orchard.constitution import reset_constitution

        return reset_constitution(self.folder)

    # --- settings -------------------------------------------------------------------------------

    def save_settings(self, changes: dict[str, Any]) -> tuple[Settings | None, dict[str, str]]:
        """Validate and persist ``changes``: (new settings, {}) or (None, {field: message}).
        The caller rebuilds Orchard from the new settings (:meth:`Orchard.with_settings`)."""
        from orchard.user_settings import save_changes

        return save_changes(self.settings, changes)
