"""Orchard for the app's tests: the real use cases, with a chat model that answers by rule.

Everything is real — routing, the RAG chain with its citations, the routed agent and its Python
sandbox, the critique, conversations, ratings, profiles, the library, prompts, saved settings — on
the test's temporary data folder, with bag-of-words embeddings (no model download). Only the
model is fake: :class:`RuleModel` reads which of Orchard's prompts it was sent (by the first line
of its system message, so edited wording still matches) and answers the way a small model would
(pydantic-ai's ``FunctionModel`` idea). It records every call, so tests assert on what reached
the model: the history, the mode (which prompt), the user's preferences, the attached tables.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, HumanMessage, SystemMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from pydantic import Field

from tests.fakes import AlwaysUp, HashEmbeddings

SAMPLES = Path(__file__).resolve().parents[2] / "samples"
PYTHON_PROGRAM = "result = 17 * 23\nprint(result)"  # what the writer rule writes for "What is 17 * 23?"
CHAT_REPLY = "Hello! How can I help?"
CRITIQUE_REPLIES = {  # by principle of the packaged constitution
    "harmless": "NO. Nothing harmful.",
    "honest": "YES. It sounds too sure.",
    "helpful": "NO. It answers.",
}
REVISION_START = "Revised: I am not certain, but the sources suggest this:"
_ARITHMETIC = re.compile(r"(\d+)\s*([-+*/x×])\s*(\d+)")
_GREETING = re.compile(r"^\s*(hi|hello|hey|good (morning|evening)|thanks|thank you)\b", re.I)


# --- which prompt was sent ------------------------------------------------------------------


def _first_line(text: str) -> str:
    return text.strip().split("\n", 1)[0].split("{", 1)[0].strip()


@functools.cache
def fingerprints() -> dict[str, str]:
    """Prompt kind -> the first line of its system message (up to its first variable)."""
    from orchard.chains.constitutional import CRITIQUE_PROMPT, REVISION_PROMPT
    from orchard.prompts import PROMPT_NAMES, load_prompt

    prompts = {name: load_prompt(name) for name in PROMPT_NAMES} | {"critique": CRITIQUE_PROMPT, "revision": REVISION_PROMPT}
    return {name: _first_line(prompt.messages[0].prompt.template) for name, prompt in prompts.items()}


@functools.cache
def answer_tail() -> str:
    """The first line of agent_answer's last message: the routed agent sends it alone after the
    writer's conversation (whose system message is agent_python's or agent_sql's)."""
    from orchard.prompts import load_prompt

    return _first_line(load_prompt("agent_answer").messages[-1].prompt.template)


def prompt_kind(messages: list[BaseMessage]) -> str:
    if len(messages) > 2 and isinstance(messages[-2], AIMessage) and question_of(messages).startswith(answer_tail()):
        return "agent_answer"
    system = next((m.text for m in messages if isinstance(m, SystemMessage)), "")
    line = _first_line(system)
    for name, start in fingerprints().items():
        if start and line.startswith(start):
            return name
    msg = f"the rule model got a prompt it does not know: {line!r}"
    raise AssertionError(msg)


def question_of(messages: list[BaseMessage]) -> str:
    """The last human message (the RAG prompt's: its ``Question:`` part), past the nudges the
    answer checks add when they ask again."""
    from orchard.chains.rag import MAY_NOT_REFUSE, STATE_THE_VALUE

    text = next((m.text for m in reversed(messages) if isinstance(m, HumanMessage) and m.text not in (MAY_NOT_REFUSE, STATE_THE_VALUE)), "")
    if text.startswith("Sources:") and "\n\nQuestion: " in text:
        return text.rsplit("\n\nQuestion: ", 1)[1].strip()
    return text


def passages_of(messages: list[BaseMessage]) -> str:
    """The numbered sources the RAG prompt carries (after ``Sources:`` in its system message)."""
    text = next((m.text for m in messages if "Sources:" in m.text), "")
    return "Sources:" + text.split("Sources:", 1)[1] if text else ""


def _field(text: str, label: str) -> str:
    """The text after ``label:`` up to the next blank line (the critique and agent prompts)."""
    found = re.search(rf"{label}:\s*\n?(.*?)(?:\n\n|\Z)", text, re.S)
    return found.group(1).strip() if found else ""


# --- the rules ------------------------------------------------------------------------------


def route(messages: list[BaseMessage], model: RuleModel) -> str:
    question = question_of(messages)
    if _ARITHMETIC.search(question):
        return "compute"
    return "chat" if _GREETING.match(question) else "documents"


def rag_answer(messages: list[BaseMessage], model: RuleModel) -> str:
    """The best sentence of passage [1], cited; asked again (regenerate), another wording."""
    question = question_of(messages)
    sources = passages_of(messages).removeprefix("Sources:").rsplit("\n\nQuestion: ", 1)[0]
    passages = re.findall(r"^\[(\d+)\] \(.*?\)\n(.*?)(?=\n\n\[\d+\] \(|\Z)", sources.strip(), re.S | re.M)
    if not passages:
        return "The documents do not answer this question."
    best = best_sentence(question, passages[0][1])
    earlier = [c for c in model.calls[:-1] if prompt_kind(c) == "rag_answer" and question_of(c) == question]
    return f"{'In short: ' if earlier else ''}{best} [1]"


