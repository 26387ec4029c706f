"""The document library: ingest, upload, list, delete, re-index, search.

Uploaded files are kept under ``<data_dir>/uploads`` (their sources read ``uploads/NAME``), so a
re-index can read them again; paths given to :meth:`Library.ingest` are indexed where they are.
One ingestion at a time per store: per process (two browser tabs uploading at once) and, for the
embedded store, across processes (the app's upload and ``orchard ingest``; the second one waits
and says so). An ingestion that was killed is detected by the next one, which checks Chroma's
vector index and rebuilds it when it misses chunks (:mod:`orchard.store_repair`), saying so.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from orchard.components import Components


def safe_file_name(name: str) -> str:
    """A name without folders or control characters ("../../x.pdf" -> "x.pdf"; "" if nothing is left)."""
    base = Path(str(name).replace("\\", "/")).name
    cleaned = "".join(ch for ch in base if ch.isprintable() and ch not in '<>:"|?*').strip().lstrip(".")
    return cleaned[:200]


log = logging.getLogger(__name__)


class Library:
    """The library use case over the composition root's store and retriever."""

    def __init__(self, *, components: Components) -> None:
        self.components = components

    @property
    def settings(self) -> Any:
        return self.components.settings

    @property
    def uploads_dir(self) -> Path:
        return self.settings.data_dir / "uploads"

    @property
    def where(self) -> str:
        return self.components.store.where

    def count(self) -> int:
        """Passages in the store."""
        return self.components.store.count()

    def documents(self) -> list[dict[str, Any]]:
        """Every document in the store: ``source``, ``chunks``, ``uploaded`` (kept by Orchard)."""
        return [
            {"source": source, "chunks": chunks, "uploaded": source.startswith("uploads/")}
            for source, chunks in sorted(self.components.store.sources().items())
        ]

    def ingest(
        self,
        paths: Sequence[str | Path],
        *,
        prune: bool = False,
        progress: bool = True,
        on_file: Callable[..., Any] | None = None,
        base: Path | None = None,
        on_message: Callable[[str], None] | None = None,
    ) -> Any:
        """Add or update files and folders (unchanged files are skipped); an ``IngestReport``.

        ``on_message`` hears what the user should know while it runs (waiting for another
        ingestion, a repair); the report's ``repairs`` keeps the repairs.
        """
        from orchard.ingest import IngestLimits, ingest

        limits = IngestLimits(
            max_file_bytes=int(self.settings.max_file_mb * 1_000_000),
            parse_seconds=self.settings.parse_timeout_s,
            follow_symlinks=self.settings.follow_symlinks,
        )
        with self._exclusive(on_message) as repairs:
            report = ingest(list(paths), store=self.components.store, prune=prune, progress=progress, on_file=on_file,
                            base=base, limits=limits)  # fmt: skip
        report.repairs = repairs
        return report

    @contextlib.contextmanager
    def _exclusive(self, on_message: Callable[[str], None] | None = None) -> Iterator[list[str]]:
        """This process's and (embedded store) every process's one writer; repairs first if the
        last writer was killed. Yields the repairs made, as sentences."""
        from orchard.store_repair import exclusive_ingestion, repair_after_unclean_stop

        say = on_message or log.warning
        store = self.components.store
        with store.ingest_lock:
            if self.settings.chroma_url:  # a Chroma server keeps its own index; it is not ours to lock
                yield []
                return
            store_dir = self.settings.store_path
            with exclusive_ingestion(store_dir, notify=say) as unclean:
                yield repair_after_unclean_stop(store, store_dir=store_dir, notify=say) if unclean else []

    def upload(self, files: Sequence[tuple[str, bytes]], *, on_file: Callable[..., Any] | None = None) -> Any:
        """Keep uploaded ``(name, bytes)`` files under ``<data_dir>/uploads`` and ingest them.

        Names are reduced to a safe file name; the report lists each file by ``uploads/NAME``.
        An unusable name or an unsupported type is reported and not kept; a file that fails to
        ingest is reported and its copy removed (a re-index would only fail on it again). The
        other files are ingested all the same.
        """
        from orchard.ingest import IngestReport
        from orchard.loaders import SUPPORTED_SUFFIXES

        self.uploads_dir.mkdir(parents=True, exist_ok=True)
        given: list[str] = []
        refused = IngestReport()
        for name, data in files:
            safe = safe_file_name(name)
            if not safe:
                refused.files_failed.append({"path": name, "error": "not a usable file name"})
            elif Path(safe).suffix.lower() not in SUPPORTED_SUFFIXES:
                kinds = ", ".join(sorted(SUPPORTED_SUFFIXES))
                refused.files_skipped.append({"path": f"uploads/{safe}", "reason": f"unsupported file type (Orchard reads {kinds})"})
            elif len(data) > self.settings.max_file_mb * 1_000_000:
                reason = f"file is {len(data) / 1e6:.1f} MB, over the {self.settings.max_file_mb:g} MB limit (ORCHARD_MAX_FILE_MB)"
                refused.files_skipped.append({"path": f"uploads/{safe}", "reason": reason})
            else:
                (self.uploads_dir / safe).write_bytes(data)
                given.append(f"uploads/{safe}")
        if not given:
            return refused
        report = self.ingest(given, progress=False, on_file=on_file, base=self.settings.data_dir)
        for item in report.files_failed:
            if item["path"] in given:
                (self.settings.data_dir / item["path"]).unlink(missing_ok=True)
        report.files_failed[:0] = refused.files_failed
        report.files_skipped[:0] = refused.files_skipped
        return report

    def delete(self, source: str) -> int:
        """Remove a document's chunks (and Orchard's copy of an uploaded file); chunks removed."""
        store = self.components.store
        parts = [s for s in store.sources() if s.startswith(source + "#")]  # a mailbox's mails, a dump's pages
        with self._exclusive():
            removed = sum(store.delete(store.chunk_ids(s)) for s in [source, *parts])
        if source.startswith("uploads/"):
            target = (self.settings.data_dir / source).resolve()
            if target.is_relative_to(self.uploads_dir.resolve()):
                target.unlink(missing_ok=True)
        return removed

    def reindex(self, *, on_file: Callable[..., Any] | None = None) -> Any:
        """Read every uploaded file again (changed ones are re-embedded, deleted ones pruned)."""
        self.uploads_dir.mkdir(parents=True, exist_ok=True)
        return self.ingest(["uploads"], prune=True, progress=False, on_file=on_file, base=self.settings.data_dir)

    def evaluate_retrieval(self, questions: Sequence[dict[str, Any]], *, k: int = 5) -> dict[str, Any]:
        """Hit@k and MRR@10 of the expected pages (:func:`orchard.evaluate.evaluate_retrieval`)."""
        from orchard.evaluate import evaluate_retrieval

        return evaluate_retrieval(list(questions), retriever=self.components.retriever, k=k)

    def search(self, query: str, *, k: int | None = None) -> list[dict[str, Any]]:
        """Hybrid search without the model: ``source``, ``section``, ``score``, ``text``, ``chunk_id``."""
        docs = self.components.retriever.invoke(query, k=k or self.settings.top_k)
        return [
            {
                "source": d.metadata.get("source", ""),
                "section": d.metadata.get("section", ""),
                "score": d.metadata.get("score"),
                "text": d.page_content,
                "chunk_id": d.id,
            }
            for d in docs
        ]
