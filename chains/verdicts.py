"""Reading a small model's critiques and revisions: the verdict, the reason, the clean answer.

Measured with a 0.5B model (see :mod:`orchard.chains.constitutional`): critiques start with
``YES``/``NO`` in many dresses (markdown, a ``Verdict:`` label, a verdict on the last line) and
revisions come with labels ("Revised answer:") and quotes. These functions read them robustly.

Example::

    >>> parse_verdict("**Verdict:** YES\\nIt guesses the price.")
    True
    >>> clean_revision('Revised answer: "I am not sure."')
    'I am not sure.'
"""

from __future__ import annotations

import re

_LABEL = re.compile(r"^\W*(?:final\s+|line\s*1\W*)?(verdict|result|decision|answer|reply)?\W*\s*", re.I)
_REVISE_START = re.compile(
    r"^(yes|not\s+ok(ay)?|revise[ds]?|revision|needs?\s+(a\s+)?revision|needs?\s+to\s+be\s+revised"
    r"|fails?|failed|issues?\s+found|problems?\s+found)\b"
)
_OK_START = re.compile(r"^(no|ok(ay)?|pass(es|ed)?|fine|none|no\s+(issues?|problems?|revision))\b")
_ANYWHERE = re.compile(r"\b(YES|NO|REVISE|NOT OK|OK)\b")


def _line_verdict(line: str) -> bool | None:
    words = re.sub(r"[*_`#>\"']", " ", line).strip().lower()
    words = _LABEL.sub("", words).strip(" :-=.")
    if _REVISE_START.match(words):
        return True
    if _OK_START.match(words):
        return False
    return None


def parse_verdict(text: str) -> bool | None:
    """Does this critique find a problem? True (revise), False (fine) or None (no verdict).

    Reads the first line that has words, then the last (markdown, quotes and a ``Verdict:`` /
    ``Line 1:`` label ignored): ``YES``, ``Yes, ...``, ``REVISE``, ``needs revision``, ``NOT OK``
    mean True; ``NO``, ``no.``, ``OK``, ``No issues``, ``PASS`` mean False. Failing that, the
    first upper-case ``YES``/``NO``/``REVISE``/``OK`` word anywhere decides.
    """
    lines = [line for line in text.splitlines() if re.search(r"[a-zA-Z]", line)]
    for line in lines[:1] + lines[-1:]:
        if (verdict := _line_verdict(line)) is not None:
            return verdict
    if match := _ANYWHERE.search(text):
        return match.group(1) in ("YES", "REVISE", "NOT OK")
    return None


_REVISION_LABEL = re.compile(
    r"^(\*\*|#+)?\s*(here\s+is\s+(the|a|my)\s+)?(new|revised|rewritten|improved|updated|final)?"
    r"\s*(version\s+of\s+the\s+)?answer\s*(\*\*)?\s*(:|\n)\s*(\*\*)?",
    re.I,
)


def _strip_label(text: str) -> str:
    """``text`` without leading labels ("Revised answer:", "**New answer**") and blank space."""
    text = text.lstrip()
    previous = None
    while previous != text:
        previous = text
        text = _REVISION_LABEL.sub("", text, count=1).lstrip()
    return text


def clean_revision(text: str) -> str:
    """The revised answer without the labels and wrapping quotes small models add."""
    text = _strip_label(text).strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'" and text.count(text[0]) == 2:
        text = text[1:-1].strip()
    return text


_VERDICT_PREFIX = re.compile(
    r"^[\W_]*(?:(?:final\s+)?verdict|answer|reply|line\s*1)?[\W_]*(?:yes|no|ok|okay|revise|not\s+ok)\b[\W_]*",
    re.I,
)


def critique_reason(critique: str) -> str:
    """The critique without its verdict word (what the revision is told)."""
    lines = [line.strip() for line in critique.strip().splitlines() if line.strip()]
    if lines:
        lines[0] = _VERDICT_PREFIX.sub("", lines[0]).strip()
    return " ".join(line for line in lines if line)


class RevisionCleaner:
    """Cleans a streamed revision: holds back the start until its label (if any) can be seen."""

    HOLD = 80  # characters held before deciding there is no label

    def __init__(self) -> None:
        self.buffer, self.started, self.emitted = "", False, ""

    def feed(self, token: str) -> str:
        if self.started:
            self.emitted += token
            return token
        self.buffer += token
        stripped = self.buffer.strip()
        if ("\n" in stripped and len(stripped) > 20) or len(stripped) > self.HOLD:
            return self._release()
        return ""

    def _release(self) -> str:
        self.started = True
        text = _strip_label(self.buffer)
        self.emitted += text
        return text

    def finish(self) -> str:
        """What is left to emit at the end ("" if nothing): a short revision, fully cleaned."""
        if self.started:
            return ""
        self.started = True
        self.emitted = clean_revision(self.buffer)
        return self.emitted
