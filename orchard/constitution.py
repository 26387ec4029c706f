"""The constitution: the principles an answer is critiqued against (``--critique``), as YAML.

A packaged default (``orchard/constitution.yaml``) is shadowed by ``constitution.yaml`` in the
user's prompts directory (``ORCHARD_PROMPTS_DIR``, passed in as ``user_dir``: this module never
reads the environment), the same folder that overrides the prompt files. Schema (strict: unknown
fields are errors)::

    description: what this constitution is for
    principles:                 # at least one, checked in this order
      - name: harmless          # an identifier, unique
        critique: "Does the answer ...?"  # a yes/no question: YES means the answer has a problem
        revision: "Refuse in one or two sentences ..."  # how to rewrite when it does
        replacement: "I can't help with that ..."  # optional: the reply to give instead of a
                                # rewrite (no model call; later principles are not checked)
        use_context: false      # optional: show this check the sources/context (costs prompt time)

The UI's editor uses :func:`constitution_text`, :func:`validate_constitution_text` (one message
per problem, each naming the field, e.g. ``principles[1].revision: field required``),
:func:`save_constitution` (refuses invalid text) and :func:`reset_constitution`.

Example::

    >>> from orchard.constitution import load_constitution
    >>> [p.name for p in load_constitution().principles]
    ['harmless', 'honest', 'helpful']
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from orchard.errors import PromptError

FILE_NAME = "constitution.yaml"
#: The packaged default constitution.
PACKAGED_PATH = Path(__file__).resolve().parent / FILE_NAME


class ConstitutionError(PromptError):
    """The constitution file is invalid (or cannot be saved); the message names the field."""


class Principle(BaseModel):
    """One principle: a critique request (a check) and a revision request (the fix)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    name: str = Field(min_length=1)
    critique: str = Field(min_length=1)
    revision: str = Field(min_length=1)
    use_context: bool = False
    replacement: str | None = Field(default=None, min_length=1)

    @field_validator("name")
    @classmethod
    def _identifier(cls, value: str) -> str:
        if not value.isidentifier():
            raise ValueError(f"must be an identifier (letters, digits, _), got {value!r}")
        return value


