"""Adding documents (sidebar and Library page) and managing the library."""

from __future__ import annotations

from tests.app.helpers import ask, button, texts

NOTE = b"# Cider pressing\n\nThe Hillside cider press runs on the second Saturday of October.\n"


def sidebar_uploader(at):
    return at.sidebar.file_uploader[0]


def test_upload_several_files_with_progress_and_per_file_errors(open_app, orchard) -> None:
    at = open_app()
    sidebar_uploader(at).set_value(
        [
            ("cider.md", NOTE, "text/markdown"),
            ("broken.pdf", b"%PDF-1.4 this is not really a pdf", "application/pdf"),
            ("photo.png", b"\x89PNG\r\n\x1a\n", "image/png"),
        ]
    ).run()
    button(at, "Add 3 files to the library").click().run()
    assert not at.exception
    shown = texts(at)
    assert "Added 1 file:" in shown
    assert "**broken.pdf** could not be added:" in shown
    assert "**photo.png** was skipped:" in shown
    assert (orchard.settings.data_dir / "uploads" / "cider.md").read_bytes() == NOTE
    assert {d["source"]: d["chunks"] for d in orchard.library.documents()}["uploads/cider.md"] >= 1
    assert not sidebar_uploader(at).value  # the uploader is cleared for the next files
    button(at, "Dismiss").click().run()
    assert "Added 1 file:" not in texts(at)


def test_an_unchanged_upload_is_not_embedded_again(open_app) -> None:
    at = open_app()
    for _ in range(2):
        sidebar_uploader(at).set_value([("cider.md", NOTE, "text/markdown")]).run()
        button(at, "Add 1 file to the library").click().run()
    assert "1 file(s) already in the library, unchanged." in texts(at)


def test_upload_then_an_answer_from_the_uploaded_file(open_app) -> None:
    at = open_app()
    sidebar_uploader(at).set_value([("cider.md", NOTE, "text/markdown")]).run()
    button(at, "Add 1 file to the library").click().run()
    at.segmented_control[0].set_value("rag").run()
    ask(at, "When does the cider press run?")
    assert "second Saturday of October" in at.chat_message[1].markdown[0].value
    assert at.expander[0].label.startswith("[1] uploads/cider.md")


def test_the_library_lists_documents_with_chunk_counts(open_app, library) -> None:
    at = open_app(page="library")
    assert at.header[0].value == "Library"
    assert [m.value for m in at.metric][:2] == ["4", str(library.library.count())]
    shown = texts(at)
    for doc in library.library.documents():
        assert f"**{doc['source'].rsplit('/', 1)[-1]}**" in shown
        plural = "s" if doc["chunks"] != 1 else ""
        assert f"{doc['chunks']} passage{plural}" in shown


def test_delete_a_document_after_confirming(open_app, library) -> None:
    at = open_app(page="library")
    target = library.library.documents()[0]["source"]
    at.button(key=f"delete_{target}").click().run()
    assert f"Delete **{target}** from the library" in texts(at)
    button(at, "Cancel").click().run()
    assert target in {d["source"] for d in library.library.documents()}
    at.button(key=f"delete_{target}").click().run()
    at.button(key=f"confirm_delete_{target}").click().run()
    assert not at.exception
    assert target not in {d["source"] for d in library.library.documents()}
    assert f"Deleted {target}" in next(t.value for t in at.toast)


def test_reindex_reads_the_uploaded_files_again(open_app, orchard) -> None:
    at = open_app(page="library")
    at.file_uploader[-1].set_value([("cider.md", NOTE, "text/markdown")]).run()
    button(at, "Add 1 file to the library").click().run()
    (orchard.settings.data_dir / "uploads" / "cider.md").write_bytes(NOTE + b"\nBring your own bottles.\n")
    button(at, "Re-index uploaded files").click().run()
    assert not at.exception
    assert "Added 1 file:" in texts(at)
    assert any("Bring your own bottles" in s["text"] for s in orchard.library.search("bottles", k=3))


def test_an_empty_library_says_how_to_add_documents(open_app) -> None:
    at = open_app(page="library")
    assert "No documents yet" in texts(at)
    chat = open_app()
    assert "Your library is empty" in texts(chat)
    chat.segmented_control[0].set_value("rag").run()
    ask(chat, "Anything?")
    assert "is empty" in chat.error[0].value and "Add documents" in chat.error[0].value
