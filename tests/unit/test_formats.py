"""Office files, e-books, mail and wikis: each kind is written by the library that writes it (or
by the standard library), then read back by Orchard's loader; zip bombs are refused before parsing;
a file holding several documents (an mbox, a wiki dump, a mail with attachments) becomes several
sources that re-ingest, replace and prune as one file."""

from __future__ import annotations

import zipfile
from email.message import EmailMessage
from pathlib import Path

import pytest

from orchard.formats import BYTE_SUFFIXES, zipguard
from orchard.ingest import ingest
from orchard.loaders import FORMAT_SUFFIXES, SUPPORTED_SUFFIXES, LoadError, SkipFile, load_file
from orchard.retriever import HybridRetriever
from orchard.store import DocumentStore


def make_docx(path: Path) -> Path:
    import docx

    document = docx.Document()
    document.add_heading("Pruning guide", 0)
    document.add_heading("Apples", 1)
    document.add_paragraph("Prune apple trees in late winter, before the buds swell.")
    document.add_heading("Tools", 2)
    document.add_paragraph("Use sharp bypass secateurs.")
    table = document.add_table(rows=3, cols=2)
    for (row, col), value in {(0, 0): "tree", (0, 1): "kg", (1, 0): "Bramley", (1, 1): "40", (2, 0): "Cox", (2, 1): "25"}.items():
        table.cell(row, col).text = value
    document.save(path)
    return path


def make_message(subject: str, body: str, *, sender: str = "Ann <ann@example.org>", attach: Path | None = None) -> EmailMessage:
    msg = EmailMessage()
    msg["Subject"], msg["From"], msg["To"] = subject, sender, "crew@example.org"
    msg["Date"] = "Tue, 03 Mar 2026 07:00:00 +0100"
    msg.set_content(body)
    if attach is not None:
        msg.add_attachment(attach.read_bytes(), maintype="application", subtype="octet-stream", filename=attach.name)
        msg.add_attachment(b"\x89PNG\r\n\x1a\n", maintype="image", subtype="png", filename="photo.png")
    return msg


def mbox_bytes(*messages: EmailMessage) -> bytes:
    return b"".join(b"From someone@example.org Tue Mar  3 07:00:00 2026\n" + m.as_bytes() + b"\n" for m in messages)


MEDIAWIKI = """<mediawiki xmlns="http://www.mediawiki.org/xml/export-0.11/" version="0.11">
<siteinfo><sitename>Orchard wiki</sitename></siteinfo>
<page><title>Apple scab</title><ns>0</ns><id>1</id><revision><id>7</id><text>old text</text></revision>
<revision><id>8</id><text>'''Apple scab''' is a [[fungus|fungal]] disease of [[Malus]].{{Infobox disease|agent=Venturia}}&lt;ref&gt;Extension leaflet&lt;/ref&gt;
== Symptoms ==
Olive-green spots on the leaves.
{| class="wikitable"
! Stage !! Sign
|-
| spring || spots
|}
== Control ==
Rake fallen leaves in autumn. [[Category:Diseases]] [[File:Scab.jpg|thumb|A leaf]]
</text></revision></page>
<page><title>Scab</title><ns>0</ns><id>2</id><redirect title="Apple scab"/><revision><id>9</id><text>#REDIRECT [[Apple scab]]</text></revision></page>
<page><title>Talk:Apple scab</title><ns>1</ns><id>3</id><revision><id>10</id><text>Chatter.</text></revision></page>
<page><title>Fire blight</title><ns>0</ns><id>4</id><revision><id>11</id><text>A bacterial disease spread by bees. See [[Apple scab]].</text></revision></page>
</mediawiki>"""


# --- one test per kind ----------------------------------------------------------------------------


def test_docx_headings_become_the_section_path_and_tables_keep_their_header(tmp_path: Path) -> None:
    sections = load_file(make_docx(tmp_path / "guide.docx"))
    assert {s.title for s in sections} == {"Pruning guide"}
    by_section = {s.section: s.text for s in sections}
    assert by_section["Apples"].startswith("Prune apple trees in late winter")
    assert "tree: Bramley; kg: 40\ntree: Cox; kg: 25" in by_section["Apples > Tools"]


