"""Chains written once for sync and async: a *plan* yields chunks and the calls it needs.

A plan is a generator over one input. It yields:

* a dict: a chunk of the chain's output, passed on (as an ``AddableDict``, so chunks add up);
* :class:`Call` ``(runnable, input)``: the driver runs it (``invoke`` / ``ainvoke``) and sends its
  output back into the plan (``output = yield Call(...)``);
* :class:`Stream` ``(runnable, input, feed)``: the driver streams it (``stream`` / ``astream``),
  passes each piece to ``feed`` and passes on the chunks ``feed`` returns, as they come.

:func:`run_plan` and :func:`arun_plan` are the two drivers, the only code that differs between
sync and async; :func:`plan_chain` makes a Runnable of a plan with both, so ``invoke``,
``stream``, ``ainvoke`` and ``astream`` all run the same decisions.

Example::

    >>> def shout(inputs):
    ...     text = yield Call(reply_chain, inputs)  # doctest: +SKIP
    ...     yield {"answer": text.upper()}
    >>> chain = plan_chain(shout, run_name="shout")  # doctest: +SKIP
    >>> await chain.ainvoke({"question": "hi"})  # doctest: +SKIP
    {'answer': 'HELLO!'}
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Generator, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from langchain_core.runnables import Runnable, RunnableConfig, RunnableGenerator
from langchain_core.runnables.utils import AddableDict


@dataclass(frozen=True)
class Call:
    """Run ``runnable`` on ``input``; the plan receives its output."""

    runnable: Runnable
    input: Any
    kwargs: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Stream:
    """Stream ``runnable`` on ``input``; ``feed(piece)`` says which chunks to pass on for each piece."""

    runnable: Runnable
    input: Any
    feed: Callable[[Any], Iterable[Mapping[str, Any]]]
    kwargs: Mapping[str, Any] = field(default_factory=dict)  # e.g. a graph's ``stream_mode``


Plan = Generator[Mapping[str, Any] | Call | Stream, Any, None]


def run_plan(plan: Plan, config: RunnableConfig | None = None) -> Iterator[AddableDict]:
    """The sync driver: ``invoke`` for a :class:`Call`, ``stream`` for a :class:`Stream`."""
    reply: Any = None
    while True:
        try:
            step = plan.send(reply)
        except StopIteration:
            return
        reply = None
        if isinstance(step, Call):
            reply = step.runnable.invoke(step.input, config, **step.kwargs)
        elif isinstance(step, Stream):
            for piece in step.runnable.stream(step.input, config, **step.kwargs):
                yield from (AddableDict(chunk) for chunk in step.feed(piece))
        else:
            yield AddableDict(step)


async def arun_plan(plan: Plan, config: RunnableConfig | None = None) -> AsyncIterator[AddableDict]:
    """The async driver: ``ainvoke`` for a :class:`Call`, ``astream`` for a :class:`Stream`."""
    reply: Any = None
    while True:
        try:
            step = plan.send(reply)
        except StopIteration:
            return
        reply = None
        if isinstance(step, Call):
            reply = await step.runnable.ainvoke(step.input, config, **step.kwargs)
        elif isinstance(step, Stream):
            async for piece in step.runnable.astream(step.input, config, **step.kwargs):
                for chunk in step.feed(piece):
                    yield AddableDict(chunk)
        else:
            yield AddableDict(step)


def plan_chain(plan: Callable[[Any], Plan], *, run_name: str) -> Runnable:
    """A Runnable that runs ``plan(input)`` for each input, with both drivers."""

    def stream(items: Iterator[Any], config: RunnableConfig) -> Iterator[AddableDict]:
        for inputs in items:
            yield from run_plan(plan(inputs), config)

    async def astream(items: AsyncIterator[Any], config: RunnableConfig) -> AsyncIterator[AddableDict]:
        async for inputs in items:
            async for chunk in arun_plan(plan(inputs), config):
                yield chunk

    return RunnableGenerator(stream, astream).with_config(run_name=run_name)
