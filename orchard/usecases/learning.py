"""Learning from feedback: each user's reward model (train, list, pin, score).

The reward model (:mod:`orchard.reward`) learns from the user's preferences: thumbs (points),
and pairs from every source the state database keeps (:meth:`FeedbackStore.preference_pairs
<orchard.feedback.FeedbackStore.preference_pairs>`: thumbs, regenerate + thumbs, the critique's
AI feedback, best-of-n overrides). It picks best-of-n candidates
(:mod:`orchard.chains.best_of`) for that user; one user's ratings never train another user's
model (the global model, trained on everyone's, scores for users who have none yet).

A rating in the app or through ``orchard feedback add`` retrains in the background when
``ORCHARD_REWARD_RETRAIN_EVERY`` new ratings came; :meth:`Learning.train_reward` trains now.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from orchard.components import Components


class Learning:
    """The learning use case over the components' feedback store and reward models."""

    def __init__(self, *, components: Components) -> None:
        self.components = components

    def train_reward(self, user: str | None = None) -> dict[str, Any]:
        """Train the user's (None: the global) reward model now; its version and report.

        Raises:
            orchard.reward.NotEnoughFeedback: the ratings hold no pair and not both an up and a down.
            orchard.reward.RetrainBusy: another process is training the same model.
        """
        result = self.components.reward_trainer.retrain(user)
        return result.to_dict()

    def reward_versions(self, user: str | None = None) -> list[dict[str, Any]]:
        """Every version of the user's (or the global) model, with its held-out accuracy, and which is active."""
        rewards = self.components.rewards
        active = rewards.active(user)
        return [{**row, "active": row["version"] == active} for row in rewards.list(user)]

    def activate_reward(self, user: str | None, version: int | None) -> None:
        """Pin the version best-of-n uses (None: back to the latest)."""
        self.components.rewards.activate(user, version)

    def score(self, prompt: str, answers: Sequence[str], *, user: str | None = None) -> dict[str, Any]:
        """The user's reward model's score for each answer (their model, else the global one).

        Raises:
            orchard.reward.RewardModelError: there is no reward model yet.
        """
        from orchard.reward import RewardModelError

        scorer = self.components.reward_scorer(user, prompt)
        if scorer is None:
            raise RewardModelError("there is no reward model yet — rate some answers, then `orchard reward train`")
        scores = [float(s) for s in scorer.score(list(answers))]
        best = max(range(len(scores)), key=scores.__getitem__) if scores else None
        return {"model": scorer.name, "scores": scores, "best": best}
