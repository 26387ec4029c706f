"""Read files into titled sections: the structure that chunking keeps.

Each loader turns one file into :class:`Section` objects (a title, a section heading path, the
text, and where it came from: page for PDF, row range for CSV). Bad input raises
:class:`LoadError` (the file is reported and skipped by ingestion) or :class:`SkipFile`.

Example::

    >>> sections = load_file(Path("notes.md"), source="notes.md")  # doctest: +SKIP
    >>> sections[0].title, sections[0].section
    ('Notes', 'Install')
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field
from pathlib import Path

TEXT_SUFFIXES = {".txt", ".md", ".markdown", ".rst", ".html", ".htm", ".csv"}
#: read from bytes by orchard.formats (office files, e-books, mail, MediaWiki dumps)
FORMAT_SUFFIXES = {".docx", ".pptx", ".xlsx", ".ods", ".odt", ".epub", ".eml", ".mbox", ".xml"}
SUPPORTED_SUFFIXES = TEXT_SUFFIXES | {".pdf"} | FORMAT_SUFFIXES


class LoadError(Exception):
    """The file could not be read; the message is the reason shown to the user."""


class SkipFile(Exception):
    """The file has nothing to ingest (empty, unsupported); the message is the reason."""


@dataclass
class Section:
    """A titled piece of a document, before chunking."""

    text: str
    title: str
    section: str = ""
    extra: dict = field(default_factory=dict)  # page / rows
    #: "" for the file itself; else a document inside the file (a mail of an mbox, a page of a
    #: wiki dump, an attachment), stored as its own source ``file#part`` (see orchard.formats)
    part: str = ""


_CONTROL = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f-\x9f]")
BINARY_CONTROL_SHARE = 0.10  # text has next to none; compressed or binary data ~24% (61 of 256 byte values)


def decode_text(data: bytes, path: Path) -> str:
    """Decode bytes as UTF-8 (or UTF-16 with a BOM), falling back to Windows-1252/Latin-1.

    Refuses binary content (more than 10% control characters in the first 8 KiB, as images,
    archives and executables have) and drops the few NUL bytes a text file may carry.
    """
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            text = data.decode("utf-16")
        except UnicodeDecodeError as exc:
            raise LoadError(f"invalid UTF-16 text: {exc}") from exc
    else:
        text = next(_decoded(data))
    sample = text[:8192]
    if sample and len(_CONTROL.findall(sample)) > BINARY_CONTROL_SHARE * len(sample):
        raise LoadError(f"binary content in a {path.suffix or 'text'} file (not text)")
    return text.replace("\x00", "")


def _decoded(data: bytes):
    for encoding in ("utf-8-sig", "cp1252"):
        try:
            yield data.decode(encoding)
        except UnicodeDecodeError:
            continue
    yield data.decode("latin-1")  # decodes any byte: what it cannot show becomes C1 controls, counted above


_WS = re.compile(r"[ \t\r\f\v\u00a0]+")
_BLANKS = re.compile(r"\n\s*\n+")


def clean(text: str) -> str:
    lines = [_WS.sub(" ", line).strip() for line in text.splitlines()]
    return _BLANKS.sub("\n\n", "\n".join(lines)).strip()


# --- HTML -----------------------------------------------------------------------------------

_BLOCK_TAGS = frozenset(
    "p div li dt dd pre tr br section dl ul ol table blockquote caption figure article td th".split()
)
_DROP_TAGS = frozenset("script style noscript nav header footer form head template svg".split())
_DROP_CLASSES = frozenset("headerlink sphinxsidebar related footer mobile-nav".split())
_HEADINGS = {"h1": 1, "h2": 2, "h3": 3, "h4": 4, "h5": 5, "h6": 6}
DEFINITION_LEVEL = 7  # an API definition (<dt id="json.dumps">) nests below every heading
_MARK = "\x00H"


def _html_text(elem, out: list[str]) -> None:
    """Append the text of ``elem`` to ``out``: headings become marks, blocks end lines."""
    tag = elem.tag if isinstance(elem.tag, str) else ""
    classes = set((elem.get("class") or "").split())
    if tag in _DROP_TAGS or classes & _DROP_CLASSES or elem.get("role") == "navigation":
        pass
    elif tag in _HEADINGS:
        out.append(f"\n{_MARK}{_HEADINGS[tag]} {' '.join(elem.text_content().split())}\n")
    else:
        if tag == "dt" and elem.get("id"):
            out.append(f"\n{_MARK}{DEFINITION_LEVEL} {_definition_name(elem.get('id'))}\n")
        if tag and elem.text:
            out.append(elem.text)
        for child in elem:
            _html_text(child, out)
        if tag in _BLOCK_TAGS:
            out.append("\n")
    if elem.tail:
        out.append(elem.tail)


def _definition_name(anchor: str) -> str:
    """``json.dumps`` stays; a glossary anchor such as ``term-generator-iterator`` reads as words."""
    if "." in anchor:
        return anchor
    return anchor.removeprefix("term-").replace("-", " ")


def load_html(text: str, fallback_title: str) -> list[Section]:
    import lxml.html

    try:
        parser = lxml.html.HTMLParser(encoding="utf-8")  # the bytes were decoded and re-encoded above
        root = lxml.html.document_fromstring(text.encode("utf-8", "surrogatepass"), parser=parser)
    except (ValueError, lxml.etree.ParserError) as exc:
        raise LoadError(f"cannot parse HTML: {exc}") from exc
    main = next(iter(root.xpath("//*[@role='main'] | //main")), None)
    if main is None:
        main = next(iter(root.xpath("//body")), root)
    title_nodes = main.xpath(".//h1") or root.xpath("//title")
    title = " ".join(title_nodes[0].text_content().split()) if title_nodes else ""
    title = title.replace("¶", "").strip() or fallback_title
    out: list[str] = []
    for child in main:  # the tail of `main` itself lies outside it
        _html_text(child, out)
    if main.text:
        out.insert(0, main.text)
    return _split_marked("".join(out), title)


def _split_marked(raw: str, title: str) -> list[Section]:
    """Split text with heading marks into sections named by their heading path."""
    sections: list[Section] = []
    path: list[tuple[int, str]] = []
    buffer: list[str] = []

    def flush() -> None:
        body = clean("\n".join(buffer))
        if body:
            names = [name for _, name in path if name != title]
            sections.append(Section(text=body, title=title, section=" > ".join(names)))
        buffer.clear()

    for line in raw.split("\n"):
        if line.startswith(_MARK):
            flush()
            level_str, _, name = line[len(_MARK) :].partition(" ")
            level = int(level_str)
            name = clean(name.replace("¶", ""))
            path = [(lv, n) for lv, n in path if lv < level] + [(level, name)]
        else:
            buffer.append(line)
    flush()
    return sections


# --- Markdown / reStructuredText / plain text -------------------------------------------------

_MD_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_RST_UNDERLINE = re.compile(r"^([=\-~^\"'`#*+_.:])\1{2,}\s*$")


def load_markdown(text: str, fallback_title: str) -> list[Section]:
    out: list[str] = []
    in_fence = False
    for line in text.splitlines():
        if line.lstrip().startswith(("```", "~~~")):
            in_fence = not in_fence
        match = None if in_fence else _MD_HEADING.match(line)
        out.append(f"{_MARK}{len(match.group(1))} {match.group(2)}" if match else line)
    return _split_marked("\n".join(out), _first_heading(out) or fallback_title)


def load_rst(text: str, fallback_title: str) -> list[Section]:
    lines = text.splitlines()
    levels: list[str] = []  # rst heading levels are defined by order of appearance
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        nxt = lines[i + 1] if i + 1 < len(lines) else ""
        over = _RST_UNDERLINE.match(line) and i + 2 < len(lines) and _RST_UNDERLINE.match(lines[i + 2])
        if over and lines[i + 1].strip():
            key, name, i = "over" + line[0], lines[i + 1].strip(), i + 3
        elif line.strip() and _RST_UNDERLINE.match(nxt) and len(nxt.strip()) >= len(line.strip()) - 1:
            key, name, i = nxt[0], line.strip(), i + 2
        else:
            out.append(line)
            i += 1
            continue
        if key not in levels:
            levels.append(key)
        out.append(f"{_MARK}{levels.index(key) + 1} {name}")
    return _split_marked("\n".join(out), _first_heading(out) or fallback_title)


def _first_heading(lines: list[str]) -> str | None:
    for line in lines:
        if line.startswith(_MARK + "1 "):
            return line[len(_MARK) + 2 :].strip()
    return None


def load_plain(text: str, fallback_title: str) -> list[Section]:
    body = clean(text)
    return [Section(text=body, title=fallback_title)] if body else []


# --- CSV --------------------------------------------------------------------------------------

CSV_ROWS_PER_SECTION = 20


def load_csv(text: str, fallback_title: str) -> list[Section]:
    """Render rows with their header (``col: value; ...``), ``CSV_ROWS_PER_SECTION`` per section."""
    try:
        dialect = csv.Sniffer().sniff(text[:4096], delimiters=",;\t|")
    except csv.Error:
        dialect = csv.excel
    try:
        rows = list(csv.reader(io.StringIO(text), dialect))
    except csv.Error as exc:  # e.g. an unclosed quote swallowing the rest of the file into one field
        raise LoadError(f"broken CSV (check its quoting): {exc}") from exc
    rows = [row for row in rows if any(cell.strip() for cell in row)]
    if not rows:
        return []
    header = [h.strip() or f"column {i + 1}" for i, h in enumerate(rows[0])]
    return row_sections(header, rows[1:], fallback_title)


def row_sections(header: list[str], data: list[list[str]], title: str, *, sheet: str = "", keep_empty: bool = True) -> list[Section]:
    """Rows rendered with their header (``col: value; ...``), ``CSV_ROWS_PER_SECTION`` per section
    named ``[sheet ]rows a-b``; no rows: one section listing the columns. ``keep_empty=False``
    leaves out a row's empty cells (spreadsheets: most cells of a wide sheet are empty)."""
    extra = {"sheet": sheet} if sheet else {}
    if not data:
        return [Section(text="Columns: " + ", ".join(header), title=title, section=sheet, extra=dict(extra))]
    name = f"{sheet} " if sheet else ""
    sections = []
    for start in range(0, len(data), CSV_ROWS_PER_SECTION):
        block = data[start : start + CSV_ROWS_PER_SECTION]
        lines = [
            "; ".join(f"{h}: {v.strip()}" for h, v in zip(header, row, strict=False) if keep_empty or v.strip())
            for row in block
        ]
        first, last = start + 1, start + len(block)
        sections.append(
            Section(text="\n".join(lines), title=title, section=f"{name}rows {first}-{last}", extra={**extra, "rows": f"{first}-{last}"})
        )
    return sections


