"""Office files, e-books and mail that real programs wrote, as Debian and PyPI packages ship them.

tests/test_formats.py writes each kind with the library that writes it; the files here were
written by Word, PowerPoint, Excel, OpenOffice.org, calibre, Mailman/pipermail and real mail
clients (origins and licenses: tests/data/real/SOURCES.md). Each test ingests the folder through
:func:`orchard.ingest.ingest` into a Chroma store (fake embeddings) and checks the structure kept
in the stored chunks: sections, titles, sheets and slides, mail headers, attachments and mails as
their own sources. Two tests cover faults the real files revealed (unnamed MIME parts and a
digest's mails were dropped; one missing image failed a whole e-book).
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest
from langchain_core.documents import Document

from orchard.ingest import IngestReport, ingest
from orchard.loaders import load_file
from orchard.retriever import HybridRetriever
from orchard.store import DocumentStore

REAL = Path(__file__).resolve().parents[1] / "data" / "real"
FILES = {
    "docx": "real/python-docx-test.docx",
    "pptx": "real/python-pptx-ph-inherit-props.pptx",
    "xlsx": "real/readxl-clippy.xlsx",
    "ods": "real/pythagoras.ods",
    "odt": "real/api-for-odfpy.odt",
    "epub": "real/calibre-quick-start.epub",
    "mbox": "real/metrics-grimoire-2015-11.mbox",
    "eml": "real/python-email-msg_04.eml",
    "digest": "real/python-email-msg_02-digest.eml",
}


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> tuple[DocumentStore, IngestReport]:
    """Every real file ingested once (sources read ``real/NAME``; SOURCES.md is left out)."""
    from orchard.store import make_chroma_client
    from tests.fakes import HashEmbeddings

    where = tmp_path_factory.mktemp("real") / "store"
    store = DocumentStore(client=make_chroma_client(path=where), collection="real", embeddings=HashEmbeddings(), where=str(where))
    report = ingest(list(FILES.values()), store=store, progress=False, base=REAL.parent)
    return store, report


def chunks(store: DocumentStore, source: str) -> list[Document]:
    found = store.get(store.chunk_ids(source))
    return sorted(found, key=lambda d: d.metadata["chunk"])


def test_every_real_file_is_ingested_and_files_holding_several_documents_are_several_sources(library) -> None:
    store, report = library
    assert (report.files_indexed, report.files_failed, report.files_skipped) == (len(FILES), [], [])
    mails = {f"{FILES['mbox']}#{n}" for n in range(1, 5)}
    assert set(store.sources()) >= {*FILES.values(), *mails, f"{FILES['eml']}#msg.txt"} - {FILES["mbox"]}
    assert FILES["mbox"] not in store.sources()  # a mailbox is its mails, not a source of its own
    again = ingest(list(FILES.values()), store=store, progress=False, base=REAL.parent)
    assert (again.files_unchanged, again.files_indexed, again.chunks_added) == (len(FILES), 0, 0)


def test_word_heading_style_becomes_the_section(library) -> None:
    store, _ = library
    [chunk] = chunks(store, FILES["docx"])  # Word for Mac (14.0): "Heading 1", then a Normal paragraph
    assert chunk.metadata["section"] == "python-docx was here!"
    assert chunk.metadata["title"] == "python docx test"  # no core title, no Title style: the file name
    assert chunk.page_content.endswith("python-docx was here too!")


def test_powerpoint_slides_are_sections_with_titles_and_speaker_notes(library) -> None:
    store, _ = library
    first, second = chunks(store, FILES["pptx"])
    assert (first.metadata["section"], first.metadata["slide"]) == ("Title Text", 1)
    assert "Body Text" in first.page_content
    assert "Speaker notes: Notes in inherited position and size." in first.page_content
    assert (second.metadata["section"], second.metadata["slide"]) == ("slide 2", 2)  # a slide without a title
    assert "Speaker notes: Notes in modified position and size." in second.page_content
    assert {first.metadata["title"], second.metadata["title"]} == {"Presentation"}  # the deck's core title


def test_excel_sheets_are_sections_and_rows_carry_their_header(library) -> None:
    store, _ = library
    by_sheet = {c.metadata["sheet"]: c for c in chunks(store, FILES["xlsx"])}
    assert set(by_sheet) == {"list-column", "two-row-header"}
    listing = by_sheet["list-column"]
    assert (listing.metadata["section"], listing.metadata["rows"]) == ("list-column rows 1-4", "1-4")
    assert "name: Species; value: paperclip" in listing.page_content
    assert "name: Weight in grams; value: 0.9" in listing.page_content
    assert "name: Clippy; species: paperclip; death: 2007-01-01" in by_sheet["two-row-header"].page_content


def test_spreadsheet_formulas_are_read_as_their_values_and_empty_sheets_are_left_out(library) -> None:
    store, _ = library
    [sheet] = chunks(store, FILES["ods"])  # OpenOffice.org Calc: A3 = SQRT(A1²+A2²), A4 = SUM(A1:A2)
    assert (sheet.metadata["sheet"], sheet.metadata["rows"]) == ("Sheet1", "1-3")  # Sheet2, Sheet3 are blank
    assert sheet.page_content.endswith("3: 4\n3: 5\n3: 7")
    assert "SQRT" not in sheet.page_content


def test_opendocument_text_outline_becomes_the_section_path_and_the_meta_title_names_it(library) -> None:
    store, _ = library
    found = chunks(store, FILES["odt"])
    assert {c.metadata["title"] for c in found} == {"Application Programmer's Interface for ODFPY"}  # meta.xml
    sections = [c.metadata["section"] for c in found]
    for path in ("Introduction > About OpenDocument", "The OpenDocument classes > Loading a document",
                 "The Element classes > anim module > anim.Animate", "Convenience modules > Teletype module"):  # fmt: skip
        assert path in sections
    assert sections.index("Introduction > About OpenDocument") < sections.index("Convenience modules > Teletype module")
    top = HybridRetriever(store=store, k=3).invoke("odfpy teletype module consecutive whitespace squashed")[0]
    assert (top.metadata["source"], top.metadata["section"]) == (FILES["odt"], "Convenience modules > Teletype module")


def test_epub_chapters_become_sections_in_reading_order(library) -> None:
    store, _ = library
    found = chunks(store, FILES["epub"])
    assert {c.metadata["title"] for c in found} == {"Quick Start Guide"}  # the book's dc:title
    sections = [c.metadata["section"] for c in found]
    order = ["Introduction", "Installing calibre", "Task 1: Organizing", "Task 2: Conversion > 2.3: Conversion basics",
             "Task 5: Interacting with e-book readers > 5.1: Putting an e-book on your e-book reader", "Where to get help"]  # fmt: skip
    assert [sections.index(name) for name in order] == sorted(sections.index(name) for name in order)
    basics = found[sections.index("Task 2: Conversion > 2.3: Conversion basics")]
    assert "The Kindle supports AZW3, MOBI" in basics.page_content


def test_a_mailing_list_archive_is_one_source_per_mail_with_its_headers(library) -> None:
    store, _ = library
    mails = [chunks(store, f"{FILES['mbox']}#{n}")[0].metadata for n in range(1, 5)]
    assert {m["subject"] for m in mails} == {"[Metrics-grimoire] Docker and MetricsGrimoire"}
    assert [(m["from"], m["date"]) for m in mails] == [
        ('"andy at example.com"', "2015-11-14T21:29+01:00"),
        ('"jgb at gsyc.es"', "2015-11-15T23:43+01:00"),
        ('"andy at example.com"', "2015-11-21T13:05+01:00"),
        ('"andy at example.com"', "2015-11-28T21:25+01:00"),
    ]
    reply = chunks(store, f"{FILES['mbox']}#2")[0]
    assert reply.metadata["section"] == 'From "jgb at gsyc.es", 2015-11-15T23:43+01:00'
    assert "Which rights do you need?" in reply.page_content


def test_a_mail_with_an_attachment_keeps_its_headers_and_stores_the_attachment_as_its_own_source(library) -> None:
    store, _ = library
    [mail] = chunks(store, FILES["eml"])  # Python's test suite: a multipart from XEmacs VM, 2001
    assert {k: mail.metadata[k] for k in ("subject", "from", "date")} == {
        "subject": "a simple multipart", "from": "barry@python.org", "date": "2001-09-11T00:05-04:00"}  # fmt: skip
    assert mail.page_content.endswith("a simple kind of mirror\nto reflect upon our own\n\nAttachments: msg.txt")
    [attachment] = chunks(store, f"{FILES['eml']}#msg.txt")
    assert attachment.page_content.endswith("a simple kind of mirror\nto reflect upon our own")


def test_the_mails_of_a_mime_digest_are_kept(library) -> None:
    """A Mailman digest (multipart/mixed: masthead, topics, a multipart/digest of 5 message/rfc822
    parts, footer): today the topics part, the five mails and the footer are listed as
    ``attachment-N (not indexed: unsupported file type (none))`` and their text is lost."""
    store, _ = library
    digest = " ".join(c.page_content for c in chunks(store, FILES["digest"]))
    assert "Today's Topics:" in digest and "1. testing #1 (Barry A. Warsaw)" in digest
    assert "unsupported file type" not in digest
    mails = [s for s in store.sources() if s.startswith(FILES["digest"] + "#")]
    assert len(mails) == 5  # message 2 has no Subject header
    subjects = {chunks(store, source)[0].metadata.get("subject") for source in mails}
    assert subjects >= {"[Ppp] testing #1", "[Ppp] testing #3", "[Ppp] testing #4", "[Ppp] testing #5"}


def test_an_epub_missing_a_listed_image_is_still_read() -> None:
    """Debian's debmake-doc 1.17-7 ships debmake-doc.en.epub whose manifest lists
    OEBPS/xslt/debian-openlogo.png, absent from the archive; e-book readers show the book, Orchard
    fails it whole (``corrupt epub file: KeyError``). Reproduced from the calibre guide by leaving
    out its cover image."""
    with zipfile.ZipFile(REAL / "calibre-quick-start.epub") as source:
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as copy:
            for entry in source.infolist():
                if entry.filename != "images/cover.jpg":
                    copy.writestr(entry, source.read(entry))
    sections = load_file(Path("guide.epub"), buffer.getvalue())
    assert "Task 1: Organizing" in [s.section for s in sections]
