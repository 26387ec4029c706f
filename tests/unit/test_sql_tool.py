"""The ``sql`` and ``sql_schema`` tools on a small SQLite shop: answers, schema, errors, caps, LangChain's suites.

Write refusal is tested in ``tests/security/test_sql_write_refusal.py``.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest
from langchain_core.messages import ToolCall
from langchain_tests.integration_tests import ToolsIntegrationTests
from langchain_tests.unit_tests import ToolsUnitTests

from orchard.tools.base import ToolFailed, run_tool
from orchard.tools.sql import SQLSchemaTool, SQLTool, describe_database

SHOP = """
BEGIN;
CREATE TABLE towns(id INTEGER PRIMARY KEY, name TEXT NOT NULL, region TEXT);
CREATE TABLE customers(id INTEGER PRIMARY KEY, name TEXT NOT NULL, town_id INTEGER REFERENCES towns(id));
CREATE TABLE orders(id INTEGER PRIMARY KEY, customer_id INTEGER NOT NULL REFERENCES customers(id),
                    amount REAL, ordered_on TEXT, note TEXT);
INSERT INTO towns VALUES (1, 'Appleby', 'North'), (2, 'Pearton', 'South'), (3, 'Plumford', 'North'), (4, 'Quince', 'East');
INSERT INTO customers VALUES (1, 'Ann', 1), (2, 'Bob', 2), (3, 'Cy', 3), (4, 'Dee', 1), (5, 'Eve', NULL);
INSERT INTO orders VALUES
  (1, 1, 10.5, '2024-01-03', NULL), (2, 1, 4.5, '2024-02-01', 'gift'), (3, 2, 20, '2024-02-11', NULL),
  (4, 3, 7.25, '2024-03-05', NULL), (5, 4, 3, '2024-03-09', NULL), (6, 5, 1.1, '2024-03-10', NULL);
CREATE INDEX orders_by_customer ON orders(customer_id);
CREATE VIEW customer_totals AS SELECT customer_id, sum(amount) AS total FROM orders GROUP BY customer_id;
COMMIT;
"""
ENDLESS = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c"
COUNT_TO_2000 = "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 2000) SELECT x FROM n"


def make_db(path: Path) -> Path:
    """The shop database (towns, customers, orders, a view) at ``path``; used by the security tests too."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path)
    conn.executescript(SHOP)  # one transaction: one fsync
    conn.close()
    return path


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{make_db(tmp_path / 'db' / 'shop.db')}"


@pytest.fixture
def sql(url: str) -> SQLTool:
    return SQLTool(url=url)


def ask(tool: SQLTool, query: str) -> str:
    result = run_tool(tool, {"query": query})
    assert result["ok"], result["error"]
    return result["output"]


def test_join_and_aggregation_give_the_right_totals(sql: SQLTool) -> None:
    out = ask(sql, """
        SELECT t.region, count(*) AS orders, sum(o.amount) AS total
        FROM orders o JOIN customers c ON c.id = o.customer_id JOIN towns t ON t.id = c.town_id
        GROUP BY t.region ORDER BY total DESC""")
    assert out == "region | orders | total\nNorth | 4 | 25.25\nSouth | 1 | 20.0\n(2 rows)"


def test_cte_union_subquery_and_left_join(sql: SQLTool) -> None:
    out = ask(sql, """
        WITH big AS (SELECT customer_id FROM orders WHERE amount > 5)
        SELECT name FROM customers WHERE id IN (SELECT customer_id FROM big)
        UNION SELECT name FROM towns WHERE region = 'East' ORDER BY 1""")
    assert out.splitlines() == ["name", "Ann", "Bob", "Cy", "Quince", "(4 rows)"]
    out = ask(sql, "SELECT t.name, count(c.id) AS n FROM towns t LEFT JOIN customers c ON c.town_id = t.id "
                   "GROUP BY t.id ORDER BY n DESC, t.name LIMIT 2")
    assert out.splitlines() == ["name | n", "Appleby | 2", "Pearton | 1", "(2 rows)"]
    assert ask(sql, "SELECT total FROM customer_totals WHERE customer_id = 1") == "total\n15.0\n(1 row)"


