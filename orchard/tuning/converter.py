"""llama.cpp's Python converters, taken from the llama-cpp-python source distribution.

The sdist Orchard builds llama.cpp from (``llama-cpp-python==0.3.36``) vendors llama.cpp's
``convert_hf_to_gguf.py`` (HF model folder -> GGUF), ``convert_lora_to_gguf.py`` (PEFT adapter
folder -> GGUF LoRA adapter), their ``conversion/`` package and ``gguf-py``. Using exactly those
keeps the converters in step with the llama.cpp that loads their output. :func:`prepare_converters`
verifies the sdist's sha256 and extracts only those files (~4 MB of the 77 MB archive) into
``<cache_dir>/llama-cpp-converters/<version>/``; later calls return the cached copy.

The sdist comes from PyPI at *install* time (``make``: ``python -m orchard.tuning``
runs ``pip download``); at run time only the cached copy is used, never the network.

Example::

    >>> tools = prepare_converters(cache_dir=Path(".orchard/cache"))  # doctest: +SKIP
    >>> tools.run(tools.lora_to_gguf, ["adapter/", "--base", "base-hf/", "--outfile", "a.gguf"])  # doctest: +SKIP
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from orchard.model import sha256_file
from orchard.tuning.errors import TuningError

LLAMA_CPP_PYTHON_VERSION = "0.3.36"
#: sha256 of ``llama_cpp_python-0.3.36.tar.gz`` as PyPI serves it (measured 2026-12-01).
SDIST_SHA256 = "832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e"
SDIST_NAME = f"llama_cpp_python-{LLAMA_CPP_PYTHON_VERSION}.tar.gz"
_VENDOR = f"llama_cpp_python-{LLAMA_CPP_PYTHON_VERSION}/vendor/llama.cpp/"
_WANTED = ("convert_hf_to_gguf.py", "convert_lora_to_gguf.py", "conversion/", "gguf-py/gguf/", "LICENSE")
_STAMP = "extracted.json"


@dataclass(frozen=True)
class Converters:
    """The extracted converter scripts; :meth:`run` starts one with the vendored ``gguf-py``."""

    root: Path

    @property
    def hf_to_gguf(self) -> Path:
        return self.root / "convert_hf_to_gguf.py"

    @property
    def lora_to_gguf(self) -> Path:
        return self.root / "convert_lora_to_gguf.py"

    @property
    def gguf_py(self) -> Path:
        return self.root / "gguf-py"

    def env(self) -> dict[str, str]:
        """The environment for a converter: the vendored ``gguf`` first on the path, offline."""
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(self.gguf_py), str(self.root), *filter(None, [env.get("PYTHONPATH")])])
        env.setdefault("HF_HUB_OFFLINE", "1")
        env.setdefault("TRANSFORMERS_OFFLINE", "1")
        return env

    def run(self, script: Path, args: Sequence[str], *, timeout: float = 3600) -> subprocess.CompletedProcess[str]:
        """Run ``script`` with ``args`` in this interpreter; raise :class:`TuningError` with the
        tail of its output when it fails."""
        proc = subprocess.run(
            [sys.executable, str(script), *map(str, args)],
            env=self.env(), cwd=self.root, capture_output=True, text=True, timeout=timeout, check=False,
        )
        if proc.returncode != 0:
            tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
            msg = f"{script.name} failed (exit {proc.returncode}):\n{tail}"
            raise TuningError(msg)
        return proc


def converters_dir(cache_dir: Path) -> Path:
    return Path(cache_dir) / "llama-cpp-converters" / LLAMA_CPP_PYTHON_VERSION


def cached_converters(cache_dir: Path) -> Converters | None:
    """The extracted converters under ``cache_dir``, or None when :func:`prepare_converters` has not run."""
    root = converters_dir(cache_dir)
    try:
        stamp = json.loads((root / _STAMP).read_text())
    except (OSError, ValueError):
        return None
    if stamp.get("sha256") != SDIST_SHA256 or not (root / "convert_lora_to_gguf.py").is_file():
        return None
    return Converters(root)


def find_converters(cache_dir: Path) -> Converters:
    """The extracted converters, or a :class:`TuningError` saying how to get them."""
    found = cached_converters(cache_dir)
    if found is None:
        msg = (
            f"llama.cpp's converters are not in {converters_dir(cache_dir)} — run "
            f"`python -m orchard.tuning --cache-dir {cache_dir}` once (it fetches the "
            f"llama-cpp-python {LLAMA_CPP_PYTHON_VERSION} source from PyPI; `make setup` does it)"
        )
        raise TuningError(msg)
    return found


def download_sdist(dest: Path) -> Path:
    """``pip download`` the llama-cpp-python sdist into ``dest`` (pip's cache usually has it)."""
    dest.mkdir(parents=True, exist_ok=True)
    target = dest / SDIST_NAME
    if not target.exists():
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", f"llama-cpp-python=={LLAMA_CPP_PYTHON_VERSION}",
             "--no-binary", ":all:", "--no-deps", "-d", str(dest)],
            check=True,
        )
    return target


def prepare_converters(*, cache_dir: Path, sdist: Path | None = None) -> Converters:
    """Extract the converters from ``sdist`` (default: download it) unless already cached.

    Raises:
        TuningError: the sdist's sha256 is not :data:`SDIST_SHA256`.
    """
    found = cached_converters(cache_dir)
    if found is not None:
        return found
    root = converters_dir(cache_dir)
    sdist = Path(sdist) if sdist else download_sdist(root.parent / "sdist")
    actual = sha256_file(sdist)
    if actual != SDIST_SHA256:
        msg = f"{sdist} has sha256 {actual}, expected {SDIST_SHA256} — delete it and run again"
        raise TuningError(msg)
    partial = root.with_name(f"{root.name}.{os.getpid()}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    with tarfile.open(sdist, "r:gz") as archive:
        members = []
        for member in archive.getmembers():
            if not member.name.startswith(_VENDOR) or not (member.isfile() or member.isdir()):
                continue
            relative = member.name[len(_VENDOR):]
            if relative.startswith(_WANTED) or relative.startswith("gguf-py/gguf"):
                member.name = relative
                members.append(member)
        archive.extractall(partial, members=members, filter="data")
    (partial / _STAMP).write_text(json.dumps({"sha256": SDIST_SHA256, "version": LLAMA_CPP_PYTHON_VERSION}))
    shutil.rmtree(root, ignore_errors=True)
    os.replace(partial, root)
    return Converters(root)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Extract llama.cpp's GGUF converters from the llama-cpp-python sdist.")
    parser.add_argument("--cache-dir", type=Path, required=True, help="Orchard's cache folder (<data dir>/cache)")
    parser.add_argument("--sdist", type=Path, help="a downloaded llama_cpp_python sdist (default: pip download it)")
    args = parser.parse_args(argv)
    try:
        tools = prepare_converters(cache_dir=args.cache_dir, sdist=args.sdist)
    except TuningError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(tools.root)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