def test_pptx_slides_are_sections_named_by_their_titles_with_speaker_notes(tmp_path: Path) -> None:
    import pptx

    deck = pptx.Presentation()
    for title, body, notes in [
        ("Harvest plan", "Pick pears in September.", "Mention the ladder rule."),
        ("Storage", "Keep apples at 3 °C.", ""),
    ]:
        slide = deck.slides.add_slide(deck.slide_layouts[1])
        slide.shapes.title.text, slide.placeholders[1].text = title, body
        if notes:
            slide.notes_slide.notes_text_frame.text = notes
    deck.save(tmp_path / "talk.pptx")
    sections = load_file(tmp_path / "talk.pptx")
    assert [(s.section, s.extra["slide"]) for s in sections] == [("Harvest plan", 1), ("Storage", 2)]
    assert sections[0].text == "Pick pears in September.\n\nSpeaker notes: Mention the ladder rule."
    assert sections[0].title == "Harvest plan"  # the first slide's title names an untitled deck


def test_xlsx_sheets_are_sections_and_rows_carry_their_header(tmp_path: Path) -> None:
    import openpyxl

    book = openpyxl.Workbook()
    yields = book.active
    yields.title = "Yields"
    for row in [["tree", "kg"], ["Bramley", 40], ["Cox", 25.5], [None, None]]:
        yields.append(row)
    costs = book.create_sheet("Costs")
    costs.append(["item", "eur"])
    costs.append(["ladder", "=100+20"])  # a formula never computed by a spreadsheet has no cached value
    book.save(tmp_path / "harvest.xlsx")
    sections = load_file(tmp_path / "harvest.xlsx")
    assert [(s.section, s.extra) for s in sections] == [
        ("Yields rows 1-2", {"sheet": "Yields", "rows": "1-2"}), ("Costs rows 1-1", {"sheet": "Costs", "rows": "1-1"}),
    ]  # fmt: skip
    assert sections[0].text == "tree: Bramley; kg: 40\ntree: Cox; kg: 25.5"
    assert sections[1].text == "item: ladder"


def test_ods_sheets_are_read_and_repeated_blank_cells_do_not_blow_up(tmp_path: Path) -> None:
    from odf.opendocument import OpenDocumentSpreadsheet
    from odf.table import Table, TableCell, TableRow
    from odf.text import P

    doc = OpenDocumentSpreadsheet()
    table = Table(name="Trees")
    for values in [["tree", "age"], ["Pear", "12"], ["Plum", "7"]]:
        row = TableRow()
        for value in values:
            cell = TableCell()
            cell.addElement(P(text=value))
            row.addElement(cell)
        row.addElement(TableCell(numbercolumnsrepeated=16000))  # as spreadsheets write trailing blank columns
        table.addElement(row)
    table.addElement(TableRow(numberrowsrepeated=1_000_000))  # and a million blank rows
    doc.spreadsheet.addElement(table)
    doc.save(str(tmp_path / "trees.ods"))
    sections = load_file(tmp_path / "trees.ods")
    assert [(s.section, s.text) for s in sections] == [("Trees rows 1-2", "tree: Pear; age: 12\ntree: Plum; age: 7")]


def test_odt_outline_levels_become_the_section_path(tmp_path: Path) -> None:
    from odf.opendocument import OpenDocumentText
    from odf.text import H, P, S

    doc = OpenDocumentText()
    doc.text.addElement(H(outlinelevel=1, text="Cider making"))
    para = P(text="Press the apples")
    para.addElement(S(c=3))
    para.addText("in October.")
    doc.text.addElement(para)
    doc.text.addElement(H(outlinelevel=2, text="Yeast"))
    doc.text.addElement(P(text="Wild yeast works."))
    doc.save(str(tmp_path / "cider.odt"))
    sections = load_file(tmp_path / "cider.odt")
    assert [(s.title, s.section, s.text) for s in sections] == [
        ("Cider making", "", "Press the apples in October."), ("Cider making", "Yeast", "Wild yeast works."),
    ]  # fmt: skip


def test_epub_chapters_become_sections_in_reading_order(tmp_path: Path) -> None:
    from ebooklib import epub

    book = epub.EpubBook()
    book.set_identifier("orchard-1")
    book.set_title("The Orchard Book")
    book.set_language("en")
    one = epub.EpubHtml(title="Planting", file_name="c1.xhtml")
    one.content = "<h1>Planting</h1><p>Plant in spring.</p><h2>Soil</h2><p>Loam drains well.</p>"
    two = epub.EpubHtml(title="Grafting", file_name="c2.xhtml")
    two.content = "<p>Whip and tongue grafts join rootstock and scion.</p>"  # no heading: the contents name it
    for item in (one, two, epub.EpubNcx(), epub.EpubNav()):
        book.add_item(item)
    book.toc, book.spine = (one, two), ["nav", one, two]
    epub.write_epub(str(tmp_path / "orchard.epub"), book)
    sections = load_file(tmp_path / "orchard.epub")
    assert [(s.title, s.section) for s in sections] == [
        ("The Orchard Book", "Planting"), ("The Orchard Book", "Planting > Soil"), ("The Orchard Book", "Grafting"),
    ]  # fmt: skip
    assert sections[2].text == "Whip and tongue grafts join rootstock and scion."