def test_values_are_rendered_compactly(url: str) -> None:
    tool = SQLTool(url=url)
    out = ask(tool, "SELECT NULL AS a, 0.1 + 0.2 AS b, x'00ff' AS c, 'line one' || char(10) || 'two' AS d, "
                    "substr(printf('%.200c', 'x'), 1, 200) AS e, '' AS f")
    header, row, _ = out.splitlines()
    assert header == "a | b | c | d | e | f"
    a, b, c, d, e, f = row.split(" | ")
    assert (a, b, c, d, f) == ("NULL", "0.3", "<2 bytes>", "line one two", "")
    assert len(e) == 60 and e.endswith("…")
    assert ask(tool, "SELECT name FROM towns WHERE 0") == "name\n(no rows)"


def test_schema_lists_tables_columns_keys_and_three_sample_rows(url: str) -> None:
    out = run_tool(SQLSchemaTool(url=url), {})["output"]
    lines = out.splitlines()
    assert "table towns: id INTEGER primary key, name TEXT, region TEXT" in lines
    assert "table customers: id INTEGER primary key, name TEXT, town_id INTEGER references towns.id" in lines
    assert ("table orders: id INTEGER primary key, customer_id INTEGER references customers.id, amount REAL, "
            "ordered_on TEXT, note TEXT") in lines
    assert "view customer_totals: customer_id INTEGER, total" in lines
    towns = lines.index("table towns: id INTEGER primary key, name TEXT, region TEXT")
    assert lines[towns + 1: towns + 5] == ["  id | name | region", "  1 | Appleby | North", "  2 | Pearton | South",
                                          "  3 | Plumford | North"]
    assert "Quince" not in out  # three samples, not the whole table
    assert len(out) < 1200  # a 0.5B model reads this
    assert describe_database(url) == out


def test_schema_of_one_table_and_of_an_unknown_table(url: str) -> None:
    tool = SQLSchemaTool(url=url)
    out = tool.invoke({"table": "Orders"})
    assert out.startswith("table orders: ") and "towns" not in out
    assert tool.invoke({"table": "nope"}) == "error: no table named 'nope'; tables: customers, orders, towns, customer_totals"


def test_unknown_column_and_table_errors_name_what_exists(sql: SQLTool) -> None:
    result = run_tool(sql, {"query": "SELECT nme FROM customers"})
    assert result == {"ok": False, "output": "",
                      "error": "error: no such column: nme (columns of customers: id, name, town_id)"}
    result = run_tool(sql, {"query": "SELECT * FROM custmers"})
    assert result["error"] == "error: no such table: custmers (tables: customers, orders, towns, customer_totals)"
    result = run_tool(sql, {"query": "SELECT o.amont FROM orders o JOIN towns t ON t.id = o.id"})
    assert "columns of orders: id, customer_id, amount, ordered_on, note; columns of towns: id, name, region" in result["error"]
    assert run_tool(sql, {"query": "SELECT nosuchfunc(1)"})["error"] == "error: no such function: nosuchfunc"


def test_unparseable_sql_is_refused_with_the_position(sql: SQLTool) -> None:
    error = run_tool(sql, {"query": "SELECT * FROM orders WHERE ("})["error"]
    assert error.startswith("refused: only a single SELECT statement is allowed; this could not be parsed as sqlite SQL")
    assert "line 1" in error


def test_row_cap_on_a_2000_row_select(url: str) -> None:
    out = ask(SQLTool(url=url), COUNT_TO_2000)
    lines = out.splitlines()
    assert lines[0] == "x" and lines[1] == "1" and lines[200] == "200"
    assert lines[201:] == ["(showing first 200 of more rows; add LIMIT or aggregate)"]
    out = ask(SQLTool(url=url, max_rows=5), COUNT_TO_2000)
    assert out.splitlines()[-2:] == ["5", "(showing first 5 of more rows; add LIMIT or aggregate)"]
    assert ask(SQLTool(url=url, max_rows=2000), COUNT_TO_2000).endswith("2000\n(2000 rows)")


def test_a_slow_query_is_stopped_at_the_timeout(url: str) -> None:
    tool = SQLTool(url=url, timeout_s=0.5)
    started = time.monotonic()
    result = run_tool(tool, {"query": ENDLESS})
    elapsed = time.monotonic() - started
    assert result["error"] == "error: the query took longer than 0.5s and was stopped; filter, aggregate or add LIMIT"
    assert 0.4 < elapsed < 3
    assert ask(tool, "SELECT count(*) AS n FROM orders") == "n\n6\n(1 row)"  # the connection is fine afterwards


