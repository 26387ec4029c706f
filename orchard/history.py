"""Conversations: stored in the state database, scoped by user, resumed after a restart.

Every method takes the user name first. A conversation or message of another user behaves exactly
like a missing one (:class:`~orchard.db.NotFound`), so nobody can see, change or even confirm the
existence of someone else's history.

Regenerate keeps the earlier answer: an assistant message is a *turn* with one or more versions
(rows of ``messages`` whose ``parent_id`` is the first version's id). One version per turn is
current; :meth:`ConversationStore.messages` returns the current versions in order, each carrying the
others as ``alternatives``. Each version has its own id, so each can be rated on its own — a
preferred and a rejected answer to the same prompt.

Example::

    >>> store = ConversationStore(tmp / "orchard.sqlite3")  # doctest: +SKIP
    >>> chat = store.create("ana")  # doctest: +SKIP
    >>> store.add_message("ana", chat.id, "user", "What is in Q3.pdf?")  # doctest: +SKIP
    >>> store.get("ana", chat.id).title  # doctest: +SKIP
    'What is in Q3.pdf?'
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from orchard.db import Database, NotFound, Row, Transaction, now, to_json, validate_user

DEFAULT_TITLE = "New chat"
TITLE_MAX_CHARS = 200
AUTO_TITLE_CHARS = 60
MODE_MAX_CHARS = 32
ROLES = ("user", "assistant")


@dataclass(frozen=True)
class Conversation:
    """One conversation. ``tables`` are file paths attached as the agent's tables."""

    id: str
    user: str
    title: str
    mode: str
    db_url: str | None
    tables: tuple[str, ...]
    created_at: float
    updated_at: float


@dataclass(frozen=True)
class Message:
    """One message (for an assistant turn: its current version).

    ``turn_id`` is the id of the turn's first version (equal to ``id`` unless regenerated);
    ``alternatives`` holds the turn's other versions, oldest first (empty on those versions).
    """

    id: int
    conversation_id: str
    role: str
    content: str
    meta: dict[str, Any]
    created_at: float
    turn_id: int
    alternatives: tuple[Message, ...] = field(default=())


