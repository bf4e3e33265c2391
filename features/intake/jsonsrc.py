"""JSON exports: an array of declaration records, one record per line (NDJSON), or records
under a key of one document; nested objects flattened to dotted column names.

Declaration systems that speak JSON (an H7 or ICS2-style message store, a platform's API dump)
nest the goods items of a declaration in an array. The mapping names it (``explode:
GoodsItems``): each item becomes a row holding its declaration's fields too, its own under
``GoodsItems.<name>``, and the mapping's ``items:`` block collapses them back to one row per
declaration (``features.intake.items``).

Cells are read as text, as a CSV's are, so one mapping's rules (decimal marks, code tables,
formats) read them alike: ``true``/``false`` for booleans, numbers as JSON writes them, null
as no value. An array of one value reads as that value (an XML tag repeated in some records is
a list in every record); an empty one as no value. An array of several values, or of objects
(other than the one exploded), is kept as its JSON text for the draft to show, and a field the
mapping reads from it (``fields``) is refused naming the record: a scalar read from list text
(``'["S3"]'``) would never meet the same id written plainly, and one item's field read from a
record of several would drop the others.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Collection, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from features.intake.contract import ContractError
from features.intake.io import format_suffix, open_bytes

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

logger = logging.getLogger(__name__)

JSON_SUFFIXES = (".json", ".jsonl", ".ndjson")
SEPARATOR = "."
# distinct field names the records may hold (``_flat_frame``)
MAX_FIELDS = 2_000
# The key under which the XML reader puts the text of an element that has attributes: the
# object is flattened with that text under the element's own name (``Value`` beside
# ``Value.currency``). No JSON key or XML name holds a NUL.
ELEMENT_TEXT = "\x00text"


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object, refused when it gives a key twice: every parser keeps the last value
    unsaid, and which one the export meant cannot be told (probe 34: "VALEUR" twice read as
    2014.00, not 20,14; a declaration id twice as the second). XML's element given twice in a
    record, and a mapping's key, are refused alike."""
    record = dict(pairs)
    if len(record) != len(pairs):
        seen: set[str] = set()
        twice = next(key for key, _ in pairs if key in seen or seen.add(key))  # type: ignore[func-returns-value]
        raise ValueError(
            f"the key {twice!r} is given twice in one object (which value holds cannot be told)"
        )
    return record


# An escaped UTF-16 surrogate without its pair (``"\ud800"``): valid JSON syntax, no character
# (Arrow refused to write it, with a traceback: probe 34)
_LONE_SURROGATE = re.compile(
    r"\\u[dD][89abAB][0-9a-fA-F]{2}(?!\\u[dD][c-fC-F][0-9a-fA-F]{2})"
    r"|(?<!\\u[dD][89abAB][0-9a-fA-F]{2})\\u[dD][c-fC-F][0-9a-fA-F]{2}"
)


def _refuse_lone_surrogates(text: str) -> None:
    """ValueError naming an escaped surrogate ``text`` holds without its pair (and its line,
    in a text of several)."""
    if "\\u" not in text:
        return
    found = _LONE_SURROGATE.search(text)
    if found is not None:
        line = text.count("\n", 0, found.start()) + 1
        where = f" on line {line}" if "\n" in text.strip() else ""
        raise ValueError(
            f"{found.group()}{where} is half of a UTF-16 surrogate pair, no character (a text "
            "cut inside an emoji or a character beyond U+FFFF?)"
        )


# The standard library's parser (C): it keeps every digit of an integer (orjson read one
# beyond 64 bits as a float), and it hands each object to ``_object`` (orjson has no hook).
_DECODER = json.JSONDecoder(parse_constant=_no_constant, object_pairs_hook=_object)


def _loads(text: str) -> Any:
    """One JSON document. Raises ValueError (``json.JSONDecodeError``) when it is not JSON, gives
    a key twice in an object, holds half a surrogate pair or nests beyond Python's limit."""
    _refuse_lone_surrogates(text)
    try:
        return _DECODER.decode(text)
    except RecursionError:
        raise ValueError(
            "nested deeper than about 1,000 levels: no declaration export is"
        ) from None


