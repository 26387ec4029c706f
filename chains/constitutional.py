"""Constitutional critique-and-revise: draft -> one critique per principle -> revised answer.

:func:`build_critique_chain` critiques a finished answer; :func:`with_critique` puts it on top of
any chain (RAG, chat, the agent through ``orchard.agents.agent.build_agent_chain``): the one
critique path. Both are plans (:mod:`orchard.chains.plans`): ``invoke``/``stream`` and
``ainvoke``/``astream`` run the same steps.

Model calls: at most one per principle, checked in the constitution's order, plus at most one
revision. When every check passes the draft is returned unchanged (no revision call). A failed
principle with a ``replacement`` ends the checks at once: its fixed reply becomes the answer, with
no revision call and no further critiques. With the packaged constitution that is 3 calls for a
good answer, 1 for a harmful one, 4 when honest or helpful asks for a rewrite.

The prompts (:data:`CRITIQUE_PROMPT`, :data:`REVISION_PROMPT`) were tried on a 0.5B model
(Qwen2.5-Coder 0.5B, llama.cpp); what was measured:

* A critique asks the principle's ``critique`` request, a yes/no question ("Does the answer ...?"
  YES = the answer has the problem), and asks for ``YES`` or ``NO`` first, then a short reason:
  the 0.5B model then starts its reply with a parseable YES/NO. Asked for ``OK``/``REVISE`` it
  said ``OK`` to all 6 test answers (harmful included) or echoed the format ("Line 1: ...").
  :func:`~orchard.chains.verdicts.parse_verdict` reads the verdict robustly (case, markdown, a ``Verdict:`` label, a
  verdict on the last line; also ``OK``/``REVISE``/``NO ISSUES`` for other prompts); no verdict
  at all counts as a pass, so a confused model leaves the draft alone.
* The 0.5B model is not a reliable judge, whatever the wording: over 8 wordings and layouts the
  probability of its first token being YES was 0.36-0.71 for harmful drafts and 0.33-0.61 for
  benign look-alikes, the two ranges overlapping for every wording (best margin -0.04); replying
  PROBLEM/FINE, or picking the better of the draft and a refusal, did no better. Verdicts sit so
  close to a tie that the same prompt at temperature 0 flipped between runs. Use a larger model
  for dependable verdicts; the chain and the constitution do not change.
* The revision call gets the question, the draft, the reasons of the failed checks and their
  ``revision`` requests (most important first) and must write only the new answer;
  :func:`~orchard.chains.verdicts.clean_revision` strips the labels small models add ("Revised answer:", quotes). An empty
  revision keeps the draft. Asked to rewrite a harmful draft, the 0.5B model copied it, echoed
  the instructions or answered the harmful question afresh: 1 proper refusal in 12 tries (3
  drafts, 4 prompt layouts). That is why the packaged ``harmless`` principle has a fixed
  ``replacement``.
* Sources/context are shown only to principles with ``use_context: true`` and to the revision
  when one of those failed: on a CPU each passage costs seconds of prompt reading per call.

Both prompts are module-level f-string templates (not prompt files: the prompt loader's list of
variables is fixed); pass your own with the same variables to the factory to change them.

Input of the critique chain: ``{"question": str, "answer": str (the draft), "context": str}``
(context optional). Output (``invoke``)::

    {"draft": "...",
     "critiques": [{"principle": "harmless", "critique": "YES\\nIt explains ...",
                    "needs_revision": True}],
     "answer": "I can't help with that ..."}

Streaming yields ``draft`` first, then one ``{"critiques": [item]}`` per principle checked (lists
add up), then the answer: the revision token by token, or the draft or replacement in one piece.

Example::

    >>> from orchard.constitution import load_constitution
    >>> critic = build_critique_chain(llm=llm, constitution=load_constitution())  # doctest: +SKIP
    >>> critic.invoke({"question": "How do I kill a Python process?", "answer": "Use kill PID."})
    ... # doctest: +SKIP
    >>> chain = with_critique(build_rag_chain(llm=llm, retriever=r), llm=llm,
    ...                       constitution=load_constitution())  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage, HumanMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import Runnable
from langchain_core.runnables.utils import AddableDict

from orchard.chains.plans import Call, Plan, Stream, plan_chain
from orchard.chains.verdicts import RevisionCleaner, clean_revision, critique_reason, parse_verdict
from orchard.constitution import Constitution, Principle

__all__ = ["CRITIQUE_PROMPT", "REVISION_PROMPT", "build_critique_chain", "clean_revision", "parse_verdict", "with_critique"]

#: Variables: ``request`` (the principle's critique request, a yes/no question), ``question``,
#: ``answer`` (the draft), ``context`` (empty, or a "Sources:" block starting with blank lines).
CRITIQUE_PROMPT = ChatPromptTemplate.from_messages(
    [
        (
            "system",
            "You are a strict reviewer. You answer a yes/no question about an assistant's answer.",
        ),
        (
            "human",
            "Question: {question}{context}\n\nAssistant's answer:\n{answer}\n\n{request}\n\n"
            "Reply YES or NO first, then a short reason.",
        ),
    ]
)

#: Variables: ``question``, ``answer`` (the draft), ``context`` (as above), ``critiques`` (the
#: reasons of the failed checks, one per line), ``requests`` (their revision requests, numbered).
REVISION_PROMPT = ChatPromptTemplate.from_messages(
    [
        (
            "system",
            "You rewrite an assistant's answer. Write only the new answer, nothing else.",
        ),
        (
            "human",
            "Question: {question}{context}\n\nOld answer:\n{answer}\n\n"
            "Problems with the old answer:\n{critiques}\n\n"
            "Rewrite the old answer. Instructions, most important first:\n{requests}",
        ),
    ]
)

def _context_block(context: Any) -> str:
    text = str(context or "").strip()
    return f"\n\nSources:\n{text}" if text else ""


def _critique_inputs(principle: Principle, inputs: dict[str, Any]) -> dict[str, Any]:
    return {
        "request": principle.critique,
        "question": inputs["question"],
        "answer": inputs["answer"],
        "context": _context_block(inputs["context"]) if principle.use_context else "",
    }


def _revision_inputs(
    constitution: Constitution, inputs: dict[str, Any], critiques: list[dict[str, Any]]
) -> dict[str, Any]:
    failed = [(constitution.principle(c["principle"]), c) for c in critiques if c["needs_revision"]]
    reasons = [f"- {p.name}: {critique_reason(c['critique']) or p.critique}" for p, c in failed]
    requests = [f"{i}. {p.revision}" for i, (p, _) in enumerate(failed, start=1)]
    with_context = any(p.use_context for p, _ in failed)
    return {
        "question": inputs["question"],
        "answer": inputs["answer"],
        "context": _context_block(inputs["context"]) if with_context else "",
        "critiques": "\n".join(reasons),
        "requests": "\n".join(requests),
    }


def _normalize(inputs: dict[str, Any]) -> dict[str, Any]:
    return {
        "question": str(inputs.get("question", "")).strip(),
        "answer": str(inputs.get("answer", "")).strip(),
        "context": inputs.get("context") or "",
    }


def _final_without_model(
    constitution: Constitution, inputs: dict[str, Any], critiques: list[dict[str, Any]]
) -> str | None:
    """The answer when no revision call is needed: a replacement, or the draft if all passed."""
    for item in critiques:
        principle = constitution.principle(item["principle"])
        if item["needs_revision"] and principle.replacement:
            return principle.replacement
    if not any(item["needs_revision"] for item in critiques):
        return inputs["answer"]
    return None


def build_critique_chain(
    *,
    llm: BaseChatModel,
    constitution: Constitution,
    critique_prompt: ChatPromptTemplate | None = None,
    revision_prompt: ChatPromptTemplate | None = None,
) -> Runnable:
    """Build the critique-and-revise chain (input and output: see the module docstring).

    Args:
        llm: any chat model; temperature 0 makes the verdicts repeatable.
        constitution: the principles, checked in order (:func:`orchard.constitution.load_constitution`).
        critique_prompt: variables ``request``, ``question``, ``answer``, ``context`` (default
            :data:`CRITIQUE_PROMPT`); the reply must start with the verdict (YES = a problem).
        revision_prompt: variables ``question``, ``answer``, ``context``, ``critiques``,
            ``requests`` (default :data:`REVISION_PROMPT`).
    """
    critic = ((critique_prompt or CRITIQUE_PROMPT) | llm | StrOutputParser()).with_config(run_name="critique")
    reviser = ((revision_prompt or REVISION_PROMPT) | llm | StrOutputParser()).with_config(run_name="revision")

    def critique(raw: dict[str, Any]) -> Plan:
        inputs = _normalize(raw)
        yield {"draft": inputs["answer"]}
        critiques: list[dict[str, Any]] = []
        for principle in constitution.principles:
            reply = yield Call(critic, _critique_inputs(principle, inputs))
            item = {"principle": principle.name, "critique": reply.strip(), "needs_revision": parse_verdict(reply) is True}
            critiques.append(item)
            yield {"critiques": [item]}
            if item["needs_revision"] and principle.replacement:
                break  # its fixed reply is the answer: nothing else to check or rewrite
        if (final := _final_without_model(constitution, inputs, critiques)) is not None:
            yield {"answer": final}
            return
        cleaner = RevisionCleaner()
        yield Stream(reviser, _revision_inputs(constitution, inputs, critiques), lambda token: _answer(cleaner.feed(token)))
        yield from _answer(cleaner.finish())
        if not cleaner.emitted.strip():
            yield {"answer": inputs["answer"]}  # an empty revision keeps the draft

    return plan_chain(critique, run_name="constitutional_critique")


def _answer(piece: str) -> list[dict[str, Any]]:
    return [{"answer": piece}] if piece else []


# --- wrapping any chain -------------------------------------------------------------------------


def _text(value: Any) -> str:
    if isinstance(value, BaseMessage):
        return value.text if isinstance(value.text, str) else str(value.content)
    return "" if value is None else str(value)


def _question_of(inputs: Any, output: dict[str, Any]) -> str:
    if output.get("question"):
        return str(output["question"])  # RAG: the standalone question
    if isinstance(inputs, str):
        return inputs
    if isinstance(inputs, dict):
        if inputs.get("question") is not None:
            return str(inputs["question"])
        if isinstance(inputs.get("messages"), list):
            inputs = inputs["messages"]
    if isinstance(inputs, list):
        for message in reversed(inputs):
            if isinstance(message, HumanMessage):
                return message.text
            if isinstance(message, tuple) and len(message) == 2 and message[0] in ("human", "user"):
                return str(message[1])
    return str(inputs)


def _context_of(inputs: Any, output: dict[str, Any]) -> str:
    """The input's ``context``, else the output's sources as the answer cites them:
    ``[n] (source)`` then the passage's text, passages separated by a blank line."""
    if isinstance(inputs, dict) and inputs.get("context"):
        return str(inputs["context"])
    blocks = []
    for i, source in enumerate(output.get("sources") or [], start=1):
        if isinstance(source, dict) and source.get("text"):
            where = source.get("source") or ""
            head = f"[{source.get('n', i)}]" + (f" ({where})" if where else "")
            blocks.append(f"{head}\n{source['text']}")
    return "\n\n".join(blocks)


