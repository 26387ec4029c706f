"""Retraining a user's (or the global) reward model after every N new ratings, in the background.

:meth:`RewardTrainer.due` compares the ratings stored now with ``trained_on`` — the count the
latest version was trained on — and :meth:`RewardTrainer.maybe_retrain_async` submits a retrain
to one background worker thread when ``every`` or more ratings are new, returning the
:class:`~concurrent.futures.Future` (``None`` when nothing is due or a retrain of that slot is
already queued or running). It never blocks the caller: the answer path can call it after every
rating. Two retrains never overlap: the one worker runs them in turn, and a lock file in the
slot's folder keeps another process's trainer off the same slot (it skips instead of waiting).

A user's model is trained on that user's ratings only; the global model (``user=None``) on all.

Example::

    >>> trainer = RewardTrainer(feedback_store, RewardStore(data_dir), embed=embeddings, every=20)  # doctest: +SKIP
    >>> future = trainer.maybe_retrain_async("ann")  # None, or a Future of RetrainResult  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from orchard.feedback import FeedbackStore
from orchard.reward.model import NotEnoughFeedback, RewardModel, TrainConfig, TrainReport
from orchard.reward.store import RewardStore, user_slot

DEFAULT_RETRAIN_EVERY = 20
log = logging.getLogger(__name__)


class RetrainBusy(RuntimeError):
    """Another trainer (thread or process) is training this slot right now."""


#: A new version whose held-out pair accuracy is lower than the active one's by more than this
#: does not become active (the active one stays pinned): the gate of a reward model.
GATE_TOLERANCE = 0.05


@dataclass(frozen=True)
class RetrainResult:
    user: str | None
    version: int
    report: TrainReport
    active: int | None = None  # the version that scores answers after this training
    gate: str = ""  # why that one

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (``orchard reward train --json``): the slot, not the user name, in paths."""
        return {"user": self.user, "slot": user_slot(self.user), "version": self.version, "active": self.active,
                "gate": self.gate, **self.report.to_dict()}  # fmt: skip


class RewardTrainer:
    """Decides when to retrain and retrains (see the module docstring).

    Args:
        feedback: where the ratings are.
        store: where the versions go.
        embed: the embedder the models score with (the packaged one: ``Components.embeddings``).
        every: retrain after this many new ratings (at least 1).
        config: fitting settings for every training.
    """

    def __init__(self, feedback: FeedbackStore, store: RewardStore, *, embed: Any, every: int = DEFAULT_RETRAIN_EVERY,
                 config: TrainConfig | None = None) -> None:  # fmt: skip
        if every < 1:
            raise ValueError(f"retrain every {every} ratings? — it must be at least 1")
        self.feedback, self.store, self.embed, self.every = feedback, store, embed, every
        self.config = config or TrainConfig()
        self._executor: ThreadPoolExecutor | None = None
        self._guard = threading.Lock()
        self._pending: dict[str, Future] = {}
        self._attempted: dict[str, int] = {}  # ratings seen by a training that found too little to learn
        self._training = threading.Lock()

    # --- deciding -----------------------------------------------------------------------------

    def ratings_count(self, user: str | None = None) -> int:
        return len(self.feedback.list(user))

    def trained_on(self, user: str | None = None) -> int:
        """Ratings the latest version was trained on (0 when there is none)."""
        if self.store.latest(user) is None:
            return 0
        report = self.store.report(user).get("report") or {}
        return int(report.get("trained_on") or 0)

    def new_ratings(self, user: str | None = None) -> int:
        """Ratings since the latest version (or since a training that found too little to learn)."""
        seen = max(self.trained_on(user), self._attempted.get(user_slot(user), 0))
        return self.ratings_count(user) - seen

    def due(self, user: str | None = None) -> bool:
        """True when ``every`` or more ratings came since the latest version (or there is none)."""
        return self.new_ratings(user) >= self.every

    # --- training -----------------------------------------------------------------------------

    def retrain(self, user: str | None = None) -> RetrainResult:
        """Train on the slot's ratings now and store the new version.

        Raises:
            RetrainBusy: another trainer is training this slot.
            NotEnoughFeedback: the ratings hold no pair and not both an up and a down.
        """
        with self._training, self._slot_lock(user):
            ratings = self.feedback.list(user)
            try:
                model, report = RewardModel.train(self.feedback.preference_pairs(user), ratings, embed=self.embed, config=self.config)
            except NotEnoughFeedback:
                self._attempted[user_slot(user)] = len(ratings)  # not due again before `every` more
                raise
            report.trained_on = len(ratings)
            before = self.store.active(user)
            version = self.store.save(model, user)
            active, gate = self._gate(user, before, version, report)
            return RetrainResult(user=user, version=version, report=report, active=active, gate=gate)

    def _gate(self, user: str | None, before: int | None, version: int, report: TrainReport) -> tuple[int, str]:
        """Keep the version that was active when the new one is worse on held-out pairs (by more
        than :data:`GATE_TOLERANCE`); else the new one is active (the latest, unpinned)."""
        new = report.heldout_pair_accuracy
        old = None if before is None else (self.store.report(user, before).get("report") or {}).get("heldout_pair_accuracy")
        if before is not None and new is not None and old is not None and new < old - GATE_TOLERANCE:
            self.store.activate(user, before)
            return before, f"v{version} held-out pair accuracy {new:.3f} < v{before}'s {old:.3f}: v{before} stays active"
        self.store.activate(user, None)
        if old is None or new is None:
            return version, "active (no held-out accuracy to compare)"
        return version, f"active (held-out pair accuracy {new:.3f}, v{before} had {old:.3f})"

    def maybe_retrain_async(self, user: str | None = None) -> Future | None:
        """Submit a retrain if one is :meth:`due` and none is queued for the slot; never blocks."""
        slot = user_slot(user)
        with self._guard:
            running = self._pending.get(slot)
            if running is not None and not running.done():
                return None
            if not self.due(user):
                return None
            if self._executor is None:
                self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="orchard-reward")
            future = self._executor.submit(self.retrain, user)
            future.add_done_callback(_log_failure)
            self._pending[slot] = future
            return future

    def close(self, *, wait: bool = True) -> None:
        """Stop the background worker (after the queued retrains when ``wait``)."""
        with self._guard:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=wait)

    @contextlib.contextmanager
    def _slot_lock(self, user: str | None) -> Iterator[None]:
        folder = self.store.slot_dir(user)
        folder.mkdir(parents=True, exist_ok=True)
        try:
            import fcntl
        except ImportError:  # not POSIX: the thread lock alone
            yield
            return
        fd = os.open(folder / ".train.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError as exc:
                raise RetrainBusy(f"another process is training the reward model in {folder}") from exc
            try:
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)


def _log_failure(future: Future) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.warning("background reward-model retrain failed: %s", future.exception())
