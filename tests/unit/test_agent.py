"""The agent's logic with a scripted tool-calling model: routing, the written call, retry, answer."""

from __future__ import annotations

from typing import Any

import pytest
from langchain_core.messages import HumanMessage, SystemMessage
from langchain_core.tools import BaseTool, tool
from pydantic import BaseModel, Field

from orchard.agents.agent import agent_result, build_agent
from orchard.agents.router import QuestionRouter, parse_kind
from orchard.agents.writers import extract_code
from orchard.prompts import load_prompt
from orchard.tools.base import ToolFailed, error_text
from tests.fakes import ScriptedToolModel


class _Query(BaseModel):
    query: str


class FakeSQL(BaseTool):
    """A data tool with a schema: answers one known query, fails on anything else."""

    name: str = "sql"
    description: str = "Run one SELECT."
    args_schema: type[BaseModel] = _Query
    handle_tool_error: Any = error_text
    seen: list[str] = Field(default_factory=list)

    def vocabulary(self) -> list[str]:
        return ["orders", "customer_id", "amount", "towns", "population", "Lisbon"]

    def table_names(self) -> list[str]:
        return ["orders", "towns"]

    def describe(self) -> str:
        return "orders(id, customer_id, amount)\ntowns(name, population)"

    def _run(self, query: str) -> str:
        self.seen.append(query)
        if query == "SELECT COUNT(*) FROM orders":
            return "COUNT(*)\n42"
        raise ToolFailed("no such column: total. Columns of orders: id, customer_id, amount")


@tool
def python(code: str) -> str:
    """Run a Python program and return what it prints."""
    return "338350" if "range(1, 101)" in code else ""


@tool(response_format="content_and_artifact")
def search_docs(query: str) -> tuple[str, list[dict[str, Any]]]:
    """Search the documents."""
    return "[1] (guide.md — Pruning)\nPrune in late winter.", [{"n": 1, "source": "guide.md", "text": "Prune in late winter."}]


def run(model: ScriptedToolModel, tools: list[Any], question: str) -> dict[str, Any]:
    agent = build_agent(llm=model, tools=tools)
    return agent_result(agent.invoke({"messages": [HumanMessage(question)]}))


def test_a_computation_is_routed_to_python_with_the_program_the_model_wrote() -> None:
    model = ScriptedToolModel(replies=["compute", "```python\nprint(sum(i*i for i in range(1, 101)))\n```", "The sum is 338350."])
    result = run(model, [python, FakeSQL(), search_docs], "What is the sum of the squares from 1 to 100?")
    assert result["answer"] == "The sum is 338350."
    assert result["tool_calls"] == [
        {"tool": "python", "input": {"code": "print(sum(i*i for i in range(1, 101)))"}, "output": "338350", "ok": True}
    ]
    assert result["route"]["tool"] == "python"
    # The answering model saw the program (its own reply, in the writer's conversation) and its output.
    final = model.calls[-1]
    assert isinstance(final[0], SystemMessage) and final[0].content == model.calls[1][0].content  # the writer's
    assert "range(1, 101)" in final[-2].content and "Result:\n338350\n" in final[-1].content
    assert "Question: What is the sum of the squares from 1 to 100?" in final[-1].content


def test_a_question_naming_two_things_of_the_schema_goes_to_sql_without_asking_the_model() -> None:
    sql = FakeSQL(seen=[])
    model = ScriptedToolModel(replies=["```sql\nSELECT COUNT(*) FROM orders\n```", "There are 42 orders."])
    result = run(model, [python, sql, search_docs], "How many orders are there in total, by amount?")
    assert result["route"]["tool"] == "sql" and "amount" in result["route"]["reason"]
    assert sql.seen == ["SELECT COUNT(*) FROM orders"]
    # Two model calls: the SQL writer (given the schema) and the answer; no routing call.
    assert len(model.calls) == 2 and "towns(name, population)" in model.calls[0][-1].content


def test_a_failed_call_is_rewritten_once_with_the_error_then_answered() -> None:
    sql = FakeSQL(seen=[])
    model = ScriptedToolModel(
        replies=["data", "```sql\nSELECT MAX(total) FROM orders\n```", "```sql\nSELECT COUNT(*) FROM orders\n```", "42 orders."]
    )
    result = run(model, [sql], "How many orders?")
    assert [c["ok"] for c in result["tool_calls"]] == [False, True]
    assert result["tool_calls"][0]["output"].startswith("error: no such column: total")
    retry_prompt = model.calls[2]
    assert "no such column: total" in retry_prompt[-1].content and "MAX(total)" in retry_prompt[-2].content
    assert result["answer"] == "42 orders."


def test_after_the_last_attempt_fails_the_answer_is_written_from_the_error() -> None:
    sql = FakeSQL(seen=[])
    model = ScriptedToolModel(replies=["data", "```sql\nSELECT x\n```", "```sql\nSELECT y\n```", "The query failed."])
    result = run(model, [sql], "How many orders?")
    assert len(result["tool_calls"]) == 2 and not any(c["ok"] for c in result["tool_calls"])
    assert "no such column" in model.calls[-1][-1].content


