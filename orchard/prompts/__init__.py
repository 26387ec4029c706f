"""Prompt templates: YAML files shipped in this package, each overridable by a user file.

A prompt is a YAML file (schema: :class:`PromptFile`). A file of the same name in the user's
prompts directory (``ORCHARD_PROMPTS_DIR``, passed in as ``user_dir``: this module never reads
the environment) shadows the packaged one. Validation is strict: unknown fields, variables used
but not declared (or declared but unused), and variables other than those the code passes
(:data:`REQUIRED_VARIABLES`) are errors naming the file and the field or variable. Templates are
f-string or mustache, never jinja2 (it can run code from the template). Mustache values must be
unescaped, ``{{{x}}}`` or ``{{& x}}``: ``{{x}}`` HTML-escapes them (``<`` becomes ``&lt;``).

Example::

    >>> from orchard.prompts import load_prompt
    >>> prompt = load_prompt("chat")  # with overrides: load_prompt("chat", user_dir=Path(...))
    >>> [m.type for m in prompt.format_messages(question="Hi?", history=[("human", "Yo")])]
    ['system', 'human', 'human']
"""

from __future__ import annotations

import os
import string
import tempfile
from importlib.resources import files
from pathlib import Path
from typing import Any, Literal

import yaml
from langchain_core.prompts import ChatPromptTemplate, MessagesPlaceholder
from langchain_core.prompts.string import mustache_template_vars
from langchain_core.utils import mustache
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from orchard.errors import PromptError

_PACKAGE_DIR = Path(str(files(__name__)))
#: Names of the packaged prompts (one ``<name>.yaml`` file each).
_FOUND = [f.name for f in files(__name__).iterdir() if f.name.endswith(".yaml")]
PROMPT_NAMES: tuple[str, ...] = tuple(sorted(name.removesuffix(".yaml") for name in _FOUND))

#: What the code passes to each prompt; a prompt file must use exactly these variables.
REQUIRED_VARIABLES: dict[str, frozenset[str]] = {
    "rag_answer": frozenset({"context", "question", "history"}),
    "condense_question": frozenset({"history_text", "question"}),
    "chat": frozenset({"question", "history"}),
    "agent_route": frozenset({"question", "tables"}),
    "agent_python": frozenset({"question"}),
    "agent_sql": frozenset({"question", "schema", "dialect"}),
    "agent_answer": frozenset({"question", "tool", "tool_input", "tool_output"}),
}


class PromptMessage(BaseModel):
    """One message; for ``role: placeholder`` the content is a variable name (e.g. history)."""

    model_config = ConfigDict(extra="forbid")
    role: Literal["system", "human", "ai", "placeholder"]
    content: str = Field(min_length=1)
    optional: bool = True  # placeholders only: may the caller omit the variable?

    @model_validator(mode="after")
    def _check_placeholder(self) -> PromptMessage:
        if self.role != "placeholder" and "optional" in self.model_fields_set:
            raise ValueError("'optional' is only allowed on placeholder messages")
        if self.role == "placeholder" and not self.content.isidentifier():
            raise ValueError(f"a placeholder's content is a variable name, got {self.content!r}")
        return self


class PromptFile(BaseModel):
    """Schema of a prompt YAML file."""

    model_config = ConfigDict(extra="forbid")
    description: str = Field(min_length=1)
    template_format: Literal["f-string", "mustache"] = "f-string"
    input_variables: list[str]
    messages: list[PromptMessage] = Field(min_length=1)

    @field_validator("template_format", mode="before")
    @classmethod
    def _refuse_jinja2(cls, value: Any) -> Any:
        if isinstance(value, str) and value.strip().lower().startswith("jinja"):
            raise ValueError(
                "jinja2 is not accepted: a jinja2 template can execute code (template injection);"
                " use f-string or mustache"
            )
        return value


def _fmt(names: Any) -> str:
    return "{" + ", ".join(sorted(names)) + "}"


def _describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = err["loc"]
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".")
        if err["type"] == "extra_forbidden":
            allowed = ", ".join((PromptFile if len(loc) == 1 else PromptMessage).model_fields)
            parts.append(f"unknown field '{where}' (allowed: {allowed})")
        elif err["type"] == "missing":
            parts.append(f"missing required field '{where}'")
        else:
            msg = err["msg"].removeprefix("Value error, ")
            if err["type"] == "string_type" and isinstance(err.get("input"), dict):
                msg += ' (unquoted {x} is a YAML mapping: write "{x}")'
            parts.append(f"field '{where}': {msg}")
    return "; ".join(parts)