# --- PDF --------------------------------------------------------------------------------------


def load_pdf(data: bytes, fallback_title: str) -> list[Section]:
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            raise LoadError("encrypted PDF: it needs a password (save an unencrypted copy to ingest it)")
        title = (reader.metadata.title if reader.metadata else None) or fallback_title
        sections = []
        for number, page in enumerate(reader.pages, start=1):
            body = clean(page.extract_text() or "")
            if body:
                sections.append(
                    Section(text=body, title=str(title), section=f"page {number}", extra={"page": number})
                )
    except (PdfReadError, ValueError, KeyError, TypeError, OSError) as exc:
        raise LoadError(f"corrupt or unreadable PDF: {exc}") from exc
    return sections


# --- dispatch ---------------------------------------------------------------------------------


def load_file(path: Path, data: bytes | None = None) -> list[Section]:
    """Read ``path`` into sections (``data``: its bytes, when the caller has read them already).

    Raises:
        SkipFile: unsupported type, or nothing to ingest (empty file).
        LoadError: the file is broken (binary with a text extension, corrupt PDF, unreadable).
    """
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise SkipFile(f"unsupported file type {suffix or '(none)'}")
    if data is None:
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise LoadError(f"cannot read: {exc.strerror or exc}") from exc
    if not data.strip():
        raise SkipFile("empty file")
    fallback_title = path.stem.replace("_", " ").replace("-", " ").strip() or path.name
    if suffix == ".pdf":
        if not data.startswith(b"%PDF"):
            raise LoadError("not a PDF file (missing %PDF header)")
        sections = load_pdf(data, fallback_title)
    elif suffix in FORMAT_SUFFIXES:
        from orchard.formats import byte_loader

        sections = byte_loader(suffix)(data, fallback_title)
    else:
        text = decode_text(data, path)
        if suffix in (".md", ".markdown"):
            from orchard.formats.wiki import load_wiki_markdown as loader  # plain Markdown unless [[links]] / front matter
        else:
            loader = {".html": load_html, ".htm": load_html, ".rst": load_rst, ".csv": load_csv, ".txt": load_plain}[suffix]
        sections = loader(text, fallback_title)
    if not sections:
        raise SkipFile("no text found")
    return sections
