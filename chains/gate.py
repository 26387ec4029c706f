"""The "do the documents answer this?" gate: features of the retrieved passages, a fitted model.

One cosine threshold erred both ways (issue 10): a question whose answer was in the first passage
was refused, and a question about a lighthouse, asked over three library pages, was answered from
``logging.html``. The gate measures the evidence in what retrieval returned
(:func:`gate_features`), combines it with a logistic regression fitted on calibration questions
(``bench/gate-*.jsonl``, ``bench/fit_gate.py``) and decides one of three ways:

* ``"refuse"`` — the evidence is weak: answer :data:`~orchard.chains.rag.NO_ANSWER` without
  calling the model;
* ``"answer"`` — ask the model; its own refusal is accepted;
* ``"strict"`` — the evidence is strong: the model may not refuse (a refusal is a failure that the
  RAG chain repairs, see :mod:`orchard.chains.answer_checks`).

The features are the best dense cosine, the top passage's BM25 score (log-scaled), and how many of
the question's content words (stemmed, stop and question words dropped) the top passage, the
best of the first three and all the retrieved passages together hold (a word no retrieved passage
has — "PostgreSQL", "Django" over the Python docs — is the strongest sign of a near miss). Coverage is what separates a question about lanterns over logging
pages (cosine 0.2-0.3, but almost none of its words in the passage) from a real one.

Example::

    >>> gate = Gate.default()
    >>> gate.decide("How many bytes should tokens use?", docs).decision  # doctest: +SKIP
    'strict'
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from langchain_core.documents import Document

from orchard.bm25 import tokenize

Decision = Literal["refuse", "answer", "strict"]

#: Words that ask rather than say what is asked about ("which function ...", "how many ...").
QUESTION_WORDS = frozenset(
    tokenize(
        "which what how many much does do function method module class python docs documentation "
        "return returns give gives tell find need make makes call called name named according "
        "default"
    )
)
FEATURES = ("best_dense", "top_bm25", "top_coverage", "best_coverage", "all_coverage")

# --- fitted by bench/fit_gate.py (do not edit by hand; run `python bench/fit_gate.py --write`) ---
WEIGHTS = {"best_dense": 4.3112, "top_bm25": 0.7643, "top_coverage": 1.1054, "best_coverage": 1.197, "all_coverage": 1.7122}
BIAS = -5.3961
REFUSE_BELOW = 0.2081
STRICT_ABOVE = 0.7145
# --- end of fitted values ---


def content_words(text: str) -> set[str]:
    """The stemmed words of ``text`` that carry its content (see :data:`QUESTION_WORDS`)."""
    return set(tokenize(text)) - QUESTION_WORDS


def coverage(question_words: set[str], passage: str) -> float:
    """Share of ``question_words`` found in ``passage`` (1.0 for a question without any: such a
    question, "Why?", is judged on the other features and is never strict)."""
    if not question_words:
        return 1.0
    return len(question_words & set(tokenize(passage))) / len(question_words)


def gate_features(question: str, docs: Sequence[Document]) -> dict[str, float]:
    """The evidence in ``docs`` (best first, as retrieved) for answering ``question``."""
    if not docs:
        return dict.fromkeys(FEATURES, 0.0)
    words = content_words(question)
    dense = [float(d.metadata.get("dense_score") or 0.0) for d in docs]
    covers = [coverage(words, d.page_content) for d in docs[:3]]
    return {
        "all_coverage": coverage(words, "\n".join(d.page_content for d in docs)),
        "best_dense": max(dense),
        "top_bm25": math.log1p(max(0.0, float(docs[0].metadata.get("bm25_score") or 0.0))),
        "top_coverage": covers[0],
        "best_coverage": max(covers),
    }


@dataclass(frozen=True)
class GateVerdict:
    decision: Decision
    probability: float
    features: Mapping[str, float]

    def as_dict(self) -> dict[str, Any]:
        return {"decision": self.decision, "probability": round(self.probability, 4),
                "features": {k: round(v, 4) for k, v in self.features.items()}}  # fmt: skip


@dataclass(frozen=True)
class Gate:
    """A logistic model over :func:`gate_features` and its two thresholds.

    Args:
        weights: one weight per feature name (:data:`FEATURES`).
        bias: the intercept.
        refuse_below: below this probability, refuse without calling the model.
        strict_above: at or above it, the model may not refuse.
        min_relevance: a hard floor on the best cosine (the old single threshold; -1 turns it off).
    """

    weights: Mapping[str, float] = field(default_factory=lambda: dict(WEIGHTS))
    bias: float = BIAS
    refuse_below: float = REFUSE_BELOW
    strict_above: float = STRICT_ABOVE
    min_relevance: float = -1.0

    @classmethod
    def default(cls, **overrides: Any) -> Gate:
        return cls(**overrides)

    def probability(self, features: Mapping[str, float]) -> float:
        z = self.bias + sum(w * features.get(name, 0.0) for name, w in self.weights.items())
        return 1.0 / (1.0 + math.exp(-max(-60.0, min(60.0, z))))

    def decide_features(self, features: Mapping[str, float]) -> Decision:
        p = self.probability(features)
        if features.get("best_dense", 0.0) < self.min_relevance or p < self.refuse_below:
            return "refuse"
        return "strict" if p >= self.strict_above else "answer"

    def decide(self, question: str, docs: Sequence[Document]) -> GateVerdict:
        """The verdict on ``docs`` (as retrieved, best first) for ``question``; no docs: refuse."""
        features = gate_features(question, docs)
        if not docs:
            return GateVerdict("refuse", 0.0, features)
        decision = self.decide_features(features)
        if decision == "strict" and not content_words(question):  # "Why?": no words, no evidence of a match
            decision = "answer"
        return GateVerdict(decision, self.probability(features), features)


def threshold_gate(min_relevance: float = 0.3) -> Gate:
    """Today's rule as a gate: refuse below one best-cosine threshold, never strict."""
    return Gate(weights={}, bias=0.0, refuse_below=0.0, strict_above=2.0, min_relevance=min_relevance)
