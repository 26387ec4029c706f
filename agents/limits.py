"""Generation limits for the agent's internal model calls (routing, writing code).

A cap does not make a normal call faster; it bounds a runaway one (a small model that keeps
explaining after its code block decodes at ~20 tokens/s on 2 cores). The limit is sent both as
``max_tokens`` (OpenAI-style, vLLM) and in ``extra_body`` (llama-cpp-python's server ignores the
``max_completion_tokens`` that langchain-openai sends instead).
"""

from __future__ import annotations

from langchain_core.runnables import Runnable

#: One word ("compute", "data", "documents", "chat") is one or two tokens; a few more for a stray dot.
ROUTE_MAX_TOKENS = 4
#: The longest program or query of the agent task set is ~90 tokens (a date loop with its fence).
WRITE_MAX_TOKENS = 320


def capped(llm: Runnable, max_tokens: int) -> Runnable:
    """``llm`` limited to ``max_tokens`` generated tokens per call."""
    return llm.bind(max_tokens=max_tokens, extra_body={"max_tokens": max_tokens})
