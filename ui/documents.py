"""Adding documents: several files at once, with progress, and what happened to each file.

The library use case keeps each uploaded file under ``<data_dir>/uploads`` and ingests it incrementally
(an unchanged file is not embedded again). The report of the last upload stays on screen until
it is dismissed: which files were added, which were unchanged, and which failed and why.
"""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Any

import streamlit as st

from orchard.ui import errors, state

UPLOAD_HELP = "PDF, Word (.docx), HTML, Markdown, text, CSV and more. Several files at once."
STATUS_TEXT = {
    "indexed": "added",
    "unchanged": "unchanged",
    "skipped": "skipped",
    "failed": "failed",
    "removed": "removed",
}


def uploader(key: str) -> None:
    """A multi-file uploader with an Add button, progress, and the last report."""
    nonce = st.session_state.get(f"{key}_nonce", 0)
    files = st.file_uploader(
        "Files to add to the library", accept_multiple_files=True, key=f"{key}_files_{nonce}", help=UPLOAD_HELP
    )
    if files:
        label = f"Add {len(files)} file{'s' if len(files) != 1 else ''} to the library"
        if st.button(label, key=f"{key}_add", type="primary", icon=":material/upload:", use_container_width=True):
            state.wait_for("models")
            report = run_with_progress(
                f"Adding {len(files)} file{'s' if len(files) != 1 else ''}…",
                len(files),
                lambda on_file: state.library("upload")([(f.name, f.getvalue()) for f in files], on_file=on_file),
            )
            if report is not None:
                st.session_state[f"{key}_report"] = summarize(report)
                st.session_state[f"{key}_nonce"] = nonce + 1
                state.status(fresh=True)
                st.rerun()
    show_report(key)


def run_with_progress(label: str, total: int, work: Any) -> Any:
    """Run ``work(on_file)`` inside an ``st.status`` with a progress bar; the report or None."""
    with st.status(label, expanded=True) as box:
        bar = st.progress(0.0, text="Reading the files…")
        seen: list[str] = []

        def on_file(source: str, status: str) -> None:
            seen.append(source)
            done = min(len(seen) / max(total, 1), 1.0)
            bar.progress(done, text=f"{PurePosixPath(source).name}: {STATUS_TEXT.get(status, status)}")

        try:
            report = work(on_file)
        except Exception as exc:
            box.update(label="Adding the files failed", state="error", expanded=True)
            errors.show(exc, action="adding the files")
            return None
        bar.progress(1.0, text="Done")
        box.update(label="Done", state="complete", expanded=False)
    return report


def summarize(report: Any) -> dict[str, Any]:
    """The report as plain data (kept in the session until dismissed)."""
    return {
        "indexed": int(getattr(report, "files_indexed", 0)),
        "unchanged": int(getattr(report, "files_unchanged", 0)),
        "skipped": list(getattr(report, "files_skipped", [])),
        "failed": list(getattr(report, "files_failed", [])),
        "chunks_added": int(getattr(report, "chunks_added", 0)),
        "chunks_removed": int(getattr(report, "chunks_removed", 0)),
        "seconds": float(getattr(report, "seconds", 0.0) or 0.0),
    }


def show_report(key: str) -> None:
    report = st.session_state.get(f"{key}_report")
    if not report:
        return
    if report["indexed"]:
        files = f"{report['indexed']} file{'s' if report['indexed'] != 1 else ''}"
        passages = f"{report['chunks_added']:,} passage{'s' if report['chunks_added'] != 1 else ''}"
        st.success(f"Added {files}: {passages} ({report['seconds']:.1f} s).", icon=":material/check_circle:")
    if report["unchanged"]:
        st.info(f"{report['unchanged']} file(s) already in the library, unchanged.", icon=":material/info:")
    if report.get("chunks_removed") and not report["indexed"]:
        st.info(f"{report['chunks_removed']:,} passages of changed or deleted files removed.", icon=":material/info:")
    for item in report["skipped"]:
        st.warning(f"**{_name(item.get('path'))}** was skipped: {item.get('reason', 'unsupported file')}", icon=":material/block:")
    for item in report["failed"]:
        st.error(f"**{_name(item.get('path'))}** could not be added: {item.get('error', 'unknown error')}", icon=":material/error:")
    st.button("Dismiss", key=f"{key}_dismiss", type="tertiary", on_click=lambda: st.session_state.pop(f"{key}_report", None))


def _name(path: Any) -> str:
    text = str(path or "?")
    return text.removeprefix("uploads/")
