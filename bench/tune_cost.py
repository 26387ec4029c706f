"""Training cost on this machine: SFT and DPO LoRA steps on the real 0.5B, CPU only.

Usage (hold the CPU lock: it keeps both cores busy for a few minutes):

    flock /tmp/orchard-cpu.lock .venv/bin/python bench/tune_cost.py
    .venv/bin/python bench/tune_cost.py --steps 6 --r 8 --methods sft dpo --json bench/out/tune-cost.json

The base is the packaged GGUF (``--gguf``, default the assembled qwen-0.5b) dequantized to HF
float32 weights once (:func:`orchard.tuning.hf_weights_from_gguf`, cached under the cache folder).
Each method runs in a fresh subprocess so its peak resident memory (``ru_maxrss``) is its own.
Rows are shaped like Orchard's answers: a RAG prompt (a few excerpts of the sample documents and a
question, ~230 tokens with the chat template) and an answer of ~80 tokens; DPO pairs add a shorter
rejected answer. Batch size 1. Reported: seconds per optimizer step (median of the steps after the
first, which also warms up; the fastest one too: the machine is shared, others' short runs slow
single steps), the first step, rows (SFT) or pairs (DPO) per hour, peak RSS, and the
model load time; then (converters extracted) the adapter is converted to a GGUF LoRA adapter and
llama.cpp applies it to the quantized GGUF (size, conversion seconds, largest next-token logit
change). Prints a Markdown table and the command line; ``--json`` writes the numbers.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SAMPLE = ROOT / "samples" / "orchard-guide.md"
QUESTIONS = [
    "How often should young apple trees be watered?",
    "When is the best time to prune fruit trees?",
    "Which apple varieties store well over winter?",
    "How do I protect blossoms from a late frost?",
    "What should volunteers bring on a picking day?",
    "How far apart should new trees be planted?",
]
ANSWER = (
    "According to the orchard guide [1], young trees need a deep watering about once a week in "
    "their first summer, more often in dry spells, and the soil should drain well between waterings. "
    "Mulch around the base keeps the roots cool and holds moisture [2]. Older trees with established "
    "roots rarely need watering except in long droughts; check the soil a hand's depth down before you water."
)
REJECTED = "Water them whenever you like. Trees are hardy and it does not really matter much how often you do it."


def rows(kind: str, n: int) -> list[dict]:
    text = SAMPLE.read_text(encoding="utf-8") if SAMPLE.exists() else ANSWER * 20
    words = text.split()
    out = []
    for i in range(n):
        start = (i * 97) % max(1, len(words) - 150)
        context = " ".join(words[start:start + 150])
        prompt = f"Answer from the excerpts and cite them as [n].\n\n[1] {context}\n\nQuestion: {QUESTIONS[i % len(QUESTIONS)]}"
        if kind == "sft":
            out.append({"prompt": prompt, "completion": ANSWER})
        else:
            out.append({"prompt": prompt, "chosen": ANSWER, "rejected": REJECTED})
    return out


def run_one(method: str, base: Path, steps: int, r: int, max_length: int, cache: Path, gguf: Path) -> dict:
    """One training run in this process; returns its measurements. With the converters in
    ``cache``, the adapter is also converted to GGUF and applied by llama.cpp to ``gguf``."""
    from transformers import AutoTokenizer

    from orchard.tuning.train import LoraSettings, train_dpo, train_sft

    data = rows(method, steps)
    tokenizer = AutoTokenizer.from_pretrained(base)
    first = data[0]
    answer_key = "completion" if method == "sft" else "chosen"
    rendered = tokenizer.apply_chat_template(
        [{"role": "user", "content": first["prompt"]}, {"role": "assistant", "content": first[answer_key]}], tokenize=False,
    )
    tokens = len(tokenizer(rendered, add_special_tokens=False)["input_ids"])
    stamps: list[float] = []
    started = time.monotonic()
    train = train_sft if method == "sft" else train_dpo
    with tempfile.TemporaryDirectory() as out:
        report = train(base, data, Path(out) / method, max_steps=steps, lora=LoraSettings(r=r, alpha=2 * r),
                       max_length=max_length, progress=lambda p: stamps.append(p.elapsed))
        adapter_mb = (Path(out) / method / "adapter_model.safetensors").stat().st_size / 1e6
        total = time.monotonic() - started
        llama_cpp = _convert_and_check(Path(out) / method, base, cache, gguf)
    deltas = [b - a for a, b in itertools.pairwise(stamps)]
    per_step = statistics.median(deltas) if deltas else report.seconds_per_step
    return {
        "method": method, "steps": report.steps, "r": r, "tokens_per_row": tokens,
        "first_step_s": round(stamps[0], 2) if stamps else None, "seconds_per_step": round(per_step, 2),
        "fastest_step_s": round(min(deltas), 2) if deltas else None, "step_s": [round(d, 2) for d in deltas],
        "rows_per_hour": round(3600 / per_step), "peak_rss_gb": round(report.peak_rss_bytes / 2**30, 2),
        "setup_s": round(total - report.seconds, 1), "losses": [round(x, 3) for x in report.losses],
        "adapter_mb": round(adapter_mb, 1), **llama_cpp,
    }


def _convert_and_check(adapter: Path, base: Path, cache: Path, gguf: Path) -> dict:
    """Convert the PEFT folder to a GGUF adapter and let llama.cpp apply it to the quantized base."""
    from orchard.tuning.converter import cached_converters
    from orchard.tuning.gguf_lora import adapter_to_gguf, check_adapter

    tools = cached_converters(cache)
    if tools is None:
        return {}
    began = time.monotonic()
    out = adapter_to_gguf(adapter, base_dir=base, out_file=adapter / "adapter.gguf", converters=tools)
    convert_s = time.monotonic() - began
    check = check_adapter(gguf, out, n_threads=os.cpu_count())
    return {"gguf_adapter_mb": round(out.stat().st_size / 1e6, 1), "convert_s": round(convert_s, 1),
            "llama_cpp_logit_change": round(check.max_logit_change, 3)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gguf", type=Path, help="base GGUF (default: the assembled qwen-0.5b)")
    parser.add_argument("--cache-dir", type=Path, help="Orchard's cache folder (default: settings' cache path)")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--r", type=int, default=8)
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--methods", nargs="+", default=["sft", "dpo"], choices=["sft", "dpo"])
    parser.add_argument("--json", type=Path, help="write the measurements here")
    parser.add_argument("--one", choices=["sft", "dpo"], help=argparse.SUPPRESS)  # child process
    parser.add_argument("--base", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.one:
        print(json.dumps(run_one(args.one, args.base, args.steps, args.r, args.max_length, args.cache_dir, args.gguf)))
        return 0

    from orchard.config import load_settings
    from orchard.model import PRESETS, assemble_model
    from orchard.tuning.hf_weights import hf_weights_from_gguf

    cache = args.cache_dir or load_settings().cache_path
    gguf = args.gguf or assemble_model(PRESETS["qwen-0.5b"], cache_dir=cache)
    began = time.monotonic()
    base = hf_weights_from_gguf(gguf, cache_dir=cache)
    dequant_s = time.monotonic() - began
    load_before = os.getloadavg()
    results = []
    for method in args.methods:
        child = subprocess.run(
            [sys.executable, __file__, "--one", method, "--base", str(base), "--steps", str(args.steps),
             "--r", str(args.r), "--max-length", str(args.max_length), "--cache-dir", str(cache), "--gguf", str(gguf)],
            capture_output=True, text=True, check=False,
        )
        if child.returncode:
            print(child.stderr[-3000:], file=sys.stderr)
            return 1
        results.append(json.loads(child.stdout.strip().splitlines()[-1]))
    load_after = os.getloadavg()

    command = "flock /tmp/orchard-cpu.lock .venv/bin/python bench/tune_cost.py " + " ".join(sys.argv[1:])
    print(f"Command: `{command.strip()}`  \nBase: {gguf.name} dequantized to float32 ({base}; {dequant_s:.0f} s, 0 if cached); "
          f"LoRA r={args.r} alpha={2 * args.r} on all linear layers, batch 1, {args.steps} steps each; "
          f"load average before {load_before[0]:.2f}, after {load_after[0]:.2f}\n")
    print("| method | tokens/row | s/step (median) | fastest step s | first step s | rows or pairs/hour | peak RSS GB | setup s | adapter MB (PEFT / GGUF) | GGUF convert s | llama.cpp max logit change | losses |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        unit = "rows" if r["method"] == "sft" else "pairs"
        print(f"| {r['method'].upper()} | {r['tokens_per_row']} | {r['seconds_per_step']} | {r['fastest_step_s']} | {r['first_step_s']} | "
              f"{r['rows_per_hour']} {unit} | {r['peak_rss_gb']} | {r['setup_s']} | {r['adapter_mb']} / {r.get('gguf_adapter_mb')} | "
              f"{r.get('convert_s')} | {r.get('llama_cpp_logit_change')} | {r['losses']} |")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"command": command, "load": [load_before, load_after], "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