def _template_variables(text: str, template_format: str, where: str) -> set[str]:
    """Top-level variables of one message's template; ValueError if unsafe or malformed."""
    if template_format == "f-string":
        try:
            parsed = list(string.Formatter().parse(text))
        except ValueError as exc:
            hint = "write {{ and }} for literal braces"
            raise ValueError(f"{where}: invalid f-string ({exc}; {hint})") from None
        fields = [(field, spec, conv) for _, field, spec, conv in parsed if field is not None]
        for field, spec, conversion in fields:
            if not field.isidentifier():
                raise ValueError(f"{where}: only plain variable names are allowed, got {{{field}}}")
            if spec or conversion:
                raise ValueError(f"{where}: no format spec or conversion allowed in {{{field}}}")
        return {field for field, _, _ in fields}
    try:
        tokens = list(mustache.tokenize(text))
    except mustache.ChevronError as exc:
        raise ValueError(f"{where}: invalid mustache template ({exc})") from None
    for kind, key in tokens:
        if kind == "variable":
            raise ValueError(
                f"{where}: {{{{{key}}}}} HTML-escapes its value (< becomes &lt;);"
                f" write {{{{{{{key}}}}}}} or {{{{& {key}}}}}"
            )
        plain = key == "." or key.isidentifier()
        if kind in {"no escape", "section", "inverted section"} and not plain:
            raise ValueError(f"{where}: only plain variable names are allowed, got {{{{{key}}}}}")
    return set(mustache_template_vars(text))


def load_prompt_file(
    path: Path, *, expected: set[str] | frozenset[str] | None
) -> ChatPromptTemplate:
    """Read, validate and build one prompt file (the validating core of :func:`load_prompt`).

    Args:
        path: The YAML file.
        expected: The variables the caller will pass (the file must use exactly these; the name in
            messages is ``path.stem``), or None to check only that the file is self-consistent.

    Returns:
        The prompt; placeholders become optional ``MessagesPlaceholder`` unless ``optional: false``.

    Raises:
        PromptError: Unreadable file, YAML syntax error, schema error or variable mismatch; the
            message names the file and the field or variable.
    """
    prefix = f"prompt file {path}"
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise PromptError(f"{prefix}: cannot be read ({exc})") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or exc
        raise PromptError(f"{prefix}: invalid YAML{at}: {problem}") from None
    if not isinstance(raw, dict):
        raise PromptError(f"{prefix}: expected a mapping of description, input_variables, messages")
    try:
        spec = PromptFile.model_validate(raw)
    except ValidationError as exc:
        raise PromptError(f"{prefix}: {_describe(exc)}") from None

    problems: list[str] = []
    placeholders = {m.content for m in spec.messages if m.role == "placeholder"}
    text_used: set[str] = set()
    for i, msg in enumerate(spec.messages):
        try:
            if msg.role != "placeholder":
                where = f"messages[{i}]"
                text_used |= _template_variables(msg.content, spec.template_format, where)
        except ValueError as exc:
            problems.append(str(exc))
    if problems:  # the variable checks below would only add noise
        raise PromptError(f"{prefix}: " + "; ".join(problems))
    used = placeholders | text_used
    declared = set(spec.input_variables)
    if dupes := {v for v in declared if spec.input_variables.count(v) > 1}:
        problems.append(f"input_variables lists {_fmt(dupes)} more than once")
    if undeclared := used - declared:
        verb = "variable {} is" if len(undeclared) == 1 else "variables {} are"
        problems.append(f"{verb.format(_fmt(undeclared))} used but not declared in input_variables")
    if unused := declared - used:
        unused_list = ", ".join(sorted(unused))
        problems.append(f"declares input_variables [{unused_list}] that no message uses")
    if both := placeholders & text_used:
        problems.append(f"variable {_fmt(both)} is used both as a placeholder and in message text")
    if expected is not None and used != set(expected):
        missing, extra = set(expected) - used, used - set(expected)
        detail = [f"missing: {_fmt(missing)}"] if missing else []
        detail += [f"not supplied by the code: {_fmt(extra)}"] if extra else []
        want = f"expected variables {_fmt(expected)} for '{path.stem}'"
        problems.append(f"{want}, {', '.join(detail)}")
    if problems:
        raise PromptError(f"{prefix}: " + "; ".join(problems))

    parts: list[Any] = [
        MessagesPlaceholder(variable_name=m.content, optional=m.optional)
        if m.role == "placeholder"
        else (m.role, m.content)
        for m in spec.messages
    ]
    try:
        return ChatPromptTemplate.from_messages(parts, template_format=spec.template_format)
    except (ValueError, KeyError) as exc:  # defensive: the checks above should catch everything
        raise PromptError(f"{prefix}: {exc}") from None


def prompt_source(name: str, *, user_dir: Path | None = None) -> tuple[Path, str]:
    """Say which file :func:`load_prompt` reads: ``(path, "override" | "packaged")``.

    Raises:
        PromptError: ``name`` is not a packaged prompt (the message lists the known names).
    """
    if name not in PROMPT_NAMES:
        raise PromptError(f"unknown prompt {name!r}; known prompts: {', '.join(PROMPT_NAMES)}")
    if user_dir is not None and (override := Path(user_dir) / f"{name}.yaml").exists():
        return override, "override"
    return _PACKAGE_DIR / f"{name}.yaml", "packaged"


