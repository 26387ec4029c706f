"""Loaders and chunking: structure kept, bad input reported with a reason."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchard.chunking import CHUNK_SIZE, chunk_id, chunk_sections
from orchard.loaders import LoadError, SkipFile, load_file

HTML = """<html><head><title>Fruit guide</title><script>var x = 1;</script></head><body>
<div class="related" role="navigation">Previous | Next</div>
<div role="main"><section><h1>Fruit guide<a class="headerlink">¶</a></h1><p>All about <b>fruit</b>.</p>
<section><h2>Apples</h2><p>Apples grow on trees.</p>
<dl class="py function"><dt id="orchard.pick">orchard.pick(tree)</dt><dd><p>Pick the ripest apple.</p></dd></dl>
</section><section><h2>Pears</h2><p>Pears ripen off the tree.</p></section></section></div>
<footer>Copyright</footer></body></html>"""


def minimal_pdf(pages: list[str]) -> bytes:
    """A valid PDF with one line of Helvetica text per page (no external tools)."""
    objects = ["<< /Type /Catalog /Pages 2 0 R >>", ""]
    kids = []
    for text in pages:
        page_no = len(objects) + 1
        stream = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode()
        objects.append(f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents {page_no + 1} 0 R /Resources << /Font << /F1 {{font}} 0 R >> >> >>")
        objects.append(f"<< /Length {len(stream)} >>\nstream\n{stream.decode()}\nendstream")
        kids.append(f"{page_no} 0 R")
    font_no = len(objects) + 1
    objects.append("<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    objects[1] = f"<< /Type /Pages /Kids [{' '.join(kids)}] /Count {len(kids)} >>"
    objects = [o.replace("{font}", str(font_no)) for o in objects]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n{body}\nendobj\n".encode()
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    for offset in offsets:
        out += f"{offset:010d} 00000 n \n".encode()
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return bytes(out)


def test_html_sections_follow_headings_and_drop_navigation(tmp_path: Path) -> None:
    path = tmp_path / "fruit.html"
    path.write_text(HTML)
    sections = load_file(path)
    assert [s.section for s in sections] == ["", "Apples", "Apples > orchard.pick", "Pears"]
    assert {s.title for s in sections} == {"Fruit guide"}
    text = "\n".join(s.text for s in sections)
    assert "Pick the ripest apple." in text and "All about fruit." in text
    for noise in ("Previous", "Copyright", "var x", "¶"):
        assert noise not in text


def test_markdown_and_rst_headings(tmp_path: Path) -> None:
    md = tmp_path / "guide.md"
    md.write_text("# Guide\n\nIntro.\n\n## Install\n\nRun it.\n\n```\n# not a heading\n```\n")
    sections = load_file(md)
    assert sections[0].title == "Guide"
    assert [s.section for s in sections] == ["", "Install"]
    assert "# not a heading" in sections[1].text
    rst = tmp_path / "guide.rst"
    rst.write_text("Guide\n=====\n\nIntro.\n\nUsage\n-----\n\nCall it.\n")
    sections = load_file(rst)
    assert sections[0].title == "Guide" and sections[-1].section == "Usage"


def test_csv_rows_rendered_with_header(tmp_path: Path) -> None:
    path = tmp_path / "harvest.csv"
    rows = "\n".join(f"tree{i},{i * 10}" for i in range(1, 46))
    path.write_text("tree,kg\n" + rows + "\n")
    sections = load_file(path)
    assert [s.extra["rows"] for s in sections] == ["1-20", "21-40", "41-45"]
    assert sections[0].text.splitlines()[0] == "tree: tree1; kg: 10"


def test_pdf_pages_carry_page_numbers(tmp_path: Path) -> None:
    path = tmp_path / "report.pdf"
    path.write_bytes(minimal_pdf(["First page about apples", "Second page about pears"]))
    sections = load_file(path)
    assert [s.extra["page"] for s in sections] == [1, 2]
    assert "pears" in sections[1].text
    docs = chunk_sections(sections, source="report.pdf")
    assert [d.metadata["page"] for d in docs] == [1, 2]


def test_utf16_text_with_a_bom_is_read(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_bytes("Äpfel und Birnen".encode("utf-16"))
    assert load_file(path)[0].text == "Äpfel und Birnen"


def test_latin1_text_is_read_correctly(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_bytes("Café crème, naïve façade.".encode("latin-1"))
    assert load_file(path)[0].text == "Café crème, naïve façade."


@pytest.mark.parametrize(
    ("name", "data", "error", "reason"),
    [
        ("empty.txt", b"", SkipFile, "empty file"),
        ("blank.md", b"  \n\n ", SkipFile, "empty file"),
        ("image.txt", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", LoadError, "binary content"),
        ("broken.pdf", b"%PDF-1.4\n1 0 obj << garbage", LoadError, "PDF"),
        ("fake.pdf", b"hello, I am not a PDF", LoadError, "not a PDF"),
        ("archive.zip", b"PK\x03\x04", SkipFile, "unsupported file type .zip"),
    ],
)
def test_bad_input_gives_a_reason(tmp_path: Path, name: str, data: bytes, error: type, reason: str) -> None:
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(error, match=reason):
        load_file(path)


def test_chunks_carry_header_metadata_and_stable_ids(tmp_path: Path) -> None:
    path = tmp_path / "fruit.html"
    path.write_text(HTML)
    docs = chunk_sections(load_file(path), source="docs/fruit.html", file_sha256="abc")
    first = docs[0]
    assert first.page_content.startswith("Fruit guide\n")
    assert all(d.metadata["source"] == "docs/fruit.html" and d.metadata["file_sha256"] == "abc" for d in docs)
    # a small page is one chunk: its sections are merged, their headings kept inline
    assert len(docs) == 1 and "\n\nApples\nApples grow on trees." in first.page_content
    again = chunk_sections(load_file(path), source="docs/fruit.html", file_sha256="abc")
    assert [d.id for d in docs] == [d.id for d in again]
    assert chunk_id("a.html", 0, "x") != chunk_id("b.html", 0, "x")


def test_long_sections_are_split_below_the_chunk_size(tmp_path: Path) -> None:
    path = tmp_path / "long.md"
    path.write_text("# Long\n\n" + "\n\n".join(f"Paragraph {i} " + "word " * 60 for i in range(40)))
    docs = chunk_sections(load_file(path), source="long.md")
    assert len(docs) > 5
    assert max(len(d.page_content) for d in docs) <= CHUNK_SIZE + len("Long\n")


def test_big_sections_keep_their_own_header(tmp_path: Path) -> None:
    path = tmp_path / "big.md"
    body = " ".join(["Apples are pomes."] * 40)
    path.write_text(f"# Fruit\n\n{body}\n\n## Apples\n\n{body}\n")
    docs = chunk_sections(load_file(path), source="big.md")
    assert any(d.page_content.startswith("Fruit > Apples\n") and d.metadata["section"] == "Apples" for d in docs)
