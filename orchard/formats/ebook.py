"""E-books (epub, through ebooklib): chapters in reading order become the section path.

Each spine document (XHTML) is read by :func:`orchard.loaders.load_html`, so its headings nest
below the chapter's name (its table-of-contents title, else its first heading, else
``chapter N``); every section's title is the book's title. The navigation document is left out.
"""

from __future__ import annotations

import io
import posixpath
import warnings

from orchard.formats.zipguard import open_checked_zip
from orchard.loaders import LoadError, Section, load_html


def _toc_titles(entries, out: dict[str, str]) -> dict[str, str]:
    """``href (no fragment) -> title`` of the first table-of-contents entry pointing at it."""
    for entry in entries:
        if isinstance(entry, tuple | list):  # (section, [children])
            head, children = entry[0], entry[1] if len(entry) > 1 else []
            _toc_titles([head], out)
            _toc_titles(children, out)
            continue
        href = getattr(entry, "href", "") or ""
        title = " ".join((getattr(entry, "title", "") or "").split())
        if href and title:
            out.setdefault(href.split("#", 1)[0], title)
    return out


def _tolerant_reader_class():
    from ebooklib import epub

    class TolerantReader(epub.EpubReader):
        """Reads a manifest item missing from the archive as empty, as e-book readers do (Debian's
        debmake-doc.en.epub lists an image it does not hold); the container and the package
        document must be there."""

        def read_file(self, name):
            try:
                return super().read_file(name)
            except KeyError:
                if name.startswith("META-INF/") or name.endswith(".opf"):
                    raise
                return b""

    return TolerantReader


def load_epub(data: bytes, fallback_title: str) -> list[Section]:
    import ebooklib
    from ebooklib import epub

    open_checked_zip(data, "epub")
    reader_class = _tolerant_reader_class()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # ebooklib's FutureWarnings about its own options
            reader = reader_class(io.BytesIO(data), options={"ignore_ncx": False})
            book = reader.load()
            reader.process()
        titles = book.get_metadata("DC", "title")
        title = " ".join(str(titles[0][0]).split()) if titles and titles[0][0] else fallback_title
        toc = _toc_titles(book.toc, {})
        sections: list[Section] = []
        number = 0
        for idref, _linear in book.spine:
            item = book.get_item_with_id(idref)
            if item is None or item.get_type() != ebooklib.ITEM_DOCUMENT or isinstance(item, epub.EpubNav):
                continue
            content = item.get_content()
            if not content.strip():
                continue
            number += 1
            parts = load_html(content.decode("utf-8", "replace"), "")
            if not parts:
                continue
            href = item.get_name()
            chapter = toc.get(href) or toc.get(posixpath.basename(href)) or parts[0].title or f"chapter {number}"
            for part in parts:
                path = part.section
                if part.title and part.title not in (chapter, title) and not path.startswith(part.title):
                    path = f"{part.title} > {path}" if path else part.title
                if not path.startswith(chapter):
                    path = f"{chapter} > {path}" if path else chapter
                sections.append(Section(text=part.text, title=title, section=path))
    except LoadError:
        raise
    except Exception as exc:  # ebooklib raises EpubException, KeyError, lxml errors on damaged books
        raise LoadError(f"corrupt epub file: {type(exc).__name__}: {exc}") from exc
    return sections
