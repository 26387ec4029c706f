"""Distillation data: a teacher answers the questions, the student is SFT-trained on its answers.

The teacher is any ``question -> answer`` callable (the 1.5B preset behind llama.cpp, or an
OpenAI-compatible endpoint such as vLLM, wrapped by the caller); questions come from the user's
documents. :func:`teacher_rows` turns them into the SFT rows :func:`orchard.tuning.train.train_sft`
takes, tagged ``source="teacher"``; empty or failed answers are left out and counted.

Example::

    >>> rows, skipped = teacher_rows(["What is a list?"], lambda q: "A mutable sequence.")
    >>> rows
    [{'prompt': 'What is a list?', 'completion': 'A mutable sequence.', 'source': 'teacher'}]
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

Teacher = Callable[[str], str]


def teacher_rows(
    questions: Iterable[str], teacher: Teacher, *, progress: Callable[[int, str], None] | None = None,
) -> tuple[list[dict[str, str]], int]:
    """``({prompt, completion, source}`` rows, number of questions skipped``)`` — a question is
    skipped when it is blank, the teacher raises, or the answer is blank. Duplicates are asked once."""
    rows: list[dict[str, str]] = []
    seen: set[str] = set()
    skipped = 0
    for number, question in enumerate(questions, 1):
        key = " ".join(str(question).split())
        if not key or key in seen:
            skipped += bool(not key)
            continue
        seen.add(key)
        try:
            answer = (teacher(question) or "").strip()
        except Exception:  # a teacher that fails on one question must not end the run
            answer = ""
        if answer:
            rows.append({"prompt": question, "completion": answer, "source": "teacher"})
        else:
            skipped += 1
        if progress is not None:
            progress(number, question)
    return rows, skipped
