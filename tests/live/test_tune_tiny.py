"""The whole tuning pipeline on a tiny model made here: a randomly initialised Qwen2 with the
0.5B's architecture and real tokenizer (read from the packaged GGUF) but two small layers,
converted to a GGUF base with llama.cpp's converter; SFT and DPO train LoRA adapters for a few
steps (TRL + PEFT, CPU), each is converted to a GGUF adapter, and llama.cpp — in process and as
``llama_cpp.server --lora_path`` — loads it and generates. The assertions are about behaviour:
the SFT adapter makes llama.cpp more likely to produce the trained answer, the DPO adapter
widens the chosen-over-rejected margin, and the server with the adapter answers like the
in-process model with it (not like the base)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from tests.conftest import USER_DATA_DIR, free_port, running

pytestmark = pytest.mark.live

PACKAGED = USER_DATA_DIR / "cache" / "models" / "qwen-0.5b.gguf"
SFT_ROWS = [
    {"prompt": "What is a list?", "completion": "A list is a mutable sequence of items."},
    {"prompt": "What is a tuple?", "completion": "A tuple is an immutable sequence of items."},
]
DPO_ROWS = [
    {"prompt": "What is a dict?", "chosen": "A mapping from keys to values.", "rejected": "A kind of fruit."},
    {"prompt": "What is a set?", "chosen": "An unordered collection of unique items.", "rejected": "A kind of fruit."},
]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory):
    """(HF folder, GGUF base, converters, tokenizer) of the tiny random model."""
    import torch
    from transformers import AutoConfig, AutoTokenizer, Qwen2ForCausalLM

    from orchard.tuning.converter import cached_converters
    from orchard.tuning.gguf_lora import hf_to_gguf

    converters = cached_converters(USER_DATA_DIR / "cache")
    if not PACKAGED.is_file() or converters is None:
        pytest.fail(f"needs {PACKAGED} and the converters (`python -m orchard.tuning --cache-dir {USER_DATA_DIR / 'cache'}`; make does both)")
    work = tmp_path_factory.mktemp("tiny")
    tokenizer = AutoTokenizer.from_pretrained(PACKAGED.parent, gguf_file=PACKAGED.name)
    config = AutoConfig.from_pretrained(PACKAGED.parent, gguf_file=PACKAGED.name)
    assert config.model_type == "qwen2" and config.vocab_size == len(tokenizer) == 151936
    config.update({"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
                   "num_key_value_heads": 2, "max_window_layers": 2, "layer_types": config.layer_types[:2],
                   "max_position_embeddings": 1024})
    torch.manual_seed(0)
    hf = work / "hf"
    Qwen2ForCausalLM(config).save_pretrained(hf)
    tokenizer.save_pretrained(hf)
    base = hf_to_gguf(hf, out_file=work / "base.gguf", converters=converters)
    return hf, base, converters, tokenizer


def chat_text(tokenizer, prompt: str, answer: str | None = None) -> str:
    messages = [{"role": "user", "content": prompt}]
    if answer is None:
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return tokenizer.apply_chat_template([*messages, {"role": "assistant", "content": answer}], tokenize=False)


def answer_logprob(llm, tokenizer, prompt: str, answer: str) -> float:
    """log P(answer | prompt) under llama.cpp, both rendered with the chat template."""
    import numpy as np

    head = llm.tokenize(chat_text(tokenizer, prompt).encode(), add_bos=False, special=True)
    full = llm.tokenize(chat_text(tokenizer, prompt, answer).encode(), add_bos=False, special=True)
    assert full[: len(head)] == head
    llm.reset()
    llm.eval(full)
    scores = np.asarray(llm.scores[: len(full)], dtype=np.float64)
    total = 0.0
    for position in range(len(head), len(full)):
        row = scores[position - 1]
        total += row[full[position]] - (row.max() + math.log(np.exp(row - row.max()).sum()))
    return total


def llama(base: Path, adapter: Path | None):
    from llama_cpp import Llama

    # the server's thread count too: a random model's logits are close, the summation order must match
    return Llama(model_path=str(base), lora_path=str(adapter) if adapter else None, n_ctx=256, n_threads=2, logits_all=True, verbose=False, seed=0)


def logprobs(base: Path, adapter: Path | None, tokenizer, pairs: list[tuple[str, str]]) -> list[float]:
    llm = llama(base, adapter)
    try:
        return [answer_logprob(llm, tokenizer, prompt, answer) for prompt, answer in pairs]
    finally:
        llm.close()


@pytest.fixture(scope="module")
def sft_adapter(tiny, tmp_path_factory: pytest.TempPathFactory):
    from orchard.tuning.pipeline import build_adapter
    from orchard.tuning.train import LoraSettings

    hf, _base, converters, _ = tiny
    out = tmp_path_factory.mktemp("sft")
    seen = []
    built = build_adapter("sft", SFT_ROWS, out, base_dir=hf, converters=converters, max_steps=4, learning_rate=2e-2,
                          lora=LoraSettings(r=4, alpha=8), progress=seen.append)
    assert built.report.steps == 4 and len(built.report.losses) == 4
    assert [p.step for p in seen] == [1, 2, 3, 4] and seen[-1].total == 4 and seen[-1].seconds_left == 0
    assert (built.peft_dir / "adapter_model.safetensors").is_file() and (out / "training.json").is_file()
    assert built.gguf == out / "adapter.gguf" and built.gguf.is_file()
    return built.gguf


def test_sft_adapter_makes_llama_cpp_likelier_to_give_the_trained_answers(tiny, sft_adapter) -> None:
    from orchard.tuning.gguf_lora import check_adapter

    _, base, _, tokenizer = tiny
    pairs = [(row["prompt"], row["completion"]) for row in SFT_ROWS]
    before, after = logprobs(base, None, tokenizer, pairs), logprobs(base, sft_adapter, tokenizer, pairs)
    assert all(a > b + 1.0 for a, b in zip(after, before, strict=True)), (before, after)
    check = check_adapter(base, sft_adapter, prompt=chat_text(tokenizer, SFT_ROWS[0]["prompt"]), max_tokens=6)
    assert check.changed and check.adapter_text  # llama.cpp applied it and generated with it


def test_dpo_adapter_widens_the_chosen_over_rejected_margin(tiny, tmp_path: Path) -> None:
    from orchard.tuning.pipeline import build_adapter
    from orchard.tuning.train import LoraSettings

    hf, base, converters, tokenizer = tiny
    built = build_adapter("dpo", DPO_ROWS, tmp_path, base_dir=hf, converters=converters, max_steps=4, learning_rate=2e-2,
                          lora=LoraSettings(r=4, alpha=8))
    assert built.report.steps == 4 and built.report.method == "dpo"
    adapter = built.gguf

    def margins(lora: Path | None) -> list[float]:
        chosen = logprobs(base, lora, tokenizer, [(r["prompt"], r["chosen"]) for r in DPO_ROWS])
        rejected = logprobs(base, lora, tokenizer, [(r["prompt"], r["rejected"]) for r in DPO_ROWS])
        return [c - r for c, r in zip(chosen, rejected, strict=True)]

    before, after = margins(None), margins(adapter)
    assert all(a > b + 0.5 for a, b in zip(after, before, strict=True)), (before, after)


def test_llama_cpp_server_serves_the_adapter(tiny, sft_adapter, tmp_path: Path) -> None:
    import httpx

    from orchard.tuning.gguf_lora import server_command

    _, base, _, tokenizer = tiny
    prompt = chat_text(tokenizer, SFT_ROWS[0]["prompt"])
    expected = {}
    for name, lora in (("base", None), ("adapter", sft_adapter)):
        llm = llama(base, lora)
        try:
            expected[name] = llm.create_completion(prompt, max_tokens=4, temperature=0.0)["choices"][0]["text"]
        finally:
            llm.close()
    assert expected["adapter"] != expected["base"]
    port = free_port()
    url = f"http://127.0.0.1:{port}/v1"
    with running(server_command(base, sft_adapter, port=port, n_ctx=256), health_url=f"{url}/models", log=tmp_path / "server.log"):
        reply = httpx.post(f"{url}/completions", json={"prompt": prompt, "max_tokens": 4, "temperature": 0.0}, timeout=60).json()
    assert reply["choices"][0]["text"] == expected["adapter"]
