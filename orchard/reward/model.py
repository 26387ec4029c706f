"""A reward model learned from preference pairs and thumbs: a Bradley-Terry / logistic head.

The score of an answer to a prompt is linear in its features (:mod:`orchard.reward.features`):
``s = w · φ(prompt, answer)``. A pair (prompt, chosen, rejected) says ``P(chosen > rejected) =
sigmoid(s_chosen - s_rejected)`` (Bradley-Terry); a point (prompt, response, up/down) says
``P(up) = sigmoid(s + b)``. :meth:`RewardModel.train` minimises the summed negative
log-likelihood of both plus an L2 penalty (stronger on the many embedding weights than on the
twenty hand-made ones) with L-BFGS (scipy) — convex, deterministic, milliseconds for hundreds of
ratings; embedding the texts is the cost.

Before fitting the model it returns, ``train`` fits on a fixed, seeded split and reports the
held-out accuracy: a quarter of the prompts (grouped, so no prompt is on both sides) are held out,
and every held-out pair counts as right when the chosen answer scores higher (a tie counts half).

Example::

    >>> model, report = RewardModel.train(pairs, points, embed=embeddings)  # doctest: +SKIP
    >>> model.score("How do I parse JSON?", ["Use json.loads [1].", "No idea."])  # doctest: +SKIP
    [1.93, -0.71]
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from orchard.feedback import normalize_prompt
from orchard.reward.features import (
    EMBEDDING_BLOCKS,
    HAND_FEATURES,
    embed_texts,
    embedding_matrix,
    feature_names,
    hand_matrix,
)

FORMAT = 1
WEIGHTS_FILE = "weights.npz"
REPORT_FILE = "report.json"


class RewardModelError(ValueError):
    """A reward model cannot be trained or loaded as asked (the message says why and what to do)."""


class EmbedderMismatch(RewardModelError):
    """The model was trained with another embedder than the one given to load or score it."""


class NotEnoughFeedback(RewardModelError):
    """Too few ratings to learn anything: no pair, and not both an up and a down rating."""


@dataclass(frozen=True)
class Pair:
    """The user preferred ``chosen`` to ``rejected`` as answers to ``prompt``."""

    prompt: str
    chosen: str
    rejected: str


@dataclass(frozen=True)
class Point:
    """The user rated ``response`` to ``prompt`` up or down."""

    prompt: str
    response: str
    rating: str  # "up" | "down"


@dataclass(frozen=True)
class TrainConfig:
    """Fitting settings. ``l2_hand``/``l2_embedding``: penalties on the two blocks of weights."""

    embedding: str = "answer+interaction"
    hand: bool = True  # False: the hand-made features are left out (zeros), embeddings only
    l2_hand: float = 0.3
    l2_embedding: float = 30.0
    point_weight: float = 1.0
    heldout_fraction: float = 0.25
    seed: int = 0

    def __post_init__(self) -> None:
        if self.embedding not in EMBEDDING_BLOCKS:
            msg = f"unknown embedding block {self.embedding!r} — expected one of {', '.join(EMBEDDING_BLOCKS)}"
            raise RewardModelError(msg)
        if not self.hand and self.embedding == "none":
            raise RewardModelError("a reward model without hand-made features needs an embedding block")


@dataclass
class TrainReport:
    """What a training saw and measured (saved as ``report.json`` beside the weights)."""

    n_pairs: int
    n_points: int
    heldout_pair_accuracy: float | None
    heldout_pairs: int
    heldout_point_accuracy: float | None
    heldout_points: int
    train_pair_accuracy: float | None
    seconds: float
    embedder: str
    config: dict[str, Any]
    trained_on: int | None = None  # ratings counted by the trainer when it trained this version
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def embedder_id(embed: Any) -> str:
    """The name a model records for its embedder (``Embeddings.name``, else the class name)."""
    name = getattr(embed, "name", None)
    return str(name) if name else f"{type(embed).__module__}.{type(embed).__qualname__}"


def as_pairs(rows: Iterable[Any]) -> list[Pair]:
    """:class:`Pair` objects from pairs, or dicts with ``prompt``/``chosen``/``rejected`` (DPO rows)."""
    pairs = []
    for row in rows:
        if isinstance(row, Pair):
            pairs.append(row)
        else:
            get = row.get if isinstance(row, dict) else lambda k, r=row: getattr(r, k)
            pairs.append(Pair(str(get("prompt")), str(get("chosen")), str(get("rejected"))))
    return [p for p in pairs if p.chosen != p.rejected]


def as_points(rows: Iterable[Any]) -> list[Point]:
    """:class:`Point` objects from points, :class:`~orchard.feedback.Feedback` or dicts
    (``prompt``, ``response``, ``rating``)."""
    points = []
    for row in rows:
        if isinstance(row, Point):
            points.append(row)
            continue
        get = row.get if isinstance(row, dict) else lambda k, r=row: getattr(r, k)
        rating = str(get("rating"))
        if rating not in ("up", "down"):
            msg = f"invalid rating {rating!r} — expected 'up' or 'down'"
            raise RewardModelError(msg)
        points.append(Point(str(get("prompt")), str(get("response")), rating))
    return points


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def _softplus(x: np.ndarray) -> np.ndarray:
    return np.logaddexp(0.0, x)


class _Featurizer:
    """φ(prompt, answer) for a config and an embedder, embedding each distinct text once."""

    def __init__(self, embed: Any, block: str, *, hand: bool = True) -> None:
        self.embed, self.block, self.hand = embed, block, hand

    def matrix(
        self, prompts: Sequence[str], answers: Sequence[str], vectors: dict[str, np.ndarray], dimension: int
    ) -> np.ndarray:
        hand = hand_matrix(prompts, answers)
        if not self.hand:
            hand = np.zeros_like(hand)
        if self.block == "none":
            return hand
        p = np.vstack([vectors[t] for t in prompts]) if prompts else np.zeros((0, dimension))
        a = np.vstack([vectors[t] for t in answers]) if answers else np.zeros((0, dimension))
        return np.hstack([hand, embedding_matrix(p, a, self.block)])

    def vectors(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        return embed_texts(self.embed, texts) if self.block != "none" else {}


class RewardModel:
    """A fitted reward head: ``score(prompt, answers)`` (higher = more to the user's taste)."""

    def __init__(self, *, weights: np.ndarray, bias: float, config: TrainConfig, embedder: str, dimension: int,
                 embed: Any = None, report: TrainReport | None = None) -> None:  # fmt: skip
        self.weights = np.asarray(weights, dtype=np.float64)
        self.bias = float(bias)
        self.config = config
        self.embedder = embedder
        self.dimension = dimension
        self.embed = embed
        self.report = report

    # --- training -----------------------------------------------------------------------------

    @classmethod
    def train(
        cls,
        pairs: Iterable[Any],
        points: Iterable[Any] = (),
        *,
        embed: Any,
        config: TrainConfig | None = None,
    ) -> tuple[RewardModel, TrainReport]:
        """Fit on ``pairs`` and ``points`` (see the module docstring); returns the model fitted on
        all of them and the report with the held-out accuracy of a fit on the fixed split.

        Raises:
            NotEnoughFeedback: no pair, and not both an up and a down point.
        """
        began = time.perf_counter()
        config = config or TrainConfig()
        pairs, points = as_pairs(pairs), as_points(points)
        ratings = {p.rating for p in points}
        if not pairs and ratings != {"up", "down"}:
            msg = (f"not enough feedback to train a reward model ({len(pairs)} pairs, {len(points)} ratings): "
                   "it needs a preference pair, or at least one up and one down rating")  # fmt: skip
            raise NotEnoughFeedback(msg)
        featurizer = _Featurizer(embed, config.embedding, hand=config.hand)
        texts = [t for p in pairs for t in (p.prompt, p.chosen, p.rejected)] + [t for p in points for t in (p.prompt, p.response)]
        vectors = featurizer.vectors(texts)
        dimension = len(next(iter(vectors.values()))) if vectors else 0
        pair_c = featurizer.matrix([p.prompt for p in pairs], [p.chosen for p in pairs], vectors, dimension)
        pair_r = featurizer.matrix([p.prompt for p in pairs], [p.rejected for p in pairs], vectors, dimension)
        point_x = featurizer.matrix([p.prompt for p in points], [p.response for p in points], vectors, dimension)
        point_y = np.array([1.0 if p.rating == "up" else -1.0 for p in points])
        penalty = np.concatenate([np.full(len(HAND_FEATURES), config.l2_hand),
                                  np.full(pair_c.shape[1] - len(HAND_FEATURES), config.l2_embedding)])  # fmt: skip

        held = _heldout_prompts([p.prompt for p in pairs] + [p.prompt for p in points], config)
        pair_held = np.array([normalize_prompt(p.prompt) in held for p in pairs], dtype=bool)
        point_held = np.array([normalize_prompt(p.prompt) in held for p in points], dtype=bool)
        heldout_pair_acc = heldout_point_acc = None
        if pair_held.any() or point_held.any():
            w, b = _fit(pair_c[~pair_held] - pair_r[~pair_held], point_x[~point_held], point_y[~point_held], penalty, config)
            if pair_held.any():
                heldout_pair_acc = _pair_accuracy((pair_c[pair_held] - pair_r[pair_held]) @ w)
            if point_held.any():
                heldout_point_acc = float(np.mean(np.sign(point_x[point_held] @ w + b) == point_y[point_held]))
        weights, bias = _fit(pair_c - pair_r, point_x, point_y, penalty, config)
        report = TrainReport(
            n_pairs=len(pairs),
            n_points=len(points),
            heldout_pair_accuracy=heldout_pair_acc,
            heldout_pairs=int(pair_held.sum()),
            heldout_point_accuracy=heldout_point_acc,
            heldout_points=int(point_held.sum()),
            train_pair_accuracy=_pair_accuracy((pair_c - pair_r) @ weights) if pairs else None,
            seconds=round(time.perf_counter() - began, 3),
            embedder=embedder_id(embed),
            config=asdict(config),
        )
        model = cls(weights=weights, bias=bias, config=config, embedder=report.embedder, dimension=dimension,
                    embed=embed, report=report)  # fmt: skip
        return model, report

    # --- scoring ------------------------------------------------------------------------------

    def score(self, prompt: str, answers: Sequence[str]) -> list[float]:
        """The reward of each answer to ``prompt`` (comparable across answers to one prompt)."""
        answers = list(answers)
        if not answers:
            return []
        featurizer = _Featurizer(self._embedder(), self.config.embedding, hand=self.config.hand)
        vectors = featurizer.vectors([prompt, *answers])
        if vectors:
            got = len(next(iter(vectors.values())))
            if got != self.dimension:
                msg = f"the embedder gives {got}-d vectors, the reward model was trained on {self.dimension}-d ones — retrain it"
                raise EmbedderMismatch(msg)
        x = featurizer.matrix([prompt] * len(answers), answers, vectors, self.dimension)
        return [float(v) for v in x @ self.weights]

    def probability_up(self, prompt: str, answers: Sequence[str]) -> list[float]:
        """P(the user rates each answer up), from the pointwise head."""
        return [float(_sigmoid(np.array(s + self.bias))) for s in self.score(prompt, answers)]

    def best(self, prompt: str, answers: Sequence[str]) -> int:
        """Index of the highest-scored answer (the first on a tie)."""
        scores = self.score(prompt, answers)
        return max(range(len(scores)), key=lambda i: (scores[i], -i))

    def _embedder(self) -> Any:
        if self.embed is None and self.config.embedding != "none":
            raise RewardModelError("this reward model has no embedder: load it with embed=...")
        return self.embed

    # --- storage ------------------------------------------------------------------------------

    def save(self, directory: str | Path) -> Path:
        """Write ``weights.npz`` and ``report.json`` (with the embedder id) into ``directory``."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        np.savez(directory / WEIGHTS_FILE, weights=self.weights, bias=np.array(self.bias))
        meta = {
            "format": FORMAT,
            "embedder": self.embedder,
            "dimension": self.dimension,
            "config": asdict(self.config),
            "features": feature_names(self.config.embedding, self.dimension),
            "weights_sha256": hashlib.sha256(self.weights.tobytes()).hexdigest(),
            "report": self.report.to_dict() if self.report else None,
        }
        (directory / REPORT_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        return directory

    @classmethod
    def load(cls, directory: str | Path, *, embed: Any) -> RewardModel:
        """The model saved in ``directory``, scoring with ``embed``.

        Raises:
            EmbedderMismatch: ``embed`` is not the embedder the model was trained with.
            RewardModelError: the folder holds no reward model (or an unknown format).
        """
        directory = Path(directory)
        try:
            meta = json.loads((directory / REPORT_FILE).read_text(encoding="utf-8"))
            with np.load(directory / WEIGHTS_FILE) as data:
                weights, bias = data["weights"], float(data["bias"])
        except (OSError, ValueError, KeyError) as exc:
            raise RewardModelError(f"no reward model in {directory}: {exc}") from exc
        if meta.get("format") != FORMAT:
            raise RewardModelError(f"{directory} holds a reward model of format {meta.get('format')!r}, expected {FORMAT}")
        config = TrainConfig(**meta["config"])
        if config.embedding != "none" and embedder_id(embed) != meta["embedder"]:
            msg = (f"the reward model in {directory} was trained with the embedder {meta['embedder']!r}, "
                   f"not {embedder_id(embed)!r} — load it with that embedder or retrain it")  # fmt: skip
            raise EmbedderMismatch(msg)
        report = None
        if meta.get("report"):
            fields = TrainReport.__dataclass_fields__
            report = TrainReport(**{k: v for k, v in meta["report"].items() if k in fields})
        return cls(weights=weights, bias=bias, config=config, embedder=meta["embedder"], dimension=int(meta["dimension"]),
                   embed=embed, report=report)  # fmt: skip


def _heldout_prompts(prompts: Sequence[str], config: TrainConfig) -> set[str]:
    """The prompts held out for the report: a seeded quarter (at least one, never all) of them."""
    distinct = sorted({normalize_prompt(p) for p in prompts})
    if len(distinct) < 2 or config.heldout_fraction <= 0:
        return set()
    order = np.random.default_rng(config.seed).permutation(len(distinct))
    count = min(max(1, round(config.heldout_fraction * len(distinct))), len(distinct) - 1)
    return {distinct[i] for i in order[:count]}


def _pair_accuracy(margins: np.ndarray) -> float | None:
    if margins.size == 0:
        return None
    return float(np.mean(np.where(margins > 0, 1.0, np.where(margins == 0, 0.5, 0.0))))


def _fit(diffs: np.ndarray, x: np.ndarray, y: np.ndarray, penalty: np.ndarray, config: TrainConfig) -> tuple[np.ndarray, float]:
    """Minimise pair NLL + point NLL + L2 (see the module docstring) with L-BFGS."""
    from scipy.optimize import minimize

    dim = penalty.size
    has_points = x.shape[0] > 0

    def objective(theta: np.ndarray) -> tuple[float, np.ndarray]:
        w, b = theta[:dim], theta[dim]
        loss = 0.5 * float(penalty @ (w * w)) + 0.5e-3 * b * b
        grad_w = penalty * w
        grad_b = 1e-3 * b
        if diffs.shape[0]:
            m = diffs @ w
            loss += float(_softplus(-m).sum())
            grad_w = grad_w - diffs.T @ _sigmoid(-m)
        if has_points:
            z = y * (x @ w + b)
            loss += config.point_weight * float(_softplus(-z).sum())
            g = -config.point_weight * y * _sigmoid(-z)
            grad_w = grad_w + x.T @ g
            grad_b += float(g.sum())
        return loss, np.append(grad_w, grad_b)

    result = minimize(objective, np.zeros(dim + 1), jac=True, method="L-BFGS-B", options={"maxiter": 500})
    return result.x[:dim], float(result.x[dim])
