"""Citation attribution on a streamed answer."""

from __future__ import annotations

import pytest

from orchard.chains.citations import StreamingCiter

SOURCES = [
    "Prune apple trees in late winter, when the branches are bare.",
    "Maya Okafor coordinates the volunteers on Saturdays.",
]


def run(tokens: list[str], sources: list[str] = SOURCES) -> tuple[str, StreamingCiter]:
    citer = StreamingCiter(sources)
    out: list[str] = []
    for token in tokens:
        out += citer.feed(token)
    out += citer.finish()
    return "".join(out), citer


def test_uncited_sentences_get_the_supporting_source_before_their_full_stop() -> None:
    text, citer = run(["Apple trees", " are pruned in late", " winter.", " Maya", " Okafor coordinates", " them."])
    assert text == "Apple trees are pruned in late winter [1]. Maya Okafor coordinates them [2]."
    assert citer.cited == [1, 2] and citer.supported == 2


def test_the_models_own_markers_are_kept_and_counted() -> None:
    text, citer = run(["Volunteers meet on Saturdays [2]. Prune in winter [1]."])
    assert text == "Volunteers meet on Saturdays [2]. Prune in winter [1]."
    assert citer.cited == [2, 1]


def test_unsupported_sentences_get_no_number() -> None:
    text, citer = run(["Bananas grow in the tropics."])
    assert text == "Bananas grow in the tropics." and citer.cited == [] and citer.supported == 0


def test_decimals_code_and_refusals_are_not_sentence_ends() -> None:
    text, _ = run(["In 3.5 use `os.path.join`", " to prune apple trees in late winter."])
    assert text == "In 3.5 use `os.path.join` to prune apple trees in late winter [1]."
    text, citer = run(["The documents do not answer this question."])
    assert text == "The documents do not answer this question." and citer.cited == []


def test_list_lines_end_sentences() -> None:
    text, _ = run(["Steps:\n", "1. Prune the apple trees in late winter\n", "2. Ask Maya Okafor"])
    assert text == "Steps:\n1. Prune the apple trees in late winter [1]\n2. Ask Maya Okafor [2]"


@pytest.mark.parametrize("split", [1, 3, 7])
def test_token_boundaries_do_not_change_the_result(split: int) -> None:
    answer = "Apple trees are pruned in late winter. Maya Okafor coordinates volunteers!"
    tokens = [answer[i : i + split] for i in range(0, len(answer), split)]
    assert run(tokens)[0] == "Apple trees are pruned in late winter [1]. Maya Okafor coordinates volunteers [2]!"
