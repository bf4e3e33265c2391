"""Declaration files: Parquet carries the contract's extras in its metadata; writes are atomic."""

from __future__ import annotations

import bz2
import codecs
import csv
import gzip
import io
import json
import logging
import lzma
import os
import tempfile
import zipfile
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from glob import escape as glob_escape
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from features.errors import ParcelriskError
from features.intake.contract import (
    EXTRAS_METADATA_KEY,
    FOLDED_METADATA_KEY,
    OUTCOME_COLUMNS,
    RESULTS_SEQ_METADATA_KEY,
    Contract,
    ContractError,
    ExtraColumn,
    coerce_declarations,
)

if TYPE_CHECKING:
    import pandas as pd

logger = logging.getLogger(__name__)

# Bytes no text export holds (C0 controls but tab, line feed, carriage return; DEL): binary data.
_BINARY = bytes([*range(0, 9), 11, 12, *range(14, 32), 127])
# What a spreadsheet export that is not UTF-8 almost always is; every byte decodes in Latin-1.
FALLBACK_ENCODINGS = ("cp1252", "latin-1")
# Text files read as CSV, and the compressions pandas infers from the suffix without an
# optional package (".zst" needs zstandard): a compressed file is opened here the same way, so
# its header is sniffed and its text checked as a plain file's are.
CSV_SUFFIXES = (".csv", ".txt", ".tsv")
_DECOMPRESS = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}
COMPRESSED_SUFFIXES = (*_DECOMPRESS, ".zip")


def format_suffix(path: Path) -> str:
    """The suffix that says a file's format, a compression's left aside (``a.xml.gz``: ``.xml``;
    empty when there is none)."""
    suffixes = [s.lower() for s in Path(path).suffixes[-2:]]
    if suffixes and suffixes[-1] in COMPRESSED_SUFFIXES:
        suffixes.pop()
    return suffixes[-1] if suffixes else ""


# --------------------------------------------------------------------------------------------
# Files: Parquet carries the extras in its metadata; writes are atomic.
# --------------------------------------------------------------------------------------------


def atomic_write(path: Path, write: Any) -> None:
    """Call ``write(tmp_path)`` then rename over ``path``, so a failure leaves the old file."""
    path = Path(path)
    if path.is_dir():  # the rename would fail naming the temporary file, not this path
        raise ParcelriskError(f"{path} is a directory: give a file name to write")
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_orphans(path)
    # the writer's pid in the name: the next write of the same file removes what a killed
    # writer left (a history's GBs stayed beside it run after run: probe, 2026-12)
    fd, tmp = tempfile.mkstemp(
        prefix=f".{path.name}.{os.getpid()}-", suffix=".tmp", dir=path.parent
    )
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _remove_orphans(path: Path) -> None:
    """The temporary files of ``atomic_write``s of ``path`` whose writer is gone (killed)."""
    prefix = f".{path.name}."
    for leftover in path.parent.glob(f"{glob_escape(prefix)}*.tmp"):
        pid_text = leftover.name[len(prefix) :].split("-", 1)[0]
        if not pid_text.isdigit() or int(pid_text) == os.getpid():
            continue  # not ours to judge, or this process's own write in progress
        try:
            os.kill(int(pid_text), 0)
        except ProcessLookupError:
            leftover.unlink(missing_ok=True)
        except OSError:
            continue  # alive under another user: left alone


