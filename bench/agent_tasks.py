"""The agent task set: data it runs on, and tasks with their expected tool and answer.

Five kinds, five tasks each (issue 3): ``math`` (python), ``sql`` (joins over a small shop
database), ``csv`` (aggregation over a harvest file), ``documents`` (the sample documents), and
``mixed`` (every tool attached at once, questions of all kinds worded differently). A task passes
when the agent called the expected tool and the answer contains the expected value.

Used by ``bench/run.py agents`` (the whole set, recorded in RESULTS.md) and by
``tests/live/test_live_agent.py`` (a small subset in ``make test``).
"""

from __future__ import annotations

import csv
import sqlite3
from dataclasses import dataclass
from pathlib import Path

TOWNS = [("Lisbon", 545000), ("Porto", 232000), ("Braga", 193000), ("Faro", 67000), ("Évora", 53000)]
CUSTOMERS = [  # name, town
    ("Ana Costa", "Lisbon"), ("Bruno Dias", "Porto"), ("Carla Reis", "Lisbon"), ("Duarte Lima", "Faro"),
    ("Eva Matos", "Braga"), ("Filipe Nunes", "Lisbon"), ("Gina Sousa", "Porto"), ("Hugo Alves", "Évora"),
]  # fmt: skip
ORDERS = [  # customer, amount, date
    ("Ana Costa", 120.0, "2024-01-05"), ("Ana Costa", 35.5, "2024-02-11"), ("Bruno Dias", 310.0, "2024-01-20"),
    ("Carla Reis", 42.0, "2024-03-02"), ("Carla Reis", 18.0, "2024-03-15"), ("Duarte Lima", 75.0, "2024-02-01"),
    ("Eva Matos", 220.0, "2024-04-09"), ("Filipe Nunes", 64.0, "2024-04-18"), ("Gina Sousa", 99.0, "2024-05-03"),
    ("Ana Costa", 410.0, "2024-05-21"), ("Hugo Alves", 15.0, "2024-06-02"), ("Bruno Dias", 58.0, "2024-06-14"),
]  # fmt: skip
HARVEST = [  # variety, year, kg, trees
    ("Gala", 2022, 820, 10), ("Gala", 2023, 910, 10), ("Gala", 2024, 760, 11),
    ("Bramley", 2022, 1200, 8), ("Bramley", 2023, 1340, 8), ("Bramley", 2024, 1105, 8),
    ("Discovery", 2022, 430, 6), ("Discovery", 2023, 515, 6), ("Discovery", 2024, 480, 6),
    ("Egremont Russet", 2022, 300, 4), ("Egremont Russet", 2023, 352, 4), ("Egremont Russet", 2024, 298, 5),
]  # fmt: skip


def make_shop_db(path: Path) -> Path:
    """A small shop database: towns, customers (-> towns), orders (-> customers)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    con = sqlite3.connect(path)
    con.executescript(
        """
        CREATE TABLE towns (id INTEGER PRIMARY KEY, name TEXT NOT NULL, population INTEGER);
        CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT NOT NULL, town_id INTEGER REFERENCES towns(id));
        CREATE TABLE orders (id INTEGER PRIMARY KEY, customer_id INTEGER REFERENCES customers(id), amount REAL, ordered_on TEXT);
        """
    )
    con.executemany("INSERT INTO towns (name, population) VALUES (?, ?)", TOWNS)
    town_id = {name: i for i, (name, _) in enumerate(TOWNS, start=1)}
    con.executemany("INSERT INTO customers (name, town_id) VALUES (?, ?)", [(n, town_id[t]) for n, t in CUSTOMERS])
    customer_id = {name: i for i, (name, _) in enumerate(CUSTOMERS, start=1)}
    con.executemany(
        "INSERT INTO orders (customer_id, amount, ordered_on) VALUES (?, ?, ?)", [(customer_id[c], a, d) for c, a, d in ORDERS]
    )
    con.commit()
    con.close()
    return path


def make_harvest_csv(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["variety", "year", "kg", "trees"])
        writer.writerows(HARVEST)
    return path


@dataclass(frozen=True)
class Task:
    kind: str
    question: str
    tool: str | None  # the tool that should answer (None: no tool)
    expected: tuple[str, ...]  # the answer must contain one of these (case-insensitive)

    def answer_ok(self, answer: str) -> bool:
        """Numbers compare as numbers (338,350 = 338350; 670,000 is not 67000), text as a phrase."""
        from orchard.agents.checks import states_value

        return any(states_value(answer, expected) for expected in self.expected)


def _lisbon_orders() -> int:
    lisbon = {n for n, t in CUSTOMERS if t == "Lisbon"}
    return sum(1 for c, _, _ in ORDERS if c in lisbon)


TASKS: tuple[Task, ...] = (
    Task("math", "What is the sum of the squares of the numbers from 1 to 100?", "python", ("338350",)),
    Task("math", "What is 17% of 2340?", "python", ("397.8",)),
    Task("math", "How many days are there from 2024-03-01 to 2024-12-25?", "python", ("299",)),
    Task("math", "What is 2 to the power of 20?", "python", ("1048576",)),
    Task("math", "What is the average of 12, 15, 22 and 31?", "python", ("20",)),
    Task("sql", "How many orders came from customers in Lisbon?", "sql", (str(_lisbon_orders()),)),
    Task("sql", "Which town has the largest population?", "sql", ("Lisbon",)),
    Task("sql", "Which customer spent the most money in total on orders?", "sql", ("Ana Costa",)),
    Task("sql", "What is the total amount of all orders from customers in Porto?", "sql", ("467",)),
    Task("sql", "How many customers live in Lisbon?", "sql", ("3",)),
    Task("csv", "What was the total harvest in kg in 2023?", "table", ("3117",)),
    Task("csv", "Which variety had the highest total harvest in kg over all years?", "table", ("Bramley",)),
    Task("csv", "How many kg of Gala were harvested in 2024?", "table", ("760",)),
    Task("csv", "In which year was the total harvest largest?", "table", ("2023",)),
    Task("csv", "How many trees of Discovery are there in 2024?", "table", ("6",)),
    Task("documents", "When are the volunteer work days at the orchard?", "search_docs", ("first Saturday",)),
    Task("documents", "At what temperature is the bottled juice pasteurised?", "search_docs", ("75",)),
    Task("documents", "Which command adds my documents to Orchard?", "search_docs", ("orchard ingest",)),
    Task("documents", "Who is the orchard coordinator?", "search_docs", ("Maya Okafor",)),
    Task("documents", "Which apple variety is a triploid?", "search_docs", ("Bramley",)),
    Task("mixed", "Compute 15 factorial.", "python", ("1307674368000",)),
    Task("mixed", "What is the population of Faro?", "sql", ("67000",)),
    Task("mixed", "What was the Bramley harvest in kg in 2022?", "table", ("1200",)),
    Task("mixed", "How long is bottled juice pasteurised for?", "search_docs", ("20 minutes",)),
    Task("mixed", "How many orders were placed in total?", "sql", (str(len(ORDERS)),)),
)
KINDS = ("math", "sql", "csv", "documents", "mixed")


def attached(kind: str) -> tuple[bool, bool, bool]:
    """(database, harvest file, documents) attached for a kind: only its own, all for mixed."""
    return {
        "math": (False, False, False),
        "sql": (True, False, False),
        "csv": (False, True, False),
        "documents": (False, False, True),
        "mixed": (True, True, True),
    }[kind]
