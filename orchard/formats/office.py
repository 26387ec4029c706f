"""Office documents: Word (docx), PowerPoint (pptx), spreadsheets (xlsx, ods), OpenDocument text (odt).

* docx (python-docx): headings (``Heading N`` / ``Title`` styles, or an outline level) become the
  section path, as in HTML; tables become ``header: value; ...`` lines.
* pptx (python-pptx): one section per slide, named by the slide's title (``slide N`` without
  one), with its text boxes, tables and speaker notes (``Speaker notes: ...``); ``extra`` keeps
  ``slide``.
* xlsx (openpyxl, values not formulas) and ods (content.xml read with lxml): each sheet is a
  section path, rows are rendered with their header as CSV rows are, ``CSV_ROWS_PER_SECTION``
  rows per section; ``extra`` keeps ``sheet`` and ``rows``.
* odt (content.xml read with lxml): ``text:h`` outline levels become the section path.

Every archive passes :func:`orchard.formats.zipguard.open_checked_zip` first.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterable, Iterator

from orchard.formats.zipguard import open_checked_zip, read_entry
from orchard.loaders import _MARK, LoadError, Section, _split_marked, clean, row_sections

MAX_SHEET_ROWS = 200_000
MAX_SHEET_COLUMNS = 1_000
_OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"  # password-protected Office files and legacy .doc/.xls/.ppt


def _refuse_ole(data: bytes, kind: str) -> None:
    if data.startswith(_OLE_MAGIC):
        raise LoadError(
            f"encrypted (password-protected) or legacy binary Office file, not a {kind}: save it as an unprotected {kind}"
        )


def table_rows_sections(rows: Iterable[list[str]], title: str, sheet: str = "") -> list[Section]:
    """Rows (the first non-empty one is the header) -> sections of ``header: value; ...`` lines."""
    kept = [row for row in rows if any(cell.strip() for cell in row)]
    if not kept:
        return []
    width = max(len(row) for row in kept)
    header = [(kept[0][i].strip() if i < len(kept[0]) else "") or f"column {i + 1}" for i in range(width)]
    return row_sections(header, kept[1:], title, sheet=sheet, keep_empty=False)


def _cell_text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return " ".join(str(value).split())


# --- docx -------------------------------------------------------------------------------------

_HEADING_STYLE = re.compile(r"^heading\s*(\d)$", re.IGNORECASE)


def _docx_heading_level(paragraph) -> int | None:
    style = paragraph.style
    name = (style.name or "") if style is not None else ""
    if name.lower() == "title":
        return 1
    if match := _HEADING_STYLE.match(name):
        return int(match.group(1)) + 1  # Title is level 1
    outline = paragraph._p.xpath("./w:pPr/w:outlineLvl/@w:val")
    if outline and outline[0].isdigit() and int(outline[0]) < 9:
        return int(outline[0]) + 2
    return None


def _docx_table_lines(table) -> list[str]:
    rows = [[" ".join(cell.text.split()) for cell in row.cells] for row in table.rows]
    rows = [row for row in rows if any(row)]
    if len(rows) < 2:
        return [" | ".join(row) for row in rows]
    header = [h or f"column {i + 1}" for i, h in enumerate(rows[0])]
    return ["; ".join(f"{h}: {v}" for h, v in zip(header, row, strict=False) if v) for row in rows[1:]]


def load_docx(data: bytes, fallback_title: str) -> list[Section]:
    import docx
    from docx.table import Table

    _refuse_ole(data, "docx")
    open_checked_zip(data, "docx")
    try:
        document = docx.Document(io.BytesIO(data))
        title = (document.core_properties.title or "").strip()
        out: list[str] = []
        for block in document.iter_inner_content():
            if isinstance(block, Table):
                out.extend(_docx_table_lines(block))
                out.append("")
                continue
            text = block.text.strip()
            level = _docx_heading_level(block) if text else None
            if level is None:
                out.append(block.text)
            else:
                title = title or (text if level == 1 else "")
                out.append(f"{_MARK}{level} {' '.join(text.split())}")
    except LoadError:
        raise
    except Exception as exc:  # python-docx raises KeyError, ValueError, lxml errors on damaged parts
        raise LoadError(f"corrupt docx file: {type(exc).__name__}: {exc}") from exc
    return _split_marked("\n".join(out), title or fallback_title)


# --- pptx -------------------------------------------------------------------------------------


def _pptx_shape_texts(shapes, skip) -> Iterator[str]:
    for shape in shapes:
        if skip is not None and shape.shape_id == skip.shape_id:  # python-pptx makes a new proxy per access
            continue
        if shape.shape_type is not None and shape.shape_type == 6:  # MSO_SHAPE_TYPE.GROUP
            yield from _pptx_shape_texts(shape.shapes, skip)
        elif getattr(shape, "has_table", False) and shape.has_table:
            rows = [[" ".join(cell.text.split()) for cell in row.cells] for row in shape.table.rows]
            yield "\n".join(" | ".join(row) for row in rows if any(row))
        elif getattr(shape, "has_text_frame", False) and shape.has_text_frame:
            yield shape.text_frame.text


def load_pptx(data: bytes, fallback_title: str) -> list[Section]:
    import pptx

    _refuse_ole(data, "pptx")
    open_checked_zip(data, "pptx")
    try:
        deck = pptx.Presentation(io.BytesIO(data))
        title = (deck.core_properties.title or "").strip()
        sections = []
        for number, slide in enumerate(deck.slides, start=1):
            heading_shape = slide.shapes.title
            heading = " ".join(heading_shape.text.split()) if heading_shape is not None and heading_shape.has_text_frame else ""
            parts = [clean(text) for text in _pptx_shape_texts(slide.shapes, heading_shape)]
            if slide.has_notes_slide and slide.notes_slide.notes_text_frame is not None:
                notes = clean(slide.notes_slide.notes_text_frame.text)
                if notes:
                    parts.append(f"Speaker notes: {notes}")
            body = clean("\n\n".join(p for p in parts if p))
            if number == 1 and not title and heading:
                title = heading
            if body or heading:
                sections.append(
                    Section(text=body or heading, title="", section=heading or f"slide {number}", extra={"slide": number})
                )
    except LoadError:
        raise
    except Exception as exc:
        raise LoadError(f"corrupt pptx file: {type(exc).__name__}: {exc}") from exc
    for section in sections:
        section.title = title or fallback_title
    return sections


# --- xlsx -------------------------------------------------------------------------------------


def load_xlsx(data: bytes, fallback_title: str) -> list[Section]:
    from openpyxl import load_workbook

    _refuse_ole(data, "xlsx")
    open_checked_zip(data, "xlsx")
    try:
        book = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
        title = (book.properties.title or "").strip() or fallback_title
        sections = []
        for sheet in book.worksheets:
            rows = (
                [_cell_text(v) for v in row[:MAX_SHEET_COLUMNS]]
                for row, _ in zip(sheet.iter_rows(values_only=True), range(MAX_SHEET_ROWS), strict=False)
            )
            sections.extend(table_rows_sections(rows, title, sheet.title))
        book.close()
    except LoadError:
        raise
    except Exception as exc:
        raise LoadError(f"corrupt xlsx file: {type(exc).__name__}: {exc}") from exc
    return sections


# --- OpenDocument (odt, ods) --------------------------------------------------------------------

_NS = {
    "office": "urn:oasis:names:tc:opendocument:xmlns:office:1.0",
    "text": "urn:oasis:names:tc:opendocument:xmlns:text:1.0",
    "table": "urn:oasis:names:tc:opendocument:xmlns:table:1.0",
    "dc": "http://purl.org/dc/elements/1.1/",
}
_T, _TB, _OFFICE = (f"{{{_NS[name]}}}" for name in ("text", "table", "office"))
_SKIP_ODF = {_T + "note", _T + "tracked-changes", _T + "sequence-decls", _T + "table-of-content", _OFFICE + "forms"}


def _odf_xml(archive, name: str, kind: str):
    from lxml import etree

    parser = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False)
    try:
        return etree.fromstring(read_entry(archive, name, kind), parser)
    except etree.XMLSyntaxError as exc:
        raise LoadError(f"corrupt {kind} file: {name}: {exc}") from exc


def _odf_title(archive, kind: str) -> str:
    if "meta.xml" not in archive.namelist():
        return ""
    found = _odf_xml(archive, "meta.xml", kind).xpath("//dc:title/text()", namespaces=_NS)
    return " ".join(found[0].split()) if found else ""


def _odf_inline(elem) -> str:
    """The text of a paragraph: ``text:s`` spaces, tabs and line breaks kept, notes left out."""
    out = [elem.text or ""]
    for child in elem:
        tag = child.tag if isinstance(child.tag, str) else ""
        if tag == _T + "s":
            out.append(" " * int(child.get(_T + "c", "1") or 1))
        elif tag == _T + "tab":
            out.append("\t")
        elif tag == _T + "line-break":
            out.append("\n")
        elif tag not in _SKIP_ODF:
            out.append(_odf_inline(child))
        out.append(child.tail or "")
    return "".join(out)


def _odf_blocks(elem, out: list[str]) -> None:
    for child in elem:
        tag = child.tag if isinstance(child.tag, str) else ""
        if tag in _SKIP_ODF:
            continue
        if tag == _T + "h":
            level = child.get(_T + "outline-level", "1")
            out.append(f"{_MARK}{min(int(level) if level.isdigit() else 1, 6)} {' '.join(_odf_inline(child).split())}")
        elif tag == _T + "p":
            out.append(_odf_inline(child))
        elif tag == _TB + "table":
            rows = [[" ".join(c.split()) for c in row] for row in _odf_table_rows(child)]
            out.extend(" | ".join(row) for row in rows if any(row))
            out.append("")
        else:  # lists, sections, frames: their paragraphs are inside
            _odf_blocks(child, out)


def _odf_table_rows(table) -> Iterator[list[str]]:
    """Rows of cell texts; repeated rows and cells expanded (bounded: a sheet often declares a
    million blank rows or 16,000 blank columns as one repeated element)."""
    emitted = 0
    for row in table.iter(_TB + "table-row"):
        cells: list[str] = []
        pending_blank = 0
        for cell in row:
            if cell.tag not in (_TB + "table-cell", _TB + "covered-table-cell"):
                continue
            text = "\n".join(_odf_inline(p) for p in cell.iter(_T + "p"))
            repeat = int(cell.get(_TB + "number-columns-repeated", "1") or 1)
            if not text.strip():
                pending_blank += repeat
                continue
            cells.extend([""] * min(pending_blank, MAX_SHEET_COLUMNS))
            pending_blank = 0
            cells.extend([text] * min(repeat, MAX_SHEET_COLUMNS))
        cells = cells[:MAX_SHEET_COLUMNS]
        if not cells:
            continue
        for _ in range(min(int(row.get(_TB + "number-rows-repeated", "1") or 1), MAX_SHEET_ROWS - emitted)):
            emitted += 1
            yield cells
        if emitted >= MAX_SHEET_ROWS:
            return


def _odf_body(data: bytes, kind: str, mimetype: str):
    archive = open_checked_zip(data, kind)
    if "mimetype" in archive.namelist():
        declared = read_entry(archive, "mimetype", kind).decode("ascii", "replace").strip()
        if declared and declared != mimetype:
            raise LoadError(f"not an {kind} file (its mimetype is {declared})")
    root = _odf_xml(archive, "content.xml", kind)
    return archive, root


def load_odt(data: bytes, fallback_title: str) -> list[Section]:
    archive, root = _odf_body(data, "odt", "application/vnd.oasis.opendocument.text")
    title = _odf_title(archive, "odt")
    out: list[str] = []
    for body in root.iter(_OFFICE + "text"):
        _odf_blocks(body, out)
    if not title:
        title = next((line[len(_MARK) + 2 :] for line in out if line.startswith(_MARK + "1 ")), "")
    return _split_marked("\n".join(out), title or fallback_title)


def load_ods(data: bytes, fallback_title: str) -> list[Section]:
    archive, root = _odf_body(data, "ods", "application/vnd.oasis.opendocument.spreadsheet")
    title = _odf_title(archive, "ods") or fallback_title
    sections = []
    for table in root.iter(_TB + "table"):
        rows = (list(map(_cell_text, row)) for row in _odf_table_rows(table))
        sections.extend(table_rows_sections(rows, title, table.get(_TB + "name", "")))
    return sections