def auto_title(question: str) -> str:
    """A title from the first question: whitespace collapsed, cut at a word near 60 characters."""
    text = " ".join(question.split())
    if len(text) <= AUTO_TITLE_CHARS:
        return text or DEFAULT_TITLE
    cut = text[: AUTO_TITLE_CHARS - 1]
    if " " in cut[AUTO_TITLE_CHARS // 2 :]:
        cut = cut[: cut.rindex(" ")]
    return cut.rstrip(" ,.;:") + "…"


class ConversationStore:
    """Conversations and their messages, per user. ``path``: a state database URL, an SQLite file
    or a shared :class:`~orchard.db.Database`."""

    def __init__(self, path: str | Path | Database) -> None:
        self.db = Database.coerce(path)

    # Conversations -----------------------------------------------------------------------

    def create(self, user: str, title: str | None = None, mode: str = "auto") -> Conversation:
        """A new, empty conversation. Without a title, the first question becomes the title."""
        user = validate_user(user)
        title = _clean_title(title) if title is not None else None
        stamp = now()
        conversation_id = uuid.uuid4().hex
        values = {"id": conversation_id, "owner": user, "title": title, "mode": _clean_mode(mode), "stamp": stamp}
        self.db.write(lambda conn: conn.execute(
            "INSERT INTO conversations (id, owner, title, mode, created_at, updated_at)"
            " VALUES (:id, :owner, :title, :mode, :stamp, :stamp)", values))  # fmt: skip
        return self.get(user, conversation_id)

    def list(self, user: str) -> list[Conversation]:
        """The user's conversations, most recently updated (last message) first."""
        rows = self.db.read(
            "SELECT * FROM conversations WHERE owner = :owner ORDER BY updated_at DESC, created_at DESC, id",
            {"owner": validate_user(user)},
        )
        return [_conversation(row) for row in rows]

    def get(self, user: str, conversation_id: str) -> Conversation:
        """The conversation; :class:`NotFound` if it does not exist or is not this user's."""
        user = validate_user(user)
        rows = self.db.read(
            "SELECT * FROM conversations WHERE id = :id AND owner = :owner", {"id": str(conversation_id), "owner": user}
        )
        if not rows:
            raise _conversation_not_found(user, conversation_id)
        return _conversation(rows[0])

    def rename(self, user: str, conversation_id: str, title: str) -> Conversation:
        """Set the title (trimmed, 1-200 characters). Renaming does not move it in the list."""
        return self._update(user, conversation_id, title=_clean_title(title))

    def set_mode(self, user: str, conversation_id: str, mode: str) -> Conversation:
        """Set the answer mode (``auto``, ``rag``, ``chat``, ``agent``, ...) for this conversation."""
        return self._update(user, conversation_id, mode=_clean_mode(mode))

    def set_data_sources(
        self,
        user: str,
        conversation_id: str,
        db_url: str | None = None,
        tables: Iterable[str | Path] = (),
    ) -> Conversation:
        """Replace the agent's data sources: a database URL and the attached table files.

        The URL is stored as given, credentials included, in the private state file.
        """
        if isinstance(tables, (str, Path)):
            msg = "tables must be a list of file paths, not a single path"
            raise ValueError(msg)
        paths = list(dict.fromkeys(str(table) for table in tables))  # unique, in order
        url = db_url.strip() if isinstance(db_url, str) and db_url.strip() else None
        return self._update(user, conversation_id, db_url=url, tables=json.dumps(paths))

    def delete(self, user: str, conversation_id: str) -> None:
        """Delete the conversation and all its messages. :class:`NotFound` if not this user's."""
        user = validate_user(user)
        with self.db.transaction() as conn:
            deleted = conn.execute(
                "DELETE FROM conversations WHERE id = :id AND owner = :owner", {"id": str(conversation_id), "owner": user}
            ).rowcount
        if not deleted:
            raise _conversation_not_found(user, conversation_id)

    # Messages ----------------------------------------------------------------------------

    def add_message(
        self,
        user: str,
        conversation_id: str,
        role: str,
        content: str,
        *,
        meta: dict[str, Any] | None = None,
    ) -> Message:
        """Append a message; ``meta`` (sources, tool_calls, route, model, ...) is stored as JSON.

        The first user message of an untitled conversation becomes its title.
        """
        user = validate_user(user)
        role = _check_role(role)
        content = _check_content(content)

        def add(conn: Transaction) -> int:
            self._owned(conn, user, conversation_id)
            stamp = now()
            message_id = conn.execute(
                "INSERT INTO messages (conversation_id, role, content, meta, created_at)"
                " VALUES (:conversation, :role, :content, :meta, :stamp) RETURNING id",
                {"conversation": str(conversation_id), "role": role, "content": content, "meta": to_json(meta or {}),
                 "stamp": stamp},
            ).scalar()
            conn.execute(  # the first question titles an untitled conversation
                "UPDATE conversations SET updated_at = :stamp, title = COALESCE(title, :title) WHERE id = :id",
                {"stamp": stamp, "title": auto_title(content) if role == "user" else None, "id": str(conversation_id)},
            )
            return message_id

        return self._turn(user, self.db.write(add))

    def messages(self, user: str, conversation_id: str) -> list[Message]:
        """The conversation in order: the current version of each turn, with its alternatives."""
        user = validate_user(user)
        self.get(user, conversation_id)
        rows = self.db.read(
            "SELECT * FROM messages WHERE conversation_id = :conversation ORDER BY COALESCE(parent_id, id), id",
            {"conversation": str(conversation_id)},
        )
        return _group_turns(rows)

    def add_alternative(
        self, user: str, message_id: int, content: str, meta: dict[str, Any] | None = None, *, current: bool = True
    ) -> Message:
        """Regenerate: add a new version of an assistant message and make it current.

        ``message_id`` may be any version of the turn. The earlier versions are kept as
        alternatives. Returns the new version (with the turn's other versions as alternatives).
        ``current=False`` adds it as an alternative only (best-of-n's candidates not picked).
        """
        user = validate_user(user)
        content = _check_content(content)

        def add(conn: Transaction) -> int:
            row = self._owned_message(conn, user, message_id)
            if row["role"] != "assistant":
                msg = f"message {message_id} is a {row['role']} message — only answers can be regenerated"
                raise ValueError(msg)
            turn_id = row["parent_id"] or row["id"]
            stamp = now()
            if current:
                conn.execute("UPDATE messages SET is_current = 0 WHERE id = :turn OR parent_id = :turn", {"turn": turn_id})
            new_id = conn.execute(
                "INSERT INTO messages (conversation_id, parent_id, is_current, role, content, meta, created_at)"
                " VALUES (:conversation, :turn, :current, 'assistant', :content, :meta, :stamp) RETURNING id",
                {"conversation": row["conversation_id"], "turn": turn_id, "current": int(current), "content": content,
                 "meta": to_json(meta or {}), "stamp": stamp},
            ).scalar()
            conn.execute(
                "UPDATE conversations SET updated_at = :stamp WHERE id = :id", {"stamp": stamp, "id": row["conversation_id"]}
            )
            return new_id

        return self._turn(user, self.db.write(add))

    def set_current(self, user: str, message_id: int) -> Message:
        """Make one version of a turn the one shown (the user preferred an earlier answer)."""
        user = validate_user(user)
        with self.db.transaction() as conn:
            row = self._owned_message(conn, user, message_id)
            turn_id = row["parent_id"] or row["id"]
            conn.execute(
                "UPDATE messages SET is_current = CASE WHEN id = :chosen THEN 1 ELSE 0 END"
                " WHERE id = :turn OR parent_id = :turn",
                {"chosen": row["id"], "turn": turn_id},
            )
        return self._turn(user, row["id"])

    # Internals ---------------------------------------------------------------------------

    def _update(self, user: str, conversation_id: str, **columns: Any) -> Conversation:
        user = validate_user(user)
        assignments = ", ".join(f"{name} = :{name}" for name in columns)
        with self.db.transaction() as conn:
            changed = conn.execute(  # the column names are ours, never the caller's
                f"UPDATE conversations SET {assignments} WHERE id = :id AND owner = :owner",
                {**columns, "id": str(conversation_id), "owner": user},
            ).rowcount
        if not changed:
            raise _conversation_not_found(user, conversation_id)
        return self.get(user, conversation_id)

    @staticmethod
    def _owned(conn: Transaction, user: str, conversation_id: str) -> None:
        found = conn.execute(
            "SELECT 1 FROM conversations WHERE id = :id AND owner = :owner", {"id": str(conversation_id), "owner": user}
        ).fetchone()
        if found is None:
            raise _conversation_not_found(user, conversation_id)

    @staticmethod
    def _owned_message(conn: Transaction, user: str, message_id: int) -> Row:
        row = conn.execute(  # locked on Postgres: two regenerates of one turn do not both stay current
            "SELECT m.* FROM messages m JOIN conversations c ON c.id = m.conversation_id"
            " WHERE m.id = :id AND c.owner = :owner" + (" FOR UPDATE OF m" if conn.for_update else ""),
            {"id": _message_id(message_id), "owner": user},
        ).fetchone()
        if row is None:
            raise NotFound(f"message {message_id!r} not found for user {user!r}")
        return row

    def _turn(self, user: str, message_id: int) -> Message:
        """The version ``message_id`` with the other versions of its turn as alternatives."""
        rows = self.db.read(
            "SELECT m.* FROM messages m JOIN conversations c ON c.id = m.conversation_id"
            " WHERE c.owner = :owner AND COALESCE(m.parent_id, m.id) ="
            " (SELECT COALESCE(parent_id, id) FROM messages WHERE id = :id) ORDER BY m.id",
            {"owner": user, "id": message_id},
        )
        versions = [_message(row) for row in rows]
        chosen = next(v for v in versions if v.id == message_id)
        return replace(chosen, alternatives=tuple(v for v in versions if v.id != message_id))


def _group_turns(rows: list[Row]) -> list[Message]:
    turns: dict[int, list[Row]] = {}
    for row in rows:  # already ordered by turn, then version
        turns.setdefault(row["parent_id"] or row["id"], []).append(row)
    result = []
    for versions in turns.values():
        current = next((r for r in versions if r["is_current"]), versions[-1])
        others = tuple(_message(r) for r in versions if r["id"] != current["id"])
        result.append(replace(_message(current), alternatives=others))
    return result


def _conversation(row: Row) -> Conversation:
    return Conversation(
        id=row["id"],
        user=row["owner"],
        title=row["title"] if row["title"] is not None else DEFAULT_TITLE,
        mode=row["mode"],
        db_url=row["db_url"],
        tables=tuple(json.loads(row["tables"])),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def _message(row: Row) -> Message:
    return Message(
        id=row["id"],
        conversation_id=row["conversation_id"],
        role=row["role"],
        content=row["content"],
        meta=json.loads(row["meta"]),
        created_at=row["created_at"],
        turn_id=row["parent_id"] or row["id"],
    )


def _conversation_not_found(user: str, conversation_id: object) -> NotFound:
    return NotFound(f"conversation {conversation_id!r} not found for user {user!r}")


def _message_id(message_id: object) -> int:
    if isinstance(message_id, bool) or not isinstance(message_id, int):
        msg = f"a message id is an integer, not {message_id!r}"
        raise ValueError(msg)
    return message_id


def _clean_title(title: str) -> str:
    text = " ".join(str(title).split())
    if not text:
        msg = "the title is empty — give the conversation a name"
        raise ValueError(msg)
    if len(text) > TITLE_MAX_CHARS:
        msg = f"the title is {len(text)} characters long — at most {TITLE_MAX_CHARS} are allowed"
        raise ValueError(msg)
    return text


def _clean_mode(mode: str) -> str:
    text = mode.strip() if isinstance(mode, str) else ""
    if not text or len(text) > MODE_MAX_CHARS:
        msg = f"invalid mode {mode!r} — expected a short name such as 'auto', 'rag' or 'chat'"
        raise ValueError(msg)
    return text


def _check_role(role: str) -> str:
    if role not in ROLES:
        msg = f"invalid role {role!r} — expected one of {', '.join(ROLES)}"
        raise ValueError(msg)
    return role


def _check_content(content: str) -> str:
    if not isinstance(content, str):
        msg = f"message content must be text, not {type(content).__name__}"
        raise ValueError(msg)
    return content
