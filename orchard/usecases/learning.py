"""Learning from feedback: each user's reward model (train, list, pin, score).

The reward model (:mod:`orchard.reward`) learns from the user's preferences: thumbs (points),
and pairs from every source the state database keeps (:meth:`FeedbackStore.preference_pairs
<orchard.feedback.FeedbackStore.preference_pairs>`: thumbs, regenerate + thumbs, the critique's
AI feedback, best-of-n overrides). It picks best-of-n candidates
(:mod:`orchard.chains.best_of`) for that user; one user's ratings never train another user's
model (the global model, trained on everyone's, scores for users who have none yet).

A rating in the app or through ``orchard feedback add`` retrains in the background when
``ORCHARD_REWARD_RETRAIN_EVERY`` new ratings came; :meth:`Learning.train_reward` trains now.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from orchard.components import Components
from orchard.errors import OrchardError
from orchard.usecases.answering import AnswerRequest


class Learning:
    """The learning use case over the components' feedback store and reward models."""

    def __init__(self, *, components: Components) -> None:
        self.components = components

    def train_reward(self, user: str | None = None) -> dict[str, Any]:
        """Train the user's (None: the global) reward model now; its version and report.

        Raises:
            orchard.reward.NotEnoughFeedback: the ratings hold no pair and not both an up and a down.
            orchard.reward.RetrainBusy: another process is training the same model.
        """
        result = self.components.reward_trainer.retrain(user)
        return result.to_dict()

    def reward_versions(self, user: str | None = None) -> list[dict[str, Any]]:
        """Every version of the user's (or the global) model, with its held-out accuracy, and which is active."""
        rewards = self.components.rewards
        active = rewards.active(user)
        return [{**row, "active": row["version"] == active} for row in rewards.list(user)]

    def activate_reward(self, user: str | None, version: int | None) -> None:
        """Pin the version best-of-n uses (None: back to the latest)."""
        self.components.rewards.activate(user, version)

    def score(self, prompt: str, answers: Sequence[str], *, user: str | None = None) -> dict[str, Any]:
        """The user's reward model's score for each answer (their model, else the global one).

        Raises:
            orchard.reward.RewardModelError: there is no reward model yet.
        """
        from orchard.reward import RewardModelError

        scorer = self.components.reward_scorer(user, prompt)
        if scorer is None:
            raise RewardModelError("there is no reward model yet — rate some answers, then `orchard reward train`")
        scores = [float(s) for s in scorer.score(list(answers))]
        best = max(range(len(scores)), key=scores.__getitem__) if scores else None
        return {"model": scorer.name, "scores": scores, "best": best}


# --- adapters trained here ----------------------------------------------------------------------

#: Questions and red-team prompts the gate asks each side by default (a bounded run: ~2 x 5 min on 2 cores).
GATE_QUESTIONS = 10


