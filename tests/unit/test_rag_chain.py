"""The RAG chain with a scripted fake model: citations, refusal when irrelevant, condensing, streaming."""

from __future__ import annotations

from pathlib import Path

import pytest
from langchain_core.documents import Document
from langchain_core.messages import HumanMessage, SystemMessage
from langchain_core.retrievers import BaseRetriever
from pydantic import Field

from orchard.chains.chat import build_chat_chain
from orchard.chains.rag import NO_ANSWER, build_rag_chain, cited_numbers, format_context
from orchard.ingest import ingest
from orchard.retriever import HybridRetriever
from orchard.store import DocumentStore
from tests.fakes import ScriptedChatModel


class ListRetriever(BaseRetriever):
    """Returns fixed documents and records the queries it got."""

    docs: list[Document]
    queries: list[str] = Field(default_factory=list)

    def _get_relevant_documents(self, query: str, *, run_manager) -> list[Document]:
        self.queries.append(query)
        return [d.model_copy(deep=True) for d in self.docs]


def doc(text: str, source: str, section: str = "", relevance: float = 0.8) -> Document:
    return Document(page_content=text, metadata={"source": source, "section": section, "dense_score": relevance}, id=source)


DOCS = [
    doc("Use random.shuffle(x) to shuffle a list in place.", "library/random.html", "random.shuffle"),
    doc("random.sample returns a new list.", "library/random.html#sample", "random.sample"),
]


def test_answer_cites_numbered_sources_and_model_sees_them() -> None:
    llm = ScriptedChatModel.with_replies("Call random.shuffle(x) [1]; sample makes a copy [2].")
    chain = build_rag_chain(llm=llm, retriever=ListRetriever(docs=DOCS, queries=[]))
    result = chain.invoke({"question": "How do I shuffle a list?"})
    assert result["answer"] == "Call random.shuffle(x) [1]; sample makes a copy [2]."
    assert result["cited"] == [1, 2] and result["grounded"] is True
    assert [s["n"] for s in result["sources"]] == [1, 2]
    assert result["sources"][0]["source"] == "library/random.html"
    system = llm.calls[0][0]
    assert isinstance(system, SystemMessage)
    assert "[1] (library/random.html — random.shuffle)\nUse random.shuffle(x)" in system.content
    assert "[2] (library/random.html#sample — random.sample)" in system.content
    assert llm.calls[0][-1] == HumanMessage("How do I shuffle a list?")


def test_irrelevant_documents_give_no_answer_without_calling_the_model() -> None:
    llm = ScriptedChatModel.with_replies("should not be used")
    weak = [doc("Pears ripen.", "pears.md", relevance=0.05)]
    result = build_rag_chain(llm=llm, retriever=ListRetriever(docs=weak, queries=[]), min_relevance=0.3).invoke(
        {"question": "What is the capital of France?"}
    )
    assert result["answer"] == NO_ANSWER
    assert result["grounded"] is False and result["sources"] == [] and result["cited"] == []
    assert llm.calls == []


def test_model_refusal_marks_the_answer_ungrounded() -> None:
    llm = ScriptedChatModel.with_replies(NO_ANSWER)
    result = build_rag_chain(llm=llm, retriever=ListRetriever(docs=DOCS, queries=[])).invoke({"question": "Why?"})
    assert result["grounded"] is False and result["sources"]


def test_follow_up_is_condensed_before_retrieval_and_history_reaches_the_answer() -> None:
    llm = ScriptedChatModel.with_replies("How do I shuffle a tuple at random?", "Convert it to a list first [1].")
    retriever = ListRetriever(docs=DOCS, queries=[])
    history = [("human", "How do I shuffle a list?"), ("ai", "Use random.shuffle [1].")]
    result = build_rag_chain(llm=llm, retriever=retriever).invoke({"question": "and a tuple?", "history": history})
    assert retriever.queries == ["How do I shuffle a tuple at random?"]
    assert result["question"] == "How do I shuffle a tuple at random?"
    condense_prompt = llm.calls[0][-1].content
    assert "User: How do I shuffle a list?" in condense_prompt and "and a tuple?" in condense_prompt
    answer_messages = llm.calls[1]
    assert [m.type for m in answer_messages] == ["system", "human", "ai", "human"]
    assert answer_messages[-1].content == "and a tuple?"


def test_without_history_the_question_is_not_rewritten() -> None:
    llm = ScriptedChatModel.with_replies("Use shuffle [1].")
    retriever = ListRetriever(docs=DOCS, queries=[])
    build_rag_chain(llm=llm, retriever=retriever).invoke({"question": "shuffle?"})
    assert retriever.queries == ["shuffle?"] and len(llm.calls) == 1


