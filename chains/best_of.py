"""Best-of-n answers: several candidates for one prompt, a scorer picks, the rest stay alternatives.

:func:`best_of_n` wraps a chat model: for one prompt it asks for ``n`` candidates, scores them
with ``score(texts) -> floats`` (Orchard passes the asking user's reward model, see
:mod:`orchard.reward`) and returns the best as the model's reply. Candidate 0 is the answer the
model gives without best-of-n (its own temperature); the others are sampled (``temperature``,
one seed each), so best-of-n can only add choices. Ties and a missing scorer keep candidate 0.

Cost: with llama.cpp's server the candidates are separate requests for the same prompt, one
after the other: the prompt is read once and the later requests reuse it from the KV cache, so
each extra candidate costs its decoding only. A server that takes ``n`` (vLLM) gets one request
with ``n=N`` (``one_request=True``).

What was generated and picked is handed to ``record`` (a :class:`Candidates`), which the
answering use case turns into the :class:`~orchard.events.CandidatesRanked` event; the answer
itself streams as usual (all at once, after the candidates are scored).

Example::

    >>> picker = best_of_n(llm, n=4, score=lambda texts: [len(t) for t in texts])  # doctest: +SKIP
    >>> picker.invoke("Say hi").content  # the longest of four  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, convert_to_messages
from langchain_core.runnables import Runnable, RunnableLambda

MAX_CANDIDATES = 8
#: Sampling temperature of candidates 1..n-1 (candidate 0 keeps the model's own).
CANDIDATE_TEMPERATURE = 0.8
Scorer = Callable[[Sequence[str]], Sequence[float]]


@dataclass
class Candidates:
    """One best-of-n call: the candidates' texts, their scores (None: no scorer) and the pick."""

    texts: list[str] = field(default_factory=list)
    scores: list[float] | None = None
    picked: int = 0
    scorer: str = ""

    def as_chunk(self) -> dict[str, Any]:
        """The chain chunk :func:`orchard.events.chunk_events` reads as ``CandidatesRanked``."""
        return {"candidates": {"texts": list(self.texts), "scores": self.scores, "picked": self.picked, "scorer": self.scorer}}


def _messages(value: Any) -> list[BaseMessage]:
    if hasattr(value, "to_messages"):
        return value.to_messages()
    if isinstance(value, str):
        return convert_to_messages([("human", value)])
    return convert_to_messages(value)


def pick(scores: Sequence[float] | None) -> int:
    """The index of the highest score; the first one on ties or without scores."""
    if not scores:
        return 0
    best = max(scores)
    return next(i for i, s in enumerate(scores) if s == best)


def generate_candidates(llm: Runnable, messages: list[BaseMessage], n: int, *, one_request: bool = False,
                        temperature: float = CANDIDATE_TEMPERATURE, seed: int = 0) -> list[str]:  # fmt: skip
    """``n`` answers to ``messages``: the model's own first, then sampled ones (see the module docstring)."""
    first = str(llm.invoke(messages).content)
    if n <= 1:
        return [first]
    if one_request:
        result = llm.generate([messages], n=n - 1, temperature=temperature, seed=seed)  # type: ignore[attr-defined]
        return [first, *(str(g.message.content) for g in result.generations[0])]
    return [first, *(str(llm.bind(temperature=temperature, seed=seed + i).invoke(messages).content) for i in range(1, n))]


def best_of_n(llm: Runnable, *, n: int, score: Scorer | None, scorer_name: str = "",
              record: Callable[[Candidates], None] | None = None, one_request: bool = False) -> Runnable:  # fmt: skip
    """``llm`` answering with the best of ``n`` candidates (module docstring); ``n`` <= 1: ``llm``."""
    if n <= 1:
        return llm
    if n > MAX_CANDIDATES:
        msg = f"best-of-{n} asks for too many candidates — at most {MAX_CANDIDATES} (each costs its decoding)"
        raise ValueError(msg)

    def answer(value: Any) -> AIMessage:
        texts = generate_candidates(llm, _messages(value), n, one_request=one_request)
        scores = [float(s) for s in score(texts)] if score is not None else None
        chosen = Candidates(texts=texts, scores=scores, picked=pick(scores), scorer=scorer_name if score else "none")
        if record is not None:
            record(chosen)
        return AIMessage(content=texts[chosen.picked])

    return RunnableLambda(answer, name=f"best_of_{n}")
