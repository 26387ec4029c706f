"""How an answer's parts look: citations, sources, agent steps, the critique, the footer line.

Every function draws from plain data (a message's ``meta``), so a stored answer and one being
streamed look the same.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import streamlit as st

MODE_LABELS = {"auto": "Auto", "rag": "Documents", "agent": "Agent", "chat": "Chat"}
MODE_ICONS = {
    "auto": ":material/auto_awesome:",
    "rag": ":material/description:",
    "agent": ":material/construction:",
    "chat": ":material/forum:",
}
MODE_HELP = (
    "**Auto** picks for each question: documents, a tool, or a plain chat.  \n"
    "**Documents** answers only from your library, with citations.  \n"
    "**Agent** computes with Python or queries the attached data with SQL.  \n"
    "**Chat** talks to the model without your documents."
)
TOOL_LABELS = {
    "python": "Python program",
    "sql": "SQL query",
    "sql_schema": "Database schema",
    "table": "Table query",
    "table_schema": "Table schema",
    "search_docs": "Document search",
}
OUTPUT_MAX_CHARS = 3000
_CITATION = re.compile(r"\[(\d{1,2})\]")


def with_citation_badges(text: str, sources: int) -> str:
    """``[2]`` becomes a small badge when source 2 exists; other brackets stay as written."""
    if not sources:
        return text

    def badge(match: re.Match[str]) -> str:
        n = int(match.group(1))
        return f":green-badge[{n}]" if 1 <= n <= sources else match.group(0)

    return _CITATION.sub(badge, text)


def answer_text(content: str, meta: dict[str, Any]) -> None:
    st.markdown(with_citation_badges(content, len(meta.get("sources") or [])) or "_(no answer)_")


def source_label(src: dict[str, Any]) -> str:
    parts = [f"[{src.get('n')}] {src.get('source', '')}"]
    section = str(src.get("section") or "")
    if section:
        parts.append(section)
    if src.get("page"):
        parts.append(f"page {src['page']}")
    if src.get("rows") and not section.startswith("rows"):
        parts.append(f"rows {src['rows']}")
    return " · ".join(parts)


def sources(items: list[dict[str, Any]], cited: Iterable[int]) -> None:
    """The numbered source list: each cited source expands to its passage; the passages that were
    retrieved but not cited are listed together in one more expander."""
    if not items:
        return
    cited = set(cited or ())
    used = [s for s in items if s.get("n") in cited]
    unused = [s for s in items if s.get("n") not in cited]
    if not used:  # nothing cited: every passage is a candidate source
        used, unused = items, []
    st.caption(f"Sources · {len(cited & {s.get('n') for s in items})} cited of {len(items)} retrieved")
    for src in used:
        with st.expander(source_label(src), icon=":material/article:"):
            passage(src)
    if unused:
        label = f"{len(unused)} more passage{'s' if len(unused) != 1 else ''} retrieved, not cited"
        with st.expander(label, icon=":material/more_horiz:"):
            for src in unused:
                st.markdown(f"**{source_label(src)}**")
                passage(src)


def passage(src: dict[str, Any]) -> None:
    details = [f"**{src.get('title') or src.get('source', '')}**", f"`{src.get('source', '')}`"]
    if src.get("section"):
        details.append(f"section *{src['section']}*")
    if src.get("page"):
        details.append(f"page {src['page']}")
    relevance = src.get("relevance")
    if isinstance(relevance, (int, float)):
        details.append(f"relevance {relevance:.2f}")
    st.caption(" · ".join(details))
    st.text(src.get("text", ""))


def tool_call(index: int, call: dict[str, Any]) -> None:
    """One agent step: the tool, its input (code as code) and its output."""
    tool = str(call.get("tool", "tool"))
    ok = call.get("ok", True)
    mark = ":material/check_circle:" if ok else ":material/error:"
    st.markdown(f"{mark} **{index}. {TOOL_LABELS.get(tool, tool)}** `{tool}`")
    given = call.get("input")
    given = given if isinstance(given, dict) else {"input": given}
    if "code" in given:
        st.code(str(given["code"]), language="python", line_numbers=True)
    elif "query" in given and tool in ("sql", "table"):
        st.code(str(given["query"]), language="sql")
    elif "query" in given:
        st.markdown(f"Searched for *{given['query']}*")
    elif given:
        st.json(given, expanded=False)
    output = str(call.get("output", ""))
    if len(output) > OUTPUT_MAX_CHARS:
        output = output[:OUTPUT_MAX_CHARS] + f"\n… ({len(output) - OUTPUT_MAX_CHARS} more characters)"
    st.caption("Result" if ok else "Error")
    st.code(output or "(no output)", language="text", wrap_lines=True)


def steps_label(calls: list[dict[str, Any]]) -> str:
    names = " → ".join(TOOL_LABELS.get(str(c.get("tool")), str(c.get("tool"))) for c in calls)
    count = f"{len(calls)} step" + ("s" if len(calls) != 1 else "")
    return f"Agent · {count}: {names}" if calls else "Agent · no tool was needed"


def steps(calls: list[dict[str, Any]]) -> None:
    """A stored answer's agent steps, collapsed."""
    if not calls:
        return
    failed = any(not c.get("ok", True) for c in calls)
    with st.status(steps_label(calls), state="error" if failed else "complete", expanded=False):
        for i, call in enumerate(calls, 1):
            tool_call(i, call)


