"""The ``table`` and ``table_schema`` tools over CSV and XLSX files: names, answers, schema, errors, caps, suites.

Write and file-access refusal is tested in ``tests/security/test_sql_write_refusal.py``.
"""

from __future__ import annotations

import csv
import datetime as dt
import os
import time
from pathlib import Path

import openpyxl
import pytest
from langchain_tests.integration_tests import ToolsIntegrationTests
from langchain_tests.unit_tests import ToolsUnitTests

from orchard.tools.base import run_tool
from orchard.tools.table import TableSchemaTool, TableTool, describe_tables, table_name

CUSTOMERS = ["Ann", "Bob", "Cy", "Dee"]
TOWNS = ["Appleby", "Pearton", "Plumford"]


def make_files(folder: Path) -> list[Path]:
    """``orders-2024.csv`` (2000 orders), ``customers.csv`` and ``regions.xlsx`` (sheets Towns and Targets)."""
    folder.mkdir(parents=True, exist_ok=True)
    orders = folder / "orders-2024.csv"
    with orders.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "customer", "town", "amount", "Order Date"])
        for i in range(1, 2001):
            writer.writerow([i, CUSTOMERS[i % 4], TOWNS[i % 3], i * 0.5, f"2024-{i % 12 + 1:02d}-01"])
    customers = folder / "customers.csv"
    customers.write_text("name,joined\nAnn,2020-05-01\nBob,2021-07-15\nCy,2022-01-09\nDee,2023-03-30\n")
    book = openpyxl.Workbook()
    towns = book.active
    towns.title = "Towns"
    for row in [["name", "region", "note"], ["Appleby", "North", 1], ["Pearton", "South", "ferry"],
                ["Plumford", "North", dt.date(2024, 1, 1)]]:
        towns.append(row)
    targets = book.create_sheet("Targets")
    for row in [["region", "target"], ["North", 500000], ["South", 400000]]:
        targets.append(row)
    regions = folder / "regions.xlsx"
    book.save(regions)
    return [orders, customers, regions]


@pytest.fixture
def files(tmp_path: Path) -> list[Path]:
    return make_files(tmp_path / "data")


@pytest.fixture
def table(files: list[Path]) -> TableTool:
    return TableTool(paths=files)


def ask(tool: TableTool, query: str) -> str:
    result = run_tool(tool, {"query": query})
    assert result["ok"], result["error"]
    return result["output"]


def test_file_names_become_identifiers() -> None:
    taken: set[str] = set()
    assert table_name("orders-2024", taken) == "orders_2024"
    assert table_name("Orders 2024", taken) == "orders_2024_2"
    assert table_name("orders__2024!", taken) == "orders_2024_3"
    assert table_name("2024 sales", taken) == "t_2024_sales"
    assert table_name("---", taken) == "table"
    assert table_name("order", taken, reserved={"order"}) == "order_"
    assert table_name("Café crème", taken) == "caf_cr_me"


def test_each_file_and_sheet_is_a_table_and_clashes_get_a_suffix(tmp_path: Path, files: list[Path]) -> None:
    other = tmp_path / "other" / "Orders 2024.csv"
    other.parent.mkdir()
    other.write_text("a,b\n1,2\n")
    single = tmp_path / "other" / "order.xlsx"
    book = openpyxl.Workbook()
    book.active.append(["k"])
    book.active.append([7])
    book.save(single)
    tool = TableTool(paths=[*files, other, single])
    assert ask(tool, "SELECT table_name FROM information_schema.tables ORDER BY table_name").splitlines()[1:-1] == [
        "customers", "order_", "orders_2024", "orders_2024_2", "regions_targets", "regions_towns"]
    assert ask(tool, "SELECT k FROM order_") == "k\n7\n(1 row)"  # `order` is reserved in SQL