def is_json(path: Path) -> bool:
    """A JSON export by its name (``.json``, ``.jsonl``, ``.ndjson``, or one compressed)."""
    return format_suffix(path) in JSON_SUFFIXES


def read_json_source(
    path: Path,
    *,
    encoding: str = "utf-8",
    records: str | None = None,
    explode: str | None = None,
    fields: Collection[str] = (),
    document_id: Collection[str] = (),
    numbers: Collection[str] = (),
) -> pd.DataFrame:
    """The records of a JSON export as a frame of text cells (module docstring); ``fields``:
    the names the mapping reads, one value per record each; ``document_id``: the names that
    may hold the declaration id (``records_frame``); ``numbers``: names whose cells, where JSON
    wrote them all as integers, are kept as numbers (``_as_text``)."""
    if _lines_by_name(path) and records is None and _line_by_line(encoding):
        return records_frame(
            path, _streamed_lines(path, encoding), explode, fields, document_id, numbers
        )
    with open_bytes(path) as fh:
        data = fh.read()
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as exc:
        raise _not_in_encoding(path, encoding, f"byte {exc.start}") from exc
    del data  # the text holds it now: a big export is not held twice
    rows = _records(path, text.lstrip("\ufeff"), records, _lines_by_name(path))
    del text
    return records_frame(path, rows, explode, fields, document_id, numbers)


def _not_in_encoding(path: Path, encoding: str, where: str) -> ContractError:
    return ContractError(
        f"{path}: {where} is not {encoding}; JSON is UTF-8 unless the mapping gives another "
        "encoding"
    )


def _line_by_line(encoding: str) -> bool:
    """Whether the encoding's lines end in the byte ``\\n`` (not UTF-16 or UTF-32)."""
    import codecs

    try:
        name = codecs.lookup(encoding).name
    except LookupError:
        return False  # an unknown encoding: refused by the whole-file path, by name
    return not name.startswith(("utf-16", "utf-32"))


def _streamed_lines(path: Path, encoding: str) -> Iterator[Any]:
    """The records of an NDJSON file, parsed a line at a time as the file is read: the file's
    bytes and text are never held whole (only the records)."""

    with open_bytes(path) as fh:
        for number, raw in enumerate(fh, start=1):
            try:
                line = raw.decode(encoding)
            except UnicodeDecodeError as exc:
                raise _not_in_encoding(path, encoding, f"line {number}, byte {exc.start}") from exc
            if number == 1:
                line = line.lstrip("\ufeff")
            if line.strip():
                try:
                    yield _loads(line)
                except ValueError as exc:
                    raise ContractError(f"{path}: line {number} is not valid JSON: {exc}") from exc


def _lines_by_name(path: Path) -> bool:
    """Whether the name says one record per line (.jsonl, .ndjson, compressed or not)."""
    return format_suffix(path) in (".jsonl", ".ndjson")


def _records(path: Path, text: str, key: str | None, lines: bool) -> Iterable[Any]:
    """The records: one per line for a .jsonl/.ndjson name (or a .json file holding several
    documents, one per line); else the document, or its array under ``key``."""

    body = text.lstrip()
    if not body:
        raise ContractError(f"{path}: the file holds no JSON")
    if not lines and key is None and body[0] == "{" and _several_documents(body):
        lines = True
    if not lines and (key is not None or body[0] == "["):
        return _array_items(path, body, key)
    if not lines:
        document = _whole(path, body)
        if isinstance(document, dict):
            arrays = [k for k, v in document.items() if isinstance(v, list)]
            raise ContractError(
                f"{path}: one JSON object, not an array of records: name the key holding them "
                f"(records: {arrays[0] if arrays else 'KEY'} in the mapping)"
            )
        if not isinstance(document, list):
            raise ContractError(f"{path}: records: {key} is not an array of records")
        return document
    # one record per line
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            try:
                rows.append(_loads(line))
            except ValueError as exc:
                raise ContractError(f"{path}: line {number} is not valid JSON: {exc}") from exc
    return rows


