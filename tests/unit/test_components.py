"""The composition root: settings in, parts out; injection; lazy single builds; tool sessions."""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from orchard.components import Components, ToolSessions
from orchard.config import Settings
from orchard.errors import OrchardError
from orchard.tools.table import TableDatabase
from orchard.usecases import AnswerRequest
from tests.fakes import HashEmbeddings, ScriptedChatModel, ScriptedToolModel, scripted_orchard

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
from agent_tasks import make_harvest_csv, make_shop_db

# langchain-openai creates (and closes) a socket to probe which TCP keep-alive options the system
# supports; no connection is made, but pytest-socket warns about it.
probe_socket = pytest.mark.filterwarnings("ignore:A test tried to use socket.socket")


# --- settings ---------------------------------------------------------------------------------------


def test_settings_read_the_environment_and_dotenv(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("ORCHARD_TOP_K=7\nORCHARD_LLM_MODEL=from-dotenv\n")
    monkeypatch.setenv("ORCHARD_LLM_MODEL", "from-env")
    settings = Settings()
    assert settings.top_k == 7 and settings.llm_model == "from-env"  # the environment wins over .env
    assert settings.store_path == settings.data_dir / "store"
    assert settings.is_default_llm_url


def test_invalid_settings_are_rejected_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCHARD_DENSE_WEIGHT", "1.5")
    with pytest.raises(ValueError, match="dense_weight"):
        Settings()


def test_a_model_endpoint_must_be_an_http_url() -> None:
    with pytest.raises(ValueError, match="http"):
        Settings(llm_base_url="localhost:8000")


# --- building and injecting -------------------------------------------------------------------------


@probe_socket
def test_the_model_client_is_built_from_settings_and_the_token_limit_reaches_llama_cpp_too() -> None:
    llm = Components(Settings(llm_max_tokens=77, llm_model="my-model")).llm
    payload = llm._get_request_payload("hi")
    assert payload["extra_body"] == {"max_tokens": 77}  # llama-cpp-python ignores max_completion_tokens
    assert payload["model"] == "my-model"


def test_given_parts_are_used_and_the_rest_is_built_around_them(tmp_path: Path) -> None:
    model, embeddings = ScriptedChatModel.with_replies("hi"), HashEmbeddings()
    parts = Components(Settings(data_dir=tmp_path), llm=model, embeddings=embeddings)
    assert parts.llm is model and parts.embeddings is embeddings
    assert not parts.built("store")
    assert parts.store.embeddings is embeddings and parts.store.where == str(tmp_path / "store")
    assert parts.retriever.store is parts.store and parts.retriever.k == 5
    assert parts.conversations.db is parts.database and parts.feedback.db is parts.database


def test_an_unknown_part_is_a_type_error_naming_the_parts() -> None:
    with pytest.raises(TypeError, match=r"unknown component\(s\) lm: choose from .*llm"):
        Components(Settings(), lm=object())


def test_a_part_is_built_once_when_many_threads_ask_at_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import orchard.store

    builds: list[int] = []
    real = orchard.store.make_chroma_client

    def slow_client(**kwargs: Any) -> Any:
        builds.append(1)
        time.sleep(0.05)  # wide open for a second builder
        return real(**kwargs)

    monkeypatch.setattr(orchard.store, "make_chroma_client", slow_client)
    parts = Components(Settings(data_dir=tmp_path), embeddings=HashEmbeddings())
    start = threading.Barrier(8)
    got: list[Any] = []

    def ask() -> None:
        start.wait()
        got.append(parts.store)

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(builds) == 1 and len({id(store) for store in got}) == 1


@probe_socket
def test_new_settings_keep_the_heavy_parts_and_rebuild_what_depends_on_the_change(tmp_path: Path) -> None:
    old = Components(Settings(data_dir=tmp_path), llm=ScriptedChatModel.with_replies("hi"), embeddings=HashEmbeddings())
    store, database, retriever, sessions = old.store, old.database, old.retriever, old.tool_sessions
    new = old.with_settings(Settings(data_dir=tmp_path, llm_model="other-model", top_k=9))
    assert new.embeddings is old.embeddings and new.store is store and new.database is database
    assert new.tool_sessions is sessions
    assert new.retriever is not retriever and new.retriever.k == 9 and new.retriever.store is store
    assert new.llm is not old.llm and new.llm.model_name == "other-model"


def test_tool_sessions_of_changed_tool_settings_are_closed(tmp_path: Path) -> None:
    db = f"sqlite:///{make_shop_db(tmp_path / 'shop.sqlite')}"
    old = Components(Settings(data_dir=tmp_path), embeddings=HashEmbeddings())
    old.tools(db_url=db)
    new = old.with_settings(Settings(data_dir=tmp_path, sql_max_rows=5))
    assert old.tool_sessions.open_sessions() == []
    assert new.tool_sessions is not old.tool_sessions and new.tool_sessions.max_rows == 5


# --- tool sessions ----------------------------------------------------------------------------------


def count_loads(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """Record every time a TableDatabase reads its files."""
    loads: list[list[str]] = []
    real = TableDatabase._load

    def load(self: TableDatabase) -> None:
        loads.append([p.name for p in self.paths])
        real(self)

    monkeypatch.setattr(TableDatabase, "_load", load)
    return loads


def test_the_same_sources_give_the_same_tools_and_the_two_tools_of_a_source_share_one_database(tmp_path: Path) -> None:
    db = f"sqlite:///{make_shop_db(tmp_path / 'shop.sqlite')}"
    harvest = make_harvest_csv(tmp_path / "harvest.csv")
    sessions = ToolSessions(max_rows=50, timeout=5, schema_tools=True)
    first = sessions.tools(db_url=db, tables=[harvest], retriever=None)
    again = sessions.tools(db_url=db, tables=[str(harvest)], retriever=None)  # str or Path: the same file
    assert [t.name for t in first] == ["python", "sql", "sql_schema", "table", "table_schema"]
    assert all(a is b for a, b in zip(first, again, strict=True))
    by_name = {t.name: t for t in first}
    assert by_name["sql"].db is by_name["sql_schema"].db  # one engine, one pool
    assert by_name["table"].db is by_name["table_schema"].db  # the files loaded once
    assert sessions.open_sessions() == [(db, (str(harvest.resolve()),))]


def test_two_questions_on_the_same_file_load_it_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    loads = count_loads(monkeypatch)
    harvest = make_harvest_csv(tmp_path / "harvest.csv")
    query = "```sql\nSELECT SUM(kg) FROM harvest WHERE year = 2023\n```"
    model = ScriptedToolModel(replies=[query, "3117 kg.", query, "Still 3117 kg."])  # a table only: routed without a model call
    orchard = scripted_orchard(tmp_path / "data", llm=model)
    for question in ("Total harvest kg in 2023?", "And the total harvest kg in 2023 again?"):
        result = orchard.answers.ask(AnswerRequest(question=question, mode="agent", tables=(str(harvest),)))
        assert result.tool_calls[0].tool == "table" and "3117" in result.tool_calls[0].output
    assert loads == [["harvest.csv"]]


def test_a_file_replaced_on_disk_is_not_answered_from_the_old_copy(tmp_path: Path) -> None:
    path = tmp_path / "prices.csv"
    path.write_text("fruit,price\napple,1\n")
    sessions = ToolSessions(max_rows=50, timeout=5, schema_tools=False)
    table = next(t for t in sessions.tools(db_url=None, tables=[path], retriever=None) if t.name == "table")
    assert "1" in table.invoke({"query": "SELECT price FROM prices"})
    stamp = path.stat().st_mtime_ns
    path.write_text("fruit,price\napple,7\n")
    os.utime(path, ns=(stamp, stamp))  # same size, same mtime: a rewrite within one timestamp tick
    again = next(t for t in sessions.tools(db_url=None, tables=[path], retriever=None) if t.name == "table")
    assert again is table and "7" in table.invoke({"query": "SELECT price FROM prices"})


def test_releasing_a_database_disposes_its_engine(tmp_path: Path) -> None:
    db = f"sqlite:///{make_shop_db(tmp_path / 'shop.sqlite')}"
    sessions = ToolSessions(max_rows=50, timeout=5, schema_tools=True)
    sql = next(t for t in sessions.tools(db_url=db, tables=[], retriever=None) if t.name == "sql")
    closed: list[int] = []
    sa.event.listen(sql.db.engine, "close", lambda *_: closed.append(1))
    assert "12" in sql.invoke({"query": "SELECT COUNT(*) AS n FROM orders"})
    assert sessions.release(db_url="sqlite:///other.db") == 0 and closed == []
    assert sessions.release(db_url=db) == 1
    assert closed == [1] and sessions.open_sessions() == []  # the pooled connection was closed


def test_releasing_a_file_closes_its_duckdb_and_every_session_using_it(tmp_path: Path) -> None:
    harvest = make_harvest_csv(tmp_path / "harvest.csv")
    other = tmp_path / "other.csv"
    other.write_text("a\n1\n")
    sessions = ToolSessions(max_rows=50, timeout=5, schema_tools=False)
    alone = next(t for t in sessions.tools(db_url=None, tables=[harvest], retriever=None) if t.name == "table")
    both = next(t for t in sessions.tools(db_url=None, tables=[harvest, other], retriever=None) if t.name == "table")
    kept = next(t for t in sessions.tools(db_url=None, tables=[other], retriever=None) if t.name == "table")
    for tool in (alone, both, kept):
        tool.invoke({"query": "SELECT 1"})
    assert alone.db.loaded and both.db.loaded
    assert sessions.release(table=str(harvest)) == 2
    assert not alone.db.loaded and not both.db.loaded and kept.db.loaded
    assert sessions.open_sessions() == [(None, (str(other.resolve()),))]
    sessions.close()
    assert not kept.db.loaded and sessions.open_sessions() == []


def test_a_missing_file_or_database_is_a_user_error_and_opens_no_session(tmp_path: Path) -> None:
    sessions = ToolSessions(max_rows=50, timeout=5, schema_tools=False)
    with pytest.raises(OrchardError, match=r"no file at .*gone\.csv"):
        sessions.tools(db_url=None, tables=[tmp_path / "gone.csv"], retriever=None)
    with pytest.raises(OrchardError, match="no SQLite database at"):
        sessions.tools(db_url=f"sqlite:///{tmp_path / 'gone.db'}", tables=[], retriever=None)
    assert sessions.open_sessions() == []


def test_search_docs_joins_the_data_tools_only_when_documents_are_ingested(tmp_path: Path) -> None:
    orchard = scripted_orchard(tmp_path / "data")
    assert [t.name for t in orchard.components.tools()] == ["python"]
    (tmp_path / "notes.md").write_text("# Notes\n\nPears ripen after picking.\n")
    orchard.library.ingest([tmp_path / "notes.md"], progress=False)
    assert [t.name for t in orchard.components.tools()] == ["python", "search_docs"]
    assert len(orchard.components.tool_sessions.open_sessions()) == 1  # search_docs is not part of a session


def test_deleting_a_conversation_releases_its_tools(tmp_path: Path) -> None:
    db = f"sqlite:///{make_shop_db(tmp_path / 'shop.sqlite')}"
    query = "```sql\nSELECT SUM(kg) FROM harvest WHERE year = 2023\n```"
    orchard = scripted_orchard(tmp_path / "data", llm=ScriptedToolModel(replies=["data", query, "3117 kg."]))
    conversation = orchard.conversations.create("ana", mode="agent")
    orchard.conversations.set_database("ana", conversation.id, db)
    orchard.conversations.attach_table("ana", conversation.id, "harvest.csv", make_harvest_csv(tmp_path / "h.csv").read_bytes())
    result = orchard.conversations.ask("ana", conversation.id, "Total harvest kg in 2023?").result()
    assert result.tool_calls[0].tool == "table"
    sessions = orchard.components.tool_sessions
    [(url, _)] = sessions.open_sessions()
    table = next(t for t in sessions.tools(db_url=url, tables=orchard.conversations.get("ana", conversation.id).tables,
                                            retriever=None) if t.name == "table")  # fmt: skip
    assert url == db and table.db.loaded
    orchard.conversations.delete("ana", conversation.id)
    assert sessions.open_sessions() == [] and not table.db.loaded


def test_detaching_a_file_releases_its_session(tmp_path: Path) -> None:
    orchard = scripted_orchard(tmp_path / "data")
    conversation = orchard.conversations.create("ana", mode="agent")
    updated = orchard.conversations.attach_table("ana", conversation.id, "kg.csv", b"variety,kg\nGala,3\n")
    [path] = updated.tables
    orchard.components.tools(tables=[path])
    assert len(orchard.components.tool_sessions.open_sessions()) == 1
    assert orchard.conversations.detach_table("ana", conversation.id, path).tables == ()
    assert orchard.components.tool_sessions.open_sessions() == [] and not Path(path).exists()


# --- `orchard tools`: what each tool needs, and running one ------------------------------------------


def tools_cli(*args: str) -> tuple[int, Any]:
    from orchard.cli import app

    result = CliRunner().invoke(app, ["tools", *args])
    try:
        return result.exit_code, json.loads(result.stdout)
    except json.JSONDecodeError:
        return result.exit_code, result.stdout + result.stderr


def test_tools_list_says_what_each_tool_needs(tmp_path: Path) -> None:
    code, rows = tools_cli("list", "--json")
    assert code == 0
    by_name = {r["name"]: r for r in rows}
    assert list(by_name) == ["python", "sql", "sql_schema", "table", "table_schema", "search_docs"]
    assert by_name["python"]["available"] and by_name["python"]["args"] == ["code"]
    assert by_name["sql"]["needs"] == "a database (--db URL)"
    code, rows = tools_cli("list", "--json", "--db", f"sqlite:///{make_shop_db(tmp_path / 's.sqlite')}")
    assert {r["name"]: r["available"] for r in rows}["sql"] is True


def test_tools_run_shapes(tmp_path: Path) -> None:
    db = f"sqlite:///{make_shop_db(tmp_path / 'shop.sqlite')}"
    assert tools_cli("run", "python", "--input", '{"code": "print(2 ** 10)"}', "--json") == (0, {"ok": True, "output": "1024", "error": None})
    code, out = tools_cli("run", "sql", "--input", '{"query": "SELECT COUNT(*) AS n FROM orders"}', "--db", db, "--json")
    assert out["ok"] and "12" in out["output"]
    code, out = tools_cli("run", "sql", "--input", '{"query": "DELETE FROM orders"}', "--db", db, "--json")
    assert out["ok"] is False and out["error"].startswith("refused:") and "DELETE" in out["error"]
    code, out = tools_cli("run", "sql", "--input", '{"query": "SELECT 1"}', "--json")
    assert out == {"ok": False, "output": "", "error": "sql needs a database (--db URL)"}
    code, out = tools_cli("run", "nope", "--input", "{}", "--json")
    assert out["ok"] is False and "no tool named 'nope'" in out["error"]
    code, out = tools_cli("run", "python", "--input", "{not json", "--json")
    assert out["ok"] is False and "not JSON" in out["error"]
    code, out = tools_cli("run", "python", "--input", '{"program": "print(1)"}', "--json")
    assert out["ok"] is False and "bad arguments" in out["error"]
    code, text = tools_cli("run", "python", "--input", '{"code": "open(\'/etc/passwd\').read()"}')
    assert code == 1 and "refused" in text
