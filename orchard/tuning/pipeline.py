"""One call from rows to a servable adapter: train (SFT or DPO), then convert for llama.cpp.

Layout of ``out_dir`` (what ``orchard tune ... --out NAME`` keeps)::

    out_dir/peft/           the PEFT adapter (adapter_config.json, adapter_model.safetensors): vLLM
    out_dir/adapter.gguf    the same adapter for llama.cpp (``--lora_path``)
    out_dir/training.json   the :class:`~orchard.tuning.train.TrainingReport`

Example::

    >>> base = hf_weights_from_gguf(gguf, cache_dir=cache)  # doctest: +SKIP
    >>> built = build_adapter("dpo", rows, Path("adapters/mine"), base_dir=base, converters=find_converters(cache))  # doctest: +SKIP
    >>> built.gguf  # doctest: +SKIP
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from orchard.tuning.converter import Converters
from orchard.tuning.errors import TuningError
from orchard.tuning.gguf_lora import ADAPTER_GGUF, adapter_to_gguf
from orchard.tuning.train import TrainingReport, train_dpo, train_sft

METHODS = ("sft", "dpo")


@dataclass(frozen=True)
class BuiltAdapter:
    peft_dir: Path
    gguf: Path
    report: TrainingReport


def build_adapter(
    method: str, rows: Iterable[Mapping[str, Any]], out_dir: Path, *, base_dir: Path, converters: Converters, **train_options: Any,
) -> BuiltAdapter:
    """Train a LoRA adapter with ``method`` (``sft``; ``distill`` is SFT on teacher rows; ``dpo``)
    on ``base_dir`` (an HF folder, e.g. from :func:`~orchard.tuning.hf_weights.hf_weights_from_gguf`)
    and convert it to GGUF. ``train_options`` go to :func:`~orchard.tuning.train.train_sft` /
    :func:`~orchard.tuning.train.train_dpo` (``max_steps``, ``epochs``, ``lora``, ``progress``...).

    Raises:
        TuningError: an unknown method, bad rows, or a failed conversion.
    """
    method = "sft" if method == "distill" else method
    if method not in METHODS:
        msg = f"unknown tuning method {method!r} — use sft, dpo or distill"
        raise TuningError(msg)
    out_dir = Path(out_dir)
    peft_dir = out_dir / "peft"
    train = train_sft if method == "sft" else train_dpo
    report = train(base_dir, rows, peft_dir, **train_options)
    gguf = adapter_to_gguf(peft_dir, base_dir=base_dir, out_file=out_dir / ADAPTER_GGUF, converters=converters)
    (out_dir / "training.json").write_text(json.dumps(asdict(report), indent=1))
    return BuiltAdapter(peft_dir=peft_dir, gguf=gguf, report=report)
