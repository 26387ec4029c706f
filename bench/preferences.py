"""Do answers move the way a user's preference profile asks? Answer length per profile.

Usage (a model server at --base-url; `orchard serve` starts the embedded one):

    .venv/bin/python bench/preferences.py
    .venv/bin/python bench/preferences.py --profiles none short   # skip the "more detail" user

The same questions (:data:`QUESTIONS`, chat mode, temperature 0) are asked for users whose
profiles are set with ``orchard.feedback.set_profile``: ``none`` (no profile), ``short`` ("Keep answers
short (2-3 sentences).", the line a "too long" rating derives) and ``detail`` ("Give more detail.").
The profile reaches the model as a line added to the system prompt (chains/preferences.py).
Reported: words per answer (median, and per question), sentences, seconds. The token limit
(--max-tokens, default 512) is high enough not to cut the answers of the "none" user short.

Results: bench/out/preferences-<time>.json (every answer).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
os.environ["LANGSMITH_TRACING"] = "false"
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from orchard.config import Settings  # noqa: E402
from orchard.feedback import DETAIL, SHORT  # noqa: E402
from orchard.usecases import AnswerRequest, build_orchard  # noqa: E402

OUT = ROOT / "bench" / "out"
QUESTIONS = (
    "What is a Python virtual environment and why use one?",
    "How does HTTPS keep a connection private?",
    "What is the difference between a list and a tuple in Python?",
    "Why do apple trees need pruning?",
    "What does a database index do?",
    "How should I prepare for a job interview?",
)
PROFILES = {"none": None, "short": SHORT, "detail": DETAIL}


def words(text: str) -> int:
    return len(text.split())


def sentences(text: str) -> int:
    """Sentence-like pieces: text ending in . ! ? or a line break (list items count as one each)."""
    return len([piece for piece in re.split(r"(?<=[.!?])\s+|\n+", text) if re.search(r"\w", piece)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base-url", default="http://127.0.0.1:8000/v1")
    parser.add_argument("--max-tokens", type=int, default=512)
    parser.add_argument("--profiles", nargs="*", default=list(PROFILES), choices=list(PROFILES))
    parser.add_argument("--limit", type=int, default=0, help="only the first N questions")
    args = parser.parse_args()
    questions = QUESTIONS[: args.limit] if args.limit else QUESTIONS
    OUT.mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []
    started = time.strftime("%Y-%m-%d %H:%M:%S")
    with tempfile.TemporaryDirectory(prefix="orchard-preferences-") as tmp:
        settings = Settings(
            data_dir=Path(tmp) / "data", llm_base_url=args.base_url, llm_temperature=0.0,
            llm_max_tokens=args.max_tokens, llm_timeout=900.0,
        )  # fmt: skip
        orchard = build_orchard(settings)
        for name in args.profiles:
            if PROFILES[name]:
                orchard.feedback.set_profile(f"user-{name}", PROFILES[name])
        for question in questions:
            for name in args.profiles:  # one question for every profile in turn: the same server load
                user = f"user-{name}" if PROFILES[name] else None
                began = time.perf_counter()
                answer = orchard.answers.ask(AnswerRequest(question=question, mode="chat", user=user)).answer
                row = {"question": question, "profile": name, "instructions": orchard.answers.preferences(user), "answer": answer,
                       "words": words(answer), "sentences": sentences(answer), "seconds": round(time.perf_counter() - began, 2)}  # fmt: skip
                rows.append(row)
                print(f"{name:<7} {row['words']:>4} words {row['sentences']:>3} sent. {row['seconds']:>6.1f}s  {question}", flush=True)
    summary = {}
    for name in args.profiles:
        mine = [r for r in rows if r["profile"] == name]
        summary[name] = {
            "profile": PROFILES[name],
            "median_words": statistics.median(r["words"] for r in mine),
            "words": [r["words"] for r in mine],
            "median_sentences": statistics.median(r["sentences"] for r in mine),
            "median_seconds": round(statistics.median(r["seconds"] for r in mine), 1),
        }
    if "none" in summary:
        base = {r["question"]: r["words"] for r in rows if r["profile"] == "none"}
        for name, direction in (("short", -1), ("detail", 1)):
            if name in summary:
                moved = [r for r in rows if r["profile"] == name and (r["words"] - base[r["question"]]) * direction > 0]
                summary[name]["moved_in_asked_direction"] = f"{len(moved)}/{len(questions)}"
    result = {"command": " ".join(sys.argv), "base_url": args.base_url, "model": settings.llm_model, "max_tokens": args.max_tokens,
              "temperature": 0.0, "cpus": os.cpu_count(), "started": started, "summary": summary, "answers": rows}  # fmt: skip
    name = OUT / f"preferences-{time.strftime('%Y%m%d-%H%M%S')}.json"
    name.write_text(json.dumps(result, indent=1, ensure_ascii=False))
    print("\n| profile | median words | words per question | median sentences | moved as asked | median s |\n|---|---|---|---|---|---|")
    for key, s in summary.items():
        print(f"| {key} ({s['profile'] or 'no profile'}) | {s['median_words']} | {' '.join(map(str, s['words']))} | "
              f"{s['median_sentences']} | {s.get('moved_in_asked_direction', '-')} | {s['median_seconds']} |")  # fmt: skip
    print(f"written {name}")


if __name__ == "__main__":
    main()
