"""Ratings as training data, and each user's preference profile.

:class:`FeedbackStore` keeps every rating (user, conversation, prompt, the context the model saw,
answer, sources, model, up/down, comment, time) in the state database and exports them as JSONL:

``dpo``
    One row per preference pair, in the *standard preference* layout TRL's ``DPOTrainer`` reads,
    plus where the pair came from (``source``; ``principle``: the failed principles of an AI
    feedback pair, else ``""`` — every row has the same string columns)::

        {"prompt": "What is X?", "chosen": "X is ...", "rejected": "No idea.", "source": "thumbs", "principle": ""}

    Pairs from ratings: grouped by prompt (exact match after collapsing whitespace; with
    ``user=``, only that user's ratings), every distinct up-rated response is paired with every
    distinct down-rated one; a response rated both up and down for the same prompt is contested
    and paired on neither side. ``source`` is ``regenerate`` when both are versions of one turn
    (regenerate + thumbs), else ``thumbs``. Then the stored pairs (:meth:`FeedbackStore.add_pair`):
    ``ai-feedback`` (the critique's revision preferred to the draft that failed ``principle``)
    and ``best-of-n`` (a candidate the user preferred to the one best-of-n picked). ``prompt`` is
    the question as first asked; the retrieved context is in the ``jsonl`` export.
``sft``
    Up-rated answers, in TRL ``SFTTrainer``'s *prompt-completion* layout:
    ``{"prompt": ..., "completion": ...}`` (exact duplicates written once).
``jsonl``
    Every rating with all its fields (``created_at`` as ISO 8601, UTC; ``source``: ``thumbs``).

Load either with ``datasets.load_dataset("json", data_files="dpo.jsonl")``.

:class:`ProfileStore` keeps a short preference profile per user, injected into that user's
prompts (:func:`profile_instructions`). It has two parts: lines the user wrote (``manual``) and
lines :func:`derive_profile` computed from their ratings (``derived``). The user sees and edits
one text; :meth:`ProfileStore.set` splits the edit back: derived lines left unchanged stay
derived (so later feedback can still revise them), changed or new lines become the user's own and
are never overwritten, and derived lines the user deleted are *dismissed* and not derived again.
:meth:`ProfileStore.delete` forgets the profile and the ratings given so far (for the profile;
the ratings remain training data).
"""

from __future__ import annotations

import json
import os
import re
import statistics
import tempfile
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import sqlalchemy as sa

from orchard.db import Database, NotFound, Row, Transaction, now, to_json, validate_user

Rating = Literal["up", "down"]
RATINGS = ("up", "down")
#: Where a preference comes from: a thumb, regenerate + thumbs, the critique, a best-of-n override.
SOURCES = ("thumbs", "regenerate", "ai-feedback", "best-of-n")
STORED_PAIR_SOURCES = ("ai-feedback", "best-of-n")
EXPORT_FORMATS = ("dpo", "sft", "jsonl")
COMMENT_MAX_CHARS = 2000
PROFILE_MAX_CHARS = 600


@dataclass(frozen=True)
class Feedback:
    """One rating. ``context`` and ``sources`` are whatever JSON the caller stored."""

    id: int
    user: str
    prompt: str
    response: str
    rating: Rating
    comment: str | None
    conversation_id: str | None
    message_id: int | None
    context: Any
    sources: tuple[Any, ...]
    model: str | None
    created_at: float


def normalize_prompt(prompt: str) -> str:
    """The key prompts are matched on: whitespace runs collapsed to one space, ends trimmed."""
    return " ".join(prompt.split())