def test_run_tool_and_agent_shapes(sql: SQLTool) -> None:
    assert run_tool(sql, {"query": "SELECT 1 AS one"}) == {"ok": True, "output": "one\n1\n(1 row)", "error": None}
    refused = run_tool(sql, {"query": "DELETE FROM orders"})
    assert refused == {"ok": False, "output": "",
                       "error": "refused: only a single SELECT statement is allowed; this is a DELETE"}
    bad = run_tool(sql, {"querry": "SELECT 1"})
    assert bad["ok"] is False and bad["error"].startswith("error: bad arguments:")
    # inside an agent the same failures come back as text, never as an exception
    assert sql.invoke({"query": "DROP TABLE orders"}) == "refused: only a single SELECT statement is allowed; this is a DROP TABLE"
    message = sql.invoke(ToolCall(name="sql", args={"query": "SELECT nme FROM towns"}, id="1", type="tool_call"))
    assert message.status == "error" and message.content.startswith("error: no such column: nme")
    with pytest.raises(ToolFailed):  # the strict form raises (what run_tool catches)
        sql.model_copy(update={"handle_tool_error": False}).invoke({"query": "SELECT nme FROM towns"})


def test_in_memory_database_and_bad_urls(tmp_path: Path) -> None:
    assert ask(SQLTool(url="sqlite://"), "SELECT 1 + 1 AS two") == "two\n2\n(1 row)"
    assert SQLSchemaTool(url="sqlite:///:memory:").invoke({}) == "The database has no tables."
    with pytest.raises(ValueError, match="no SQLite database at"):
        SQLTool(url=f"sqlite:///{tmp_path / 'missing.db'}")
    assert not (tmp_path / "missing.db").exists()
    with pytest.raises(ValueError, match="no read-only session is known for oracle"):
        SQLTool(url="oracle://scott:tiger@localhost/db")


def test_the_uri_form_of_the_url_is_accepted(tmp_path: Path) -> None:
    db = make_db(tmp_path / "shop.db")
    tool = SQLTool(url=f"sqlite+pysqlite:///file:{db}?mode=rw&uri=true")  # opened read-only whatever it says
    assert ask(tool, "SELECT count(*) AS n FROM towns") == "n\n4\n(1 row)"
    assert run_tool(tool, {"query": "DELETE FROM towns"})["ok"] is False


def test_the_two_tools_can_share_one_database_and_close_releases_its_connections(url: str) -> None:
    import sqlalchemy as sa

    from orchard.tools.sql import ReadOnlyDatabase

    database = ReadOnlyDatabase(url)
    sql, schema = SQLTool(url=url, database=database), SQLSchemaTool(url=url, database=database)
    assert sql.db is schema.db is database
    assert "database" not in sql.model_dump()  # not part of the tool's serialised fields
    closed: list[int] = []
    sa.event.listen(database.engine, "close", lambda *_: closed.append(1))
    assert ask(sql, "SELECT count(*) AS n FROM towns") == "n\n4\n(1 row)"
    sql.close()
    assert closed == [1]
    assert "table towns" in schema.invoke({})  # a closed tool opens a new connection when used again


# --- LangChain's standard tool suites --------------------------------------------------------------


class ShopDatabase:
    @pytest.fixture(autouse=True)
    def _shop(self, tmp_path: Path) -> None:
        self.url = f"sqlite:///{make_db(tmp_path / 'shop.db')}"


class SQLToolParams(ShopDatabase):
    @property
    def tool_constructor(self) -> type[SQLTool]:
        return SQLTool

    @property
    def tool_constructor_params(self) -> dict:
        return {"url": self.url, "max_rows": 50}

    @property
    def tool_invoke_params_example(self) -> dict:
        return {"query": "SELECT name, region FROM towns ORDER BY name"}


class SQLSchemaToolParams(ShopDatabase):
    @property
    def tool_constructor(self) -> type[SQLSchemaTool]:
        return SQLSchemaTool

    @property
    def tool_constructor_params(self) -> dict:
        return {"url": self.url}

    @property
    def tool_invoke_params_example(self) -> dict:
        return {"table": "orders"}


class TestSQLToolUnit(SQLToolParams, ToolsUnitTests):
    pass


class TestSQLToolIntegration(SQLToolParams, ToolsIntegrationTests):
    pass


class TestSQLSchemaToolUnit(SQLSchemaToolParams, ToolsUnitTests):
    pass


class TestSQLSchemaToolIntegration(SQLSchemaToolParams, ToolsIntegrationTests):
    pass
