"""Conversations, their turns and their ratings — the faces store nothing themselves.

:meth:`Conversations.ask` stores the question *before* it is answered (a failed answer loses
nothing: the question stays, and :meth:`Conversations.answer_pending` answers it later), streams
the answer, and stores it with everything needed to show it again (sources, tool calls, the
critique, timings) when the stream ends; the closing :class:`~orchard.events.Done` then carries
the stored ``message_id``. :meth:`Conversations.regenerate` keeps the earlier answer as an
alternative, so the same prompt has a preferred and a rejected answer to learn from.

Every method takes the user first and only ever reaches that user's conversations.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from orchard.components import Components
from orchard.db import NotFound
from orchard.errors import OrchardError
from orchard.events import AnswerEvent, AnswerResult, AnswerStream, Done
from orchard.usecases.answering import Answering, AnswerRequest
from orchard.usecases.library import safe_file_name

TABLE_SUFFIXES = (".csv", ".tsv", ".xlsx")


def message_meta(result: AnswerResult, *, requested_mode: str) -> dict[str, Any]:
    """What a stored answer keeps: everything to draw it again and to learn from its rating."""
    meta = result.as_dict()
    meta.pop("answer", None)
    meta["requested_mode"] = requested_mode
    if result.candidates is not None:  # the candidates not picked are stored as versions of their own
        meta["candidates"] = {k: v for k, v in meta["candidates"].items() if k != "texts"} | {"n": len(result.candidates.texts)}
    return meta


class Conversations:
    """The conversations use case (see the module docstring)."""

    def __init__(self, *, components: Components, answers: Answering) -> None:
        self.components = components
        self.answers = answers

    @property
    def store(self) -> Any:
        return self.components.conversations

    # --- conversations ----------------------------------------------------------------------------

    def list(self, user: str) -> list[Any]:
        return self.store.list(user)

    def get(self, user: str, conversation_id: str) -> Any:
        return self.store.get(user, conversation_id)

    def create(self, user: str, *, mode: str = "auto", title: str | None = None) -> Any:
        return self.store.create(user, title=title, mode=mode)

    def rename(self, user: str, conversation_id: str, title: str) -> Any:
        return self.store.rename(user, conversation_id, title)

    def set_mode(self, user: str, conversation_id: str, mode: str) -> Any:
        return self.store.set_mode(user, conversation_id, mode)

    def messages(self, user: str, conversation_id: str) -> list[Any]:
        return self.store.messages(user, conversation_id)

    def show_version(self, user: str, message_id: int) -> Any:
        """Make another version of an answer (regenerated ones) the one shown."""
        return self.store.set_current(user, message_id)

    def delete(self, user: str, conversation_id: str) -> None:
        """Delete a conversation, its messages and the files attached to it (ratings stay: they
        are training data, deleted from the feedback view)."""
        conversation = self.store.get(user, conversation_id)
        self._release_tools(conversation.db_url, conversation.tables)
        self.store.delete(user, conversation_id)
        shutil.rmtree(self.tables_dir(conversation_id), ignore_errors=True)

    # --- attached data ----------------------------------------------------------------------------

    def tables_dir(self, conversation_id: str) -> Path:
        return self.components.settings.data_dir / "tables" / safe_file_name(conversation_id)

    def attach_table(self, user: str, conversation_id: str, name: str, data: bytes) -> Any:
        """Keep a CSV/TSV/XLSX with a conversation (for the table tool); the updated conversation."""
        conversation = self.store.get(user, conversation_id)  # the user's own, or NotFound
        safe = safe_file_name(name)
        if not safe or Path(safe).suffix.lower() not in TABLE_SUFFIXES:
            msg = f"{name}: attach a CSV, TSV or XLSX file"
            raise OrchardError(msg)
        folder = self.tables_dir(conversation_id)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / safe
        self._release_tools(None, [str(path)])  # replaced in place: its old session is stale
        path.write_bytes(data)
        tables = [*[t for t in conversation.tables if t != str(path)], str(path)]
        return self.store.set_data_sources(user, conversation_id, db_url=conversation.db_url, tables=tables)

    def detach_table(self, user: str, conversation_id: str, path: str | Path) -> Any:
        """Forget an attached file (and delete Orchard's copy); the updated conversation."""
        conversation = self.store.get(user, conversation_id)
        remaining = [t for t in conversation.tables if t != str(path)]
        updated = self.store.set_data_sources(user, conversation_id, db_url=conversation.db_url, tables=remaining)
        self._release_tools(None, [str(path)])
        target = Path(path).resolve()
        if target.is_relative_to(self.tables_dir(conversation_id).resolve()) and target.is_file():
            target.unlink()
        return updated

    def set_database(self, user: str, conversation_id: str, db_url: str | None) -> Any:
        """Attach a database (SQLAlchemy URL) for the sql tool, or detach it with None."""
        conversation = self.store.get(user, conversation_id)
        if conversation.db_url and conversation.db_url != db_url:
            self._release_tools(conversation.db_url, [])
        return self.store.set_data_sources(user, conversation_id, db_url=db_url or None, tables=conversation.tables)

    def _release_tools(self, db_url: str | None, tables: Any) -> None:
        sessions = self.components.tool_sessions
        if db_url:
            sessions.release(db_url=db_url)
        for table in tables or ():
            sessions.release(table=table)

    # --- asking -----------------------------------------------------------------------------------

    def ask(self, user: str, conversation_id: str, question: str, *, critique: bool = False,
            history: Any = None, mode: str | None = None, best_of: int | None = None) -> AnswerStream:  # fmt: skip
        """Store ``question`` now, then stream its answer (stored when the stream ends).

        ``history``: the turns before it, when they are not those stored (the HTTP API passes the
        client's messages); default: the conversation's stored turns. ``mode``: answer in this
        mode rather than the conversation's (the API's ``model`` picks it per request).
        ``best_of``: candidates per answer (None: ``ORCHARD_BEST_OF``); those not picked are
        stored as the answer's alternatives.

        Raises:
            NotFound: not this user's conversation (nothing is stored).
        """
        conversation = self.store.get(user, conversation_id)
        earlier = self.store.messages(user, conversation_id) if history is None else None
        self.store.add_message(user, conversation_id, "user", question)
        self.components.audit.record(user, "ask", conversation_id, mode=mode or conversation.mode)  # who and when, not what
        turns = _history(earlier) if history is None else list(history)
        return self._answer(user, conversation, question, turns, critique=critique, store=self._appender(user, conversation_id),
                            mode=mode, best_of=best_of)  # fmt: skip

    def answer_pending(self, user: str, conversation_id: str, *, critique: bool = False, best_of: int | None = None) -> AnswerStream:
        """Answer the conversation's last question, which has no answer yet (an earlier failure)."""
        conversation = self.store.get(user, conversation_id)
        messages = self.store.messages(user, conversation_id)
        if not messages or messages[-1].role != "user":
            msg = "this conversation has no unanswered question"
            raise OrchardError(msg)
        return self._answer(user, conversation, messages[-1].content, _history(messages[:-1]), critique=critique,
                            store=self._appender(user, conversation_id), best_of=best_of)  # fmt: skip

    def regenerate(self, user: str, conversation_id: str, message_id: int, *, critique: bool = False,
                   best_of: int | None = None) -> AnswerStream:  # fmt: skip
        """Answer the question of answer ``message_id`` again; the new answer is stored as its
        alternative (and shown), the old one kept."""
        conversation = self.store.get(user, conversation_id)
        messages = self.store.messages(user, conversation_id)
        index = next((i for i, m in enumerate(messages) if message_id in {m.id, *(v.id for v in m.alternatives)}), None)
        if index is None or messages[index].role != "assistant":
            raise NotFound(f"no answer {message_id} in this conversation")
        question_at = max((i for i, m in enumerate(messages[:index]) if m.role == "user"), default=None)
        if question_at is None:
            raise NotFound(f"answer {message_id} has no question before it")
        target = messages[index].id

        def store(result: AnswerResult, meta: dict[str, Any]) -> int:
            return self.store.add_alternative(user, target, result.answer, meta).id

        return self._answer(user, conversation, messages[question_at].content, _history(messages[:question_at]),
                            critique=critique, store=store, best_of=best_of)  # fmt: skip

    def _answer(self, user: str, conversation: Any, question: str, history: list[dict[str, str]], *, critique: bool,
                store: Any, mode: str | None = None, best_of: int | None = None) -> AnswerStream:  # fmt: skip
        request = AnswerRequest(
            question=question,
            mode=mode or conversation.mode,
            history=tuple(history),
            user=user,
            db_url=conversation.db_url,
            tables=tuple(conversation.tables),
            critique=critique,
            best_of=best_of,
        )
        stream = self.answers.stream(request)

        def events() -> Iterator[AnswerEvent]:
            for event in stream:
                if isinstance(event, Done):
                    meta = message_meta(event.result, requested_mode=request.mode)
                    message_id = store(event.result, meta)
                    self._keep_candidates(user, message_id, event.result, meta)
                    self._keep_revision(user, conversation.id, message_id, event.result)
                    event = Done(event.result.with_ids(conversation_id=conversation.id, message_id=message_id))
                yield event

        return AnswerStream(events())

    def _keep_candidates(self, user: str, message_id: int, result: AnswerResult, meta: dict[str, Any]) -> None:
        """Best-of-n: the candidates not picked become alternatives of the answer (the user can
        open and rate them; preferring one to the pick is a ``best-of-n`` pair)."""
        ranked = result.candidates
        if ranked is None:
            return
        for rank, text in enumerate(ranked.texts):
            if rank == ranked.picked or not text.strip() or text.strip() == result.answer.strip():
                continue
            score = None if ranked.scores is None else ranked.scores[rank]
            version = {k: v for k, v in meta.items() if k not in ("candidates", "repair", "draft", "critiques")}
            version["best_of"] = {"rank": rank, "score": score, "picked_message_id": message_id, "scorer": ranked.scorer}
            self.store.add_alternative(user, message_id, text, version, current=False)

    def _keep_revision(self, user: str, conversation_id: str, message_id: int, result: AnswerResult) -> None:
        """The critique revised a draft that failed principles: revision over draft is an
        ``ai-feedback`` pair (the constitution's label)."""
        failed = [c.principle for c in result.critiques if c.needs_revision]
        draft = (result.draft or "").strip()
        if not failed or not draft or draft == result.answer.strip() or not result.answer.strip():
            return
        self.components.feedback.add_pair(user=user, source="ai-feedback", prompt=result.question, chosen=result.answer,
                                          rejected=draft, principle=", ".join(failed), conversation_id=conversation_id,
                                          message_id=message_id)  # fmt: skip

    def _appender(self, user: str, conversation_id: str) -> Any:
        def store(result: AnswerResult, meta: dict[str, Any]) -> int:
            return self.store.add_message(user, conversation_id, "assistant", result.answer, meta=meta).id

        return store

    # --- ratings and the preference profile --------------------------------------------------------

    def rate(self, user: str, conversation_id: str, message_id: int, rating: str, comment: str | None = None) -> Any:
        """Store a rating of an answer with its prompt, the context the model saw, its sources and
        model; then refresh the user's preference profile from their ratings."""
        answer, question = None, ""
        for message in self.store.messages(user, conversation_id):
            found = next((v for v in (message, *message.alternatives) if v.id == message_id), None)
            if found is not None:
                answer = found
                break
            if message.role == "user":
                question = message.content
        if answer is None or answer.role != "assistant":
            raise NotFound(f"no answer {message_id} in this conversation")
        meta = answer.meta
        record = self.components.feedback.add(
            user=user,
            prompt=meta.get("question") or question,
            response=answer.content,
            rating=rating,
            comment=comment or None,
            conversation_id=conversation_id,
            message_id=message_id,
            context=[s.get("text", "") for s in meta.get("sources", [])] or None,
            sources=[{k: s.get(k) for k in ("n", "source", "section")} for s in meta.get("sources", [])],
            model=meta.get("model") or self.components.settings.llm_model,
        )
        picked = self._picked_over(user, conversation_id, answer) if rating == "up" else None
        if picked is not None:  # the user preferred a candidate best-of-n did not pick
            self.components.feedback.add_pair(user=user, source="best-of-n", prompt=record.prompt, chosen=answer.content,
                                              rejected=picked.content, conversation_id=conversation_id,
                                              message_id=message_id)  # fmt: skip
        self.components.profiles.update_profile_from_feedback(user)
        self.learn_from_ratings(user)
        return record

    def learn_from_ratings(self, user: str) -> Any:
        """Retrain the user's reward model in the background when enough new ratings came
        (``ORCHARD_REWARD_RETRAIN_EVERY``); never blocks. The Future, or None when not due."""
        if self.components.settings.reward_retrain_every <= 0:
            return None
        trainer = self.components.reward_trainer
        trainer.maybe_retrain_async(None)  # the global model scores for users who have none yet
        return trainer.maybe_retrain_async(user)

    def _picked_over(self, user: str, conversation_id: str, answer: Any) -> Any:
        """The answer best-of-n picked, when ``answer`` is one of the candidates it did not pick."""
        picked_id = (answer.meta.get("best_of") or {}).get("picked_message_id")
        if picked_id is None:
            return None
        for message in self.store.messages(user, conversation_id):
            found = next((v for v in (message, *message.alternatives) if v.id == picked_id), None)
            if found is not None:
                return found
        return None

    def unrate(self, user: str, conversation_id: str, message_id: int) -> bool:
        """Remove the user's rating of an answer (and refresh their profile); True if there was one."""
        feedback = self.components.feedback
        mine = [f for f in feedback.list(user) if f.conversation_id == conversation_id and f.message_id == message_id]
        for record in mine:
            feedback.delete(record.id, user=user)
        if mine:
            self.components.profiles.update_profile_from_feedback(user)
        return bool(mine)

    def ratings(self, user: str, conversation_id: str) -> dict[int, Any]:
        """The user's ratings in a conversation, by message id."""
        return {f.message_id: f for f in self.components.feedback.list(user) if f.conversation_id == conversation_id}

    def find_answer(self, user: str, message_id: int) -> tuple[str, Any]:
        """(conversation id, message) of the user's answer ``message_id`` (for feedback by id)."""
        for conversation in self.store.list(user):
            for message in self.store.messages(user, conversation.id):
                for version in (message, *message.alternatives):
                    if version.id == message_id and version.role == "assistant":
                        return conversation.id, version
        raise NotFound(f"no answer {message_id} of yours")


def _history(messages: Any) -> list[dict[str, str]]:
    return [{"role": m.role, "content": m.content} for m in messages or () if m.content]
