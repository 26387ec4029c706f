"""Orchard chat: streamed, cited answers over your documents.

Run with ``make run`` (or ``orchard app``). This page talks to one chat-service object and nothing
else; tests put a fake one in ``st.session_state["chat_service"]``.
"""

from __future__ import annotations

import os
import threading
from typing import Any

import streamlit as st

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
os.environ["LANGSMITH_TRACING"] = "false"  # private by default: nothing goes to a tracing service
os.environ["LANGCHAIN_TRACING_V2"] = "false"

MODES = {"Documents (cited)": "rag", "Chat (model only)": "chat"}

st.set_page_config(page_title="Orchard", page_icon="🍏", layout="centered")


@st.cache_resource(show_spinner=False)
def _shared_service() -> Any:
    """One service per process: the embedder, the store and the model client are built once."""
    from orchard.config import Settings
    from orchard.service import ChatService

    # Messages such as "starting the embedded model server" appear as toasts in the page.
    service = ChatService(Settings(), notify=st.toast)
    # Load the embedder in the background so the page is usable while it loads.
    threading.Thread(target=service.embeddings.warm_up, daemon=True).start()
    return service


def service() -> Any:
    if "chat_service" not in st.session_state:
        st.session_state["chat_service"] = _shared_service()
    return st.session_state["chat_service"]


def render_sources(sources: list[dict[str, Any]], cited: list[int]) -> None:
    if not sources:
        return
    st.caption("Sources")
    for src in sources:
        where = src["source"]
        if src.get("section"):
            where += f" — {src['section']}"
        if src.get("page"):
            where += f" (page {src['page']})"
        mark = "" if src["n"] in cited else " · not cited"
        with st.expander(f"[{src['n']}] {where}{mark}"):
            st.markdown(f"**{src.get('title') or src['source']}**")
            st.text(src.get("text", ""))


def render_message(message: dict[str, Any]) -> None:
    with st.chat_message(message["role"]):
        st.markdown(message["content"])
        if message["role"] == "assistant":
            if message.get("mode") == "rag" and not message.get("grounded", True):
                st.caption("⚠️ Not grounded in your documents.")
            render_sources(message.get("sources", []), message.get("cited", []))


def sidebar() -> str:
    with st.sidebar:
        st.header("🍏 Orchard")
        label = st.radio("Answer from", list(MODES), key="mode_label", help="Documents: answers cite your files.")
        if st.button("New chat", use_container_width=True):
            st.session_state["messages"] = []
        try:
            info = service().status()
        except Exception as exc:  # the status line must never break the page
            st.caption(f"Status unavailable: {exc}")
        else:
            up = "🟢" if info.get("model_server_up") else "⚪"
            st.caption(f"{up} Model: `{info.get('llm_model')}` at {info.get('llm_base_url')}")
            st.caption(f"📚 {info.get('chunks', 0)} passages in the store")
    return MODES[label]


def answer(question: str, mode: str, history: list[dict[str, Any]]) -> dict[str, Any]:
    """Stream the answer into the page; returns the assistant message to keep."""
    from orchard.errors import OrchardError

    result: dict[str, Any] = {"role": "assistant", "mode": mode, "sources": [], "cited": [], "grounded": False}

    def tokens() -> Any:
        for chunk in service().stream(question, history=history, mode=mode):
            for key, value in chunk.items():
                if key == "answer":
                    yield value
                else:
                    result[key] = value

    with st.chat_message("assistant"):
        try:
            text = st.write_stream(tokens())
        except OrchardError as exc:
            st.error(str(exc))
            return {}
        except Exception as exc:  # never a traceback in the page; the question stays above
            st.error(f"Something went wrong while answering: {type(exc).__name__}: {exc}")
            return {}
        result["content"] = text if isinstance(text, str) else "".join(map(str, text))
        if mode == "rag" and not result["grounded"]:
            st.caption("⚠️ Not grounded in your documents.")
        render_sources(result["sources"], result["cited"])
    return result


def main() -> None:
    mode = sidebar()
    messages: list[dict[str, Any]] = st.session_state.setdefault("messages", [])
    if not messages:
        st.markdown("#### Ask your documents")
        st.caption("Answers cite the passages they come from. Everything runs on this machine.")
    for message in messages:
        render_message(message)
    question = st.chat_input("Ask a question about your documents")
    if not question:
        return
    history = [{"role": m["role"], "content": m["content"]} for m in messages if m.get("content")]
    messages.append({"role": "user", "content": question})
    render_message(messages[-1])
    reply = answer(question, mode, history)
    if reply:
        messages.append(reply)


main()
