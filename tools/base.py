"""What every Orchard tool shares: how it fails.

A tool refuses or fails by raising :class:`ToolRefused` (it would be unsafe or is not allowed) or
:class:`ToolFailed` (it was allowed but did not work: bad SQL, a program that raised). Both are
LangChain ``ToolException``s, and every Orchard tool sets ``handle_tool_error=error_text`` (and
``handle_validation_error=validation_text``), so inside an agent the message comes back to the model as text it can act on and never crashes the run.
``orchard tools run`` calls :func:`run_tool`, which turns the same exceptions into
``{"ok": false, "error": ...}``.
"""

from __future__ import annotations

from typing import Any

from langchain_core.tools import BaseTool, ToolException
from pydantic import ValidationError


class ToolRefused(ToolException):
    """The call was refused before anything ran (a write statement, a forbidden operation)."""


class ToolFailed(ToolException):
    """The call ran and failed (a syntax error, an exception in the program, a timeout)."""


def error_text(exc: ToolException) -> str:
    """The text the model sees for a refused or failed call."""
    kind = "refused" if isinstance(exc, ToolRefused) else "error"
    return f"{kind}: {exc}"


def validation_text(exc: Exception) -> str:
    """The text the model sees when its arguments do not match the tool's schema."""
    return f"error: bad arguments: {exc}"


def run_tool(tool: BaseTool, arguments: dict[str, Any]) -> dict[str, Any]:
    """Run one tool outside an agent: ``{"ok", "output", "error"}`` (never raises ToolException)."""
    strict = tool.model_copy(update={"handle_tool_error": False, "handle_validation_error": False})
    try:
        output = strict.invoke(arguments)
    except ToolException as exc:
        return {"ok": False, "output": "", "error": error_text(exc)}
    except ValidationError as exc:
        return {"ok": False, "output": "", "error": validation_text(exc)}
    return {"ok": True, "output": str(output), "error": None}
