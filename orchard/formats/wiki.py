"""Wikis: MediaWiki XML dumps and folders of Markdown notes with ``[[links]]`` (Obsidian and most wiki exports).

* A MediaWiki dump (``Special:Export`` / ``dumpBackup.php`` XML, any schema version) is read
  with lxml's streaming parser (entities not resolved, no network) and each page's latest
  revision becomes its own source ``dump.xml#Page title``; wikitext is rendered to text by
  mwparserfromhell (templates, references, comments, categories and file links dropped, links
  shown by their label, table cells kept apart) and its ``== headings ==`` become the section
  path. Redirects, talk pages and the User/File/MediaWiki/Template/Module namespaces are left out.
* A Markdown note: YAML front matter is taken off (its ``title`` names the note, else the first
  ``# heading``, else the file name), ``[[Target|label]]`` reads as ``label`` and the targets
  are kept, in order, as the metadata ``links`` (a list) of every chunk of the note, so a cited
  page can show what it links to. Notes without links or front matter read as plain Markdown.

The wiki's small sections are merged here with the chunker's own rule
(:func:`orchard.chunking._merge_small`) before ``links`` is attached: sections with ``extra`` are
never merged by the chunker.
"""

from __future__ import annotations

import io
import re

from orchard.loaders import _MARK, LoadError, Section, SkipFile, _split_marked, clean, load_markdown

# --- Markdown notes ------------------------------------------------------------------------------

_FRONT_MATTER = re.compile(r"\A---[ \t]*\r?\n(.*?)\r?\n(?:---|\.\.\.)[ \t]*(?:\r?\n|\Z)", re.DOTALL)
_WIKILINK = re.compile(r"(!?)\[\[([^\[\]\n|]+?)(?:\|([^\[\]\n]*?))?\]\]")
_MD_LINK = re.compile(r"(?<!!)\[[^\]\n]*\]\((?![a-z][a-z0-9+.-]*:)([^)\s#]+\.md)(?:#[^)\s]*)?\)", re.IGNORECASE)
_NON_NOTE = re.compile(r"\.(png|jpe?g|gif|svg|webp|pdf|mp3|mp4|webm|wav|excalidraw)$", re.IGNORECASE)


