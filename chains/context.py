"""The passages an answer is written from: fitted to a token budget, numbered for citing.

On this CPU the 0.5B model reads its prompt at ~120 tokens/s (measured, 2 threads), so every
passage token is waiting time before the first answer token: the budget bounds that wait. The
budget is counted in *estimated* tokens (:func:`estimate_tokens`, characters / 4: the Python-docs
passages measured 4.28 characters per token with the Qwen2.5 tokenizer, so the estimate errs on
the long side) — no tokenizer call on the answer path.

:func:`fit_passages` keeps the best-ranked passages whole while they fit; the first that does not
fit is cut down to its sentences that share the most words with the question (kept in their
order), so a budget never drops a passage's answer-bearing sentence just because the passage is
long. :func:`fit_context` is the older character budget (whole passages only), kept for callers
that use it (the search_docs tool, bench/run.py).

Example::

    >>> from langchain_core.documents import Document
    >>> docs = [Document(page_content="random.shuffle(x) shuffles x in place.", metadata={"source": "library/random.html"})]
    >>> print(format_context(fit_passages(docs, question="How do I shuffle a list?", max_tokens=300)))
    [1] (library/random.html)
    random.shuffle(x) shuffles x in place.
"""

from __future__ import annotations

import math
import re
from typing import Literal

from langchain_core.documents import Document

#: Characters per token assumed by :func:`estimate_tokens` (measured 4.28 on the Python docs).
CHARS_PER_TOKEN = 4.0
#: Estimated tokens of one passage's header line ``[n] (source — section)``.
HEADER_TOKENS = 12
#: The passages' budget of an answer, in estimated tokens, headers included (~2,400 characters of text, the 0.750
#: baseline was measured with). Measured 2026-12-01 on the 24 public questions (0.5B, sources in the
#: question's message, ``sentences`` cuts): 600 -> right and cited 0.792, 250 -> 0.542 (its passages
#: held the facts as often, 38 of 50 questions, but the 0.5B answered worse from cut passages, and
#: cut CSV rows lost their numbers). 250 reads ~2.3 s before the first token at 120 tokens/s, 600
#: ~4.5 s. The default strategy keeps whole passages (``whole``); ``sentences`` is the option.
DEFAULT_CONTEXT_TOKENS = 700
#: A cut passage keeps at least this many estimated tokens, else it is left out.
MIN_PIECE_TOKENS = 24

_SENTENCE_END = re.compile(r"(?<=[.!?:])\s+(?=[A-Z0-9`>'\"(\[])|\n{2,}")


def estimate_tokens(text: str) -> int:
    """Tokens ``text`` costs the model, estimated from its length (see the module docstring)."""
    return math.ceil(len(text) / CHARS_PER_TOKEN)


def format_context(docs: list[Document]) -> str:
    """Number the passages the way the answer must cite them: ``[1] (source — section)``."""
    blocks = []
    for n, doc in enumerate(docs, start=1):
        where = doc.metadata.get("source", "?")
        section = doc.metadata.get("section") or doc.metadata.get("title")
        if section:
            where += f" — {section}"
        blocks.append(f"[{n}] ({where})\n{doc.page_content}")
    return "\n\n".join(blocks)


def fit_context(docs: list[Document], max_chars: int) -> list[Document]:
    """The best-ranked documents whose text fits in ``max_chars`` (at least one), kept whole."""
    kept: list[Document] = []
    used = 0
    for doc in docs:
        if kept and used + len(doc.page_content) > max_chars:
            break
        kept.append(doc)
        used += len(doc.page_content)
    return kept


def split_sentences(text: str) -> list[str]:
    """Sentences (and paragraphs, and code lines glued to them) of a passage, in order."""
    return [piece.strip() for piece in _SENTENCE_END.split(text) if piece and piece.strip()]


def _overlap(sentence: str, asked: set[str]) -> int:
    from orchard.bm25 import tokenize

    return len(asked & set(tokenize(sentence)))


def best_sentences(text: str, *, question: str, max_tokens: int) -> str:
    """The sentences of ``text`` sharing most words with ``question`` that fit in ``max_tokens``,
    in their original order ('' when not even one fits). Ties go to the earlier sentence; room
    left after the matching ones is filled with the others (keeping them found the facts of 38 of
    the 50 eval questions at a 250-token budget, against 36 keeping only matching sentences)."""
    from orchard.bm25 import tokenize

    sentences = split_sentences(text)
    asked = set(tokenize(question))
    overlaps = [_overlap(sentence, asked) for sentence in sentences]
    ranked = sorted(range(len(sentences)), key=lambda i: (-overlaps[i], i))
    chosen: set[int] = set()
    used = 0
    for i in ranked:
        cost = estimate_tokens(sentences[i]) + 1
        if used + cost <= max_tokens:
            chosen.add(i)
            used += cost
    return " ".join(sentences[i] for i in sorted(chosen))


def _cut(doc: Document, text: str) -> Document:
    return Document(page_content=text, metadata={**doc.metadata, "trimmed": True}, id=doc.id)


Strategy = Literal["sentences", "cut_last", "whole"]


def fit_passages(docs: list[Document], *, question: str, max_tokens: int, strategy: Strategy = "whole") -> list[Document]:
    """The best-ranked passages fitted into ``max_tokens`` estimated tokens (headers included).

    Strategies:
        ``sentences``: every passage keeps its sentences closest to the question
            (:func:`best_sentences`) within an even share of what is left of the budget; a passage
            that fits its share is kept whole, and unused budget passes on to the next ones.
        ``cut_last``: whole passages in rank order while they fit; the first that does not fit is
            cut to its sentences closest to the question, and fitting stops there.
        ``whole``: whole passages in rank order while they fit (the top one always, cut if needed).

    A cut passage is a new Document with the same metadata plus ``"trimmed": True``, so the
    answer's citations and checks see exactly what the model read. The top passage is always kept.
    """
    kept: list[Document] = []
    left = max_tokens
    for i, doc in enumerate(docs):
        share = left // (len(docs) - i) if strategy == "sentences" else left
        room = share - HEADER_TOKENS
        if estimate_tokens(doc.page_content) <= room:
            kept.append(doc)
            left -= HEADER_TOKENS + estimate_tokens(doc.page_content)
            continue
        if strategy == "whole" and kept:
            break
        header, _, body = doc.page_content.partition("\n")  # the chunk's "title > section" line names the API: kept
        if not body:
            header, body = "", header
        body_room = room - (estimate_tokens(header) + 1 if header else 0)
        piece = best_sentences(body, question=question, max_tokens=body_room) if body_room >= MIN_PIECE_TOKENS else ""
        piece = f"{header}\n{piece}" if header and piece else piece
        if not piece and not kept:  # the top passage: never dropped, cut by length if need be
            piece = doc.page_content[: max(room, MIN_PIECE_TOKENS) * int(CHARS_PER_TOKEN)]
        if piece:
            kept.append(_cut(doc, piece))
            left -= HEADER_TOKENS + estimate_tokens(piece)
        if strategy != "sentences":
            break
    return kept