def write_declarations(
    df: pd.DataFrame,
    path: Path,
    contract: Contract | None = None,
    *,
    results_seq: int | None = None,
) -> None:
    """Write declarations to Parquet atomically, recording the extras in the file metadata;
    and ``results_seq`` for a history exported from a decision store (``read_results_seq``)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    contract = contract or Contract()
    table = pa.Table.from_pandas(df, preserve_index=False)
    meta = dict(table.schema.metadata or {})
    meta[EXTRAS_METADATA_KEY] = json.dumps(contract.extras_json()).encode()
    if contract.folded:  # only where some field was folded: other files are written as before
        meta[FOLDED_METADATA_KEY] = json.dumps(list(contract.folded)).encode()
    if results_seq is not None:
        meta[RESULTS_SEQ_METADATA_KEY] = str(int(results_seq)).encode()
    table = table.replace_schema_metadata(meta)
    atomic_write(Path(path), lambda tmp: pq.write_table(table, tmp))


def read_results_seq(path: Path) -> int | None:
    """The decision store's last result held by a history it exported (``history export``):
    every result stored up to that seq is in the file, none after it. None for a file that
    did not come from a store (an administration's own export)."""
    import pyarrow.parquet as pq

    if Path(path).suffix.lower() not in (".parquet", ".pq"):
        return None
    raw = (pq.read_schema(path).metadata or {}).get(RESULTS_SEQ_METADATA_KEY)
    if not raw:
        return None
    try:
        return int(raw)
    except ValueError as exc:  # written by history export as digits: edited since
        raise ContractError(
            f"{path}: its metadata's {RESULTS_SEQ_METADATA_KEY.decode()} is {raw[:40]!r}, not "
            "the seq history export wrote; export the history again"
        ) from exc


def read_contract(path: Path) -> Contract:
    """The contract (extras) recorded in a Parquet file written by ``write_declarations``.

    Every reader of a declarations Parquet file asks for it first (the gate whole or in chunks,
    ``features build`` on either engine, ``score``), so a file whose schema cannot hold the
    contract is refused here: ``hs_code`` stored as numbers (``refuse_numeric_hs_code``).
    """
    import pyarrow.parquet as pq

    schema = pq.read_schema(path)
    refuse_numeric_hs_code(path, schema)
    meta = schema.metadata or {}
    raw = meta.get(EXTRAS_METADATA_KEY)
    folded = tuple(json.loads(meta[FOLDED_METADATA_KEY])) if FOLDED_METADATA_KEY in meta else ()
    if not raw:
        return Contract(folded=folded)
    return Contract(tuple(ExtraColumn(**e) for e in json.loads(raw)), folded=folded)


def refuse_numeric_hs_code(path: Path, schema: Any) -> None:
    """Refuse a Parquet schema whose ``hs_code`` is a number column.

    A number has lost the leading zero of chapters 01-09 (0901111000 stored as 901111000), and
    the 9 digits left pass as an HS code of chapter 90. The gate checks a contract file as it
    is and does not repair it: ``parcelrisk ingest`` with a mapping reads such an export and
    restores the zeros, saying how many.
    """
    import pyarrow as pa

    index = schema.get_field_index("hs_code")
    if index < 0:
        return
    kind = schema.field(index).type
    if pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind):
        raise ContractError(
            f"{path}: column 'hs_code' is stored as numbers ({kind}), so the leading zero of "
            "chapters 01-09 is lost (0901111000 reads 901111000, chapter 90); store HS codes "
            "as text, or convert the export with `parcelrisk ingest FILE --mapping MAPPING "
            "--out FILE.parquet`, which restores the zeros"
        )


def require_regular_file(path: Path) -> None:
    """Refuse, before anything opens it, a path (its link followed) that is not a regular
    file: a FIFO hung every reader for ever, a link to /dev/zero was read until memory ran
    out (probe 34). A missing path is left to the reader's own message."""
    import stat

    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return
    if stat.S_ISREG(mode):
        return
    what = (
        "a directory"
        if stat.S_ISDIR(mode)
        else "a FIFO (named pipe)"
        if stat.S_ISFIFO(mode)
        else "a device"
        if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
        else "a socket"
        if stat.S_ISSOCK(mode)
        else "not a regular file"
    )
    raise ContractError(f"{path} is {what}, not a file: give the export's file itself")


def check_file(path: Path) -> None:
    """Refuse, in one line, a path no reader can take: absent, not a file, or empty."""
    path = Path(path)
    if not path.exists():
        raise ContractError(f"file not found: {path}")
    if path.is_dir():
        raise ContractError(f"{path} is a directory, not a declarations file")
    if not path.is_file():
        raise ContractError(f"{path} is not a regular file")
    if path.stat().st_size == 0:
        raise ContractError(f"{path}: the file is empty (0 bytes)")


def is_csv(path: Path) -> bool:
    """A CSV by its name: ``.csv``, ``.txt``, ``.tsv``, or one of them compressed
    (``.csv.gz``, ``.csv.bz2``, ``.csv.xz``, ``.csv.zip``); or a ``.zip`` whose name says no
    format (``export.zip``, as portals and mail name it), unless the one file it holds is named
    as another format (``export.xml``)."""
    path = Path(path)
    suffixes = [s.lower() for s in path.suffixes[-2:]]
    zipped = bool(suffixes) and suffixes[-1] == ".zip"
    if suffixes and suffixes[-1] in COMPRESSED_SUFFIXES:
        suffixes.pop()
    if suffixes and suffixes[-1] in CSV_SUFFIXES:
        return True
    if not zipped:
        return False
    try:
        with zipfile.ZipFile(path) as archive:
            members = zip_data_members(archive)
    except (OSError, zipfile.BadZipFile):
        return True  # opened as a CSV, its reader says what is wrong with it
    return len(members) != 1 or Path(members[0]).suffix.lower() in CSV_SUFFIXES


