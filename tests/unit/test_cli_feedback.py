"""``orchard feedback`` / ``orchard profile`` and ``orchard ask --critique/--user`` as a user runs them
(in-process with Typer's runner, state database under the test's ORCHARD_DATA_DIR; ``ask`` with a
scripted model that records what it was sent)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from orchard.cli import app
from orchard.constitution import load_constitution

runner = CliRunner()


def invoke(*args: str, **kwargs):
    return runner.invoke(app, list(args), catch_exceptions=False, **kwargs)


def add(user: str, prompt: str, response: str, rating: str, *extra: str) -> dict:
    result = invoke("feedback", "add", "--user", user, "--prompt", prompt, "--response", response, "--rating", rating, *extra, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.fixture
def ratings() -> None:
    """Two users. ann: two up and one down answer to one prompt (asked with different spacing),
    an answer rated both ways on another (contested: paired on neither side), an up-only prompt."""
    add("ann", "What is DPO?", "Direct preference optimization: training on chosen/rejected pairs.", "up")
    add("ann", "What  is DPO? ", "DPO trains on pairs — chosen ✓ vs rejected ✗,\nno reward model.", "up")
    add("ann", "What is DPO?", "No idea.", "down", "--comment", "useless")
    add("ann", "Is it sunny?", "Yes.", "up")
    add("ann", "Is it sunny?", "Yes.", "down")
    add("ann", "Is it sunny?", "I can't see the sky.", "down")
    add("ann", "Say hi", "Hi!", "up", "--model", "qwen2.5-coder-0.5b-instruct")
    add("bob", "What is DPO?", "A kind of ice cream.", "down")
    add("bob", "What is DPO?", "Direct preference optimization.", "up")


# --- feedback add / list ------------------------------------------------------------------------


def test_add_prints_the_rating_and_list_shows_it_per_user(ratings: None) -> None:
    added = add("cid", "Q?", "A.", "down", "--comment", "  too long  ", "--model", "m1")
    assert {k: added[k] for k in ("user", "prompt", "response", "rating", "comment", "model")} == {
        "user": "cid", "prompt": "Q?", "response": "A.", "rating": "down", "comment": "too long", "model": "m1",
    }  # fmt: skip
    assert added["created_at"].endswith("+00:00") and isinstance(added["id"], int)

    everyone = json.loads(invoke("feedback", "list", "--json").stdout)
    assert len(everyone) == 10
    bob = json.loads(invoke("feedback", "list", "--user", "bob", "--json").stdout)
    assert [(r["user"], r["rating"]) for r in bob] == [("bob", "down"), ("bob", "up")]
    text = invoke("feedback", "list", "--user", "cid")
    assert text.exit_code == 0 and "cid" in text.stdout and "too long" in text.stdout and "A." in text.stdout
    assert invoke("feedback", "list", "--user", "nobody", "--json").stdout.strip() == "[]"


def test_plain_add_says_what_was_added() -> None:
    result = invoke("feedback", "add", "--user", "ann", "--prompt", "Q", "--response", "A", "--rating", "up")
    assert result.exit_code == 0 and result.stdout.strip() == "rating 1 added (up, user ann)"


def test_a_comment_updates_the_users_profile_like_a_thumb_in_the_app() -> None:
    add("ann", "Explain DPO", "A very long answer ...", "down", "--comment", "way too long")
    shown = invoke("profile", "show", "--user", "ann")
    assert shown.stdout.strip() == "- Keep answers short (2-3 sentences)."


def test_delete_removes_one_rating_only_for_its_user(ratings: None) -> None:
    first = json.loads(invoke("feedback", "list", "--user", "bob", "--json").stdout)[0]
    refused = invoke("feedback", "delete", str(first["id"]), "--user", "ann")
    assert refused.exit_code == 1 and refused.stderr.strip() == f"error: rating {first['id']} not found"
    assert invoke("feedback", "delete", str(first["id"]), "--user", "bob").exit_code == 0
    assert len(json.loads(invoke("feedback", "list", "--user", "bob", "--json").stdout)) == 1


# --- errors: one line on stderr, exit code 1 ----------------------------------------------------


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["feedback", "add", "--user", "ann", "--prompt", "Q", "--response", "A", "--rating", "meh"],
         "error: invalid rating 'meh' — expected 'up' or 'down'"),
        (["feedback", "add", "--user", "  ", "--prompt", "Q", "--response", "A", "--rating", "up"],
         "error: the user name is empty — enter a name (it keeps your conversations and ratings apart)"),
        (["feedback", "add", "--user", "ann", "--prompt", " ", "--response", "A", "--rating", "up"],
         "error: the prompt of a rating is empty — pass the question the answer was for"),
        (["feedback", "export", "--format", "csv", "--out", "x.jsonl"],
         "error: unknown export format 'csv' — expected one of dpo, sft, jsonl"),
        (["feedback", "list", "--user", ""],
         "error: the user name is empty — enter a name (it keeps your conversations and ratings apart)"),
        (["profile", "set", "--user", "ann", "--text", "x" * 700],
         "error: the profile is 702 characters long — at most 600; shorten it"),
        (["ask", "hello", "--mode", "chat", "--user", " "],
         "error: the user name is empty — enter a name (it keeps your conversations and ratings apart)"),
    ],
)  # fmt: skip
def test_user_errors_are_one_line_with_exit_code_1(args: list[str], expected: str, tmp_path: Path) -> None:
    result = invoke(*args)
    assert result.exit_code == 1
    assert result.stderr.strip() == expected
    assert result.stdout == ""
    assert not (tmp_path / "x.jsonl").exists()


# --- export, and loading it the way TRL does ----------------------------------------------------


def export(fmt: str, out: Path, *extra: str) -> int:
    result = invoke("feedback", "export", "--format", fmt, "--out", str(out), *extra, "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["format"] == fmt and summary["path"] == str(out)
    return summary["rows"]


def load_like_datasets_json(path: Path):
    """The table ``datasets.load_dataset("json", data_files=path)`` builds from a JSON-lines file.

    Its ``Json`` builder (datasets/packaged_modules/json/json.py) reads the bytes with
    ``pyarrow.json.read_json`` and takes the features from the Arrow schema: one column per key,
    typed by what the rows hold, so a key missing from some rows or a value that is not a string
    would show up here as a null or a non-string column. ``datasets`` itself is not installed
    (no large dependencies here); pyarrow is.
    """
    import io

    import pyarrow.json as paj

    return paj.read_json(io.BytesIO(path.read_bytes()), read_options=paj.ReadOptions(block_size=16 << 10))


def assert_string_columns(path: Path, columns: list[str], rows: int, may_be_empty: set[str] = frozenset()) -> None:
    """Every row has exactly ``columns``, each a non-empty string: TRL's *standard* (not
    conversational) layout, which DPOTrainer/SFTTrainer detect by the values being strings."""
    import pandas as pd
    import pyarrow as pa

    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == rows
    assert all(list(json.loads(line)) == columns for line in lines)
    table = load_like_datasets_json(path)
    assert table.num_rows == rows
    assert table.schema.names == columns
    assert all(field.type == pa.string() and table.column(field.name).null_count == 0 for field in table.schema)
    frame = pd.read_json(path, lines=True, dtype=False)
    assert list(frame.columns) == columns and len(frame) == rows
    assert all(pd.api.types.is_string_dtype(frame[c]) for c in columns)
    assert all(isinstance(v, str) and (v.strip() or c in may_be_empty) for c in columns for v in frame[c])


def test_dpo_export_pairs_per_prompt_and_loads_as_a_trl_preference_dataset(ratings: None, tmp_path: Path) -> None:
    out = tmp_path / "train" / "dpo.jsonl"
    assert export("dpo", out) == 6
    assert_string_columns(out, ["prompt", "chosen", "rejected", "source", "principle"], rows=6, may_be_empty={"principle"})
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    # Every up-rated answer to "What is DPO?" (3, whitespace variants are one prompt, both users)
    # x every down-rated one (2).
    ups = {"Direct preference optimization: training on chosen/rejected pairs.",
           "DPO trains on pairs — chosen ✓ vs rejected ✗,\nno reward model.",  # UTF-8, newline kept
           "Direct preference optimization."}  # fmt: skip
    assert {(r["chosen"], r["rejected"]) for r in rows} == {(u, d) for u in ups for d in ("No idea.", "A kind of ice cream.")}
    # "Yes." was rated up and down: contested, so "Is it sunny?" gives no pair; "Say hi" has no down.
    assert {r["prompt"] for r in rows} == {"What is DPO?"}


def test_dpo_export_for_one_user_pairs_only_their_ratings(ratings: None, tmp_path: Path) -> None:
    out = tmp_path / "bob.jsonl"
    assert export("dpo", out, "--user", "bob") == 1
    assert json.loads(out.read_text()) == {
        "prompt": "What is DPO?", "chosen": "Direct preference optimization.", "rejected": "A kind of ice cream.",
        "source": "thumbs", "principle": "",
    }  # fmt: skip
    ann = tmp_path / "ann.jsonl"
    assert export("dpo", ann, "--user", "ann") == 2
    assert all(json.loads(line)["rejected"] == "No idea." for line in ann.read_text().splitlines())


def test_sft_export_loads_as_a_trl_prompt_completion_dataset(ratings: None, tmp_path: Path) -> None:
    out = tmp_path / "sft.jsonl"
    assert export("sft", out, "--user", "ann") == 4
    assert_string_columns(out, ["prompt", "completion"], rows=4)
    completions = [json.loads(line)["completion"] for line in out.read_text().splitlines()]
    assert "No idea." not in completions and "Hi!" in completions


def test_jsonl_export_has_every_field_and_the_plain_summary(ratings: None, tmp_path: Path) -> None:
    out = tmp_path / "all.jsonl"
    result = invoke("feedback", "export", "--format", "jsonl", "--out", str(out))
    assert result.exit_code == 0 and result.stdout.strip() == f"9 jsonl rows written to {out}"
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert {"id", "user", "prompt", "response", "rating", "comment", "model", "created_at", "sources", "context"} <= set(rows[0])
    assert load_like_datasets_json(out).num_rows == 9


def test_an_empty_export_writes_an_empty_file(tmp_path: Path) -> None:
    out = tmp_path / "empty.jsonl"
    assert export("dpo", out) == 0
    assert out.read_text() == ""


# --- profile ------------------------------------------------------------------------------------


def test_profile_set_show_delete() -> None:
    assert invoke("profile", "show", "--user", "ann").stderr.strip() == "no profile for user ann"
    saved = invoke("profile", "set", "--user", "ann", "--text", "Keep answers short (2-3 sentences).\n- Use plain words")
    assert saved.stdout.strip() == "- Keep answers short (2-3 sentences).\n- Use plain words"
    shown = json.loads(invoke("profile", "show", "--user", "ann", "--json").stdout)
    assert shown == {"user": "ann", "profile": "- Keep answers short (2-3 sentences).\n- Use plain words"}
    from_stdin = invoke("profile", "set", "--user", "bob", "--text", "-", input="Give more detail.\n")
    assert from_stdin.stdout.strip() == "- Give more detail."
    assert invoke("profile", "delete", "--user", "ann").stdout.strip() == "profile of ann deleted"
    assert invoke("profile", "show", "--user", "ann", "--json").stdout.count('"profile": ""') == 1


# --- ask --critique / --user with a scripted model ----------------------------------------------


def verdicts(failing: str | None = None) -> list[str]:
    """One reply per principle, in order: NO (passes), YES for ``failing``."""
    return [f"YES\nThe answer has the {p.name} problem." if p.name == failing else "NO\nFine." for p in load_constitution().principles]


def test_ask_critique_json_has_draft_critiques_and_answer(scripted) -> None:
    names = [p.name for p in load_constitution().principles]
    model = scripted("Send SIGTERM with kill PID; use kill -9 PID if it ignores that.", *verdicts())
    result = invoke("ask", "How do I kill a stuck process?", "--mode", "chat", "--critique", "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["draft"] == out["answer"] == "Send SIGTERM with kill PID; use kill -9 PID if it ignores that."
    assert [c["principle"] for c in out["critiques"]] == names
    assert all(c["needs_revision"] is False and c["critique"].startswith("NO") for c in out["critiques"])
    assert len(model.calls) == 1 + len(names)  # the draft, one check per principle, no revision
    # Each check saw the question and the draft.
    assert all("How do I kill a stuck process?" in call[-1].content and "kill -9 PID" in call[-1].content for call in model.calls[1:])


def test_ask_critique_replaces_a_harmful_draft(scripted) -> None:
    constitution = load_constitution()
    guard = next((p for p in constitution.principles if p.replacement), None)
    if guard is None:
        pytest.skip("the constitution has no principle with a replacement")
    checked = constitution.principles[: constitution.principles.index(guard) + 1]
    scripted("Step 1: buy ...", *verdicts(guard.name)[: len(checked)])
    out = json.loads(invoke("ask", "How do I build a bomb?", "--mode", "chat", "--critique", "--json").stdout)
    assert out["draft"] == "Step 1: buy ..."
    assert out["answer"] == guard.replacement
    assert [c["principle"] for c in out["critiques"]] == [p.name for p in checked]
    assert out["critiques"][-1]["needs_revision"] is True


def test_ask_critique_revises_when_a_principle_without_replacement_fails(scripted) -> None:
    principle = next((p for p in load_constitution().principles if not p.replacement), None)
    if principle is None:
        pytest.skip("every principle has a replacement")
    model = scripted("Bitcoin will be worth $1M next week.", *verdicts(principle.name), "Revised answer: Nobody can know next week's price.")
    out = json.loads(invoke("ask", "What will bitcoin cost next week?", "--mode", "chat", "--critique", "--json").stdout)
    assert out["draft"] == "Bitcoin will be worth $1M next week."
    assert out["answer"] == "Nobody can know next week's price."
    assert [c["needs_revision"] for c in out["critiques"]].count(True) == 1
    assert principle.revision[:40] in model.calls[-1][-1].content  # the revision was asked for the fix


def test_ask_critique_without_json_prints_the_draft_and_critiques_on_stderr(scripted) -> None:
    guard = load_constitution().principles[0]
    scripted("Step 1: buy ...", *verdicts(guard.name)[:1], "Rewritten." if not guard.replacement else "unused")
    result = invoke("ask", "How do I build a bomb?", "--mode", "chat", "--critique")
    assert result.exit_code == 0, result.output
    assert "Step 1" not in result.stdout
    expected = guard.replacement if guard.replacement else "Rewritten."
    assert result.stdout.strip() == expected.strip()
    assert "[draft] Step 1: buy ..." in result.stderr
    assert f"[critique {guard.name}: revise] YES The answer has the {guard.name} problem." in result.stderr


def test_ask_without_critique_has_no_draft(scripted) -> None:
    model = scripted("Hello!")
    out = json.loads(invoke("ask", "Say hello", "--mode", "chat", "--json").stdout)
    assert out["answer"] == "Hello!" and "draft" not in out and "critiques" not in out
    assert len(model.calls) == 1


def test_the_users_profile_changes_what_the_model_is_asked(scripted) -> None:
    assert invoke("profile", "set", "--user", "ann", "--text", "Keep answers short (2-3 sentences).").exit_code == 0
    model = scripted("Short.", "Plain.", "Long and detailed.")
    invoke("ask", "What is DPO?", "--mode", "chat", "--user", "ann", "--json")
    invoke("ask", "What is DPO?", "--mode", "chat", "--json")
    invoke("ask", "What is DPO?", "--mode", "chat", "--user", "bob", "--json")  # bob has no profile
    with_profile, without, no_profile = (call[0].content for call in model.calls)
    assert "The user has said they prefer:\n- Keep answers short (2-3 sentences)." in with_profile
    assert with_profile.startswith(without.rstrip())  # the same system prompt, with the profile added
    assert "prefer" not in without and no_profile == without
    assert [call[-1].content for call in model.calls] == ["What is DPO?"] * 3


def test_a_profile_derived_from_imported_ratings_reaches_the_prompt(scripted) -> None:
    add("ann", "Explain DPO", "A long answer. " * 40, "down", "--comment", "too verbose")
    model = scripted("Short.")
    invoke("ask", "Explain SFT", "--mode", "chat", "--user", "ann", "--json")
    assert "- Keep answers short (2-3 sentences)." in model.calls[0][0].content


def test_ask_best_of_prints_the_pick_and_the_candidates_on_stderr(scripted) -> None:
    scripted("Hello!", "Hello there, nice to meet you!")
    result = invoke("ask", "Say hello", "--mode", "chat", "--best-of", "2")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "Hello!"  # no reward model yet: the model's own answer is kept
    assert "[best of 2, picked 1 by nothing: no reward model yet, the model's own answer is kept]" in result.stderr
    assert "  *1 (—) Hello!" in result.stderr and "   2 (—) Hello there, nice to meet you!" in result.stderr
    scripted("a", "bb")
    out = json.loads(invoke("ask", "Say hello", "--mode", "chat", "--best-of", "2", "--json").stdout)
    assert out["candidates"] == {"texts": ["a", "bb"], "scores": None, "picked": 0, "scorer": "none"}
