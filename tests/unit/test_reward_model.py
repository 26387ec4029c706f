"""The reward model: learns planted tastes, stores versions per user, retrains in the background."""

from __future__ import annotations

import fcntl
import os
import random
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from orchard.db import Database
from orchard.feedback import FeedbackStore
from orchard.reward import (
    EmbedderMismatch,
    NotEnoughFeedback,
    Pair,
    Point,
    RetrainBusy,
    RewardModel,
    RewardStore,
    RewardTrainer,
    TrainConfig,
    user_slot,
)
from orchard.reward.features import hand_features, sentence_count
from tests.fakes import HashEmbeddings

TASKS = [
    "shuffle a list", "read a CSV file", "parse JSON text", "sort a dictionary by value", "copy a file",
    "delete a folder", "get the current time", "format a date", "split a string", "join paths",
    "count words", "merge two dicts", "reverse a list", "read a gzip file", "make a temp file",
    "hash a password", "send an HTTP request", "run a subprocess", "time a function", "zip two lists",
    "flatten a list", "remove duplicates", "read environment variables", "parse arguments",
    "write a log file", "compress data", "encode base64", "round a number", "find a substring",
    "walk a directory", "check a file exists", "pretty print a dict", "make a dataclass",
    "cache a function", "read a TOML file", "open a URL", "sleep for a second", "generate a UUID",
    "pick a random item", "convert to bytes",
]  # fmt: skip
FILLER = [
    "This works on any recent Python.", "It is part of the standard library.", "The docs describe the details.",
    "It returns a new object.", "Errors raise an exception.", "It is fast enough for most uses.",
    "You can pass options as keywords.", "The result can be reused.",
]  # fmt: skip


def answer(task: str, rng: random.Random, *, code: bool, sentences: int = 2) -> str:
    body = [f"To {task}, use the matching function.", *rng.sample(FILLER, sentences - 1)]
    text = " ".join(body)
    if code:
        text += f"\n\n```python\n# {task}\nresult = do_it()\nprint(result)\n```"
    return text


def code_pairs(tasks: list[str], seed: int) -> list[Pair]:
    """Pairs from a rater who prefers an answer with a code example (other things random)."""
    rng = random.Random(seed)
    pairs = []
    for task in tasks:
        for _ in range(2):
            with_code = answer(task, rng, code=True, sentences=rng.randint(1, 4))
            without = answer(task, rng, code=False, sentences=rng.randint(1, 4))
            pairs.append(Pair(f"How do I {task}?", with_code, without))
    return pairs


def accuracy(model: RewardModel, pairs: list[Pair]) -> float:
    right = 0
    for pair in pairs:
        chosen, rejected = model.score(pair.prompt, [pair.chosen, pair.rejected])
        right += chosen > rejected
    return right / len(pairs)


def test_learns_a_code_example_taste_from_pairs() -> None:
    model, report = RewardModel.train(code_pairs(TASKS[:30], seed=1), embed=HashEmbeddings())
    assert accuracy(model, code_pairs(TASKS[30:], seed=2)) > 0.9  # questions it never saw
    assert report.n_pairs == 60 and report.heldout_pairs > 0
    assert report.heldout_pair_accuracy is not None and report.heldout_pair_accuracy > 0.9


def test_learns_a_word_taste_through_the_embeddings_alone() -> None:
    """A rule no hand-made feature names (answers recommending pathlib over os.path): only the
    embedding block can carry it."""
    rng = random.Random(3)

    def pairs(tasks: list[str]) -> list[Pair]:
        rows = []
        for task in tasks:
            base = answer(task, rng, code=False, sentences=2)
            rows.append(Pair(f"How do I {task}?", base + " Prefer pathlib Path objects.", base + " Prefer os path strings."))
        return rows

    model, _ = RewardModel.train(pairs(TASKS[:30]), embed=HashEmbeddings(), config=TrainConfig(embedding="answer"))
    assert accuracy(model, pairs(TASKS[30:])) > 0.9
    hand_only, _ = RewardModel.train(pairs(TASKS[:30]), embed=HashEmbeddings(), config=TrainConfig(embedding="none"))
    assert accuracy(hand_only, pairs(TASKS[30:])) <= 0.5  # the hand features cannot see it: ties