class FeedbackStore:
    """Every rating. ``path``: a state database URL, an SQLite file or a shared :class:`~orchard.db.Database`."""

    def __init__(self, path: str | Path | Database) -> None:
        self.db = Database.coerce(path)

    def add(
        self,
        *,
        user: str,
        prompt: str,
        response: str,
        rating: Rating,
        comment: str | None = None,
        conversation_id: str | None = None,
        message_id: int | None = None,
        context: Any = None,
        sources: Iterable[Any] | None = None,
        model: str | None = None,
    ) -> Feedback:
        """Record a rating. Rating the same message again replaces that user's earlier rating."""
        user = validate_user(user)
        if rating not in RATINGS:
            msg = f"invalid rating {rating!r} — expected 'up' or 'down'"
            raise ValueError(msg)
        if not isinstance(prompt, str) or not prompt.strip():
            msg = "the prompt of a rating is empty — pass the question the answer was for"
            raise ValueError(msg)
        if not isinstance(response, str):
            msg = f"the response must be text, not {type(response).__name__}"
            raise ValueError(msg)
        if comment is not None:
            comment = comment.strip() or None
        if comment is not None and len(comment) > COMMENT_MAX_CHARS:
            msg = f"the comment is {len(comment)} characters long — at most {COMMENT_MAX_CHARS}"
            raise ValueError(msg)
        values = {
            "owner": user,
            "conversation_id": conversation_id,
            "message_id": message_id,
            "prompt": prompt.strip(),
            "context": None if context is None else to_json(context),
            "response": response,
            "sources": to_json(list(sources or [])),
            "model": model,
            "rating": rating,
            "comment": comment,
            "created_at": now(),
        }
        columns = ", ".join(values)
        marks = ", ".join(f":{name}" for name in values)
        assignments = ", ".join(f"{name} = excluded.{name}" for name in values)
        row = self.db.write(lambda conn: conn.execute(  # one statement: two processes rating one message agree
            f"INSERT INTO feedback ({columns}) VALUES ({marks})"
            f" ON CONFLICT (owner, message_id) WHERE message_id IS NOT NULL DO UPDATE SET {assignments}"
            " RETURNING *",
            values,
        ).fetchone())  # fmt: skip
        return _feedback(row)

    def list(self, user: str | None = None) -> list[Feedback]:
        """All ratings (or one user's), oldest first."""
        if user is None:
            rows = self.db.read("SELECT * FROM feedback ORDER BY created_at, id")
        else:
            rows = self.db.read(
                "SELECT * FROM feedback WHERE owner = :owner ORDER BY created_at, id", {"owner": validate_user(user)}
            )
        return [_feedback(row) for row in rows]

    def delete(self, feedback_id: int, *, user: str | None = None) -> None:
        """Delete one rating; with ``user``, only if it is that user's (else :class:`NotFound`)."""
        sql, params = "DELETE FROM feedback WHERE id = :id", {"id": feedback_id}
        if user is not None:
            sql, params = sql + " AND owner = :owner", {"id": feedback_id, "owner": validate_user(user)}
        with self.db.transaction() as conn:
            deleted = conn.execute(sql, params).rowcount
        if not deleted:
            raise NotFound(f"rating {feedback_id!r} not found")

    # Pairs that are not two thumbs --------------------------------------------------------

    def add_pair(
        self,
        *,
        user: str,
        source: str,
        prompt: str,
        chosen: str,
        rejected: str,
        principle: str | None = None,
        conversation_id: str | None = None,
        message_id: int | None = None,
    ) -> dict[str, Any]:
        """Keep a preference pair (``ai-feedback`` or ``best-of-n``); identical pairs once."""
        user = validate_user(user)
        if source not in STORED_PAIR_SOURCES:
            msg = f"unknown pair source {source!r} — expected one of {', '.join(STORED_PAIR_SOURCES)}"
            raise ValueError(msg)
        if not prompt.strip() or not chosen.strip() or not rejected.strip() or chosen.strip() == rejected.strip():
            msg = "a preference pair needs a prompt and two different, non-empty answers"
            raise ValueError(msg)
        values = {"owner": user, "source": source, "prompt": prompt.strip(), "chosen": chosen, "rejected": rejected,
                  "principle": principle, "conversation_id": conversation_id, "message_id": message_id}  # fmt: skip
        with self.db.transaction() as conn:
            same = conn.execute(
                "SELECT id FROM preference_pairs WHERE owner = :owner AND source = :source AND prompt = :prompt"
                " AND chosen = :chosen AND rejected = :rejected",
                {k: values[k] for k in ("owner", "source", "prompt", "chosen", "rejected")},
            ).fetchone()
            if same is None:
                columns = ", ".join([*values, "created_at"])
                marks = ", ".join(f":{name}" for name in [*values, "created_at"])
                conn.execute(f"INSERT INTO preference_pairs ({columns}) VALUES ({marks})", {**values, "created_at": now()})
        shown = {("user" if k == "owner" else k): v for k, v in values.items()}
        return shown

    def stored_pairs(self, user: str | None = None) -> list[dict[str, Any]]:
        """The stored pairs (or one user's), oldest first, in the ``dpo`` export's layout."""
        sql, params = "SELECT * FROM preference_pairs", {}
        if user is not None:
            sql, params = sql + " WHERE owner = :owner", {"owner": validate_user(user)}
        rows = self.db.read(sql + " ORDER BY created_at, id", params)
        keys = ("prompt", "chosen", "rejected", "source")
        return [{**{k: r[k] for k in keys}, "principle": r["principle"] or ""} for r in rows]

    def preference_pairs(self, user: str | None = None) -> list[dict[str, Any]]:
        """Every pair: from ratings (thumbs, regenerate) and stored (ai-feedback, best-of-n)."""
        ratings = self.list(user)
        return [*dpo_pairs(ratings, turn_of=self._turns(ratings)), *self.stored_pairs(user)]

    def _turns(self, ratings: Iterable[Feedback]) -> dict[int, int]:
        """Message id -> the id of its turn (the first version), for rated messages still stored."""
        ids = sorted({f.message_id for f in ratings if f.message_id is not None})
        turns: dict[int, int] = {}
        query = sa.text("SELECT id, COALESCE(parent_id, id) AS turn FROM messages WHERE id IN :ids").bindparams(
            sa.bindparam("ids", expanding=True)
        )
        for start in range(0, len(ids), 500):
            rows = self.db.read(query, {"ids": ids[start : start + 500]})
            turns.update({r["id"]: r["turn"] for r in rows})
        return turns

    # Export ------------------------------------------------------------------------------

    def export(self, fmt: str, *, user: str | None = None) -> list[dict[str, Any]]:
        """The rows of one export format (see the module docstring): ``dpo``, ``sft`` or ``jsonl``."""
        if fmt not in EXPORT_FORMATS:
            msg = f"unknown export format {fmt!r} — expected one of {', '.join(EXPORT_FORMATS)}"
            raise ValueError(msg)
        if fmt == "dpo":
            return self.preference_pairs(user)
        ratings = self.list(user)
        if fmt == "sft":
            rows, seen = [], set()
            for item in ratings:
                key = (normalize_prompt(item.prompt), item.response)
                if item.rating == "up" and key not in seen:
                    seen.add(key)
                    rows.append({"prompt": item.prompt, "completion": item.response})
            return rows
        return [_jsonl_row(item) for item in ratings]

    def write_export(self, fmt: str, path: str | Path, *, user: str | None = None) -> int:
        """Write an export as JSONL (UTF-8, one object per line, atomically); returns the rows."""
        rows = self.export(fmt, user=user)
        target = Path(path).expanduser()
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                for row in rows:
                    out.write(json.dumps(row, ensure_ascii=False) + "\n")
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return len(rows)


