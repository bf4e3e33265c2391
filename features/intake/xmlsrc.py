"""XML exports: repeated record elements, each read as a JSON record is (``features.intake.jsonsrc``).

Declaration systems that keep messages in XML (an ICS2 or H7-style message store, a postal
operator's item messages, a clearance system's export) write one element per declaration under
the document's root, or deeper, with its goods items as repeated child elements. Each record
element becomes one record: a child with text is a field of that name; a child with children a
nested object (``Consignee.Id``); a tag repeated under one parent a list (the items, which a
mapping's ``explode: GoodsItem`` turns into rows, as for JSON); an attribute a field beside its
element's text (``<Value currency="EUR">12.5</Value>``: ``Value`` and ``Value.currency``). A
child with attributes is an object like a child with children, so the attributes of a repeated
one stay with their element: ``<Item HS=".." Value=".."/>`` twice is a list of two items.
Namespaces are dropped from names (``{urn:...}Declaration`` reads ``Declaration``).

Which elements are the records: ``records: Path.To.Record`` in the mapping (tags below the root,
dotted); without it, the root's children when they all share one tag.

Parsed with ``defusedxml``: a document type declaration, an entity or an external reference is
refused (an export has no need of them; a billion-laughs or an XXE file would otherwise expand
or fetch), naming the file.
"""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path
from typing import TYPE_CHECKING, Any

from features.intake.contract import ContractError
from features.intake.io import format_suffix, open_bytes
from features.intake.jsonsrc import ELEMENT_TEXT, SEPARATOR, records_frame

if TYPE_CHECKING:
    from xml.etree.ElementTree import Element

    import pandas as pd

XML_SUFFIXES = (".xml",)


def is_xml(path: Path) -> bool:
    """An XML export by its name (``.xml``, or one compressed: ``.xml.gz`` ...)."""
    return format_suffix(path) in XML_SUFFIXES


def read_xml_source(
    path: Path,
    *,
    records: str | None = None,
    explode: str | None = None,
    fields: Collection[str] = (),
    document_id: Collection[str] = (),
) -> pd.DataFrame:
    """The record elements of an XML export as a frame of text cells (module docstring). The
    encoding is the document's own (its declaration, else UTF-8). ``fields``: the names the
    mapping reads, one value per record each (a record holding several is refused);
    ``document_id``: the names that may hold the declaration id, by which a document sent
    twice is found (``features.intake.jsonsrc.records_frame``)."""
    try:
        rows = _stream_records(path, records)
    except ContractError as exc:
        if str(exc).startswith(str(path)):
            raise
        raise ContractError(f"{path}: {exc}") from exc
    # A tag repeated in one record is a list in every record: a declaration of one goods item
    # has one element where another has several, and its items must read alike (a column of
    # lists, or exploded rows), not as one item's fields beside the others' list. A list of
    # one value is read as that value (``records_frame``): a seller repeated in one record
    # does not turn every other record's seller into list text.
    listed = {name for row in rows for name, value in row.items() if isinstance(value, list)}
    if explode is not None:
        listed.add(explode)
    for row in rows:
        for name in listed & row.keys():
            if not isinstance(row[name], list):
                row[name] = [row[name]]
    return records_frame(path, rows, explode, fields, document_id)


# Bytes handed to the XML parser at a time: ElementTree's own 16 KB while the reads give it
# events, doubled (up to XML_FEED_MAX) after each read that gave none. The expat of Python 3.11
# (2.5) scans an unfinished token again from its start at every feed: one attribute or comment
# of 32 MB took 47 s fed 16 KB at a time, 100 MB minutes (probe 34; expat 2.6 defers the
# rescan, Python 3.11.7 does not offer it). Doubling, a long token is rescanned a few dozen
# times, about twice its length in all. Fed 4 MB at a time throughout, records came out half
# as fast (100,000 declarations: 14 s -> 29 s): a chunk's elements all wait for its events.
XML_FEED_BYTES = 16 * 1024
XML_FEED_MAX = 64 * 1024**2