def best_sentence(question: str, text: str) -> str:
    """The passage's sentence sharing the most words with the question (an extractive answer)."""
    words = {w for w in re.findall(r"[a-z]+", question.lower()) if len(w) > 3}
    sentences = [" ".join(s.split()) for s in re.split(r"(?<=[.!?])\s+|\n\n", text) if s.strip()]
    return max(sentences, key=lambda s: len(words & set(re.findall(r"[a-z]+", s.lower()))))


def python_program(messages: list[BaseMessage], model: RuleModel) -> str:
    found = _ARITHMETIC.search(question_of(messages))
    expression = f"{found.group(1)} {found.group(2).replace('x', '*').replace('×', '*')} {found.group(3)}" if found else "0"
    return f"```python\nresult = {expression}\nprint(result)\n```"


def sql_query(messages: list[BaseMessage], model: RuleModel) -> str:
    tables = re.findall(r"^table (\w+):", question_of(messages), re.M)
    return f"```sql\nSELECT COUNT(*) FROM {tables[-1] if tables else 'data'}\n```"


def agent_answer(messages: list[BaseMessage], model: RuleModel) -> str:
    text = question_of(messages)
    question, result = _field(text, "Question"), _field(text, "Result")
    if found := _ARITHMETIC.search(question):
        return f"{found.group(1)} × {found.group(3)} = {result}." if found.group(2) in "*x×" else f"It is {result}."
    return f"The result is {result}."


def condense(messages: list[BaseMessage], model: RuleModel) -> str:
    return _field(question_of(messages), "Follow-up question")


def critique(messages: list[BaseMessage], model: RuleModel) -> str:
    from orchard.constitution import load_constitution

    asked = question_of(messages)
    for principle in load_constitution().principles:
        if principle.critique in asked:
            return CRITIQUE_REPLIES.get(principle.name, "NO. Fine.")
    return "NO. Fine."


def revision(messages: list[BaseMessage], model: RuleModel) -> str:
    return f"{REVISION_START} {_field(question_of(messages), 'Old answer')}"


RULES: dict[str, Callable[[list[BaseMessage], RuleModel], str]] = {
    "agent_route": route,
    "rag_answer": rag_answer,
    "agent_python": python_program,
    "agent_sql": sql_query,
    "agent_answer": agent_answer,
    "condense_question": condense,
    "chat": lambda messages, model: CHAT_REPLY,
    "critique": critique,
    "revision": revision,
}


class RuleModel(BaseChatModel):
    """A chat model that answers each of Orchard's prompts by a rule (see the module docstring).

    ``calls`` holds every list of messages it was sent; set ``error`` to make every call fail
    with it (as a model server that went away would).
    """

    calls: list[list[BaseMessage]] = Field(default_factory=list)
    error: Any = None

    @property
    def _llm_type(self) -> str:
        return "orchard-app-rules"

    def bind_tools(self, tools: Any, **kwargs: Any) -> RuleModel:
        return self  # the routed agent builds its tool calls itself

    def reply(self, messages: list[BaseMessage]) -> str:
        self.calls.append(list(messages))
        if self.error is not None:
            raise self.error
        return RULES[prompt_kind(messages)](list(messages), self)

    def _generate(self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kwargs: Any) -> ChatResult:
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content=self.reply(messages)))])

    def _stream(self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kwargs: Any) -> Iterator[ChatGenerationChunk]:
        for token in re.split(r"(?<=\s)(?=\S)", self.reply(messages)):  # word by word, spaces kept
            chunk = ChatGenerationChunk(message=AIMessageChunk(content=token))
            if run_manager is not None:
                run_manager.on_llm_new_token(token, chunk=chunk)
            yield chunk

    # --- what the tests read ------------------------------------------------------------------

    def sent(self, kind: str) -> list[list[BaseMessage]]:
        """The calls made with prompt ``kind`` (``rag_answer``, ``chat``, ``agent_route`` ...)."""
        return [c for c in self.calls if prompt_kind(c) == kind]

    def questions(self, kind: str) -> list[str]:
        return [question_of(c) for c in self.sent(kind)]


def app_orchard(data_dir: Path, *, model: RuleModel | None = None, **settings: Any) -> Any:
    """The real Orchard on ``data_dir``: the rule model, bag-of-words embeddings, a model server
    that is always up. ``top_k`` is 3 unless given: three passages per documents answer."""
    from orchard.components import Components
    from orchard.config import Settings
    from orchard.usecases import build_orchard

    config = Settings(data_dir=data_dir, **{"top_k": 3, **settings})
    parts = Components(config, llm=model if model is not None else RuleModel(), embeddings=HashEmbeddings())
    return build_orchard(components=parts, model_server=AlwaysUp(config))
