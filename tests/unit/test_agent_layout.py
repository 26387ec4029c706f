"""The agent's prompts laid out for the model server's KV cache, and the model calls it skips.

llama.cpp re-reads only the tokens after the longest prefix shared with its previous call, so:
every agent prompt starts with a fixed part that is byte-identical across questions (and, for SQL,
across schemas and dialects); the answer continues the writer's conversation; a route that the
schema or the question settles, and a second route, cost no model call; routing and writing are
capped in tokens.
"""

from __future__ import annotations

from typing import Any

import pytest
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.outputs import ChatResult
from pydantic import Field

from orchard.agents.agent import agent_result, build_agent
from orchard.agents.limits import ROUTE_MAX_TOKENS, WRITE_MAX_TOKENS
from orchard.agents.router import QuestionRouter
from orchard.prompts import load_prompt
from tests.fakes import ScriptedToolModel
from tests.unit.test_agent import FakeSQL, python, search_docs

QUESTIONS = ("What is 2 to the power of 20?", "How many orders came from customers in Lisbon?")


def rendered(messages: list[BaseMessage]) -> list[tuple[str, str]]:
    return [(m.type, str(m.content)) for m in messages]


def common_prefix(a: str, b: str) -> str:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return a[:n]


class RecordingModel(ScriptedToolModel):
    """Also records the keyword arguments of each call (the generation limits)."""

    call_kwargs: list[dict[str, Any]] = Field(default_factory=list)

    def _generate(self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kwargs: Any) -> ChatResult:
        self.call_kwargs.append(kwargs)
        return super()._generate(messages, stop=stop, run_manager=run_manager, **kwargs)


def run(model: ScriptedToolModel, tools: list[Any], question: str) -> dict[str, Any]:
    return agent_result(build_agent(llm=model, tools=tools).invoke({"messages": [HumanMessage(question)]}))


@pytest.mark.parametrize(
    ("name", "values"),
    [
        ("agent_route", [{"tables": "orders, towns"}, {"tables": "orders, towns"}]),
        ("agent_python", [{}, {}]),
        ("agent_sql", [{"schema": "table a: id INTEGER", "dialect": "SQLite"}, {"schema": "table h: kg BIGINT", "dialect": "DuckDB"}]),
    ],
)
def test_every_message_before_the_question_is_byte_identical_across_questions(name: str, values: list[dict[str, str]]) -> None:
    prompt = load_prompt(name)
    first, second = (rendered(prompt.format_messages(question=q, **v)) for q, v in zip(QUESTIONS, values, strict=True))
    assert first[:-1] == second[:-1] and len(first) >= 5  # instructions and few-shot examples first
    assert first[-1] != second[-1] and QUESTIONS[0] in first[-1][1]  # the question (and schema) last


def test_the_answer_prompt_asks_the_question_around_the_result_and_its_last_message_stands_alone() -> None:
    prompt = load_prompt("agent_answer")
    a = rendered(prompt.format_messages(question=QUESTIONS[0], tool="python", tool_input="print(2**20)", tool_output="1048576"))
    b = rendered(prompt.format_messages(question=QUESTIONS[1], tool="python", tool_input="print(3)", tool_output="3"))
    fixed = "You answer the user's question in one short sentence from the result of a "
    assert a[0][1].startswith(fixed) and b[0][1].startswith(fixed)
    # The last message (what continues the writer's conversation) holds the question, the result,
    # the question again (read last, nearest the answer), and not the code (the conversation has it).
    tail = a[1][1]
    first, result, last = tail.index(QUESTIONS[0]), tail.index("1048576"), tail.rindex(QUESTIONS[0])
    assert first < result < last and "print(" not in tail
    assert common_prefix(a[1][1], b[1][1]) == "Question: "


def test_the_answer_continues_the_writers_conversation_so_only_the_result_is_new() -> None:
    model = ScriptedToolModel(replies=["compute", "```python\nprint(sum(i*i for i in range(1, 101)))\n```", "It is 338350."])
    result = run(model, [python], "What is the sum of the squares of 1 to 100?")
    assert result["answer"] == "It is 338350."
    _, write, answer = model.calls  # route, write, answer
    assert rendered(answer[: len(write)]) == rendered(write)
    assert answer[len(write)] == AIMessage(content="```python\nprint(sum(i*i for i in range(1, 101)))\n```")
    [tail] = answer[len(write) + 1 :]
    assert "338350" in tail.content and "print(" not in tail.content  # the code is not sent twice


