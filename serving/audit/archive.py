"""Old days of the decision store moved to daily Parquet files, the chain kept provable.

``parcelrisk audit archive --before DATE`` verifies the chain first (archiving must never
launder a tampered record), writes every decision answered before DATE to
``ARCHIVE/day=YYYY-MM-DD/seq-FIRST-LAST.parquet`` (the stored columns as they are, zstd:
columnar compression does in bulk what a per-row codec would cost the scoring path), records
the files in ``ARCHIVE/manifest.json``, then, in one transaction, deletes those rows from the
hot store and records the cut (the last archived seq and MAC, itself MAC'd with the key) where
the hot chain now starts. ``verify`` walks the archive's days and then the hot rows as one
chain, so the archived days stay proven and the hot store stays small (SQLite reuses the
freed pages).

An archive stopped between its manifest and its cut (a kill, a power cut) leaves the manifest
listing files past the store's cut, whose decisions the store still holds. The next archive
checks each such file against the store's rows, rolls the manifest back to the store's cut and
archives again (saying so): written once more, they would otherwise be listed twice, and
`verify` would read the second listing as decisions inserted (probe 21).

Decisions and results are joined by declaration id: a result that arrives for an archived
decision is refused by ``outcomes ingest`` as unknown, so archive only days whose inspection
results are in (the command says how many inspected lanes are still without one).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from features.errors import ParcelriskError
from serving.audit.expiry import file_sha256
from serving.audit.verify import verify_store
from serving.decision import ADDED_FIELDS, iso_utc
from serving.sqlite_store import (
    _COLUMNS,
    _N_STORED,
    ARCHIVE_MANIFEST,
    cut_mac_of,
    read_archive_manifest,
)

if TYPE_CHECKING:
    from serving.store import DecisionStore

logger = logging.getLogger(__name__)

_PAGE = 50_000


def default_archive_dir(store: DecisionStore) -> Path:
    """``STORE.archive`` beside a SQLite file; a PostgreSQL store has no file to put it beside."""
    path = getattr(store, "path", None)
    if path is None:
        raise ParcelriskError(
            f"{store.location} is a PostgreSQL store, with no file to put the archive beside: "
            "name the archive directory with --to"
        )
    return path.with_name(f"{path.name}.archive")


def archive_before(
    store: DecisionStore, before: str, archive: Path | None = None
) -> dict[str, Any]:
    """Move the decisions answered before ``before`` (ISO UTC) to daily Parquet files (from a
    SQLite file or a PostgreSQL store: reads through ``serving.store_read``, the cut by the
    store's ``cut_chain`` in its writers' turn)."""
    archive = Path(archive) if archive is not None else default_archive_dir(store)
    with archive_lock(archive, "archived"):
        return _archive_locked(store, before, archive)


@contextlib.contextmanager
def archive_lock(archive: Path, done: str) -> Iterator[None]:
    """One `audit archive` or `audit expire` at a time per archive directory (``done``: what
    the refused one did not do, for its message).

    Two archives at once both chose the same cut, and the second died on the store's unique
    cut with an 82-line traceback (probe, 2026-12); an expiry beside an archive would rewrite
    the manifest under it. The lock sits beside the archive; where none can be made, the
    write fails later, saying so."""
    try:
        lock = open(archive.parent / f".{archive.name}.lock", "a+")  # noqa: SIM115
    except OSError:
        yield
        return
    with lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise ParcelriskError(
                f"another `parcelrisk audit archive` is running on {archive} (or an `audit "
                f"expire`): nothing was {done} by this one; run it again once it has finished"
            ) from None
        yield


def _archive_locked(store: DecisionStore, before: str, archive: Path) -> dict[str, Any]:
    start_seq, start_mac, cut = store.chain_start()
    if cut is not None and Path(cut["archive"]).resolve() != archive.resolve():
        # verify walks one archive, the last cut's, into the hot rows: the days archived
        # into another directory before would no longer be found (a false "deleted" alarm)
        raise ParcelriskError(
            f"this store's archive is {cut['archive']}: archive there (--to {cut['archive']}), "
            f"not into {archive}; one store, one archive directory"
        )
    # before the verify: beyond a first cut, the files listed past it read as decisions
    # inserted, and verify waits for a cut that will never come (an archive being made)
    undone = _undo_interrupted(store, archive, start_seq, start_mac)
    summary = _archive_verified(store, before, archive)
    return summary if undone is None else {**summary, "interrupted": undone}


def _undo_interrupted(
    store: DecisionStore, archive: Path, start_seq: int, start_mac: bytes
) -> str | None:
    """Roll back an archive stopped after its manifest but before its cut: the files the
    manifest lists past the store's cut (``start_seq``, ``start_mac``) are checked against the
    store's rows, then the manifest goes back to the store's cut and the files are removed (the
    store holds every one of their decisions). Returns the one line saying so; None when the
    manifest ends at the store's cut. A file missing, or not holding the store's decisions,
    is refused by name, nothing changed.

    Rolled back, not finished: the archive is then made again from a verified chain, up to
    the date now asked for, and the store stays the record until the cut is made."""
    for leftover in archive.glob("**/*.tmp"):  # a write killed half-way; the lock is ours
        with contextlib.suppress(OSError):
            leftover.unlink()
    manifest = read_archive_manifest(archive)
    files = manifest.get("files", [])
    ahead = [e for e in files if int(e["last_seq"]) > start_seq]
    if not ahead:
        return None
    for entry in ahead:
        _check_against_store(store, archive, entry, start_seq)
    rolled = {**manifest, "files": [e for e in files if int(e["last_seq"]) <= start_seq]}
    rolled.pop("cut_seq", None)
    rolled.pop("cut_mac", None)
    if start_seq:
        rolled["cut_seq"], rolled["cut_mac"] = start_seq, start_mac.hex()
    _write_manifest(archive, rolled)
    for entry in ahead:  # after the manifest: a file it lists is never missing
        path = archive / entry["file"]
        with contextlib.suppress(OSError):
            path.unlink()
        with contextlib.suppress(OSError):  # a day folder left empty
            path.parent.rmdir()
    first = min(int(e["first_seq"]) for e in ahead)
    last = max(int(e["last_seq"]) for e in ahead)
    line = (
        f"completing an interrupted archive: {archive / ARCHIVE_MANIFEST} listed seq "
        f"{first}..{last} ({len(ahead)} files) past the store's cut; they matched the store's "
        "decisions, so the manifest was rolled back to the cut and they are archived again"
    )
    logger.warning(line)
    return line


def _check_against_store(
    store: DecisionStore, archive: Path, entry: dict[str, Any], start_seq: int
) -> None:
    """Refuse, in one line naming it, a file listed past the store's cut that is not a copy
    of the store's decisions it names: removing it must never drop a decision."""
    import pyarrow.parquet as pq

    from serving.store_read import read_only

    path = archive / entry["file"]
    first, last = int(entry["first_seq"]), int(entry["last_seq"])
    named = (
        f"{path} (seq {first}..{last}), listed in {ARCHIVE_MANIFEST} past the store's cut at "
        f"seq {start_seq} by an `audit archive` that did not finish,"
    )
    with read_only(store.source) as reader:
        _, stored = reader.query(
            f"SELECT {','.join(_COLUMNS)} FROM decisions WHERE seq >= {{p}} AND seq <= {{p}} "
            "ORDER BY seq",
            (first, last),
        )
    if [r[_N_STORED + 1] for r in stored] != list(range(first, last + 1)):
        # not an archive stopped before its cut: the cut or the rows were removed since
        raise ParcelriskError(
            f"{named} names decisions this store does not hold (its cut or its rows removed, "
            "or another store's archive): nothing was changed; run `parcelrisk audit verify`"
        )
    keep = (
        "nothing was changed and the store still holds those decisions: restore the file, or "
        f"take the entries past seq {start_seq} out of the manifest, and run again"
    )
    if not path.is_file():
        raise ParcelriskError(f"{named} is missing: {keep}")
    if file_sha256(path) != entry.get("sha256"):
        raise ParcelriskError(f"{named} is not the file listed (its sha256 differs): {keep}")
    try:
        table = pq.read_table(path)
    except (OSError, ValueError) as exc:  # pyarrow's errors are both
        raise ParcelriskError(f"{named} cannot be read ({exc}): {keep}") from None
    if _file_values(table) != _stored_values(stored, table.column_names):
        raise ParcelriskError(
            f"{named} differs from the store's decisions seq {first}..{last} (the file or the "
            "store was edited): nothing was changed; run `parcelrisk audit verify`"
        )


