"""Best-of-n answers and the preference pairs of every source (issue 11, items 1 and 3), on a scripted model.

The reward model here is a stand-in with a known taste (longer is better) or the real one
trained on the fake embedder; what is tested is the path: candidates generated, scored, picked,
streamed; the others stored as alternatives; preferring one of them, regenerating, and the
critique's revision each become a pair with its source in the DPO export.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from orchard.chains.best_of import Candidates, best_of_n, pick
from orchard.components import RewardScorer
from orchard.errors import OrchardError
from orchard.events import CandidatesRanked, Done, Token
from orchard.usecases import AnswerRequest
from tests.fakes import ScriptedChatModel, scripted_orchard

PRUNING = "# Pruning\n\nPrune pear trees in late winter, removing crossing branches.\n"
QUESTION = "When should I prune pear trees?"


def with_docs(orchard: Any, tmp_path: Path) -> Any:
    (tmp_path / "docs").mkdir(exist_ok=True)
    (tmp_path / "docs" / "pruning.md").write_text(PRUNING)
    orchard.library.ingest([str(tmp_path / "docs")], progress=False)
    return orchard


def longest_wins(orchard: Any) -> None:
    """A reward model with a known taste: longer answers score higher."""
    orchard.components.reward_scorer = lambda user, question: RewardScorer(
        name="longest-wins", score=lambda texts: [float(len(t)) for t in texts]
    )


# --- the picker ---------------------------------------------------------------------------------


def test_best_of_n_asks_n_times_scores_and_returns_the_best_recording_all() -> None:
    model = ScriptedChatModel.with_replies("short", "the longest reply", "medium one")
    seen: list[Candidates] = []
    picker = best_of_n(model, n=3, score=lambda texts: [float(len(t)) for t in texts], scorer_name="len", record=seen.append)
    assert picker.invoke("Say something").content == "the longest reply"
    assert len(model.calls) == 3  # the same prompt each time (llama.cpp reuses it from its KV cache)
    assert all(call == model.calls[0] for call in model.calls)
    [record] = seen
    assert record.texts == ["short", "the longest reply", "medium one"] and record.picked == 1 and record.scorer == "len"


def test_a_server_that_takes_n_gets_the_sampled_candidates_in_one_request() -> None:
    from langchain_core.language_models import BaseChatModel
    from langchain_core.messages import AIMessage
    from langchain_core.outputs import ChatGeneration, ChatResult
    from pydantic import Field

    class NModel(BaseChatModel):  # vLLM's `n`: one request, n choices
        requests: list = Field(default_factory=list)

        @property
        def _llm_type(self) -> str:
            return "n-model"

        def _generate(self, messages, stop=None, run_manager=None, **kwargs):
            self.requests.append(kwargs)
            n = kwargs.get("n", 1)
            sampled = n > 1  # the model's own answer "x"; sampled ones "xx", "xxx", ...
            return ChatResult(generations=[ChatGeneration(message=AIMessage(content="x" * (i + 1 + sampled))) for i in range(n)])

    model = NModel()
    picker = best_of_n(model, n=3, score=lambda texts: [float(len(t)) for t in texts], one_request=True)
    assert picker.invoke("hi").content == "xxx"  # of "x" (its own), "xx" and "xxx" (sampled in one request)
    assert len(model.requests) == 2 and model.requests[1]["n"] == 2 and model.requests[1]["temperature"] == 0.8


def test_without_a_reward_model_the_models_own_answer_is_kept() -> None:
    model = ScriptedChatModel.with_replies("first", "second")
    seen: list[Candidates] = []
    assert best_of_n(model, n=2, score=None, record=seen.append).invoke("hi").content == "first"
    assert seen[0].scores is None and seen[0].picked == 0 and seen[0].scorer == "none"
    assert pick([1.0, 3.0, 3.0]) == 1 and pick(None) == 0


def test_best_of_one_is_the_model_itself_and_too_many_is_refused() -> None:
    model = ScriptedChatModel.with_replies("x")
    assert best_of_n(model, n=1, score=None) is model
    with pytest.raises(ValueError, match="at most 8"):
        best_of_n(model, n=9, score=None)
    with pytest.raises(OrchardError, match="best-of 9"):
        AnswerRequest(question="q", best_of=9)


# --- through the answer path --------------------------------------------------------------------


def test_a_rag_answer_best_of_three_streams_the_pick_and_reports_every_candidate(tmp_path: Path) -> None:
    replies = ["Prune in winter [1].", "Prune pear trees in late winter, removing crossing branches [1].", "Late winter [1]."]
    orchard = with_docs(scripted_orchard(tmp_path / "data", *replies), tmp_path)
    longest_wins(orchard)
    events = list(orchard.answers.stream(AnswerRequest(question=QUESTION, mode="rag", best_of=3)))
    ranked = next(e for e in events if isinstance(e, CandidatesRanked))
    assert ranked.texts == tuple(replies) and ranked.picked == 1 and ranked.scorer == "longest-wins"
    assert "".join(e.text for e in events if isinstance(e, Token)) == replies[1]
    result = events[-1].result
    assert isinstance(events[-1], Done) and result.answer == replies[1] and result.cited == (1,)
    assert result.as_dict()["candidates"]["picked"] == 1


def test_the_setting_turns_best_of_on_and_chat_mode_uses_it_too(tmp_path: Path) -> None:
    orchard = scripted_orchard(tmp_path / "data", "Hi.", "Hello there, friend!", best_of=2)
    longest_wins(orchard)
    result = orchard.answers.ask(AnswerRequest(question="hello", mode="chat"))
    assert result.answer == "Hello there, friend!" and result.candidates is not None and len(result.candidates.texts) == 2


# --- stored: alternatives and pairs -------------------------------------------------------------


def test_candidates_not_picked_are_kept_and_preferring_one_is_a_best_of_n_pair(tmp_path: Path) -> None:
    replies = ["Winter [1].", "Prune pear trees in late winter [1].", "In late winter, remove crossing branches too [1]."]
    orchard = with_docs(scripted_orchard(tmp_path / "data", *replies), tmp_path)
    longest_wins(orchard)
    chats = orchard.conversations
    conversation = chats.create("ann", mode="rag")
    result = chats.ask("ann", conversation.id, QUESTION, best_of=3).result()
    assert result.answer == replies[2]
    [_, answer] = chats.messages("ann", conversation.id)
    assert answer.id == result.message_id and answer.content == replies[2]  # the pick is what is shown
    others = {v.content: v for v in answer.alternatives}
    assert set(others) == {replies[0], replies[1]}
    assert others[replies[1]].meta["best_of"]["picked_message_id"] == answer.id
    # Ann opens an alternative and prefers it: a best-of-n pair, chosen = hers, rejected = the pick.
    chats.rate("ann", conversation.id, others[replies[1]].id, "up")
    pairs = orchard.components.feedback.export("dpo", user="ann")
    assert {"prompt": QUESTION, "chosen": replies[1], "rejected": replies[2], "source": "best-of-n", "principle": ""} in pairs
    assert orchard.components.feedback.export("dpo", user="bob") == []  # nobody else's


def test_regenerate_and_thumbs_is_a_regenerate_pair(tmp_path: Path) -> None:
    orchard = with_docs(scripted_orchard(tmp_path / "data", "Bad answer [1].", "Prune in late winter [1]."), tmp_path)
    chats = orchard.conversations
    conversation = chats.create("ann", mode="rag")
    first = chats.ask("ann", conversation.id, QUESTION).result()
    second = chats.regenerate("ann", conversation.id, first.message_id).result()
    chats.rate("ann", conversation.id, first.message_id, "down")
    chats.rate("ann", conversation.id, second.message_id, "up")
    [pair] = orchard.components.feedback.export("dpo", user="ann")
    assert (pair["chosen"], pair["rejected"], pair["source"]) == ("Prune in late winter [1].", "Bad answer [1].", "regenerate")


def test_a_revision_that_fixed_a_failed_principle_is_an_ai_feedback_pair(tmp_path: Path) -> None:
    from orchard.constitution import load_constitution

    principles = load_constitution().principles
    # draft, then one critique per principle (the first fails), then the revision
    critiques = ["YES. It gives no source."] + ["NO. Fine."] * (len(principles) - 1)
    orchard = scripted_orchard(tmp_path / "data", "A draft answer.", *critiques, "A revised answer.")
    chats = orchard.conversations
    conversation = chats.create("ann", mode="chat")
    result = chats.ask("ann", conversation.id, "Tell me about pears", critique=True).result()
    failed = [c.principle for c in result.critiques if c.needs_revision]
    assert failed and result.draft == "A draft answer." and result.answer != result.draft
    [pair] = orchard.components.feedback.export("dpo", user="ann")
    assert pair == {"prompt": "Tell me about pears", "chosen": result.answer, "rejected": "A draft answer.",
                    "source": "ai-feedback", "principle": ", ".join(failed)}  # fmt: skip


def test_stored_pairs_check_their_input(tmp_path: Path) -> None:
    feedback = scripted_orchard(tmp_path / "data").components.feedback
    with pytest.raises(ValueError, match="unknown pair source"):
        feedback.add_pair(user="ann", source="thumbs", prompt="q", chosen="a", rejected="b")
    with pytest.raises(ValueError, match="two different"):
        feedback.add_pair(user="ann", source="best-of-n", prompt="q", chosen="a", rejected="a")
    feedback.add_pair(user="ann", source="best-of-n", prompt="q", chosen="a", rejected="b")
    feedback.add_pair(user="ann", source="best-of-n", prompt="q", chosen="a", rejected="b")  # once
    assert len(feedback.stored_pairs("ann")) == 1 and feedback.stored_pairs("bob") == []