def dpo_pairs(ratings: Iterable[Feedback], *, turn_of: dict[int, int] | None = None) -> list[dict[str, str]]:
    """Preference pairs ``{"prompt", "chosen", "rejected", "source", "principle"}`` from ratings (module
    docstring). ``turn_of``: message id -> its turn's id; two versions of one turn make a
    ``regenerate`` pair."""
    turn_of = turn_of or {}
    groups: dict[str, dict[str, Any]] = {}
    for item in sorted(ratings, key=lambda f: (f.created_at, f.id)):
        group = groups.setdefault(
            normalize_prompt(item.prompt), {"prompt": item.prompt, "up": {}, "down": {}}
        )
        turns = group[item.rating].setdefault(item.response, set())  # a dict keeps first-seen order
        if item.message_id in turn_of:
            turns.add(turn_of[item.message_id])
    rows = []
    for group in groups.values():
        contested = group["up"].keys() & group["down"].keys()
        for chosen, chosen_turns in group["up"].items():
            for rejected, rejected_turns in group["down"].items():
                if chosen not in contested and rejected not in contested:
                    source = "regenerate" if chosen_turns & rejected_turns else "thumbs"
                    rows.append({"prompt": group["prompt"], "chosen": chosen, "rejected": rejected, "source": source, "principle": ""})
    return rows


