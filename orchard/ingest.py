"""Ingestion: files and folders -> chunks -> embeddings -> the store, incrementally.

* A file whose sha256 is already recorded is skipped (``files_unchanged``): re-ingest never
  duplicates. A changed file gets its new chunks written first, then its stale chunks removed, so
  an interruption leaves the old or the new version searchable, never neither.
* Chunks of many files are embedded together (``batch_chunks``) to keep the embedder busy, in a
  background thread while the next files are read, parsed and chunked; each batch is written
  to the store in one write, from the calling thread, in the order the files were found.
* ``prune=True`` drops stored files under the given paths that no longer exist.
* Bad files are reported by path with a reason; the rest is ingested. Hostile input is held off
  by :class:`IngestLimits`: symbolic links inside a folder are not followed (by default), a file
  over the size limit is not read, a name with a line break is refused, and a parser that runs
  past the time limit is stopped (:mod:`orchard.parse_worker`).

The ``source`` of a chunk is the path as given joined with the file's path below it:
``ingest(["library"])`` stores ``library/json.html``.

Libraries: every chunk is written with its ``library`` (``ingest(..., library=...)``; default
the shared one). A file's identity is its source *within its library*: user A's and user B's
``uploads/notes.md`` are two files, their chunk ids differ (a private library's ids are salted
with its name, :func:`library_chunk_id`; the shared library keeps the plain ids, so stores
written before libraries stay as they are), and re-ingesting, pruning or deleting one never
touches the other.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import sys
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from tqdm import tqdm

from orchard.chunking import chunk_sections
from orchard.identity import SHARED_LIBRARY
from orchard.loaders import SUPPORTED_SUFFIXES, LoadError, Section, SkipFile, load_file
from orchard.parse_worker import shared_worker
from orchard.store import DocumentStore


@dataclass
class IngestReport:
    """What one ingestion run did (``--json`` prints :meth:`as_dict`)."""

    files_indexed: int = 0
    files_unchanged: int = 0
    files_skipped: list[dict[str, str]] = field(default_factory=list)
    files_failed: list[dict[str, str]] = field(default_factory=list)
    chunks_added: int = 0
    chunks_removed: int = 0
    chunks_total: int = 0
    seconds: float = 0.0
    repairs: list[str] = field(default_factory=list)  # e.g. the vector index rebuilt after a killed run

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class IngestLimits:
    """What ingestion refuses to do, whatever the files ask (settings: ``ORCHARD_MAX_FILE_MB``,
    ``ORCHARD_PARSE_TIMEOUT_S``, ``ORCHARD_FOLLOW_SYMLINKS``).

    ``follow_symlinks``: links found inside a given folder are followed only when this is on,
    and then only when their target stays inside that folder (a link to ``/etc/passwd`` or a
    loop back up the tree is skipped either way). A path given by name is read even when it
    is a link: the user asked for it. ``parse_seconds=None`` parses in this process, unbounded.
    """

    max_file_bytes: int | None = 50_000_000
    parse_seconds: float | None = None
    follow_symlinks: bool = False


def _link_reason(path: Path, root_real: Path, limits: IngestLimits) -> str | None:
    """Why the link ``path`` is not followed, or None when it may be."""
    if not limits.follow_symlinks:
        return "symbolic link (not followed; set ORCHARD_FOLLOW_SYMLINKS=true to follow links inside the folder)"
    try:
        target = path.resolve(strict=True)
    except (OSError, RuntimeError):
        return "broken or looping symbolic link (not followed)"
    if not target.is_relative_to(root_real):
        return "symbolic link leaving the given folder (not followed)"
    return None


def discover(
    paths: Iterable[str | Path], report: IngestReport, *, base: Path | None = None, limits: IngestLimits | None = None
) -> list[tuple[Path, str]]:
    """Expand files and folders (recursively) into ``(path, source)`` pairs, sorted, unique.

    A relative path is read below ``base`` (default: the working directory); sources keep the
    path as given (the app ingests ``uploads/report.pdf`` below its data folder). Links inside
    folders are handled as :class:`IngestLimits` says; each skipped one is reported.
    """
    limits = limits or IngestLimits()
    found: dict[str, Path] = {}
    for given in paths:
        given_str = str(given)
        root = base / given_str if base is not None and not Path(given_str).is_absolute() else Path(given_str)
        if "\n" in given_str or "\r" in given_str:
            report.files_skipped.append({"path": given_str.replace("\n", "\\n").replace("\r", "\\r"), "reason": "file name with a line break"})
        elif root.is_dir():
            def unreadable(error: OSError, _given: str = given_str, _root: Path = root) -> None:
                where = Path(error.filename or _root)
                shown = (Path(_given) / where.relative_to(_root)).as_posix() if where.is_relative_to(_root) else str(where)
                report.files_failed.append({"path": shown, "error": f"cannot read folder: {error.strerror or error}"})

            root_real = root.resolve()
            visited: set[Path] = set()
            for dirpath, dirnames, filenames in os.walk(root, onerror=unreadable, followlinks=limits.follow_symlinks):
                here = Path(dirpath)
                real_here = here.resolve()
                if real_here in visited:  # a followed link came back to a folder already read
                    dirnames[:] = []
                    continue
                visited.add(real_here)
                kept = []
                for name in sorted(d for d in dirnames if not d.startswith(".")):
                    folder = here / name
                    if folder.is_symlink() and (reason := _link_reason(folder, root_real, limits)):
                        report.files_skipped.append({"path": _shown(given_str, folder, root), "reason": reason})
                    else:
                        kept.append(name)
                dirnames[:] = kept
                for name in sorted(filenames):
                    if name.startswith("."):
                        continue
                    path = here / name
                    source = _shown(given_str, path, root)
                    if "\n" in name or "\r" in name:
                        report.files_skipped.append({"path": source, "reason": "file name with a line break"})
                    elif path.is_symlink() and (reason := _link_reason(path, root_real, limits)):
                        report.files_skipped.append({"path": source, "reason": reason})
                    elif path.suffix.lower() in SUPPORTED_SUFFIXES:
                        found.setdefault(source, path)
                    else:
                        report.files_skipped.append(
                            {"path": source, "reason": f"unsupported file type {path.suffix or '(none)'}"}
                        )
        elif root.is_file():
            found.setdefault(Path(given_str).as_posix(), root)
        else:
            report.files_failed.append({"path": given_str, "error": "no such file or folder"})
    return [(path, source) for source, path in sorted(found.items())]


def _shown(given: str, path: Path, root: Path) -> str:
    """The source name of ``path`` found below ``root`` (given as ``given``); line breaks escaped."""
    shown = (Path(given) / path.relative_to(root)).as_posix()
    return shown.replace("\n", "\\n").replace("\r", "\\r")


def _read_limited(path: Path, limits: IngestLimits) -> bytes:
    """The file's bytes, or ``SkipFile`` when it is over the size limit (checked before reading,
    and again while reading: the file may grow in between)."""
    limit = limits.max_file_bytes
    if limit is None:
        return path.read_bytes()
    size = path.stat().st_size
    if size <= limit:
        with path.open("rb") as fh:
            data = fh.read(limit + 1)
        if len(data) <= limit:
            return data
        size = max(size, len(data))
    msg = f"file is {size / 1e6:.1f} MB, over the {limit / 1e6:g} MB limit (ORCHARD_MAX_FILE_MB)"
    raise SkipFile(msg)


def _parser(limits: IngestLimits) -> Callable[[Path, bytes], list[Section]]:
    if limits.parse_seconds is None:
        return load_file
    worker = shared_worker()
    seconds = limits.parse_seconds
    return lambda path, data: worker.parse(path, data, timeout=seconds)


def _under(source: str, roots: list[str]) -> bool:
    source = posixpath.normpath(source)
    for root in roots:
        root = posixpath.normpath(root)
        if root == "." and not source.startswith(("/", "../")):
            return True
        if source == root or source.startswith(root.rstrip("/") + "/"):
            return True
    return False


# --- files holding several documents (orchard.formats) --------------------------------------------
# An mbox's mails, a MediaWiki dump's pages and a mail's attachments come back from the loader as
# sections with ``Section.part`` set; each part is stored as its own source ``file#part`` (so it is
# cited, listed and replaced on its own) and all carry the file's sha256. The file is unchanged
# when every stored part has its current hash; parts it no longer holds are removed after the
# new ones are written.

MULTI_SOURCE_SUFFIXES = frozenset({".eml", ".mbox", ".xml"})


def split_parts(sections: list[Section], source: str) -> list[tuple[str, list[Section]]]:
    """``(part source, its sections)`` in order of appearance: part ``""`` is ``source`` itself."""
    groups: dict[str, list[Section]] = {}
    for section in sections:
        groups.setdefault(f"{source}#{section.part}" if section.part else source, []).append(section)
    return list(groups.items())


def _stored_parts(known: dict[str, str]) -> dict[str, set[str]]:
    """``file source -> its stored part sources``, for the sources that name a part."""
    parts: dict[str, set[str]] = {}
    for stored in known:
        cut = stored.find("#")
        while cut > 0:
            parts.setdefault(stored[:cut], set()).add(stored)
            cut = stored.find("#", cut + 1)
    return parts


def library_chunk_id(library: str, chunk_id: str) -> str:
    """The id of a chunk in ``library``: the plain content-hash id in the shared library, salted
    with the library's name in a private one (two users' identical files never share an id)."""
    if library == SHARED_LIBRARY:
        return chunk_id
    return hashlib.sha256(f"{library}\x00{chunk_id}".encode()).hexdigest()[:32]


def into_library(docs: list[Document], library: str) -> list[Document]:
    """``docs`` as chunks of ``library``: the ``library`` field set, ids made per library."""
    for doc in docs:
        doc.metadata["library"] = library
        doc.id = library_chunk_id(library, doc.id or "")
    return docs


# --- embedding ahead -------------------------------------------------------------------------------
# The embedder is ~99% of an ingestion's time (100 Python-docs pages: 125.8 of 127.2 s). While it
# embeds one batch (in a thread: torch releases the GIL), this thread reads, parses and chunks the
# next files and writes the batch before; the store is written only from the caller's thread,
# batch after batch, file after file, in the order files are found, so what a kill can leave
# behind is what it was without this.

Batch = list[tuple[str, list[Document], "tuple[str, set[str]] | None"]]


def embed_unique(embeddings: Embeddings, texts: list[str]) -> list[list[float]]:
    """Vectors of ``texts``, each distinct text embedded once (a page repeating a passage, a
    mailbox quoting the same notice, a spreadsheet's identical rows)."""
    unique = list(dict.fromkeys(texts))
    if len(unique) == len(texts):
        return embeddings.embed_documents(texts)
    by_text = dict(zip(unique, embeddings.embed_documents(unique), strict=True))
    return [by_text[t] for t in texts]


class _EmbedAhead:
    """Embed batch N in a background thread while the caller prepares batch N+1; ``write`` runs
    in the caller's thread, in submission order. ``overlap=False`` embeds in the caller's thread."""

    def __init__(self, embeddings: Embeddings, write: Callable[[Batch, list[list[float]]], None], *, overlap: bool) -> None:
        self._embeddings = embeddings
        self._write = write
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="orchard-embed") if overlap else None
        self._running: tuple[Batch, Future] | None = None

    def _embed(self, batch: Batch) -> list[list[float]]:
        return embed_unique(self._embeddings, [d.page_content for _, docs, _ in batch for d in docs])

    def submit(self, batch: Batch) -> None:
        if self._executor is None:
            self._write(batch, self._embed(batch))
            return
        previous = self._running
        previous_vectors = previous[1].result() if previous else None  # an embedder error surfaces here
        self._running = (batch, self._executor.submit(self._embed, batch))
        if previous is not None:
            self._write(previous[0], previous_vectors)  # written while the next batch is embedded

    def finish(self) -> None:
        """Write the batch still being embedded."""
        if self._running is not None:
            batch, future = self._running
            self._running = None
            self._write(batch, future.result())

    def close(self) -> None:
        """Stop the embedder thread. After an error (or Ctrl-C) a batch still being embedded is
        not waited for and never written: only the caller's thread writes."""
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._running = None