def test_learns_from_thumbs_alone() -> None:
    rng = random.Random(4)
    points = []
    for task in TASKS[:30]:
        points.append(Point(f"How do I {task}?", answer(task, rng, code=False, sentences=1), "up"))
        points.append(Point(f"How do I {task}?", answer(task, rng, code=False, sentences=5), "down"))
    model, report = RewardModel.train([], points, embed=HashEmbeddings())
    task = TASKS[35]
    short, long = model.score(
        f"How do I {task}?", [answer(task, rng, code=False, sentences=1), answer(task, rng, code=False, sentences=5)]
    )
    assert short > long
    assert report.heldout_point_accuracy is not None and report.heldout_point_accuracy > 0.9
    up, down = model.probability_up(
        f"How do I {task}?", [answer(task, rng, code=False, sentences=1), answer(task, rng, code=False, sentences=5)]
    )
    assert up > 0.5 > down


def test_refuses_to_train_without_a_preference() -> None:
    with pytest.raises(NotEnoughFeedback):
        RewardModel.train([], [Point("q", "a", "up"), Point("q", "b", "up")], embed=HashEmbeddings())


def test_the_split_is_fixed_so_reports_repeat() -> None:
    pairs = code_pairs(TASKS[:20], seed=5)
    _, first = RewardModel.train(pairs, embed=HashEmbeddings())
    _, second = RewardModel.train(pairs, embed=HashEmbeddings())
    assert (first.heldout_pairs, first.heldout_pair_accuracy) == (second.heldout_pairs, second.heldout_pair_accuracy)


def test_save_load_round_trip_scores_the_same(tmp_path: Path) -> None:
    model, _ = RewardModel.train(code_pairs(TASKS[:10], seed=6), embed=HashEmbeddings())
    model.save(tmp_path / "m")
    loaded = RewardModel.load(tmp_path / "m", embed=HashEmbeddings())
    answers = ["Use it.", "Use it:\n\n```python\nx = 1\n```", "I do not know."]
    assert loaded.score("How do I x?", answers) == model.score("How do I x?", answers)
    assert loaded.report is not None and loaded.report.n_pairs == 20


def test_loading_with_another_embedder_is_refused(tmp_path: Path) -> None:
    model, _ = RewardModel.train(code_pairs(TASKS[:10], seed=7), embed=HashEmbeddings())
    model.save(tmp_path / "m")
    with pytest.raises(EmbedderMismatch, match="fake-hash"):
        RewardModel.load(tmp_path / "m", embed=HashEmbeddings(name="other-embedder"))
    same_name = RewardModel.load(tmp_path / "m", embed=HashEmbeddings(dimension=64))  # same name, other size
    with pytest.raises(EmbedderMismatch, match="64-d"):
        same_name.score("q", ["a"])


def test_versions_increase_and_paths_never_hold_the_user_name(tmp_path: Path) -> None:
    store = RewardStore(tmp_path)
    model, _ = RewardModel.train(code_pairs(TASKS[:6], seed=8), embed=HashEmbeddings())
    user = "Ann/../../etc passwd"
    assert store.versions(user) == [] and store.latest(user) is None
    assert [store.save(model, user), store.save(model, user), store.save(model, user)] == [1, 2, 3]
    assert store.versions(user) == [1, 2, 3] and store.latest(user) == 3
    assert store.path(user) == tmp_path / "reward" / user_slot(user) / "v3"
    assert all("Ann" not in str(p) and "passwd" not in str(p) for p in (tmp_path / "reward").rglob("*"))
    assert user_slot(user) != user_slot("ann") and user_slot(None) == "_global"
    assert [row["version"] for row in store.list(user)] == [1, 2, 3]
    loaded = store.load(user, embed=HashEmbeddings())
    assert loaded.score("q", ["a", "b"]) == model.score("q", ["a", "b"])
    assert not [p for p in store.slot_dir(user).iterdir() if p.name.startswith(".tmp-")]


