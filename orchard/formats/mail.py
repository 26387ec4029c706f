"""Mail: one message (eml) or a mailbox (mbox), with attachments ingested as their own sources.

A message becomes one section titled by its subject, ``section`` ``From <sender>, <date>``, and
``extra`` ``subject``/``from``/``date`` (ISO 8601 when the date parses). The body is the text
part, else the HTML part as text. Each attachment of a supported type is read by
:func:`orchard.loaders.load_file` (so zip and PDF checks apply) and returned with
``Section.part`` set, which ingestion stores as its own source::

    mail.eml                  the message           mail.eml#report.pdf     its attachment
    box.mbox#3                the 3rd message       box.mbox#3/report.pdf   its attachment

The message's text lists its attachments, with the reason when one is not indexed.
"""

from __future__ import annotations

import email
import re
from email import policy
from email.message import EmailMessage
from email.utils import parsedate_to_datetime
from pathlib import Path

from orchard.loaders import LoadError, Section, SkipFile, clean

MAX_NESTING = 3  # a mail attached to a mail attached to a mail ...
_FROM_LINE = re.compile(rb"^From [^\n]*\n", re.MULTILINE)
_ESCAPED_FROM = re.compile(rb"^>(>*From )", re.MULTILINE)
_UNSAFE_NAME = re.compile(r"[\x00-\x1f\x7f/\\#]+")
_depth = 0


def _header(msg: EmailMessage, name: str) -> str:
    try:
        value = msg.get(name)
    except Exception:  # a malformed header the parser chokes on when it is read
        value = msg.get_all(name, failobj=[""])[0] if hasattr(msg, "get_all") else ""
    return " ".join(str(value or "").split())


def _iso_date(raw: str) -> str:
    try:
        return parsedate_to_datetime(raw).isoformat(timespec="minutes")
    except (TypeError, ValueError, IndexError):
        return raw


def _body_text(msg: EmailMessage) -> str:
    try:
        body = msg.get_body(preferencelist=("plain", "html"))
        if body is None:
            return ""
    except (KeyError, LookupError, ValueError, AttributeError, UnicodeError):
        payload = msg.get_payload(decode=True) if not msg.is_multipart() else b""
        return clean((payload or b"").decode("utf-8", "replace"))
    return _part_text(body)


def _part_text(part: EmailMessage) -> str:
    """The text of a text/plain or text/html part."""
    from orchard.loaders import load_html

    try:
        content = part.get_content()
    except (KeyError, LookupError, ValueError, AttributeError, UnicodeError):
        content = (part.get_payload(decode=True) or b"").decode("utf-8", "replace")
    if not isinstance(content, str):
        return ""
    if part.get_content_subtype() == "html":
        return "\n\n".join(s.text for s in load_html(content, ""))
    return clean(content)


def _inline_and_attached(msg: EmailMessage) -> tuple[list[EmailMessage], list[EmailMessage]]:
    """The parts besides the body: unnamed inline text parts (a digest's table of contents, a
    list's footer), which belong to the message's text, and the attachments, with multipart
    containers opened (a MIME digest's mails are attached mails; of a multipart/alternative only
    its preferred text is kept)."""
    inline: list[EmailMessage] = []
    attached: list[EmailMessage] = []

    def visit(parts) -> None:
        for part in parts:
            if part.get_content_maintype() == "multipart":
                if part.get_content_subtype() == "alternative":
                    preferred = part.get_body(preferencelist=("plain", "html"))
                    visit([preferred] if preferred is not None else [])
                else:
                    visit(part.iter_parts())
            elif part.get_content_maintype() == "text" and not part.get_filename() and part.get_content_disposition() != "attachment":
                inline.append(part)
            else:
                attached.append(part)

    visit(msg.iter_attachments())
    return inline, attached


def _attachment_name(part: EmailMessage, index: int, taken: set[str]) -> str:
    name = _UNSAFE_NAME.sub("_", (part.get_filename() or "").strip()).strip(" ._") or f"attachment-{index}"
    if part.get_content_type() == "message/rfc822" and not name.lower().endswith(".eml"):
        name += ".eml"
    unique, n = name, 2
    while unique in taken:
        stem, dot, suffix = name.rpartition(".")
        unique = f"{stem} ({n}).{suffix}" if dot else f"{name} ({n})"
        n += 1
    taken.add(unique)
    return unique


