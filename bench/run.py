"""Orchard benchmarks, side by side with the plain LangChain tutorial pipeline, in one run.

Usage (from the repository root, after `make setup`; results in bench/out/, summarized in
bench/RESULTS.md):

    .venv/bin/pip install -r requirements-bench.txt -c requirements.lock
    .venv/bin/python bench/run.py retrieval     # ingestion chunks/s + hit@k/MRR, Orchard vs plain
    .venv/bin/python bench/run.py latency       # search p50/p95, ask time to first token and tok/s

`retrieval` needs the Python 3.11 docs (`apt-get install python3.11-doc`). The plain pipeline is the
LangChain RAG tutorial: BSHTMLLoader, RecursiveCharacterTextSplitter(1000, 200), the same MiniLM
through sentence-transformers with HuggingFaceEmbeddings' defaults (batch 32, not normalized),
Chroma, similarity top-k. Orchard ingests as `orchard ingest` does (the store's ingestion lock,
the parse worker with its time limit, the size limit). Both start from an empty store.
`bench/ingest_profile.py` profiles the ingestion side by side on a subset.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from orchard.evaluate import evaluate_retrieval, load_questions  # noqa: E402

CORPUS = Path("/usr/share/doc/python3.11/html")
CORPUS_PATHS = ["library", "reference", "tutorial", "whatsnew", "glossary.html"]
QUESTION_SETS = {
    "public": ROOT.parent / "shared" / "eval" / "pydocs-questions.jsonl",
    "heldout": ROOT / "bench" / "heldout-questions.jsonl",
}
OUT = ROOT / "bench" / "out"


def machine() -> dict:
    return {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()}


# --- Orchard ----------------------------------------------------------------------------------


def orchard_store(store_dir: Path, collection: str = "orchard"):
    from orchard.embeddings import MiniLMEmbeddings
    from orchard.store import DocumentStore, make_chroma_client

    return DocumentStore(client=make_chroma_client(path=store_dir), collection=collection, embeddings=MiniLMEmbeddings())


def product_limits():
    """The limits `orchard ingest` applies (size limit, parse worker with its time limit)."""
    from orchard.config import Settings
    from orchard.ingest import IngestLimits

    settings = Settings()
    return IngestLimits(max_file_bytes=int(settings.max_file_mb * 1_000_000), parse_seconds=settings.parse_timeout_s,
                        follow_symlinks=settings.follow_symlinks)  # fmt: skip


def run_orchard(store_dir: Path, *, reuse: bool) -> dict:
    from orchard.ingest import ingest
    from orchard.retriever import HybridRetriever
    from orchard.store_repair import exclusive_ingestion

    if not reuse:  # time an ingestion from nothing (an old store would find every file unchanged)
        shutil.rmtree(store_dir, ignore_errors=True)
    store = orchard_store(store_dir)
    result: dict = {}
    if not (reuse and store.count()):
        cwd = os.getcwd()
        os.chdir(CORPUS)
        try:
            store.embeddings.warm_up()
            started = time.perf_counter()
            with exclusive_ingestion(store_dir):  # as `orchard ingest` runs: the store's lock, the parse worker
                report = ingest(CORPUS_PATHS, store=store, progress=False, limits=product_limits())
            seconds = time.perf_counter() - started
        finally:
            os.chdir(cwd)
        chars = sum(len(t) for t in store._get_all(["documents"])["documents"])
        result["ingest"] = {
            "files": report.files_indexed, "chunks": report.chunks_total, "seconds": round(seconds, 1),
            "chunks_per_s": round(report.chunks_total / seconds, 2), "chunk_chars_per_s": round(chars / seconds),
            "failed": report.files_failed,
        }  # fmt: skip
    retriever = HybridRetriever(store=store, k=5)
    for name, path in QUESTION_SETS.items():
        result[name] = summarize(evaluate_retrieval(load_questions(path), retriever=retriever, k=5))
    for weight in (0.0, 1.0):  # BM25 only, dense only: what the fusion adds
        only = HybridRetriever(store=store, k=5, dense_weight=weight)
        label = "bm25_only" if weight == 0 else "dense_only"
        result[label] = {n: summarize(evaluate_retrieval(load_questions(p), retriever=only, k=5)) for n, p in QUESTION_SETS.items()}
    return result


def summarize(evaluation: dict) -> dict:
    return {
        "hit_at_1": round(evaluation["hit_at_1"], 3),
        "hit_at_5": round(evaluation["hit_at_k"], 3),
        "mrr_at_10": round(evaluation["mrr"], 3),
        "misses": [q["q"] for q in evaluation["questions"] if not q["hit"]],
    }


# --- the plain LangChain tutorial pipeline ------------------------------------------------------


class PlainHFEmbeddings:
    """What ``langchain_huggingface.HuggingFaceEmbeddings(model_name=...)`` does by default."""

    def __init__(self) -> None:
        from sentence_transformers import SentenceTransformer

        from orchard.embeddings import model_path

        self.client = SentenceTransformer(model_path(), device="cpu")

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self.client.encode(texts, batch_size=32, show_progress_bar=False).tolist()

    def embed_query(self, text: str) -> list[float]:
        return self.embed_documents([text])[0]


class PlainRetriever:
    def __init__(self, vectorstore) -> None:
        self.vectorstore = vectorstore

    def invoke(self, query: str, k: int = 4):
        return self.vectorstore.similarity_search(query, k=k)


def run_plain(store_dir: Path, *, corpus: Path = CORPUS, paths: list[str] = CORPUS_PATHS) -> dict:
    import chromadb
    from chromadb.config import Settings as ChromaSettings
    from langchain_chroma import Chroma
    from langchain_community.document_loaders import BSHTMLLoader
    from langchain_core.embeddings import Embeddings
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    class _Emb(PlainHFEmbeddings, Embeddings):
        pass

    embeddings = _Emb()
    embeddings.embed_documents(["warm up"])
    shutil.rmtree(store_dir, ignore_errors=True)  # from nothing, as Orchard's run (adding again would duplicate)
    files = []
    for given in paths:
        path = corpus / given
        files += sorted(path.rglob("*.html")) if path.is_dir() else [path]
    started = time.perf_counter()
    docs = []
    for path in files:
        for doc in BSHTMLLoader(str(path), open_encoding="utf-8").load():
            doc.metadata["source"] = str(path.relative_to(corpus))
            docs.append(doc)
    loaded = time.perf_counter()
    splits = RecursiveCharacterTextSplitter(chunk_size=1000, chunk_overlap=200).split_documents(docs)
    client = chromadb.PersistentClient(path=str(store_dir), settings=ChromaSettings(anonymized_telemetry=False))
    vectorstore = Chroma(client=client, collection_name="plain", embedding_function=embeddings)
    for start in range(0, len(splits), 2000):
        vectorstore.add_documents(splits[start : start + 2000])
    seconds = time.perf_counter() - started
    chars = sum(len(d.page_content) for d in splits)
    ingested = {
        "files": len(files), "chunks": len(splits), "seconds": round(seconds, 1),
        "chunks_per_s": round(len(splits) / seconds, 2), "chunk_chars_per_s": round(chars / seconds),
        "load_s": round(loaded - started, 1),
    }  # fmt: skip
    result = {"ingest": ingested}
    retriever = PlainRetriever(vectorstore)
    for name, path in QUESTION_SETS.items():
        result[name] = summarize(evaluate_retrieval(load_questions(path), retriever=retriever, k=5))
    return result


# --- latency ----------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def run_latency(store_dir: Path, base_url: str, repeats: int) -> dict:
    from langchain_openai import ChatOpenAI

    from orchard.components import Components
    from orchard.config import Settings
    from orchard.events import Token
    from orchard.retriever import HybridRetriever
    from orchard.usecases import AnswerRequest, build_orchard

    store = orchard_store(store_dir)
    retriever = HybridRetriever(store=store, k=5)
    questions = [q["q"] for path in QUESTION_SETS.values() for q in load_questions(path)]
    settings = Settings(llm_base_url=base_url, llm_temperature=0, llm_max_tokens=128, store_dir=store_dir)
    orchard = build_orchard(components=Components(settings, store=store, embeddings=store.embeddings), notify=print)
    orchard.model_server.ensure()  # at the default URL: starts the embedded server if none answers

    def ask(question: str):
        events = orchard.answers.stream(AnswerRequest(question=question))
        return ({"answer": event.text} for event in events if isinstance(event, Token))

    retriever.invoke("warm up")  # loads the embedder and builds the BM25 index before timing
    timings = []
    for _ in range(repeats):
        for question in questions:
            started = time.perf_counter()
            retriever.invoke(question)
            timings.append((time.perf_counter() - started) * 1000)
    result: dict = {"search_ms": {"n": len(timings), "p50": round(percentile(timings, 0.5), 1), "p95": round(percentile(timings, 0.95), 1)}}

    llm = ChatOpenAI(
        base_url=base_url, api_key="none", model="m", temperature=0, max_tokens=128, extra_body={"max_tokens": 128},
        stream_usage=False,
    )
    from orchard.chains.rag import fit_context, format_context
    from orchard.prompts import load_prompt

    prompt = load_prompt("rag_answer")
    raw, raw_same_prompt, asked = [], [], []
    for question in questions[:8]:
        docs = fit_context(retriever.invoke(question), 2400)
        messages = prompt.format_messages(context=format_context(docs), question=question, history=[])
        # llama.cpp reuses the previous prompt's cached prefix: `asked` runs first, and the short
        # question-only request sits between it and the same-prompt request to evict it.
        asked.append(stream_timing(lambda q=question: ask(q)))
        raw.append(stream_timing(lambda q=question: ({"answer": c.content} for c in llm.stream(q))))
        raw_same_prompt.append(stream_timing(lambda m=messages: ({"answer": c.content} for c in llm.stream(m))))
    result["raw_model_question_only"] = timing_summary(raw)
    result["raw_model_same_prompt_as_ask"] = timing_summary(raw_same_prompt)
    result["orchard_ask"] = timing_summary(asked)
    return result


def stream_timing(make_stream) -> dict:
    started = time.perf_counter()
    first, pieces = None, 0
    for chunk in make_stream():
        if chunk.get("answer"):
            pieces += 1
            if first is None:
                first = time.perf_counter()
    end = time.perf_counter()
    first = first or end
    return {"ttft": first - started, "tokens": pieces, "decode_s": end - first}


def timing_summary(runs: list[dict]) -> dict:
    return {
        "n": len(runs),
        "ttft_s_median": round(statistics.median(r["ttft"] for r in runs), 2),
        "tokens_per_s_median": round(statistics.median(r["tokens"] / r["decode_s"] for r in runs if r["decode_s"] > 0), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["retrieval", "latency", "all"])
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--reuse", action="store_true", help="reuse an existing Orchard store (skip ingestion timing)")
    parser.add_argument("--skip-plain", action="store_true")
    parser.add_argument("--skip-orchard", action="store_true")
    parser.add_argument("--base-url", default="http://127.0.0.1:8000/v1")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    results: dict = {"machine": machine(), "command": " ".join(sys.argv), "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    if args.what in ("retrieval", "all"):
        if not args.skip_orchard:
            results["orchard"] = run_orchard(args.out / "orchard-store", reuse=args.reuse)
            print(json.dumps(results["orchard"], indent=1), flush=True)
        if not args.skip_plain:
            results["plain"] = run_plain(args.out / "plain-store")
            print(json.dumps(results["plain"], indent=1), flush=True)
            o, p = results.get("orchard", {}).get("ingest"), results["plain"]["ingest"]
            if o:
                results["ingest_speedup_chunks_per_s"] = round(o["chunks_per_s"] / p["chunks_per_s"], 2)
                results["ingest_speedup_wall"] = round(p["seconds"] / o["seconds"], 2)
    if args.what in ("latency", "all"):
        results["latency"] = run_latency(args.out / "orchard-store", args.base_url, args.repeats)
    name = args.out / f"results-{args.what}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    name.write_text(json.dumps(results, indent=1))
    print(json.dumps({k: v for k, v in results.items() if k not in ("orchard", "plain")}, indent=1))
    print(f"written {name}")


if __name__ == "__main__":
    main()