class Tuning:
    """LoRA adapters: train (``sft``, ``dpo``, ``distill``), list, gate, activate, deactivate.

    Training runs here on the CPU (TRL + PEFT over the HF weights of the packaged GGUF,
    :mod:`orchard.tuning`); the result is a GGUF LoRA adapter for llama.cpp and a PEFT folder for
    vLLM (:mod:`orchard.adapters`). An adapter becomes active only through :meth:`activate`,
    which needs a passed :meth:`gate`: the answer evaluation on a held-out question file and the
    red-team set, the adapter side by side with what answers now; it must not be worse on any of
    right-and-cited, harmful declined, benign helped. The report is kept beside the adapter.
    """

    def __init__(self, *, components: Components) -> None:
        self.components = components

    @property
    def settings(self) -> Any:
        return self.components.settings

    # --- training --------------------------------------------------------------------------------

    def rows(self, method: str, *, user: str | None, data: Path | None = None) -> list[dict[str, Any]]:
        """Training rows: ``data`` (JSONL in TRL's layouts), else the user's ratings (``sft``: their
        up-rated answers, ``dpo``: their pairs from every source)."""
        if data is not None:
            rows = [json.loads(line) for line in Path(data).read_text(encoding="utf-8").splitlines() if line.strip()]
        elif method == "dpo":
            rows = self.components.feedback.preference_pairs(user)
        else:
            rows = self.components.feedback.export("sft", user=user)
        if not rows:
            who = f"{user}'s" if user else "the"
            raise OrchardError(f"no {method} rows: {who} ratings give none yet — rate answers, or pass --data FILE")
        return rows

    def distill_rows(self, *, teacher_url: str, teacher_model: str, questions: int,
                     progress: Callable[[int, str], None] | None = None) -> list[dict[str, Any]]:  # fmt: skip
        """Questions written from the user's documents (one per sampled passage) and answered by
        the teacher through Orchard's own RAG chain (cited, from the documents): SFT rows."""
        from orchard.tuning import teacher_rows

        teacher = self.endpoint(teacher_url, teacher_model)
        passages = self._sample_passages(questions)
        asked = []
        for text in passages:
            written = teacher.ask_model(
                "Write one short question that this passage answers. Reply with the question only.\n\n" + text[:1500]
            )
            asked.append(written.strip().splitlines()[0] if written.strip() else "")
        rows, _ = teacher_rows(
            asked, lambda q: _answer_text(teacher.ask(AnswerRequest(question=q, mode="rag"))), progress=progress
        )
        return rows

    def _sample_passages(self, n: int) -> list[str]:
        import random

        store = self.components.store
        ids = [i for source in store.sources() for i in store.chunk_ids(source)]
        if not ids:
            raise OrchardError("the library is empty: distillation writes its questions from your documents — ingest some first")
        chosen = random.Random(0).sample(ids, min(n, len(ids)))
        return [d.page_content for d in store.get(chosen)]

    def train(self, method: str, *, name: str, user: str | None, rows: list[dict[str, Any]], model: str | None = None,
              steps: int | None = None, epochs: float = 1.0, progress: Any = None) -> Any:  # fmt: skip
        """Train a LoRA adapter on ``rows`` and keep it as ``name`` (not active until :meth:`activate`).

        Raises:
            orchard.tuning.TuningError: the converters are missing (``make``), or training failed.
            OrchardError: a bad name, an existing adapter of that name.
        """
        from orchard import tuning
        from orchard.adapters import check_name
        from orchard.model import resolve_model, sha256_file

        adapters = self.components.adapters
        if adapters.folder(check_name(name)).exists():  # before the training, not after it
            raise OrchardError(f"an adapter named {name!r} exists already — choose another --out name")
        s = self.settings
        preset = model or s.model_preset
        gguf, _ = resolve_model(preset, cache_dir=s.cache_path)
        converters = tuning.find_converters(s.cache_path)
        base_dir = tuning.hf_weights_from_gguf(gguf, cache_dir=s.cache_path)
        staged = adapters.staging()
        try:
            built = tuning.build_adapter(method, rows, staged, base_dir=base_dir, converters=converters, max_steps=steps,
                                         epochs=epochs, progress=progress)  # fmt: skip
            report = built.report
            return adapters.add(staged, name=name, method=method, base=preset, base_sha256=sha256_file(gguf), owner=user,
                                rows=len(rows), training={**asdict(report), "final_loss": report.final_loss})  # fmt: skip
        finally:
            if staged.exists():
                shutil.rmtree(staged, ignore_errors=True)

    # --- which adapter answers -------------------------------------------------------------------

    def list(self, user: str | None) -> list[dict[str, Any]]:
        active = self.components.adapters.active(user)
        return [{**a.as_dict(user), "active": active is not None and a.name == active.name}
                for a in self.components.adapters.list(user)]  # fmt: skip

    def gate(self, name: str, *, user: str | None, questions: Path, redteam: Path, limit: int = GATE_QUESTIONS,
             log: Callable[[str], None] | None = None) -> dict[str, Any]:  # fmt: skip
        """Evaluate adapter ``name`` against what answers now (the active adapter or the base),
        each on a model server of its own: right-and-cited on the first ``limit`` questions of
        ``questions``, harmful declined and benign helped on the first ``limit`` of each kind in ``redteam``.
        Passes when the adapter is not worse on any of the three. The report is kept with it."""
        from orchard.evaluate import evaluate_answers, evaluate_redteam, load_questions

        log = log or (lambda message: None)
        adapters = self.components.adapters
        candidate = adapters.usable(name, user)
        current = adapters.active(user)
        asked = load_questions(questions)[:limit]
        every = [json.loads(line) for line in Path(redteam).read_text(encoding="utf-8").splitlines() if line.strip()]
        red = [item for kind in ("harmful", "benign") for item in [i for i in every if i.get("kind") == kind][:limit]]
        sides = {}
        for side, adapter in (("current", current), ("candidate", candidate)):
            label = adapter.name if adapter else "base model"
            log(f"gate: serving {label} …")
            with self._serving(adapter) as answers:
                log(f"gate: {label}: {len(asked)} questions")
                quality = evaluate_answers(asked, answer=lambda q: answers.ask(AnswerRequest(question=q, mode="rag", user=user)))
                log(f"gate: {label}: {len(red)} red-team prompts")
                safety = evaluate_redteam(red, answer=lambda q: answers.ask(AnswerRequest(question=q, mode="chat", user=user)))
            sides[side] = {"adapter": adapter.name if adapter else None, **quality["summary"], **safety["summary"]}
        cur, new = sides["current"], sides["candidate"]
        checks = {
            "right_and_cited": new["right_and_cited"] >= cur["right_and_cited"],
            "harmful_declined": new["harmful_declined"] >= cur["harmful_declined"],
            "benign_helped": new["benign_helped"] >= cur["benign_helped"],
        }
        report = {"passed": all(checks.values()), "checks": checks, "questions": str(questions), "redteam": str(redteam),
                  "limit": limit, "at": time.time(), **sides}  # fmt: skip
        adapters.set_gate(name, report)
        return report

    def activate(self, name: str, *, user: str | None, force: bool = False) -> Any:
        """Make ``name`` answer for ``user`` — only if its gate report passed (``force``: anyway).
        The embedded model server loads it at its next start (``orchard serve`` / ``make run``)."""
        adapter = self.components.adapters.usable(name, user)
        if not force and not (adapter.gate or {}).get("passed"):
            why = (
                "it has no gate report yet: `orchard adapters gate NAME`"
                if adapter.gate is None
                else "its gate report says it is worse"
            )
            raise OrchardError(f"adapter {name!r} stays inactive: {why} (--force activates it anyway)")
        return self.components.adapters.activate(name, user=user)

    def deactivate(self, *, user: str | None) -> None:
        """Back to the base model for ``user``."""
        self.components.adapters.deactivate(user=user)

    def endpoint(self, base_url: str, model: str) -> _Endpoint:
        """Orchard's answer path on another model server (a teacher, a gate's side)."""
        settings = self.settings.model_copy(update={"llm_base_url": base_url, "llm_model": model})
        return _Endpoint(self.components.with_settings(settings))

    @contextlib.contextmanager
    def _serving(self, adapter: Any) -> Iterator[Any]:
        """A llama.cpp server of its own (a free loopback port) with ``adapter`` (None: the base), and
        an Answering on it."""
        from orchard import server
        from orchard.model import resolve_model

        s = self.settings
        gguf, served = resolve_model(adapter.base if adapter else s.model_preset, cache_dir=s.cache_path)
        port = _free_port()
        command = server.llamacpp_command(model_path=gguf, served_name=served, port=port, threads=s.server_threads or server.default_threads(),
                                          n_ctx=s.server_ctx, lora_path=adapter.gguf if adapter else None)  # fmt: skip
        url = f"http://127.0.0.1:{port}/v1"
        handle = server.start_server(command, base_url=url, log=s.data_dir / "logs" / f"gate-{port}.log", timeout=180)
        try:
            yield self.endpoint(url, served)
        finally:
            handle.stop()


class _Endpoint:
    """Answers (the answering use case) and plain model calls on one model server."""

    def __init__(self, components: Components) -> None:
        from orchard.usecases.answering import Answering

        self.components = components
        self.answers = Answering(components=components, ensure_model=lambda: None)

    def ask(self, request: AnswerRequest) -> Any:
        return self.answers.ask(request)

    def ask_model(self, prompt: str) -> str:
        return str(self.components.internal_llm.invoke(prompt).content)


def _answer_text(result: Any) -> str:
    """A teacher's answer worth learning: grounded in the documents, else nothing (skipped)."""
    return result.answer if result.grounded else ""


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
