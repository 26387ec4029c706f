"""Simulated users with hidden tastes train their reward model; does it pick what they prefer?

Usage (no model server: the candidates are cached real 0.5B answers; hold the CPU lock, the
embedder runs)::

    flock /tmp/orchard-cpu.lock .venv/bin/python bench/reward_sim.py
    flock /tmp/orchard-cpu.lock .venv/bin/python bench/reward_sim.py --repeats 2 --noise 0.1

Candidates: bench/reward-candidates.jsonl (bench/reward_candidates.py: 4 answers per
Python-docs question from the 0.5B through Orchard's RAG prompt, temperature 0.9, seeds 1-4, as
Orchard shows them with citations attributed).

Raters (rules Orchard is not told; each thumb is up exactly when the rule holds, or flipped with
probability ``--noise``):

``code``         prefers an answer with a code example (a fenced code block);
``brief``        prefers two sentences at most (the rater's own count: prose pieces ending in . ! ?
                 or a line, code left out);
``two-sources``  prefers answers citing at least two distinct sources ``[n]``;
``talks-to-you`` prefers answers that address the reader ("you"): a taste outside the hand-made
                 features (the first three each match one of them closely, so they test the
                 pipeline and its sample efficiency more than the features' reach).

Protocol per rater and repeat (a seeded shuffle of the questions): on ``--train-questions``
(30) questions the user is shown one candidate, regenerates once (a second candidate) and thumbs
both: 60 ratings stored with :class:`orchard.feedback.FeedbackStore` (pairs come out of
``dpo_pairs``: a question whose two answers got different thumbs). The user's reward model is then
trained the way Orchard does (:class:`orchard.reward.RewardTrainer.retrain`, the packaged MiniLM
embedder). On the other questions, never rated:

- held-out pair accuracy: every pair of the 4 candidates the rater does not tie, right when the
  preferred one scores higher (a score tie counts half);
- best-of-4: the top-scored candidate is one the rater prefers (satisfies the rule, when any
  does); the random baseline is the exact expectation of a uniform pick, (preferred candidates)/4,
  averaged over the same questions. Both are reported on every held-out question and on the
  *decisive* ones (some but not all candidates satisfy the rule: the only ones where a pick can
  be wrong).

Rows also show ablations: hand-made features only (``embedding=none``) and embeddings only
(``hand=False``). Results: bench/out/reward_sim-<time>.json and a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from orchard.db import Database  # noqa: E402
from orchard.feedback import FeedbackStore  # noqa: E402
from orchard.reward import NotEnoughFeedback, RewardStore, RewardTrainer, TrainConfig  # noqa: E402

CANDIDATES = ROOT / "bench" / "reward-candidates.jsonl"
OUT = ROOT / "bench" / "out"
_FENCE = re.compile(r"```.*?(?:```|\Z)", re.DOTALL)


def rater_sentences(text: str) -> int:
    """The brief rater's own sentence count: prose pieces ending in . ! ? (or a line), code left out."""
    prose = _FENCE.sub("\n", text)
    pieces = [p for line in prose.splitlines() for p in re.split(r"(?<=[.!?])\s+", line.strip())]
    return sum(1 for p in pieces if re.search(r"[A-Za-z0-9]", p))


RATERS = {
    "code": lambda text: "```" in text,
    "brief": lambda text: 0 < rater_sentences(text) <= 2,
    "two-sources": lambda text: len(set(re.findall(r"\[(\d{1,2})\]", text))) >= 2,
    # A taste no hand-made feature names: only the embeddings can learn it.
    "talks-to-you": lambda text: re.search(r"\byou\b", text, re.IGNORECASE) is not None,
}
VARIANTS = {
    "hand+embeddings": TrainConfig(),
    "hand only": TrainConfig(embedding="none"),
    "embeddings only": TrainConfig(hand=False),
}


