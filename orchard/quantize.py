"""Other quantizations of a packaged model, made with llama.cpp's own quantize API.

:func:`quantize_preset` calls ``llama_cpp.llama_model_quantize`` (llama-cpp-python's binding of
``llama_model_quantize`` in llama.cpp) on the preset's assembled GGUF and writes
``<cache_dir>/models/<preset>-<type>.gguf`` (e.g. ``qwen-0.5b-q3_k_m.gguf``), which
:func:`orchard.model.resolve_model` then accepts as a model name of its own.

The packaged files are Q4_K_M, and no float source ships: the variants are *requantized*
(``allow_requantize``: llama.cpp dequantizes each tensor to float, then quantizes it again). So
every variant carries the Q4_K_M source's rounding error on top of its own: Q8_0 and Q5_K_M are
bigger and slower than the source but no better in quality (measured by ``orchard models bench``);
Q4_0 trades a little quality for llama.cpp's CPU repacking at load time; Q3_K_M and Q2_K are
smaller and lose more.

Example::

    >>> quantize_preset("qwen-0.5b", "Q3_K_M", cache_dir=Path("~/.cache/orchard"))  # doctest: +SKIP
    PosixPath('.../models/qwen-0.5b-q3_k_m.gguf')
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from orchard.errors import ModelAssemblyError
from orchard.model import PRESETS, QUANT_TYPES, assemble_model, variant_name, variant_path


def quant_type(name: str) -> str:
    """The canonical spelling of a quantization type (``q3_k_m`` -> ``Q3_K_M``).

    Raises:
        ModelAssemblyError: not one of :data:`orchard.model.QUANT_TYPES`.
    """
    canonical = name.strip().upper()
    if canonical not in QUANT_TYPES:
        msg = f"unknown quantization type {name!r}: use one of {', '.join(QUANT_TYPES)}"
        raise ModelAssemblyError(msg)
    return canonical


def llama_quantize(source: Path, target: Path, ftype: str, *, threads: int = 0) -> None:
    """Quantize ``source`` into ``target`` as ``ftype`` (a ``LLAMA_FTYPE_MOSTLY_<ftype>`` of
    llama.cpp), requantizing when ``source`` is already quantized. Writes ``target`` atomically:
    llama.cpp writes a temporary file in the same folder, renamed over ``target`` only on success.

    Raises:
        ModelAssemblyError: llama.cpp reported a failure (its log on stderr says why).
    """
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{ftype}")
    params.nthread = threads
    params.allow_requantize = True
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
    try:
        code = llama_cpp.llama_model_quantize(str(source).encode(), str(partial).encode(), params)
        if code != 0 or not partial.is_file() or partial.stat().st_size == 0:
            msg = f"llama.cpp could not quantize {source} to {ftype} (code {code}); see its log above"
            raise ModelAssemblyError(msg)
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)


def quantize_preset(
    preset: str,
    type_name: str,
    *,
    cache_dir: Path,
    force: bool = False,
    threads: int = 0,
    on_start: Callable[[Path, Path], None] | None = None,
) -> Path:
    """Make (or, unless ``force``, reuse) the ``type_name`` variant of ``preset``; its path.

    Raises:
        ModelAssemblyError: an unknown preset or type, the preset's own type (Q4_K_M: use the
            preset itself), missing part packages, or a failed quantization.
    """
    if preset not in PRESETS:
        msg = f"unknown preset {preset!r}: choose one of {', '.join(PRESETS)}"
        raise ModelAssemblyError(msg)
    canonical = quant_type(type_name)
    spec = PRESETS[preset]
    if canonical == spec.quant_type:
        msg = f"{preset} already is {canonical}: select {preset!r} itself"
        raise ModelAssemblyError(msg)
    target = variant_path(preset, canonical, cache_dir=cache_dir)
    if target.is_file() and not force:
        return target
    source = assemble_model(spec, cache_dir=cache_dir)
    if on_start is not None:
        on_start(source, target)
    llama_quantize(source, target, canonical, threads=threads)
    assert variant_name(preset, canonical) == target.stem
    return target