def _whole(path: Path, body: str) -> Any:

    try:
        return _loads(body)
    except ValueError as exc:
        raise ContractError(f"{path}: not valid JSON: {exc}") from exc


# JSON's whitespace (RFC 8259): what may stand between an array's values
_WHITESPACE = re.compile(r"[ \t\n\r]*")


def _array_items(path: Path, body: str, key: str | None = None) -> Iterator[Any]:
    """The records of a document that is one array, or of the array under ``key`` (a dotted
    path) of a document that is an object, parsed one at a time as they are converted
    (``records_frame`` takes them a chunk at a time): an API dump of a million declarations
    is never held as a million objects at once, only as its text. The rest of the document is
    parsed past, checked and not kept.

    The standard library's scanner (C) reads each value where it starts, as ``_loads`` reads
    a document: NaN and Infinity, which JSON does not have, a key given twice in an object and
    half a surrogate pair are refused, and so is a document nested beyond Python's limit."""
    scan = _Scanner(path, body)
    try:
        levels = scan.descend(key.split(SEPARATOR)) if key is not None else 0
        if not scan.next_is("["):
            raise ContractError(f"{path}: records: {key} is not an array of records")
        yield from scan.array_values()
        for _ in range(levels):  # the rest of each object the array was in
            for _ in scan.members(started=True):
                scan.value()
        scan.end()
    except RecursionError:
        raise scan.fault(
            "nested deeper than about 1,000 levels: no declaration export is"
        ) from None


class _Scanner:
    """A position in a JSON text, read forward a value at a time (``_array_items``)."""

    def __init__(self, path: Path, body: str) -> None:
        try:
            _refuse_lone_surrogates(body)
        except ValueError as exc:
            raise ContractError(f"{path}: not valid JSON: {exc}") from exc
        self.path, self.body, self.at = path, body, 0
        self.decoder = _DECODER
        self.skip()

    def skip(self) -> None:
        self.at = _WHITESPACE.match(self.body, self.at).end()

    def next_is(self, char: str) -> bool:
        return self.body.startswith(char, self.at)

    def fault(self, what: str) -> ContractError:
        line = self.body.count("\n", 0, self.at) + 1
        return ContractError(f"{self.path}: not valid JSON: {what} (line {line})")

    def expect(self, char: str, what: str) -> None:
        if not self.next_is(char):
            raise self.fault(what)
        self.at += 1
        self.skip()

    def value(self) -> Any:
        try:
            value, self.at = self.decoder.raw_decode(self.body, self.at)
        except (json.JSONDecodeError, ValueError) as exc:
            raise self.fault(str(exc)) from exc
        self.skip()
        return value

    def array_values(self) -> Iterator[Any]:
        """The values of the array whose ``[`` is next, read one at a time, up to its ``]``."""
        self.expect("[", "an array expected")
        if self.next_is("]"):
            self.expect("]", "")
            return
        while True:
            yield self.value()
            if self.next_is(","):
                self.expect(",", "")
            else:
                self.expect("]", "',' or ']' expected after a value of the array")
                return

    def members(self, started: bool = False) -> Iterator[str]:
        """The names of the members of the object being read, each followed by reading its
        value (the caller's ``value()``), up to its closing brace. ``started``: a member of
        it was read already."""
        first = not started
        while not self.next_is("}"):
            if not first:
                self.expect(",", "',' or '}' expected after a member of an object")
            first = False
            name = self.value()
            if not isinstance(name, str):
                raise self.fault("a member's name expected")
            self.expect(":", "':' expected after a member's name")
            yield name
        self.expect("}", "'}' expected")

    def descend(self, parts: list[str]) -> int:
        """Move to the value under ``parts`` (a key path), the other members before it parsed
        past; the number of objects entered."""
        for part in parts:
            if not self.next_is("{"):
                raise ContractError(
                    f"{self.path}: records: {SEPARATOR.join(parts)}: no such key in the document"
                )
            self.expect("{", "")
            for name in self.members():
                if name == part:
                    break
                self.value()
            else:  # the object closed without it
                raise ContractError(
                    f"{self.path}: records: {SEPARATOR.join(parts)}: no such key in the document"
                )
        return len(parts)

    def end(self) -> None:
        if self.at < len(self.body):
            raise self.fault("more after the document's end")


