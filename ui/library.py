"""The library page: every document in the store with its passage count; add, delete, re-index."""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Any

import streamlit as st

from orchard.ui import documents, errors, state

ICONS = {
    ".pdf": ":material/picture_as_pdf:",
    ".csv": ":material/table:",
    ".tsv": ":material/table:",
    ".xlsx": ":material/table:",
    ".html": ":material/code:",
    ".htm": ":material/code:",
    ".md": ":material/article:",
    ".docx": ":material/description:",
}


def page() -> None:
    state.show_flashes()
    st.header("Library", anchor=False)
    st.caption("The documents Orchard answers from. Everything is stored and searched on this machine.")
    state.wait_for("library")
    try:
        docs = state.library("documents")()
    except Exception as exc:
        errors.show(exc, action="reading the library")
        return
    overview(docs)
    left, right = st.columns([3, 2], gap="large")
    with right:
        with st.container(border=True):
            st.markdown("**Add documents**")
            documents.uploader("library")
        with st.container(border=True):
            st.markdown("**Re-index**")
            st.caption("Read every uploaded file again: changed files are re-embedded, removed ones pruned.")
            if st.button("Re-index uploaded files", icon=":material/sync:", key="reindex"):
                reindex()
            documents.show_report("reindex")
    with left:
        document_list(docs)


def overview(docs: list[dict[str, Any]]) -> None:
    with st.container(horizontal=True, key="library_metrics"):
        st.metric("Documents", f"{len(docs):,}", border=True)
        st.metric("Passages", f"{sum(d.get('chunks', 0) for d in docs):,}", border=True)
        st.metric("Uploaded here", f"{sum(1 for d in docs if d.get('uploaded')):,}", border=True)


def document_list(docs: list[dict[str, Any]]) -> None:
    if not docs:
        st.info(
            "No documents yet. Add files on the right (or in the sidebar); "
            "`orchard ingest PATH` adds a whole folder from the command line.",
            icon=":material/library_add:",
        )
        return
    query = st.text_input("Filter", placeholder="Filter by name…", key="library_filter", label_visibility="collapsed")
    shown = [d for d in docs if query.strip().lower() in d["source"].lower()]
    if not shown:
        st.caption("No document matches the filter.")
    for doc in shown:
        document_row(doc)


def document_row(doc: dict[str, Any]) -> None:
    source = doc["source"]
    with st.container(border=True, key=f"doc_{abs(hash(source))}"):
        with st.container(horizontal=True, vertical_alignment="center"):
            path = PurePosixPath(source)
            icon = ICONS.get(path.suffix.lower(), ":material/draft:")
            folder = f" :gray[{path.parent}/]" if str(path.parent) not in (".", "") else ""
            st.markdown(f"{icon} **{path.name}**{folder}")
            st.space("stretch")
            chunks = doc.get("chunks", 0)
            st.badge(f"{chunks:,} passage{'s' if chunks != 1 else ''}", color="gray")
            st.badge("uploaded" if doc.get("uploaded") else "ingested", color="green" if doc.get("uploaded") else "blue",
                     help=None if doc.get("uploaded") else "Added with `orchard ingest`")  # fmt: skip
            st.button("", key=f"delete_{source}", icon=":material/delete:", type="tertiary", help=f"Delete {source}",
                      on_click=lambda: st.session_state.update(confirm_document=source))  # fmt: skip
        if st.session_state.get("confirm_document") == source:
            confirm_delete(source, doc)


def confirm_delete(source: str, doc: dict[str, Any]) -> None:
    what = "its passages and the uploaded file" if doc.get("uploaded") else "its passages (the original file stays where it is)"
    st.warning(f"Delete **{source}** from the library: {what}?", icon=":material/delete:")
    with st.container(horizontal=True):
        if st.button("Delete", type="primary", key=f"confirm_delete_{source}"):
            st.session_state.pop("confirm_document", None)
            try:
                removed = state.library("delete")(source)
            except Exception as exc:
                errors.show(exc, action="deleting the document")
                return
            state.status(fresh=True)
            state.flash(f"Deleted {source} ({removed:,} passages).")
            st.rerun()
        if st.button("Cancel", key=f"cancel_delete_{source}"):
            st.session_state.pop("confirm_document", None)
            st.rerun()


def reindex() -> None:
    state.wait_for("models")
    try:
        count = sum(1 for d in state.library("documents")() if d.get("uploaded"))
        reindex_files = state.library("reindex")
    except Exception as exc:
        errors.show(exc, action="re-indexing")
        return
    report = documents.run_with_progress("Re-reading the uploaded files…", count, lambda on_file: reindex_files(on_file=on_file))
    if report is not None:
        st.session_state["reindex_report"] = documents.summarize(report)
        state.status(fresh=True)
        st.rerun()