def rate_many(feedback: FeedbackStore, user: str, count: int, *, code_wins: bool, start: int = 0) -> None:
    """``count`` ratings of ``user``: alternately an answer with code and one without, for one task each pair."""
    rng = random.Random(hash((user, start)) & 0xFFFF)
    for i in range(start, start + count):
        task = TASKS[(i // 2) % len(TASKS)]
        with_code = i % 2 == 0
        liked = with_code == code_wins
        feedback.add(user=user, prompt=f"How do I {task}?", response=answer(task, rng, code=with_code),
                     rating="up" if liked else "down")  # fmt: skip


@pytest.fixture
def feedback(tmp_path: Path) -> FeedbackStore:
    return FeedbackStore(Database(tmp_path / "orchard.sqlite3"))


def test_retrains_after_every_n_new_ratings(tmp_path: Path, feedback: FeedbackStore) -> None:
    trainer = RewardTrainer(feedback, RewardStore(tmp_path), embed=HashEmbeddings(), every=4)
    rate_many(feedback, "ann", 3, code_wins=True)
    assert not trainer.due("ann") and trainer.new_ratings("ann") == 3
    rate_many(feedback, "ann", 1, code_wins=True, start=3)
    assert trainer.due("ann")
    result = trainer.retrain("ann")
    assert result.version == 1 and result.report.trained_on == 4
    assert trainer.trained_on("ann") == 4 and not trainer.due("ann")
    rate_many(feedback, "ann", 3, code_wins=True, start=4)
    assert not trainer.due("ann")
    rate_many(feedback, "ann", 1, code_wins=True, start=7)
    assert trainer.due("ann")
    with pytest.raises(ValueError, match="at least 1"):
        RewardTrainer(feedback, RewardStore(tmp_path), embed=HashEmbeddings(), every=0)


def test_a_users_model_is_trained_on_that_users_ratings_only(tmp_path: Path, feedback: FeedbackStore) -> None:
    store = RewardStore(tmp_path)
    trainer = RewardTrainer(feedback, store, embed=HashEmbeddings(), every=1)
    rate_many(feedback, "ann", 20, code_wins=True)
    first = trainer.retrain("ann")
    rate_many(feedback, "bob", 40, code_wins=False)  # the opposite taste, and more of it
    again = trainer.retrain("ann")
    assert first.report.n_points == again.report.n_points == 20
    a1, a2 = store.load("ann", 1, embed=HashEmbeddings()), store.load("ann", 2, embed=HashEmbeddings())
    assert np.array_equal(a1.weights, a2.weights)  # bob's ratings changed nothing of ann's
    bob = trainer.retrain("bob")
    assert bob.report.n_points == 40 and store.versions("ann") == [1, 2] and store.versions("bob") == [1]
    everyone = trainer.retrain(None)
    assert everyone.report.n_points == 60 and store.versions(None) == [1]
    ann_model, bob_model = store.load("ann", embed=HashEmbeddings()), store.load("bob", embed=HashEmbeddings())
    task = TASKS[-1]
    with_code, without = answer(task, random.Random(0), code=True), answer(task, random.Random(0), code=False)
    ann_scores = ann_model.score(f"How do I {task}?", [with_code, without])
    bob_scores = bob_model.score(f"How do I {task}?", [with_code, without])
    assert ann_scores[0] > ann_scores[1] and bob_scores[0] < bob_scores[1]


class SlowEmbeddings(HashEmbeddings):
    """Embeds only once ``release`` is set: a training that cannot finish on its own."""

    def __init__(self) -> None:
        super().__init__()
        self.release, self.started = threading.Event(), threading.Event()

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        self.started.set()
        assert self.release.wait(10)
        return super().embed_documents(texts)


def test_background_retrain_does_not_block_and_never_overlaps(tmp_path: Path, feedback: FeedbackStore) -> None:
    embed = SlowEmbeddings()
    trainer = RewardTrainer(feedback, RewardStore(tmp_path), embed=embed, every=2)
    assert trainer.maybe_retrain_async("ann") is None  # nothing rated yet
    rate_many(feedback, "ann", 4, code_wins=True)
    began = time.perf_counter()
    future = trainer.maybe_retrain_async("ann")
    assert future is not None and time.perf_counter() - began < 0.5
    assert embed.started.wait(5) and not future.done()  # training, blocked inside the embedder
    assert trainer.maybe_retrain_async("ann") is None  # one at a time per slot
    embed.release.set()
    result = future.result(timeout=10)
    assert result.version == 1 and result.report.trained_on == 4
    assert trainer.maybe_retrain_async("ann") is None  # trained on everything: not due
    trainer.close()


def test_another_process_training_the_slot_makes_retrain_skip(tmp_path: Path, feedback: FeedbackStore) -> None:
    store = RewardStore(tmp_path)
    trainer = RewardTrainer(feedback, store, embed=HashEmbeddings(), every=1)
    rate_many(feedback, "ann", 4, code_wins=True)
    folder = store.slot_dir("ann")
    folder.mkdir(parents=True)
    fd = os.open(folder / ".train.lock", os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # flock locks are per open file: this one blocks the trainer's
        with pytest.raises(RetrainBusy):
            trainer.retrain("ann")
    finally:
        os.close(fd)
    assert trainer.retrain("ann").version == 1


@pytest.mark.parametrize(
    ("text", "sentences"),
    [
        ("Use `random.shuffle()` [1]. It works in place [2].", 2),
        ("One sentence without an end", 1),
        ("Intro:\n\n```python\nx = 1. 2\n```\n\nDone.", 2),
        ("", 0),
    ],
)
def test_sentence_count_leaves_code_out(text: str, sentences: int) -> None:
    assert sentence_count(text) == sentences


def test_hand_features_see_code_citations_and_refusals() -> None:
    features = hand_features("How do I shuffle a list?", "Use shuffle [1][3].\n\n```python\nrandom.shuffle(x)\n```")
    assert features["has_code_block"] == 1.0 and features["cites_two_or_more"] == 1.0
    assert hand_features("q", "The documents do not answer this question.")["refusal"] == 1.0
    assert hand_features("How do I shuffle a list?", "How do I shuffle a list?")["restates_question"] == 1.0


def test_a_slot_with_too_little_to_learn_is_not_retried_before_n_more_ratings(tmp_path: Path, feedback: FeedbackStore) -> None:
    trainer = RewardTrainer(feedback, RewardStore(tmp_path), embed=HashEmbeddings(), every=2)
    for i in range(2):
        feedback.add(user="ann", prompt=f"q{i}", response="a", rating="up")
    future = trainer.maybe_retrain_async("ann")
    assert future is not None and isinstance(future.exception(timeout=10), NotEnoughFeedback)
    assert trainer.maybe_retrain_async("ann") is None  # the same ratings: nothing new to learn
    for i in range(2):
        feedback.add(user="ann", prompt=f"r{i}", response="b", rating="down")
    future = trainer.maybe_retrain_async("ann")
    assert future is not None and future.result(timeout=10).version == 1
    trainer.close()


def test_load_for_uses_the_users_active_version_then_the_global_one(tmp_path: Path) -> None:
    store = RewardStore(tmp_path)
    assert store.load_for("ann", embed=HashEmbeddings()) is None
    code_lover, _ = RewardModel.train(code_pairs(TASKS[:8], seed=9), embed=HashEmbeddings())
    swapped = [Pair(p.prompt, p.rejected, p.chosen) for p in code_pairs(TASKS[:8], seed=9)]
    code_hater, _ = RewardModel.train(swapped, embed=HashEmbeddings())
    store.save(code_hater, None)
    probe = ["Use it.", "Use it:\n\n```python\nx = 1\n```"]
    fallback = store.load_for("ann", embed=HashEmbeddings())
    assert fallback is not None and fallback.best("q", probe) == 0  # the global model
    store.save(code_lover, "ann")
    store.save(code_hater, "ann")
    assert store.active("ann") == 2 and store.load_for("ann", embed=HashEmbeddings()).best("q", probe) == 0
    store.activate("ann", 1)
    assert store.active("ann") == 1 and store.load_for("ann", embed=HashEmbeddings()).best("q", probe) == 1
    store.activate("ann", None)
    assert store.active("ann") == 2
