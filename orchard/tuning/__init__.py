"""LoRA adapters trained on this machine, served by llama.cpp (GGUF) or vLLM (PEFT folder).

The pipeline, each step a module:

1. :mod:`~orchard.tuning.converter` — llama.cpp's converters from the llama-cpp-python sdist
   (extracted once, ``make``: ``python -m orchard.tuning --cache-dir CACHE``).
2. :mod:`~orchard.tuning.hf_weights` — HF float32 weights of the packaged GGUF (dequantized, cached).
3. :mod:`~orchard.tuning.train` — ``train_sft`` / ``train_dpo``: TRL + PEFT LoRA on CPU with a
   progress callback; :mod:`~orchard.tuning.distill` makes SFT rows from a teacher's answers.
4. :mod:`~orchard.tuning.gguf_lora` — PEFT folder -> GGUF LoRA adapter; a check that llama.cpp
   applies it; the server command with ``--lora_path``.
5. :mod:`~orchard.tuning.pipeline` — ``build_adapter``: train, then convert, in one call.

Heavy imports (torch, transformers, TRL, PEFT) happen inside the functions, so importing this
package is cheap.
"""

from orchard.tuning.converter import Converters, cached_converters, find_converters, prepare_converters
from orchard.tuning.distill import teacher_rows
from orchard.tuning.errors import TuningError
from orchard.tuning.gguf_lora import AdapterCheck, adapter_to_gguf, check_adapter, hf_to_gguf, server_command
from orchard.tuning.hf_weights import hf_weights_from_gguf
from orchard.tuning.pipeline import BuiltAdapter, build_adapter
from orchard.tuning.train import LoraSettings, TrainingProgress, TrainingReport, as_chat_rows, train_dpo, train_sft

__all__ = [
    "AdapterCheck",
    "BuiltAdapter",
    "Converters",
    "LoraSettings",
    "TrainingProgress",
    "TrainingReport",
    "TuningError",
    "adapter_to_gguf",
    "as_chat_rows",
    "build_adapter",
    "cached_converters",
    "check_adapter",
    "find_converters",
    "hf_to_gguf",
    "hf_weights_from_gguf",
    "prepare_converters",
    "server_command",
    "teacher_rows",
    "train_dpo",
    "train_sft",
]
