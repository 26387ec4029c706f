"""LoRA adapters trained on this machine's CPU: SFT and DPO with TRL + PEFT.

Rows come in the TRL layouts :class:`orchard.feedback.FeedbackStore` exports:
``{"prompt", "completion"}`` for SFT (up-rated answers, or a teacher's answers for distillation)
and ``{"prompt", "chosen", "rejected"}`` for DPO. A plain-text row is turned into the chat form
the served model sees (the question as the user's message, the answer as the assistant's), so
TRL renders it with the model's own chat template and the loss covers the answer only. Rows that
already hold message lists are passed through.

Only the LoRA matrices train (PEFT); the base weights stay frozen in float32 (CPU: no bf16 or
fp16 autocast, no gradient checkpointing — sequences are short). DPO's reference model is the
same base with the adapter switched off (TRL does that for a PEFT model), so memory holds one
copy of the weights. The output folder is a PEFT adapter (``adapter_config.json`` +
``adapter_model.safetensors``): vLLM serves it as is, :mod:`orchard.tuning.gguf_lora` turns it
into a llama.cpp adapter. Costs measured on the 0.5B: ``bench/tune_cost.py``.

Example::

    >>> report = train_sft(base, [{"prompt": "What is 2+2?", "completion": "4."}], Path("out"), max_steps=2)  # doctest: +SKIP
    >>> report.seconds_per_step  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import json
import math
import resource
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from orchard.tuning.errors import TuningError

#: Every linear layer of a Qwen2 / Llama block.
ALL_LINEAR = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class LoraSettings:
    """The adapter's shape: rank ``r``, scale ``alpha / r``, the layers it is added to."""

    r: int = 8
    alpha: int = 16
    dropout: float = 0.0
    target_modules: tuple[str, ...] = ALL_LINEAR


@dataclass(frozen=True)
class TrainingProgress:
    """One optimizer step done: ``step`` of ``total``, the step's loss, the estimated time left."""

    step: int
    total: int
    loss: float | None
    elapsed: float
    seconds_left: float


@dataclass(frozen=True)
class TrainingReport:
    """What a training run did, also written as ``training.json`` beside the adapter."""

    method: str
    out_dir: str
    rows: int
    steps: int
    seconds: float
    seconds_per_step: float
    losses: list[float] = field(default_factory=list)
    peak_rss_bytes: int = 0
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def final_loss(self) -> float | None:
        return self.losses[-1] if self.losses else None


ProgressFn = Callable[[TrainingProgress], None]


def as_chat_rows(rows: Iterable[Mapping[str, Any]], *, kind: str, system: str | None = None) -> list[dict[str, Any]]:
    """TRL conversational rows from plain-text (or already conversational) ones.

    ``kind`` is ``"sft"`` (``prompt`` + ``completion``) or ``"dpo"`` (``prompt`` + ``chosen`` +
    ``rejected``); other keys (``source``, ``user``...) are dropped.

    Raises:
        TuningError: a row lacks one of those keys or has an empty value.
    """
    answers = ("completion",) if kind == "sft" else ("chosen", "rejected")
    out = []
    for number, row in enumerate(rows, 1):
        missing = [key for key in ("prompt", *answers) if not row.get(key)]
        if missing:
            msg = f"row {number} has no {', '.join(missing)} — {kind} rows need {', '.join(('prompt', *answers))}"
            raise TuningError(msg)
        prompt = row["prompt"]
        if isinstance(prompt, str):
            prompt = [{"role": "user", "content": prompt}]
            if system:
                prompt.insert(0, {"role": "system", "content": system})
        converted = {"prompt": prompt}
        for key in answers:
            value = row[key]
            converted[key] = [{"role": "assistant", "content": value}] if isinstance(value, str) else value
        out.append(converted)
    if not out:
        msg = f"no {kind} rows to train on"
        raise TuningError(msg)
    return out


def train_sft(
    base_dir: Path,
    rows: Iterable[Mapping[str, Any]],
    out_dir: Path,
    *,
    max_steps: int | None = None,
    epochs: float = 1.0,
    lora: LoraSettings = LoraSettings(),
    learning_rate: float = 2e-4,
    batch_size: int = 1,
    max_length: int = 512,
    system: str | None = None,
    seed: int = 0,
    progress: ProgressFn | None = None,
) -> TrainingReport:
    """Supervised fine-tuning of a LoRA adapter on ``{prompt, completion}`` rows (loss on the
    completion only). ``max_steps`` (if given) overrides ``epochs``."""
    from trl import SFTConfig, SFTTrainer

    data = as_chat_rows(rows, kind="sft", system=system)
    config = SFTConfig(
        max_length=max_length, completion_only_loss=True, packing=False,
        **_common_args(out_dir, max_steps, epochs, learning_rate, batch_size, seed),
    )
    return _train("sft", SFTTrainer, config, base_dir, data, out_dir, lora, progress)


