"""Answering a question: routing, the chosen chain or the agent, the critique — as typed events.

One request, one plan: the mode (``auto`` routes the question first), the chain that answers it
(each mode is a Runnable streaming the chains' dict chunks: :mod:`orchard.chains.rag`,
:mod:`orchard.chains.chat`, the agent through :func:`orchard.agents.agent.build_agent_chain`),
and, with ``critique``, :func:`orchard.chains.constitutional.with_critique` on top — the one
critique path, for every mode. The chunks become :mod:`orchard.events` once, in
:class:`_Run`, which also folds them; the stream ends with :class:`~orchard.events.Done`.

The sync and async drivers (:meth:`Answering.stream`, :meth:`Answering.astream`) share the plan
and the run; they differ only in how they iterate.

Example::

    >>> answers = build_orchard().answers  # doctest: +SKIP
    >>> answers.ask(AnswerRequest(question="How do I shuffle a list?", mode="rag")).answer  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any

from orchard.components import Components
from orchard.errors import EmptyStore, ModelServerUnavailable, OrchardError
from orchard.events import AnswerEvent, AnswerFold, AnswerResult, AnswerStream, Done, chunk_events

MODES = ("auto", "rag", "agent", "chat")
MAX_BEST_OF = 8
AGENT_PROMPTS = ("agent_route", "agent_python", "agent_sql", "agent_answer")


@dataclass(frozen=True, kw_only=True)
class AnswerRequest:
    """What to answer and how.

    Args:
        question: the user's question.
        mode: ``auto`` (route per question), ``rag``, ``agent`` or ``chat``.
        history: earlier turns as ``{"role", "content"}`` dicts (or ``(role, text)`` pairs).
        user: whose preference profile reaches the prompts (None: nobody's), and, in team mode,
            whose libraries are searched (the shared one and theirs; None: the shared one only).
        db_url: a database for the sql tool (default: ORCHARD_DB_URL).
        tables: CSV/XLSX files for the table tool.
        critique: check the draft against the constitution and revise it.
        best_of: candidates per answer, picked by the user's reward model (RAG and chat;
            None: ``ORCHARD_BEST_OF``; 1: off). The others come back as alternatives.
    """

    question: str
    mode: str = "auto"
    history: tuple[Any, ...] = ()
    user: str | None = None
    db_url: str | None = None
    tables: tuple[str, ...] = ()
    critique: bool = False
    best_of: int | None = None

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            msg = f"unknown mode {self.mode!r}: choose one of {', '.join(MODES)}"
            raise OrchardError(msg)
        if not str(self.question).strip():
            msg = "the question is empty: ask something"
            raise OrchardError(msg)
        object.__setattr__(self, "history", tuple(self.history or ()))
        object.__setattr__(self, "tables", tuple(str(t) for t in self.tables or ()))
        if self.best_of is not None and not 1 <= int(self.best_of) <= MAX_BEST_OF:
            msg = f"best-of {self.best_of}: choose 1 (off) to {MAX_BEST_OF} candidates"
            raise OrchardError(msg)


@dataclass
class _Plan:
    """What answers a request: chunks known before the chain runs, the chain and its input."""

    head: list[dict[str, Any]]
    chain: Any
    inputs: dict[str, Any]
    tail: Callable[[], list[dict[str, Any]]] = lambda: []  # chunks known once the chain ran (best-of-n)


@dataclass
class _Run:
    """Chain chunks in, events out; folds them and closes with :class:`Done`."""

    fold: AnswerFold

    def events(self, chunk: dict[str, Any]) -> list[AnswerEvent]:
        out = list(chunk_events(chunk))
        for event in out:
            self.fold.feed(event)
        return out

    def done(self) -> Done:
        return Done(self.fold.result())


class Answering:
    """The answering use case (see the module docstring).

    Args:
        components: the composition root's parts (model, retriever, tools, profiles).
        ensure_model: makes sure the model endpoint answers (starts the embedded server at the
            default URL); raises :class:`~orchard.errors.ModelServerUnavailable` otherwise.
    """

    def __init__(self, *, components: Components, ensure_model: Callable[[], None]) -> None:
        self.components = components
        self.ensure_model = ensure_model

    @property
    def settings(self) -> Any:
        return self.components.settings

    # --- the drivers ------------------------------------------------------------------------------

    def stream(self, request: AnswerRequest) -> AnswerStream:
        """The answer as events (ending with :class:`~orchard.events.Done`).

        Raises (while iterating):
            EmptyStore: a documents question with nothing ingested.
            ModelServerUnavailable: the model endpoint does not answer.
        """
        return AnswerStream(self._events(request))

    def ask(self, request: AnswerRequest) -> AnswerResult:
        return self.stream(request).result()

    def _events(self, request: AnswerRequest) -> Iterator[AnswerEvent]:
        run = self._start(request)
        with self._model_errors():
            self.ensure_model()
            plan = self._plan(request)
            for chunk in plan.head:
                yield from run.events(chunk)
            for chunk in plan.chain.stream(plan.inputs):
                yield from run.events(chunk)
            for chunk in plan.tail():
                yield from run.events(chunk)
        yield run.done()

    async def astream(self, request: AnswerRequest) -> AsyncIterator[AnswerEvent]:
        """:meth:`stream` for asyncio: the model's tokens arrive through ``chain.astream``."""
        run = self._start(request)
        with self._model_errors():
            await asyncio.to_thread(self.ensure_model)
            plan = await asyncio.to_thread(self._plan, request)  # routing is one short model call
            for chunk in plan.head:
                for event in run.events(chunk):
                    yield event
            async for chunk in plan.chain.astream(plan.inputs):
                for event in run.events(chunk):
                    yield event
            for chunk in plan.tail():
                for event in run.events(chunk):
                    yield event
        yield run.done()

    async def aask(self, request: AnswerRequest) -> AnswerResult:
        result = None
        async for event in self.astream(request):
            if isinstance(event, Done):
                result = event.result
        assert result is not None
        return result

    # --- shared by both drivers -------------------------------------------------------------------

    def _start(self, request: AnswerRequest) -> _Run:
        if request.mode == "rag" and self.components.store.count() == 0:
            raise EmptyStore(self.components.store.where)
        fold = AnswerFold(mode=request.mode, model=self.settings.llm_model, question=request.question, critiqued=request.critique)
        return _Run(fold)

    @contextlib.contextmanager
    def _model_errors(self) -> Iterator[None]:
        import openai

        s = self.settings
        try:
            yield
        except (openai.APIConnectionError, openai.APITimeoutError) as exc:
            raise ModelServerUnavailable(s.llm_base_url, type(exc).__name__) from exc
        except openai.APIError as exc:
            msg = (
                f"the model server at {s.llm_base_url} refused the request ({exc}) — "
                f"check ORCHARD_LLM_MODEL ({s.llm_model!r}) against the server's models"
            )
            raise OrchardError(msg) from exc

    def _plan(self, request: AnswerRequest) -> _Plan:
        from orchard.agents.router import describe_route
        from orchard.retriever import MemoRetriever

        # One retrieval per question: the router's relevance check, search_docs and the RAG chain
        # share this per-request memo — over the asker's libraries only (team mode), a view made
        # for this request: nothing is shared with another user's request.
        retriever = MemoRetriever(base=self._retriever_for(request.user))
        inputs = {"question": request.question, "history": list(request.history)}
        head: list[dict[str, Any]] = []
        mode, tools, router = request.mode, [], None
        if mode in ("auto", "agent"):
            tools = self.components.tools(db_url=request.db_url, tables=request.tables, retriever=retriever)
            router = self._router(tools, retriever)
        if mode == "auto":
            route = router.route(request.question)
            if route.tool is None and route.kind == "documents":
                raise EmptyStore(self.components.store.where)
            mode = route.mode
            if mode != "agent" or self.settings.tool_calling != "routed":  # the routed agent reports its (cached) route
                head.append({"mode": mode, "route": describe_route(route)})
        picks: list[Any] = []  # best-of-n: what was generated and picked (the last answer call's)
        if mode == "agent":
            chain = self._agent_chain(tools, router)
        else:
            chain = self._chain(mode, user=request.user, retriever=retriever, best_of=self._best_of(request), record=picks.append,
                                question=request.question)  # fmt: skip
        if request.critique:
            chain = self._critiqued(chain)
        return _Plan(head=head, chain=chain, inputs=inputs, tail=lambda: [picks[-1].as_chunk()] if picks else [])

    def _best_of(self, request: AnswerRequest) -> int:
        return int(request.best_of if request.best_of is not None else self.settings.best_of)

    def libraries(self, user: str | None) -> list[str] | None:
        """The libraries ``user``'s questions are answered from: team mode, the shared one and
        theirs (nobody's: shared only); personal mode, None — every document."""
        from orchard.identity import libraries_for

        return libraries_for(user, team=self.settings.team_mode)

    def _retriever_for(self, user: str | None) -> Any:
        from orchard.retriever import restricted

        return restricted(self.components.retriever, self.libraries(user))

    def tools(self, *, db_url: str | None = None, tables: tuple[str, ...] = (), user: str | None = None) -> list[Any]:
        """The tools an agent question would get with what is attached (``orchard tools``);
        ``search_docs`` searches ``user``'s libraries (team mode)."""
        return self.components.tools(db_url=db_url, tables=tables, retriever=self._retriever_for(user))

    def _prompt(self, name: str) -> Any:
        from orchard.prompts import load_prompt

        return load_prompt(name, user_dir=self.settings.prompts_path)

    def _chain(self, mode: str, *, user: str | None, retriever: Any, best_of: int = 1,
               record: Callable[[Any], None] | None = None, question: str = "") -> Any:  # fmt: skip
        from orchard.chains.best_of import best_of_n
        from orchard.chains.chat import build_chat_chain
        from orchard.chains.preferences import with_preferences
        from orchard.chains.rag import build_rag_chain

        preferences = self.preferences(user)
        llm = with_preferences(self.components.llm, preferences)
        answer_llm = llm
        if best_of > 1:  # only the answer call: condensing and a repair's retry stay single
            reward = self.components.reward_scorer(user, question)
            picker = best_of_n(self.components.llm, n=best_of, score=reward.score if reward else None,
                               scorer_name=reward.name if reward else "", record=record,
                               one_request=self.settings.llm_n_per_request)  # fmt: skip
            answer_llm = with_preferences(picker, preferences)
        if mode == "chat":
            return build_chat_chain(llm=answer_llm, prompt=self._prompt("chat"))
        if mode == "rag":
            return build_rag_chain(
                llm=llm,
                answer_llm=answer_llm,
                retriever=retriever,
                answer_prompt=self._prompt("rag_answer"),
                condense_prompt=self._prompt("condense_question"),
                min_relevance=self.settings.min_relevance,
                max_context_tokens=self.settings.max_context_tokens,
                **({} if self.settings.answer_checks else {"checks": None}),
            )
        msg = f"unknown mode {mode!r}: choose one of {', '.join(MODES)}"
        raise OrchardError(msg)

    def _router(self, tools: list[Any], retriever: Any) -> Any:
        from orchard.agents.router import QuestionRouter
        from orchard.chains.gate import Gate

        gate = Gate.default(min_relevance=self.settings.min_relevance)  # the RAG chain's own gate

        def relevance(question: str) -> float:
            """How likely the documents answer it: the RAG gate's probability, 0 when that gate refuses.

            Not the best cosine alone: small talk whose words no passage holds ("tell me a
            joke": 0.009; the refusal line is 0.21) stays chat even at a cosine near the floor,
            and what the router sends to the documents the RAG chain does not then refuse. Still
            open: "How do I add my documents?" over the samples has probability 0.65 but a best
            cosine of 0.27, under the 0.3 floor, so both the gate and the router turn it away.
            """
            if self.components.store.count() == 0:
                return 0.0
            verdict = gate.decide(question, retriever.invoke(question))
            return 0.0 if verdict.decision == "refuse" else verdict.probability

        return QuestionRouter(
            llm=self.components.internal_llm,
            prompt=self._prompt("agent_route"),
            tools=tools,
            relevance=relevance,
            min_relevance=gate.refuse_below,
        )

    def _agent_chain(self, tools: list[Any], router: Any) -> Any:
        from orchard.agents.agent import build_agent, build_agent_chain
        from orchard.components import INTERNAL_TAG

        agent = build_agent(
            llm=self.components.llm,
            tools=tools,
            tool_calling=self.settings.tool_calling,
            prompts={name: self._prompt(name) for name in AGENT_PROMPTS},
            router=router,
            internal_tag=INTERNAL_TAG,
        )
        return build_agent_chain(agent)

    def _critiqued(self, chain: Any) -> Any:
        from orchard.chains.constitutional import with_critique
        from orchard.constitution import load_constitution

        return with_critique(chain, llm=self.components.llm, constitution=load_constitution(self.settings.prompts_path))

    def preferences(self, user: str | None) -> str:
        """What the user's profile adds to their prompts ('' without a user or a profile)."""
        if not user:
            return ""
        from orchard.feedback import profile_instructions

        return profile_instructions(self.components.profiles.get(user))