def ingest(
    paths: Iterable[str | Path],
    *,
    store: DocumentStore,
    prune: bool = False,
    batch_chunks: int = 1024,
    progress: bool = True,
    on_file: Callable[[str, str], None] | None = None,
    base: Path | None = None,
    limits: IngestLimits | None = None,
    overlap: bool = True,
    library: str = SHARED_LIBRARY,
) -> IngestReport:
    """Ingest ``paths`` into ``store``; see the module docstring for the rules.

    Args:
        paths: files and folders.
        store: the destination.
        prune: remove stored files under ``paths`` that were not found this time.
        batch_chunks: embed this many chunks per embedder call (across files): the embedder sorts
            a call's texts by length, so a big call pads little (1024 vs 256: ~10% faster, measured).
        progress: show a progress bar on stderr.
        on_file: called with ``(source, status)`` per file (``indexed``, ``unchanged``,
            ``skipped``, ``failed``), e.g. for a UI.
        base: where relative paths are read from (default: the working directory).
        limits: size, time and link limits (default :class:`IngestLimits`: 50 MB, no time limit).
        overlap: embed each batch in a background thread while the next files are parsed and
            chunked (False: one after the other, in this thread).
        library: the library the files belong to (their chunks' ``library`` field); unchanged
            files, replaced chunks and ``prune`` are judged within it only.
    """
    limits = limits or IngestLimits()
    parse = _parser(limits)
    started = time.perf_counter()
    paths = [str(p) for p in paths]
    report = IngestReport()
    files = discover(paths, report, base=base, limits=limits)
    known = store.file_hashes(library)
    stored_parts = _stored_parts(known)
    seen: set[str] = set()
    # (source, chunks, finished): finished = (file source, its stale part sources) on a file's last part
    pending: Batch = []
    pending_chunks = 0
    notify = on_file or (lambda _source, _status: None)
    written: set[str] = set()  # sources written by this run (their old chunks are this run's)

    def write(batch: Batch, vectors: list[list[float]]) -> None:
        """The batch's new chunks in one write (one Chroma call and one revision instead of one
        per file: half the write time, measured), then each file's stale chunks removed."""
        # a source the store did not hold has no old chunks: skip asking Chroma (one query per file)
        old_ids = [set(store.chunk_ids(source, library)) if source in known or source in written else set()
                   for source, _, _ in batch]  # fmt: skip
        store.upsert([d for _, chunk_docs, _ in batch for d in chunk_docs], vectors)
        for (source, chunk_docs, finished), old in zip(batch, old_ids, strict=True):
            written.add(source)
            new_ids = {d.id for d in chunk_docs}
            report.chunks_removed += store.delete(old - new_ids)
            report.chunks_added += len(new_ids - old)
            if finished is not None:
                file_source, stale_parts = finished
                for stale in sorted(stale_parts):
                    report.chunks_removed += store.delete(store.chunk_ids(stale, library))
                report.files_indexed += 1
                notify(file_source, "indexed")

    pipeline = _EmbedAhead(store.embeddings, write, overlap=overlap)

    def skipped(source: str, reason: str) -> None:
        report.files_skipped.append({"path": source, "reason": reason})
        notify(source, "skipped")

    def failed(source: str, error: str) -> None:
        report.files_failed.append({"path": source, "error": error})
        notify(source, "failed")

    def flush() -> None:
        nonlocal pending, pending_chunks
        if pending:
            pipeline.submit(pending)
        pending, pending_chunks = [], 0

    bar = tqdm(files, desc="ingest", unit="file", file=sys.stderr, disable=not progress, leave=False)
    try:
        for path, source in bar:
            seen.add(source)
            try:
                data = _read_limited(path, limits)
            except SkipFile as exc:
                skipped(source, str(exc))
                continue
            except OSError as exc:
                failed(source, f"cannot read: {exc.strerror or exc}")
                continue
            digest = hashlib.sha256(data).hexdigest()
            parts_before = {source} & known.keys()
            if path.suffix.lower() in MULTI_SOURCE_SUFFIXES:
                parts_before |= stored_parts.get(source, set())
            if parts_before and all(known[s] == digest for s in parts_before):
                seen.update(parts_before)
                report.files_unchanged += 1
                notify(source, "unchanged")
                continue
            try:
                sections = parse(path, data)
            except SkipFile as exc:
                skipped(source, str(exc))
                continue
            except LoadError as exc:
                failed(source, str(exc))
                continue
            except Exception as exc:  # a parser bug must not lose the rest of the batch
                failed(source, f"{type(exc).__name__}: {exc}")
                continue
            parts = split_parts(sections, source)
            for number, (part_source, part_sections) in enumerate(parts, start=1):
                docs = into_library(chunk_sections(part_sections, source=part_source, file_sha256=digest), library)
                finished = (source, parts_before - {s for s, _ in parts}) if number == len(parts) else None
                pending.append((part_source, docs, finished))
                pending_chunks += len(docs)
                seen.add(part_source)
            if pending_chunks >= batch_chunks:
                flush()
        flush()
        pipeline.finish()
    finally:
        pipeline.close()
        bar.close()

    if prune:
        gone = [s for s in known if _under(s, paths) and s not in seen]
        for source in gone:
            report.chunks_removed += store.delete(store.chunk_ids(source, library))
            notify(source, "removed")

    report.chunks_total = store.count()
    report.seconds = round(time.perf_counter() - started, 3)
    return report
