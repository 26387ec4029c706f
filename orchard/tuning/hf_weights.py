"""Hugging Face weights of a GGUF model, for training: transformers reads the GGUF (dequantized).

Orchard ships its models only as quantized GGUF files. transformers' GGUF loader
(``from_pretrained(folder, gguf_file=name)``, needs the ``gguf`` package) dequantizes every
tensor to float32 and rebuilds the config and the tokenizer (with its chat template) from the
GGUF metadata. :func:`hf_weights_from_gguf` saves that as an ordinary HF folder (safetensors,
config.json, tokenizer files) under ``<cache_dir>/hf-weights/<sha256 of the GGUF, 16 hex>/`` so
the ~1 minute of dequantizing happens once per GGUF file; TRL, PEFT, the converters and vLLM all
read the folder.

Measured (2 cores): the 0.5B Q4_K_M (491 MB) becomes 630 M float32 parameters (2.5 GB; its
``output.weight`` is a separate tensor, so the embeddings are not tied).

Example::

    >>> folder = hf_weights_from_gguf(Path(".orchard/cache/models/qwen-0.5b.gguf"), cache_dir=Path(".orchard/cache"))  # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from orchard.model import sha256_file
from orchard.tuning.errors import TuningError

_STAMP = "orchard-source.json"


def hf_weights_dir(gguf_path: Path, *, cache_dir: Path, sha256: str | None = None) -> Path:
    digest = sha256 or sha256_file(Path(gguf_path))
    return Path(cache_dir) / "hf-weights" / digest[:16]


def hf_weights_from_gguf(gguf_path: Path, *, cache_dir: Path, dtype: str = "float32") -> Path:
    """Return an HF model folder holding ``gguf_path``'s weights (dequantized), making it once.

    Raises:
        TuningError: the file is missing or transformers cannot read it.
    """
    gguf_path = Path(gguf_path)
    if not gguf_path.is_file():
        msg = f"GGUF model {gguf_path} not found — assemble it first (`orchard model qwen-0.5b`)"
        raise TuningError(msg)
    digest = sha256_file(gguf_path)
    target = hf_weights_dir(gguf_path, cache_dir=cache_dir, sha256=digest)
    if _complete(target, digest):
        return target

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    partial = target.with_name(f"{target.name}.{os.getpid()}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
        # dequantize=True: plain dense Linear layers, no quantizer left on the model (else
        # save_pretrained refuses: "quantized with gguf and is not serializable").
        model = AutoModelForCausalLM.from_pretrained(
            gguf_path.parent, gguf_file=gguf_path.name, dtype=getattr(torch, dtype),
            quantization_config=GgufConfig(dequantize=True),
        )
    except (OSError, ValueError, ImportError) as exc:
        msg = f"transformers could not read {gguf_path}: {exc}"
        raise TuningError(msg) from exc
    model.save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    del model
    (partial / _STAMP).write_text(json.dumps({"gguf": str(gguf_path), "sha256": digest, "dtype": dtype}))
    shutil.rmtree(target, ignore_errors=True)
    os.replace(partial, target)
    return target


def _complete(folder: Path, digest: str) -> bool:
    try:
        stamp = json.loads((folder / _STAMP).read_text())
    except (OSError, ValueError):
        return False
    return stamp.get("sha256") == digest and (folder / "config.json").is_file()
