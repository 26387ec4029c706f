"""Ratings: storage, re-rating, exports (DPO/SFT/JSONL), and per-user preference profiles — the
store tests on SQLite and on a real Postgres (the ``state_url`` fixture)."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest

from orchard.db import Database, NotFound
from orchard.feedback import (
    DETAIL,
    PROFILE_MAX_CHARS,
    SHORT,
    Feedback,
    FeedbackStore,
    ProfileStore,
    derive_profile,
    profile_instructions,
)
from orchard.history import ConversationStore
from tests.servers.plugin import postgres_server_fixture, postgres_url_fixture, state_url_fixture  # noqa: F401

CODE = "Include a short code example when it helps."
NO_CODE = "Avoid code unless asked."
CITE = "Cite the sources for every claim."
PLAIN = "Use plain words, explain terms."
EXPERT = "Assume expertise; skip the basics."
FORMAL = "Use a formal tone."
CASUAL = "Use a friendly, casual tone."


@pytest.fixture
def db(state_url: str) -> Database:
    return Database(state_url)


@pytest.fixture
def ratings(db: Database) -> FeedbackStore:
    return FeedbackStore(db)


@pytest.fixture
def profiles(db: Database) -> ProfileStore:
    return ProfileStore(db)


def rate(
    store: FeedbackStore, prompt: str, response: str, rating: str, user: str = "ana", **extra: Any
) -> Feedback:
    return store.add(user=user, prompt=prompt, response=response, rating=rating, **extra)  # type: ignore[arg-type]


def fb(
    comment: str | None = None, rating: str = "down", at: float = 0.0, response: str = "answer", user: str = "ana"
) -> Feedback:
    """A rating for the pure functions; ``at`` orders them."""
    return Feedback(
        id=int(at * 1000), user=user, prompt="q", response=response, rating=rating, comment=comment,
        conversation_id=None, message_id=None, context=None, sources=(), model=None, created_at=at,
    )


def bullets(*lines: str) -> str:
    return "\n".join(f"- {line}" for line in lines)


# Storing ratings ---------------------------------------------------------------------------


def test_a_rating_keeps_every_field(ratings: FeedbackStore) -> None:
    saved = ratings.add(
        user=" ana ", prompt="  What is X? ", response="X is Y [1].", rating="up", comment=" good ",
        conversation_id="c1", message_id=7, context={"passages": ["X is Y."]},
        sources=[{"source": "x.pdf", "page": 1}], model="qwen",
    )
    assert isinstance(saved.id, int) and saved.created_at > 0
    assert (saved.user, saved.prompt, saved.response) == ("ana", "What is X?", "X is Y [1].")
    assert (saved.rating, saved.comment) == ("up", "good")
    assert (saved.conversation_id, saved.message_id, saved.model) == ("c1", 7, "qwen")
    assert saved.context == {"passages": ["X is Y."]} and saved.sources == ({"source": "x.pdf", "page": 1},)
    assert ratings.list() == [saved] and ratings.list("ana") == [saved] and ratings.list("bob") == []


def test_rerating_a_message_replaces_the_earlier_rating(ratings: FeedbackStore) -> None:
    first = rate(ratings, "q", "a", "up", message_id=1)
    second = rate(ratings, "q", "a", "down", message_id=1, comment="too long")
    assert second.id == first.id and ratings.list() == [second]
    assert second.rating == "down" and second.comment == "too long" and second.created_at >= first.created_at
    rate(ratings, "q", "a", "up", message_id=1, user="bob")  # another user's rating is separate
    rate(ratings, "q", "a", "up")  # and without a message id every rating is kept
    rate(ratings, "q", "a", "up")
    assert len(ratings.list()) == 4 and len(ratings.list("ana")) == 3


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"rating": "meh"}, "expected 'up' or 'down'"),
        ({"prompt": "  "}, "prompt of a rating is empty"),
        ({"user": ""}, "user name is empty"),
        ({"comment": "x" * 2001}, "at most 2000"),
        ({"response": None}, "must be text"),
    ],
)
def test_invalid_ratings_are_rejected(ratings: FeedbackStore, kwargs: dict[str, Any], error: str) -> None:
    values = {"user": "ana", "prompt": "q", "response": "a", "rating": "up", **kwargs}
    with pytest.raises(ValueError, match=error):
        ratings.add(**values)


def test_delete_a_rating(ratings: FeedbackStore) -> None:
    mine = rate(ratings, "q", "a", "up")
    theirs = rate(ratings, "q", "a", "up", user="bob")
    with pytest.raises(NotFound):
        ratings.delete(theirs.id, user="ana")  # not ana's
    ratings.delete(mine.id, user="ana")
    ratings.delete(theirs.id)
    assert ratings.list() == []
    with pytest.raises(NotFound):
        ratings.delete(mine.id)


def test_ratings_survive_a_restart_and_share_the_history_file(tmp_path: Path) -> None:
    path = tmp_path / "orchard.sqlite3"
    chat = ConversationStore(path).create("ana")
    rate(FeedbackStore(path), "q", "a", "up", conversation_id=chat.id)
    ProfileStore(path).set("ana", "Answer in French.")
    assert [f.conversation_id for f in FeedbackStore(path).list("ana")] == [chat.id]
    assert ProfileStore(path).get("ana") == "- Answer in French."
    assert ConversationStore(path).get("ana", chat.id) == chat


def test_concurrent_ratings_from_threads_do_not_fail(db: Database, tmp_path: Path) -> None:
    stores = [FeedbackStore(db), FeedbackStore(Database(db.url))]  # one shared engine, one of its own
    errors: list[BaseException] = []

    def work(index: int) -> None:
        try:
            for n in range(20):
                rating = "up" if n % 2 else "down"
                rate(stores[index % 2], f"q{n}", f"a{index}", rating, user=f"u{index}", message_id=n)
                ProfileStore(db).update_profile_from_feedback(f"u{index}")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == [] and len(FeedbackStore(db).list()) == 120


# Exports -----------------------------------------------------------------------------------


def test_a_prompt_rated_once_gives_no_dpo_pair(ratings: FeedbackStore) -> None:
    rate(ratings, "q", "a", "up")
    rate(ratings, "other", "b", "down")
    assert ratings.export("dpo") == []


def test_two_ups_give_no_dpo_pair(ratings: FeedbackStore) -> None:
    rate(ratings, "q", "a", "up")
    rate(ratings, "q", "b", "up")
    assert ratings.export("dpo") == []


def test_an_up_and_a_down_give_one_pair(ratings: FeedbackStore) -> None:
    rate(ratings, "What is X?", "bad", "down")
    rate(ratings, "  What  is\nX? ", "good", "up")  # the same prompt after whitespace normalisation
    rate(ratings, "what is x?", "other", "up")  # case differs: another prompt
    assert ratings.export("dpo") == [{"prompt": "What is X?", "chosen": "good", "rejected": "bad", "source": "thumbs", "principle": ""}]


def test_two_ups_and_a_down_give_two_pairs(ratings: FeedbackStore) -> None:
    rate(ratings, "q", "good 1", "up")
    rate(ratings, "q", "bad", "down")
    rate(ratings, "q", "good 2", "up")
    assert ratings.export("dpo") == [
        {"prompt": "q", "chosen": "good 1", "rejected": "bad", "source": "thumbs", "principle": ""},
        {"prompt": "q", "chosen": "good 2", "rejected": "bad", "source": "thumbs", "principle": ""},
    ]


def test_every_pair_of_distinct_responses_and_contested_ones_are_left_out(ratings: FeedbackStore) -> None:
    for response, rating in [("u1", "up"), ("u2", "up"), ("d1", "down"), ("d2", "down"), ("d3", "down")]:
        rate(ratings, "q", response, rating)
    rate(ratings, "q", "u1", "up")  # the same response again: no duplicate pairs
    assert len(ratings.export("dpo")) == 6
    rate(ratings, "q", "d3", "up", user="bob")  # d3 is now both liked and disliked
    assert len(ratings.export("dpo")) == 4
    assert all(row["chosen"] != row["rejected"] for row in ratings.export("dpo"))


def test_exports_filter_by_user(ratings: FeedbackStore) -> None:
    rate(ratings, "q", "ana good", "up")
    rate(ratings, "q", "ana bad", "down")
    rate(ratings, "q", "bob good", "up", user="bob")
    rate(ratings, "r", "bob only", "down", user="bob")
    assert ratings.export("dpo", user="ana") == [{"prompt": "q", "chosen": "ana good", "rejected": "ana bad", "source": "thumbs", "principle": ""}]
    assert ratings.export("dpo", user="bob") == []  # bob rated each prompt once
    assert len(ratings.export("dpo")) == 2  # unfiltered: all ratings of the prompt
    assert ratings.export("sft", user="bob") == [{"prompt": "q", "completion": "bob good"}]
    assert [row["user"] for row in ratings.export("jsonl", user="bob")] == ["bob", "bob"]
    assert ratings.export("jsonl", user="carol") == []


def test_sft_has_only_the_up_rated_answers(ratings: FeedbackStore) -> None:
    rate(ratings, "q1", "good", "up")
    rate(ratings, "q1", "bad", "down")
    rate(ratings, "q2", "fine", "up")
    rate(ratings, "q2", "fine", "up")  # an exact duplicate is written once
    assert ratings.export("sft") == [
        {"prompt": "q1", "completion": "good"},
        {"prompt": "q2", "completion": "fine"},
    ]


def test_jsonl_has_every_rating_with_all_fields(ratings: FeedbackStore) -> None:
    rate(ratings, "q", "a", "up", comment="nice", sources=["s.pdf"], model="m", context="passages", message_id=3)
    rate(ratings, "q", "b", "down")
    rows = ratings.export("jsonl")
    assert len(rows) == 2
    assert set(rows[0]) == {
        "id", "user", "prompt", "response", "rating", "comment", "conversation_id", "message_id",
        "context", "sources", "model", "created_at", "source",
    }
    assert rows[0]["sources"] == ["s.pdf"] and rows[0]["context"] == "passages" and rows[0]["comment"] == "nice"
    assert rows[0]["source"] == "thumbs"
    assert rows[0]["created_at"].endswith("+00:00")
    json.dumps(rows)  # plain JSON


def test_an_unknown_format_names_the_allowed_ones(ratings: FeedbackStore, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="dpo, sft, jsonl"):
        ratings.export("csv")
    with pytest.raises(ValueError, match="dpo, sft, jsonl"):
        ratings.write_export("parquet", tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_the_dpo_file_has_the_columns_trl_reads(ratings: FeedbackStore, tmp_path: Path) -> None:
    """TRL's standard preference format: string columns prompt, chosen and rejected, as read by
    ``datasets.load_dataset("json", data_files=...)`` (one JSON object per line)."""
    rate(ratings, "Wie geht's?", "Gut, danke — und dir?", "up")
    rate(ratings, "Wie geht's?", "Keine Ahnung.", "down")
    rate(ratings, "Wie geht's?", 'Say "hi"\nthen leave.', "down")
    rate(ratings, "once", "x", "up")
    target = tmp_path / "exports" / "dpo.jsonl"
    assert ratings.write_export("dpo", target) == 2
    lines = target.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 2
    for line in lines:
        row = json.loads(line)
        assert set(row) == {"prompt", "chosen", "rejected", "source", "principle"}
        assert all(isinstance(value, str) for value in row.values()) and row["source"] == "thumbs"
    assert json.loads(lines[1])["rejected"] == 'Say "hi"\nthen leave.'
    assert "Gut, danke — und dir?" in lines[0]  # UTF-8, not escaped


def test_write_export_sft_and_jsonl_return_the_row_count(ratings: FeedbackStore, tmp_path: Path) -> None:
    rate(ratings, "q", "a", "up")
    rate(ratings, "q", "b", "down")
    assert ratings.write_export("sft", tmp_path / "sft.jsonl") == 1
    written = (tmp_path / "sft.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in written] == [{"prompt": "q", "completion": "a"}]
    assert ratings.write_export("jsonl", tmp_path / "all.jsonl") == 2
    assert ratings.write_export("dpo", tmp_path / "dpo.jsonl", user="bob") == 0
    assert (tmp_path / "dpo.jsonl").read_text() == ""


# Deriving a profile ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("comment", "line"),
    [
        ("Way too long.", SHORT),
        ("be more concise", SHORT),
        ("so verbose", SHORT),
        ("too short", DETAIL),
        ("more detail please", DETAIL),
        ("can you elaborate?", DETAIL),
        ("show code", CODE),
        ("an example would help", CODE),
        ("too much code", NO_CODE),
        ("cite more", CITE),
        ("which source says that?", CITE),
        ("add references", CITE),
        ("simpler please", PLAIN),
        ("too much jargon", PLAIN),
        ("I'm a beginner", PLAIN),
        ("too basic", EXPERT),
        ("too formal", CASUAL),
        ("too casual for a report", FORMAL),
    ],
)
def test_each_comment_rule(comment: str, line: str) -> None:
    assert derive_profile([fb(comment)]) == f"- {line}"


def test_no_comments_and_unrelated_comments_give_no_profile() -> None:
    assert derive_profile([]) == ""
    assert derive_profile([fb(), fb("thanks!", "up"), fb("wrong year", at=1)]) == ""
    assert derive_profile([fb("for example, the year is wrong")]) == ""  # "for example" is not a wish


def test_several_rules_are_listed_in_a_fixed_order() -> None:
    comments = [fb("cite more", at=1), fb("too long, and show code", at=2), fb("jargon", at=3)]
    assert derive_profile(comments) == bullets(SHORT, CODE, CITE, PLAIN)
    assert derive_profile(reversed(comments)) == derive_profile(comments)


def test_the_latest_comment_wins_between_opposing_rules() -> None:
    assert derive_profile([fb("too long", at=1), fb("more detail please", at=2)]) == bullets(DETAIL)
    assert derive_profile([fb("more detail please", at=1), fb("too long", at=2)]) == bullets(SHORT)
    # input order does not matter, time does
    assert derive_profile([fb("too long", at=2), fb("more detail please", at=1)]) == bullets(SHORT)
    assert derive_profile([fb("too formal", at=1), fb("too casual", at=2)]) == bullets(FORMAL)
    assert derive_profile([fb("show code", at=1), fb("too much code", at=2)]) == bullets(NO_CODE)
    # within one comment, the last wish wins
    assert derive_profile([fb("too short at first, now too long")]) == bullets(SHORT)
    # a later comment on another axis does not reset this one
    assert derive_profile([fb("too long", at=1), fb("cite more", at=2)]) == bullets(SHORT, CITE)


def test_answer_lengths_decide_only_without_a_comment_about_length() -> None:
    long_downs = [fb(response="x" * 900, at=i) for i in range(3)]
    short_up = fb(rating="up", response="x" * 100, at=5)
    assert derive_profile([*long_downs, short_up]) == bullets(SHORT)
    assert derive_profile([*long_downs[:2], short_up]) == ""  # too few ratings to tell
    short_downs = [fb(response="x" * 50, at=i) for i in range(3)]
    assert derive_profile([*short_downs, fb(rating="up", response="x" * 400, at=5)]) == bullets(DETAIL)
    assert derive_profile([*long_downs, short_up, fb("more detail", at=9)]) == bullets(DETAIL)


def test_profile_instructions() -> None:
    assert profile_instructions("") == "" and profile_instructions(" \n - \n") == ""
    assert profile_instructions("- Short answers.\nAnswer in French.") == (
        "The user has said they prefer:\n- Short answers.\n- Answer in French."
    )


# The profile store -------------------------------------------------------------------------


def test_a_profile_is_derived_from_the_users_own_ratings(
    ratings: FeedbackStore, profiles: ProfileStore
) -> None:
    assert profiles.get("ana") == ""
    rate(ratings, "q", "a", "down", comment="too long")
    rate(ratings, "q", "a", "down", comment="cite more", user="bob")
    assert profiles.update_profile_from_feedback("ana") == bullets(SHORT)
    assert profiles.get("ana") == bullets(SHORT)
    assert profiles.get("bob") == ""  # never shared: bob's profile is computed from bob's ratings
    assert profiles.update_profile_from_feedback("bob") == bullets(CITE)
    assert profiles.get("ana") == bullets(SHORT)


def test_manual_lines_are_kept_when_the_profile_is_recomputed(
    ratings: FeedbackStore, profiles: ProfileStore
) -> None:
    rate(ratings, "q", "a", "down", comment="too long", message_id=1)
    profiles.update_profile_from_feedback("ana")
    profiles.set("ana", profiles.get("ana") + "\nAnswer in French.")
    assert profiles.get("ana") == bullets("Answer in French.", SHORT)

    rate(ratings, "q", "a", "down", comment="more detail, and cite", message_id=2)
    assert profiles.update_profile_from_feedback("ana") == bullets("Answer in French.", DETAIL, CITE)
    assert "Give more detail." in profile_instructions(profiles.get("ana"))


def test_an_edited_derived_line_becomes_the_users_own(ratings: FeedbackStore, profiles: ProfileStore) -> None:
    rate(ratings, "q", "a", "down", comment="too long", message_id=1)
    profiles.update_profile_from_feedback("ana")
    profiles.set("ana", "- Keep answers to one sentence.")
    rate(ratings, "q", "a", "down", comment="cite more", message_id=2)
    assert profiles.update_profile_from_feedback("ana") == bullets("Keep answers to one sentence.", CITE)


def test_a_derived_line_the_user_deleted_does_not_come_back(
    ratings: FeedbackStore, profiles: ProfileStore
) -> None:
    rate(ratings, "q", "a", "down", comment="too long, show code")
    profiles.update_profile_from_feedback("ana")
    assert profiles.get("ana") == bullets(SHORT, CODE)
    profiles.set("ana", bullets(CODE))  # the user removed the length line
    rate(ratings, "q", "b", "down", comment="still too long")
    assert profiles.update_profile_from_feedback("ana") == bullets(CODE)


def test_a_manual_line_overrides_the_opposite_derived_one(
    ratings: FeedbackStore, profiles: ProfileStore
) -> None:
    profiles.set("ana", DETAIL)
    rate(ratings, "q", "a", "down", comment="too long")
    assert profiles.update_profile_from_feedback("ana") == bullets(DETAIL)


def test_profiles_are_validated_and_capped(profiles: ProfileStore) -> None:
    with pytest.raises(ValueError, match=f"at most {PROFILE_MAX_CHARS}"):
        profiles.set("ana", "x" * (PROFILE_MAX_CHARS + 1))
    with pytest.raises(ValueError, match="must be text"):
        profiles.set("ana", None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="user name"):
        profiles.get(" ")
    text = "\n".join(["x" * 60] * 1 + [f"line {i} " + "y" * 50 for i in range(8)])
    assert len(profiles.set("ana", text)) <= PROFILE_MAX_CHARS


def test_derived_lines_that_do_not_fit_are_left_out(ratings: FeedbackStore, profiles: ProfileStore) -> None:
    manual = "\n".join(f"- rule {i} " + "z" * 90 for i in range(6))
    assert len(manual) <= PROFILE_MAX_CHARS
    profiles.set("ana", manual)
    rate(ratings, "q", "a", "down", comment="too long")
    assert profiles.update_profile_from_feedback("ana") == manual


def test_profiles_are_per_user_and_deletable(ratings: FeedbackStore, profiles: ProfileStore) -> None:
    profiles.set("ana", "Answer in French.")
    profiles.set("bob", "Answer in German.")
    rate(ratings, "q", "a", "down", comment="too long")
    profiles.update_profile_from_feedback("ana")
    profiles.delete("ana")
    assert profiles.get("ana") == "" and profiles.get("bob") == "- Answer in German."
    # ratings given before the deletion no longer shape the profile ...
    assert profiles.update_profile_from_feedback("ana") == ""
    assert len(ratings.list("ana")) == 1  # ... but stay as training data
    # ... later ones start a new profile
    rate(ratings, "q", "b", "down", comment="cite more")
    assert profiles.update_profile_from_feedback("ana") == bullets(CITE)
    profiles.delete("nobody")  # deleting an absent profile is fine


def test_saving_the_shown_text_does_not_dismiss_derived_lines_the_user_never_saw(
    ratings: FeedbackStore, profiles: ProfileStore
) -> None:
    profiles.set("ana", DETAIL)
    rate(ratings, "q", "a", "down", comment="too long")
    profiles.update_profile_from_feedback("ana")
    assert profiles.get("ana") == bullets(DETAIL)  # SHORT is derived but hidden by the user's line
    profiles.set("ana", "Answer in French.")  # the user replaces their line
    assert profiles.get("ana") == bullets("Answer in French.", SHORT)
