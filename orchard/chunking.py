"""Sections -> chunks that carry their page and section titles.

Small neighbouring sections of a page are merged (a heading with two lines is not worth a chunk of
its own); long sections are split on paragraph, line and sentence boundaries. Every chunk starts
with a header line, ``title > section``, so both the embedder and BM25 see where a passage lives
(questions rarely repeat the passage's words, but often name its topic).

Example::

    >>> from orchard.loaders import Section
    >>> docs = chunk_sections([Section("Use json.dumps.", "json", "Basic Usage")], source="json.html")
    >>> docs[0].page_content
    'json > Basic Usage\\nUse json.dumps.'
"""

from __future__ import annotations

import hashlib

from langchain_core.documents import Document
from langchain_text_splitters import RecursiveCharacterTextSplitter

from orchard.loaders import Section

CHUNKER_VERSION = "2"  # bump when chunks of the same file would come out different
CHUNK_SIZE = 600  # characters: all-MiniLM-L6-v2 was trained on passages of at most 128 word pieces
CHUNK_OVERLAP = 80
MERGE_BELOW = 250  # sections shorter than this are merged with their neighbours


HEADER_LEVELS = 2  # the page title plus the last two section names: enough to place a passage,
# short enough to leave the embedder's 128-256 word pieces for the passage itself


def _header(title: str, section: str) -> str:
    if not section or section == title:
        return title
    return " > ".join([title, *section.split(" > ")[-HEADER_LEVELS:]])


def _merge_small(sections: list[Section], *, chunk_size: int) -> list[Section]:
    merged: list[Section] = []
    for sec in sections:
        prev = merged[-1] if merged else None
        if (
            prev is not None
            and not sec.extra  # pages and row ranges keep their boundaries
            and not prev.extra
            and (len(prev.text) < MERGE_BELOW or len(sec.text) < MERGE_BELOW)
            and len(prev.text) + len(sec.text) + len(sec.section) + 2 <= chunk_size
        ):
            heading = sec.section.rsplit(" > ", 1)[-1] if sec.section else ""
            joined = f"{prev.text}\n\n{heading}\n{sec.text}" if heading else f"{prev.text}\n\n{sec.text}"
            merged[-1] = Section(text=joined, title=prev.title, section=prev.section)
        else:
            merged.append(Section(text=sec.text, title=sec.title, section=sec.section, extra=dict(sec.extra)))
    return merged


def chunk_id(source: str, index: int, text: str) -> str:
    """Stable content-hash id: same file, same place, same text -> same id."""
    return hashlib.sha256(f"{source}\x00{index}\x00{text}".encode()).hexdigest()[:32]


def chunk_sections(
    sections: list[Section],
    *,
    source: str,
    file_sha256: str = "",
    chunk_size: int = CHUNK_SIZE,
    chunk_overlap: int = CHUNK_OVERLAP,
) -> list[Document]:
    """Split one file's sections into Documents with ids and metadata.

    Metadata: ``source``, ``title``, ``section``, ``chunk``, ``file_chunks`` (the file's number of
    chunks), ``file_sha256`` and, where they apply,
    ``page`` (PDF) and ``rows`` (CSV). The Document ``id`` is :func:`chunk_id`.
    """
    splitter = RecursiveCharacterTextSplitter(
        chunk_size=chunk_size,
        chunk_overlap=chunk_overlap,
        separators=["\n\n", "\n", ". ", "; ", ", ", " ", ""],
        keep_separator="end",
    )
    docs: list[Document] = []
    for sec in _merge_small(sections, chunk_size=chunk_size):
        header = _header(sec.title, sec.section)
        for piece in splitter.split_text(sec.text):
            text = f"{header}\n{piece.strip()}"
            index = len(docs)
            metadata = {
                "source": source,
                "title": sec.title,
                "section": sec.section,
                "chunk": index,
                "file_sha256": file_sha256,
                "chunker": CHUNKER_VERSION,
                **sec.extra,
            }
            docs.append(Document(page_content=text, metadata=metadata, id=chunk_id(source, index, text)))
    for doc in docs:  # how many chunks the whole file has: a file cut short by a crash is redone
        doc.metadata["file_chunks"] = len(docs)
    return docs
