"""The answer prompts are laid out for KV-prefix reuse: a fixed part first, byte-identical for every
question, and everything that changes per question after it.

llama.cpp reuses the KV cache of the longest common token prefix of two prompts (re-reading a
700-token prompt whose last 40 tokens changed took 0.3-0.9 s instead of ~6 s, measured), so the
instructions must come first and must not depend on the question. The messages are checked as
LangChain renders them, and — when the packaged GGUF is present — as the model server renders
them: llama-cpp-python applies the GGUF's own chat template (``tokenizer.chat_template``) with its
Jinja2 formatter, reproduced here the way ``Llama.__init__`` builds it.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from langchain_core.documents import Document
from langchain_openai.chat_models.base import _convert_message_to_dict

from orchard.chains.context import format_context
from orchard.prompts import load_prompt

ROOT = Path(__file__).resolve().parents[2]
GGUF = Path(os.environ.get("ORCHARD_DATA_DIR", ROOT / ".orchard")) / "cache" / "models" / "qwen-0.5b.gguf"

PASSAGES_A = [
    Document(page_content="random.shuffle(x) shuffles the sequence x in place.", metadata={"source": "library/random.html"}),
    Document(page_content="random.sample(population, k) returns a new list.", metadata={"source": "library/random.html"}),
]
PASSAGES_B = [
    Document(
        page_content="json.dumps(obj) serializes obj to a JSON str.",
        metadata={"source": "library/json.html", "section": "Basic Usage"},
    )
]
HISTORY = [("human", "What is a deque?"), ("ai", "A double-ended queue [1].")]

#: Two different questions, as each prompt is given them by the code.
CASES = {
    "rag_answer": (
        {"context": format_context(PASSAGES_A), "question": "How do I shuffle a list?", "history": []},
        {"context": format_context(PASSAGES_B), "question": "How do I write JSON?", "history": HISTORY},
    ),
    "chat": (
        {"question": "Say hello.", "history": []},
        {"question": "And in French?", "history": HISTORY},
    ),
    "condense_question": (
        {"history_text": "User: What is a deque?\nAssistant: A queue.", "question": "and its maxlen?"},
        {"history_text": "User: How do I parse JSON?\nAssistant: json.loads.", "question": "and write it?"},
    ),
}
#: What changes per question: none of it may appear in the fixed part.
PER_QUESTION = ["shuffle", "JSON", "json", "deque", "hello", "French", "maxlen", "random.html"]


def _messages(name: str, inputs: dict) -> list[dict]:
    """The messages as ChatOpenAI sends them to the server."""
    return [_convert_message_to_dict(m) for m in load_prompt(name).format_messages(**inputs)]


def _fixed(name: str, system: str) -> str:
    """The part of the system message that is the same for every question: for rag_answer the rules
    up to ``Sources:`` (the passages follow in the same message: the 0.5B answered better so —
    0.79 against a bare "[1]" in the live tests with the sources in the user message), else all of it."""
    return system.split("Sources:", 1)[0] + "Sources:\n" if name == "rag_answer" else system


@pytest.mark.parametrize("name", sorted(CASES))
def test_the_first_message_starts_fixed_and_holds_nothing_of_the_question_there(name: str) -> None:
    first, second = (_messages(name, inputs) for inputs in CASES[name])
    assert first[0]["role"] == second[0]["role"] == "system"
    fixed = _fixed(name, first[0]["content"])
    assert first[0]["content"].startswith(fixed) and second[0]["content"].startswith(fixed)  # byte-identical
    assert not [word for word in PER_QUESTION if word in fixed]
    assert all(m["role"] != "system" for m in first[1:] + second[1:])  # nothing fixed after the variable part


def test_rag_sources_follow_the_rules_and_the_question_comes_last() -> None:
    inputs = CASES["rag_answer"][1]
    messages = _messages("rag_answer", inputs)
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user"]
    system = messages[0]["content"]
    assert system.index("Rules:") < system.index("Sources:") < system.index("[1] (library/json.html — Basic Usage)")
    assert messages[-1]["content"] == "How do I write JSON?"


@pytest.fixture(scope="module")
def server_template():
    """The chat template the model server applies (as ``llama_cpp.Llama.__init__`` builds it),
    and the model's tokenizer (vocabulary only: ~0.5 s)."""
    from llama_cpp import Llama
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    model = Llama(model_path=str(GGUF), vocab_only=True, verbose=False)
    eos, bos = model.token_eos(), model.token_bos()
    formatter = Jinja2ChatFormatter(
        template=model.metadata["tokenizer.chat_template"],
        eos_token=model._model.token_get_text(eos) if eos != -1 else "",
        bos_token=model._model.token_get_text(bos) if bos != -1 else "",
        stop_token_ids=[eos],
    )
    yield formatter, model
    model.close()  # freed now, not at interpreter exit (llama.cpp is half torn down by then)


@pytest.mark.skipif(not GGUF.exists(), reason=f"no packaged model at {GGUF} (make model)")
@pytest.mark.parametrize("name", sorted(CASES))
def test_the_server_renders_a_byte_identical_prefix_covering_the_fixed_part(name: str, server_template) -> None:
    formatter, model = server_template
    first, second = (formatter(messages=_messages(name, inputs)).prompt for inputs in CASES[name])
    fixed = _fixed(name, _messages(name, CASES[name][0])[0]["content"])
    system_turn = f"<|im_start|>system\n{fixed}" + ("" if name == "rag_answer" else "<|im_end|>\n")
    assert first.startswith(system_turn) and second.startswith(system_turn)
    # ... and the same holds token by token (what llama.cpp compares to reuse its KV cache).
    tokens = [model.tokenize(text.encode(), add_bos=False, special=True) for text in (first, second, system_turn)]
    assert tokens[0][: len(tokens[2])] == tokens[1][: len(tokens[2])] == tokens[2]
    assert len(tokens[2]) >= 25  # the instructions: the part read once
