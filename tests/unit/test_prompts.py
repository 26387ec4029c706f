"""Prompt files: packaged prompts, user overrides, strict validation and the `prompts` CLI."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from orchard.cli_prompts import app
from orchard.errors import PromptError
from orchard.prompts import (
    PROMPT_NAMES,
    REQUIRED_VARIABLES,
    check_prompts,
    list_prompts,
    load_prompt,
    load_prompt_file,
    prompt_source,
)

NOT_ANSWERED = "The documents do not answer this question."
CONTEXT = "[1] (library/json.html — json.dumps)\nSerialize obj to a JSON formatted str."

GOOD_RAG = """\
    description: Terse answers.
    template_format: f-string
    input_variables: [context, question, history]
    messages:
      - role: system
        content: "OVERRIDDEN. Sources: {context}"
      - role: placeholder
        content: history
      - role: human
        content: "{question}"
"""


@pytest.fixture
def user_dir(tmp_path: Path) -> Path:
    path = tmp_path / "my-prompts"
    path.mkdir()
    return path


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def error_of(directory: Path, name: str, text: str) -> tuple[Path, str]:
    """Write ``<name>.yaml`` into ``directory`` and return (path, message of the PromptError)."""
    path = write(directory, f"{name}.yaml", text)
    with pytest.raises(PromptError) as info:
        load_prompt(name, user_dir=directory)
    return path, str(info.value)


# --- packaged prompts ------------------------------------------------------------------------


def test_packaged_names_are_found_and_each_has_its_required_variables() -> None:
    assert PROMPT_NAMES == ("agent_answer", "agent_python", "agent_route", "agent_sql", "chat", "condense_question", "rag_answer")
    assert set(REQUIRED_VARIABLES) == set(PROMPT_NAMES)
    assert check_prompts(user_dir=None) == []


def test_rag_answer_renders_with_empty_and_non_empty_history() -> None:
    prompt = load_prompt("rag_answer")
    assert sorted(prompt.input_variables) == ["context", "question"]
    assert prompt.optional_variables == ["history"]

    empty = prompt.format_messages(context=CONTEXT, question="What does json.dumps do?", history=[])
    assert [m.type for m in empty] == ["system", "human"]
    system = empty[0].content
    assert CONTEXT in system
    assert NOT_ANSWERED in system
    assert "[1]" in system and "ONLY" in system
    assert empty[1].content == "What does json.dumps do?"

    history = [("human", "What is json?"), ("ai", "A module for JSON [1].")]
    full = prompt.format_messages(context=CONTEXT, question="And dumps?", history=history)
    assert [m.type for m in full] == ["system", "human", "ai", "human"]
    assert full[1].content == "What is json?"
    assert full[2].content == "A module for JSON [1]."
    assert full[3].content == "And dumps?"

    # history may be omitted entirely (optional placeholder)
    assert [m.type for m in prompt.format_messages(context=CONTEXT, question="q")] == ["system", "human"]


def test_values_are_inserted_verbatim_not_reinterpreted() -> None:
    tricky = 'Use {x} and <b> & "quotes"'
    messages = load_prompt("rag_answer").format_messages(context=tricky, question=tricky, history=[])
    assert tricky in messages[0].content
    assert messages[1].content == tricky


def test_condense_question_renders_and_requires_its_variables() -> None:
    prompt = load_prompt("condense_question")
    assert sorted(prompt.input_variables) == ["history_text", "question"]
    messages = prompt.format_messages(
        history_text="Human: What is json.dumps?\nAI: It serializes objects [1].",
        question="What about its indent argument?",
    )
    assert messages[0].type == "system"
    assert "Output only" in messages[0].content
    assert "It serializes objects [1]." in messages[-1].content
    assert "What about its indent argument?" in messages[-1].content
    with pytest.raises(KeyError):
        prompt.format_messages(question="only this")


def test_chat_renders_with_history() -> None:
    prompt = load_prompt("chat")
    messages = prompt.format_messages(question="Thanks!", history=[("human", "Hi"), ("ai", "Hello")])
    assert [m.type for m in messages] == ["system", "human", "ai", "human"]
    assert "honest" in messages[0].content
    assert messages[-1].content == "Thanks!"


def test_unknown_prompt_name_lists_the_known_ones() -> None:
    with pytest.raises(PromptError, match=r"unknown prompt 'nope'.*chat, condense_question, rag_answer"):
        load_prompt("nope")


# --- overrides -------------------------------------------------------------------------------


def test_override_shadows_packaged_prompt_by_name(user_dir: Path) -> None:
    path = write(user_dir, "rag_answer.yaml", GOOD_RAG)

    assert prompt_source("rag_answer", user_dir=user_dir) == (path, "override")
    packaged, origin = prompt_source("chat", user_dir=user_dir)
    assert origin == "packaged" and packaged.name == "chat.yaml" and packaged.parent != user_dir

    messages = load_prompt("rag_answer", user_dir=user_dir).format_messages(
        context="CTX", question="Q", history=[]
    )
    assert messages[0].content == "OVERRIDDEN. Sources: CTX"
    assert "OVERRIDDEN" not in load_prompt("rag_answer").format_messages(
        context="CTX", question="Q"
    )[0].content

    rows = {row["name"]: row for row in list_prompts(user_dir=user_dir)}
    assert rows["rag_answer"] == {
        "name": "rag_answer", "origin": "override", "path": str(path), "description": "Terse answers."
    }
    assert rows["chat"]["origin"] == "packaged"


def test_missing_or_empty_user_dir_means_packaged(tmp_path: Path) -> None:
    assert prompt_source("chat", user_dir=tmp_path / "absent")[1] == "packaged"
    assert prompt_source("chat", user_dir=tmp_path)[1] == "packaged"
    assert load_prompt("chat", user_dir=tmp_path / "absent").input_variables == ["question"]


def test_unknown_field_is_rejected_naming_field_and_file(user_dir: Path) -> None:
    path, msg = error_of(user_dir, "chat", GOOD_RAG.replace("description:", "temperature: 0.2\n    description:"))
    assert str(path) in msg
    assert "unknown field 'temperature'" in msg

    nested = GOOD_RAG.replace('content: "{question}"', 'content: "{question}"\n        name: bob')
    path, msg = error_of(user_dir, "rag_answer", nested)
    assert str(path) in msg and "unknown field 'messages[2].name'" in msg


def test_missing_required_variable_is_named(user_dir: Path) -> None:
    text = GOOD_RAG.replace("[context, question, history]", "[question, history]").replace(
        "Sources: {context}", "No sources."
    )
    path, msg = error_of(user_dir, "rag_answer", text)
    assert msg.startswith(f"prompt file {path}: ")
    assert "expected variables {context, history, question} for 'rag_answer', missing: {context}" in msg


def test_dropping_the_history_placeholder_is_an_error(user_dir: Path) -> None:
    text = GOOD_RAG.replace("[context, question, history]", "[context, question]").replace(
        "      - role: placeholder\n        content: history\n", ""
    )
    _, msg = error_of(user_dir, "rag_answer", text)
    assert "missing: {history}" in msg


def test_undeclared_variable_is_named(user_dir: Path) -> None:
    text = GOOD_RAG.replace('"{question}"', '"{question} {answer}"')
    path, msg = error_of(user_dir, "rag_answer", text)
    assert str(path) in msg
    assert "variable {answer} is used but not declared in input_variables" in msg
    assert "not supplied by the code: {answer}" in msg


def test_declared_variable_the_code_does_not_supply_is_named(user_dir: Path) -> None:
    text = GOOD_RAG.replace("[context, question, history]", "[context, question, history, tone]")
    text = text.replace('"{question}"', '"{question} ({tone})"')
    _, msg = error_of(user_dir, "rag_answer", text)
    assert "not supplied by the code: {tone}" in msg


def test_declared_but_unused_variable_is_named(user_dir: Path) -> None:
    text = GOOD_RAG.replace("[context, question, history]", "[context, question, history, foo]")
    path, msg = error_of(user_dir, "rag_answer", text)
    assert str(path) in msg
    assert "declares input_variables [foo] that no message uses" in msg


def test_jinja2_is_refused_with_the_reason(user_dir: Path) -> None:
    text = GOOD_RAG.replace("template_format: f-string", "template_format: jinja2")
    path, msg = error_of(user_dir, "rag_answer", text)
    assert str(path) in msg and "template_format" in msg
    assert "jinja2 is not accepted" in msg and "template injection" in msg


@pytest.mark.parametrize("field", ["{question.__class__}", "{question[0]}", "{}", "{0}", "{question!r}"])
def test_f_string_allows_plain_names_only(user_dir: Path, field: str) -> None:
    _, msg = error_of(user_dir, "rag_answer", GOOD_RAG.replace('"{question}"', f'"{field}"'))
    assert "messages[2]" in msg
    assert "only plain variable names" in msg or "no format spec or conversion" in msg
    assert "declares" not in msg  # a template error is reported alone, without knock-on noise


def test_unbalanced_brace_is_reported(user_dir: Path) -> None:
    _, msg = error_of(user_dir, "rag_answer", GOOD_RAG.replace('"{question}"', '"{question} }"'))
    assert "messages[2]: invalid f-string" in msg and "{{" in msg


def test_unquoted_braces_in_yaml_get_a_hint(user_dir: Path) -> None:
    _, msg = error_of(user_dir, "rag_answer", GOOD_RAG.replace('"{question}"', "{question}"))
    assert "field 'messages[2].content'" in msg and "YAML mapping" in msg


def test_mustache_override_works(user_dir: Path) -> None:
    write(
        user_dir,
        "chat.yaml",
        """\
        description: Mustache chat.
        template_format: mustache
        input_variables: [question, history]
        messages:
          - role: system
            content: "Be brief. Literal {braces} stay."
          - role: placeholder
            content: history
          - role: human
            content: "Q: {{{question}}} / {{& question}}"
        """,
    )
    prompt = load_prompt("chat", user_dir=user_dir)
    value = '<a href="x">&'
    messages = prompt.format_messages(question=value, history=[("ai", "Hi")])
    assert [m.type for m in messages] == ["system", "ai", "human"]
    assert messages[0].content == "Be brief. Literal {braces} stay."
    assert messages[2].content == f"Q: {value} / {value}"


def test_mustache_html_escaping_tag_is_refused(user_dir: Path) -> None:
    text = GOOD_RAG.replace("f-string", "mustache").replace('"{question}"', '"{{question}}"')
    text = text.replace("{context}", "{{{context}}}")
    _, msg = error_of(user_dir, "rag_answer", text)
    assert "{{question}} HTML-escapes" in msg and "{{{question}}}" in msg


def test_yaml_syntax_error_names_the_file(user_dir: Path) -> None:
    path, msg = error_of(user_dir, "chat", "description: x\nmessages: [\n")
    assert msg.startswith(f"prompt file {path}: invalid YAML at line")


def test_optional_is_only_for_placeholders(user_dir: Path) -> None:
    text = GOOD_RAG.replace('content: "{question}"', 'content: "{question}"\n        optional: true')
    _, msg = error_of(user_dir, "rag_answer", text)
    assert "'optional' is only allowed on placeholder messages" in msg


def test_load_prompt_file_without_expectations_checks_consistency_only(tmp_path: Path) -> None:
    path = write(tmp_path, "anything.yaml", GOOD_RAG.replace("{context}", "{ctx}").replace(
        "[context,", "[ctx,"
    ))
    assert sorted(load_prompt_file(path, expected=None).input_variables) == ["ctx", "question"]
    with pytest.raises(PromptError, match=r"missing: {context}"):
        load_prompt_file(path, expected={"context", "question", "history"})


# --- check_prompts ---------------------------------------------------------------------------


def test_check_prompts_reports_orphans_and_broken_overrides(user_dir: Path) -> None:
    write(user_dir, "rag_answer.yaml", GOOD_RAG)
    assert check_prompts(user_dir=user_dir) == []

    orphan = write(user_dir, "rag_anwser.yaml", GOOD_RAG)
    yml = write(user_dir, "chat.yml", GOOD_RAG)
    broken = write(user_dir, "condense_question.yaml", "description: [\n")
    (user_dir / "notes.txt").write_text("not a prompt")

    problems = check_prompts(user_dir=user_dir)
    assert len(problems) == 3, problems
    assert any(str(orphan) in p and "no prompt of that name" in p for p in problems)
    assert any(str(yml) in p and "rename it to chat.yaml" in p for p in problems)
    assert any(str(broken) in p and "invalid YAML" in p for p in problems)


def test_check_prompts_reports_a_missing_user_dir(tmp_path: Path) -> None:
    problems = check_prompts(user_dir=tmp_path / "absent")
    assert problems == [f"prompts directory {tmp_path / 'absent'} does not exist or is not a directory"]


# --- CLI -------------------------------------------------------------------------------------


@pytest.fixture
def cli(user_dir: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("ORCHARD_PROMPTS_DIR", str(user_dir))
    return CliRunner()


def test_cli_list_json_and_table(cli: CliRunner, user_dir: Path) -> None:
    write(user_dir, "chat.yaml", GOOD_RAG.replace("[context, question, history]", "[question, history]")
          .replace("Sources: {context}", "Chat."))
    result = cli.invoke(app, ["list", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [row["name"] for row in rows] == list(PROMPT_NAMES)
    assert {row["name"]: row["origin"] for row in rows} == {name: "override" if name == "chat" else "packaged" for name in PROMPT_NAMES}
    assert next(row for row in rows if row["name"] == "chat")["path"] == str(user_dir / "chat.yaml")

    table = cli.invoke(app, ["list"])
    assert table.exit_code == 0
    assert table.stdout.splitlines()[0].split() == ["NAME", "ORIGIN", "DESCRIPTION"]
    assert any(line.split()[:2] == ["chat", "override"] for line in table.stdout.splitlines())


def test_cli_show_prints_the_file_in_use(cli: CliRunner, user_dir: Path) -> None:
    result = cli.invoke(app, ["show", "condense_question"])
    assert result.exit_code == 0
    first, rest = result.stdout.split("\n", 1)
    path, _ = prompt_source("condense_question")
    assert first == f"# packaged prompt file: {path}"
    assert rest == path.read_text(encoding="utf-8")

    override = write(user_dir, "rag_answer.yaml", GOOD_RAG)
    result = cli.invoke(app, ["show", "rag_answer"])
    assert result.stdout.splitlines()[0] == f"# override prompt file: {override}"
    assert "OVERRIDDEN" in result.stdout

    missing = cli.invoke(app, ["show", "nope"])
    assert missing.exit_code == 1
    assert "unknown prompt 'nope'" in missing.stderr and missing.stdout == ""


def test_cli_check(cli: CliRunner, user_dir: Path) -> None:
    ok = cli.invoke(app, ["check"])
    assert ok.exit_code == 0, ok.output
    assert [line.split()[:2] for line in ok.stdout.splitlines()] == [["ok", n] for n in PROMPT_NAMES]

    broken = write(user_dir, "rag_answer.yaml", GOOD_RAG.replace("{context}", "{contex}"))
    result = cli.invoke(app, ["check"])
    assert result.exit_code == 1
    assert f"prompt file {broken}:" in result.stderr
    assert "{contex}" in result.stderr
    assert "rag_answer" not in result.stdout  # no "ok" line for the broken one
    assert "ok     chat" in result.stdout


def test_check_validates_a_saved_constitution_instead_of_calling_it_unknown(user_dir: Path) -> None:
    from orchard.constitution import constitution_text

    (user_dir / "constitution.yaml").write_text(constitution_text())
    assert check_prompts(user_dir=user_dir) == []
    (user_dir / "constitution.yaml").write_text("description: x\nprinciples: []\n")
    assert [p for p in check_prompts(user_dir=user_dir) if "constitution file" in p]