def test_eml_keeps_subject_sender_and_date_and_returns_attachments_as_parts(tmp_path: Path) -> None:
    msg = make_message("Frost warning", "Cover the blossoms tonight.", attach=make_docx(tmp_path / "guide.docx"))
    (tmp_path / "frost.eml").write_bytes(msg.as_bytes())
    mail, *attached = load_file(tmp_path / "frost.eml")
    assert (mail.title, mail.section, mail.part) == ("Frost warning", "From Ann <ann@example.org>, 2026-03-03T07:00+01:00", "")
    assert mail.extra == {"subject": "Frost warning", "from": "Ann <ann@example.org>", "date": "2026-03-03T07:00+01:00"}
    assert mail.text.startswith("Cover the blossoms tonight.")
    assert "Attachments: guide.docx; photo.png (not indexed: unsupported file type .png)" in mail.text
    assert {s.part for s in attached} == {"guide.docx"} and attached[0].title == "Pruning guide"


def test_mbox_messages_are_parts_and_escaped_from_lines_are_restored() -> None:
    second = make_message("Ladder inspection", "From now on, check ladders weekly.\n", sender="bob@example.org")
    data = mbox_bytes(make_message("Frost warning", "Cover the blossoms."), second).replace(b"\nFrom now", b"\n>From now")
    sections = load_file(Path("crew.mbox"), data)
    assert [(s.part, s.title) for s in sections] == [("1", "Frost warning"), ("2", "Ladder inspection")]
    assert sections[1].text == "From now on, check ladders weekly."
    with pytest.raises(LoadError, match="not an mbox"):
        load_file(Path("notes.mbox"), b"just some text\n")


def test_mediawiki_dump_pages_are_parts_with_headings_rendered_text_and_links() -> None:
    sections = load_file(Path("wiki.xml"), MEDIAWIKI.encode())
    assert sorted({s.part for s in sections}) == ["Apple scab", "Fire blight"]  # no redirect, no talk page
    scab = next(s for s in sections if s.part == "Apple scab")
    assert scab.title == "Apple scab" and scab.extra["links"] == ["Fungus", "Malus"]
    assert scab.text.startswith("Apple scab is a fungal disease of Malus.")  # latest revision, template and ref gone
    assert "Symptoms\nOlive-green spots on the leaves." in scab.text and "spring | spots" in scab.text
    assert "Category" not in scab.text and "thumb" not in scab.text and "Extension leaflet" not in scab.text
    with pytest.raises(SkipFile, match="not a MediaWiki dump"):
        load_file(Path("feed.xml"), b"<rss><channel/></rss>")


def test_xml_entities_are_never_expanded() -> None:
    bomb = (
        b'<?xml version="1.0"?><!DOCTYPE m [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">'
        b'<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;"><!ENTITY secret SYSTEM "file:///etc/passwd">]>'
        b"<mediawiki><page><title>T</title><ns>0</ns><revision><text>x &c; &secret; y</text></revision></page></mediawiki>"
    )
    sections = load_file(Path("bomb.xml"), bomb)
    assert "aaaa" not in sections[0].text and "root:" not in sections[0].text


def test_wiki_notes_take_their_title_from_front_matter_and_keep_links(tmp_path: Path) -> None:
    note = "---\ntitle: Fire blight\ntags: [disease]\n---\nA bacterial disease; see [[Apple scab|scab]] and [[Pruning#Tools]].\n![[leaf.png]]\n"
    (tmp_path / "fire-blight-2024.md").write_text(note)
    [section] = load_file(tmp_path / "fire-blight-2024.md")
    assert section.title == "Fire blight" and section.extra == {"links": ["Apple scab", "Pruning"]}
    assert section.text == "A bacterial disease; see scab and Pruning > Tools."
    (tmp_path / "plain.md").write_text("# Plain\n\nNo links here.\n")
    assert load_file(tmp_path / "plain.md")[0].extra == {}


def test_every_format_suffix_has_a_loader() -> None:
    assert FORMAT_SUFFIXES == BYTE_SUFFIXES and FORMAT_SUFFIXES <= SUPPORTED_SUFFIXES


# --- zip bombs and broken archives --------------------------------------------------------------


