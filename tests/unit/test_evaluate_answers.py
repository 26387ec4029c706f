"""Answer evaluation: facts, citations of the expected pages, rates and medians; `orchard eval --answers`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from orchard.cli import app
from orchard.evaluate import evaluate_answers, fact_found, load_questions, score_answer
from orchard.events import AnswerResult, Source, Timings

ITEM = {"q": "How many bytes should a token have?", "pages": ["library/secrets.html"], "facts": ["32"]}


def result(answer: str, *, sources: tuple[str, ...] = ("library/secrets.html",), cited: tuple[int, ...] = (1,),
           grounded: bool | None = True) -> AnswerResult:  # fmt: skip
    return AnswerResult(
        answer=answer, mode="rag", model="m", sources=tuple(Source(n=i, source=s) for i, s in enumerate(sources, 1)),
        cited=cited, grounded=grounded, timings=Timings(first_token_seconds=0.5, seconds=2.0),
    )  # fmt: skip


@pytest.mark.parametrize(
    ("fact", "answer", "found"),
    [
        ("32", "Use 32 bytes [1].", True),
        ("32", "Use 320 bytes.", False),  # a number must stand as a word
        ("32", "The token_bytes function [32].", False),  # a citation marker is not the fact
        ("DictReader", "Use csv.dictreader.", True),  # case-insensitive
        ("timezone.utc", "datetime.now(datetime.timezone.utc)", True),
        (":=", "It is written `:=`.", True),
        ("__enter__", "It needs __enter__ and __exit__.", True),
        ("insort", "Use bisect.insort_left [3].", True),  # a name may go on: insort_left is insort's
        ("RotatingFileHandler", "Use TimedRotatingFileHandler.", False),  # but must start a word
        ("3.8", "New in version 3.8.", True),
        ("3.8", "New in version 3.81.", False),
    ],
)
def test_a_fact_is_found_as_written_a_number_not_inside_another_or_a_marker(fact: str, answer: str, found: bool) -> None:
    assert fact_found(fact, answer) is found


def test_right_and_cited_needs_the_facts_and_a_citation_of_an_expected_page() -> None:
    assert score_answer(ITEM, result("32 bytes of randomness suffice [1]."))["right_and_cited"] is True
    wrong_sentence = score_answer(ITEM, result("Use the secrets module [1]."))  # the right page, a wrong sentence
    assert (wrong_sentence["cited_expected"], wrong_sentence["holds_facts"], wrong_sentence["right_and_cited"]) == (True, False, False)
    wrong_page = score_answer(ITEM, result("32 bytes [1].", sources=("library/random.html", "library/secrets.html")))
    assert (wrong_page["holds_facts"], wrong_page["cited_expected"], wrong_page["right_and_cited"]) == (True, False, False)
    uncited = score_answer(ITEM, result("32 bytes.", cited=()))
    assert uncited["right_and_cited"] is False and uncited["cited_sources"] == []
    nested = score_answer(ITEM, result("32 bytes [1].", sources=("/usr/share/doc/python3.11/html/library/secrets.html",)))
    assert nested["cited_expected"] is True  # a store with absolute sources still matches the page


def test_all_facts_must_be_held() -> None:
    item = {**ITEM, "facts": ["__enter__", "__exit__"]}
    assert score_answer(item, result("It needs __enter__ [1]."))["holds_facts"] is False
    assert score_answer(item, result("It needs __enter__ and __exit__ [1]."))["holds_facts"] is True


def test_a_failing_question_is_recorded_and_the_rest_still_asked() -> None:
    answers = iter([RuntimeError("model server down"), result(""), result("32 bytes [1].")])

    def answer(_question: str) -> AnswerResult:
        value = next(answers)
        if isinstance(value, Exception):
            raise value
        return value

    seen: list[str] = []
    out = evaluate_answers([ITEM, ITEM, ITEM], answer=answer, on_row=lambda row: seen.append(row["q"]))
    summary = out["summary"]
    assert len(seen) == 3 and out["questions"][0]["error"] == "RuntimeError: model server down"
    assert (summary["questions"], summary["errors"], summary["empty"], summary["right_and_cited"]) == (3, 1, 2, 0.333)
    assert summary["median_first_token_seconds"] == 0.5 and summary["median_seconds"] == 2.0


def test_the_question_file_keeps_facts(tmp_path: Path) -> None:
    path = tmp_path / "q.jsonl"
    path.write_text(json.dumps(ITEM) + "\n\n")
    assert load_questions(path) == [ITEM]


def test_orchard_eval_answers_json(tmp_path: Path, scripted) -> None:
    runner = CliRunner()
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "secrets.md").write_text("# Secrets\n\nAs of 2015, 32 bytes (256 bits) of randomness is sufficient for tokens.\n")
    questions = tmp_path / "q.jsonl"
    questions.write_text(json.dumps({**ITEM, "pages": ["docs/secrets.md"]}) + "\n")
    scripted("Tokens should have 32 bytes of randomness [1].")
    assert runner.invoke(app, ["ingest", str(folder), "--json"]).exit_code == 0
    out = runner.invoke(app, ["eval", "--answers", str(questions), "--json"])
    assert out.exit_code == 0, out.output
    data = json.loads(out.stdout)
    assert data["summary"]["right_and_cited"] == 1.0 and data["questions"][0]["first_token_seconds"] is not None
    refused = runner.invoke(app, ["eval"])
    assert refused.exit_code == 1 and "one of them" in refused.output
