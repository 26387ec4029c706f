"""Which tool (or chain) answers a question: a small model's guess, grounded in the user's data.

Measured with the embedded 0.5B model: asked to pick among tool names (even with a grammar that
only allows the names) it chose ``sql`` for 8 of 11 questions whatever they asked; asked for a
*kind* of question with few-shot examples (compute / data / documents / chat) it was right far more
often, but it still calls "how do I prune a tree" data. So the model only proposes a kind, and the
user's own schema decides what is data: a question that names a table, a column or a stored value
of an attached source goes to that source; one that names none does not.

The kinds map onto tools (agent) and chains (``orchard ask --mode auto``):
compute -> ``python``, data -> ``sql`` or ``table``, documents -> ``search_docs`` / the RAG chain,
chat -> no tool / the chat chain.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import Runnable
from langchain_core.tools import BaseTool

from orchard.agents.limits import ROUTE_MAX_TOKENS, capped
from orchard.bm25 import tokenize

KINDS = ("compute", "data", "documents", "chat")
DATA_TOOLS = ("sql", "table")
#: The chain that answers each tool's questions in ``--mode auto``.
MODE_OF_TOOL = {"python": "agent", "sql": "agent", "table": "agent", "search_docs": "rag", None: "chat"}

_ARITHMETIC = re.compile(r"\d\s*(?:[-+*/^%x×÷]|\*\*)\s*\d|\d+(?:\.\d+)?\s*%\s*of\b", re.I)
_NUMBER = re.compile(r"(?<![\w.])\d+(?:[.,]\d+)?")
_MATH_WORDS = re.compile(
    r"\b(?:prime|factorial|squares?|squared|cubed?|root|power|percent|times|divided|plus|minus|sum|average|mean|"
    r"median|product|multiply|multiplied|add|subtract|compute|calculate|convert|interest|digits?|divisible|modulo)\b",
    re.I,
)


def computable(question: str) -> bool:
    """Could a program answer this from the question alone? It needs operands: two numbers, or one
    number and a word of arithmetic. ("harvested in 2025" has one number and is a lookup.)"""
    numbers = len(_NUMBER.findall(question))
    return bool(_ARITHMETIC.search(question)) or numbers >= 2 or (numbers >= 1 and bool(_MATH_WORDS.search(question)))


@dataclass(frozen=True)
class Route:
    """A routing decision: the tool to call (``None``: answer without one) and why."""

    tool: str | None
    kind: str
    reason: str
    matched: tuple[str, ...] = field(default=())

    @property
    def mode(self) -> str:
        return MODE_OF_TOOL.get(self.tool, "agent")


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def data_vocabulary(tool: BaseTool, *, max_tables: int = 20, max_columns: int = 30, max_values: int = 200) -> list[str]:
    """Names of a data tool's tables and columns, and its short stored text values.

    A tool may offer ``vocabulary()`` itself; the ``sql`` and ``table`` tools are read through their
    read-only ``db`` (one ``SELECT DISTINCT`` per column, capped).
    """
    vocabulary = getattr(tool, "vocabulary", None)
    if vocabulary is not None:
        return [str(term) for term in vocabulary()]
    db = getattr(tool, "db", None)
    if db is None:
        return []
    terms: list[str] = []
    for table, columns in list(db.columns_by_table().items())[:max_tables]:
        terms += [table, *columns]
        for column in columns[:max_columns]:
            try:
                _, rows, _ = db.execute(f"SELECT DISTINCT {_ident(column)} FROM {_ident(table)} LIMIT {max_values}", max_values)
            except Exception:  # a column we cannot read adds no words
                continue
            terms += [v for (v,) in rows if isinstance(v, str) and len(v) <= 40]
    return terms


def table_names(tool: BaseTool) -> list[str]:
    names = getattr(tool, "table_names", None)
    if names is not None:
        return list(names())
    db = getattr(tool, "db", None)
    return list(db.columns_by_table()) if db is not None else []


def schema_terms(vocabulary: Iterable[str]) -> set[str]:
    """Stemmed words of a data tool's vocabulary (tables, columns, short stored values; no numbers)."""
    return {t for term in vocabulary for t in tokenize(term) if not t.isdigit()}


def parse_kind(reply: str) -> str | None:
    """The first kind named in the model's reply (case and punctuation ignored)."""
    words = re.findall(r"[a-z]+", reply.lower())
    return next((w for w in words if w in KINDS), None)


