"""Features of (prompt, answer) a reward model scores: hand-made answer features and embeddings.

Hand-made features (:data:`HAND_FEATURES`) describe properties a reader's taste plausibly
depends on — length, sentences, code, citations ``[n]``, lists, a restated question, a refusal, a
cut-off ending — each scaled to about ``[0, 1]``. The embedding block holds the embedder's vector
of the answer and the element-wise product of the prompt's and the answer's vectors (their
interaction: its sum is the cosine), both scaled so a component is about 1 in size.

Example::

    >>> hand_features("How?", "Use `x`. See [1] and [2].")["cites_two_or_more"]
    1.0
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

EmbeddingBlock = Literal["answer+interaction", "answer", "none"]
EMBEDDING_BLOCKS: tuple[str, ...] = ("answer+interaction", "answer", "none")

_FENCE = re.compile(r"```.*?(?:```|\Z)", re.DOTALL)
_SENTENCE_END = re.compile(r"[.!?](?:\s*\[\d{1,2}\])*(?=\s|$)")
_CITATION = re.compile(r"\[(\d{1,2})\]")
_LIST_LINE = re.compile(r"^\s*(?:[-*•]|\d{1,2}[.)])\s+\S", re.MULTILINE)
_WORD = re.compile(r"\w+")
_INLINE_CODE = re.compile(r"`[^`\n]+`")
_REFUSAL = re.compile(
    r"do(?:es)? not (?:answer|contain|provide|mention)|i (?:do not|don't) know|i cannot|i can't|"
    r"i'm sorry|i am sorry|not (?:able|possible) to (?:answer|help)|no information",
    re.IGNORECASE,
)
_STOP = frozenset(
    "a an and are as at be by can do does for from how i in is it of on or the to what when where which "
    "who why with you your my me this that".split()
)

#: Names of the hand-made features, in the order of the feature vector.
HAND_FEATURES: tuple[str, ...] = (
    "words_log",
    "sentences",
    "at_most_1_sentence",
    "at_most_2_sentences",
    "at_most_3_sentences",
    "has_code_block",
    "code_blocks",
    "code_line_fraction",
    "has_inline_code",
    "distinct_citations",
    "cites_any",
    "cites_two_or_more",
    "cites_three_or_more",
    "has_list",
    "restates_question",
    "ends_with_question",
    "refusal",
    "cut_off",
    "prompt_overlap",
    "mentions_example",
)


def prose_of(answer: str) -> str:
    """The answer without its fenced code blocks."""
    return _FENCE.sub(" ", answer)


def sentence_count(text: str) -> int:
    """Sentences of prose (code blocks left out): the sentence-ending marks of each line, plus one
    for a line with words that does not end with one (a heading, a list item, a cut-off end)."""
    count = 0
    for line in prose_of(text).splitlines():
        line = line.strip()
        if not _WORD.search(line):
            continue
        count += len(_SENTENCE_END.findall(line))
        if not re.search(r"[.!?](?:\s*\[\d{1,2}\])*$", line):
            count += 1
    return count


def _content_words(text: str) -> set[str]:
    return {w for w in (m.lower() for m in _WORD.findall(text)) if w not in _STOP and len(w) > 1}


def hand_features(prompt: str, answer: str) -> dict[str, float]:
    """The hand-made features of one answer to ``prompt`` (names in :data:`HAND_FEATURES`)."""
    words = len(_WORD.findall(answer))
    sentences = sentence_count(answer)
    blocks = _FENCE.findall(answer)
    lines = [line for line in answer.splitlines() if line.strip()]
    code_lines = sum(block.count("\n") for block in blocks)
    citations = {int(n) for n in _CITATION.findall(answer)}
    prose = prose_of(answer).strip()
    first = re.split(r"(?<=[.!?])\s+", prose, maxsplit=1)[0] if prose else ""
    asked, first_words, said = _content_words(prompt), _content_words(first), _content_words(answer)
    restated = bool(asked) and len(asked & first_words) / len(asked | first_words or {""}) >= 0.6
    stripped = answer.rstrip()
    cut_off = bool(stripped) and not (stripped.endswith(("```", ")", "]")) or re.search(r"[.!?:]['\")\]]*$", stripped))
    values = {
        "words_log": math.log1p(words) / math.log1p(300),
        "sentences": min(sentences, 20) / 10,
        "at_most_1_sentence": float(0 < sentences <= 1),
        "at_most_2_sentences": float(0 < sentences <= 2),
        "at_most_3_sentences": float(0 < sentences <= 3),
        "has_code_block": float(bool(blocks)),
        "code_blocks": min(len(blocks), 3) / 3,
        "code_line_fraction": min(code_lines / max(len(lines), 1), 1.0),
        "has_inline_code": float(bool(_INLINE_CODE.search(prose_of(answer)))),
        "distinct_citations": min(len(citations), 5) / 5,
        "cites_any": float(len(citations) >= 1),
        "cites_two_or_more": float(len(citations) >= 2),
        "cites_three_or_more": float(len(citations) >= 3),
        "has_list": float(bool(_LIST_LINE.search(prose_of(answer)))),
        "restates_question": float(restated),
        "ends_with_question": float(stripped.endswith("?")),
        "refusal": float(bool(_REFUSAL.search(answer))),
        "cut_off": float(cut_off),
        "prompt_overlap": len(asked & said) / len(asked) if asked else 0.0,
        "mentions_example": float(bool(re.search(r"\bexample\b", answer, re.IGNORECASE))),
    }
    return values


def hand_matrix(prompts: Sequence[str], answers: Sequence[str]) -> np.ndarray:
    """Hand-made features of each (prompt, answer), one row each (columns: :data:`HAND_FEATURES`)."""
    rows = [hand_features(p, a) for p, a in zip(prompts, answers, strict=True)]
    return np.array([[row[name] for name in HAND_FEATURES] for row in rows], dtype=np.float64).reshape(
        len(rows), len(HAND_FEATURES)
    )


def embed_texts(embed: Any, texts: Sequence[str]) -> dict[str, np.ndarray]:
    """Each distinct text's vector (one ``embed_documents`` call; empty texts embed as a space)."""
    distinct = list(dict.fromkeys(texts))
    if not distinct:
        return {}
    vectors = embed.embed_documents([t if t.strip() else " " for t in distinct])
    return {text: np.asarray(vec, dtype=np.float64) for text, vec in zip(distinct, vectors, strict=True)}


def embedding_matrix(prompt_vectors: np.ndarray, answer_vectors: np.ndarray, block: str) -> np.ndarray:
    """The embedding block for rows of prompt and answer vectors (see the module docstring)."""
    n, dim = answer_vectors.shape
    if block == "none":
        return np.zeros((n, 0))
    parts = [answer_vectors * math.sqrt(dim)]
    if block == "answer+interaction":
        parts.append(prompt_vectors * answer_vectors * dim)
    return np.hstack(parts)


def feature_names(block: str, dim: int) -> list[str]:
    names = list(HAND_FEATURES)
    if block != "none":
        names += [f"answer_{i}" for i in range(dim)]
    if block == "answer+interaction":
        names += [f"prompt_x_answer_{i}" for i in range(dim)]
    return names
