"""Fit the "documents do not answer" gate (chains/gate.py) on the calibration split.

Steps (each writes a file; bench/GATE.md says how the questions were written):

1. ``features``: retrieve for every question of ``bench/gate-answerable.jsonl``, ``bench/paraphrase-dev.jsonl`` and
   ``bench/gate-uncovered.jsonl`` over its corpus (``pyd``: the Python docs store, ``small``: a
   store of logging/secrets/json only), record the gate features and, for answerable questions,
   whether the top passage holds the fact (only those are used: the gate is judged on questions
   retrieval can answer).
2. ``fit``: logistic regression (numpy, L2, gradient descent on standardized features) on the
   ``calib`` rows (every answerable question, also those whose answer retrieval ranked below the
   first passage: the model reads five); thresholds: ``refuse_below`` half the lowest probability
   of an answerable calib question (so none is refused, with a margin), ``strict_above`` just
   above the highest probability of an uncovered calib question. The confusion is printed for the
   figure's subset (answerable = the top passage holds the fact) and for every question. Prints the confusion on the calib and test splits;
   ``--write`` puts the values into chains/gate.py.

Usage::

    ORCHARD_DATA_DIR=... .venv/bin/python bench/fit_gate.py features --store pyd=/tmp/pyd \\
        --store small=/tmp/h3/small --out /tmp/h3/gate/features.jsonl
    .venv/bin/python bench/fit_gate.py fit --features /tmp/h3/gate/features.jsonl [--write]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
FILES = [ROOT / "bench" / "gate-answerable.jsonl", ROOT / "bench" / "gate-uncovered.jsonl"]
GATE_MODULE = ROOT / "chains" / "gate.py"
REFUSE_MARGIN = 0.5  # refuse_below = this share of the lowest answerable calib probability
STRICT_MARGIN = 0.02  # strict_above = highest uncovered calib probability + this


PARAPHRASES = ROOT / "bench" / "paraphrase-dev.jsonl"  # answerable, in users' words (item 5's dev set)


def load_rows() -> list[dict]:
    rows = []
    for path in FILES:
        rows += [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    lines = [json.loads(line) for line in PARAPHRASES.read_text().splitlines() if line.strip()]
    rows += [{**item, "corpus": "pyd", "covered": True, "kind": "paraphrase", "split": "calib" if i % 2 == 0 else "test"}
             for i, item in enumerate(lines)]  # fmt: skip
    return rows


def features_step(stores: dict[str, str], out: Path, k: int) -> None:
    from orchard.chains.gate import gate_features
    from orchard.components import Components
    from orchard.config import Settings
    from orchard.evaluate import fact_found

    embeddings = None
    retrievers = {}
    for name, data_dir in stores.items():
        parts = Components(Settings(data_dir=data_dir), embeddings=embeddings)
        embeddings = parts.embeddings
        retrievers[name] = parts.retriever
    with out.open("w") as f:
        for row in load_rows():
            docs = retrievers[row["corpus"]].invoke(row["q"], k=k)
            top = docs[0] if docs else None
            holds = bool(top) and all(fact_found(fact, top.page_content) for fact in row["facts"])
            page_ok = bool(top) and any(top.metadata.get("source", "").endswith(p) for p in row["pages"])
            record = {**row, "features": gate_features(row["q"], docs),
                      "top_source": top.metadata.get("source") if top else None,
                      "top_holds": holds and page_ok if row["covered"] else None}  # fmt: skip
            f.write(json.dumps(record) + "\n")
            print(f"{row['corpus']:5} {row['covered']!s:5} {record['top_holds']!s:5} {row['q'][:70]}", file=sys.stderr)


def used(records: list[dict]) -> list[dict]:
    """Uncovered questions, and the answerable ones whose top passage holds the fact."""
    return [r for r in records if not r["covered"] or r["top_holds"]]


def design(records: list[dict], names: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    x = np.array([[r["features"][n] for n in names] for r in records], dtype=float)
    y = np.array([1.0 if r["covered"] else 0.0 for r in records])
    return x, y


def fit_logistic(x: np.ndarray, y: np.ndarray, *, l2: float = 0.05, steps: int = 20000, lr: float = 0.2):
    """Weights and bias on the raw feature scale (fitted on standardized features)."""
    mean, std = x.mean(axis=0), x.std(axis=0) + 1e-9
    z = (x - mean) / std
    w, b = np.zeros(x.shape[1]), 0.0
    for _ in range(steps):
        p = 1 / (1 + np.exp(-(z @ w + b)))
        grad_w = z.T @ (p - y) / len(y) + l2 * w
        grad_b = float(np.mean(p - y))
        w -= lr * grad_w
        b -= lr * grad_b
    raw_w = w / std
    raw_b = b - float(np.sum(w * mean / std))
    return raw_w, raw_b


def confusion(records: list[dict], gate) -> dict:
    counts = {"answerable": 0, "answerable_refused": 0, "answerable_strict": 0,
              "uncovered": 0, "uncovered_not_refused": 0, "uncovered_strict": 0}  # fmt: skip
    wrong = []
    for r in records:
        decision = gate.decide_features(r["features"])
        if r["covered"]:
            counts["answerable"] += 1
            counts["answerable_refused"] += decision == "refuse"
            counts["answerable_strict"] += decision == "strict"
            if decision == "refuse":
                wrong.append(("refused", r["q"]))
        else:
            counts["uncovered"] += 1
            counts["uncovered_not_refused"] += decision != "refuse"
            counts["uncovered_strict"] += decision == "strict"
            if decision != "refuse":
                wrong.append((decision, r["q"]))
    return {**counts, "errors": wrong}


def write_module(weights: dict, bias: float, refuse_below: float, strict_above: float) -> None:
    text = GATE_MODULE.read_text()
    block = (f"WEIGHTS = {json.dumps({k: round(v, 4) for k, v in weights.items()})}\n"
             f"BIAS = {round(bias, 4)}\nREFUSE_BELOW = {round(refuse_below, 4)}\nSTRICT_ABOVE = {round(strict_above, 4)}\n")  # fmt: skip
    new = re.sub(r"(# --- fitted by bench/fit_gate.py[^\n]*\n)(.*?)(# --- end of fitted values ---)",
                 lambda m: m.group(1) + block + m.group(3), text, flags=re.S)  # fmt: skip
    GATE_MODULE.write_text(new)


def fit_step(path: Path, write: bool) -> None:
    from orchard.chains.gate import FEATURES, Gate

    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    calib = [r for r in records if r["split"] == "calib"]
    test = [r for r in records if r["split"] == "test"]
    x, y = design(calib, FEATURES)
    w, b = fit_logistic(x, y)
    weights = dict(zip(FEATURES, (float(v) for v in w), strict=True))
    gate = Gate(weights=weights, bias=b)
    p_ok = [gate.probability(r["features"]) for r in calib if r["covered"]]
    p_no = [gate.probability(r["features"]) for r in calib if not r["covered"]]
    refuse_below = REFUSE_MARGIN * min(p_ok)
    strict_above = min(0.99, max(p_no) + STRICT_MARGIN)
    gate = Gate(weights=weights, bias=b, refuse_below=refuse_below, strict_above=strict_above)
    print(json.dumps({"weights": weights, "bias": b, "refuse_below": refuse_below, "strict_above": strict_above,
                      "calib": {"answerable": sum(r["covered"] for r in calib), "uncovered": sum(not r["covered"] for r in calib)},
                      "test": {"answerable": sum(r["covered"] for r in test), "uncovered": sum(not r["covered"] for r in test)},
                      "answerable_top_passage_not_holding": sum(r["top_holds"] is False for r in records)},
                     indent=1))  # fmt: skip
    for name, rows in (("calib", calib), ("test", test)):
        print(name, "(answerable: top passage holds the fact)", json.dumps(confusion(used(rows), gate), indent=1))
        print(name, "(every answerable question)", json.dumps(confusion(rows, gate)))
    if write:
        write_module(weights, b, refuse_below, strict_above)
        print(f"wrote {GATE_MODULE}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="step", required=True)
    feats = sub.add_parser("features")
    feats.add_argument("--store", action="append", required=True, help="corpus=data_dir")
    feats.add_argument("--out", type=Path, required=True)
    feats.add_argument("-k", type=int, default=5)
    fit = sub.add_parser("fit")
    fit.add_argument("--features", type=Path, required=True)
    fit.add_argument("--write", action="store_true")
    args = parser.parse_args()
    if args.step == "features":
        features_step(dict(s.split("=", 1) for s in args.store), args.out, args.k)
    else:
        fit_step(args.features, args.write)


if __name__ == "__main__":
    main()
