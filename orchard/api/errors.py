"""Which status each failure gets, as an OpenAI error object (:func:`openai_wire.error_response`).

=================================  ======  ==============================
failure                            status  ``code``
=================================  ======  ==============================
bad JSON, bad fields, bad role     400     ``invalid_json`` / ``invalid_request``
no documents for a documents mode  400     ``empty_store``
no or bad API key                  401     ``invalid_api_key``
unknown model, conversation ...    404     ``model_not_found`` / ``not_found``
request body over the limit        413     ``request_too_large``
the model server refused           502     ``model_server_error``
the model server is down           503     ``model_server_unavailable``
=================================  ======  ==============================
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse

from orchard.api.openai_wire import error_body, error_response
from orchard.errors import (
    EmptyStore,
    ModelAssemblyError,
    ModelServerUnavailable,
    NotFound,
    OrchardError,
    PermissionDenied,
    PromptError,
    StoreInUse,
    StoreMismatch,
    StoreUnavailable,
)

log = logging.getLogger("orchard.api")


@dataclass(eq=False)
class ApiError(Exception):
    """A failure the API reports as it is (status, message, code, param)."""

    status: int
    message: str
    code: str | None = None
    param: str | None = None
    type: str = "invalid_request_error"

    def response(self, headers: dict[str, str] | None = None) -> JSONResponse:
        return error_response(self.status, self.message, type=self.type, code=self.code, param=self.param, headers=headers)

    def body(self) -> dict[str, Any]:
        return error_body(self.message, type=self.type, code=self.code, param=self.param)


def api_error(exc: BaseException) -> ApiError:
    """The :class:`ApiError` for an exception from a use case (or the framework)."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, NotFound):
        return ApiError(404, str(exc), "not_found")
    if isinstance(exc, PermissionDenied):
        return ApiError(403, str(exc), "permission_denied")
    if isinstance(exc, StoreUnavailable):
        return ApiError(503, str(exc), "store_unavailable", type="server_error")
    if isinstance(exc, StoreInUse):
        return ApiError(503, str(exc), "store_in_use", type="server_error")
    if isinstance(exc, EmptyStore):
        return ApiError(400, str(exc), "empty_store")
    if isinstance(exc, ModelServerUnavailable | ModelAssemblyError):  # down, or cannot be started here
        return ApiError(503, str(exc), "model_server_unavailable", type="server_error")
    if isinstance(exc, PromptError | StoreMismatch):  # the server's own files: its operator must act
        log.error("server configuration problem: %s", exc)
        return ApiError(500, str(exc), "server_configuration", type="server_error")
    if isinstance(exc, OrchardError):
        if _from_model_server(exc):
            return ApiError(502, str(exc), "model_server_error", type="server_error")
        return ApiError(400, str(exc), "invalid_request")
    if isinstance(exc, StarletteHTTPException):
        code = {401: "invalid_api_key", 404: "not_found", 405: "method_not_allowed", 413: "request_too_large"}
        return ApiError(exc.status_code, str(exc.detail), code.get(exc.status_code))
    log.error("unexpected failure", exc_info=exc)
    return ApiError(500, "internal error in Orchard — see the server's log", "internal_error", type="server_error")


def _from_model_server(exc: BaseException) -> bool:
    import openai

    return isinstance(exc.__cause__, openai.APIError)


def validation_error(exc: RequestValidationError, content_type: str = "application/json") -> ApiError:
    """Pydantic's complaints about a request, as one 400 naming the first bad field."""
    errors = list(exc.errors())
    first = errors[0] if errors else {}
    if first.get("type") == "json_invalid":
        detail = (first.get("ctx") or {}).get("error", "")
        return ApiError(400, f"the request body is not valid JSON ({detail}) — send a JSON object", "invalid_json")
    if tuple(first.get("loc", ())) == ("body",) and "json" not in content_type.lower():
        msg = f"the request body must be JSON sent with `Content-Type: application/json` (got {content_type or 'none'!r})"
        return ApiError(400, msg, "invalid_json")
    param = _field(first.get("loc", ())) or None
    problems = "; ".join(f"{_field(e.get('loc', ())) or 'body'}: {e.get('msg')}" for e in errors[:5])
    return ApiError(400, f"invalid request — {problems}", "invalid_request", param=param)


def _field(loc: Any) -> str:
    """``("body", "messages", 0, "role")`` -> ``messages.0.role`` (``("query", "k")`` -> ``k``)."""
    parts = [str(part) for part in loc]
    if parts and parts[0] in ("body", "query", "path", "header", "cookie"):
        parts = parts[1:]
    return ".".join(parts)


def install_error_handlers(app: FastAPI) -> None:
    """Every failure leaves as an OpenAI error object."""

    async def on_api_error(_request: Request, exc: Exception) -> JSONResponse:
        return api_error(exc).response()

    async def on_validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        return validation_error(exc, request.headers.get("content-type", "")).response()

    app.add_exception_handler(RequestValidationError, on_validation)  # type: ignore[arg-type]
    for kind in (ApiError, StarletteHTTPException, OrchardError, ValueError, Exception):
        app.add_exception_handler(kind, on_api_error)