def _several_documents(body: str) -> bool:
    """Whether the text is NDJSON that happens to start with ``{``: a first line that is a
    whole JSON value followed by more lines."""

    first, _, rest = body.partition("\n")
    if not rest.strip():
        return False
    try:
        _loads(first)
    except ValueError:
        return False
    return True


def _at(path: Path, document: Any, key: str) -> Any:
    value = document
    for part in key.split(SEPARATOR):
        if not isinstance(value, dict) or part not in value:
            raise ContractError(f"{path}: records: {key}: no such key in the document")
        value = value[part]
    return value


# Records are turned into text cells this many at a time, each chunk's objects released once
# converted: the records, their flattened copies and two frames of them are never all held at
# once (100,000 NDJSON declarations of 30 fields: 0.88 GB at peak whole).
CHUNK_RECORDS = 20_000


def records_frame(
    path: Path,
    rows: Iterable[Any],
    explode: str | None,
    fields: Collection[str] = (),
    document_id: Collection[str] = (),
    numbers: Collection[str] = (),
) -> pd.DataFrame:
    """Records (objects) as a frame of text cells, nested objects flattened, ``explode``'s
    items one row each (module docstring); also the XML reader's (``features.intake.xmlsrc``).
    A record holding several values for one of ``fields`` (or an array of objects there) is
    refused, naming the record and the field. With ``explode``, records naming one
    declaration (by the ``document_id`` names the frame has) are one document sent again:
    read once when ``fields`` are the same, else refused (``_drop_resent_documents``).

    ``rows`` is consumed: a list is emptied as its records are converted (their memory goes
    back), an iterator read to its end."""
    import pandas as pd

    # every chunk's fields in order of appearance (True: an item's), for MAX_FIELDS and order
    names: dict[str, bool] = {}
    wanted, kept = frozenset(fields), frozenset(numbers)
    frames, record_numbers, done = [], [], 0
    for chunk in _chunks(rows):
        frame, owners = _chunk_frame(path, chunk, explode, done, names, wanted, kept)
        frames.append(frame)
        record_numbers.append(owners)
        done += len(chunk)
    if not frames:  # no records at all: a frame of no rows, as for any empty export
        return _chunk_frame(path, [], explode, 0, names, wanted, kept)[0]
    if len(frames) == 1:
        whole = frames[0]
    else:
        # chunks holding other fields: the union, the declaration's fields before its items'
        # as in one chunk; cells of a field a chunk lacks are empty
        order = [n for n, item in names.items() if not item]
        order += [n for n, item in names.items() if item]
        whole = pd.concat(frames, ignore_index=True, sort=False)[order]
        # a column of integers in every chunk stays one (``numbers``); the rest is text
        whole = whole.astype({n: "object" for n in order if whole[n].dtype != "Int64"})
    if explode is None:
        return whole
    import numpy as np

    return _drop_resent_documents(path, whole, np.concatenate(record_numbers), document_id, wanted)


