"""Where ingestion time goes, Orchard vs the plain LangChain pipeline, on a subset of the Python docs.

Usage (from the repository root, under the CPU lock; the plain pipeline needs
requirements-bench.txt)::

    flock /tmp/orchard-cpu.lock .venv/bin/python bench/ingest_profile.py --work /tmp/h1i/prof
    flock /tmp/orchard-cpu.lock .venv/bin/python bench/ingest_profile.py --work /tmp/h1i/prof \
        --limit 40 --skip-plain --no-stages --variants legacy 1x32x1 1x16x1 2x16x0

The subset is every page the public and held-out questions name (64 pages) plus ``--fill``
evenly spaced ``library/`` pages, copied under ``<work>/corpus-FILL-LIMIT`` (copied, not linked:
ingestion does not follow links). Both pipelines ingest it one after the other in this process,
at torch's default thread count; Orchard runs the product path (parse worker with its time limit,
size limit, the store's ingestion lock). Printed: wall seconds of each, their ratio, Orchard's
time per stage (read, parse, chunk, embed, store writes, bookkeeping; the embedder runs in its own
thread, so stages overlap) and hit@1/hit@5/MRR@10 of both on the questions (hybrid retriever for
Orchard, similarity top-k for plain). ``--variants`` adds Orchard runs (totals only): ``legacy``
(the embedder's path before the speed work, no overlap) or ``STREAMSxBATCHxOVERLAP``.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import shutil
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.run import CORPUS, QUESTION_SETS, run_plain, summarize  # noqa: E402
from orchard.evaluate import evaluate_retrieval, load_questions  # noqa: E402


def make_subset(dest: Path, fill: int, limit: int | None = None) -> list[str]:
    """Copy the question pages plus ``fill`` evenly spaced library pages to ``dest``; their paths
    (``limit``: only that many of them, evenly spaced, for quick comparisons)."""
    pages: set[str] = set()
    for path in QUESTION_SETS.values():
        for question in load_questions(path):
            pages.update(question["pages"])
    library = sorted(p.relative_to(CORPUS).as_posix() for p in (CORPUS / "library").glob("*.html"))
    others = [p for p in library if p not in pages]
    step = max(1, len(others) // max(1, fill))
    pages.update(others[::step][:fill])
    chosen = sorted(pages)
    if limit is not None and limit < len(chosen):
        chosen = chosen[:: max(1, len(chosen) // limit)][:limit]
    for page in chosen:
        target = dest / page
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.exists():
            shutil.copyfile(CORPUS / page, target)
    return chosen


class StageTimer:
    """Wall seconds per named stage, by wrapping callables."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)

    def wrap(self, owner: object, name: str, stage: str) -> None:
        original = getattr(owner, name)

        @functools.wraps(original)
        def timed(*args, **kwargs):
            started = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.seconds[stage] += time.perf_counter() - started
                self.calls[stage] += 1

        setattr(owner, name, timed)

    def summary(self, total: float) -> dict:
        return {
            stage: {"s": round(s, 2), "share": round(s / total, 3), "calls": self.calls[stage]}
            for stage, s in sorted(self.seconds.items(), key=lambda kv: -kv[1])
        }


def legacy_embed(self, texts: list[str]) -> list[list[float]]:
    """MiniLMEmbeddings.embed_documents before the speed work: one sentence-transformers call,
    texts sorted by characters inside it."""
    model = self._load()
    return model.encode(list(texts), batch_size=32, normalize_embeddings=True, convert_to_numpy=True,
                        show_progress_bar=False).tolist()  # fmt: skip