def _front_matter(text: str) -> tuple[dict, str]:
    match = _FRONT_MATTER.match(text)
    if not match:
        return {}, text
    import yaml

    try:
        meta = yaml.load(match.group(1), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # libyaml: ~10x faster
    except yaml.YAMLError:
        return {}, text  # not front matter after all: keep it as text
    return (meta if isinstance(meta, dict) else {}), text[match.end() :]


def _link_label(match: re.Match, links: list[str]) -> str:
    embed, target, label = match.group(1), match.group(2).strip(), match.group(3)
    page, _, heading = target.partition("#")
    page = page.strip()
    if _NON_NOTE.search(page):
        return "" if embed else (label or page)
    if page and page not in links:
        links.append(page.removesuffix(".md"))
    if label:
        return label.strip()
    return f"{page} > {heading.strip()}" if page and heading else (page or heading.strip())


def note_links(text: str) -> tuple[str, list[str]]:
    """``text`` with ``[[links]]`` shown by their label, and the link targets in order."""
    links: list[str] = []
    rendered = _WIKILINK.sub(lambda m: _link_label(m, links), text) if "[[" in text else text
    for match in _MD_LINK.finditer(rendered) if ".md" in rendered else ():
        target = match.group(1).rsplit("/", 1)[-1].removesuffix(".md").replace("%20", " ")
        if target not in links:
            links.append(target)
    return rendered, links


def load_wiki_markdown(text: str, fallback_title: str) -> list[Section]:
    """Markdown with front matter and ``[[links]]``; plain Markdown is read as before."""
    if not text.startswith("---") and "[[" not in text and ".md" not in text:  # measured: plain Markdown costs nothing more
        return load_markdown(text, fallback_title)
    meta, body = _front_matter(text)
    body, links = note_links(body)
    sections = load_markdown(body, fallback_title)
    title = meta.get("title")
    if isinstance(title, str) and title.strip():
        for section in sections:
            section.title = " ".join(title.split())
    return with_page_extra(sections, {"links": links} if links else {})


def with_page_extra(sections: list[Section], extra: dict) -> list[Section]:
    """Merge small sections as the chunker would, then give each the page-wide ``extra``."""
    if not extra:
        return sections
    from orchard.chunking import CHUNK_SIZE, _merge_small

    merged = _merge_small(sections, chunk_size=CHUNK_SIZE)
    for section in merged:
        section.extra = {**section.extra, **extra}
    return merged


# --- MediaWiki dumps -------------------------------------------------------------------------

SKIPPED_NAMESPACES = {2, 6, 8, 10, 828}  # User, File, MediaWiki, Template, Module (and all talk pages: odd)
_DROPPED_LINK_PREFIXES = ("category:", "file:", "image:", "media:")
_INVISIBLE_TAGS = {"ref", "references", "gallery", "math", "timeline", "score", "templatedata", "nowiki"}


def _render_wikitext(wikitext: str) -> tuple[str, list[str]]:
    """Wikitext -> text with heading marks, and the page's links (article titles, in order)."""
    import mwparserfromhell

    code = mwparserfromhell.parse(wikitext)
    links: list[str] = []
    for link in code.filter_wikilinks(recursive=True):
        target = " ".join(str(link.title).split("#", 1)[0].split())
        if target and not target.lower().startswith(_DROPPED_LINK_PREFIXES) and target[0] != ":" and target not in links:
            links.append(target[0].upper() + target[1:])
    for node in code.filter(recursive=True, forcetype=(mwparserfromhell.nodes.Template, mwparserfromhell.nodes.Comment)):
        _remove(code, node)
    for link in code.filter_wikilinks(recursive=True):
        if str(link.title).strip().lower().startswith(_DROPPED_LINK_PREFIXES):
            _remove(code, link)
    for tag in reversed(code.filter_tags(recursive=True)):
        name = str(tag.tag).lower()
        if name in _INVISIBLE_TAGS:
            _remove(code, tag)
        elif name in ("td", "th"):
            _replace(code, tag, f"{tag.contents.strip_code().strip()} | " if tag.contents else " | ")
        elif name == "tr":
            _replace(code, tag, f"\n{tag.contents}\n" if tag.contents else "\n")
    out: list[str] = []
    for section in code.get_sections(include_lead=True, flat=True):
        headings = section.filter_headings(recursive=False)
        if headings and section.index(headings[0]) == 0:
            heading = headings[0]
            out.append(f"\n{_MARK}{min(heading.level, 6)} {clean(heading.title.strip_code())}\n")
            section.remove(heading)
        out.append(section.strip_code(normalize=True, collapse=True))
    return "\n".join(out), links


def _remove(code, node) -> None:
    try:
        code.remove(node)
    except ValueError:  # already gone with a parent removed before it
        pass


def _replace(code, node, text: str) -> None:
    try:
        code.replace(node, text)
    except ValueError:
        pass


def load_mediawiki(data: bytes, fallback_title: str) -> list[Section]:
    """Every content page of a MediaWiki XML dump, each with ``part`` = its title."""
    from lxml import etree

    if b"<mediawiki" not in data[:4096]:
        raise SkipFile("XML that is not a MediaWiki dump (Orchard reads .xml files exported from MediaWiki)")
    sections: list[Section] = []
    try:
        for _event, page in etree.iterparse(
            io.BytesIO(data), events=("end",), tag="{*}page", resolve_entities=False, no_network=True, huge_tree=False
        ):
            sections.extend(_page_sections(page))
            page.clear()
    except etree.XMLSyntaxError as exc:
        if not sections:
            raise LoadError(f"corrupt MediaWiki dump: {exc}") from exc
        # a truncated dump: keep the pages read before the damage
    return sections


def _child(elem, name: str):
    return next((c for c in elem if isinstance(c.tag, str) and etree_local(c.tag) == name), None)


def etree_local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _page_sections(page) -> list[Section]:
    title_el, ns_el = _child(page, "title"), _child(page, "ns")
    title = " ".join((title_el.text or "").split()) if title_el is not None else ""
    ns = int(ns_el.text) if ns_el is not None and (ns_el.text or "").strip().lstrip("-").isdigit() else 0
    if not title or ns % 2 == 1 or ns in SKIPPED_NAMESPACES or _child(page, "redirect") is not None:
        return []
    revisions = [c for c in page if isinstance(c.tag, str) and etree_local(c.tag) == "revision"]
    text_el = _child(revisions[-1], "text") if revisions else None
    wikitext = (text_el.text or "") if text_el is not None else ""
    if not wikitext.strip() or wikitext.lstrip()[:9].upper() == "#REDIRECT":
        return []
    rendered, links = _render_wikitext(wikitext)
    sections = _split_marked(rendered, title)
    sections = with_page_extra(sections, {"links": links} if links else {})
    for section in sections:
        section.part = title
    return sections