def test_joins_and_aggregation_across_csv_and_xlsx(table: TableTool) -> None:
    out = ask(table, """
        SELECT r.region, count(*) AS orders, sum(o.amount) AS total, any_value(t.target) AS target
        FROM orders_2024 o JOIN regions_towns r ON r.name = o.town JOIN regions_targets t ON t.region = r.region
        GROUP BY ALL ORDER BY total DESC""")
    assert out == "region | orders | total | target\nNorth | 1333 | 667000.0 | 500000\nSouth | 667 | 333500.0 | 400000\n(2 rows)"
    out = ask(table, """
        SELECT c.name, year(c.joined) AS since, count(*) AS orders FROM customers c JOIN orders_2024 o ON o.customer = c.name
        WHERE o."Order Date" >= DATE '2024-07-01' GROUP BY ALL ORDER BY c.name""")
    assert out.splitlines() == ["name | since | orders", "Ann | 2020 | 167", "Bob | 2021 | 166", "Cy | 2022 | 333",
                                "Dee | 2023 | 333", "(4 rows)"]


def test_schema_gives_source_row_count_typed_columns_and_three_samples(files: list[Path]) -> None:
    out = run_tool(TableSchemaTool(paths=files), {})["output"]
    lines = out.splitlines()
    assert lines[0] == ('table orders_2024 (orders-2024.csv, 2000 rows): id BIGINT, customer VARCHAR, town VARCHAR, '
                        'amount DOUBLE, "Order Date" DATE')
    assert lines[1:5] == ["  id | customer | town | amount | Order Date", "  1 | Bob | Pearton | 0.5 | 2024-02-01",
                          "  2 | Cy | Plumford | 1.0 | 2024-03-01", "  3 | Dee | Appleby | 1.5 | 2024-04-01"]
    assert "table customers (customers.csv, 4 rows): name VARCHAR, joined DATE" in lines
    assert "table regions_towns (regions.xlsx, sheet Towns, 3 rows): name VARCHAR, region VARCHAR, note VARCHAR" in lines
    assert "table regions_targets (regions.xlsx, sheet Targets, 2 rows): region VARCHAR, target BIGINT" in lines
    assert len(out) < 1200
    assert describe_tables(files) == out


def test_schema_of_one_table_and_of_an_unknown_table(files: list[Path]) -> None:
    tool = TableSchemaTool(paths=files)
    out = tool.invoke({"table": "Regions_Targets"})
    assert out.splitlines() == ["table regions_targets (regions.xlsx, sheet Targets, 2 rows): region VARCHAR, target BIGINT",
                                "  region | target", "  North | 500000", "  South | 400000"]
    assert tool.invoke({"table": "nope"}) == ("error: no table named 'nope'; tables: orders_2024, customers, "
                                             "regions_towns, regions_targets")


def test_unknown_column_and_table_errors_name_what_exists(table: TableTool) -> None:
    error = run_tool(table, {"query": "SELECT custmer FROM orders_2024"})["error"]
    assert error.startswith('error: Binder Error: Referenced column "custmer" not found in FROM clause!')
    assert error.endswith("(columns of orders_2024: id, customer, town, amount, Order Date)")
    error = run_tool(table, {"query": "SELECT * FROM orderz"})["error"]
    assert error.startswith("error: Catalog Error: Table with name orderz does not exist!")
    assert error.endswith("(tables: orders_2024, customers, regions_towns, regions_targets)")


def test_row_cap_on_a_2000_row_select(files: list[Path]) -> None:
    lines = ask(TableTool(paths=files), "SELECT id FROM orders_2024 ORDER BY id").splitlines()
    assert len(lines) == 202 and lines[1] == "1" and lines[200] == "200"
    assert lines[-1] == "(showing first 200 of more rows; add LIMIT or aggregate)"
    out = ask(TableTool(paths=files, max_rows=3), "SELECT id FROM orders_2024 ORDER BY id")
    assert out == "id\n1\n2\n3\n(showing first 3 of more rows; add LIMIT or aggregate)"


@pytest.mark.parametrize("query", [
    "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT count(*) FROM r",
    "SELECT count(*) FROM range(100000000) a, range(100000) b WHERE a.range + b.range = 3",
])
def test_a_slow_query_is_interrupted_at_the_timeout(files: list[Path], query: str) -> None:
    tool = TableTool(paths=files, timeout_s=0.5)
    ask(tool, "SELECT 1")  # load the files first: the timeout is about the query
    started = time.monotonic()
    result = run_tool(tool, {"query": query})
    elapsed = time.monotonic() - started
    assert result["error"] == "error: the query took longer than 0.5s and was stopped; filter, aggregate or add LIMIT"
    assert 0.4 < elapsed < 3
    assert ask(tool, "SELECT count(*) AS n FROM customers") == "n\n4\n(1 row)"