def _file_values(table: Any) -> list[tuple[Any, ...]] | None:
    """The rows of an archived day file, comparable with ``_stored_values``; None when its
    columns are not the store's (a day of an older release lacks ``ADDED_FIELDS`` only)."""
    held = set(table.column_names)
    if held - set(_COLUMNS) or set(_COLUMNS) - set(ADDED_FIELDS) - held:
        return None
    names = [n for n in _COLUMNS if n in held]
    columns = [table.column(n).to_pylist() for n in names]
    return [tuple(map(_plain, r)) for r in zip(*columns, strict=True)]


def _stored_values(rows: list[tuple[Any, ...]], names: list[str]) -> list[tuple[Any, ...]]:
    """The store's rows (``_COLUMNS``) as ``_file_values`` reads a file of columns ``names``."""
    at = [i for i, n in enumerate(_COLUMNS) if n in names]
    return [tuple(_plain(r[i]) for i in at) for r in rows]


def _plain(value: Any) -> Any:
    """A value as both sides read it: PostgreSQL's bytea may come as a memoryview, and NaN
    equals nothing, itself included."""
    if isinstance(value, memoryview):
        return bytes(value)
    if isinstance(value, float) and value != value:
        return "NaN"
    return value


def _write_manifest(archive: Path, manifest: dict[str, Any]) -> None:
    tmp = archive / f"{ARCHIVE_MANIFEST}.tmp"
    tmp.write_text(json.dumps(manifest, indent=1))
    os.replace(tmp, archive / ARCHIVE_MANIFEST)