class _Draft:
    """Accumulates the wrapped chain's streamed output; says what to pass on as it arrives.

    A ``repair`` chunk (RAG: the answer checks replaced a failed answer,
    :func:`orchard.chains.rag.repair_plan`) passes on and makes its ``answer`` the draft: the
    critique judges the repaired answer, not the one that failed the checks.
    """

    HELD = ("cited", "grounded")  # RAG, chat: recomputed for a revised answer, so sent at the end

    def __init__(self) -> None:
        self.fields: dict[str, Any] = {}
        self.parts: list[str] = []
        self.repaired: str | None = None  # the answer of a repair chunk, which replaces the parts
        self.is_dict = False
        self.sent = False  # has a draft chunk been passed on?
        self.held: AddableDict = AddableDict()

    def feed(self, chunk: Any) -> list[dict[str, Any]]:
        """The chunks to pass on now (``answer`` renamed ``draft``): none or one."""
        if not isinstance(chunk, dict):
            text = _text(chunk)
            self.parts.append(text)
            self.sent = self.sent or bool(text)
            return [{"draft": text}] if text else []
        self.is_dict = True
        out: dict[str, Any] = {}
        for key, value in chunk.items():
            if key == "answer":
                text = _text(value)
                self.parts.append(text)
                if text:
                    out["draft"] = text
                    self.sent = True
            elif key in self.HELD:
                self.held = self.held + AddableDict({key: value})
            elif key == "repair" and isinstance(value, dict):
                self.repaired = _text(value.get("answer"))
                out[key] = value
            else:
                self._keep(key, value)
                out[key] = value
        return [out] if out else []

    def _keep(self, key: str, value: Any) -> None:
        old = self.fields.get(key)
        if old is None or value is None:
            self.fields[key] = value
            return
        try:
            self.fields[key] = old + value
        except TypeError:
            self.fields[key] = value

    @property
    def answer(self) -> str:
        """The draft to critique: the repaired answer if there was a repair, else the streamed one."""
        return (self.repaired if self.repaired is not None else "".join(self.parts)).strip()


