"""Prompt reading (prefill) and decode speed of the packaged GGUF for llama.cpp engine flags.

In-process (llama_cpp.Llama, the engine the server wraps), one model per configuration, the
configurations interleaved round by round so a change in machine load hits them all alike:
logits_all (the server's default is True: logits for every prompt token, copied into a numpy
array), n_batch, flash attention, threads. Each round reads one ~700-token RAG-sized prompt
from an empty KV cache and decodes 32 tokens. Prints medians as JSON.

Usage (repository root, under the CPU lock)::

    flock /tmp/orchard-cpu.lock .venv/bin/python bench/engine_flags.py --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GGUF = ROOT / ".orchard" / "cache" / "models" / "qwen-0.5b.gguf"
SERVER_DEFAULT = {"n_batch": 512, "n_ubatch": 512, "flash_attn": False, "n_threads": 2, "logits_all": True}
CONFIGS = {
    "server_default": SERVER_DEFAULT,  # llama-cpp-python's server: logits_all=True unless told
    "no_logits_all": {**SERVER_DEFAULT, "logits_all": False},
    "batch128": {**SERVER_DEFAULT, "n_batch": 128, "n_ubatch": 128},
    "batch2048": {**SERVER_DEFAULT, "n_batch": 2048},
    "flash": {**SERVER_DEFAULT, "flash_attn": True},
    "threads1": {**SERVER_DEFAULT, "n_threads": 1},
    "no_logits_all_flash": {**SERVER_DEFAULT, "logits_all": False, "flash_attn": True},
}
TEXT = (
    "random.shuffle(x) shuffles the sequence x in place. To shuffle an immutable sequence and return a "
    "new shuffled list, use sample(x, k=len(x)) instead. Note that even for small len(x), the total number "
    "of permutations of x can quickly grow larger than the period of most random number generators. "
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=GGUF)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--prompt-tokens", type=int, default=700)
    parser.add_argument("--configs", default=",".join(CONFIGS))
    args = parser.parse_args()

    from llama_cpp import Llama

    names = args.configs.split(",")
    models = {}
    for name in names:
        c = CONFIGS[name]
        models[name] = Llama(model_path=str(args.model), n_ctx=2048, n_threads_batch=c["n_threads"], verbose=False, **c)
    prompt = models[names[0]].tokenize(("Sources:\n" + TEXT * 12).encode())[: args.prompt_tokens]
    prefill: dict[str, list[float]] = {n: [] for n in names}
    decode: dict[str, list[float]] = {n: [] for n in names}
    for _ in range(args.rounds):
        for name in names:
            llm = models[name]
            llm.reset()
            start = time.perf_counter()
            llm.eval(prompt)
            prefill[name].append(len(prompt) / (time.perf_counter() - start))
            token, start = llm.sample(temp=0.0), time.perf_counter()
            for _ in range(32):
                llm.eval([token])
                token = llm.sample(temp=0.0)
            decode[name].append(32 / (time.perf_counter() - start))
    report = {
        n: {
            "prefill_tokens_per_second": round(statistics.median(prefill[n]), 1),
            "decode_tokens_per_second": round(statistics.median(decode[n]), 1),
        }
        for n in names
    }
    print(
        json.dumps(
            {"prompt_tokens": len(prompt), "rounds": args.rounds, "configs": CONFIGS, "median": report, "load": os.getloadavg()},
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
