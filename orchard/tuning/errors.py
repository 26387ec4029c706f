"""The tuning package's one error type: something the user can fix, and the message says how."""

from __future__ import annotations

from orchard.errors import OrchardError


class TuningError(OrchardError):
    """Training, conversion or loading of an adapter failed in a way the user can act on."""
