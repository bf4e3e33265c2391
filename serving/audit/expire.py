"""Archived days deleted when their retention period is over, the chain still provable.

``parcelrisk audit expire --before DATE --reason TEXT`` deletes the archived day files
(``parcelrisk audit archive``) whose decisions were all answered before DATE (the day the
archive files them under: a retention period runs from the decision), oldest first, and the
inspection results of their declarations. It refuses while the hot store still holds
decisions answered before DATE (archive them first), a DATE in the future, and a chain that
does not verify (an expiry must never launder a tampered record).

The order: one signed record naming everything to be deleted (``serving.audit.expiry``),
then the results, then the files, then the manifest's entries. A crash after the record
leaves an intact chain (``verify`` resumes after the record, and names the files still on
disk, which must still match their sha256) and a re-run finishes the job; deleting first
would leave, after a crash, deleted days no record accounts for: "tampered" for ever.

Results are chained on their own, each after the last stored (``MAX(seq)``): the last
result is never deleted, or the next one would take its seq. When it answers an expired
declaration it is held back, named in the record, and deleted by a later expiry.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import logging
import os
import socket
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from features.errors import ParcelriskError
from serving.audit.archive import archive_lock
from serving.audit.expiry import (
    EXPIRY_LOG,
    checked_expiries,
    expired_through,
    expiry_mac,
    file_sha256,
)
from serving.audit.verify import verify_store
from serving.decision import iso_utc
from serving.sqlite_store import ARCHIVE_MANIFEST, read_archive_manifest

if TYPE_CHECKING:
    from serving.store import DecisionStore

logger = logging.getLogger(__name__)

_IN = 500  # ids per IN (...) query


def expire_before(
    store: DecisionStore, before: str, reason: str, by: str | None = None
) -> dict[str, Any]:
    """Delete the archived days answered before ``before`` (ISO UTC) and their results,
    leaving a signed record; first finish an expiry a crash stopped half-way."""
    if not reason.strip():
        raise ParcelriskError("--reason: say why these records are deleted (e.g. the rule)")
    now = iso_utc(int(datetime.now(UTC).timestamp() * 1_000_000))
    if before > now:
        raise ParcelriskError(
            f"--before {before[:10]} is in the future: only decisions already past their "
            "retention period can expire"
        )
    _refuse_hot_before(store, before)
    _, _, cut = store.chain_start()
    if cut is None:
        return {"expired": 0, "before": before, "note": "nothing was ever archived"}
    archive = Path(cut["archive"])
    with archive_lock(archive, "expired"):
        return _expire_locked(store, archive, before, reason.strip(), by or _who(), now)


def _who() -> str:
    try:
        return f"{getpass.getuser()}@{socket.gethostname()}"
    except (KeyError, OSError):  # no user name for this uid (a container)
        return f"uid {os.getuid()}@{socket.gethostname()}"


def _refuse_hot_before(store: DecisionStore, before: str) -> None:
    from serving.store_read import read_only

    with read_only(store.source) as reader:
        _, found = reader.query(
            "SELECT COUNT(*), MIN(answered_at) FROM decisions WHERE answered_at < {p}", (before,)
        )
    count, first = found[0]
    if count:
        raise ParcelriskError(
            f"the hot store still holds {count} decisions answered before {before[:10]} (the "
            f"first on {str(first)[:10]}): archive them first: parcelrisk audit archive "
            f"--before {before[:10]}"
        )


def _expire_locked(
    store: DecisionStore, archive: Path, before: str, reason: str, by: str, now: str
) -> dict[str, Any]:
    report = verify_store(store)
    if report.problem is not None:
        raise ParcelriskError(
            f"the chain is broken ({report.problem.describe()}): expiring would hide it; "
            "investigate with `parcelrisk audit verify` first"
        )
    records, _ = checked_expiries(archive, store.key)  # verify passed: they hold
    finished = [_carry_out(store, archive, r) for r in records]
    finished = [f for f in finished if f["files_deleted"] or f["results_deleted"]]
    through = expired_through(records)
    files = sorted(read_archive_manifest(archive)["files"], key=lambda e: e["first_seq"])
    expiring: list[dict[str, Any]] = []
    for entry in files:  # the oldest days, up to the first one not wholly before the date
        if int(entry["last_seq"]) <= through:
            continue
        if entry["day"] >= before[:10]:
            break
        expiring.append(entry)
    summary: dict[str, Any] = {"before": before, "archive": str(archive), "finished": finished}
    if not expiring:
        return {**summary, "expired": 0}
    runs, held = _results_to_expire(store, archive, expiring, files, records)
    record: dict[str, Any] = {
        "first_seq": through + 1,
        "last_seq": int(expiring[-1]["last_seq"]),
        "last_mac": expiring[-1]["last_mac"],
        "first_day": expiring[0]["day"],
        "last_day": expiring[-1]["day"],
        "before": before,
        "expired_at": now,
        "by": by,
        "reason": reason,
        "decisions": sum(int(e["rows"]) for e in expiring),
        "files": [
            {k: e[k] for k in ("day", "file", "first_seq", "last_seq", "rows", "sha256")}
            for e in expiring
        ],
        "results": {
            "count": sum(n for _, _, _, n in runs),
            "runs": [{"first_seq": a, "last_seq": b, "last_mac": m} for a, b, m, _ in runs],
            "held": held,
        },
        "previous": records[-1]["mac"] if records else "",
    }
    record["mac"] = expiry_mac(store.key, record).hex()
    _write_log(archive, [*records, record])  # first: what follows is then "expired"
    done = _carry_out(store, archive, record)
    return {
        **summary,
        "expired": record["decisions"],
        "seq": [record["first_seq"], record["last_seq"]],
        "days": [record["first_day"], record["last_day"]],
        "files_deleted": done["files_deleted"],
        "results_deleted": done["results_deleted"],
        "results_held": held,
        "record": str(archive / EXPIRY_LOG),
    }


def _write_log(archive: Path, records: list[dict[str, Any]]) -> None:
    tmp = archive / f"{EXPIRY_LOG}.tmp"
    with open(tmp, "w") as handle:
        handle.write(json.dumps({"records": records}, indent=1))
        handle.flush()
        os.fsync(handle.fileno())  # the record must be on disk before anything is deleted
    os.replace(tmp, archive / EXPIRY_LOG)
    with contextlib.suppress(OSError):  # the rename itself, where the directory can be synced
        folder = os.open(archive, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)


def _carry_out(store: DecisionStore, archive: Path, record: dict[str, Any]) -> dict[str, Any]:
    """Delete what a signed record names (again, after a crash: what is left of it)."""
    runs = [(r["first_seq"], r["last_seq"]) for r in record.get("results", {}).get("runs", [])]
    results_deleted = store.expire_results(runs)
    files_deleted = 0
    for entry in record["files"]:
        path = archive / entry["file"]
        if not path.is_file():
            continue
        if file_sha256(path) != entry["sha256"]:
            raise ParcelriskError(
                f"{path} is not the file the expiry record of seq {record['first_seq']}.."
                f"{record['last_seq']} names (its sha256 differs): not deleted; run "
                "`parcelrisk audit verify`"
            )
        path.unlink()
        files_deleted += 1
        with contextlib.suppress(OSError):  # a day folder left empty
            path.parent.rmdir()
    named = {entry["file"] for entry in record["files"]}
    manifest = read_archive_manifest(archive)
    kept = [e for e in manifest.get("files", []) if e["file"] not in named]
    if len(kept) != len(manifest.get("files", [])):
        tmp = archive / f"{ARCHIVE_MANIFEST}.tmp"
        tmp.write_text(json.dumps({**manifest, "files": kept}, indent=1))
        os.replace(tmp, archive / ARCHIVE_MANIFEST)
    if files_deleted or results_deleted:
        logger.info(
            "expired seq %s..%s: %d files, %d results deleted",
            record["first_seq"],
            record["last_seq"],
            files_deleted,
            results_deleted,
        )
    return {
        "seq": [record["first_seq"], record["last_seq"]],
        "files_deleted": files_deleted,
        "results_deleted": results_deleted,
    }


def _results_to_expire(
    store: DecisionStore,
    archive: Path,
    expiring: list[dict[str, Any]],
    files: list[dict[str, Any]],
    records: list[dict[str, Any]],
) -> tuple[list[tuple[int, int, str, int]], list[int]]:
    """(runs of consecutive result seqs to delete: first, last, MAC of the last as hex,
    count; the seqs held back) of the declarations decided only in ``expiring``: a
    declaration also decided in a day kept (hot or archived) keeps its results."""
    import pyarrow.parquet as pq

    from serving.store_read import read_only

    expired_ids: set[str] = set()
    for entry in expiring:
        table = pq.read_table(archive / entry["file"], columns=["declaration_id"])
        expired_ids.update(table.column("declaration_id").to_pylist())
    held_before = {int(s) for r in records for s in r.get("results", {}).get("held", [])}
    with read_only(store.source) as reader:
        if "outcomes" not in reader.tables():
            return [], []
        _, rows = reader.query("SELECT seq, declaration_id FROM outcomes ORDER BY seq")
        candidates = [
            (int(s), str(d)) for s, d in rows if str(d) in expired_ids or int(s) in held_before
        ]
        wanted = sorted({d for _, d in candidates})
        still: set[str] = set()
        for at in range(0, len(wanted), _IN):  # decided again in the hot store
            chunk = wanted[at : at + _IN]
            marks = ",".join(["{p}"] * len(chunk))
            _, found = reader.query(
                f"SELECT DISTINCT declaration_id FROM decisions WHERE declaration_id IN ({marks})",
                chunk,
            )
            still.update(str(r[0]) for r in found)
        last = int(rows[-1][0]) if rows else 0
        expiring_files = {e["file"] for e in expiring}
        through = expired_through(records)
        for entry in files if wanted else []:  # decided again in an archived day that stays
            if int(entry["last_seq"]) <= through or entry["file"] in expiring_files:
                continue
            table = pq.read_table(
                archive / entry["file"],
                columns=["declaration_id"],
                filters=[("declaration_id", "in", wanted)],
            )
            still.update(table.column("declaration_id").to_pylist())
        gone = [s for s, d in candidates if d not in still]
        held = [s for s in gone if s == last]
        gone = [s for s in gone if s != last]
        runs: list[list[int]] = []
        for seq in gone:
            if runs and runs[-1][1] == seq - 1:
                runs[-1][1] = seq
            else:
                runs.append([seq, seq])
        macs: dict[int, str] = {}
        for _, final in runs:
            _, found = reader.query("SELECT mac FROM outcomes WHERE seq = {p}", (final,))
            macs[final] = bytes(found[0][0] or b"").hex()
    return [(a, b, macs[b], b - a + 1) for a, b in runs], held
