"""Reward models learned from the user's ratings: score answers the way this user would.

- :mod:`orchard.reward.features`: hand-made answer features and the embedding block;
- :mod:`orchard.reward.model`: :class:`RewardModel` (Bradley-Terry pairs + logistic points, L2),
  ``train`` with a held-out report, ``score``, ``save``/``load`` refusing another embedder;
- :mod:`orchard.reward.store`: :class:`RewardStore`, versions under ``<data_dir>/reward/<slot>/v<N>/``
  (a hashed user slot or ``_global``);
- :mod:`orchard.reward.trainer`: :class:`RewardTrainer`, retrain after every N new ratings, in a
  background thread, never two at once.

A core module: it imports only ``orchard.db`` and ``orchard.feedback`` from Orchard (plus numpy,
scipy); the embedder is passed in (``Components.embeddings``).
"""

from orchard.db import GLOBAL_SLOT, user_slot
from orchard.reward.model import (
    EmbedderMismatch,
    NotEnoughFeedback,
    Pair,
    Point,
    RewardModel,
    RewardModelError,
    TrainConfig,
    TrainReport,
    as_pairs,
    as_points,
    embedder_id,
)
from orchard.reward.store import RewardStore
from orchard.reward.trainer import DEFAULT_RETRAIN_EVERY, RetrainBusy, RetrainResult, RewardTrainer

__all__ = [
    "DEFAULT_RETRAIN_EVERY",
    "GLOBAL_SLOT",
    "EmbedderMismatch",
    "NotEnoughFeedback",
    "Pair",
    "Point",
    "RetrainBusy",
    "RetrainResult",
    "RewardModel",
    "RewardModelError",
    "RewardStore",
    "RewardTrainer",
    "TrainConfig",
    "TrainReport",
    "as_pairs",
    "as_points",
    "embedder_id",
    "user_slot",
]