def zip_data_members(archive: zipfile.ZipFile) -> list[str]:
    """The files of a zip archive that may hold data: not directories, nor what macOS Finder
    adds beside them (``__MACOSX/`` resource forks, ``._`` AppleDouble files, ``.DS_Store``),
    which no export holds and pandas counted as files ("Multiple files found in ZIP file")."""
    members = []
    for name in archive.namelist():
        base = name.rstrip("/").rsplit("/", 1)[-1]
        if name.endswith("/") or "__MACOSX" in name.split("/")[:-1]:
            continue
        if base.startswith("._") or base == ".DS_Store":
            continue
        members.append(name)
    return members


# A compressed export expands this many times its size at most. CSV, JSON and XML exports
# compress 5 to 20 fold (a column of constants somewhat more); one a thousand times its size is
# a decompression bomb, read until memory runs out: 4 MB of gzip held 4 GiB of one line, and
# ingest grew to 4.6 GB before it failed, `mapping draft` of a 12 MB zip to 5.6 GB (probe 34).
MAX_EXPANSION = 100
# ...though a small file may expand further (a header and a few rows compress to almost
# nothing): below this many bytes expanded, no ratio is judged
EXPANSION_FLOOR = 256 * 1024**2


class _Bounded(io.RawIOBase):
    """A decompressing stream that refuses to give more than ``limit`` bytes: the file is
    named, with what it expands to, in a ``ContractError`` raised by the read that passes it
    (pandas, the JSON and XML readers pass it on)."""

    def __init__(self, inner: IO[bytes], path: Path, limit: int) -> None:
        self._inner, self._path, self._limit, self._given = inner, path, limit, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        n = self._inner.readinto(buffer)  # type: ignore[attr-defined]
        self._given += n
        if self._given > self._limit:
            raise _expands_too_far(self._path, self._given)
        return n


def _expands_too_far(path: Path, expanded: int) -> ContractError:
    size = path.stat().st_size
    return ContractError(
        f"{path}: expands to over {expanded / 1024**2:,.0f} MB from {size / 1024**2:,.1f} MB "
        f"compressed, more than {MAX_EXPANSION} times its size: not an export (a "
        "decompression bomb?); if it is one, give it uncompressed"
    )


@contextmanager
def open_bytes(path: Path) -> Iterator[IO[bytes]]:
    """The bytes of a file, decompressed if its suffix says so; a zip must hold one data file
    (``zip_data_members``). Every reader of a CSV, JSON or XML export opens it here, pandas
    too: one reading of a compressed file, whatever reads it. A compressed file gives at most
    ``MAX_EXPANSION`` times its size (``EXPANSION_FLOOR`` at least), then is refused."""
    path = Path(path)
    require_regular_file(path)
    suffix = path.suffix.lower()
    if suffix not in COMPRESSED_SUFFIXES:
        with open(path, "rb") as fh:
            _refuse_binary(path, fh.peek(8)[:8])
            yield fh
        return
    limit = max(EXPANSION_FLOOR, MAX_EXPANSION * path.stat().st_size)
    if suffix == ".zip":
        with zipfile.ZipFile(path) as archive:
            names = zip_data_members(archive)
            if len(names) != 1:
                raise ContractError(_not_one_file(path, names))
            declared = archive.getinfo(names[0]).file_size
            if declared > limit:  # said by the archive itself: refused before reading it
                raise _expands_too_far(path, declared)
            with archive.open(names[0]) as fh, io.BufferedReader(_Bounded(fh, path, limit)) as b:
                _refuse_binary(path, b.peek(8)[:8], inside=names[0])
                yield b
        return
    with _DECOMPRESS[suffix](path, "rb") as fh, io.BufferedReader(_Bounded(fh, path, limit)) as b:
        _refuse_binary(path, b.peek(8)[:8], inside="its compressed data")
        yield b