def test_stream_sends_sources_first_then_tokens_then_grounding() -> None:
    llm = ScriptedChatModel.with_replies("Use random.shuffle [1] in place.")
    chunks = list(build_rag_chain(llm=llm, retriever=ListRetriever(docs=DOCS, queries=[])).stream({"question": "q"}))
    assert set(chunks[0]) == {"question", "sources"}
    tokens = [c["answer"] for c in chunks if "answer" in c]
    assert len(tokens) > 3 and "".join(tokens) == "Use random.shuffle [1] in place."
    assert chunks[-1] == {"cited": [1], "grounded": True}


async def test_async_invoke_works() -> None:
    llm = ScriptedChatModel.with_replies("Async answer [2].")
    result = await build_rag_chain(llm=llm, retriever=ListRetriever(docs=DOCS, queries=[])).ainvoke({"question": "q"})
    assert result["answer"] == "Async answer [2]." and result["cited"] == [2]


def test_citations_out_of_range_are_ignored() -> None:
    assert cited_numbers("See [3], [1] and [1] again, [12].", 3) == [3, 1]
    assert format_context([]) == ""


def test_chain_over_a_real_store(tmp_path: Path, store: DocumentStore) -> None:
    (tmp_path / "orchard.md").write_text("# Orchard\n\nOur orchard grows Bramley apples and Conference pears.\n")
    ingest(["orchard.md"], store=store, progress=False)
    llm = ScriptedChatModel.with_replies("Bramley apples and Conference pears [1].")
    result = build_rag_chain(llm=llm, retriever=HybridRetriever(store=store, k=2), min_relevance=0.1).invoke(
        {"question": "Which apples does the orchard grow?"}
    )
    assert result["grounded"] and result["sources"][0]["source"] == "orchard.md"
    assert result["sources"][0]["chunk_id"]


def test_chat_chain_has_the_same_shape() -> None:
    llm = ScriptedChatModel.with_replies("Hello there!")
    result = build_chat_chain(llm=llm).invoke({"question": "Hi", "history": [("human", "x"), ("ai", "y")]})
    assert result["answer"] == "Hello there!" and result["sources"] == [] and result["grounded"] is False
    assert [m.type for m in llm.calls[0]] == ["system", "human", "ai", "human"]


def test_missing_question_is_a_clear_error() -> None:
    chain = build_rag_chain(llm=ScriptedChatModel.with_replies("x"), retriever=ListRetriever(docs=DOCS, queries=[]))
    with pytest.raises(KeyError, match="question"):
        chain.invoke({"q": "oops"})


def test_uncited_model_answer_gets_attributed_citations() -> None:
    llm = ScriptedChatModel.with_replies("Call random.shuffle on the list to shuffle it in place.")
    result = build_rag_chain(llm=llm, retriever=ListRetriever(docs=DOCS, queries=[])).invoke({"question": "q"})
    assert result["answer"] == "Call random.shuffle on the list to shuffle it in place [1]."
    assert result["cited"] == [1] and result["grounded"] is True


def test_an_answer_no_source_supports_is_not_grounded() -> None:
    llm = ScriptedChatModel.with_replies("Bananas are yellow fruit from the tropics.")
    result = build_rag_chain(llm=llm, retriever=ListRetriever(docs=DOCS, queries=[])).invoke({"question": "q"})
    assert result["cited"] == [] and result["grounded"] is False


def test_context_is_cut_to_the_character_budget() -> None:
    long_docs = [doc("x " * 500, f"d{i}.md") for i in range(4)]
    llm = ScriptedChatModel.with_replies("ok")
    result = build_rag_chain(llm=llm, retriever=ListRetriever(docs=long_docs, queries=[]), max_context_chars=2500).invoke(
        {"question": "q"}
    )
    assert [s["source"] for s in result["sources"]] == ["d0.md", "d1.md"]
    assert "[3]" not in llm.calls[0][0].content


@pytest.mark.parametrize(
    ("rewrite", "expected"),
    [
        ("When are plums pruned?", "When are plums pruned?"),  # keeps "plums", adds the topic
        ("When are apple trees pruned?", "When are apple trees pruned? And plums?"),  # dropped "plums"
        ("And plums?", "When are apple trees pruned? And plums?"),  # unchanged
    ],
)
def test_weak_rewrites_fall_back_to_previous_question_plus_follow_up(rewrite: str, expected: str) -> None:
    from orchard.chains.condense import accept_rewrite

    history = [("human", "When are apple trees pruned?"), ("ai", "In late winter.")]
    assert accept_rewrite(rewrite, "And plums?", history) == expected