def _drop_resent_documents(
    path: Path,
    frame: pd.DataFrame,
    records: np.ndarray,
    document_id: Collection[str],
    fields: frozenset[str],
) -> pd.DataFrame:
    """``frame`` (item rows; ``records``: each row's record number) with the rows of a record
    that repeats an earlier record of the same declaration id in every field of ``fields``
    left out, said in a warning; two records of one id that differ in one are refused.

    A message store or an API dump holds a declaration's document again when it was sent
    again (a retransmission, its envelope's message id the only change). Its item rows differ
    from the first copy's in that unmapped cell, so they were taken as more items and summed
    into the declaration: value and weight doubled, unsaid. Two records are two documents; of
    two that differ, which one holds is not known (as for a declaration two files of a series
    give other values)."""
    import numpy as np
    import pandas as pd

    keys = [c for c in document_id if c in frame.columns]
    if not keys or frame.empty:
        return frame
    key = frame[keys].astype("object")
    ident = key.iloc[:, 0] if len(keys) == 1 else key.agg(tuple, axis=1)
    codes, written = pd.factorize(ident, sort=False)
    if len(keys) == 1:  # an id written with spaces is the same id (stripped once per id)
        same, uniques = pd.factorize(pd.Index(written, dtype="object").str.strip(), sort=False)
        codes = np.where(codes >= 0, same[codes], -1)
    else:
        uniques = written
    known = codes >= 0  # rows without an id: left to the mapping's refusal
    # rows are in record order: a row of a record after its id's first record is a copy's
    first_record = np.full(len(uniques), np.iinfo(np.int64).max)
    np.minimum.at(first_record, codes[known], records[known])
    in_copy = np.zeros(len(frame), dtype=bool)
    in_copy[known] = records[known] != first_record[codes[known]]
    if not in_copy.any():
        return frame
    sent_again = np.isin(codes, np.unique(codes[in_copy]))
    again = pd.DataFrame({"id": codes[sent_again], "record": records[sent_again]})
    again = again.drop_duplicates()
    compared = [c for c in frame.columns if c in fields and c not in keys]  # ids: equal
    cells = frame.loc[sent_again, compared].astype("object")
    cells = cells.where(cells.notna(), None)
    by_record = {
        number: [tuple(row) for row in rows.itertuples(index=False)]
        for number, rows in cells.groupby(records[sent_again], sort=False)
    }
    dropped: list[int] = []
    resent: list[str] = []
    for code, group in again.groupby("id", sort=False):
        ident_value = uniques[code]
        kept, *copies = group["record"].tolist()
        for number in copies:
            if by_record[number] == by_record[kept]:
                dropped.append(number)
                continue
            raise ContractError(
                f"{path}: declaration {_shown(ident_value)} is in records {kept} and {number} "
                f"with other {_differing(by_record[kept], by_record[number], compared)}: two "
                "documents of one declaration, and which one holds is not known; give the "
                "export with the declaration once (its latest document)"
            )
        resent.append(f"{_shown(ident_value)} (records {kept}, {', '.join(map(str, copies))})")
    logger.warning(
        "%s: %d declaration(s) sent again in later records the same in every field the mapping "
        "reads: %s%s; read once (their items added again would count value and weight twice)",
        path,
        len(resent),
        "; ".join(resent[:5]),
        ", ..." if len(resent) > 5 else "",
    )
    return frame.loc[~np.isin(records, dropped)].reset_index(drop=True)


def _shown(ident: Any) -> str:
    return " + ".join(ident) if isinstance(ident, tuple) else str(ident)


def _differing(first: list[tuple], other: list[tuple], compared: list[str]) -> str:
    """What differs between two copies of a record's item rows, for a message."""
    if len(first) != len(other):
        return f"items ({len(first)} and {len(other)})"
    names = [
        name
        for position, name in enumerate(compared)
        if any(a[position] != b[position] for a, b in zip(first, other, strict=True))
    ]
    return "values of " + ", ".join(names[:4])


