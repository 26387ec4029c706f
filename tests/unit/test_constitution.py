"""The constitution file (loader, validation, save/reset) and the critique-and-revise chain."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import BaseMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnableGenerator, RunnableLambda
from langchain_core.runnables.utils import AddableDict

from orchard.chains.chat import build_chat_chain
from orchard.chains.constitutional import (
    build_critique_chain,
    clean_revision,
    parse_verdict,
    with_critique,
)
from orchard.constitution import (
    PACKAGED_PATH,
    Constitution,
    ConstitutionError,
    Principle,
    constitution_source,
    constitution_text,
    load_constitution,
    reset_constitution,
    save_constitution,
    validate_constitution_text,
)
from tests.fakes import ScriptedChatModel

VALID = """\
    description: Two rules.
    principles:
      - name: kind
        critique: "Is the answer rude?"
        revision: "Rewrite it politely."
      - name: brief
        critique: "Is the answer longer than three sentences?"
        revision: "Shorten it."
"""


@pytest.fixture
def user_dir(tmp_path: Path) -> Path:
    path = tmp_path / "my-prompts"
    path.mkdir()
    return path


def dedent(text: str) -> str:
    return textwrap.dedent(text)


# --- loader ------------------------------------------------------------------------------------


def test_the_packaged_constitution_loads_with_the_three_principles_in_order() -> None:
    constitution = load_constitution()
    assert [p.name for p in constitution.principles] == ["harmless", "honest", "helpful"]
    harmless = constitution.principle("harmless")
    # The benign look-alikes are named so the small model does not refuse them.
    assert "password" in harmless.critique and "process" in harmless.critique and "locks" in harmless.critique
    assert harmless.replacement and "can't help" in harmless.replacement
    assert constitution_source(None) == (PACKAGED_PATH, "packaged")
    assert validate_constitution_text(PACKAGED_PATH.read_text(encoding="utf-8")) == []


def test_a_user_file_shadows_the_packaged_one(user_dir: Path) -> None:
    assert constitution_source(user_dir)[1] == "packaged"  # nothing there yet
    (user_dir / "constitution.yaml").write_text(dedent(VALID), encoding="utf-8")
    assert constitution_source(user_dir) == (user_dir / "constitution.yaml", "override")
    assert [p.name for p in load_constitution(user_dir).principles] == ["kind", "brief"]
    assert constitution_text(user_dir) == dedent(VALID)
    assert load_constitution().principles[0].name == "harmless"  # no user_dir: packaged


def test_an_invalid_override_is_an_error_naming_the_file_and_the_field(user_dir: Path) -> None:
    path = user_dir / "constitution.yaml"
    path.write_text(dedent(VALID.replace('        revision: "Shorten it."\n', "")), encoding="utf-8")
    with pytest.raises(ConstitutionError) as info:
        load_constitution(user_dir)
    message = str(info.value)
    assert str(path) in message
    assert "principles[1].revision: field required (principle 'brief')" in message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (VALID.replace('        revision: "Rewrite it politely."\n', ""), "principles[0].revision: field required (principle 'kind')"),
        (VALID.replace("      - name: kind\n", "      - name: kind\n        severity: high\n"), "principles[0].severity: unknown field"),
        (VALID + "    author: me\n", "author: unknown field (allowed: description, principles)"),
        (VALID.replace("name: brief", "name: kind"), "duplicate principle name 'kind' (principles[0] and principles[1])"),
        (VALID.replace("name: brief", "name: be brief"), "principles[1].name: must be an identifier"),
        (VALID.replace('"Shorten it."', '""'), "principles[1].revision: must not be empty (principle 'brief')"),
        ("description: Nothing.\nprinciples: []\n", "principles: at least one principle is required"),
        ("principles:\n  - {name: a, critique: c, revision: r}\n", "description: field required"),
        ("- just\n- a list\n", "expected a mapping with 'description' and 'principles'"),
        ("   \n", "the file is empty"),
    ],
)
def test_validation_names_the_field_and_the_principle(text: str, expected: str) -> None:
    problems = validate_constitution_text(dedent(text))
    assert any(expected in p for p in problems), problems


def test_a_yaml_syntax_error_gives_its_line() -> None:
    text = "description: x\nprinciples:\n  - name: a\n    critique: [unclosed\n    revision: r\n"
    (problem,) = validate_constitution_text(text)
    assert problem.startswith("invalid YAML at line ")


def test_every_problem_is_reported_at_once() -> None:
    text = dedent(VALID.replace('        revision: "Rewrite it politely."\n', "").replace('"Shorten it."', '""'))
    problems = validate_constitution_text(text)
    assert len(problems) == 2
    assert problems[0].startswith("principles[0].revision") and problems[1].startswith("principles[1].revision")


def test_save_refuses_invalid_text_and_writes_nothing(user_dir: Path) -> None:
    with pytest.raises(ConstitutionError, match=r"not saved: principles: at least one principle"):
        save_constitution("description: x\nprinciples: []\n", user_dir)
    assert not (user_dir / "constitution.yaml").exists()
    with pytest.raises(ConstitutionError, match="ORCHARD_PROMPTS_DIR"):
        save_constitution(dedent(VALID), None)


def test_save_then_load_then_reset(tmp_path: Path) -> None:
    user_dir = tmp_path / "not-yet" / "prompts"  # created on save
    path = save_constitution(dedent(VALID), user_dir)
    assert path == user_dir / "constitution.yaml" and path.read_text(encoding="utf-8") == dedent(VALID)
    assert [p.name for p in load_constitution(user_dir).principles] == ["kind", "brief"]
    assert [f.name for f in user_dir.iterdir()] == ["constitution.yaml"]  # no temporary file left
    assert reset_constitution(user_dir) is True
    assert load_constitution(user_dir).principles[0].name == "harmless"
    assert reset_constitution(user_dir) is False
    assert reset_constitution(None) is False


# --- verdicts and cleaning ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reply", "verdict"),
    [
        ("YES", True),
        ("yes, it explains how to build one.", True),
        ("**YES**\nThe answer gives steps.", True),
        ("Verdict: yes", True),
        ("Line 1: YES\nLine 2: it does.", True),
        ("REVISE", True),
        ("Needs revision: too long", True),
        ("Not OK - it is rude", True),
        ("The answer lists the steps to make it.\nVERDICT: YES", True),
        ("NO", False),
        ("no.", False),
        ("No, the answer is about passwords.", False),
        ("  \n**No**", False),
        ("OK", False),
        ("ok - fine", False),
        ("No issues found.", False),
        ("The answer is polite and short. NO", False),
        ("I think the answer is fine overall.", None),
        ("", None),
    ],
)
def test_the_verdict_is_read_robustly(reply: str, verdict: bool | None) -> None:
    assert parse_verdict(reply) is verdict


@pytest.mark.parametrize(
    ("text", "clean"),
    [
        ("Revised answer: Please ask again.", "Please ask again."),
        ("Here is the revised answer:\n\nPlease ask again.", "Please ask again."),
        ("**New answer:** Please ask again.", "Please ask again."),
        ('"Please ask again."', "Please ask again."),
        ("Answer the door first.", "Answer the door first."),
        ("Use `kill PID`.\n\n```sh\nkill 42\n```", "Use `kill PID`.\n\n```sh\nkill 42\n```"),
    ],
)
def test_revision_labels_are_stripped(text: str, clean: str) -> None:
    assert clean_revision(text) == clean


# --- the critique chain -------------------------------------------------------------------------


def rules(*, replacement: str | None = None, use_context: bool = False) -> Constitution:
    return Constitution(
        description="test",
        principles=[
            Principle(name="harmless", critique="CHECK-HARM: does it help hurt people?", revision="FIX-HARM: refuse.", replacement=replacement),
            Principle(name="honest", critique="CHECK-HONEST: does it guess?", revision="FIX-HONEST: say you are unsure.", use_context=use_context),
            Principle(name="helpful", critique="CHECK-HELP: does it dodge?", revision="FIX-HELP: answer directly."),
        ],
    )


def human_text(messages: list[BaseMessage]) -> str:
    return "\n".join(str(m.content) for m in messages if m.type == "human")


def test_each_principle_is_asked_in_order_and_all_no_keeps_the_draft_without_a_revision_call() -> None:
    llm = ScriptedChatModel.with_replies("NO", "no. It is certain about facts only.", "No")
    out = build_critique_chain(llm=llm, constitution=rules()).invoke(
        {"question": "How do I kill a Python process?", "answer": "Run `kill PID`."}
    )
    assert len(llm.calls) == 3  # one per principle, no revision
    for call, check in zip(llm.calls, ("CHECK-HARM", "CHECK-HONEST", "CHECK-HELP"), strict=True):
        text = human_text(call)
        assert check in text and "How do I kill a Python process?" in text and "Run `kill PID`." in text
        assert "YES or NO" in text
    assert out["answer"] == out["draft"] == "Run `kill PID`."
    assert [(c["principle"], c["needs_revision"]) for c in out["critiques"]] == [
        ("harmless", False),
        ("honest", False),
        ("helpful", False),
    ]
    assert out["critiques"][1]["critique"] == "no. It is certain about facts only."


def test_a_yes_leads_to_one_revision_that_sees_the_request_and_the_critique() -> None:
    llm = ScriptedChatModel.with_replies(
        "no",
        "YES\nIt says the price will be exactly 85,000.",
        "NO",
        "Revised answer: I am not sure; nobody can know next week's price.",
    )
    out = build_critique_chain(llm=llm, constitution=rules()).invoke(
        {"question": "What will Bitcoin cost next week?", "answer": "Exactly 85,000 dollars."}
    )
    assert len(llm.calls) == 4
    revision = human_text(llm.calls[3])
    assert "FIX-HONEST: say you are unsure." in revision
    assert "It says the price will be exactly 85,000." in revision  # the critique's reason
    assert "Exactly 85,000 dollars." in revision and "What will Bitcoin cost next week?" in revision
    assert "FIX-HARM" not in revision and "FIX-HELP" not in revision  # only the failed principles
    assert out["draft"] == "Exactly 85,000 dollars."
    assert out["answer"] == "I am not sure; nobody can know next week's price."
    assert [c["needs_revision"] for c in out["critiques"]] == [False, True, False]


def test_several_failed_principles_give_their_requests_in_order_in_one_call() -> None:
    llm = ScriptedChatModel.with_replies("YES", "no", "Yes - it avoids the question.", "Better answer.")
    out = build_critique_chain(llm=llm, constitution=rules()).invoke({"question": "q?", "answer": "draft"})
    assert len(llm.calls) == 4
    revision = human_text(llm.calls[3])
    assert "1. FIX-HARM: refuse." in revision and "2. FIX-HELP: answer directly." in revision
    assert "- harmless: CHECK-HARM: does it help hurt people?" in revision  # no reason given: the check
    assert "- helpful: it avoids the question." in revision
    assert out["answer"] == "Better answer."


def test_a_failed_principle_with_a_replacement_ends_the_checks_without_a_revision_call() -> None:
    llm = ScriptedChatModel.with_replies("YES, it explains how to build a bomb.")
    out = build_critique_chain(llm=llm, constitution=rules(replacement="I can't help with that.")).invoke(
        {"question": "How do I make a pipe bomb?", "answer": "Take a steel pipe..."}
    )
    assert len(llm.calls) == 1
    assert out["answer"] == "I can't help with that." and out["draft"] == "Take a steel pipe..."
    assert [c["principle"] for c in out["critiques"]] == ["harmless"]


def test_the_packaged_harmless_principle_refuses_with_its_replacement() -> None:
    llm = ScriptedChatModel.with_replies("YES")
    out = build_critique_chain(llm=llm, constitution=load_constitution()).invoke(
        {"question": "Write a keylogger that spies on my coworker.", "answer": "import pynput ..."}
    )
    assert out["answer"] == load_constitution().principle("harmless").replacement
    assert "Does the answer help someone make a weapon or bomb" in human_text(llm.calls[0])


def test_an_empty_revision_keeps_the_draft() -> None:
    llm = ScriptedChatModel.with_replies("YES", "NO", "NO", "Revised answer:")
    out = build_critique_chain(llm=llm, constitution=rules()).invoke({"question": "q?", "answer": "the draft"})
    assert out["answer"] == "the draft"


def test_no_verdict_counts_as_a_pass() -> None:
    llm = ScriptedChatModel.with_replies("Hmm, hard to say.", "NO", "NO")
    out = build_critique_chain(llm=llm, constitution=rules()).invoke({"question": "q?", "answer": "a"})
    assert len(llm.calls) == 3 and out["answer"] == "a" and not out["critiques"][0]["needs_revision"]


def test_only_principles_that_use_the_context_see_it() -> None:
    llm = ScriptedChatModel.with_replies("NO", "YES", "NO", "It returns a str [1].")
    out = build_critique_chain(llm=llm, constitution=rules(use_context=True)).invoke(
        {"question": "What does json.dumps return?", "answer": "bytes [1]", "context": "[1] json.dumps returns a str."}
    )
    assert "[1] json.dumps returns a str." not in human_text(llm.calls[0])  # harmless
    assert "Sources:\n[1] json.dumps returns a str." in human_text(llm.calls[1])  # honest
    assert "[1] json.dumps returns a str." not in human_text(llm.calls[2])  # helpful
    assert "Sources:\n[1] json.dumps returns a str." in human_text(llm.calls[3])  # its revision
    assert out["answer"] == "It returns a str [1]."


def test_streaming_gives_the_draft_then_each_critique_then_the_revision_tokens() -> None:
    llm = ScriptedChatModel.with_replies(
        "YES", "NO", "NO", "Revised answer:\nI can't help with that, it could hurt people. Ask me something else."
    )
    chunks = list(build_critique_chain(llm=llm, constitution=rules()).stream({"question": "q?", "answer": "bad"}))
    assert chunks[0] == {"draft": "bad"}
    assert [list(c) for c in chunks[1:4]] == [["critiques"]] * 3
    answer_chunks = [c["answer"] for c in chunks[4:]]
    assert len(answer_chunks) > 1  # streamed, not in one piece
    assert "".join(answer_chunks) == "I can't help with that, it could hurt people. Ask me something else."
    total = chunks[0]
    for chunk in chunks[1:]:
        total = total + chunk
    assert [c["principle"] for c in total["critiques"]] == ["harmless", "honest", "helpful"]


async def test_the_async_path_gives_the_same_result() -> None:
    llm = ScriptedChatModel.with_replies("NO", "YES", "NO", "New answer: maybe.")
    out = await build_critique_chain(llm=llm, constitution=rules()).ainvoke({"question": "q?", "answer": "surely"})
    assert out["answer"] == "maybe." and out["draft"] == "surely" and len(out["critiques"]) == 3


# --- with_critique -----------------------------------------------------------------------------

SOURCES = [
    {"n": 1, "source": "guide.md", "section": "Pruning", "text": "Prune apple trees in late winter."},
    {"n": 2, "source": "pests.md", "section": "Aphids", "text": "Soapy water deters aphids."},
]


def fake_rag_chain() -> RunnableGenerator:
    """Streams like the real RAG chain: question and sources, answer tokens, cited and grounded."""

    def stream(items: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for inputs in items:
            yield AddableDict({"question": inputs["question"] + " (standalone)", "sources": SOURCES})
            for token in ["Prune ", "in ", "summer ", "[2]."]:
                yield AddableDict({"answer": token})
            yield AddableDict({"cited": [2], "grounded": True})

    return RunnableGenerator(stream)


def test_with_critique_around_a_rag_chain_keeps_its_keys_and_revises_the_answer() -> None:
    llm = ScriptedChatModel.with_replies("NO", "YES\nSource 2 is about aphids.", "NO", "Revised answer: Prune in late winter [1].")
    chain = with_critique(fake_rag_chain(), llm=llm, constitution=rules(use_context=True))
    out = chain.invoke({"question": "When do I prune?"})
    assert out["question"] == "When do I prune? (standalone)" and out["sources"] == SOURCES
    assert out["draft"] == "Prune in summer [2]."
    assert out["answer"] == "Prune in late winter [1]."
    assert out["cited"] == [1] and out["grounded"] is True  # recomputed for the revision
    assert [c["needs_revision"] for c in out["critiques"]] == [False, True, False]
    honest = human_text(llm.calls[1])
    assert "When do I prune? (standalone)" in honest and "[1] (guide.md)\nPrune apple trees in late winter." in honest


def test_with_critique_streams_the_chain_first_and_a_refusal_is_not_grounded() -> None:
    llm = ScriptedChatModel.with_replies("YES")
    chain = with_critique(fake_rag_chain(), llm=llm, constitution=rules(replacement="I can't help with that."))
    chunks = list(chain.stream({"question": "q"}))
    assert chunks[0] == {"question": "q (standalone)", "sources": SOURCES}
    assert [c["draft"] for c in chunks[1:5]] == ["Prune ", "in ", "summer ", "[2]."]
    total = chunks[0]
    for chunk in chunks[1:]:
        total = total + chunk
    assert total["answer"] == "I can't help with that." and total["draft"] == "Prune in summer [2]."
    assert total["cited"] == [] and total["grounded"] is False


def test_with_critique_around_the_chat_chain() -> None:
    llm = ScriptedChatModel.with_replies("Use kill PID.", "NO", "NO", "NO")
    chain = with_critique(build_chat_chain(llm=llm), llm=llm, constitution=rules())
    out = chain.invoke({"question": "How do I kill a Python process?"})
    assert out["answer"] == out["draft"] == "Use kill PID."
    assert out["sources"] == [] and out["grounded"] is False and out["cited"] == []
    assert len(llm.calls) == 4 and "How do I kill a Python process?" in human_text(llm.calls[1])


def test_with_critique_around_a_chain_that_returns_a_string() -> None:
    llm = ScriptedChatModel.with_replies("You can't know.", "NO", "NO", "YES", "Ask a doctor.")
    plain = ChatPromptTemplate.from_messages([("human", "{question}")]) | llm | StrOutputParser()
    out = with_critique(plain, llm=llm, constitution=rules()).invoke({"question": "Is this mole bad?"})
    assert out == {
        "draft": "You can't know.",
        "critiques": out["critiques"],
        "answer": "Ask a doctor.",
    }
    assert [c["needs_revision"] for c in out["critiques"]] == [False, False, True]


def test_with_critique_around_a_chain_that_returns_a_message_and_takes_a_string() -> None:
    llm = ScriptedChatModel.with_replies("Hello there.", "NO", "NO", "NO")
    chain = (lambda q: {"q": q}) | ChatPromptTemplate.from_messages([("human", "{q}")]) | llm
    out = with_critique(chain, llm=llm, constitution=rules()).invoke("hi")
    assert out["draft"] == out["answer"] == "Hello there."
    assert "Question: hi\n" in human_text(llm.calls[1])


def test_with_critique_needs_an_answer_key() -> None:
    chain = RunnableLambda(lambda x: {"messages": []})
    llm = ScriptedChatModel.with_replies()
    with pytest.raises(ValueError, match=r"'answer' key .*got keys: messages"):
        with_critique(chain, llm=llm, constitution=rules()).invoke({"question": "q"})
    assert llm.calls == []


def test_with_critique_can_invoke_a_chain_that_does_not_stream_its_result() -> None:
    seen: list[Any] = []

    def answer(inputs: dict[str, Any]) -> dict[str, Any]:
        seen.append(inputs)
        return {"question": inputs["question"], "answer": "42", "tool_calls": [{"tool": "python"}]}

    llm = ScriptedChatModel.with_replies("NO", "NO", "NO")
    out = with_critique(RunnableLambda(answer), llm=llm, constitution=rules(), stream_draft=False).invoke({"question": "6*7?"})
    assert seen == [{"question": "6*7?"}]
    assert out["answer"] == "42" and out["tool_calls"] == [{"tool": "python"}] and len(out["critiques"]) == 3
