"""Loaders for the formats beyond text, HTML, PDF and CSV: office files, e-books, mail, wikis.

:data:`BYTE_LOADERS` maps a suffix to ``loader(data: bytes, fallback_title: str) -> list[Section]``
(:func:`orchard.loaders.load_file` dispatches to it); each module imports its parser library only
when a file of its kind is read. A file that holds several documents (an mbox, a MediaWiki dump,
a mail's attachments) returns sections with ``Section.part`` set; ingestion stores each part as
the source ``file#part`` (:func:`orchard.ingest.split_parts`).

| suffix | module | structure kept |
| --- | --- | --- |
| .docx | office (python-docx) | heading styles -> section path; tables as ``header: value`` rows |
| .pptx | office (python-pptx) | one section per slide, named by its title; speaker notes kept |
| .xlsx, .ods | office (openpyxl; lxml) | a section per sheet and 20 rows, rows with their header |
| .odt | office (lxml) | outline levels -> section path |
| .epub | ebook (ebooklib) | chapters (table of contents) -> section path |
| .eml, .mbox | mail (standard library) | subject/from/date; attachments as their own sources |
| .xml | wiki (lxml + mwparserfromhell) | MediaWiki dump: a source per page, headings |
| .md | wiki | front matter title, ``[[links]]`` kept as ``links`` |

Zip-based files pass :mod:`orchard.formats.zipguard` (zip-bomb limits) before any parser.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import import_module

from orchard.loaders import Section

_BYTE_LOADERS = {
    ".docx": ("office", "load_docx"),
    ".pptx": ("office", "load_pptx"),
    ".xlsx": ("office", "load_xlsx"),
    ".ods": ("office", "load_ods"),
    ".odt": ("office", "load_odt"),
    ".epub": ("ebook", "load_epub"),
    ".eml": ("mail", "load_eml"),
    ".mbox": ("mail", "load_mbox"),
    ".xml": ("wiki", "load_mediawiki"),
}
BYTE_SUFFIXES = frozenset(_BYTE_LOADERS)


def byte_loader(suffix: str) -> Callable[[bytes, str], list[Section]]:
    """The loader of ``suffix`` (one of :data:`BYTE_SUFFIXES`), imported on first use."""
    module, name = _BYTE_LOADERS[suffix]
    return getattr(import_module(f"orchard.formats.{module}"), name)
