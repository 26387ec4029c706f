"""Retrieval evaluation: hit@k and MRR@10 of source pages for a question file.

The file is JSONL, one ``{"q": question, "pages": [source, ...]}`` per line (``facts`` and other
keys are ignored). A question is a hit at k when one of the first k chunks comes from one of its
pages; its reciprocal rank is 1/rank of the first such chunk within the first 10 (0 beyond).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from langchain_core.retrievers import BaseRetriever

from orchard.errors import OrchardError

MRR_DEPTH = 10


def load_questions(path: Path) -> list[dict[str, Any]]:
    questions = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            questions.append({"q": str(item["q"]), "pages": [str(p) for p in item.get("pages", [])]})
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            msg = f"{path}:{number}: expected a JSON object with \"q\" and \"pages\" ({exc})"
            raise OrchardError(msg) from exc
    return questions


def _matches(source: str, pages: list[str]) -> bool:
    return any(source == p or source.endswith("/" + p) for p in pages)


def evaluate_retrieval(questions: list[dict[str, Any]], *, retriever: BaseRetriever, k: int = 5) -> dict[str, Any]:
    rows = []
    for item in questions:
        docs = retriever.invoke(item["q"], k=max(k, MRR_DEPTH))
        sources = [d.metadata.get("source", "") for d in docs]
        rank = next((i for i, s in enumerate(sources[:MRR_DEPTH], start=1) if _matches(s, item["pages"])), None)
        rows.append({"q": item["q"], "sources": sources[:k], "rank": rank, "hit": rank is not None and rank <= k})
    n = len(rows) or 1
    return {
        "questions": rows,
        "k": k,
        "hit_at_1": sum(r["rank"] == 1 for r in rows) / n,
        "hit_at_k": sum(r["hit"] for r in rows) / n,
        "mrr": sum(1 / r["rank"] for r in rows if r["rank"]) / n,
    }