def run_orchard_profiled(corpus: Path, paths: list[str], store_dir: Path, *, stages: bool, variant: str = "",
                         retrieval: bool = True) -> dict:  # fmt: skip
    """``variant``: "" (the defaults), ``legacy`` (the embedder's old path, no overlap) or
    ``STREAMSxBATCHxOVERLAP`` such as ``1x32x0``."""
    import orchard.ingest as ingest_module
    import orchard.parse_worker as parse_worker
    import orchard.store as store_module
    from bench.run import orchard_store, product_limits
    from orchard.retriever import HybridRetriever
    from orchard.store_repair import exclusive_ingestion

    shutil.rmtree(store_dir, ignore_errors=True)
    store = orchard_store(store_dir)
    overlap = True
    if variant == "legacy":
        store.embeddings.embed_documents = functools.partial(legacy_embed, store.embeddings)
        overlap = False
    elif variant:
        streams, batch, overlap_flag = (int(v) for v in variant.split("x"))
        store.embeddings.streams, store.embeddings.batch_size, overlap = streams, batch, bool(overlap_flag)
    timer = StageTimer()
    if stages:
        timer.wrap(store.embeddings, "embed_documents", "embed")
        timer.wrap(ingest_module, "chunk_sections", "chunk")
        timer.wrap(ingest_module, "_read_limited", "read")
        timer.wrap(ingest_module, "discover", "discover")
        timer.wrap(parse_worker.ParseWorker, "parse", "parse (wait for worker)")
        for method in ("upsert", "delete", "chunk_ids", "file_hashes", "count"):
            timer.wrap(store_module.DocumentStore, method, f"store.{method}")
    limits = product_limits()
    store.embeddings.warm_up()
    cwd = os.getcwd()
    os.chdir(corpus)
    try:
        started = time.perf_counter()
        with exclusive_ingestion(store_dir):
            report = ingest_module.ingest(paths, store=store, progress=False, limits=limits, overlap=overlap)
        seconds = time.perf_counter() - started
    finally:
        os.chdir(cwd)
    result = {
        "ingest": {"files": report.files_indexed, "chunks": report.chunks_total, "seconds": round(seconds, 1),
                   "failed": report.files_failed},
        "stages": timer.summary(seconds),
        "settings": {"variant": variant or "default", "streams": store.embeddings.streams, "overlap": overlap,
                     "batch_size": store.embeddings.batch_size},
    }  # fmt: skip
    if not retrieval:
        return result
    retriever = HybridRetriever(store=store, k=5)
    for name, path in QUESTION_SETS.items():
        result[name] = summarize(evaluate_retrieval(load_questions(path), retriever=retriever, k=5))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=Path("/tmp/h1i/prof"))
    parser.add_argument("--fill", type=int, default=36, help="library pages added to the question pages")
    parser.add_argument("--limit", type=int, help="only this many of the pages (retrieval then misses pages)")
    parser.add_argument("--skip-plain", action="store_true")
    parser.add_argument("--no-stages", action="store_true", help="time only the totals (no wrappers)")
    parser.add_argument("--variants", nargs="*", default=[], metavar="VARIANT",
                        help="extra Orchard runs (totals only) before the main one: legacy, or STREAMSxBATCHxOVERLAP "
                             "such as 1x32x0")
    args = parser.parse_args()
    corpus = args.work / f"corpus-{args.fill}-{args.limit or 'all'}"  # ingestion reads whole folders
    pages = make_subset(corpus, args.fill, args.limit)
    paths = sorted({p.split("/")[0] for p in pages})
    load = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    out: dict = {"pages": len(pages), "paths": paths, "uptime_before": load}
    # a store folder per run: Chroma keeps a deleted folder's state for the rest of the process
    for variant in args.variants:
        store_dir = args.work / f"orchard-store-{variant}-{os.getpid()}"
        run = run_orchard_profiled(corpus, paths, store_dir, stages=False, variant=variant, retrieval=False)
        out[f"orchard_{variant}"] = run
        print(variant, json.dumps(run["ingest"]), flush=True)
    out["orchard"] = run_orchard_profiled(corpus, paths, args.work / f"orchard-store-{os.getpid()}", stages=not args.no_stages)
    print(json.dumps(out["orchard"], indent=1), flush=True)
    if not args.skip_plain:
        out["plain"] = run_plain(args.work / f"plain-store-{os.getpid()}", corpus=corpus, paths=paths)
        print(json.dumps(out["plain"], indent=1), flush=True)
        out["ratio_orchard_over_plain"] = round(out["orchard"]["ingest"]["seconds"] / out["plain"]["ingest"]["seconds"], 3)
    out["uptime_after"] = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    print(json.dumps({k: v for k, v in out.items() if k not in ("orchard", "plain")}, indent=1))
    (args.work / f"profile-{time.strftime('%H%M%S')}.json").write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