def _chunks(rows: Iterable[Any]) -> Iterator[list[Any]]:
    if isinstance(rows, list):
        while rows:
            chunk = rows[:CHUNK_RECORDS]
            del rows[:CHUNK_RECORDS]
            yield chunk
        return
    chunk = []
    for row in rows:
        chunk.append(row)
        if len(chunk) == CHUNK_RECORDS:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _chunk_frame(
    path: Path,
    rows: list[Any],
    explode: str | None,
    first: int,
    names: dict[str, bool],
    fields: frozenset[str],
    kept: frozenset[str] = frozenset(),
) -> tuple[pd.DataFrame, np.ndarray]:
    """``records_frame`` of the records numbered from ``first`` (0-based) on, and each row's
    record number (1-based)."""
    import numpy as np
    import pandas as pd

    bad = next((i for i, r in enumerate(rows) if not isinstance(r, dict)), None)
    if bad is not None:
        raise ContractError(f"{path}: record {first + bad + 1} is not a JSON object")
    if explode is None:
        numbers = range(first + 1, first + len(rows) + 1)
        frame = _flat_frame(path, rows, names, numbers, fields)
        return _as_text(frame, kept), np.asarray(numbers)
    parents, items, owner = [], [], []
    for number, row in enumerate(rows, start=first + 1):
        nested = row.get(explode)
        if isinstance(nested, dict):
            # one item written as the object itself, not an array of one: what converters of
            # XML messages (xmltodict-style) write, and how the XML reader takes one item
            nested = [nested] if nested else None
        if nested is not None and not isinstance(nested, list):
            raise ContractError(
                f"{path}: record {number}: explode: {explode} is not an array of items"
            )
        parents.append({k: v for k, v in row.items() if k != explode})
        for item in nested or [{}]:  # a declaration without items is still one row
            if not isinstance(item, dict):
                raise ContractError(
                    f"{path}: record {number}: an item of {explode} is not a JSON object"
                )
            items.append(item)
            owner.append(number - first - 1)
    head = _flat_frame(path, parents, names, range(first + 1, first + len(rows) + 1), fields)
    owners = np.asarray(owner, dtype=np.int64)
    lines = _flat_frame(path, items, names, owners + first + 1, fields, prefix=explode + SEPARATOR)
    frame = pd.concat([head.iloc[owners].reset_index(drop=True), lines], axis=1)
    return _as_text(frame, kept), owners + first + 1


def _flat_frame(
    path: Path,
    rows: list[dict],
    seen: dict[str, bool],
    numbers: Iterable[int],
    fields: frozenset[str],
    prefix: str = "",
) -> pd.DataFrame:
    """The records with nested objects flattened to dotted names, one column per name
    (``prefix`` before each); ``seen`` gathers the names of every chunk. ``numbers``: each
    row's record number (1-based), for refusing a record that holds several values for one
    of ``fields`` (``_refuse_several``).

    Refused past ``MAX_FIELDS`` distinct names: records whose keys differ (ids or dates used as
    keys, or a hostile file) would make a frame of rows x names cells, gigabytes from a file
    of megabytes, where an export has a few dozen fields."""
    import pandas as pd

    names: dict[str, None] = {}
    flat = []
    for row, number in zip(rows, numbers, strict=True):
        out: dict[str, Any] = {}
        several: dict[str, int] = {}
        _flatten(row, prefix, out, several)
        if several and fields:
            _refuse_several(path, number, out, several, fields)
        for name in out:
            if name not in names:
                names[name] = None
                if name not in seen:
                    seen[name] = bool(prefix)
                    if len(seen) > MAX_FIELDS:
                        raise ContractError(
                            f"{path}: the records hold more than {MAX_FIELDS:,} distinct "
                            f"fields (e.g. {', '.join(list(seen)[-3:])}): an export has a few "
                            "dozen; values used as keys are read as fields, so this is not a "
                            "table"
                        )
        flat.append(out)
    # every cell kept as the object JSON gave: inferred, a column of integers with a null
    # (or one beyond int64) became float64, rounding ids past 2**53 and writing 1e15 and up
    # in exponent form
    return pd.DataFrame(flat, columns=list(names), dtype=object)