# What the first bytes of a file say it is, where its name says text (CSV, JSON, XML): an
# export saved under the wrong name was refused as "not utf-8 text: set encoding: cp1252",
# a hint that led nowhere (probe 34)
_MAGIC = (
    (b"PK\x03\x04", "a zip archive (an .xlsx or .ods workbook, or a zip)", ".xlsx, .ods or .zip"),
    (b"PAR1", "a Parquet file", ".parquet"),
    (b"\xd0\xcf\x11\xe0", "an Excel 97-2003 workbook", ".xls"),
    (b"\x1f\x8b", "gzip-compressed", ".gz after its own suffix"),
    (b"BZh", "bzip2-compressed", ".bz2 after its own suffix"),
    (b"\xfd7zXZ\x00", "xz-compressed", ".xz after its own suffix"),
)


def _refuse_binary(path: Path, head: bytes, inside: str = "") -> None:
    """Refuse a text export whose first bytes are another format's signature, naming it."""
    for magic, what, name in _MAGIC:
        # bzip2's "BZh" is followed by its block size, a digit: a header "BZhX..." is text
        if head.startswith(magic) and (magic != b"BZh" or head[3:4].isdigit()):
            where = f" ({inside})" if inside else ""
            raise ContractError(
                f"{path}{where} is {what}, not text: name the file for what it is ({name})"
            )


def _not_one_file(path: Path, names: list[str]) -> str:
    shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
    return (
        f"{path}: a zip archive of {len(names)} data files"
        + (f" ({shown})" if names else "")
        + "; give one holding a single export (the files of a series: unzip them and give "
        "them all to ingest)"
    )


DELIMITERS = ",;\t|"
# Lines a title above the header may take (a report's name, when it was made, a blank line).
PREAMBLE_LINES = 30


# The longest line the first lines of a CSV may hold: a header, a title or a row of a
# declaration is a few kilobytes; a file of one line of gigabytes was held whole to sniff its
# delimiter (probe 34)
MAX_LINE_CHARS = 16 * 1024**2


def first_lines(path: Path, encoding: str, n: int = PREAMBLE_LINES + 6) -> list[str]:
    """The first ``n`` lines of a CSV as text (decompressed), line breaks kept; a line longer
    than ``MAX_LINE_CHARS`` is refused, naming it."""
    lines = []
    with open_bytes(path) as raw, io.TextIOWrapper(raw, encoding=encoding, newline="") as fh:
        for number in range(1, n + 1):
            line = fh.readline(MAX_LINE_CHARS + 1)
            if len(line) > MAX_LINE_CHARS:
                raise ContractError(
                    f"{path}: line {number} is longer than {MAX_LINE_CHARS // 1024**2} million "
                    "characters: no export's header or row is (a file with no line breaks, or "
                    "not text?)"
                )
            if not line:
                break
            lines.append(line)
    return lines


def _records(lines: list[str], sep: str) -> list[tuple[int, list[str]]]:
    """The CSV records of ``lines`` as (index of the line each starts on, stripped cells): a
    quoted cell may hold a line break, so records are not lines."""
    reader = csv.reader(io.StringIO("".join(lines)), delimiter=sep)
    out, start = [], 0
    try:
        for cells in reader:
            out.append((start, [c.strip() for c in cells]))
            start = reader.line_num
    except csv.Error:  # a quote left open where the lines read stop
        pass
    return out


def _width(cells: list[str]) -> int:
    """Cells up to the last filled one (trailing empty cells are a row's blanks, not columns)."""
    return next((i + 1 for i in range(len(cells) - 1, -1, -1) if cells[i]), 0)


def header_row(rows: list[list[str]], expected: Collection[str] = ()) -> tuple[int, int] | None:
    """Where a table's header is among its first rows (cells as text, stripped): (row, width),
    or None when no row looks like one. The rule a CSV and a workbook's sheet share.

    ``expected``: the column names a mapping reads; the header is the first row holding every
    one of them. Without names (a draft): the first row at least two cells wide that is as wide
    as the widest of the five rows below it; it starts the table only if every row above it is
    narrower (a title is one cell, "generated on" two), else the table starts at row 0. Only the
    first ``PREAMBLE_LINES`` rows are candidates."""
    wanted = {name.strip() for name in expected}
    widths = [_width(cells) for cells in rows]
    for k, cells in enumerate(rows[: PREAMBLE_LINES + 1]):
        if wanted:
            if wanted <= set(cells):
                return k, widths[k]
            continue
        below = [w for w in widths[k + 1 : k + 6] if w]
        if widths[k] < 2 or not below or max(below) != widths[k]:
            continue
        return (k if all(w < widths[k] for w in widths[:k]) else 0), widths[k]
    return None


