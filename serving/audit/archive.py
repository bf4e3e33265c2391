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

Decisions and results are joined by declaration id: a result that arrives for an archived
decision is refused by ``outcomes ingest`` as unknown, so archive only days whose inspection
results are in (the command says how many inspected lanes are still without one).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from features.errors import ParcelriskError
from serving.audit.expiry import file_sha256
from serving.audit.verify import verify_store
from serving.decision import iso_utc
from serving.sqlite_store import (
    _COLUMNS,
    _N_STORED,
    ARCHIVE_MANIFEST,
    cut_mac_of,
    read_archive_manifest,
)

if TYPE_CHECKING:
    from serving.store import DecisionStore

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
    from serving.store_read import read_only

    _, _, cut = store.chain_start()
    if cut is not None and Path(cut["archive"]).resolve() != archive.resolve():
        # verify walks one archive, the last cut's, into the hot rows: the days archived
        # into another directory before would no longer be found (a false "deleted" alarm)
        raise ParcelriskError(
            f"this store's archive is {cut['archive']}: archive there (--to {cut['archive']}), "
            f"not into {archive}; one store, one archive directory"
        )
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
    tmp = archive / f"{ARCHIVE_MANIFEST}.tmp"
    tmp.write_text(json.dumps(manifest, indent=1))
    os.replace(tmp, archive / ARCHIVE_MANIFEST)
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