def test_a_zip_bomb_docx_is_refused_before_parsing(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.docx"
    with (
        zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive,
        archive.open("word/document.xml", "w") as entry,
    ):
        block = b"\0" * 1_000_000
        for _ in range(200):  # 200 MB of zeros deflates to ~200 KB
            entry.write(block)
    assert bomb.stat().st_size < 1_000_000
    with pytest.raises(LoadError, match=r"inflates to 200 MB from 0\.\d+ MB \(\d+x.*zip bomb"):
        load_file(bomb)


def test_too_many_zip_entries_and_corrupt_archives_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    docx_path = make_docx(tmp_path / "guide.docx")
    monkeypatch.setattr(zipguard, "MAX_ENTRIES", 5)
    with pytest.raises(LoadError, match="zip entries, over the limit of 5"):
        load_file(docx_path)
    for name in ("notes.docx", "book.epub", "sheet.xlsx", "text.odt"):
        with pytest.raises(LoadError, match="corrupt"):
            load_file(Path(name), b"PK\x03\x04 truncated")
    with pytest.raises(LoadError, match="password-protected"):
        load_file(Path("secret.docx"), b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 512)


# --- ingestion ---------------------------------------------------------------------------------


def test_an_ingested_docx_is_found_by_retrieval(tmp_path: Path, store: DocumentStore) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    make_docx(docs / "guide.docx")
    (docs / "other.md").write_text("# Cherries\n\nCherries are netted against birds in June.\n")
    report = ingest(["docs"], store=store, progress=False)
    assert report.files_indexed == 2 and not report.files_failed
    top = HybridRetriever(store=store, k=3).invoke("when to prune apple trees")[0]
    assert top.metadata["source"] == "docs/guide.docx" and top.metadata["section"] == "Apples"
    assert "late winter" in top.page_content


def test_a_mailbox_is_one_file_of_several_sources(tmp_path: Path, store: DocumentStore) -> None:
    guide = make_docx(tmp_path / "guide.docx")
    box = tmp_path / "crew.mbox"
    first = make_message("Frost warning", "Cover the blossoms tonight.", attach=guide)
    box.write_bytes(mbox_bytes(first, make_message("Ladder inspection", "Check ladders weekly.")))
    report = ingest(["crew.mbox"], store=store, progress=False)
    assert (report.files_indexed, report.files_failed) == (1, [])
    assert set(store.sources()) == {"crew.mbox#1", "crew.mbox#1/guide.docx", "crew.mbox#2"}
    mail = store.get(store.chunk_ids("crew.mbox#1"))[0]
    assert mail.metadata["subject"] == "Frost warning" and mail.metadata["from"] == "Ann <ann@example.org>"
    assert mail.page_content.startswith("Frost warning > From Ann <ann@example.org>, 2026-03-03T07:00+01:00\n")

    again = ingest(["crew.mbox"], store=store, progress=False, prune=True)
    assert (again.files_unchanged, again.files_indexed, again.chunks_added, again.chunks_removed) == (1, 0, 0, 0)

    box.write_bytes(mbox_bytes(make_message("Ladder inspection", "Check ladders weekly.")))  # the first mail deleted
    changed = ingest(["crew.mbox"], store=store, progress=False)
    assert changed.files_indexed == 1 and set(store.sources()) == {"crew.mbox#1"}
    assert store.get(store.chunk_ids("crew.mbox#1"))[0].metadata["subject"] == "Ladder inspection"


def test_wiki_links_are_stored_with_every_chunk_of_the_page(tmp_path: Path, store: DocumentStore) -> None:
    (tmp_path / "wiki.xml").write_text(MEDIAWIKI)
    ingest(["wiki.xml"], store=store, progress=False)
    assert set(store.sources()) == {"wiki.xml#Apple scab", "wiki.xml#Fire blight"}
    chunks = store.get(store.chunk_ids("wiki.xml#Apple scab"))
    assert chunks and all(c.metadata["links"] == ["Fungus", "Malus"] for c in chunks)


def test_deleting_a_mailbox_deletes_all_its_mails(tmp_path: Path) -> None:
    from tests.fakes import scripted_orchard

    box = tmp_path / "crew.mbox"
    box.write_bytes(mbox_bytes(make_message("Frost warning", "Cover the blossoms."), make_message("Ladders", "Check them.")))
    (tmp_path / "keep.md").write_text("# Keep\n\nPlums.\n")
    orchard = scripted_orchard(tmp_path / "data")
    try:
        orchard.library.ingest([str(box), str(tmp_path / "keep.md")], progress=False)
        assert orchard.library.delete(str(box)) == 2
        assert [d["source"] for d in orchard.library.documents()] == [str(tmp_path / "keep.md")]
    finally:
        orchard.close()
