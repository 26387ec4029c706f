"""PEFT adapters -> llama.cpp: GGUF LoRA files, and a check that llama.cpp loads and applies them.

llama.cpp applies a LoRA adapter at run time on top of the (quantized) base GGUF, so the served
model file stays the packaged one and an adapter is a few MB: ``Llama(model_path=base,
lora_path=adapter)`` in process, ``python -m llama_cpp.server --model base --lora_path adapter``
for the server (``lora_path`` in llama_cpp/server/settings.py; with an adapter llama.cpp reads the
model into memory instead of mapping it). The conversion is llama.cpp's own
``convert_lora_to_gguf.py`` (from :mod:`orchard.tuning.converter`), run in a subprocess with the
vendored ``gguf-py``; it needs the base model's HF ``config.json`` only (``--base``), not its weights.

Example::

    >>> tools = find_converters(cache_dir)  # doctest: +SKIP
    >>> adapter = adapter_to_gguf(Path("adapters/mine"), base_dir=hf_folder, out_file=Path("mine.gguf"), converters=tools)  # doctest: +SKIP
    >>> check_adapter(base_gguf, adapter).changed  # doctest: +SKIP
    True
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from orchard.tuning.converter import Converters
from orchard.tuning.errors import TuningError

#: The GGUF adapter's name in an adapter folder (:mod:`orchard.tuning.pipeline`).
ADAPTER_GGUF = "adapter.gguf"


def adapter_to_gguf(adapter_dir: Path, *, base_dir: Path, out_file: Path, converters: Converters, outtype: str = "f32") -> Path:
    """Convert the PEFT folder ``adapter_dir`` into a GGUF LoRA adapter at ``out_file``.

    ``base_dir`` is the HF folder the adapter was trained on (its config.json is read).
    ``outtype`` ``f32`` keeps the trained values exactly (rank 8 on every linear layer of the 0.5B:
    17.6 MB, converted in ~3 s — bench/tune_cost.py); ``f16``/``q8_0`` halve/quarter that.

    Raises:
        TuningError: the folder is not a PEFT adapter, or the converter failed (its output tail).
    """
    adapter_dir, out_file = Path(adapter_dir), Path(out_file)
    if not (adapter_dir / "adapter_config.json").is_file():
        msg = f"{adapter_dir} is not a PEFT adapter folder (no adapter_config.json)"
        raise TuningError(msg)
    out_file.parent.mkdir(parents=True, exist_ok=True)
    converters.run(converters.lora_to_gguf, [adapter_dir.resolve(), "--base", Path(base_dir).resolve(), "--outfile", out_file.resolve(), "--outtype", outtype])
    if not out_file.is_file():
        msg = f"convert_lora_to_gguf.py wrote no {out_file}"
        raise TuningError(msg)
    return out_file


def hf_to_gguf(model_dir: Path, *, out_file: Path, converters: Converters, outtype: str = "f32") -> Path:
    """Convert an HF model folder (weights, config, tokenizer) into a GGUF model file."""
    out_file = Path(out_file)
    out_file.parent.mkdir(parents=True, exist_ok=True)
    converters.run(converters.hf_to_gguf, [Path(model_dir).resolve(), "--outfile", out_file.resolve(), "--outtype", outtype])
    if not out_file.is_file():
        msg = f"convert_hf_to_gguf.py wrote no {out_file}"
        raise TuningError(msg)
    return out_file


@dataclass(frozen=True)
class AdapterCheck:
    """The base model and the base + adapter on one prompt: greedy text and next-token logits."""

    base_text: str
    adapter_text: str
    max_logit_change: float  # largest |adapter - base| over the vocabulary, next token after the prompt

    @property
    def changed(self) -> bool:
        return self.max_logit_change > 1e-4


def check_adapter(base_gguf: Path, adapter_gguf: Path, *, prompt: str = "The capital of France is", max_tokens: int = 8, n_threads: int | None = None) -> AdapterCheck:
    """Load ``base_gguf`` in llama.cpp without and with ``adapter_gguf``; compare the next-token
    logits after ``prompt`` and greedy-decode ``max_tokens`` tokens with each.

    Raises:
        TuningError: llama.cpp refused the adapter (e.g. it was trained on another base).
    """
    base_logits, base_text = _next_logits_and_text(base_gguf, None, prompt, max_tokens, n_threads)
    try:
        adapter_logits, adapter_text = _next_logits_and_text(base_gguf, adapter_gguf, prompt, max_tokens, n_threads)
    except (ValueError, RuntimeError) as exc:
        msg = f"llama.cpp could not apply {adapter_gguf} to {base_gguf}: {exc}"
        raise TuningError(msg) from exc
    change = max(abs(a - b) for a, b in zip(adapter_logits, base_logits, strict=True))
    return AdapterCheck(base_text=base_text, adapter_text=adapter_text, max_logit_change=float(change))


def _next_logits_and_text(model: Path, lora: Path | None, prompt: str, max_tokens: int, n_threads: int | None) -> tuple[Sequence[float], str]:
    from llama_cpp import Llama

    llm = Llama(
        model_path=str(model), lora_path=str(lora) if lora else None, n_ctx=256, logits_all=True,
        n_threads=n_threads, verbose=False, seed=0,
    )
    try:
        tokens = llm.tokenize(prompt.encode())
        llm.eval(tokens)
        logits = llm.scores[llm.n_tokens - 1].tolist()
        llm.reset()
        out = llm.create_completion(prompt, max_tokens=max_tokens, temperature=0.0)
        return logits, out["choices"][0]["text"]
    finally:
        llm.close()


def server_command(base_gguf: Path, adapter_gguf: Path | None, *, port: int, n_threads: int = 2, n_ctx: int | None = None) -> list[str]:
    """The llama-cpp-python server's arguments serving ``base_gguf`` with ``adapter_gguf``
    (``--lora_path``; the flag of llama_cpp/server/settings.py's ``lora_path``)."""
    import sys

    cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(base_gguf), "--host", "127.0.0.1",
           "--port", str(port), "--n_threads", str(n_threads)]
    if n_ctx:
        cmd += ["--n_ctx", str(n_ctx)]
    if adapter_gguf:
        cmd += ["--lora_path", str(adapter_gguf)]
    return cmd
