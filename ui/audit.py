"""Settings → Audit (administrators): who asked, uploaded, deleted, exported, created a key.

The page shows what :func:`orchard.audit.entries` returns for the current identity (the use case
checks the permission itself: it raises ``PermissionDenied`` for anyone but an administrator) and
offers :func:`orchard.audit.export` as a CSV download (made when the button is clicked: every
export is itself recorded).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import streamlit as st

from orchard.ui import errors, state

LIMIT = 200


def section() -> None:
    audit = state.orchard().audit
    me = state.identity()
    try:
        entries = list(audit.entries(me, limit=LIMIT))
    except Exception as exc:  # PermissionDenied for anyone but an administrator
        errors.show(exc, action="reading the audit trail")
        return
    st.caption(f"The latest {LIMIT} events, newest first.")
    st.dataframe([_row(e) for e in entries], hide_index=True, use_container_width=True, key="audit_entries")
    # Deferred: the export is made (and, by the use case, recorded as an export) only when the
    # button is clicked, not every time the page is drawn.
    st.download_button("Download the audit trail (CSV)", data=lambda: audit.export(me, fmt="csv"), file_name="orchard-audit.csv",
                       mime="text/csv", icon=":material/download:", key="audit_download")  # fmt: skip


def _row(entry: Any) -> dict[str, Any]:
    """An entry (a dataclass or a mapping) as a table row, its time readable."""
    import dataclasses

    if callable(getattr(entry, "as_dict", None)):
        row = dict(entry.as_dict())
    elif dataclasses.is_dataclass(entry) and not isinstance(entry, type):
        row = dataclasses.asdict(entry)
    elif isinstance(entry, dict):
        row = dict(entry)
    else:
        row = dict(getattr(entry, "__dict__", None) or {"entry": str(entry)})
    import json

    for name in ("at", "created_at", "time"):
        if isinstance(row.get(name), int | float):
            row[name] = dt.datetime.fromtimestamp(row[name]).strftime("%Y-%m-%d %H:%M:%S")
    return {k: v if v is None or isinstance(v, str | int | float | bool) else json.dumps(v, default=str, ensure_ascii=False)
            for k, v in row.items()}  # fmt: skip  # one type per column: details as JSON text
