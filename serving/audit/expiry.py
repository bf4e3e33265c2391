"""The signed records of archived days deleted under retention, as the chain's readers see them.

``parcelrisk audit expire`` (``serving.audit.expire``) deletes the oldest archived days once
their retention period is over. It writes one record per run to ``ARCHIVE/expired.json``
before it deletes anything: the seq range, the MAC of its last decision (where the chain now
resumes), the files with their sha256, the results deleted with them, who, when and why,
MAC'd with the audit key as the archive cut is. ``verify`` walks from the last record's seq
on: days deleted with a record are "expired", days deleted without one are still "deleted",
and a record nobody with the key made fails its MAC.

Records only ever remove the start of the chain (the oldest days), each following the one
before it (its ``previous`` MAC): one record removed from the middle of the log is found.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path
from typing import Any

from features.errors import ParcelriskError
from serving.audit.chain import Problem, record_mac

EXPIRY_LOG = "expired.json"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def expiry_mac(key: bytes, record: dict[str, Any]) -> bytes:
    """The MAC of an expiry record: every field but ``mac``, as canonical JSON."""
    body = json.dumps(
        {k: v for k, v in record.items() if k != "mac"}, sort_keys=True, separators=(",", ":")
    )
    return record_mac(
        key,
        int(record["last_seq"]),
        str(record["expired_at"]),
        bytes.fromhex(record["last_mac"]),
        ("chain-expiry", body),
    )


def read_expiries(archive: Path) -> list[dict[str, Any]]:
    """The expiry records of an archive directory, oldest first, unchecked (none: [])."""
    path = Path(archive) / EXPIRY_LOG
    if not path.is_file():
        return []
    try:
        records = json.loads(path.read_text())["records"]
        if not isinstance(records, list):
            raise TypeError("records is not a list")
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as exc:
        raise ParcelriskError(f"{path}: unreadable expiry log: {exc}") from exc
    return records


def checked_expiries(archive: Path, key: bytes) -> tuple[list[dict[str, Any]], Problem | None]:
    """The expiry records that hold (MAC'd with ``key``, each following the one before it,
    the first from seq 1), and the first problem, if any."""
    try:
        records = read_expiries(archive)
    except ParcelriskError as exc:
        return [], Problem("altered", 1, None, f"{exc}: the expiry records cannot be checked")
    previous, next_seq = "", 1
    for i, record in enumerate(records):
        try:
            first, last = int(record["first_seq"]), int(record["last_seq"])
            valid = hmac.compare_digest(bytes.fromhex(record["mac"]), expiry_mac(key, record))
        except (KeyError, ValueError, TypeError):
            first, last, valid = next_seq, next_seq, False
        if not valid:
            return records[:i], Problem(
                "altered",
                first,
                None,
                f"the expiry record of seq {first}..{last} in {Path(archive) / EXPIRY_LOG} does "
                "not carry a valid MAC: not made by `parcelrisk audit expire` with this audit "
                "key (edited or forged)",
            )
        if first != next_seq or record.get("previous", "") != previous:
            return records[:i], Problem(
                "deleted",
                next_seq,
                None,
                f"the expiry record of seq {first}..{last} does not follow the one before it "
                f"(which ended at seq {next_seq - 1}): an expiry record was removed",
            )
        previous, next_seq = record["mac"], last + 1
    return records, None


def expired_through(records: list[dict[str, Any]]) -> int:
    """The last seq expired (0: none)."""
    return int(records[-1]["last_seq"]) if records else 0


def expired_result_runs(records: list[dict[str, Any]]) -> list[tuple[int, int, bytes]]:
    """(first, last, MAC of the last) of every run of results deleted under retention."""
    return [
        (int(run["first_seq"]), int(run["last_seq"]), bytes.fromhex(run["last_mac"]))
        for record in records
        for run in record.get("results", {}).get("runs", [])
    ]


def results_excused(records: list[dict[str, Any]]) -> set[int]:
    """The result seqs whose decisions expired: deleted (or being deleted) with them, or held
    back as the results chain's last link (``held``)."""
    seqs: set[int] = set()
    for record in records:
        for run in record.get("results", {}).get("runs", []):
            seqs.update(range(int(run["first_seq"]), int(run["last_seq"]) + 1))
        seqs.update(int(s) for s in record.get("results", {}).get("held", []))
    return seqs


def live_archive_files(archive: Path, manifest: dict[str, Any]) -> list[dict[str, Any]]:
    """The manifest's day files not expired, by first seq: what the archive's readers read
    (an expiry stopped between deleting its files and rewriting the manifest lists them)."""
    through = expired_through(read_expiries(archive))
    files = sorted(manifest.get("files", []), key=lambda e: e["first_seq"])
    return [e for e in files if int(e["last_seq"]) > through]


def describe_expiry(record: dict[str, Any]) -> str:
    """One line: what a record (or its ``expired_summary``) expired, when, by whom and why."""
    results = record.get("results", 0)
    count = results.get("count", 0) if isinstance(results, dict) else results
    return (
        f"decisions seq {record['first_seq']}..{record['last_seq']} ({record['first_day']} to "
        f"{record['last_day']}) and {count} inspection results expired on {record['expired_at'][:10]} under retention (before "
        f"{record['before'][:10]}): signed record by {record['by']}, reason: {record['reason']}"
    )


def expired_summary(record: dict[str, Any]) -> dict[str, Any]:
    """An expiry record as `verify` reports it (the files counted, not listed)."""
    keep = ("first_seq", "last_seq", "first_day", "last_day", "before", "expired_at", "by")
    return {
        **{k: record[k] for k in keep},
        "reason": record["reason"],
        "decisions": record["decisions"],
        "results": record.get("results", {}).get("count", 0),
        "files": len(record["files"]),
    }


def expiry_notice(store: Any, answered_from: str | None = None) -> str | None:
    """A line for readers of a period starting ``answered_from`` (None: any) that reaches back
    into days expired under retention: what was deleted, when and why; None otherwise."""
    _, _, cut = store.chain_start()
    if cut is None:
        return None
    try:
        records = read_expiries(Path(cut["archive"]))
    except ParcelriskError:
        return None  # `audit verify` names it
    if not records or (answered_from is not None and answered_from[:10] > records[-1]["last_day"]):
        return None
    return "; ".join(describe_expiry(r) for r in records)