def _archive_verified(store: DecisionStore, before: str, archive: Path) -> dict[str, Any]:
    """The archive proper, from a manifest that ends at the store's cut."""
    from serving.store_read import read_only

    report = verify_store(store)
    if report.problem is not None:
        raise ParcelriskError(
            f"the chain is broken ({report.problem.describe()}): archiving would hide it; "
            "investigate with `parcelrisk audit verify` first"
        )
    with read_only(store.source) as reader:
        _, found = reader.query("SELECT MAX(seq) FROM decisions WHERE answered_at < {p}", (before,))
    cut_seq = found[0][0]
    if cut_seq is None:
        return {"archived": 0, "before": before, "archive": str(archive)}
    written: list[dict[str, Any]] = []
    try:
        cut_mac = _write_days(store, archive, store.chain_start()[0], cut_seq, written)
    except OSError as exc:  # a full disk, a read-only mount, a file where a folder belongs
        # nothing is cut from the store until every file and the manifest are written: the
        # files of this run (none in the manifest) are removed, the store holds every decision
        leftovers = [archive / e["file"] for e in written] + [*archive.glob("**/*.tmp")]
        for leftover in leftovers:
            with contextlib.suppress(OSError):
                leftover.unlink()
        where = f" ({exc.filename})" if exc.filename else ""
        raise ParcelriskError(
            f"cannot write the archive {archive}{where}: "
            f"{os.strerror(exc.errno) if exc.errno else exc}; nothing was archived, the store "
            "is unchanged"
        ) from None
    archived_at = iso_utc(int(datetime.now(UTC).timestamp() * 1_000_000))
    where = str(archive.resolve())
    mac = cut_mac_of(store.key, cut_seq, cut_mac, archived_at, where)

    try:
        store.cut_chain(cut_seq, cut_mac, archived_at, where, mac)
    except Exception as exc:  # the store's unique cut: another machine archived it meanwhile
        if "unique" not in str(exc).lower() and "duplicate" not in str(exc).lower():
            raise
        raise ParcelriskError(
            f"the store was cut at seq {cut_seq} by another `audit archive` meanwhile: nothing "
            "more to archive; run `parcelrisk audit verify`"
        ) from None
    rows_moved = sum(f["rows"] for f in written)
    size = sum((archive / f["file"]).stat().st_size for f in written)
    return {
        "archived": rows_moved,
        "before": before,
        "cut_seq": cut_seq,
        "days": sorted({f["day"] for f in written}),
        "archive": where,
        "archive_bytes": size,
        "bytes_per_decision": round(size / rows_moved, 1) if rows_moved else None,
        "hot_decisions_left": store.count(),
        "inspected_without_result": _inspected_without_result(store, written, archive),
    }