# Preference profile ------------------------------------------------------------------------


@dataclass(frozen=True)
class _Rule:
    axis: str  # rules on one axis oppose each other: the latest comment wins
    line: str
    pattern: re.Pattern[str]


def _rule(axis: str, line: str, pattern: str) -> _Rule:
    return _Rule(axis, line, re.compile(pattern, re.IGNORECASE))


SHORT = "Keep answers short (2-3 sentences)."
DETAIL = "Give more detail."
# Order = order of the lines in a profile. Opposites are listed before the general word they
# contain ("too much code" before "code"), and a match of one blocks the others on its axis.
RULES: tuple[_Rule, ...] = (
    _rule("length", DETAIL,
          r"too short|too brief|more detail|not detailed|elaborate|expand|in depth|more depth"),
    _rule("length", SHORT,
          r"too long|too detailed|shorter|concise|verbose|wordy|\btl;?dr\b|to the point|brief"),
    _rule("code", "Avoid code unless asked.",
          r"too much code|without code|less code|no code(?! example)"),
    _rule("code", "Include a short code example when it helps.",
          r"\bcode\b|(?<!for )example|snippet"),
    _rule("cite", "Cite the sources for every claim.",
          r"\bcit(?:e|es|ing|ation)|\bsources?\b|reference"),
    _rule("level", "Assume expertise; skip the basics.",
          r"too basic|more technical|i'?m an expert|condescending"),
    _rule("level", "Use plain words, explain terms.",
          r"simpler|simplify|jargon|beginner|plain (?:words|english|language)|too technical|confusing"),
    _rule("tone", "Use a friendly, casual tone.",
          r"too formal|less formal|more casual|friendlier|too stiff"),
    _rule("tone", "Use a formal tone.",
          r"too casual|less casual|more formal|professional|too chatty"),
)
_LENGTH_MIN_RATINGS = 3  # down-rated answers needed before answer lengths alone say anything


def derive_profile(feedback: Iterable[Feedback]) -> str:
    """Preference lines (``- ...``) from ratings and comments; a pure, deterministic function.

    Comments are read oldest first; each axis (length, code, cite, level, tone) keeps the rule
    matched last, so "too long" followed later by "more detail please" gives "Give more detail.".
    Within one comment, the match nearest the end wins. Without any comment about length, the
    ratings decide: at least three down-rated answers whose median length is twice (half) that
    of the up-rated ones give "Keep answers short" ("Give more detail").
    """
    items = sorted(feedback, key=lambda f: (f.created_at, f.id))
    chosen: dict[str, _Rule] = {}
    for item in items:
        for axis, rule in _comment_rules(item.comment or "").items():
            chosen[axis] = rule
    if "length" not in chosen:
        up = [len(f.response) for f in items if f.rating == "up"]
        down = [len(f.response) for f in items if f.rating == "down"]
        if up and len(down) >= _LENGTH_MIN_RATINGS:
            up_median, down_median = statistics.median(up), statistics.median(down)
            if down_median >= 2 * up_median:
                chosen["length"] = next(r for r in RULES if r.line == SHORT)
            elif 2 * down_median <= up_median:
                chosen["length"] = next(r for r in RULES if r.line == DETAIL)
    lines = [rule.line for rule in RULES if chosen.get(rule.axis) is rule]
    return "\n".join(f"- {line}" for line in lines)


