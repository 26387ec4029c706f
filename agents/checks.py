"""Keeping the agent's answer honest about its tool's result.

Measured with the embedded 0.5B model: given ``population\\n67000`` it wrote "670,000"; given
``1307674368000`` from ``math.factorial(15)`` it wrote "the factorial of 15 is not defined".
When a tool returns one value, the answer must state that value: :func:`checked_answer` keeps the
model's sentence when it does, and otherwise replaces it with a plain statement of the result.
After a ``search_docs`` call it wrote the passage's label as the answer ("The command
`samples/orchard-guide.md — Adding your documents` is used to add my documents"): an answer that
repeats a passage label is replaced by a quote of the passage sentence that best answers the
question (:func:`orchard.chains.answer_checks.extractive_answer`), cited.
"""

from __future__ import annotations

import math
import re

_NUMBER = re.compile(r"-?\d[\d,_ ]*(?:\.\d+)?(?:[eE][-+]?\d+)?")
_ROW_COUNT = re.compile(r"^\(1 row\)$")
_PASSAGE_LABEL = re.compile(r"^\[(\d{1,2})\] \((.+)\)$", re.M)  # chains.context.format_context's "[n] (source — section)"


def single_value(tool: str, output: str) -> str | None:
    """The one value a call returned: one printed line (python) or one row of one column (sql,
    table); None for anything larger, empty or failed."""
    lines = [line for line in output.strip().splitlines() if line.strip()]
    if tool == "python":
        return lines[0].strip() if len(lines) == 1 and len(lines[0]) <= 80 else None
    if tool in ("sql", "table") and len(lines) == 3 and _ROW_COUNT.match(lines[2]) and " | " not in lines[0]:
        return lines[1].strip()
    return None


def _as_number(text: str) -> float | None:
    try:
        return float(text.replace(",", "").replace("_", "").replace(" ", ""))
    except ValueError:
        return None


def states_value(answer: str, value: str) -> bool:
    """Does ``answer`` state ``value`` (numbers compared as numbers: 1,307,674,368,000 = 1307674368000,
    467 = 467.0; text case-insensitively)?"""
    number = _as_number(value)
    if number is None:
        return value.lower() in answer.lower()
    for match in _NUMBER.finditer(answer):
        found = _as_number(match.group().strip(" ,"))
        if found is not None and math.isclose(found, number, rel_tol=1e-9, abs_tol=1e-9):
            return True
    return False


def passages(output: str) -> tuple[list[str], list[str]]:
    """(labels, texts) of a ``search_docs`` result's numbered passages."""
    marks = list(_PASSAGE_LABEL.finditer(output))
    texts = [output[m.end() : marks[i + 1].start() if i + 1 < len(marks) else len(output)].strip() for i, m in enumerate(marks)]
    return [m.group(2) for m in marks], texts


def echoes_label(answer: str, labels: list[str]) -> bool:
    """The answer repeats a passage label (its ``source — section``, or the section after a path)."""
    plain = answer.replace("`", "")
    return any(label in plain or (" — " in label and label.rsplit("/", 1)[-1] in plain) for label in labels)


def checked_answer(answer: str, *, tool: str, output: str, ok: bool, question: str = "") -> tuple[str, bool]:
    """(the answer to give, whether the model's own sentence was kept)."""
    if tool == "search_docs" and ok and question:
        labels, texts = passages(output)
        if labels and echoes_label(answer, labels):
            from orchard.chains.answer_checks import extractive_answer

            quote = extractive_answer(question, texts)
            return (quote[0], False) if quote else (answer, True)
    value = single_value(tool, output) if ok else None
    if value is None or states_value(answer, value):
        return answer, True
    return f"The {tool} result is {value}.", False