def _attachment_bytes(part: EmailMessage) -> bytes:
    if part.get_content_type() == "message/rfc822":
        inner = part.get_payload()
        inner = inner[0] if isinstance(inner, list) and inner else inner
        return inner.as_bytes(policy=policy.default) if isinstance(inner, email.message.Message) else b""
    return part.get_payload(decode=True) or b""


def message_sections(msg: EmailMessage, fallback_title: str, part: str = "") -> list[Section]:
    """The message's section, then its attachments' sections (``part`` below ``part``)."""
    from orchard.loaders import load_file

    global _depth
    subject = _header(msg, "subject") or fallback_title or "(no subject)"
    sender = _header(msg, "from")
    date = _iso_date(_header(msg, "date")) if _header(msg, "date") else ""
    extra = {k: v for k, v in (("subject", subject), ("from", sender), ("date", date)) if v}
    notes: list[str] = []
    attached: list[Section] = []
    taken: set[str] = set()
    inline, attachments = _inline_and_attached(msg)
    for index, attachment in enumerate(attachments, start=1):
        name = _attachment_name(attachment, index, taken)
        where = f"{part}/{name}" if part else name
        if _depth >= MAX_NESTING:
            notes.append(f"{name} (not indexed: attached mails nested over {MAX_NESTING} deep)")
            continue
        _depth += 1
        try:
            found = load_file(Path(name), _attachment_bytes(attachment))
        except (LoadError, SkipFile) as exc:
            notes.append(f"{name} (not indexed: {exc})")
            continue
        except Exception as exc:  # a broken attachment must not lose the message
            notes.append(f"{name} (not indexed: {type(exc).__name__})")
            continue
        finally:
            _depth -= 1
        notes.append(name)
        for section in found:
            section.part = f"{where}/{section.part}" if section.part else where
        attached.extend(found)
    body = "\n\n".join(t for t in (_body_text(msg), *map(_part_text, inline)) if t)
    if notes:
        body = f"{body}\n\nAttachments: {'; '.join(notes)}".strip()
    heading = ", ".join(x for x in (f"From {sender}" if sender else "", date) if x)
    own = [Section(text=body or subject, title=subject, section=heading, extra=extra, part=part)]
    return own + attached


def _parse(raw: bytes) -> EmailMessage:
    msg = email.message_from_bytes(raw, policy=policy.default)
    if not any(msg.get(h) is not None for h in ("from", "subject", "date", "message-id", "to")):
        raise LoadError("not an e-mail message (no From, To, Subject, Date or Message-ID header)")
    return msg


def load_eml(data: bytes, fallback_title: str) -> list[Section]:
    return message_sections(_parse(data), fallback_title)


def split_mbox(data: bytes) -> list[bytes]:
    """The messages of an mbox (``From `` lines start them; ``>From `` in bodies is unescaped)."""
    data = data.lstrip(b"\r\n")
    starts = [m.start() for m in _FROM_LINE.finditer(data)]
    if not starts or starts[0] != 0:
        raise LoadError("not an mbox file (it must start with a 'From ' line)")
    ends = [*starts[1:], len(data)]
    messages = []
    for start, end in zip(starts, ends, strict=True):
        chunk = data[start:end]
        chunk = chunk[chunk.index(b"\n") + 1 :]
        messages.append(_ESCAPED_FROM.sub(rb"\1", chunk))
    return messages


def load_mbox(data: bytes, fallback_title: str) -> list[Section]:
    sections: list[Section] = []
    for number, raw in enumerate(split_mbox(data), start=1):
        if not raw.strip():
            continue
        try:
            msg = _parse(raw)
        except LoadError:
            continue  # one garbled message must not lose the mailbox
        sections.extend(message_sections(msg, f"message {number}", part=str(number)))
    if not sections:
        raise SkipFile("no messages found")
    return sections