def test_documents_questions_search_with_the_question_and_return_sources() -> None:
    model = ScriptedToolModel(replies=["Prune in late winter [1]."])
    result = run(model, [python, search_docs], "When do I prune?")
    assert result["tool_calls"][0]["input"] == {"query": "When do I prune?"}
    assert result["sources"] == [{"n": 1, "source": "guide.md", "text": "Prune in late winter."}]
    assert len(model.calls) == 1  # nothing to compute, documents match: no routing call, no query to write


def test_an_answer_that_repeats_a_passage_label_is_replaced_by_a_quote_of_the_passage() -> None:
    # Measured on the agent task set: "The command `samples/orchard-guide.md — Adding your documents` is used".
    model = ScriptedToolModel(replies=["You prune as the `guide.md — Pruning` says."])
    result = run(model, [python, search_docs], "When do I prune?")
    assert result["answer"] == "“Prune in late winter” [1]"


def test_small_talk_is_answered_without_a_tool() -> None:
    model = ScriptedToolModel(replies=["chat", "Hello! Ask me about your data."])
    result = run(model, [python, FakeSQL()], "hi!")
    assert result["tool_calls"] == [] and result["answer"] == "Hello! Ask me about your data."
    assert result["route"]["tool"] is None


def test_auto_tool_calling_lets_the_model_call_tools_itself() -> None:
    model = ScriptedToolModel(replies=[{"tool": "python", "args": {"code": "print(sum(i*i for i in range(1, 101)))"}}, "338350"])
    agent = build_agent(llm=model, tools=[python], tool_calling="auto")
    result = agent_result(agent.invoke({"messages": [HumanMessage("sum of squares to 100?")]}))
    assert result["answer"] == "338350" and result["tool_calls"][0]["output"] == "338350"
    assert model.bound[0]["tools"] == ["python"]


def test_two_searches_number_their_sources_on_the_same_way_in_stream_and_invoke() -> None:
    """Each sources chunk carries only the new records, so chunks add up (invoke) to the list."""
    from orchard.agents.agent import build_agent_chain

    def chain() -> Any:
        model = ScriptedToolModel(replies=[{"tool": "search_docs", "args": {"query": "pruning"}},
                                           {"tool": "search_docs", "args": {"query": "winter"}}, "Prune in late winter [1][2]."])  # fmt: skip
        return build_agent_chain(build_agent(llm=model, tools=[search_docs], tool_calling="auto"))

    streamed = [s for chunk in chain().stream({"question": "When?"}) for s in chunk.get("sources", [])]
    invoked = chain().invoke({"question": "When?"})["sources"]
    assert [s["n"] for s in streamed] == [s["n"] for s in invoked] == [1, 2]


def test_unknown_tool_calling_is_refused() -> None:
    with pytest.raises(ValueError, match="routed, auto"):
        build_agent(llm=ScriptedToolModel(), tools=[], tool_calling="magic")


@pytest.mark.parametrize(
    ("reply", "kind"), [("compute", "compute"), ("Data.", "data"), (" documents\n", "documents"), ("I think chat", "chat"), ("sql", None)]
)
def test_the_kind_is_read_from_the_reply(reply: str, kind: str | None) -> None:
    assert parse_kind(reply) == kind


@pytest.mark.parametrize(
    ("proposed", "question", "tool"),
    [
        ("compute", "What is 17% of 2340?", "python"),
        ("data", "How do I prune a young apple tree?", "search_docs"),  # names nothing in the data
        ("documents", "Which town has the largest population?", "sql"),  # names two things of it
        ("documents", "What does the guide say about Lisbon?", "search_docs"),  # one is not enough
        ("chat", "good morning", "search_docs"),  # without a relevance measure, documents may match anything
        ("nonsense", "What is 3 * 4?", "python"),  # arithmetic in the question
        ("compute", "Is 97 a prime number?", "python"),  # one number and a word of arithmetic
        ("compute", "How many kilograms of Bramley were harvested in 2025?", "search_docs"),  # a lookup, not a sum
        ("compute", "Tell me a joke", "search_docs"),  # nothing to compute
    ],
)
def test_routing_rules(proposed: str, question: str, tool: str | None) -> None:
    router = QuestionRouter(llm=ScriptedToolModel(replies=[proposed]), prompt=load_prompt("agent_route"), tools=[python, FakeSQL(), search_docs])
    assert router.route(question).tool == tool


@pytest.mark.parametrize(
    ("kind", "relevance", "tool"),
    [("chat", 0.6, "search_docs"), ("chat", 0.1, None), ("compute", 0.1, "search_docs"), ("data", 0.1, "search_docs")],
)
def test_small_talk_goes_to_the_documents_only_when_they_match(kind: str, relevance: float, tool: str | None) -> None:
    router = QuestionRouter(
        llm=ScriptedToolModel(replies=[kind]), prompt=load_prompt("agent_route"), tools=[python, search_docs],
        relevance=lambda q: relevance, min_relevance=0.3,
    )  # fmt: skip
    assert router.route("Tell me about it").tool == tool


