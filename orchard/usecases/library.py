"""The document library: ingest, upload, list, delete, re-index, search.

Uploaded files are kept under ``<data_dir>/uploads`` (their sources read ``uploads/NAME``), so a
re-index can read them again; paths given to :meth:`Library.ingest` are indexed where they are.
One ingestion at a time per store: per process (two browser tabs uploading at once) and, for the
embedded store, across processes (the app's upload and ``orchard ingest``; the second one waits
and says so). An ingestion that was killed is detected by the next one, which checks Chroma's
vector index and rebuilds it when it misses chunks (:mod:`orchard.store_repair`), saying so.

Libraries (team mode, ``settings.team_mode``): the shared library (admins upload, everyone
reads) and one private library per user (:mod:`orchard.identity`). A user reads, lists and
searches the shared library and their own; uploads go to their private library (to the shared
one only for an admin who asks); they delete their own documents, and shared ones only as an
admin. Another user's private document is reported exactly like a missing one. A private
library's uploads are kept under ``<data_dir>/private/<slot>/uploads`` (their sources still read
``uploads/NAME``). In personal mode there is no filter: the one user reads everything and every
upload is shared. ``identity=None`` is personal mode's user (an admin of their machine); in team
mode nobody (the shared library to read, nothing to write: faces pass the logged-in identity).
``orchard ingest`` writes to the shared library in either mode.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from orchard.components import Components
from orchard.errors import PermissionDenied
from orchard.identity import PRIVATE_PREFIX, SHARED_LIBRARY, Identity, libraries_for, personal_identity, private_library

_PRIVATE_SLOT = re.compile(r"u-[0-9a-f]{24}")


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
        """Where the shared library's uploads are kept."""
        return self.settings.data_dir / "uploads"

    @property
    def where(self) -> str:
        return self.components.store.where

    # --- who may do what ----------------------------------------------------------------------------

    def caller(self, identity: Identity | None = None, user: str | None = None) -> Identity:
        """Who is asking: ``identity``; else the stored key ``user`` (team mode: a user, not an
        admin); else personal mode's user (an admin of their own machine).

        Raises:
            PermissionDenied: team mode and nobody named — a face must pass the logged-in identity
                to write (nobody reads the shared library only: :meth:`readable`).
        """
        if identity is not None:
            return identity
        if user is not None:
            return Identity(user=user, name=user, team=True) if self.settings.team_mode else personal_identity(user)
        if self.settings.team_mode:
            raise PermissionDenied("team mode: log in first (the library needs to know who is asking)")
        return personal_identity(self.settings.default_user)

    def readable(self, identity: Identity | None = None, user: str | None = None) -> list[str] | None:
        """The libraries the caller reads (team mode: shared + their own, nobody: shared only;
        personal mode: None, every one)."""
        if not self.settings.team_mode:
            return None
        if identity is None and user is None:
            return libraries_for(None, team=True)
        return libraries_for(self.caller(identity, user).user, team=True)

    def library_home(self, library: str) -> Path:
        """The folder a library's ``uploads/`` lives in (shared: the data folder)."""
        if library == SHARED_LIBRARY:
            return self.settings.data_dir
        slot = library.removeprefix(PRIVATE_PREFIX)
        if not library.startswith(PRIVATE_PREFIX) or not _PRIVATE_SLOT.fullmatch(slot):
            msg = f"not a library: {library!r}"
            raise ValueError(msg)
        return self.settings.data_dir / "private" / slot

    def _upload_library(self, caller: Identity, library: str | None) -> str:
        """The library an upload goes to: the one asked for if the caller may write it, else
        (team mode) their private library, (personal mode) the shared one."""
        own = private_library(caller.user)
        if library is None:
            return own if self.settings.team_mode else SHARED_LIBRARY
        if library == SHARED_LIBRARY:
            if self.settings.team_mode and not caller.is_admin:
                raise PermissionDenied("only an admin may add documents to the shared library — upload to your own library")
            return SHARED_LIBRARY
        if library != own:
            raise PermissionDenied("you may add documents to your own library or (admins) the shared one only")
        return own

    # --- reading ------------------------------------------------------------------------------------

    def count(self, *, user: str | None = None, identity: Identity | None = None) -> int:
        """Passages in the store (given a caller in team mode: in the libraries they read)."""
        if identity is None and user is None:
            return self.components.store.count()
        return self.components.store.count(libraries=self.readable(identity, user))

    def documents(self, *, user: str | None = None, identity: Identity | None = None) -> list[dict[str, Any]]:
        """The documents the caller reads: ``source``, ``chunks``, ``uploaded`` (kept by Orchard);
        in team mode also ``library`` (``shared``, or ``private``: the caller's own)."""
        if not self.settings.team_mode:  # one user: every document, as it always was
            return [
                {"source": source, "chunks": chunks, "uploaded": source.startswith("uploads/")}
                for source, chunks in sorted(self.components.store.sources().items())
            ]
        rows = self.components.store.library_sources(self.readable(identity, user))
        return [
            {"source": source, "chunks": chunks, "uploaded": source.startswith("uploads/"),
             "library": "shared" if library == SHARED_LIBRARY else "private"}
            for (library, source), chunks in sorted(rows.items(), key=lambda item: (item[0][1], item[0][0]))
        ]  # fmt: skip

    def search(self, query: str, *, k: int | None = None, user: str | None = None,
               identity: Identity | None = None) -> list[dict[str, Any]]:  # fmt: skip
        """Hybrid search without the model, over the libraries the caller reads: ``source``,
        ``section``, ``score``, ``text``, ``chunk_id``."""
        from orchard.retriever import restricted

        retriever = restricted(self.components.retriever, self.readable(identity, user))
        docs = retriever.invoke(query, k=k or self.settings.top_k)
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

    def evaluate_retrieval(self, questions: Sequence[dict[str, Any]], *, k: int = 5) -> dict[str, Any]:
        """Hit@k and MRR@10 of the expected pages (:func:`orchard.evaluate.evaluate_retrieval`)."""
        from orchard.evaluate import evaluate_retrieval

        return evaluate_retrieval(list(questions), retriever=self.components.retriever, k=k)

    # --- writing ------------------------------------------------------------------------------------

    def ingest(
        self,
        paths: Sequence[str | Path],
        *,
        prune: bool = False,
        progress: bool = True,
        on_file: Callable[..., Any] | None = None,
        base: Path | None = None,
        on_message: Callable[[str], None] | None = None,
        library: str = SHARED_LIBRARY,
    ) -> Any:
        """Add or update files and folders (unchanged files are skipped) in ``library`` (the
        shared one: ``orchard ingest``); an ``IngestReport``.

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
                            base=base, limits=limits, library=library)  # fmt: skip
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

    def upload(self, files: Sequence[tuple[str, bytes]], *, on_file: Callable[..., Any] | None = None,
               identity: Identity | None = None, library: str | None = None) -> Any:  # fmt: skip
        """Keep uploaded ``(name, bytes)`` files and ingest them into the caller's library.

        ``library``: None = the caller's default (team mode: their private library; personal
        mode: the shared one); ``"shared"`` in team mode needs an admin.

        Names are reduced to a safe file name; the report lists each file by ``uploads/NAME``.
        An unusable name or an unsupported type is reported and not kept; a file that fails to
        ingest is reported and its copy removed (a re-index would only fail on it again). The
        other files are ingested all the same.

        Raises:
            PermissionDenied: the caller may not write to ``library``.
        """
        from orchard.ingest import IngestReport
        from orchard.loaders import SUPPORTED_SUFFIXES

        caller = self.caller(identity)
        target = self._upload_library(caller, library)
        home = self.library_home(target)
        uploads = home / "uploads"
        uploads.mkdir(parents=True, exist_ok=True)
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
                (uploads / safe).write_bytes(data)
                given.append(f"uploads/{safe}")
        if not given:
            return refused
        report = self.ingest(given, progress=False, on_file=on_file, base=home, library=target)
        self.components.audit.record(caller.user, "upload", target, files=given, failed=len(report.files_failed))
        for item in report.files_failed:
            if item["path"] in given:
                (home / item["path"]).unlink(missing_ok=True)
        report.files_failed[:0] = refused.files_failed
        report.files_skipped[:0] = refused.files_skipped
        return report

    def delete(self, source: str, *, identity: Identity | None = None, library: str | None = None) -> int:
        """Remove a document's chunks (and Orchard's copy of an uploaded file); chunks removed.

        Team mode: the caller's own document (``library=None``: their private copy first, else
        the shared one); a shared one only as an admin. Another user's private document is not
        found (0). Personal mode: the document in every library.

        Raises:
            PermissionDenied: a shared document, and the caller is not an admin.
        """
        store = self.components.store
        caller = self.caller(identity)
        rows = store.library_sources(self.readable(caller))
        held = {lib for lib, src in rows if src == source or src.startswith(source + "#")}  # a mailbox: its mails
        if library is not None:
            held &= {library}
        if self.settings.team_mode:
            own = private_library(caller.user)
            if own in held and library != SHARED_LIBRARY:
                held = {own}
            elif SHARED_LIBRARY in held and not caller.is_admin:
                raise PermissionDenied("only an admin may delete documents of the shared library")
        removed = 0
        with self._exclusive():
            for lib in sorted(held):
                parts = [src for lib_, src in rows if lib_ == lib and src.startswith(source + "#")]  # a mailbox's mails
                removed += sum(store.delete(store.chunk_ids(src, lib)) for src in [source, *parts])
        for lib in held:
            self._forget_upload(lib, source)
        if held:
            self.components.audit.record(caller.user, "delete", source, libraries=sorted(held), chunks=removed)
        return removed

    def _forget_upload(self, library: str, source: str) -> None:
        if not source.startswith("uploads/"):
            return
        home = self.library_home(library)
        target = (home / source).resolve()
        if target.is_relative_to((home / "uploads").resolve()):
            target.unlink(missing_ok=True)

    def reindex(self, *, on_file: Callable[..., Any] | None = None, identity: Identity | None = None) -> Any:
        """Read every uploaded file again (changed ones are re-embedded, deleted ones pruned):
        of every library (personal mode, admins), else of the caller's own library."""
        from orchard.ingest import IngestReport

        caller = self.caller(identity)
        if self.settings.team_mode and not caller.is_admin:
            libraries = [private_library(caller.user)]
        else:
            private = self.settings.data_dir / "private"
            found = sorted(d.name for d in private.iterdir() if _PRIVATE_SLOT.fullmatch(d.name)) if private.is_dir() else []
            libraries = [SHARED_LIBRARY, *(PRIVATE_PREFIX + slot for slot in found)]
        total = IngestReport()
        for library in libraries:
            home = self.library_home(library)
            (home / "uploads").mkdir(parents=True, exist_ok=True)
            report = self.ingest(["uploads"], prune=True, progress=False, on_file=on_file, base=home, library=library)
            _add_report(total, report)
        return total


def _add_report(total: Any, report: Any) -> None:
    """Add ``report``'s counts and lists to ``total`` (the last one's store size)."""
    for name in ("files_indexed", "files_unchanged", "chunks_added", "chunks_removed", "seconds"):
        setattr(total, name, round(getattr(total, name) + getattr(report, name), 3))
    for name in ("files_skipped", "files_failed", "repairs"):
        getattr(total, name).extend(getattr(report, name))
    total.chunks_total = report.chunks_total