class _GrowingReads:
    """A byte stream read for iterparse: ``XML_FEED_BYTES`` while the parser gives events
    (``events``, counted by the reader of them), twice the last read's after a read that
    gave none."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream
        self.events = 0
        self._events_then = -1
        self._size = XML_FEED_BYTES

    def read(self, size: int = -1) -> bytes:
        if size < 0:
            return self._stream.read()
        stuck = self.events == self._events_then  # inside one token since the last read
        self._size = min(2 * self._size, XML_FEED_MAX) if stuck else XML_FEED_BYTES
        self._events_then = self.events
        return self._stream.read(max(size, self._size))


def _stream_records(path: Path, records: str | None) -> list[dict[str, Any]]:
    """Each record element as a record, read as the parser goes: a record's elements are
    dropped once it is read, so the document is never held whole (100,000 declarations: 1.04
    GB at peak as a tree, ~0.6 GB streamed)."""
    from xml.etree.ElementTree import ParseError

    from defusedxml import DefusedXmlException
    from defusedxml.ElementTree import iterparse

    wanted = records.split(SEPARATOR) if records is not None else None
    rows: list[dict[str, Any]] = []
    tags: list[str] = []  # the open elements' names, the root's first
    open_elements: list[Element] = []
    below_root: set[str] = set()  # the names of the root's children, for messages
    root = "the root"
    try:
        with open_bytes(path) as fh:
            reads = _GrowingReads(fh)
            for event, element in iterparse(reads, events=("start", "end"), forbid_dtd=True):
                reads.events += 1
                if event == "start":
                    tags.append(_tag(element))
                    open_elements.append(element)
                    if len(tags) == 1:
                        root = f"<{tags[0]}>"
                    continue
                if len(tags) == 2:
                    below_root.add(tags[1])
                    if wanted is None and len(below_root) > 1:
                        _ambiguous(tags[0], below_root)
                if len(tags) == 1 and wanted == tags:
                    # `records:` names the root: the file is one declaration (ASYCUDA World
                    # and per-message stores write one file per document; a series of them
                    # was refused, probe 5f)
                    rows.append(_record(element))
                elif (tags[1:] == wanted) if wanted is not None else len(tags) == 2:
                    rows.append(_record(element))
                    element.clear()
                    parent = open_elements[-2]
                    if len(parent) and parent[-1] is element:
                        del parent[-1]  # the record just read: its parent forgets it too
                tags.pop()
                open_elements.pop()
    except DefusedXmlException as exc:
        raise ContractError(
            f"{path}: refused: the XML declares a document type, entities or external "
            f"references ({type(exc).__name__}); an export needs none of them"
        ) from exc
    except ParseError as exc:
        if not open_elements and not rows and not below_root and "no element found" in str(exc):
            raise ContractError(f"{path}: the file holds no XML") from exc
        raise ContractError(f"{path}: not well-formed XML: {exc}") from exc
    if wanted is not None and not rows:
        raise ContractError(
            f"{path}: records: {records}: no such elements below {root} (tags below it: "
            f"{', '.join(sorted(below_root)[:8]) or 'none'})"
        )
    if wanted is None and not rows:
        raise ContractError(
            f"{path}: which elements are the declarations? {root} holds no elements: name "
            "them in the mapping (records: Path.To.Record)"
        )
    return rows


def _ambiguous(root: str, tags: set[str]) -> None:
    shown = sorted(tags)
    raise ContractError(
        f"which elements are the declarations? <{root}> holds {', '.join(shown[:8])}: name "
        f"them in the mapping (records: {shown[0]}), or, if the file is one declaration, "
        f"the root (records: {root})"
    )


def _tag(element: Element) -> str:
    """The element's name without its namespace."""
    tag = element.tag
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else str(tag)


# How deep a record's elements may nest: real messages nest a few levels; a file nested
# thousands deep is refused by name, not by a recursion error.
MAX_DEPTH = 64


def _record(element: Element, depth: int = 0) -> dict[str, Any]:
    """One record element as a JSON-like object (module docstring): its attributes, then its
    children; a child with attributes or children an object of its own (a leaf's text in it
    under ``ELEMENT_TEXT``, read as the element's own name)."""
    if depth > MAX_DEPTH:
        raise ContractError(
            f"elements nested more than {MAX_DEPTH} levels inside a record (<{_tag(element)}>): "
            "not a declaration export"
        )
    out: dict[str, Any] = {_tag_name(a): text for a, text in element.attrib.items()}
    for child in element:
        name = _tag(child)
        if len(child):
            value: Any = _record(child, depth + 1)
        elif child.attrib:
            # an object, not fields written beside the element in its parent: an item written
            # as attributes (<Item HS=".." Value=".."/>) repeated overwrote the item before it
            text = (child.text or "").strip() or None
            value = {ELEMENT_TEXT: text} if text is not None else {}
            value.update((_tag_name(a), t) for a, t in child.attrib.items())
        else:
            value = (child.text or "").strip() or None
        if name in out:  # a repeated tag: a list (goods items)
            previous = out[name]
            out[name] = [*previous, value] if isinstance(previous, list) else [previous, value]
        else:
            out[name] = value
    return out


def _tag_name(attribute: str) -> str:
    return attribute.rsplit("}", 1)[-1]
