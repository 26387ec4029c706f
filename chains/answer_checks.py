"""Failure detectors for a cited answer, and the extractive fallback (pure functions).

Failures seen in the 0.5B model's answers (issue 10), each with its detector:

==================  ==========================================================================
kind                fires when
==================  ==========================================================================
``empty``           no content left once citation markers and punctuation are removed, a
                    dangling sentence ("The simplest way ... is [1]."), or garbage ("[^]")
``restated``        the answer adds no content word to the question's ("The pickle protocol
                    version has been the default since Python 3.8 [1]." for a value question:
                    a question asking *how many / which value* gets no new value)
``unsupported``     a value or name (number, identifier, quoted string, code) that appears in
                    no passage and not in the question
``miscited``        a sentence cites [n] but shares little with passage n while another
                    passage holds it
``refused``         the model refused although the gate judged the evidence strong
==================  ==========================================================================

:func:`check_answer` runs them all; :func:`extractive_answer` picks the passage sentence that best
answers the question, to quote when a retry fails too.

Example::

    >>> [f.kind for f in check_answer("Which port?", "The port is [1].", ["The port is 8000."])]
    ['empty']
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from orchard.bm25 import tokenize
from orchard.chains.citations import META_WORDS
from orchard.chains.gate import content_words

_MARKER = re.compile(r"\[(\d{1,2})\]")
_GARBAGE = re.compile(r"\[\^\]|\[\^|\[\s*\]|\[\d*\^|\uFFFD")
_DANGLING = re.compile(
    r"\b(is|are|was|were|be|the|a|an|of|to|by|with|from|as|called|named|use|using|uses|module|function|method)"
    r"\s*(\[\d{1,2}\]\s*)*[.:!?]?\s*$",
    re.I,
)
_HEADER_ECHO = re.compile(r"^\s*(\[\d{1,2}\]\s*\([^)]*\)\s*)+$")  # "[2] (library/secrets.html — Generating tokens)"
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")
_NUMBER = re.compile(r"(?<![\w.])-?\d+(?:\.\d+)?(?![\w])")
_PY_VERSION = re.compile(r"\bpython\s+\d+(?:\.\d+)*", re.I)
_CODE = re.compile(r"`([^`\n]{1,80})`")
_FENCED = re.compile(r"```.*?(```|\Z)", re.S)  # a code example: its names are the model's own
_NAME_LIKE = re.compile(r"^[A-Za-z_][\w.]*(\(\w*\))?$")  # `json.dumps()` is a claim; `x = [1, 2]` an example
_LIST_MARKER = re.compile(r"(?m)^\s*\d+[.)]\s")
_QUOTED = re.compile(r"[\"“']([^\"”'\n]{2,60})[\"”']")
_IDENTIFIER = re.compile(r"\b[A-Za-z_]\w+(?:\.[A-Za-z_]\w+)+\b|\b[a-z]+_[\w]+\b|\b[a-z]+[A-Z]\w*\b|\b[A-Z][a-z]+[A-Z]\w*\b")
_VALUE_QUESTION = re.compile(r"^\s*(how (many|much|long|big|large)|what (number|size|port|value|version|level)|which (port|value|version|level|number))", re.I)  # fmt: skip
REFUSAL_PHRASES = ("do not answer this question", "don't answer this question", "does not answer this question")
MIN_SHARED = 0.5  # the share of a sentence's words a passage must hold to "hold" it
LOW_SHARED = 0.25  # below this share, the cited passage does not hold the sentence


@dataclass(frozen=True)
class Finding:
    """One detector that fired: its ``kind`` (see the module docstring) and what it saw."""

    kind: str
    detail: str


def is_refusal(answer: str) -> bool:
    text = answer.lower()
    return any(phrase in text for phrase in REFUSAL_PHRASES)


def strip_markers(text: str) -> str:
    return _MARKER.sub("", text)


def sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE_END.split(text) if s and s.strip()]


def answer_words(text: str) -> set[str]:
    """Content words of an answer (markers, meta words like "according to the sources" dropped)."""
    return content_words(strip_markers(text)) - META_WORDS


# --- the detectors ----------------------------------------------------------------------------


def empty_or_garbage(answer: str) -> Finding | None:
    if _GARBAGE.search(answer):
        return Finding("empty", "garbage marker in the answer")
    if _HEADER_ECHO.match(answer):
        return Finding("empty", "only a source header, copied from the prompt")
    if len(answer_words(answer)) < 1:
        return Finding("empty", "no content once the citation markers are removed")
    parts = sentences(answer)
    if parts and all(_DANGLING.search(s) for s in parts):
        return Finding("empty", f"dangling sentence: {parts[-1][:80]!r}")
    return None


def values(text: str) -> list[str]:
    """The values and names ``text`` states: numbers, identifiers, quoted strings and inline code
    (not the names inside a fenced code example, not list numbers, not "Python 3.11")."""
    text = _LIST_MARKER.sub(" ", strip_markers(_PY_VERSION.sub(" ", _FENCED.sub(" ", text))))
    found = [m.group(1).strip() for m in _CODE.finditer(text) if _NAME_LIKE.match(m.group(1).strip())]
    found += [m.group(1).strip() for m in _QUOTED.finditer(text)]
    rest = _QUOTED.sub(" ", _CODE.sub(" ", text))
    found += _IDENTIFIER.findall(rest)
    found += _NUMBER.findall(rest)
    return [v for v in dict.fromkeys(found) if v]


def _normal(text: str) -> str:
    return re.sub(r"\s+", " ", text.lower())


def _appears(value: str, texts: Sequence[str]) -> bool:
    """Is ``value`` in one of ``texts``? A dotted name also counts when its last part is there
    (``os.getcwd`` in a passage on ``getcwd()`` of the os page)."""
    needle = _normal(value).rstrip("()").strip()
    if not needle:
        return True
    last = needle.rsplit(".", 1)[-1]
    if "." in needle and not re.fullmatch(r"[\d.-]+", needle) and len(last) >= 3 and needle != last:
        return _appears(last, texts) or any(needle in _normal(t) for t in texts)
    if re.fullmatch(r"-?\d+(\.\d+)?", needle):
        pattern = re.compile(rf"(?<![\w.]){re.escape(needle)}(?![\w]|\.\d)")
        return any(pattern.search(_normal(t)) for t in texts)
    return any(needle in _normal(t) for t in texts)


_CODE_SPANS = re.compile(r"```.*?(```|\Z)|`[^`\n]*`", re.S)
_ALL_DIGITS = re.compile(r"^\d[\d.,]*$")


def _prose(answer: str) -> str:
    """The answer without its code blocks and inline code (where made-up examples live)."""
    return _CODE_SPANS.sub(" ", answer)


def unsupported_values(answer: str, passages: Sequence[str], question: str = "", *, numbers_only: bool = False) -> Finding | None:
    found = [v for v in values(answer) if _ALL_DIGITS.match(v)] if numbers_only else values(answer)
    missing = [v for v in found if not _appears(v, [*passages, question])]
    if missing:
        return Finding("unsupported", "not in any passage: " + ", ".join(missing[:5]))
    return None


def restates_question(question: str, answer: str) -> Finding | None:
    """Fires when the answer adds no content word to the question's, or a value question gets no
    new value; a question of fewer than two content words ("shuffle?") is too short to judge."""
    asked_words = content_words(question) | answer_words(question)
    if len(asked_words) < 2:
        return None
    new = answer_words(answer) - asked_words
    if not new:
        return Finding("restated", "no content word beyond the question's")
    if _VALUE_QUESTION.search(question):
        asked = set(values(question))
        given = [v for v in values(answer) if v not in asked and _normal(v) not in _normal(question)]
        if not given:
            return Finding("restated", "a value question answered without a value")
    return None


def _share(words: set[str], passage: str) -> float:
    return len(words & set(tokenize(passage))) / len(words) if words else 1.0


def miscited(answer: str, passages: Sequence[str]) -> Finding | None:
    for sentence in sentences(answer):
        cited = [int(n) for n in _MARKER.findall(sentence) if 1 <= int(n) <= len(passages)]
        words = answer_words(sentence)
        if not cited or len(words) < 3:
            continue
        shares = [_share(words, p) for p in passages]
        held = max(shares[n - 1] for n in cited)
        best = max(range(len(passages)), key=lambda i: shares[i])
        if held < LOW_SHARED and shares[best] >= MIN_SHARED and best + 1 not in cited:
            return Finding("miscited", f"[{cited[0]}] shares {held:.0%} of {sentence[:60]!r}; [{best + 1}] {shares[best]:.0%}")
    return None


def check_answer(
    question: str, answer: str, passages: Sequence[str], *, strict: bool = False, names: Sequence[str] = ()
) -> list[Finding]:
    """Every failure found in ``answer`` to ``question`` over the numbered ``passages``.

    ``names``: more text a value may come from without being invented (the passages' sources and
    sections, which the model sees in their headers).

    ``strict``: the gate judged the evidence strong, so a refusal is a failure too. A refusal
    is otherwise accepted and not checked further.
    """
    if is_refusal(answer):
        return [Finding("refused", "refused although the passages hold the answer")] if strict else []
    # Only numbers in the answer's prose count as invented values: measured on the 24 public
    # questions (2026-12-01, two runs), checking every name and code value fired on 15 of 24
    # answers, nearly always on a made-up example in the answer's code (`Person`, `my_function`,
    # `example.txt.gz`), and the quotes that replaced them made 5-6 right answers wrong.
    findings = [
        empty_or_garbage(answer),
        restates_question(question, answer),
        unsupported_values(_prose(answer), [*passages, *names], question, numbers_only=True),
        miscited(answer, passages),
    ]
    found = [f for f in findings if f is not None]
    if any(f.kind == "empty" for f in found):  # an empty answer restates nothing: say it once
        found = [f for f in found if f.kind != "restated"]
    return found


# --- the extractive fallback ------------------------------------------------------------------


@dataclass(frozen=True)
class Extract:
    sentence: str
    n: int  # the passage's citation number
    score: float


_SIGNATURE = re.compile(r"^(class |exception |await |async )?[A-Za-z_][\w.]*(\(.*\))?( -> .*)?$")


def _passage_sentences(passage: str) -> list[str]:
    """The passage's sentences (hard-wrapped lines joined); those under an API signature line of
    the docs (``secrets.token_urlsafe([nbytes])``) start with it, so a quote names what it describes."""
    lines = [ln.strip() for ln in passage.splitlines() if ln.strip()]
    if len(lines) > 1 and " > " in lines[0] and len(lines[0]) < 200:  # the "title > section" header
        lines = lines[1:]
    out: list[str] = []
    signature, paragraph = "", []

    def flush() -> None:
        text = " ".join(paragraph)
        for sentence in (s.strip() for s in re.split(r"(?<=[.!?])\s+", text) if s.strip()):
            if 3 <= len(sentence.split()) <= 60:
                out.append(f"{signature}: {sentence}" if signature else sentence)
        paragraph.clear()

    for line in lines:  # the docs' text is hard-wrapped: a paragraph runs until the next signature
        if len(line) <= 100 and _SIGNATURE.match(line) and ("(" in line or "." in line or "_" in line):
            flush()
            signature = line
            continue
        paragraph.append(line)
    flush()
    return out


def best_sentence(question: str, passages: Sequence[str]) -> Extract | None:
    """The passage sentence sharing most of the question's content words (a value breaks ties;
    earlier passages, ranked higher by retrieval, win equal scores)."""
    words = content_words(question)
    best: Extract | None = None
    for n, passage in enumerate(passages, start=1):
        for sentence in _passage_sentences(passage):
            share = _share(words, sentence)
            score = share + (0.15 if values(sentence) else 0.0) - 0.02 * (n - 1)
            if best is None or score > best.score:
                best = Extract(sentence, n, score)
    if best is None or _share(words, best.sentence) == 0:
        return None
    return best


def extractive_answer(question: str, passages: Sequence[str], *, min_coverage: float = 0.0) -> tuple[str, list[int]] | None:
    """A quote of the best supporting sentence with its citation, or None when none holds at least
    ``min_coverage`` of the question's content words (and at least one)."""
    extract = best_sentence(question, passages)
    if extract is None or _share(content_words(question), extract.sentence) < min_coverage:
        return None
    sentence = extract.sentence.rstrip()
    if sentence[-1:] in ".!?:;":
        sentence = sentence[:-1]
    return f"“{sentence}” [{extract.n}]", [extract.n]