class CachedEmbeddings:
    """The packaged embedder, remembering each text's vector (the same answers recur across runs)."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.name, self.cache = inner, inner.name, {}

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        missing = [t for t in dict.fromkeys(texts) if t not in self.cache]
        if missing:
            self.cache.update(zip(missing, self.inner.embed_documents(missing), strict=True))
        return [self.cache[t] for t in texts]

    def embed_query(self, text: str) -> list[float]:
        return self.embed_documents([text])[0]


def load_candidates(path: Path) -> list[dict]:
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [r for r in rows if len(r["candidates"]) >= 2]


def thumbs(liked: bool, rng: random.Random, noise: float) -> str:
    if noise and rng.random() < noise:
        liked = not liked
    return "up" if liked else "down"


def run_once(
    rows: list[dict], rater: str, *, seed: int, config: TrainConfig, embed: Any, train_questions: int, noise: float
) -> dict:
    rule = RATERS[rater]
    rng = random.Random(f"{rater}-{seed}")
    order = rows[:]
    rng.shuffle(order)
    train, heldout = order[:train_questions], order[train_questions:]
    with tempfile.TemporaryDirectory(prefix="reward-sim-") as tmp:
        feedback = FeedbackStore(Database(Path(tmp) / "orchard.sqlite3"))
        for row in train:
            shown, regenerated = rng.sample(range(len(row["candidates"])), 2)
            for index in (shown, regenerated):
                text = row["candidates"][index]["text"]
                feedback.add(user=rater, prompt=row["q"], response=text, rating=thumbs(rule(text), rng, noise))
        trainer = RewardTrainer(feedback, RewardStore(tmp), embed=embed, every=1, config=config)
        ratings = feedback.list(rater)
        try:
            result = trainer.retrain(rater)
            model = trainer.store.load(rater, embed=embed)
        except NotEnoughFeedback:  # every thumb the same: no model, every candidate scores 0 (ties)
            result = model = None
    right = total = 0.0
    picks, randoms, decisive_picks, decisive_randoms = [], [], [], []
    for row in heldout:
        texts = [c["text"] for c in row["candidates"]]
        liked = [rule(t) for t in texts]
        scores = model.score(row["q"], texts) if model is not None else [0.0] * len(texts)
        for i in range(len(texts)):
            for j in range(i + 1, len(texts)):
                if liked[i] != liked[j]:
                    good, bad = (i, j) if liked[i] else (j, i)
                    total += 1
                    right += 1.0 if scores[good] > scores[bad] else 0.5 if scores[good] == scores[bad] else 0.0
        best = max(range(len(texts)), key=lambda k: (scores[k], -k))
        preferred = [k for k in range(len(texts)) if liked[k]] or list(range(len(texts)))
        picks.append(best in preferred)
        randoms.append(len(preferred) / len(texts))
        if 0 < sum(liked) < len(texts):
            decisive_picks.append(best in preferred)
            decisive_randoms.append(len(preferred) / len(texts))
    report = result.report if result is not None else None
    return {
        "rater": rater,
        "seed": seed,
        "ratings": len(ratings),
        "ups": sum(r.rating == "up" for r in ratings),
        "trained": report is not None,
        "train_pairs": report.n_pairs if report else 0,
        "report_heldout_pair_accuracy": report.heldout_pair_accuracy if report else None,
        "report_heldout_pairs": report.heldout_pairs if report else 0,
        "train_seconds": report.seconds if report else None,
        "heldout_questions": len(heldout),
        "heldout_pairs": int(total),
        "pair_accuracy": right / total if total else None,
        "best_of_4": statistics.mean(picks),
        "random": statistics.mean(randoms),
        "decisive_questions": len(decisive_picks),
        "decisive_best_of_4": statistics.mean(decisive_picks) if decisive_picks else None,
        "decisive_random": statistics.mean(decisive_randoms) if decisive_randoms else None,
    }


def mean_of(runs: list[dict], key: str) -> float | None:
    values = [r[key] for r in runs if r[key] is not None]
    return statistics.mean(values) if values else None


def fmt(value: float | None, digits: int = 2) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--candidates", type=Path, default=CANDIDATES)
    parser.add_argument("--repeats", type=int, default=5, help="seeded question splits per rater")
    parser.add_argument("--train-questions", type=int, default=30, help="questions rated (2 thumbs each)")
    parser.add_argument("--noise", type=float, default=0.0, help="probability a thumb is flipped")
    parser.add_argument("--raters", nargs="*", default=list(RATERS))
    parser.add_argument("--variants", nargs="*", default=list(VARIANTS))
    parser.add_argument("--fake-embedder", action="store_true", help="bag-of-words vectors (tests/fakes.py), to try the protocol")
    args = parser.parse_args()

    if args.fake_embedder:
        from tests.fakes import HashEmbeddings as Embedder
    else:
        from orchard.embeddings import MiniLMEmbeddings as Embedder

    rows = load_candidates(args.candidates)
    embed = CachedEmbeddings(Embedder())
    began = time.perf_counter()
    embed.embed_documents([r["q"] for r in rows] + [c["text"] for r in rows for c in r["candidates"]])
    embed_seconds = time.perf_counter() - began
    load = Path("/proc/loadavg").read_text().split()[:3]
    print(f"{len(rows)} questions, {sum(len(r['candidates']) for r in rows)} candidates; "
          f"embedded in {embed_seconds:.1f} s; load {' '.join(load)}", flush=True)  # fmt: skip
    for rater in args.raters:
        rule = RATERS[rater]
        share = statistics.mean(rule(c["text"]) for r in rows for c in r["candidates"])
        print(f"  {rater}: {share:.0%} of candidates satisfy the rule", flush=True)

    results = []
    for variant in args.variants:
        for rater in args.raters:
            runs = [run_once(rows, rater, seed=s, config=replace(VARIANTS[variant]), embed=embed,
                             train_questions=args.train_questions, noise=args.noise) for s in range(args.repeats)]  # fmt: skip
            summary = {"variant": variant, "rater": rater, "runs": runs}
            for key in ("ratings", "train_pairs", "report_heldout_pair_accuracy", "heldout_pairs", "pair_accuracy",
                        "best_of_4", "random", "decisive_questions", "decisive_best_of_4", "decisive_random", "train_seconds"):  # fmt: skip
                summary[key] = mean_of(runs, key)
            summary["pair_accuracy_min"] = min((r["pair_accuracy"] for r in runs if r["pair_accuracy"] is not None), default=None)
            results.append(summary)
            print(f"{variant:16} {rater:12} pair acc {fmt(summary['pair_accuracy'])} best-of-4 {fmt(summary['best_of_4'])} "
                  f"(random {fmt(summary['random'])})", flush=True)  # fmt: skip

    command = "flock /tmp/orchard-cpu.lock .venv/bin/python bench/reward_sim.py " + " ".join(sys.argv[1:])
    lines = [
        f"`{command.strip()}` — {len(rows)} questions x 4 real 0.5B candidates, {args.repeats} seeded splits per rater, "
        f"{args.train_questions * 2} ratings per user, thumb noise {args.noise}, load {' '.join(load)}",
        "",
        "| features | rater | ratings | train pairs | held-out pair acc (pairs) | min over splits | best-of-4 picks preferred | random | decisive q | best-of-4 on decisive | random on decisive | report's own held-out acc |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]  # fmt: skip
    for s in results:
        lines.append(
            f"| {s['variant']} | {s['rater']} | {s['ratings']:.0f} | {s['train_pairs']:.1f} | {fmt(s['pair_accuracy'])} ({s['heldout_pairs']:.0f}) "
            f"| {fmt(s['pair_accuracy_min'])} | {fmt(s['best_of_4'])} | {fmt(s['random'])} | {s['decisive_questions']:.1f} "
            f"| {fmt(s['decisive_best_of_4'])} | {fmt(s['decisive_random'])} | {fmt(s['report_heldout_pair_accuracy'])} |"
        )  # fmt: skip
    table = "\n".join(lines)
    print("\n" + table)
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"reward_sim-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps({"command": command, "args": {k: str(v) for k, v in vars(args).items()}, "load": load,
                                "embed_seconds": embed_seconds, "results": results, "table": table}, indent=2) + "\n")  # fmt: skip
    print(f"\nresults: {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