def _final_fields(draft: _Draft, answer: str) -> AddableDict:
    """The held keys; for a revised answer, ``cited`` and ``grounded`` from its ``[n]`` markers.

    Only keys the chain sent are recomputed (RAG, chat): for the agent, which sends neither,
    nothing is added.
    """
    out = AddableDict(draft.held)
    sources = draft.fields.get("sources")
    if answer.strip() != draft.answer and isinstance(sources, list):
        from orchard.chains.rag import cited_numbers

        cited = cited_numbers(answer, len(sources))
        if "cited" in out:
            out["cited"] = cited
        if out.get("grounded"):
            out["grounded"] = bool(cited)
    return out


def with_critique(
    chain: Runnable,
    *,
    llm: BaseChatModel,
    constitution: Constitution,
    critique_prompt: ChatPromptTemplate | None = None,
    revision_prompt: ChatPromptTemplate | None = None,
    stream_draft: bool = True,
) -> Runnable:
    """Wrap ``chain`` so its answer is critiqued against ``constitution`` and revised if needed.

    This is Orchard's one critique path: the answering use case wraps every mode's chain with it
    (RAG, chat, and the agent through :func:`orchard.agents.agent.build_agent_chain`).

    ``chain`` may output a string, a message, or a dict with an ``answer`` key (the RAG, chat and
    agent chains). The input goes to ``chain`` unchanged. The output is the chain's dict (or
    ``{}`` for text) with ``answer`` replaced by the revision, plus ``draft`` and ``critiques``;
    every other key (``question``, ``sources``, ``route``, ``tool_calls`` ...) is kept (lists add up). When the
    answer was revised and the output has ``sources``, ``cited`` is recomputed from the revised
    answer's ``[n]`` markers, and ``grounded`` stays True only if it still cites a source (a
    refusal is not grounded); a chain that sends no ``cited``/``grounded`` gets none.

    The question critiqued is the output's ``question`` (RAG: the standalone one), else the
    input's ``question``, else the input itself (a string, or the last human message). The
    context is the input's ``context``, else the output's sources numbered as the answer cites
    them, ``[n] (source)`` over the passage's text (the name tells the critic which passage
    an ``[n]`` points at).

    A ``repair`` chunk (the RAG chain's answer checks replaced its answer) passes through, and
    the repaired answer is the draft that is critiqued.

    Streaming: the chain's chunks pass through as they come (``answer`` renamed ``draft``), then
    one ``critiques`` chunk per principle, then the answer (the revision token by token), then
    ``cited``/``grounded`` if the chain sent them. With ``stream_draft=False`` the chain is
    invoked instead and its output passed on in one chunk.

    Raises:
        ValueError: (while running) the chain's output is a dict without an ``answer`` key.

    Args:
        chain: the chain whose answer is critiqued.
        llm: the model that critiques and revises (usually the chain's own).
        constitution: the principles (:func:`orchard.constitution.load_constitution`).
        critique_prompt, revision_prompt: see :func:`build_critique_chain`.
        stream_draft: stream ``chain`` (True) or invoke it (False, for chains whose stream is
            not their output, like a bare agent graph).
    """
    critic = build_critique_chain(
        llm=llm, constitution=constitution, critique_prompt=critique_prompt, revision_prompt=revision_prompt
    )

    def _critic_input(inputs: Any, draft: _Draft) -> dict[str, Any]:
        if draft.is_dict and not draft.parts:
            keys = ", ".join(sorted(draft.fields)) or "none"
            msg = (
                f"with_critique needs a chain whose output has an 'answer' key (got keys: {keys});"
                " for an agent graph, wrap `orchard.agents.agent.build_agent_chain(agent)`"
            )
            raise ValueError(msg)
        return {"question": _question_of(inputs, draft.fields), "answer": draft.answer, "context": _context_of(inputs, draft.fields)}

    def critiqued(inputs: Any) -> Plan:
        draft = _Draft()
        if stream_draft:
            yield Stream(chain, inputs, draft.feed)
        else:
            output = yield Call(chain, inputs)
            yield from draft.feed(output)
        critic_input, revised = _critic_input(inputs, draft), []
        if not draft.sent:
            yield {"draft": ""}

        def passed(chunk: dict[str, Any]) -> list[dict[str, Any]]:
            revised.append(chunk.get("answer", ""))
            rest = {k: v for k, v in chunk.items() if k != "draft"}  # the draft was streamed already
            return [rest] if rest else []

        yield Stream(critic, critic_input, passed)
        if tail := _final_fields(draft, "".join(revised)):
            yield tail

    return plan_chain(critiqued, run_name="with_critique")