def critique_label(critiques: list[dict[str, Any]]) -> str:
    flagged = [str(c.get("principle")) for c in critiques if c.get("needs_revision")]
    if flagged:
        return f"Critique & revision · revised for: {', '.join(flagged)}"
    return f"Critique · {len(critiques)} of {len(critiques)} checks passed, draft kept"


_VERDICT = re.compile(r"^\W*(?:verdict\W*)?(?:yes|no|ok|revise)\b[\W_]*", re.I)


def critique_reason(text: str) -> str:
    """The critic's reason without its leading YES/NO (the badge shows the verdict)."""
    return _VERDICT.sub("", str(text or "").strip(), count=1).strip()


def critique_body(draft: str, critiques: list[dict[str, Any]], *, revised: bool, sources: int = 0) -> None:
    st.markdown("**Draft**")
    with st.container(border=True):
        st.markdown(with_citation_badges(draft, sources) or "_(empty draft)_")
    if critiques:
        st.markdown("**Checks against the constitution**")
    for item in critiques:
        flagged = item.get("needs_revision")
        verdict = ":orange-badge[needs revision]" if flagged else ":green-badge[passes]"
        st.markdown(f"**{item.get('principle', '?')}** {verdict}")
        reason = critique_reason(item.get("critique", ""))
        if reason:
            st.caption(reason)
    st.caption("The answer below is the revision." if revised else "The draft passed: it is the answer below.")


def critique(meta: dict[str, Any], content: str) -> None:
    """A stored answer's draft, critiques and revision note, collapsed."""
    if "critiques" not in meta and not meta.get("draft"):
        return
    found = list(meta.get("critiques") or [])
    draft = str(meta.get("draft") or "")
    with st.status(critique_label(found), state="complete", expanded=False):
        critique_body(draft, found, revised=draft.strip() != content.strip(), sources=len(meta.get("sources") or []))


def footer_caption(meta: dict[str, Any]) -> str:
    """``Auto → Documents · model · 3.2 s`` for an answer."""
    used = MODE_LABELS.get(str(meta.get("mode")), str(meta.get("mode") or ""))
    asked = meta.get("requested_mode")
    how = f"{MODE_LABELS.get(asked, asked)} → {used}" if asked == "auto" and used and used != "Auto" else used
    parts = [p for p in (how, meta.get("model"), best_of_caption(meta)) if p]
    if isinstance(meta.get("seconds"), (int, float)):
        parts.append(f"{meta['seconds']:.1f} s")
    return " · ".join(str(p) for p in parts)


def best_of_caption(meta: dict[str, Any]) -> str:
    """``best of 4, picked by your reward model v2`` (the pick) or ``candidate 3, not picked`` (the others)."""
    ranked, candidate = meta.get("candidates"), meta.get("best_of")
    if isinstance(ranked, dict):
        by = ranked.get("scorer")
        return f"best of {ranked.get('n')}, " + (f"picked by {by}" if by and by != "none" else "no reward model yet: the first kept")
    if isinstance(candidate, dict):
        return f"candidate {int(candidate.get('rank', 0)) + 1}, not picked (👍 it if it is better)"
    return ""


def route_help(meta: dict[str, Any]) -> str | None:
    route = meta.get("route") or {}
    return f"Why: {route['reason']}" if isinstance(route, dict) and route.get("reason") else None


def not_grounded(meta: dict[str, Any]) -> None:
    if meta.get("mode") == "rag" and meta.get("grounded") is False:
        st.caption(":material/warning: This answer cites none of your documents: check it against the sources.")


#: What each failure detector (orchard.chains.answer_checks) found, in words.
REPAIR_REASONS = {
    "empty": "it was empty",
    "restated": "it only restated the question",
    "unsupported": "it named something no passage holds",
    "miscited": "it cited a passage that does not say it",
    "refused": "it refused although the passages hold the answer",
}


def repaired(meta: dict[str, Any]) -> None:
    """The mark on an answer a failure detector replaced: a quote, or the model's second try."""
    repair = meta.get("repair")
    if not repair:
        return
    kinds = [part.split(":", 1)[0].strip() for part in str(repair.get("reason") or "").split("; ")]
    why = ", ".join(dict.fromkeys(REPAIR_REASONS[k] for k in kinds if k in REPAIR_REASONS)) or "it failed a check"
    original = str(repair.get("original") or "").strip()
    help_text = f"The model's answer was: {original}" if original else None
    if repair.get("kind") == "extractive":
        st.caption(f":material/format_quote: Quoted from the documents (the model's answer was replaced: {why}).", help=help_text)
    else:
        st.caption(f":material/refresh: The model's second answer (the first was replaced: {why}).", help=help_text)
