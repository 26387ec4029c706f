"""Best-of-n on the real model server, picked by a reward model trained on the real embedder."""

from __future__ import annotations

import pytest

from orchard.usecases import AnswerRequest

pytestmark = pytest.mark.live


def test_best_of_three_samples_real_candidates_and_the_trained_reward_model_picks(live_orchard) -> None:
    feedback = live_orchard.feedback
    # A user who likes short answers: ten pairs, short up, long down (the reward model's taste to learn).
    for i in range(10):
        prompt = f"Question {i} about pruning fruit trees?"
        feedback.add(user="ann", prompt=prompt, response=f"In late winter {i}.", rating="up")
        feedback.add(user="ann", prompt=prompt, rating="down",
                     response=f"Pruning, which is a very important topic with many aspects {i}, " * 4)  # fmt: skip
    trained = live_orchard.learning.train_reward("ann")
    assert trained["version"] >= 1 and trained["n_pairs"] == 10  # (a background retrain may have come first)
    result = live_orchard.answers.ask(AnswerRequest(question="When should apple trees be pruned?", mode="rag", user="ann",
                                                    best_of=3))  # fmt: skip
    ranked = result.candidates
    assert ranked is not None and len(ranked.texts) == 3 and all(t.strip() for t in ranked.texts)
    assert ranked.scorer == f"your reward model v{trained['version']}" and ranked.scores is not None
    assert ranked.scores[ranked.picked] == max(ranked.scores)
    assert result.answer  # the pick (possibly repaired by the answer checks), with its citations
    assert result.grounded is True, result