def test_a_changed_file_is_loaded_again(files: list[Path]) -> None:
    tool = TableTool(paths=files)
    assert ask(tool, "SELECT count(*) AS n FROM customers") == "n\n4\n(1 row)"
    customers = files[1]
    customers.write_text(customers.read_text() + "Eve,2024-02-02\n")
    os.utime(customers, ns=(time.time_ns(), time.time_ns() + 10**9))
    assert ask(tool, "SELECT count(*) AS n FROM customers") == "n\n5\n(1 row)"


def test_run_tool_shapes_and_bad_paths(tmp_path: Path, table: TableTool) -> None:
    assert run_tool(table, {"query": "SELECT max(amount) AS top FROM orders_2024"}) == {
        "ok": True, "output": "top\n1000.0\n(1 row)", "error": None}
    assert run_tool(table, {"query": "DROP TABLE customers"}) == {
        "ok": False, "output": "", "error": "refused: only a single SELECT statement is allowed; this is a DROP TABLE"}
    assert run_tool(table, {})["error"].startswith("error: bad arguments:")
    assert table.invoke({"query": "SELECT nope FROM customers"}).startswith("error: Binder Error")
    with pytest.raises(ValueError, match="no file at"):
        TableTool(paths=[tmp_path / "missing.csv"])
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ValueError, match="only CSV, TSV and XLSX"):
        TableTool(paths=[tmp_path / "notes.txt"])


def test_the_two_tools_can_share_one_database_and_close_frees_it(files: list[Path]) -> None:
    from orchard.tools.table import TableDatabase

    database = TableDatabase(files)
    table, schema = TableTool(paths=files, database=database), TableSchemaTool(paths=files, database=database)
    assert table.db is schema.db is database and not database.loaded  # loaded on first use
    assert "table customers" in schema.invoke({"table": "customers"})
    assert database.loaded
    table.close()
    assert not database.loaded
    assert ask(table, "SELECT count(*) AS n FROM customers") == "n\n4\n(1 row)"  # loaded again when used


def test_a_file_rewritten_within_one_timestamp_tick_is_loaded_again(files: list[Path]) -> None:
    tool = TableTool(paths=files)
    assert ask(tool, "SELECT name FROM customers ORDER BY joined LIMIT 1") == "name\nAnn\n(1 row)"
    customers = files[1]
    stamp = customers.stat().st_mtime_ns
    customers.write_text(customers.read_text().replace("Ann,", "Amy,"))  # the same size
    os.utime(customers, ns=(stamp, stamp))  # and the same mtime
    assert ask(tool, "SELECT name FROM customers ORDER BY joined LIMIT 1") == "name\nAmy\n(1 row)"


# --- LangChain's standard tool suites --------------------------------------------------------------


class DataFiles:
    @pytest.fixture(autouse=True)
    def _files(self, tmp_path: Path) -> None:
        self.paths = [str(p) for p in make_files(tmp_path / "data")]


class TableToolParams(DataFiles):
    @property
    def tool_constructor(self) -> type[TableTool]:
        return TableTool

    @property
    def tool_constructor_params(self) -> dict:
        return {"paths": self.paths, "max_rows": 50}

    @property
    def tool_invoke_params_example(self) -> dict:
        return {"query": "SELECT town, sum(amount) AS total FROM orders_2024 GROUP BY town ORDER BY total DESC"}


class TableSchemaToolParams(DataFiles):
    @property
    def tool_constructor(self) -> type[TableSchemaTool]:
        return TableSchemaTool

    @property
    def tool_constructor_params(self) -> dict:
        return {"paths": self.paths}

    @property
    def tool_invoke_params_example(self) -> dict:
        return {"table": "customers"}


class TestTableToolUnit(TableToolParams, ToolsUnitTests):
    pass


class TestTableToolIntegration(TableToolParams, ToolsIntegrationTests):
    pass


class TestTableSchemaToolUnit(TableSchemaToolParams, ToolsUnitTests):
    pass


class TestTableSchemaToolIntegration(TableSchemaToolParams, ToolsIntegrationTests):
    pass
