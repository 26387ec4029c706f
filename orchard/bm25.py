"""Lexical search: a real tokenizer and a BM25 index over the store's chunks.

``str.split`` keeps punctuation and case (``"json.dumps()"`` matches nothing); this tokenizer
lower-cases, splits identifiers (``json.dumps`` -> ``json``, ``dumps``; ``read_csv`` -> ``read_csv``,
``read``, ``csv``), drops English stop words and stems with Snowball (``shuffling`` -> ``shuffl``).

Example::

    >>> tokenize("How do I shuffle a list?")
    ['shuffl', 'list']
"""

from __future__ import annotations

import re
import threading
from functools import lru_cache

import bm25s
import numpy as np
import snowballstemmer

_WORD = re.compile(r"[a-z0-9_]+")
_LOCAL = threading.local()  # snowballstemmer keeps state on the stemmer: one per thread
STOP_WORDS = frozenset(
    """a about above after again against all am an and any are as at be because been before being
    below between both but by can could did do does doing down during each few for from further had
    has have having he her here hers herself him himself his how i if in into is it its itself
    just me more most my myself no nor not now of off on once only or other our ours ourselves out
    over own same she should so some such than that the their theirs them themselves then there
    these they this those through to too under until up very was we were what when where which
    while who whom why will with would you your yours yourself yourselves way use using want get
    """.split()
)


@lru_cache(maxsize=200_000)
def _stem(word: str) -> str:
    stemmer = getattr(_LOCAL, "stemmer", None)
    if stemmer is None:
        stemmer = _LOCAL.stemmer = snowballstemmer.stemmer("english")
    return stemmer.stemWord(word)


def tokenize(text: str) -> list[str]:
    """Lower-case word tokens, identifiers split, stop words dropped, stemmed."""
    tokens: list[str] = []
    for word in _WORD.findall(text.lower()):
        parts = [word]
        if "_" in word:
            parts += [p for p in word.split("_") if p]
        for part in parts:
            if part not in STOP_WORDS and (len(part) > 1 or part.isdigit()):
                tokens.append(_stem(part))
    return tokens


def _tokens_with_header(text: str, header_boost: int) -> list[str]:
    """Tokens of ``text``, the first line (the chunk's ``title > section`` header) counted
    ``header_boost`` extra times: a page or section named after the question is strong evidence."""
    tokens = tokenize(text)
    if header_boost > 0:
        header, _, _ = text.partition("\n")
        tokens += tokenize(header) * header_boost
    return tokens


class BM25Index:
    """BM25 (Lucene variant, via ``bm25s``) over a fixed list of texts."""

    def __init__(self, texts: list[str], *, k1: float = 1.2, b: float = 0.75, header_boost: int = 1) -> None:
        self.size = len(texts)
        self._bm25: bm25s.BM25 | None = None
        if texts:
            corpus = [_tokens_with_header(t, header_boost) or ["\x00empty"] for t in texts]
            self._bm25 = bm25s.BM25(k1=k1, b=b, method="lucene")
            self._bm25.index(corpus, show_progress=False)

    def top(self, query: str, k: int, *, allowed: np.ndarray | None = None) -> list[tuple[int, float]]:
        """Indices and scores of the ``k`` best texts with a positive score, best first.

        ``allowed``: a boolean mask over the texts; the others are scored out *before* the top k
        is taken, so the k results are the best allowed texts (never fewer because better
        disallowed ones took the places).
        """
        tokens = tokenize(query)
        if self._bm25 is None or not tokens or k <= 0:
            return []
        vocab = self._bm25.vocab_dict
        known = [t for t in tokens if t in vocab]
        if not known:
            return []
        scores = np.asarray(self._bm25.get_scores(known), dtype=np.float64)
        if allowed is not None:
            if len(allowed) != self.size:
                msg = f"the mask covers {len(allowed)} texts, the index {self.size}"
                raise ValueError(msg)
            scores = np.where(allowed, scores, -np.inf)
        k = min(k, self.size)
        idx = np.argpartition(-scores, k - 1)[:k]
        idx = idx[np.argsort(-scores[idx], kind="stable")]
        return [(int(i), float(scores[i])) for i in idx if scores[i] > 0]
