"""The few error types a user sees. Each message says what to do next."""

from __future__ import annotations


class OrchardError(Exception):
    """Base class: a problem the user can fix; the message says how."""


class ModelServerUnavailable(OrchardError):
    """Nothing answers at the configured model endpoint."""

    def __init__(self, base_url: str, detail: str = "") -> None:
        msg = f"model server unreachable at {base_url}"
        if detail:
            msg += f" ({detail})"
        msg += (
            " — start the embedded one with `orchard serve`, or point ORCHARD_LLM_BASE_URL at a"
            " running OpenAI-compatible server (vLLM: see the README)"
        )
        super().__init__(msg)
        self.base_url = base_url


class ModelAssemblyError(OrchardError):
    """The packaged model is missing or does not match its checksum."""


class StoreMismatch(OrchardError):
    """The store was built with another embedding model."""


class PromptError(OrchardError):
    """A prompt file is invalid; the message names the file and the field or variable."""


class EmptyStore(OrchardError):
    """Nothing has been ingested yet."""

    def __init__(self, where: str) -> None:
        super().__init__(
            f"the document store at {where} is empty — add documents with `orchard ingest PATH...`"
        )


class NotFound(OrchardError, KeyError):
    """No such record for this user. Another user's record is reported exactly like a missing one."""

    def __str__(self) -> str:  # KeyError would print the message quoted
        return str(self.args[0]) if self.args else "not found"


class PermissionDenied(OrchardError):
    """The asker may not do this (team mode: not an admin, not logged in, not theirs to share)."""


class StoreUnavailable(OrchardError):
    """The Chroma server does not answer; the message names it and what to do."""


class StoreInUse(OrchardError):
    """Another process holds the embedded document store; the message says how to share it."""