def header_line(lines: list[str], expected: Collection[str] = ()) -> int:
    """How many lines come before a CSV's header: 0 unless a title stands above it
    (``header_row``'s rule, on the records each delimiter gives). Without names, the delimiter
    giving the widest table decides (a decimal comma splits a ';' file's rows in two with ','),
    and as wide, the one whose table starts first."""
    best: tuple[int, int] = (0, 0)  # (width, -first line)
    skip = 0
    for sep in DELIMITERS:
        records = _records(lines, sep)
        found = header_row([cells for _, cells in records], expected)
        if found is None:
            continue
        start = records[found[0]][0]
        if expected:
            return start
        if (found[1], -start) > best:
            best, skip = (found[1], -start), start
    return skip


def lines_above_header(path: Path, encoding: str, expected: Collection[str] = ()) -> int:
    """``header_line`` of a CSV file, said in a warning when a title stands above the header."""
    skip = header_line(first_lines(path, encoding), expected)
    if skip:
        logger.warning(
            "%s: the header is line %d; the %d line(s) above it (a title) are not read",
            path,
            skip + 1,
            skip,
        )
    return skip


def sniff_delimiter(
    path: Path, encoding: str, expected: Collection[str] = (), skip: int = 0
) -> str:
    """The delimiter of a CSV's header line (',' ';' tab '|'); ',' when it cannot tell.

    ``expected``: the column names a mapping reads. The delimiter that splits the header into
    most of them wins: csv's sniffer guesses from character counts alone, and a header whose
    names hold commas ("Poids, kg;Valeur, EUR") or a lone column fooled it. ``skip``: lines
    above the header (``header_line``)."""
    lines = first_lines(path, encoding, skip + 1)
    head = lines[skip] if len(lines) > skip else ""
    wanted = {name.strip() for name in expected}
    if wanted:
        found = {
            sep: len(wanted & {c.strip() for c in next(csv.reader([head], delimiter=sep), [])})
            for sep in DELIMITERS
        }
        best = max(found.values())
        winners = [sep for sep, n in found.items() if n == best]
        if best and len(winners) == 1:
            return winners[0]
    # No names to go by (a draft): the delimiter that splits the header and the lines below
    # it into one number of fields, more than one. The sniffer reads the header alone, and a
    # name holding a comma ("weight, kg" in a ';' file) made it pick ',': every line then
    # split otherwise, and the draft stopped at pandas' tokenizer error (probe, 2026-12).
    rows = first_lines(path, encoding, skip + _SNIFF_LINES)[skip:]
    if rows and not rows[-1].endswith(("\n", "\r")):
        rows = rows[:-1]  # a last line cut by the sample (or the file's last, unended)
    widths = {
        sep: {len(cells) for _, cells in _records(rows, sep) if any(cells)} for sep in DELIMITERS
    }
    even = {sep: n.pop() for sep, n in widths.items() if len(n) == 1 and min(n) > 1}
    if len(rows) > 1 and even:
        most = max(even.values())
        winners = [sep for sep, n in even.items() if n == most]
        if len(winners) == 1:
            return winners[0]
    try:
        return csv.Sniffer().sniff(head, delimiters=DELIMITERS).delimiter
    except csv.Error:
        return ","


# Lines (the header and those below it) a draft's delimiter is judged on
_SNIFF_LINES = 21


# How far back from a CSV's end the last row is looked for (a row longer is not checked).
_TAIL_BYTES = 1 << 16


def no_implicit_index(
    raw: pd.DataFrame, path: Path, sep: str, skip: int = 0, encoding: str = "utf-8"
) -> pd.DataFrame:
    """A CSV read as its cells are, never with pandas' implicit index.

    When the first row after the header has one field more than the header, pandas takes the
    first column as the frame's index and reads every column one place to the left: ids
    become dates, dates operators, with no error. Looked at then (a pass over the file's
    records): a trailing delimiter on every data line and not on the header (``1;2;3;`` under
    ``a;b;c``: the extra field empty in every row) is read as written; a row holding more
    fields (a value holding the delimiter unquoted: a description ``Buty; sportowe``) is
    refused, naming its line, as pandas refuses such a row further down.
    """
    import pandas as pd

    if isinstance(raw.index, pd.RangeIndex):
        return raw
    header = len(raw.columns)
    with open_bytes(path) as stream, io.TextIOWrapper(stream, encoding=encoding, newline="") as fh:
        for _ in range(skip):
            fh.readline()
        reader = csv.reader(fh, delimiter=sep)
        next(reader, None)
        first_line = None  # the line of the first row, which pandas read one field over
        for cells in reader:
            if not cells:
                continue
            if first_line is None:
                first_line = skip + reader.line_num
            if len(cells) != header + 1 or cells[-1].strip():
                raise ContractError(
                    f"{path}: line {first_line} holds {header + 1} fields where the header has "
                    f"{header}: a value holding the delimiter {sep!r} unquoted (e.g. a "
                    "description) moves every cell after it one column on; quote such values "
                    "in the export, or correct the line"
                )
    cells = raw.reset_index().iloc[:, :-1]  # the implicit index is the first column
    cells.columns = raw.columns
    return cells