def _flatten(value: dict, prefix: str, out: dict[str, Any], several: dict[str, int]) -> None:
    """``value``'s leaves into ``out`` under dotted names, in the record's order; with a stack,
    not recursion: JSON nested a thousand deep is valid JSON.

    An array of one value is that value, an empty one no value (nulls in it are none). An
    array of several values stays whole (its JSON text), its name in ``several`` with their
    number; an array of one object is flattened like the object, its JSON text kept under its
    own name too (the draft finds goods items by it) and its name in ``several`` with 1."""
    stack = [(prefix, iter(value.items()))]
    while stack:
        prefix, items = stack[-1]
        for key, item in items:
            name = prefix[: -len(SEPARATOR)] if key == ELEMENT_TEXT else f"{prefix}{key}"
            if isinstance(item, list):
                values = _values(item)
                if len(values) == 1 and isinstance(values[0], dict) and values[0]:
                    out[name], several[name] = item, 1
                    item = values[0]
                elif len(values) > 1:
                    several[name] = len(values)
                else:
                    item = values[0] if values else None
            if isinstance(item, dict) and item:
                stack.append((name + SEPARATOR, iter(item.items())))
                break
            out[name] = item
        else:
            stack.pop()


def _values(array: list) -> list:
    """The values an array holds, nulls left out, an array of one array read as the inner."""
    values = [v for v in array if v is not None]
    while len(values) == 1 and isinstance(values[0], list):
        values = [v for v in values[0] if v is not None]
    return values


def _refuse_several(
    path: Path, number: int, out: dict[str, Any], several: dict[str, int], fields: frozenset[str]
) -> None:
    """Refuse record ``number`` when a field the mapping reads is one of its arrays (``several``,
    from ``_flatten``) or lies inside one of several objects: one value would have to be
    chosen, or list text read as an id."""
    for name, count in several.items():
        inside = name + SEPARATOR
        for field in sorted(fields):
            held = out.get(name)
            if field == name and isinstance(held, list):
                if any(isinstance(v, (dict, list)) for v in held):
                    what = f"a list of {count} object(s)"
                else:
                    what = f"{count} values ({', '.join(repr(v) for v in _values(held)[:4])})"
                raise ContractError(
                    f"{path}: record {number}: {field} holds {what}, where the mapping reads "
                    "one value; correct the record, or map another field"
                )
            if count > 1 and field.startswith(inside):
                raise ContractError(
                    f"{path}: record {number}: {field}: the record holds {count} {name} "
                    f"elements, so {count} values where the mapping reads one (goods items: "
                    f"explode: {name} gives each its own row)"
                )


def _as_text(frame: pd.DataFrame, kept: frozenset[str] = frozenset()) -> pd.DataFrame:
    """Every cell as the text JSON wrote it (None for null), column by column; a ``kept``
    column whose every value JSON wrote as an integer stays integers (``Int64``): an HS code
    written as a number has lost the zero of chapters 01-09, as a workbook's numeric cell has,
    and the mapping gives it back as it does there (probe 33: ``0713200000`` sent as
    713200000 was read as chapter 71)."""
    import pandas as pd

    out = {}
    for name in frame.columns:
        column = frame[name]
        # what the cells hold, in one C pass: most JSON fields are text throughout, and
        # mapping each cell through Python cost ~20% of an NDJSON read
        held = pd.api.types.infer_dtype(column, skipna=True)
        if held in ("string", "empty"):
            out[name] = column.astype("object")
        elif held == "boolean":
            out[name] = column.map({True: "true", False: "false"}).astype("object")
        elif held == "integer" and name in kept:
            out[name] = pd.array(column.tolist(), dtype="Int64")
        elif held == "integer":  # Python ints, every digit (none past 64 bits is lost)
            out[name] = column.map(str, na_action="ignore").astype("object")
        else:
            out[name] = column.map(_cell, na_action="ignore").astype("object")
    return pd.DataFrame(out, columns=list(frame.columns))


def _cell(value: Any) -> Any:
    import orjson

    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, float):
        return repr(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)
    if isinstance(value, (dict, list)):
        return orjson.dumps(value).decode()
    return str(value)


__all__ = ["JSON_SUFFIXES", "is_json", "read_json_source"]
