"""The documents gate, live: the test split of the gate files answered by the real model.

Issue 10's figure: on >= 20 answerable questions whose top passage holds the answer, no refusal;
on >= 20 questions the documents do not cover (asked over an unrelated corpus), no invented answer.
The rows are ``bench/gate-answerable.jsonl`` / ``bench/gate-uncovered.jsonl`` with
``split == "test"`` (the gate was fitted on the ``calib`` rows only; see bench/GATE.md), and for the
answerable ones ``top_holds`` as recorded in ``bench/gate-features.jsonl``. Each question is asked
as ``orchard ask --mode rag`` would (``answers.ask``, the answer checks on), over its own store:
``--store pyd=/tmp/pyd --store small=/tmp/h3/small`` (how to build them: bench/GATE.md).

A refusal is what :func:`orchard.chains.answer_checks.is_refusal` calls one (the gate's own
"The documents do not answer this question." or the model's refusal). An answerable question
passes when it is not refused; an uncovered one when it is.

Usage (repository root, a model server running, under the CPU lock)::

    flock /tmp/orchard-cpu.lock .venv/bin/python bench/gate_live.py \\
        --store pyd=/tmp/pyd --store small=/tmp/h3/small --out bench/out/gate-live.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
BENCH = Path(__file__).resolve().parent


def test_rows() -> list[dict]:
    """The test split: answerable rows whose top passage holds the answer, and every uncovered row."""
    features = {json.loads(line)["q"]: json.loads(line) for line in (BENCH / "gate-features.jsonl").open()}
    rows = []
    for name in ("gate-answerable.jsonl", "gate-uncovered.jsonl"):
        for line in (BENCH / name).open():
            row = json.loads(line)
            if row["split"] != "test":
                continue
            if row["covered"] and not features.get(row["q"], {}).get("top_holds"):
                continue
            rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", action="append", default=[], help="CORPUS=DATA_DIR (pyd, small)")
    parser.add_argument("--base-url", default=os.environ.get("ORCHARD_LLM_BASE_URL", "http://127.0.0.1:8000/v1"))
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    from orchard.chains.answer_checks import is_refusal
    from orchard.config import Settings
    from orchard.usecases import AnswerRequest, build_orchard

    stores = dict(item.split("=", 1) for item in args.store)
    orchards = {name: build_orchard(Settings(data_dir=Path(path), llm_base_url=args.base_url)) for name, path in stores.items()}
    results = []
    for row in test_rows():
        started = time.perf_counter()
        answer = orchards[row["corpus"]].answers.ask(AnswerRequest(question=row["q"], mode="rag")).as_dict()
        refused = is_refusal(answer["answer"])
        passed = refused != row["covered"]
        results.append({"q": row["q"], "corpus": row["corpus"], "covered": row["covered"], "kind": row["kind"],
                        "refused": refused, "passed": passed, "answer": answer["answer"],
                        "seconds": round(time.perf_counter() - started, 2)})  # fmt: skip
        print(("ok  " if passed else "FAIL"), row["kind"], "|", row["q"][:70], "|", answer["answer"][:90].replace("\n", " "), file=sys.stderr)
    answerable = [r for r in results if r["covered"]]
    uncovered = [r for r in results if not r["covered"]]
    summary = {
        "answerable": len(answerable),
        "answerable_refused": sum(r["refused"] for r in answerable),
        "uncovered": len(uncovered),
        "uncovered_answered": sum(not r["refused"] for r in uncovered),
        "load": os.getloadavg(),
    }
    report = {"summary": summary, "rows": results}
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=1))
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
