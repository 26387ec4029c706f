"""Writing a tool's input as text: programs and queries in fenced code blocks.

Measured with the embedded 0.5B model: asked for a forced tool call (the JSON grammar llama.cpp
builds from the tool's schema), it wrote ``17/2340`` for "17% of 2340" and ``97 == 1`` for "is 97
prime"; asked for a ```python block with two examples it wrote correct programs for 6 of 7
questions. So the routed agent asks for code as text and builds the tool call itself.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from langchain_core.runnables import Runnable
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.tools import BaseTool

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


@dataclass
class ToolInputWriter:
    """Writes the arguments of a call to ``python``, ``sql``, ``table`` or ``search_docs``."""

    llm: Runnable
    python_prompt: ChatPromptTemplate
    sql_prompt: ChatPromptTemplate

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
        messages, language, argument = self.messages(tool, question)
        if failed:
            previous, error = failed
            messages += [
                AIMessage(content=f"```{language}\n{previous}\n```"),
                HumanMessage(content=f"That failed with: {error}\nWrite a corrected version in one ```{language} block."),
            ]
        reply = self.llm.invoke(messages)
        return {argument: extract_code(str(reply.content), language)}