class Constitution(BaseModel):
    """Schema of the constitution YAML file."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    description: str = Field(min_length=1)
    principles: list[Principle] = Field(min_length=1)

    @field_validator("principles")
    @classmethod
    def _unique_names(cls, principles: list[Principle]) -> list[Principle]:
        first: dict[str, int] = {}
        for i, principle in enumerate(principles):
            if principle.name in first:
                raise ValueError(
                    f"duplicate principle name {principle.name!r}"
                    f" (principles[{first[principle.name]}] and principles[{i}])"
                )
            first[principle.name] = i
        return principles

    def principle(self, name: str) -> Principle:
        """The principle called ``name`` (KeyError if there is none)."""
        for principle in self.principles:
            if principle.name == name:
                return principle
        raise KeyError(name)


def _where(loc: tuple[Any, ...]) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".") or "file"


def _describe(exc: ValidationError, raw: dict[str, Any]) -> list[str]:
    """One message per error: ``principles[1].revision: field required (principle 'honest')``."""
    problems = []
    for err in exc.errors():
        loc = err["loc"]
        where = _where(loc)
        kind = err["type"]
        if kind == "extra_forbidden":
            model = Constitution if len(loc) == 1 else Principle
            msg = f"unknown field (allowed: {', '.join(model.model_fields)})"
        elif kind == "missing":
            msg = "field required"
        elif kind == "too_short" and loc == ("principles",):
            msg = "at least one principle is required"
        elif kind == "too_short" or (kind == "string_too_short"):
            msg = "must not be empty"
        else:
            msg = err["msg"].removeprefix("Value error, ")
            if kind == "string_type" and isinstance(err.get("input"), dict):
                msg += ' (unquoted {x} or "key: value" is a YAML mapping: quote the text)'
        # Name the principle too, when the error is inside one that has a name.
        if len(loc) >= 3 and loc[0] == "principles" and isinstance(loc[1], int) and loc[2] != "name":
            items = raw.get("principles")
            item = items[loc[1]] if isinstance(items, list) and loc[1] < len(items) else None
            if isinstance(item, dict) and isinstance(item.get("name"), str) and item["name"]:
                msg += f" (principle {item['name']!r})"
        problems.append(f"{where}: {msg}")
    return problems


def _parse(text: str) -> tuple[Constitution | None, list[str]]:
    """The constitution in ``text``, or None and one message per problem."""
    if not text.strip():
        return None, ["the file is empty: it needs 'description' and 'principles'"]
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or exc
        return None, [f"invalid YAML{at}: {problem}"]
    if not isinstance(raw, dict):
        return None, ["expected a mapping with 'description' and 'principles'"]
    try:
        return Constitution.model_validate(raw), []
    except ValidationError as exc:
        return None, _describe(exc, raw)


def validate_constitution_text(text: str) -> list[str]:
    """Check the text of a constitution file (for the UI editor).

    Returns:
        One message per problem, naming the field (``principles[1].revision: field required``),
        duplicate names, an empty principle list or a YAML syntax error with its line; empty means
        valid.
    """
    return _parse(text)[1]


def parse_constitution(text: str, *, source: str = "constitution") -> Constitution:
    """The constitution in ``text``.

    Raises:
        ConstitutionError: ``<source>: <problem>; <problem>...``.
    """
    constitution, problems = _parse(text)
    if constitution is None:
        raise ConstitutionError(f"{source}: " + "; ".join(problems))
    return constitution


def constitution_source(user_dir: Path | None = None) -> tuple[Path, Literal["override", "packaged"]]:
    """Which file :func:`load_constitution` reads: ``(path, "override" | "packaged")``."""
    if user_dir is not None and (override := Path(user_dir) / FILE_NAME).exists():
        return override, "override"
    return PACKAGED_PATH, "packaged"


def constitution_text(user_dir: Path | None = None) -> str:
    """The text of the constitution file in use (what the UI editor starts from)."""
    path, _ = constitution_source(user_dir)
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConstitutionError(f"constitution file {path}: cannot be read ({exc})") from None


def load_constitution(user_dir: Path | None = None) -> Constitution:
    """Load the constitution; ``<user_dir>/constitution.yaml`` shadows the packaged one.

    Args:
        user_dir: The user's prompts directory (``ORCHARD_PROMPTS_DIR``), or None for the packaged
            constitution only.

    Raises:
        ConstitutionError: The file in use cannot be read or is invalid; the message names the
            file and every problem.
    """
    path, _ = constitution_source(user_dir)
    return parse_constitution(constitution_text(user_dir), source=f"constitution file {path}")


def save_constitution(text: str, user_dir: Path | None) -> Path:
    """Validate ``text`` and write it as the user's override (creating ``user_dir`` if needed).

    The write is atomic (a temporary file renamed over the old one), so a failure never leaves a
    half-written constitution.

    Returns:
        The path written.

    Raises:
        ConstitutionError: ``text`` is invalid (nothing is written; the message lists every
            problem), there is no prompts directory configured, or the file cannot be written.
    """
    if user_dir is None:
        raise ConstitutionError(
            "no prompts directory to save the constitution in: set ORCHARD_PROMPTS_DIR"
        )
    if problems := validate_constitution_text(text):
        raise ConstitutionError("constitution not saved: " + "; ".join(problems))
    directory = Path(user_dir)
    target = directory / FILE_NAME
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".constitution-", suffix=".yaml", dir=directory)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text if text.endswith("\n") else text + "\n")
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise ConstitutionError(f"constitution file {target}: cannot be written ({exc})") from None
    return target


def reset_constitution(user_dir: Path | None) -> bool:
    """Delete the user's override so the packaged constitution applies again.

    Returns:
        True if an override was deleted, False if there was none.
    """
    if user_dir is None:
        return False
    target = Path(user_dir) / FILE_NAME
    try:
        target.unlink()
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise ConstitutionError(f"constitution file {target}: cannot be deleted ({exc})") from None
    return True