class QuestionRouter:
    """Routes a question to one of the tools it was given (or none).

    Args:
        llm: the chat model that proposes a kind of question.
        prompt: the ``agent_route`` prompt (variables ``question``, ``tables``).
        tools: the tools available; data tools that offer ``vocabulary()`` are matched by name.
        relevance: how well the documents match a question (Orchard passes the "do the
            documents answer this" gate's probability): what the model calls small talk still
            goes to the documents when they match it (>= ``min_relevance``). None: always.
    """

    def __init__(
        self,
        *,
        llm: Runnable,
        prompt: ChatPromptTemplate,
        tools: Iterable[BaseTool],
        relevance: Callable[[str], float] | None = None,
        min_relevance: float = 0.3,
    ) -> None:
        self.llm = llm
        self.relevance, self.min_relevance = relevance, min_relevance
        self.prompt = prompt
        self.tools = {t.name: t for t in tools}
        #: Each data tool's vocabulary, read once (the SQL writer links string literals to it too).
        self.vocabulary = {name: set(data_vocabulary(self.tools[name])) for name in DATA_TOOLS if name in self.tools}
        self.terms = {name: schema_terms(words) for name, words in self.vocabulary.items()}
        self._decided: dict[str, Route] = {}  # one decision per question (auto mode, then the agent)

    def _tables(self) -> str:
        names = [n for name in DATA_TOOLS if name in self.tools for n in table_names(self.tools[name])]
        return ", ".join(names) if names else "none attached"

    def propose(self, question: str) -> str | None:
        """The kind the model proposes, or None when its reply names none."""
        reply = capped(self.llm, ROUTE_MAX_TOKENS).invoke(self.prompt.format_messages(question=question, tables=self._tables()))
        return parse_kind(str(reply.content))

    def data_match(self, question: str) -> tuple[str | None, tuple[str, ...]]:
        """The data tool whose schema the question names most (and the words that matched)."""
        words = set(tokenize(question))
        best, matched = None, ()
        for name, terms in self.terms.items():
            hits = tuple(sorted(words & terms))
            if len(hits) > len(matched):
                best, matched = name, hits
        return best, matched

    def route(self, question: str) -> Route:
        if question not in self._decided:
            self._decided[question] = self._route(question)
        return self._decided[question]

    def documents_match(self, question: str) -> bool:
        if "search_docs" not in self.tools:
            return False
        return self.relevance is None or self.relevance(question) >= self.min_relevance

    def _route(self, question: str) -> Route:
        data_tool, matched = self.data_match(question)
        settled = self.settled(question, data_tool, matched)
        if settled is not None:
            return settled
        return self.decide(question, self.propose(question), data_tool, matched)

    def settled(self, question: str, data_tool: str | None, matched: tuple[str, ...]) -> Route | None:
        """The route when every kind the model could propose leads to it (no model call needed), else None.

        On the agent task set (bench/agent_tasks.py) 20 of 25 questions are settled so: a
        question naming two things of the data, arithmetic such as "17% of 2340", a documents
        question with nothing to compute. The model is still asked about "2 to the power of 20"
        with only python attached (small talk would get no tool) or "How many orders were placed
        in total?" with documents attached (names one thing of the data only).
        Decisions are compared by tool (and, without a tool, by whether documents were wanted:
        auto mode then reports an empty store). The relevance check (a retrieval, memoized per
        request) runs only when every other kind already agrees.
        """
        first = self.decide(question, None, data_tool, matched)
        for kind in (*KINDS[:3], "chat"):  # chat last: only it may need the relevance check
            if _outcome(self.decide(question, kind, data_tool, matched)) != _outcome(first):
                return None
        return first

    def decide(self, question: str, kind: str | None, data_tool: str | None, matched: tuple[str, ...]) -> Route:
        """The route for a proposed ``kind`` (None: the model named none) and the question's data match."""
        has = self.tools.__contains__
        # Naming one thing of the data is enough unless the model saw documents or chat: then two.
        if data_tool and (kind in (None, "data", "compute") or len(matched) >= 2):
            return Route(data_tool, "data", f"names {', '.join(matched)} of the {data_tool} data", matched)
        if has("python") and (_ARITHMETIC.search(question) or (kind in (None, "compute", "data") and computable(question))):
            return Route("python", "compute", "a computation from the numbers in the question")
        if kind == "chat" and not self.documents_match(question):
            return Route(None, "chat", "small talk")
        if kind == "data" and not has("search_docs"):
            only = [n for n in DATA_TOOLS if has(n)]
            if len(only) == 1:
                return Route(only[0], "data", f"a data question and only {only[0]} is attached")
        if has("search_docs"):
            # Better "the documents do not answer this" (the RAG chain's gate) than a guess.
            why = {"data": "the model called it a data question, but it names nothing in the data",
                   "compute": "the model called it a computation, but the question has nothing to compute",
                   "chat": "the model called it small talk, but the documents match it"}  # fmt: skip
            return Route("search_docs", "documents", why.get(kind or "", "a question for the documents"))
        if kind == "documents" and not has("search_docs"):
            return Route(None, "documents", "a question for the documents, but none are ingested")
        return Route(None, kind or "chat", "no tool fits")


def _outcome(route: Route) -> tuple[str | None, bool]:
    """What a route changes downstream: the tool, and (without one) whether documents were wanted."""
    return route.tool, route.tool is None and route.kind == "documents"


def describe_route(route: Route) -> dict[str, Any]:
    return {"tool": route.tool, "kind": route.kind, "mode": route.mode, "reason": route.reason}