def load_prompt(name: str, *, user_dir: Path | None = None) -> ChatPromptTemplate:
    """Load a prompt by name; ``<user_dir>/<name>.yaml`` shadows the packaged file.

    Args:
        name: One of :data:`PROMPT_NAMES`.
        user_dir: The user's prompts directory, or None for the packaged prompts only.

    Raises:
        PromptError: Unknown name, or the file in use is invalid or does not use exactly the
            variables in :data:`REQUIRED_VARIABLES`.
    """
    path, _ = prompt_source(name, user_dir=user_dir)
    return load_prompt_file(path, expected=REQUIRED_VARIABLES.get(name))


def _description(path: Path) -> str:
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        return raw["description"].strip().splitlines()[0]
    except Exception:
        return "(invalid prompt file: run `orchard prompts check`)"


def list_prompts(*, user_dir: Path | None = None) -> list[dict[str, str]]:
    """One row per packaged prompt: ``name``, ``origin``, ``path`` (a str), ``description``.

    Does not validate: a broken override's description says to run the check.
    """
    rows = []
    for name in PROMPT_NAMES:
        path, origin = prompt_source(name, user_dir=user_dir)
        description = _description(path)
        rows.append({"name": name, "origin": origin, "path": str(path), "description": description})
    return rows


def check_prompts(*, user_dir: Path | None = None) -> list[str]:
    """Validate every packaged prompt and every ``*.yaml`` / ``*.yml`` file in ``user_dir``.

    Returns:
        One message per problem; empty means all good. A ``user_dir`` that does not exist, and an
        override file that matches no packaged prompt (so it would be ignored), are problems too.
    """
    targets = [(_PACKAGE_DIR / f"{name}.yaml", name) for name in PROMPT_NAMES]
    problems: list[str] = []
    if user_dir is not None and not Path(user_dir).is_dir():
        problems.append(f"prompts directory {user_dir} does not exist or is not a directory")
    elif user_dir is not None:
        for path in sorted(Path(user_dir).iterdir()):
            if path.suffix not in {".yaml", ".yml"}:
                continue
            if path.name == "constitution.yaml":  # the critique's principles live here too
                from orchard.constitution import validate_constitution_text

                problems += [f"constitution file {path}: {p}" for p in validate_constitution_text(path.read_text(encoding="utf-8"))]
                continue
            if path.stem not in PROMPT_NAMES:
                known = ", ".join(PROMPT_NAMES)
                problems.append(f"prompt file {path}: no prompt of that name ({known}); ignored")
            elif path.suffix == ".yml":
                problems.append(f"prompt file {path}: ignored, rename it to {path.stem}.yaml")
            else:
                targets.append((path, path.stem))
    for path, name in targets:
        try:
            load_prompt_file(path, expected=REQUIRED_VARIABLES.get(name))
        except PromptError as exc:
            problems.append(str(exc))
    return problems


# --- editing (the app's prompt editor; the same files `orchard prompts` reads) ---------------


def prompt_text(name: str, *, user_dir: Path | None = None, packaged: bool = False) -> str:
    """The text of the file in use (or of the packaged default with ``packaged=True``)."""
    path, _ = prompt_source(name, user_dir=None if packaged else user_dir)
    return path.read_text(encoding="utf-8")


def validate_prompt_text(name: str, text: str) -> list[str]:
    """Problems of ``text`` as the prompt ``name`` (empty: valid). Messages name the field or the
    variable, without the temporary file's path."""
    if name not in PROMPT_NAMES:
        return [f"unknown prompt {name!r}; known prompts: {', '.join(PROMPT_NAMES)}"]
    with tempfile.TemporaryDirectory(prefix="orchard-prompt-") as tmp:
        path = Path(tmp) / f"{name}.yaml"
        path.write_text(text, encoding="utf-8")
        try:
            load_prompt_file(path, expected=REQUIRED_VARIABLES.get(name))
        except PromptError as exc:
            message = str(exc).replace(f"prompt file {path}: ", "").replace(str(path), f"{name}.yaml")
            return [line.strip() for line in message.split("; ") if line.strip()]
    return []


def save_prompt(name: str, text: str, *, user_dir: Path) -> Path:
    """Validate ``text`` and write it as the user's override of ``name`` (atomically).

    Raises:
        PromptError: invalid (nothing written; every problem in the message) or not writable.
    """
    if problems := validate_prompt_text(name, text):
        raise PromptError(f"prompt {name} not saved: " + "; ".join(problems))
    target = Path(user_dir) / f"{name}.yaml"
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{name}-", suffix=".yaml", dir=target.parent)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text if text.endswith("\n") else text + "\n")
        os.replace(tmp, target)
    except OSError as exc:
        raise PromptError(f"prompt file {target}: cannot be written ({exc})") from None
    return target


def reset_prompt(name: str, *, user_dir: Path) -> bool:
    """Delete the user's override of ``name``; True if there was one."""
    prompt_source(name)  # unknown names are an error
    target = Path(user_dir) / f"{name}.yaml"
    if target.exists():
        target.unlink()
        return True
    return False
