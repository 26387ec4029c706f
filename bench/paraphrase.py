"""Retrieval on questions in the user's own words: embedders and query-side techniques, measured.

Usage (from the repository root; results as JSON in bench/out/, summarized in
/work/notes/h4-results.md)::

    flock /tmp/orchard-cpu.lock .venv/bin/python bench/paraphrase.py speed          # passages/s
    .venv/bin/python bench/paraphrase.py retrieval --rescorers                       # today's rows
    .venv/bin/python bench/paraphrase.py retrieval --rescorers e5-small mpnet --depths 10 \
        --rescore-weights 0.5 1.0 --sets dev --only second                         # second stages
    .venv/bin/python bench/paraphrase.py retrieval --rescorers --llm http://127.0.0.1:8740/v1 \
        --only rewrites --rewrite-styles keywords --original-weights 1.0 2.0 --sets dev heldout
    # (the model server: `orchard serve --port 8740`; replies cached in --cache/rewrites.json)

Question sets (``q``, ``pages``, ``facts``): ``bench/paraphrase-dev.jsonl`` (tuning),
``bench/paraphrase-heldout.jsonl`` (paraphrased held-out, written before any measurement),
the public set and the old held-out set (``bench/heldout-questions.jsonl``, looked at before).

Every configuration reads the same MiniLM store (built by ``orchard ingest``; read only).
Second-stage scorers need the candidates' vectors under the second embedder: they are computed
once and cached in ``--cache`` (equivalent to having computed them at ingest).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from orchard.evaluate import evaluate_retrieval, load_questions  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import summarize  # noqa: E402  (bench/run.py: the retrieval table's one summary)

QUESTION_SETS = {
    "dev": ROOT / "bench" / "paraphrase-dev.jsonl",
    "heldout": ROOT / "bench" / "paraphrase-heldout.jsonl",
    "public": ROOT.parent / "shared" / "eval" / "pydocs-questions.jsonl",
    "old_heldout": ROOT / "bench" / "heldout-questions.jsonl",
}
OUT = ROOT / "bench" / "out"


def open_store(path: Path, embeddings):
    from orchard.store import DocumentStore, make_chroma_client

    return DocumentStore(client=make_chroma_client(path=path), collection="orchard", embeddings=embeddings, where=str(path))


def make_embedder(name: str, cache: Path):
    from orchard.embeddings import embeddings_for

    return embeddings_for(name, cache_dir=cache)


# --- speed --------------------------------------------------------------------------------------


def sample_chunks(store, n: int, seed: int = 7) -> list[str]:
    docs = store._get_all(["documents"])["documents"]
    return random.Random(seed).sample(docs, n)


def run_speed(args) -> dict:
    store = open_store(args.store, make_embedder("minilm", args.cache))
    texts = sample_chunks(store, args.sample)
    result = {"sample": len(texts), "mean_chars": round(sum(map(len, texts)) / len(texts)), "load": os.getloadavg()}
    for name in args.embedders:
        emb = make_embedder(name, args.cache)
        emb.warm_up()
        emb.embed_documents(texts[:8])
        started = time.perf_counter()
        emb.embed_documents(texts)
        seconds = time.perf_counter() - started
        q_started = time.perf_counter()
        for text in texts[:20]:
            emb.embed_query(text[:80])
        result[name] = {"passages_per_s": round(len(texts) / seconds, 2), "seconds": round(seconds, 1),
                        "query_ms": round((time.perf_counter() - q_started) / 20 * 1000, 1),
                        "est_corpus_embed_s": round(17625 * seconds / len(texts))}  # fmt: skip
        print(name, result[name], flush=True)
    result["load_after"] = os.getloadavg()
    return result


# --- retrieval ----------------------------------------------------------------------------------


class CachedVectors:
    """Second-embedder passage vectors by chunk id, computed on first need and kept on disk."""

    def __init__(self, store, embeddings, path: Path) -> None:
        self.store, self.embeddings, self.path = store, embeddings, path
        self.vectors: dict[str, list[float]] = json.loads(path.read_text()) if path.is_file() else {}

    def __call__(self, ids: list[str]) -> dict[str, list[float]]:
        missing = [i for i in ids if i not in self.vectors]
        if missing:
            docs = self.store.get(missing)
            for doc, vec in zip(docs, self.embeddings.embed_documents([d.page_content for d in docs]), strict=True):
                self.vectors[doc.id] = vec
        return {i: self.vectors[i] for i in ids if i in self.vectors}

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps(self.vectors))


def evaluate(retriever, sets: list[str]) -> dict:
    out = {}
    for name in sets:
        started = time.perf_counter()
        questions = load_questions(QUESTION_SETS[name])
        out[name] = summarize(evaluate_retrieval(questions, retriever=retriever, k=5))
        out[name]["ms_per_query"] = round((time.perf_counter() - started) / len(questions) * 1000)
    return out


def configurations(args):
    """``(label, retriever)`` pairs, built lazily (each may load a model)."""
    from orchard.retriever import HybridRetriever, RewriteFusionRetriever, VectorRescorer

    minilm = make_embedder("minilm", args.cache)
    store = open_store(args.store, minilm)
    yield "today: hybrid MiniLM", HybridRetriever(store=store, k=5)
    yield "MiniLM dense only", HybridRetriever(store=store, k=5, dense_weight=1.0)
    yield "BM25 only", HybridRetriever(store=store, k=5, dense_weight=0.0)
    caches = []
    for name in args.rescorers:
        emb = make_embedder(name, args.cache)
        vectors = CachedVectors(store, emb, args.cache / f"vectors-{name}.json")
        caches.append(vectors)
        for depth in args.depths:
            for weight in args.rescore_weights:
                rescorer = VectorRescorer(embeddings=emb, vectors=vectors)
                label = f"hybrid + {name} second stage (top {depth}, weight {weight})"
                yield label, HybridRetriever(store=store, k=5, rescorer=rescorer, rescore_depth=depth, rescore_weight=weight)
        vectors.save()
    if args.e5_store:
        e5 = make_embedder("e5-small", args.cache)
        e5_store = open_store(args.e5_store, e5)
        yield "hybrid e5-small (dense index)", HybridRetriever(store=e5_store, k=5)
        yield "e5-small dense only", HybridRetriever(store=e5_store, k=5, dense_weight=1.0)
    if args.llm:
        from orchard.retriever import llm_rewriter

        llm = make_llm(args.llm, args.cache)
        for style in args.rewrite_styles:
            rewriter = llm_rewriter(llm, style=style)
            for weight in args.original_weights:
                label = f"rewrites ({style}, question weight {weight}) fused, hybrid MiniLM"
                yield label, RewriteFusionRetriever(base=HybridRetriever(store=store, k=5), rewrite=rewriter, original_weight=weight)
        if llm.seconds:
            print(f"fresh rewrite calls: {len(llm.seconds)}, median {sorted(llm.seconds)[len(llm.seconds) // 2]:.2f} s", flush=True)
    for vectors in caches:
        vectors.save()


class CachedLLM:
    """The rewrite model with its replies kept on disk (greedy decoding: a re-run gives the same
    reply), so tuning the fusion does not repeat the model calls; ``seconds`` lists fresh calls."""

    def __init__(self, url: str, path: Path) -> None:
        from langchain_openai import ChatOpenAI

        self.llm = ChatOpenAI(base_url=url, api_key="none", model="qwen", temperature=0.0, max_tokens=80,
                              extra_body={"max_tokens": 80}, timeout=120, max_retries=1)  # fmt: skip
        self.path = path
        self.replies: dict[str, str] = json.loads(path.read_text()) if path.is_file() else {}
        self.seconds: list[float] = []

    def invoke(self, prompt: str) -> str:
        if prompt not in self.replies:
            started = time.perf_counter()
            self.replies[prompt] = str(self.llm.invoke(prompt).content)
            self.seconds.append(time.perf_counter() - started)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text(json.dumps(self.replies, indent=1))
        return self.replies[prompt]


def make_llm(url: str, cache: Path) -> CachedLLM:
    return CachedLLM(url, cache / "rewrites.json")


def run_retrieval(args) -> dict:
    results = {}
    for label, retriever in configurations(args):
        if args.only and not any(part in label for part in args.only):
            continue
        results[label] = evaluate(retriever, args.sets)
        row = " | ".join(f"{s} {r['hit_at_1']:.3f}/{r['hit_at_5']:.3f}/{r['mrr_at_10']:.3f} ({r['ms_per_query']} ms)" for s, r in results[label].items())
        print(f"{label}: {row}", flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["speed", "retrieval"])
    parser.add_argument("--store", type=Path, default=Path("/tmp/pyd/store"), help="the MiniLM store (read only)")
    parser.add_argument("--e5-store", type=Path, help="a store of the same corpus built with ORCHARD_EMBEDDER=e5-small")
    parser.add_argument("--cache", type=Path, default=Path("/tmp/h4/cache"), help="joined models, cached vectors")
    parser.add_argument("--embedders", nargs="*", default=["minilm", "e5-small", "mpnet"])
    parser.add_argument("--sample", type=int, default=200)
    parser.add_argument("--rescorers", nargs="*", default=["e5-small", "mpnet"])
    parser.add_argument("--depths", nargs="*", type=int, default=[20])
    parser.add_argument("--rescore-weights", nargs="*", type=float, default=[0.5])
    parser.add_argument("--llm", help="OpenAI-compatible URL of a model server, for the rewrite configurations")
    parser.add_argument("--rewrite-styles", nargs="*", default=["keywords", "rewrites", "hyde"])
    parser.add_argument("--original-weights", nargs="*", type=float, default=[1.0])
    parser.add_argument("--sets", nargs="*", default=list(QUESTION_SETS))
    parser.add_argument("--only", nargs="*", help="run only configurations whose label contains one of these")
    args = parser.parse_args()
    result = run_speed(args) if args.what == "speed" else run_retrieval(args)
    OUT.mkdir(exist_ok=True)
    out = OUT / f"paraphrase-{args.what}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