def refuse_cut_last_row(path: Path, encoding: str, sep: str, skip: int = 0) -> None:
    """Refuse a CSV whose last row stops short of the header's columns with no line break
    after it: the file was cut (an interrupted copy or export), and pandas would read the
    missing cells as empty, so values the export held would vanish without a word.

    A row that ends with its line break is taken as written (some exporters leave out
    trailing empty cells); a last row with every column but no line break is taken with a
    warning (a cut inside its last value cannot be told from a whole value). Only an
    uncompressed file is looked at (from its end; a cut compressed file fails to
    decompress), and not UTF-16 or UTF-32.
    """
    path = Path(path)
    if path.suffix.lower() in COMPRESSED_SUFFIXES or codecs.lookup(encoding).name.startswith(
        ("utf-16", "utf-32")
    ):
        return
    with path.open("rb") as fh:
        size = fh.seek(0, io.SEEK_END)
        fh.seek(max(0, size - _TAIL_BYTES))
        tail = fh.read()
    if not tail or tail.endswith((b"\n", b"\r")):
        return
    start = tail.rfind(b"\n")
    if start < 0:
        return  # one line (the header alone) or a last row longer than the tail
    last = tail[start + 1 :].decode(encoding, errors="replace")
    if last.count('"') % 2:
        return  # inside a quoted cell that spans lines: pandas reports the open quote
    lines = first_lines(path, encoding, skip + 1)
    columns = len(next(csv.reader([lines[skip] if len(lines) > skip else ""], delimiter=sep), []))
    cells = len(next(csv.reader([last], delimiter=sep), []))
    if cells < columns:
        raise ContractError(
            f"{path}: the last row has {cells} of the header's {columns} columns and no line "
            "break after it: the file looks cut short (an interrupted copy or export); export "
            "it again (if the row is complete as written, end the file with a line break)"
        )
    # every column there: a cut inside the last value cannot be told from a whole one (the
    # value is not quoted: the last column may hold a personal identifier)
    logger.warning(
        "%s does not end with a line break: if it was cut short, the last row's last value "
        "is incomplete (check it against the source)",
        path,
    )


def first_undecodable(path: Path, encoding: str) -> tuple[int, int, bytes] | None:
    """Where a file's text (decompressed) first fails to decode as ``encoding``: the byte
    offset, the line (1: the header) and the bytes that do not decode; None if all decode.

    Read in chunks: only asked after a reader failed, on a file that may be gigabytes.
    """
    decoder = codecs.getincrementaldecoder(encoding)()
    offset = lines = 0
    with open_bytes(path) as fh:
        while True:
            chunk = fh.read(1 << 20)
            pending = decoder.getstate()[0]  # a sequence cut by the previous chunk
            try:
                decoder.decode(chunk, final=not chunk)
            except UnicodeDecodeError as exc:
                data = pending + chunk  # what the error's positions are in
                at = offset - len(pending) + exc.start
                line = lines + chunk.count(b"\n", 0, max(exc.start - len(pending), 0)) + 1
                return at, line, data[exc.start : exc.end]
            if not chunk:
                return None
            offset += len(chunk)
            lines += chunk.count(b"\n")