def _comment_rules(comment: str) -> dict[str, _Rule]:
    """The rule each axis gets from one comment: the match nearest the end. A match inside an
    earlier rule's match on the same axis does not count ("too much code" is not "code")."""
    result: dict[str, _Rule] = {}
    for axis in dict.fromkeys(rule.axis for rule in RULES):
        spans: list[tuple[int, int]] = []
        best: tuple[int, _Rule] | None = None
        for rule in (r for r in RULES if r.axis == axis):
            for match in rule.pattern.finditer(comment):
                if any(match.start() < end and start < match.end() for start, end in spans):
                    continue
                spans.append(match.span())
                if best is None or match.start() > best[0]:
                    best = (match.start(), rule)
        if best is not None:
            result[axis] = best[1]
    return result


def profile_instructions(text: str) -> str:
    """The text appended to a system prompt for this profile; ``''`` for an empty profile."""
    lines = _lines(text)
    if not lines:
        return ""
    return "The user has said they prefer:\n" + "\n".join(f"- {line}" for line in lines)


class ProfileStore:
    """Per-user preference profiles (module docstring: manual, derived and dismissed lines)."""

    def __init__(self, path: str | Path | Database) -> None:
        self.db = Database.coerce(path)

    def get(self, user: str) -> str:
        """The profile as shown and injected: the user's lines, then derived ones; ``''`` if none."""
        row = self._row(validate_user(user))
        return "" if row is None else _render(_lines(row["manual"]), _lines(row["derived"]))

    def set(self, user: str, text: str) -> str:
        """Save the user's edit of :meth:`get`'s text (at most 600 characters); returns the profile."""
        user = validate_user(user)
        if not isinstance(text, str):
            msg = f"the profile must be text, not {type(text).__name__}"
            raise ValueError(msg)
        lines = _lines(text)
        size = len(_render(lines, []))  # as shown: one "- " bullet per line
        if size > PROFILE_MAX_CHARS:
            msg = f"the profile is {size} characters long — at most {PROFILE_MAX_CHARS}; shorten it"
            raise ValueError(msg)
        with self.db.transaction() as conn:
            row = _select_profile(conn, user)
            derived = _lines(row["derived"]) if row else []
            dismissed = set(json.loads(row["dismissed"])) if row else set()
            shown_text = _render(_lines(row["manual"]), derived) if row else ""
            shown = {_key(line) for line in _lines(shown_text)}
            keys = {_key(line) for line in lines}
            derived_keys = {_key(line) for line in derived}
            manual = [line for line in lines if _key(line) not in derived_keys]
            # a derived line the user saw and removed is dismissed; one hidden from view is kept
            kept = [line for line in derived if _key(line) in keys or _key(line) not in shown]
            dismissed |= {_key(line) for line in derived if _key(line) in shown - keys}
            _upsert_profile(conn, user, manual=manual, derived=kept, dismissed=dismissed)
        return self.get(user)

    def update_profile_from_feedback(self, user: str) -> str:
        """Recompute the derived lines from the user's ratings; the user's own lines are kept."""
        user = validate_user(user)

        def update(conn: Transaction) -> None:
            row = _select_profile(conn, user)
            since = row["since"] if row else 0.0
            rows = conn.execute(
                "SELECT * FROM feedback WHERE owner = :owner AND created_at > :since ORDER BY created_at, id",
                {"owner": user, "since": since},
            ).fetchall()
            dismissed = set(json.loads(row["dismissed"])) if row else set()
            derived = [line for line in _lines(derive_profile(_feedback(r) for r in rows))
                       if _key(line) not in dismissed]
            manual = _lines(row["manual"]) if row else []
            _upsert_profile(conn, user, manual=manual, derived=derived, dismissed=dismissed)

        self.db.write(update)
        return self.get(user)

    def delete(self, user: str) -> None:
        """Forget the profile: the user's lines, the derived ones, and (for the profile only)
        the ratings given so far — later ratings start a new profile."""
        user = validate_user(user)
        with self.db.transaction() as conn:
            _upsert_profile(conn, user, manual=[], derived=[], dismissed=set(), since=now())

    def _row(self, user: str) -> Row | None:
        rows = self.db.read("SELECT * FROM profiles WHERE owner = :owner", {"owner": user})
        return rows[0] if rows else None


