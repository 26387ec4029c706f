"""``orchard reward train|list|activate|score`` as a user runs them (the packaged embedder, the
state database under the test's ORCHARD_DATA_DIR), and the reward model's gate."""

from __future__ import annotations

import dataclasses
import json

from tests.unit.test_cli_feedback import add, invoke

SHORT, LONG = "In late winter.", "Pruning is a subject with a great many aspects worth considering at length, and"


def rate_short_over_long(user: str, n: int) -> None:
    for i in range(n):
        add(user, f"When do I prune tree {i}?", f"{SHORT} ({i})", "up")
        add(user, f"When do I prune tree {i}?", f"{LONG} {i} " * 3, "down")


def test_train_list_and_score_for_one_user(tmp_path) -> None:
    rate_short_over_long("ann", 8)
    trained = invoke("reward", "train", "--user", "ann", "--json")
    assert trained.exit_code == 0, trained.output
    result = json.loads(trained.stdout)
    assert result["version"] >= 1 and result["n_pairs"] == 8 and result["heldout_pair_accuracy"] == 1.0
    assert "ann" not in result["slot"]  # the user's folder is a hash
    listed = json.loads(invoke("reward", "list", "--user", "ann", "--json").stdout)
    assert [row["active"] for row in listed][-1] is True
    scored = json.loads(invoke("reward", "score", "When do I prune the pear?", "In late winter.", LONG * 3, "--user", "ann",
                               "--json").stdout)  # fmt: skip
    assert scored["best"] == 0 and scored["model"].startswith("your reward model v")
    assert invoke("reward", "list", "--user", "bob").stdout.startswith("no reward model yet")


def test_training_without_enough_feedback_says_what_to_do() -> None:
    add("cid", "Q?", "A.", "up")
    result = runner_fail = invoke("reward", "train", "--user", "cid")
    assert runner_fail.exit_code == 1 and "not enough feedback" in result.output


def test_a_worse_new_version_does_not_become_active(tmp_path) -> None:
    from orchard.cli import command_orchard

    rate_short_over_long("ann", 8)
    orchard = command_orchard()
    trainer, rewards = orchard.components.reward_trainer, orchard.components.rewards
    first = trainer.retrain("ann")
    assert first.active == first.version
    second = trainer.retrain("ann")
    worse = dataclasses.replace(second.report, heldout_pair_accuracy=0.5)
    active, why = trainer._gate("ann", first.version, second.version, worse)
    assert active == first.version and rewards.active("ann") == first.version and "stays active" in why
    active, _ = trainer._gate("ann", first.version, second.version, second.report)  # as good: the new one
    assert active == second.version and rewards.active("ann") == second.version