def train_dpo(
    base_dir: Path,
    rows: Iterable[Mapping[str, Any]],
    out_dir: Path,
    *,
    max_steps: int | None = None,
    epochs: float = 1.0,
    lora: LoraSettings = LoraSettings(),
    learning_rate: float = 5e-5,
    beta: float = 0.1,
    batch_size: int = 1,
    max_length: int = 512,
    system: str | None = None,
    seed: int = 0,
    progress: ProgressFn | None = None,
) -> TrainingReport:
    """Direct preference optimisation of a LoRA adapter on ``{prompt, chosen, rejected}`` rows;
    the reference is the base model (the adapter switched off)."""
    from trl import DPOConfig, DPOTrainer

    data = as_chat_rows(rows, kind="dpo", system=system)
    config = DPOConfig(
        max_length=max_length, beta=beta,
        **_common_args(out_dir, max_steps, epochs, learning_rate, batch_size, seed),
    )
    return _train("dpo", DPOTrainer, config, base_dir, data, out_dir, lora, progress)


def _common_args(out_dir: Path, max_steps: int | None, epochs: float, learning_rate: float, batch_size: int, seed: int) -> dict[str, Any]:
    return {
        "output_dir": str(Path(out_dir) / "checkpoints"),
        "max_steps": max_steps if max_steps else -1,
        "num_train_epochs": epochs,
        "learning_rate": learning_rate,
        "per_device_train_batch_size": batch_size,
        "gradient_accumulation_steps": 1,
        "lr_scheduler_type": "constant",
        "warmup_steps": 0,
        "logging_steps": 1,
        "save_strategy": "no",
        "report_to": "none",
        "use_cpu": True,
        "bf16": False,
        "fp16": False,
        "gradient_checkpointing": False,
        "disable_tqdm": True,
        "dataloader_num_workers": 0,
        "seed": seed,
    }


def _train(method, trainer_cls, config, base_dir, data, out_dir, lora, progress) -> TrainingReport:
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base_dir, out_dir = Path(base_dir), Path(out_dir)
    if not (base_dir / "config.json").is_file():
        msg = f"{base_dir} is not a Hugging Face model folder (no config.json) — make one with hf_weights_from_gguf"
        raise TuningError(msg)
    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    peft_config = LoraConfig(
        r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
        target_modules=list(lora.target_modules), bias="none", task_type="CAUSAL_LM",
    )
    recorder = _ProgressRecorder(progress)
    trainer = trainer_cls(
        model=model, args=config, train_dataset=Dataset.from_list(data),
        processing_class=tokenizer, peft_config=peft_config, callbacks=[recorder.callback()],
    )
    started = time.monotonic()
    trainer.train()
    seconds = time.monotonic() - started
    out_dir.mkdir(parents=True, exist_ok=True)
    trainer.model.save_pretrained(out_dir)
    with contextlib.suppress(OSError):  # the Trainer's output folder; nothing is saved there (save_strategy "no")
        (out_dir / "checkpoints").rmdir()
    steps = trainer.state.global_step
    report = TrainingReport(
        method=method, out_dir=str(out_dir), rows=len(data), steps=steps, seconds=round(seconds, 2),
        seconds_per_step=round(seconds / steps, 3) if steps else math.nan, losses=recorder.losses,
        peak_rss_bytes=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        settings={"base": str(base_dir), "lora": asdict(lora), "learning_rate": config.learning_rate,
                  "max_length": config.max_length, "batch_size": config.per_device_train_batch_size},
    )
    (out_dir / "training.json").write_text(json.dumps(asdict(report), indent=1))
    return report


class _ProgressRecorder:
    """Collects the loss of every step and reports :class:`TrainingProgress` after each one."""

    def __init__(self, progress: ProgressFn | None) -> None:
        self.progress = progress
        self.losses: list[float] = []
        self.started = time.monotonic()

    def callback(self):
        from transformers import TrainerCallback

        recorder = self

        class Progress(TrainerCallback):
            def on_train_begin(self, args, state, control, **kwargs):
                recorder.started = time.monotonic()

            def on_log(self, args, state, control, logs=None, **kwargs):
                if not logs or "loss" not in logs:
                    return
                recorder.losses.append(float(logs["loss"]))
                if recorder.progress is None:
                    return
                elapsed = time.monotonic() - recorder.started
                step, total = state.global_step, state.max_steps
                left = elapsed / step * (total - step) if step else math.nan
                recorder.progress(TrainingProgress(step, total, float(logs["loss"]), round(elapsed, 2), round(left, 1)))

        return Progress()