def _write_days(
    store: DecisionStore, archive: Path, start_seq: int, cut_seq: int, written: list[dict[str, Any]]
) -> bytes:
    """Write the decisions after ``start_seq`` up to ``cut_seq`` as daily Parquet files and
    record them in the manifest; each file is appended to ``written`` once it is in place.
    Returns the MAC of the last archived decision."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from serving.store_read import read_only

    manifest = read_archive_manifest(archive)
    listed = [e["file"] for e in manifest.get("files", []) if int(e["last_seq"]) > start_seq]
    if listed:
        # never a file listed twice: `_undo_interrupted` rolled back every entry past the cut,
        # so this one was written since, by an archive the lock did not hold off (no lock file)
        raise ParcelriskError(
            f"{archive / ARCHIVE_MANIFEST} lists {listed[0]} past the store's cut at seq "
            f"{start_seq}, written meanwhile by another `audit archive`: nothing was archived "
            "by this one; run it again once that one has finished"
        )
    cut_mac = b""
    last = start_seq
    while last < cut_seq:
        with read_only(store.source) as reader:
            _, rows = reader.query(
                f"SELECT {','.join(_COLUMNS)} FROM decisions WHERE seq > {{p}} AND seq <= {{p}} "
                "ORDER BY seq LIMIT {p}",
                (last, cut_seq, _PAGE),
            )
        if not rows:
            break
        by_day: dict[str, list[tuple[Any, ...]]] = {}
        for r in rows:
            by_day.setdefault(r[_N_STORED + 2][:10], []).append(r)
        for day, day_rows in by_day.items():
            first, final = day_rows[0][_N_STORED + 1], day_rows[-1][_N_STORED + 1]
            folder = archive / f"day={day}"
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / f"seq-{first:012d}-{final:012d}.parquet"
            table = pa.table({name: [r[i] for r in day_rows] for i, name in enumerate(_COLUMNS)})
            tmp = path.with_suffix(".parquet.tmp")
            pq.write_table(table, tmp, compression="zstd")
            os.replace(tmp, path)
            written.append(
                {
                    "day": day,
                    "file": str(path.relative_to(archive)),
                    "first_seq": first,
                    "last_seq": final,
                    "rows": len(day_rows),
                    "last_mac": bytes(day_rows[-1][-1]).hex(),
                    "sha256": file_sha256(path),
                }
            )
        last = rows[-1][_N_STORED + 1]
        cut_mac = bytes(rows[-1][-1])
    manifest["files"] = [*manifest.get("files", []), *written]
    manifest["cut_seq"], manifest["cut_mac"] = cut_seq, cut_mac.hex()
    _write_manifest(archive, manifest)
    return cut_mac


def _inspected_without_result(
    store: DecisionStore, written: list[dict[str, Any]], archive: Path
) -> int:
    """Red/yellow decisions just archived that have no inspection result (yet)."""
    import pyarrow.parquet as pq

    from serving.store_read import read_only

    with read_only(store.source) as reader:
        known = (
            {r[0] for r in reader.query("SELECT declaration_id FROM outcomes")[1]}
            if "outcomes" in reader.tables()
            else set()
        )
    missing = 0
    for entry in written:
        table = pq.read_table(archive / entry["file"], columns=["declaration_id", "lane"])
        for declaration_id, lane in zip(*(table.column(c).to_pylist() for c in table.column_names), strict=True):  # fmt: skip
            missing += lane != "green" and declaration_id not in known
    return missing
