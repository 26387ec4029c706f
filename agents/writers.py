"""Writing a tool's input as text: programs and queries in fenced code blocks.

Measured with the embedded 0.5B model: asked for a forced tool call (the JSON grammar llama.cpp
builds from the tool's schema), it wrote ``17/2340`` for "17% of 2340" and ``97 == 1`` for "is 97
prime"; asked for a ```python block with two examples it wrote correct programs for 6 of 7
questions. So the routed agent asks for code as text and builds the tool call itself.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from typing import Any

import sqlglot
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import Runnable
from langchain_core.tools import BaseTool
from sqlglot import exp

from orchard.agents.limits import WRITE_MAX_TOKENS, capped

_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[ \t]*\n(.*?)(?:```|\Z)", re.S)


def extract_code(reply: str, language: str) -> str:
    """The code in the first fenced block of ``reply`` (any language tag), else the reply itself.

    An unclosed fence (the model ran out of tokens) still yields what it wrote.
    """
    blocks = _FENCE.findall(reply)
    preferred = [body for tag, body in blocks if tag.lower() == language] or [body for _, body in blocks]
    code = preferred[0] if preferred else reply
    return code.strip()


def schema_of(tool: BaseTool) -> str:
    """The schema text a data tool offers (tables, columns, sample rows)."""
    describe = getattr(tool, "describe", None) or getattr(getattr(tool, "db", None), "describe", None)
    return describe() if describe else tool.description


_DIALECT_NAMES = {"sqlite": "SQLite", "postgres": "PostgreSQL", "mysql": "MySQL", "duckdb": "DuckDB", "tsql": "SQL Server"}


def dialect_of(tool: BaseTool) -> str:
    """The SQL dialect to write for ``tool`` (DuckDB for files, the database's own for sql)."""
    if tool.name == "table":
        return "DuckDB"
    dialect = str(getattr(getattr(tool, "db", None), "dialect", "sqlite"))
    return _DIALECT_NAMES.get(dialect, dialect)


_SQLGLOT_DIALECT = {"SQLite": "sqlite", "DuckDB": "duckdb", "PostgreSQL": "postgres", "MySQL": "mysql"}
_ASKS_WHICH = re.compile(r"^\s*(?:which|who)\b", re.I)
_ASKS_HOW_MANY = re.compile(r"^\s*how many\b(?!.*\b(?:kg|kilograms?|litres?|liters?|euros?|dollars?|hours?|minutes?|grams?|tons?)\b)", re.I)


def link_values(query: str, question: str, values: set[str], dialect: str = "sqlite") -> str:
    """Replace string literals that name no stored value by the stored value they meant.

    Measured: the 0.5B model wrote ``name = 'Lisboa'`` for "customers in Lisbon" although the
    sample rows say Lisbon. A literal not among the stored values becomes the closest stored value
    the question itself mentions (else a very close one); LIKE patterns are left alone.
    """
    if not values:
        return query
    try:
        tree = sqlglot.parse_one(query, read=dialect)
    except sqlglot.errors.SqlglotError:
        return query
    known = {v.lower(): v for v in values}
    mentioned = [v for v in values if len(v) > 1 and v.lower() in question.lower()]
    changed = False
    for literal in list(tree.find_all(exp.Literal)):
        text = literal.this
        if not literal.is_string or text.lower() in known or "%" in text or "_" in text:
            continue
        pick = difflib.get_close_matches(text, mentioned, n=1, cutoff=0.5) or difflib.get_close_matches(
            text, list(values), n=1, cutoff=0.85
        )
        if pick:
            literal.replace(exp.Literal.string(pick[0]))
            changed = True
    return tree.sql(dialect=dialect) if changed else query


def lint_query(question: str, query: str, dialect: str = "sqlite") -> str | None:
    """A problem to send back before running the query, or None.

    Measured with the 0.5B model: "Which customer spent the most?" answered with
    ``SELECT SUM(amount) ...`` names no customer, so a which/who question must select more than
    aggregates; "How many orders were placed?" answered with ``SUM(amount)`` adds money, so a
    how-many question (of things, not of kg or euros) must count.
    """
    asks_which, asks_count = bool(_ASKS_WHICH.match(question)), bool(_ASKS_HOW_MANY.match(question))
    if not (asks_which or asks_count):
        return None
    try:
        select = sqlglot.parse_one(query, read=dialect).find(exp.Select)
    except sqlglot.errors.SqlglotError:
        return None
    if select is None or not select.expressions:
        return None
    if asks_which and all(isinstance(e.unalias(), exp.AggFunc) for e in select.expressions):
        return "the question asks which one: select its name as well, not only the aggregate"
    if asks_count and not select.find(exp.Count) and select.find(exp.Sum):
        return "the question asks how many: count the rows with COUNT(*) instead of adding up a column"
    return None


@dataclass
class ToolInputWriter:
    """Writes the arguments of a call to ``python``, ``sql``, ``table`` or ``search_docs``.

    SQL is checked before it runs: string literals are linked to stored values
    (:func:`link_values`) and a query that cannot answer the question (:func:`lint_query`) is
    rewritten once with the problem.

    Each write is one conversation (the prompt, the model's reply, a correction, the next reply)
    that the writer keeps for the question (:meth:`conversation`): a rewrite and the final answer
    continue it, so the model server re-reads only what was added (its KV cache holds the last
    call's prompt and reply). Measured on the agent task set: see ``agents/agent.py``.
    """

    llm: Runnable
    python_prompt: ChatPromptTemplate
    sql_prompt: ChatPromptTemplate
    #: Stored values per data tool (the router's :attr:`~agents.router.QuestionRouter.vocabulary`).
    vocabulary: dict[str, set[str]] = field(default_factory=dict)
    max_tokens: int = WRITE_MAX_TOKENS
    #: The last write: (tool name, question, its messages ending with the model's reply).
    _last: tuple[str, str, list[BaseMessage]] | None = field(default=None, init=False, repr=False)

    def messages(self, tool: BaseTool, question: str) -> tuple[list[BaseMessage], str, str]:
        """The prompt, the code language and the argument name for ``tool``."""
        if tool.name == "python":
            return self.python_prompt.format_messages(question=question), "python", "code"
        prompt = self.sql_prompt.format_messages(question=question, schema=schema_of(tool), dialect=dialect_of(tool))
        return prompt, "sql", "query"

    def write(self, tool: BaseTool, question: str, *, failed: tuple[str, str] | None = None) -> dict[str, Any]:
        """Arguments for ``tool``; ``failed`` = (the previous input, its error) asks for a fix."""
        if tool.name not in ("python", "sql", "table"):
            return {"query": question}
        code = self._generate(tool, question, failed)
        if tool.name != "python":
            dialect = _SQLGLOT_DIALECT.get(dialect_of(tool), "sqlite")
            if failed is None and (problem := lint_query(question, code, dialect)):
                code = self._generate(tool, question, (code, problem))
            code = link_values(code, question, self.vocabulary.get(tool.name, set()), dialect)
        return {"code" if tool.name == "python" else "query": code}

    def conversation(self, tool: str, question: str, written: str) -> list[BaseMessage] | None:
        """The messages of the last write of ``tool`` for ``question``, ending with an AI message
        holding ``written`` (the input that ran): the model's own reply when it is that code
        (byte for byte what the server's cache holds), else ``written`` in a fence. None when the
        writer did not write it (another question, a tool the model called itself)."""
        if self._last is None or self._last[:2] != (tool, question):
            return None
        messages = self._last[2]
        reply = str(messages[-1].content)
        language = "python" if tool == "python" else "sql"
        if extract_code(reply, language) != written.strip():
            reply = f"```{language}\n{written.strip()}\n```"
        return [*messages[:-1], AIMessage(content=reply)]

    def _generate(self, tool: BaseTool, question: str, failed: tuple[str, str] | None) -> str:
        messages, language, _ = self.messages(tool, question)
        if failed:
            previous, error = failed
            messages = self.conversation(tool.name, question, previous) or [
                *messages,
                AIMessage(content=f"```{language}\n{previous}\n```"),
            ]
            messages.append(HumanMessage(content=f"That failed with: {error}\nWrite a corrected version in one ```{language} block."))
        reply = capped(self.llm, self.max_tokens).invoke(messages)
        self._last = (tool.name, question, [*messages, AIMessage(content=str(reply.content))])
        return extract_code(str(reply.content), language)
