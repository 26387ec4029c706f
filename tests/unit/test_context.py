"""Passage fitting (chains/context.py): the token budget, sentence selection, numbering."""

from __future__ import annotations

import pytest
from langchain_core.documents import Document

from orchard.chains.context import (
    HEADER_TOKENS,
    best_sentences,
    estimate_tokens,
    fit_context,
    fit_passages,
    format_context,
    split_sentences,
)
from orchard.chains.rag import fit_context as rag_fit_context
from orchard.chains.rag import format_context as rag_format_context

FILLER = "The module has many other functions that are described in later sections of this page."


def doc(text: str, source: str = "d.html", **meta) -> Document:
    return Document(page_content=text, metadata={"source": source, **meta})


def cost(docs: list[Document]) -> int:
    return sum(HEADER_TOKENS + estimate_tokens(d.page_content) for d in docs)


def test_rag_re_exports_the_same_functions() -> None:
    assert rag_fit_context is fit_context and rag_format_context is format_context


def test_format_context_numbers_passages_with_source_and_section() -> None:
    text = format_context([doc("a.", "x.html", section="Intro"), doc("b.", "y.html")])
    assert text == "[1] (x.html — Intro)\na.\n\n[2] (y.html)\nb."


def test_split_sentences_keeps_every_word_in_order() -> None:
    text = "First one. Second: `x = 1` here!\n\nThird paragraph? yes."
    pieces = split_sentences(text)
    assert pieces == ["First one.", "Second:", "`x = 1` here!", "Third paragraph? yes."]
    assert " ".join(pieces).split() == text.split()


def test_best_sentences_picks_the_overlapping_ones_in_their_order() -> None:
    text = f"{FILLER} Call random.shuffle to shuffle a list in place. {FILLER} Shuffling needs a mutable list."
    kept = best_sentences(text, question="How do I shuffle a list?", max_tokens=30)
    assert kept == "Call random.shuffle to shuffle a list in place. Shuffling needs a mutable list."


def test_whole_passages_fit_the_budget_and_the_top_one_is_always_kept() -> None:
    docs = [doc("x " * 200, f"d{i}.html") for i in range(4)]  # 100 estimated tokens each
    kept = fit_passages(docs, question="q", max_tokens=250, strategy="whole")
    assert [d.metadata["source"] for d in kept] == ["d0.html", "d1.html"] and cost(kept) <= 250
    (only,) = fit_passages(docs, question="q", max_tokens=40, strategy="whole")
    assert only.metadata["source"] == "d0.html" and only.metadata["trimmed"] and len(only.page_content) < 200


@pytest.mark.parametrize("strategy", ["sentences", "cut_last", "whole"])
def test_every_strategy_stays_within_the_budget(strategy: str) -> None:
    docs = [doc(" ".join([FILLER] * 6), f"d{i}.html") for i in range(5)]
    for budget in (120, 300, 600):
        kept = fit_passages(docs, question="other functions", max_tokens=budget, strategy=strategy)
        assert kept and cost(kept) <= budget
        ranks = [int(d.metadata["source"][1]) for d in kept]
        assert ranks == sorted(ranks) and ranks[0] == 0  # rank order, the top passage first


def test_sentences_strategy_keeps_the_answer_sentence_of_every_passage() -> None:
    answer = "Use random.shuffle to shuffle a list in place."
    docs = [doc(f"{FILLER} {FILLER} {answer} {FILLER}", f"d{i}.html") for i in range(3)]
    kept = fit_passages(docs, question="How do I shuffle a list?", max_tokens=120, strategy="sentences")
    assert len(kept) == 3 and all(answer in d.page_content and d.metadata["trimmed"] for d in kept)
    whole = fit_passages(docs, question="How do I shuffle a list?", max_tokens=120, strategy="whole")
    assert len(whole) == 1  # whole passages: only the (cut) top one fits


def test_short_passages_are_kept_whole_and_unchanged() -> None:
    docs = [doc("random.shuffle(x) shuffles x.", "a.html"), doc("random.sample(p, k) samples.", "b.html")]
    assert fit_passages(docs, question="shuffle", max_tokens=300) == docs


def test_cut_last_keeps_whole_passages_then_cuts_one() -> None:
    docs = [
        doc("Short first passage about lists.", "a.html"),
        doc(f"{FILLER} Lists shuffle in place. {FILLER}", "b.html"),
        doc("c", "c.html"),
    ]
    kept = fit_passages(docs, question="shuffle lists", max_tokens=HEADER_TOKENS * 2 + 35, strategy="cut_last")
    assert [d.metadata["source"] for d in kept] == ["a.html", "b.html"]
    assert kept[0] is docs[0] and kept[1].page_content == "Lists shuffle in place."


def test_no_documents_no_passages() -> None:
    assert fit_passages([], question="q", max_tokens=300) == []
