"""Orchard's own routes under ``/api/``: documents, search, conversations, feedback, health.

Documents: in personal mode the library is shared by every user of the API (one store). In team
mode (``ORCHARD_AUTH=oidc``) each caller reads, lists and searches the shared library and their
own private one; uploads go to their own library (``?library=shared`` needs an admin, else 403);
deleting a shared document needs an admin (403); another user's document is not found (404).
Conversations and ratings are the caller's own — another user's conversation or answer is
reported as not found.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends, File, Query, Request, UploadFile
from starlette.concurrency import run_in_threadpool

from orchard.api.auth import caller
from orchard.api.errors import ApiError
from orchard.api.schemas import FeedbackRequest
from orchard.errors import PermissionDenied
from orchard.identity import SHARED_LIBRARY, Identity, personal_identity, private_library

router = APIRouter(prefix="/api")


def _orchard(request: Request) -> Any:
    return request.app.state.orchard


def caller_identity(request: Request, user: str) -> Identity:
    """The caller as the use cases see them: the login's identity when the authentication set
    one (``request.state.identity``); else, in team mode, a user without admin rights (an API
    key names a user, not their rights); in personal mode, the machine's one user."""
    found = getattr(request.state, "identity", None)
    if isinstance(found, Identity) and found.user == user:
        return found
    if _orchard(request).settings.team_mode:
        return Identity(user=user, name=user, team=True)
    return personal_identity(user)


def _denied(exc: PermissionDenied) -> ApiError:
    return ApiError(403, str(exc), "permission_denied")


# --- documents --------------------------------------------------------------------------------


@router.post("/documents", tags=["documents"], summary="Upload and ingest documents")
async def upload_documents(request: Request, files: list[UploadFile] = File(..., description="txt, md, rst, html, pdf, csv"),
                           library: Literal["shared", "private"] | None = Query(
                               None, description="team mode: `private` (your own, the default) or `shared` (admins)"),
                           user: str = Depends(caller)) -> dict[str, Any]:  # fmt: skip
    """Keep the files (as ``uploads/NAME``) and index them; the report lists every file
    (indexed, unchanged, skipped with a reason, failed with the error)."""
    identity = caller_identity(request, user)
    target = {"shared": SHARED_LIBRARY, "private": private_library(identity.user), None: None}[library]
    given = [(f.filename or "", await f.read()) for f in files]
    try:
        report = await run_in_threadpool(lambda: _orchard(request).library.upload(given, identity=identity, library=target))
    except PermissionDenied as exc:
        raise _denied(exc) from exc
    return report.as_dict()


@router.get("/documents", tags=["documents"], summary="The documents you can read")
def list_documents(request: Request, user: str = Depends(caller)) -> dict[str, Any]:
    library, identity = _orchard(request).library, caller_identity(request, user)
    return {"documents": library.documents(identity=identity), "chunks": library.count(identity=identity)}


@router.delete("/documents/{source:path}", tags=["documents"], summary="Remove a document")
def delete_document(source: str, request: Request, library: Literal["shared", "private"] | None = Query(None),
                    user: str = Depends(caller)) -> dict[str, Any]:  # fmt: skip
    identity = caller_identity(request, user)
    target = {"shared": SHARED_LIBRARY, "private": private_library(identity.user), None: None}[library]
    try:
        removed = _orchard(request).library.delete(source, identity=identity, library=target)
    except PermissionDenied as exc:
        raise _denied(exc) from exc
    if not removed:
        raise ApiError(404, f"no document {source!r} in the store (GET /api/documents lists them)", "not_found")
    return {"source": source, "chunks_removed": removed}


@router.get("/search", tags=["documents"], summary="Hybrid search, without the model")
def search(request: Request, q: str = Query(..., min_length=1, description="what to look for"),
           k: int = Query(5, ge=1, le=50), user: str = Depends(caller)) -> dict[str, Any]:  # fmt: skip
    return {"query": q, "results": _orchard(request).library.search(q, k=k, identity=caller_identity(request, user))}


# --- conversations and feedback ---------------------------------------------------------------


@router.get("/conversations", tags=["conversations"], summary="Your conversations, latest first")
def list_conversations(request: Request, user: str = Depends(caller)) -> dict[str, Any]:
    return {"conversations": [_conversation(c) for c in _orchard(request).conversations.list(user)]}


@router.get("/conversations/{conversation_id}", tags=["conversations"], summary="One of your conversations")
def get_conversation(conversation_id: str, request: Request, user: str = Depends(caller)) -> dict[str, Any]:
    conversations = _orchard(request).conversations
    conversation = conversations.get(user, conversation_id)
    messages = conversations.messages(user, conversation_id)
    return {**_conversation(conversation), "messages": [_message(m) for m in messages]}


@router.delete("/conversations/{conversation_id}", tags=["conversations"], summary="Delete one of your conversations")
def delete_conversation(conversation_id: str, request: Request, user: str = Depends(caller)) -> dict[str, Any]:
    _orchard(request).conversations.delete(user, conversation_id)
    return {"deleted": conversation_id}


@router.post("/feedback", tags=["conversations"], summary="Rate an answer (its `orchard.message_id`)")
def rate_answer(body: FeedbackRequest, request: Request, user: str = Depends(caller)) -> dict[str, Any]:
    """Store the rating with the question, the answer and its sources (training data; your
    preference profile is refreshed). Rating an answer again replaces your earlier rating."""
    conversations = _orchard(request).conversations
    message_id = body.message_number()
    conversation_id, _message = conversations.find_answer(user, message_id)  # NotFound unless yours
    record = conversations.rate(user, conversation_id, message_id, body.rating, body.comment)
    return {"id": record.id, "conversation_id": conversation_id, "message_id": str(message_id), "rating": record.rating,
            "comment": record.comment}  # fmt: skip


# --- health -----------------------------------------------------------------------------------


@router.get("/health", tags=["health"], summary="Is the model server up? How many passages?",
            responses={503: {"description": "still starting (warming up): a load balancer should wait"}})  # fmt: skip
def health(request: Request) -> Any:
    """Open to anyone (no key): no paths, no URLs, no user data. 503 ``starting`` while the process
    warms up (embedder, BM25 index), so a load balancer sends it nothing before it can answer;
    200 ``degraded`` when the model server or the store does not answer."""
    from starlette.responses import JSONResponse

    if not request.app.state.ready.is_set():
        return JSONResponse({"status": "starting"}, status_code=503)
    status = _orchard(request).status()
    up = bool(status.get("model_server_up"))
    store_up = status.get("chunks") is not None
    return {
        "status": "ok" if up and store_up else "degraded",
        "store_up": store_up,
        "model_server_up": up,
        "model_server_busy": bool(status.get("model_server_busy")),
        "model": status.get("llm_model"),
        "chunks": status.get("chunks"),
    }


def _conversation(conversation: Any) -> dict[str, Any]:
    return {"id": conversation.id, "title": conversation.title, "mode": conversation.mode,
            "created_at": conversation.created_at, "updated_at": conversation.updated_at}  # fmt: skip


def _message(message: Any) -> dict[str, Any]:
    return {
        "id": str(message.id),
        "role": message.role,
        "content": message.content,
        "created_at": message.created_at,
        "meta": message.meta,
        "alternatives": [_message(v) for v in message.alternatives],
    }
