"""The agent task set against the real model server: right tool and right answer, per kind, with time.

Usage (a model server at --base-url; `orchard serve` starts the embedded one):

    .venv/bin/python bench/agent_bench.py                  # all five kinds, --mode agent
    .venv/bin/python bench/agent_bench.py --mode auto      # the same questions through the auto router
    .venv/bin/python bench/agent_bench.py --kinds math sql

Each kind attaches only its own data (mixed: everything). Results: bench/out/agents-*.json.

With ``--server-log FILE`` (the log of a llama.cpp server started with ``--verbose True``) each
task also records its model calls: prompt tokens, the tokens the server had to read (not reused
from its KV cache), generated tokens and seconds per call (see :func:`server_calls`).
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
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from agent_tasks import KINDS, TASKS, attached, make_harvest_csv, make_shop_db  # noqa: E402

from orchard.config import Settings  # noqa: E402
from orchard.usecases import AnswerRequest, Orchard, build_orchard  # noqa: E402

OUT = ROOT / "bench" / "out"
_PREFIX_HIT = re.compile(r"Llama\.generate: (\d+) prefix-match hit, remaining (\d+) prompt tokens")
_PERF = re.compile(r"llama_perf_context_print:\s+(prompt eval|eval|total) time =\s+([\d.]+) ms /\s+(\d+)")


def server_calls(log: str) -> list[dict]:
    """The model calls in a piece of a verbose llama-cpp-python server log, one dict per request:
    ``prompt_tokens`` (reused + read), ``new_tokens`` (read: not in the KV cache), ``generated``
    and ``seconds`` (the server's total time for the request)."""
    calls, reused, read = [], None, None
    for line in log.splitlines():
        if m := _PREFIX_HIT.search(line):
            reused, read = int(m.group(1)), int(m.group(2))
        elif m := _PERF.search(line):
            what, ms, tokens = m.group(1), float(m.group(2)), int(m.group(3))
            if what == "prompt eval" and reused is None:  # no prefix hit: the whole prompt was read
                reused, read = 0, tokens
            elif what == "eval":
                generated = tokens
            elif what == "total":
                calls.append({"prompt_tokens": reused + read, "new_tokens": read, "generated": generated + 1,
                              "seconds": round(ms / 1000, 2)})  # fmt: skip
                reused = read = None
    return calls


def orchards(work: Path, base_url: str) -> tuple[Orchard, Orchard]:
    """(Orchard with an empty store, one with the sample documents ingested)."""
    empty = build_orchard(Settings(data_dir=work / "empty", llm_base_url=base_url))
    docs = build_orchard(Settings(data_dir=work / "docs", llm_base_url=base_url))
    docs.library.ingest([ROOT / "samples"], progress=False)
    return empty, docs


def run_task(task, orchard: Orchard, *, mode: str, db_url: str | None, tables: list[str]) -> dict:
    started = time.perf_counter()
    try:
        request = AnswerRequest(question=task.question, mode=mode, db_url=db_url, tables=tuple(tables))
        result = orchard.answers.ask(request).as_dict()
    except Exception as exc:  # a crash is a failed task, recorded
        return {"question": task.question, "error": f"{type(exc).__name__}: {exc}", "passed": False,
                "seconds": round(time.perf_counter() - started, 2)}  # fmt: skip
    used = [c["tool"] for c in result["tool_calls"]]
    if task.tool == "search_docs" and result["mode"] == "rag":
        used = ["search_docs"]  # auto mode answers documents questions with the RAG chain
    right_tool = (task.tool in used) if task.tool else not used
    right_answer = task.answer_ok(result["answer"])
    return {
        "question": task.question,
        "expected_tool": task.tool,
        "tools": used,
        "mode": result["mode"],
        "route": result.get("route"),
        "inputs": [c["input"] for c in result["tool_calls"]],
        "outputs": [c["output"][:300] for c in result["tool_calls"]],
        "answer": result["answer"],
        "right_tool": right_tool,
        "right_answer": right_answer,
        "passed": right_tool and right_answer,
        "seconds": round(time.perf_counter() - started, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kinds", nargs="*", default=list(KINDS), choices=KINDS)
    parser.add_argument("--mode", default="agent", choices=["agent", "auto"])
    parser.add_argument("--base-url", default="http://127.0.0.1:8000/v1")
    parser.add_argument("--out", type=Path, help="where to write the JSON (default: bench/out/agents-MODE-TIME.json)")
    parser.add_argument("--server-log", type=Path, help="a verbose llama.cpp server's log: per-call tokens and time")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="orchard-agents-") as tmp:
        work = Path(tmp)
        db_url = f"sqlite:///{make_shop_db(work / 'shop.sqlite')}"
        harvest = str(make_harvest_csv(work / "harvest.csv"))
        empty, docs = orchards(work, args.base_url)
        docs.model_server.ensure()
        rows: list[dict] = []
        for kind in args.kinds:
            with_db, with_file, with_docs = attached(kind)
            for task in (t for t in TASKS if t.kind == kind):
                offset = args.server_log.stat().st_size if args.server_log else 0
                row = run_task(task, docs if with_docs else empty, mode=args.mode,
                               db_url=db_url if with_db else None, tables=[harvest] if with_file else [])  # fmt: skip
                row["kind"] = kind
                row["load"] = round(os.getloadavg()[0], 2)
                if args.server_log:
                    with args.server_log.open(encoding="utf-8", errors="replace") as log:
                        log.seek(offset)
                        row["calls"] = server_calls(log.read())
                rows.append(row)
                mark = "PASS" if row["passed"] else "FAIL"
                print(f"{mark} {kind:<9} {row['seconds']:>6.1f}s {task.question}\n     tools={row.get('tools')} "
                      f"answer={row.get('answer', row.get('error'))!r:.160}", flush=True)  # fmt: skip
                for call in row.get("calls", []):
                    print(f"     call {call}", flush=True)
    summary = {}
    for kind in args.kinds:
        mine = [r for r in rows if r["kind"] == kind]
        summary[kind] = {
            "passed": sum(r["passed"] for r in mine),
            "right_tool": sum(r.get("right_tool", False) for r in mine),
            "right_answer": sum(r.get("right_answer", False) for r in mine),
            "tasks": len(mine),
            "median_seconds": round(statistics.median(r["seconds"] for r in mine), 1),
        }
    summary["all"] = {"passed": sum(r["passed"] for r in rows), "tasks": len(rows),
                      "median_seconds": round(statistics.median(r["seconds"] for r in rows), 1)}  # fmt: skip
    if args.server_log:
        per_task = [r.get("calls", []) for r in rows]
        summary["all"] |= {
            "calls_per_task": round(statistics.mean(len(c) for c in per_task), 2),
            "prompt_tokens_per_task": round(statistics.mean(sum(x["prompt_tokens"] for x in c) for c in per_task)),
            "new_tokens_per_task": round(statistics.mean(sum(x["new_tokens"] for x in c) for c in per_task)),
            "server_seconds_per_task": round(statistics.mean(sum(x["seconds"] for x in c) for c in per_task), 2),
        }
    result = {"command": " ".join(sys.argv), "mode": args.mode, "base_url": args.base_url, "cpus": os.cpu_count(),
              "load_at_end": os.getloadavg(),
              "started": time.strftime("%Y-%m-%d %H:%M:%S"), "summary": summary, "tasks": rows}  # fmt: skip
    name = args.out or OUT / f"agents-{args.mode}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    name.write_text(json.dumps(result, indent=1, ensure_ascii=False))
    for kind, s in summary.items():
        print(f"{kind:<10} passed {s['passed']}/{s['tasks']}  tool {s.get('right_tool', '-')}  answer {s.get('right_answer', '-')}  "
              f"median {s['median_seconds']} s")  # fmt: skip
    print(json.dumps(summary["all"]))
    print(f"written {name}")


if __name__ == "__main__":
    main()