def test_a_rewrite_and_its_answer_continue_the_same_conversation() -> None:
    sql = FakeSQL(seen=[])
    model = ScriptedToolModel(
        replies=["```sql\nSELECT MAX(total) FROM orders\n```", "```sql\nSELECT COUNT(*) FROM orders\n```", "42 orders."]
    )
    run(model, [sql], "How many orders are there by amount?")
    first, retry, answer = model.calls
    assert rendered(retry[: len(first)]) == rendered(first) and "no such column" in retry[-1].content
    assert rendered(answer[: len(retry)]) == rendered(retry) and "COUNT(*)" in answer[len(retry)].content


def test_a_linked_literal_is_what_the_answer_shows_as_the_code_that_ran() -> None:
    class Towns(FakeSQL):
        def _run(self, query: str) -> str:
            self.seen.append(query)
            return "COUNT(*)\n3\n(1 row)"

    sql = Towns(seen=[])
    model = ScriptedToolModel(replies=["```sql\nSELECT COUNT(*) FROM towns WHERE name = 'Lisboa'\n```", "3 towns."])
    run(model, [sql], "How many towns are named Lisbon?")
    assert sql.seen == ["SELECT COUNT(*) FROM towns WHERE name = 'Lisbon'"]
    assert "'Lisbon'" in model.calls[-1][-2].content  # the AI turn shows the query that ran


@pytest.mark.parametrize(
    ("question", "tools", "tool"),
    [
        ("What is 17% of 2340?", [python], "python"),  # arithmetic in the question
        ("Which town has the largest population?", [python, FakeSQL()], "sql"),  # names two things of the data
        ("When do I prune?", [python, search_docs], "search_docs"),  # nothing to compute, documents match
    ],
)
def test_a_route_settled_by_the_question_and_the_schema_makes_no_model_call(question: str, tools: list[Any], tool: str) -> None:
    model = ScriptedToolModel(replies=[])
    router = QuestionRouter(llm=model, prompt=load_prompt("agent_route"), tools=tools)
    assert router.route(question).tool == tool
    assert model.calls == []


@pytest.mark.parametrize(
    ("question", "reply", "tool"),
    [
        ("What is the sum of the squares of 1 to 100?", "compute", "python"),  # "chat" would answer without a tool
        ("What is the sum of the squares of 1 to 100?", "chat", None),
    ],
)
def test_a_route_the_model_decides_is_asked_once_with_a_token_cap(question: str, reply: str, tool: str | None) -> None:
    model = RecordingModel(replies=[reply], call_kwargs=[])
    router = QuestionRouter(llm=model, prompt=load_prompt("agent_route"), tools=[python])
    assert router.route(question).tool == tool and router.route(question).tool == tool
    assert len(model.calls) == 1 and model.call_kwargs[0]["max_tokens"] == ROUTE_MAX_TOKENS
    assert model.call_kwargs[0]["extra_body"] == {"max_tokens": ROUTE_MAX_TOKENS}  # llama.cpp reads this one


def test_the_writer_is_capped_and_the_answer_is_not() -> None:
    model = RecordingModel(replies=["compute", "```python\nprint(1)\n```", "It is 1."], call_kwargs=[])
    run(model, [python], "What is the sum of the squares of 1 to 100?")
    route, write, answer = model.call_kwargs
    assert route["max_tokens"] == ROUTE_MAX_TOKENS and write["max_tokens"] == WRITE_MAX_TOKENS
    assert "max_tokens" not in answer  # the answer keeps the model's own limit (streamed to the user)


def test_auto_mode_routes_once_and_the_agent_reuses_the_decision(tmp_path) -> None:
    from orchard.usecases import AnswerRequest
    from tests.fakes import scripted_orchard

    model = ScriptedToolModel(replies=["compute", "```python\nprint(sum(i*i for i in range(1, 101)))\n```", "It is 338350."])
    orchard = scripted_orchard(tmp_path, llm=model)
    result = orchard.answers.ask(AnswerRequest(question="What is the sum of the squares of 1 to 100?", mode="auto"))
    assert [c.tool for c in result.tool_calls] == ["python"] and result.answer == "It is 338350."
    routes = [c for c in model.calls if str(c[0].content).startswith("Classify")]
    assert len(routes) == 1 and len(model.calls) == 3