# Helpers -------------------------------------------------------------------------------------


def _lines(text: str) -> list[str]:
    """Profile lines without bullets or blanks, duplicates dropped."""
    lines: dict[str, str] = {}
    for raw in (text or "").splitlines():
        line = re.sub(r"^\s*(?:[-*•]|\d+[.)])\s*", "", raw).strip()
        if line:
            lines.setdefault(_key(line), line)
    return list(lines.values())


def _key(line: str) -> str:
    return " ".join(line.split()).casefold()


def _render(manual: list[str], derived: list[str]) -> str:
    """The user's lines, then the derived lines that fit in the cap and no manual line opposes."""
    manual_keys = {_key(line) for line in manual}
    opposed = {rule.axis for rule in RULES if _key(rule.line) in manual_keys}
    out = [f"- {line}" for line in manual]
    for line in derived:
        rule = next((r for r in RULES if _key(r.line) == _key(line)), None)
        if _key(line) in manual_keys or (rule is not None and rule.axis in opposed):
            continue
        if len("\n".join([*out, f"- {line}"])) <= PROFILE_MAX_CHARS:
            out.append(f"- {line}")
    return "\n".join(out)


def _select_profile(conn: Transaction, user: str) -> Row | None:
    return conn.execute("SELECT * FROM profiles WHERE owner = :owner" + conn.for_update, {"owner": user}).fetchone()


def _upsert_profile(
    conn: Transaction,
    user: str,
    *,
    manual: list[str],
    derived: list[str],
    dismissed: set[str],
    since: float | None = None,
) -> None:
    """Insert or replace the profile in one statement (``since``: kept unless given)."""
    conn.execute(
        "INSERT INTO profiles (owner, manual, derived, dismissed, since, updated_at)"
        " VALUES (:owner, :manual, :derived, :dismissed, :since, :stamp) ON CONFLICT (owner) DO UPDATE SET"
        " manual = excluded.manual, derived = excluded.derived, dismissed = excluded.dismissed,"
        + (" since = excluded.since," if since is not None else "")
        + " updated_at = excluded.updated_at",
        {"owner": user, "manual": "\n".join(manual), "derived": "\n".join(derived),
         "dismissed": json.dumps(sorted(dismissed)), "since": since or 0.0, "stamp": now()},
    )


def _feedback(row: Row) -> Feedback:
    return Feedback(
        id=row["id"],
        user=row["owner"],
        prompt=row["prompt"],
        response=row["response"],
        rating=row["rating"],
        comment=row["comment"],
        conversation_id=row["conversation_id"],
        message_id=row["message_id"],
        context=None if row["context"] is None else json.loads(row["context"]),
        sources=tuple(json.loads(row["sources"])),
        model=row["model"],
        created_at=row["created_at"],
    )


def _jsonl_row(item: Feedback) -> dict[str, Any]:
    row = asdict(item) | {"source": "thumbs"}
    row["sources"] = list(item.sources)
    row["created_at"] = datetime.fromtimestamp(item.created_at, UTC).isoformat()
    return row
