"""Open zip-based documents (docx, pptx, xlsx, ods, odt, epub) only after checking their size.

A zip bomb is a small file whose entries inflate to gigabytes (200 MB of zeros deflates to
~200 KB). Before any parser touches the archive, :func:`open_checked_zip` reads the central
directory (the sizes each entry declares) and refuses the file when it holds too many entries,
inflates past ``MAX_UNCOMPRESSED_BYTES``, or inflates past ``RATIO_FLOOR_BYTES`` at a ratio over
``MAX_RATIO``. An entry cannot inflate past the size it declares: Python's ``zipfile`` (which
python-docx, python-pptx, openpyxl and ebooklib all read through) stops at the declared size and
fails the CRC check, so the declared sizes are a real bound.

Example::

    >>> archive = open_checked_zip(data, "docx")  # doctest: +SKIP
"""

from __future__ import annotations

import io
import zipfile

from orchard.loaders import LoadError

MAX_ENTRIES = 10_000  # a 300-page docx has ~30 entries, a big epub a few hundred
MAX_UNCOMPRESSED_BYTES = 500_000_000  # refused at any ratio
RATIO_FLOOR_BYTES = 50_000_000  # below this, any ratio is fine (XML compresses 10-20x, blank sheets far more)
MAX_RATIO = 100.0


def open_checked_zip(data: bytes, kind: str) -> zipfile.ZipFile:
    """The archive in ``data``, or ``LoadError`` when it is corrupt or inflates too far."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        entries = archive.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, OSError, EOFError) as exc:
        raise LoadError(f"corrupt {kind} file (not a readable zip archive: {exc})") from exc
    if len(entries) > MAX_ENTRIES:
        raise LoadError(f"{kind} file has {len(entries)} zip entries, over the limit of {MAX_ENTRIES} (refused as a zip bomb)")
    inflated = sum(max(e.file_size, 0) for e in entries)
    ratio = inflated / max(len(data), 1)
    if inflated > MAX_UNCOMPRESSED_BYTES or (inflated > RATIO_FLOOR_BYTES and ratio > MAX_RATIO):
        msg = (
            f"{kind} file inflates to {inflated / 1e6:.0f} MB from {len(data) / 1e6:.2f} MB ({ratio:.0f}x; limits: "
            f"{MAX_RATIO:g}x above {RATIO_FLOOR_BYTES / 1e6:g} MB, {MAX_UNCOMPRESSED_BYTES / 1e6:g} MB in all) — refused as a zip bomb"
        )
        raise LoadError(msg)
    if any(e.flag_bits & 0x1 for e in entries):
        raise LoadError(f"encrypted {kind} file: it needs a password (save an unencrypted copy to ingest it)")
    return archive


def read_entry(archive: zipfile.ZipFile, name: str, kind: str) -> bytes:
    """One entry's bytes; a missing or damaged entry is a ``LoadError``."""
    try:
        return archive.read(name)
    except KeyError as exc:
        raise LoadError(f"corrupt {kind} file: no {name} inside") from exc
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError) as exc:
        raise LoadError(f"corrupt {kind} file: {name}: {exc}") from exc