def test_the_route_prompt_lists_the_attached_tables() -> None:
    model = ScriptedToolModel(replies=["data"])
    QuestionRouter(llm=model, prompt=load_prompt("agent_route"), tools=[FakeSQL()]).route("how many?")
    assert "tables: orders, towns" in model.calls[0][0].content


@pytest.mark.parametrize(
    ("reply", "code"),
    [
        ("```python\nprint(1)\n```", "print(1)"),
        ("Here:\n```sql\nSELECT 1\n```\nDone.", "SELECT 1"),
        ("```\nprint(2)\n```", "print(2)"),
        ("```python\nprint(3)", "print(3)"),  # cut off by the token limit
        ("print(4)", "print(4)"),
    ],
)
def test_code_is_extracted_from_the_reply(reply: str, code: str) -> None:
    assert extract_code(reply, "python") == code


@pytest.mark.parametrize(
    ("tool", "output", "answer", "kept"),
    [
        ("python", "1307674368000", "15! is 1,307,674,368,000.", True),
        ("python", "1307674368000", "The factorial of 15 is not defined in Python.", False),
        ("sql", "population\n67000\n(1 row)", "The population of Faro is 670,000.", False),
        ("sql", "population\n67000\n(1 row)", "Faro has 67000 people.", True),
        ("sql", "SUM(amount)\n467.0\n(1 row)", "The total is 467.", True),
        ("table", "name\nLisbon\n(1 row)", "lisbon is the largest.", True),
        ("sql", "name | n\nLisbon | 3\n(1 row)", "Whatever.", True),  # not a single value: not checked
        ("python", "1\n2", "Whatever.", True),
    ],
)
def test_an_answer_must_state_a_single_result(tool: str, output: str, answer: str, kept: bool) -> None:
    from orchard.agents.checks import checked_answer

    text, was_kept = checked_answer(answer, tool=tool, output=output, ok=True)
    assert was_kept is kept
    if not kept:
        assert text == f"The {tool} result is {output.splitlines()[1] if tool != 'python' else output}."


def test_a_wrong_number_in_the_answer_is_replaced_in_the_agent_state() -> None:
    model = ScriptedToolModel(replies=["compute", "```python\nprint(sum(i*i for i in range(1, 101)))\n```", "It is 338,000."])
    result = run(model, [python], "What is the sum of the squares from 1 to 100?")
    assert result["answer"] == "The python result is 338350."


@pytest.mark.parametrize(
    ("query", "linked"),
    [
        ("SELECT COUNT(*) FROM towns WHERE name = 'Lisboa'", "SELECT COUNT(*) FROM towns WHERE name = 'Lisbon'"),
        ("SELECT COUNT(*) FROM towns WHERE name = 'Lisbon'", "SELECT COUNT(*) FROM towns WHERE name = 'Lisbon'"),
        ("SELECT COUNT(*) FROM towns WHERE name LIKE 'Lis%'", "SELECT COUNT(*) FROM towns WHERE name LIKE 'Lis%'"),
        ("SELECT COUNT(*) FROM towns WHERE name = 'Oslo'", "SELECT COUNT(*) FROM towns WHERE name = 'Oslo'"),  # nothing close
        ("not sql at all (", "not sql at all ("),
    ],
)
def test_string_literals_are_linked_to_stored_values(query: str, linked: str) -> None:
    from orchard.agents.writers import link_values

    assert link_values(query, "How many customers live in Lisbon?", {"Lisbon", "Porto", "Faro"}) == linked


def test_a_which_question_answered_by_an_aggregate_alone_is_sent_back() -> None:
    from orchard.agents.writers import lint_query

    assert lint_query("Which customer spent the most?", "SELECT SUM(amount) FROM orders GROUP BY customer_id LIMIT 1")
    assert lint_query("Which customer spent the most?", "SELECT name, SUM(amount) AS s FROM orders GROUP BY name") is None
    assert lint_query("How much was spent?", "SELECT SUM(amount) FROM orders") is None
    assert "COUNT" in lint_query("How many orders were placed?", "SELECT SUM(amount) FROM orders")
    assert lint_query("How many kg were harvested?", "SELECT SUM(kg) FROM harvest") is None
    assert lint_query("How many orders were placed?", "SELECT COUNT(*) FROM orders") is None


def test_the_writer_rewrites_a_query_that_cannot_answer_and_links_its_values() -> None:
    sql = FakeSQL(seen=[])
    model = ScriptedToolModel(
        replies=[
            "```sql\nSELECT SUM(amount) FROM orders\n```",  # the question names orders and Lisbon: no routing call  # names no customer: sent back before running
            "```sql\nSELECT name FROM towns WHERE name = 'Lisboa'\n```",
            "```sql\nSELECT COUNT(*) FROM orders\n```",  # FakeSQL fails the one above: the retry
            "Lisbon.",
        ]
    )
    run(model, [sql], "Which town in the orders is Lisbon?")
    assert "select its name" in model.calls[1][-1].content
    assert sql.seen[0] == "SELECT name FROM towns WHERE name = 'Lisbon'"