def _text_encoding(path: Path) -> str:
    """UTF-8 (with or without a byte-order mark) if the bytes are UTF-8; else Windows-1252 or
    Latin-1, said in a warning. Binary data (control bytes) is refused, whatever its name."""
    with open_bytes(path) as fh:
        data = fh.read()
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):  # Excel's "Unicode text"
        logger.warning("%s is UTF-16 text (byte-order mark): read as UTF-16", path)
        return "utf-16"
    nul = data.find(b"\x00")
    if nul >= 0:  # no text export holds one; a value cut there would change silently
        line = data.count(b"\n", 0, nul) + 1
        raise ContractError(
            f"{path}: cannot read file: a NUL byte on line {line} (binary data, or a corrupted "
            "export)"
        )
    try:
        data.decode("utf-8")
        return "utf-8-sig" if data.startswith(b"\xef\xbb\xbf") else "utf-8"
    except UnicodeDecodeError as exc:
        undecodable = exc
    binary = next((i for i, b in enumerate(data[: 1 << 16]) if b in _BINARY), None)
    if binary is not None:
        raise ContractError(
            f"{path}: cannot read file: binary data, not CSV text (control byte "
            f"{data[binary]:#04x} at byte {binary})"
        )
    for encoding in FALLBACK_ENCODINGS:
        try:
            data.decode(encoding)
        except UnicodeDecodeError:
            continue
        logger.warning(
            "%s is not UTF-8 (%s at byte %d): read as %s (Latin-1); check accented text",
            path,
            undecodable.reason,
            undecodable.start,
            "Windows-1252" if encoding == "cp1252" else "ISO-8859-1",
        )
        return encoding
    raise ContractError(f"{path}: cannot read file: not UTF-8 text ({undecodable})")


def _read_csv(path: Path) -> pd.DataFrame:
    import pandas as pd

    encoding = _text_encoding(path)
    # a title above the header (a report's name): the header is the line naming declaration_id
    skip = lines_above_header(path, encoding, ("declaration_id",))
    sep = sniff_delimiter(path, encoding, skip=skip)
    refuse_cut_last_row(path, encoding, sep, skip)
    if sep != ",":
        logger.warning("%s: read with the delimiter %r (sniffed from the header line)", path, sep)
    # only empty cells are null: "NA" is Namibia, not a missing value
    with open_bytes(path) as fh:  # not pandas' own unzipping: a Finder zip is one CSV
        raw = pd.read_csv(
            fh,
            sep=sep,
            dtype="str",
            encoding=encoding,
            keep_default_na=False,
            na_values=[""],
            skiprows=skip,
        )
    return no_implicit_index(raw, path, sep, skip, encoding)


def unreadable_file(path: Path, exc: BaseException) -> ContractError:
    """The error for a file its reader failed on; for a Parquet file whose footer reads, it
    names the first damaged row group and its rows (a disk or transfer fault mid-file), so
    the administration knows which part of the export to send again.

    Only on the error path: the row groups are read again one at a time until one fails.
    """
    import pyarrow.parquet as pq

    where = ""
    if Path(path).suffix.lower() in (".parquet", ".pq"):
        try:
            parquet = pq.ParquetFile(path)
        except Exception:  # no footer: the reader's own message says it
            parquet = None
        if parquet is not None:
            meta, first = parquet.metadata, 0
            for group in range(meta.num_row_groups):
                rows = meta.row_group(group).num_rows
                try:
                    parquet.read_row_group(group)
                except Exception:
                    where = (
                        f"row group {group + 1} of {meta.num_row_groups} (rows {first:,} to "
                        f"{first + rows - 1:,} of {meta.num_rows:,}) is damaged: "
                    )
                    break
                first += rows
    return ContractError(f"{path}: cannot read file: {where}{exc}")


def read_raw_declarations(path: Path) -> tuple[pd.DataFrame, Contract]:
    """Read a declarations file as it is (CSV as text), with the contract it carries.

    A CSV may be UTF-8 (a byte-order mark is fine) or, said in a warning, Windows-1252/Latin-1;
    its delimiter is sniffed from the header line; so are a compressed CSV's (``is_csv``).
    """
    import pandas as pd

    path = Path(path)
    check_file(path)
    suffix = path.suffix.lower()
    try:
        if suffix in (".parquet", ".pq"):
            return pd.read_parquet(path), read_contract(path)
        if is_csv(path):
            return _read_csv(path), Contract()
    except ContractError:
        raise
    except Exception as exc:  # pyarrow/pandas parse errors: report, don't trace back
        raise unreadable_file(path, exc) from exc
    raise ContractError(f"{path}: unsupported file type {suffix!r} (use .parquet or .csv)")


def read_declarations(
    path: Path, *, with_outcomes: bool | None = None
) -> tuple[pd.DataFrame, Contract]:
    """Read a declarations file (Parquet or CSV) into canonical dtypes with its contract.

    ``with_outcomes``: None reads the outcome columns if the file has any (a partial set fails
    on ``inspected``); False drops them; True reads a history, and a file without any outcome
    column is a history in which no parcel has a result yet (said in a warning).
    """
    raw, contract = read_raw_declarations(path)
    has_any = any(c in raw.columns for c in OUTCOME_COLUMNS)
    if with_outcomes is None:
        with_outcomes = has_any
    elif with_outcomes and not has_any:
        logger.warning(
            "%s has no outcome columns: read as a history in which no parcel has an inspection "
            "result (nothing to learn from until results come back)",
            path,
        )
        raw = raw.assign(inspected=False, inspected_at=None, illicit=None)
    return coerce_declarations(raw, with_outcomes=with_outcomes, contract=contract), contract


