"""The failure detectors (chains/answer_checks.py) on the failures seen in issue 10, and the quote."""

from __future__ import annotations

from orchard.chains.answer_checks import (
    check_answer,
    empty_or_garbage,
    extractive_answer,
    miscited,
    restates_question,
    unsupported_values,
    values,
)

SECRETS = (
    "secrets > How many bytes should tokens use?\n"
    "To be secure against brute-force attacks, tokens need to have sufficient randomness. "
    "As of 2015, it is believed that 32 bytes (256 bits) of randomness is sufficient."
)
PICKLE = "pickle.DEFAULT_PROTOCOL: an integer, the default protocol version used for pickling. The default protocol is 4."
LOGGING = "Logging levels: the numeric value of WARNING is 30 and of ERROR is 40. Use logging.getLogger(name)."


def kinds(question: str, answer: str, passages: list[str], **kw) -> list[str]:
    return [f.kind for f in check_answer(question, answer, passages, **kw)]


def test_an_empty_sentence_and_garbage_are_caught() -> None:
    assert empty_or_garbage("The simplest way to shuffle a list is [1].") is not None
    assert empty_or_garbage("the flag to use is [^]") is not None
    assert empty_or_garbage("[1].") is not None
    assert empty_or_garbage("[2] (library/secrets.html — Generating tokens)") is not None  # seen live
    assert kinds("How do I shuffle a list?", "The simplest way to shuffle a list is [1].", ["random.shuffle(x)"]) == ["empty"]


def test_a_restated_question_without_the_value_is_caught() -> None:
    question = "Which pickle protocol version is the default?"
    assert restates_question(question, "The pickle protocol version is the default [1].") is not None
    # a new number, but only "Python 3.8": still no value for a value question
    assert restates_question("What number is the default pickle protocol?",
                             "The default pickle protocol has been the default since Python 3.8 [1].") is not None  # fmt: skip
    assert restates_question("What number is the default pickle protocol?", "The default protocol is 4 [1].") is None


def test_a_right_answer_passes_every_detector() -> None:
    question = "How many bytes of randomness should a security token have?"
    assert kinds(question, "Tokens should use 32 bytes (256 bits) of randomness [1].", [SECRETS]) == []
    assert kinds("Which function returns a logger?", "Call `logging.getLogger(name)` [1].", [LOGGING]) == []


def test_a_value_in_no_passage_is_caught() -> None:
    finding = unsupported_values("Tokens should use 64 bytes [1].", [SECRETS])
    assert finding is not None and "64" in finding.detail
    assert unsupported_values("Use `secrets.token_bytes` [1].", [SECRETS]) is not None  # code in no passage
    assert unsupported_values("It is 32 bytes [1].", [SECRETS]) is None
    assert unsupported_values("The lighthouse keeper keeps 1 lantern [2].", [SECRETS, LOGGING]) is not None


def test_values_are_numbers_identifiers_code_and_quotes() -> None:
    found = values('Use `json.dumps(obj)` or json.loads with indent=4 and "sort_keys" in Python 3.11 [1].')
    assert "json.dumps(obj)" in found and "json.loads" in found and "4" in found and "sort_keys" in found
    assert "3.11" not in found and "1" not in found  # a Python version and a citation are not values


def test_a_citation_to_a_passage_that_does_not_hold_the_sentence_is_caught() -> None:
    answer = "The numeric value of the WARNING level is 30 [1]."
    finding = miscited(answer, [SECRETS, LOGGING])
    assert finding is not None and "[2]" in finding.detail
    assert miscited("The numeric value of the WARNING level is 30 [2].", [SECRETS, LOGGING]) is None


def test_a_refusal_is_a_failure_only_when_the_gate_is_strict() -> None:
    refusal = "The documents do not answer this question."
    assert kinds("How many bytes should tokens use?", refusal, [SECRETS]) == []
    assert kinds("How many bytes should tokens use?", refusal, [SECRETS], strict=True) == ["refused"]


def test_the_extractive_answer_quotes_the_best_sentence_with_its_number() -> None:
    text, cited = extractive_answer("How many bytes of randomness should tokens use?", [LOGGING, SECRETS])
    assert cited == [2] and "32 bytes (256 bits)" in text and text.endswith("[2]") and text.startswith("“")
    assert extractive_answer("How many lanterns does the lighthouse keeper keep?", [SECRETS, LOGGING], min_coverage=0.5) is None


def test_names_in_a_code_example_and_list_numbers_are_not_claims() -> None:
    answer = "Use `os.getcwd()`:\n```python\nimport os\nmy_dir = os.getcwd()\n```\n1. It returns a string [1]."
    assert values(answer) == ["os.getcwd()"]
    passage = "os > Files and Directories\ngetcwd()\nReturn a string representing the current working directory."
    assert unsupported_values(answer, [passage]) is None  # the os page's getcwd() holds os.getcwd


def test_a_quote_names_the_api_its_sentence_describes() -> None:
    passage = ("secrets > Generating tokens\nsecrets.token_bytes([nbytes])\nReturn a random byte string.\n"
               "secrets.token_urlsafe([nbytes])\nReturn a random URL-safe text string, containing nbytes random bytes.")  # fmt: skip
    text, cited = extractive_answer("Which secrets function returns a random URL-safe text string?", [passage])
    assert text.startswith("“secrets.token_urlsafe([nbytes]): Return a random URL-safe text string") and cited == [1]