# East Asian code pages, each with the script its text is written in: a GB18030 (Chinese),
# Shift_JIS (Japanese) or EUC-KR (Korean) export was drafted as Cyrillic mojibake, the buyer's
# id taken for the declaration's, or told to use latin-1 (probe, 2026-12). Tried in this order,
# strictly (a byte sequence the page lacks rules it out): Japanese text holds kana, Korean
# text is nearly all Hangul (Chinese text read as EUC-KR, which shares its byte layout, mixes
# in Hanja), then GB18030 and Big5 (cp950, Microsoft's Big5 as Taiwanese and Hong Kong
# systems write it). Big5's most frequent characters (few strokes: lead bytes 0xA4-0xAF) read
# in GB18030 as kana, Greek, Cyrillic or private-use symbols, so Big5 text fails GB18030's
# script test; GB text is taken by GB18030 first. Big5 was refused as "not guessed" (probe).
_EAST_ASIAN = (
    ("cp932", "kana", 0.1),
    ("cp949", "hangul", 0.9),
    ("gb18030", "han", 0.9),
    ("cp950", "han", 0.9),
)


def _east_asian_script(ch: str) -> str:
    o = ord(ch)
    if 0x3040 <= o <= 0x30FF:
        return "kana"
    if 0xAC00 <= o <= 0xD7A3:
        return "hangul"
    if 0x4E00 <= o <= 0x9FFF or 0x3400 <= o <= 0x4DBF:
        return "han"
    if 0x3000 <= o <= 0x303F or 0xFF01 <= o <= 0xFF60:  # CJK and full-width punctuation
        return "punctuation"
    return "other"


def east_asian_code_page(sample: bytes) -> str | None:
    """The code page of ``_EAST_ASIAN`` whose strict reading of ``sample`` holds its script
    in at least its share of the non-ASCII letters (punctuation aside), or None."""
    from collections import Counter

    if not any(b >= 0x80 for b in sample):
        return None
    try:  # UTF-8 text (its two-byte letters read as Hangul in EUC-KR: "Descrição")
        codecs.getincrementaldecoder("utf-8")("strict").decode(sample, final=False)
        return None
    except UnicodeDecodeError:
        pass
    for page, script, share in _EAST_ASIAN:
        try:  # the sample may end inside a character: the incremental decoder keeps it
            text = codecs.getincrementaldecoder(page)("strict").decode(sample, final=False)
        except UnicodeDecodeError:
            continue
        scripts = Counter(_east_asian_script(ch) for ch in text if ord(ch) >= 0x80)
        letters = sum(scripts.values()) - scripts["punctuation"]
        distinct = len({ch for ch in text if ord(ch) >= 0x80})
        if distinct < 10:  # too few to tell a script by
            return None
        if scripts[script] / letters >= share and scripts["other"] / letters < 0.05:
            return page
    return None


# A spreadsheet evaluates a cell that starts with these (OWASP "CSV Injection"): a hostile
# declaration's description =HYPERLINK(...) ran when an analyst opened the quarantine file
_FORMULA_START = ("=", "@", "\t", "\r", "+", "-")
_PLAIN_NUMBER = r"[+-]?[0-9]+(?:[.,][0-9]+)*(?:[eE][+-]?[0-9]+)?"


def spreadsheet_safe(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with every text cell a spreadsheet would run as a formula given a leading
    ``'`` (it then shows the text as written); signed numbers ("-5", "+3.2") are left as they
    are. For the CSV files people open: quarantines and scored decisions."""
    import pandas as pd

    out = frame.copy()
    for name in out.columns:
        column = out[name]
        if pd.api.types.is_numeric_dtype(column.dtype) or pd.api.types.is_bool_dtype(column.dtype):
            continue
        if pd.api.types.is_datetime64_any_dtype(column.dtype):
            continue
        text = column.astype("str")
        risky = column.notna() & text.str.startswith(_FORMULA_START)
        risky &= ~text.str.fullmatch(_PLAIN_NUMBER)
        if risky.any():
            out[name] = column.astype(object).mask(risky.to_numpy(dtype=bool), "'" + text)
    return out
