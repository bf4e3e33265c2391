"""The archived decisions as a history reads them: the first decision of each declaration.

`parcelrisk audit archive` moves old days out of the hot store into Parquet files; their
inspection results stay in the store. `history export` (the analysts' retraining history) reads
both, so archiving never takes labelled declarations out of the next model's training data.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from serving.audit.expiry import expired_through, live_archive_files, read_expiries
from serving.decision import STORED_FIELDS
from serving.sqlite_store import _declared_at, archive_manifest_reaching

logger = logging.getLogger(__name__)

_DECLARATION_JSON = STORED_FIELDS.index("declaration_json")


@dataclass(frozen=True)
class FirstDecision:
    """The first decision of one declaration (scored first, then stored first)."""

    declaration_id: str
    declaration_json: str
    exploration: bool
    lane: str  # whether the model or someone else chose an inspection (history export)
    scored_at: str = ""  # when it was scored (as stored): history export places late results


def archived_first_decisions(store: Any, since_iso: str = "") -> list[FirstDecision]:
    """The first archived decision of each declaration declared at or after ``since_iso``
    (stored ISO UTC text: text order is time order), in seq order; none when the store was
    never archived. A day file the manifest lists but that is gone is an error: `audit
    verify` names it, and a history silently missing a day would train on less."""
    # a day answered before ``since`` holds declarations declared before it, but for the ones
    # dated ahead of the clock (the contract allows MAX_CLOCK_SKEW_DAYS): those days are read
    kept = _first_archived(
        store,
        ["declaration_id", "declaration_json", "exploration", "lane"],
        first_day=_first_day_holding(since_iso),
        with_scored_at=True,
    )
    return [
        FirstDecision(declaration_id, text, bool(exploration), lane, str(scored_at or ""))
        for declaration_id, text, exploration, lane, scored_at in kept
        if (_declared_at(text) or "") >= since_iso
    ]


def archived_declarations(store: Any, declaration_ids: Sequence[str]) -> dict[str, str]:
    """The declaration (stored JSON) of each of ``declaration_ids`` as first scored among the
    archived decisions (the first decision: scored first, then stored first); ids the archive
    does not hold are left out. One filtered read of each day file."""
    if not declaration_ids:
        return {}
    kept = _first_archived(
        store,
        ["declaration_id", "declaration_json"],
        filters=[("declaration_id", "in", list(declaration_ids))],
    )
    return dict(kept)


def _first_archived(
    store: Any,
    columns: list[str],
    *,
    first_day: str = "",
    filters: list[tuple[str, str, Any]] | None = None,
    with_scored_at: bool = False,
) -> list[tuple[Any, ...]]:
    """``columns`` (``declaration_id`` first) of each declaration's first archived decision
    (scored first, then stored first), in seq order: of the day files from ``first_day`` on,
    their rows matching ``filters``, and its ``scored_at`` last if ``with_scored_at``. None
    when the store was never archived."""
    import pyarrow.parquet as pq

    from features.errors import ParcelriskError

    _, _, cut = store.chain_start()
    if cut is None:
        return []
    folder = Path(cut["archive"])
    read = [*columns, "scored_at", "seq"]
    rows: list[tuple[Any, ...]] = []
    for entry in live_archive_files(folder, archive_manifest_reaching(cut)):
        if entry["day"] < first_day:
            continue
        path = folder / entry["file"]
        try:
            table = pq.read_table(path, columns=read, filters=filters)
        except (OSError, ValueError) as exc:  # pyarrow's errors are both
            raise ParcelriskError(
                f"archived day {path} cannot be read ({exc}): run `parcelrisk audit verify`"
            ) from None
        rows += zip(*(table.column(name).to_pylist() for name in read), strict=True)
    first: dict[str, tuple[Any, ...]] = {}
    for row in sorted(rows, key=lambda r: (r[-2], r[-1])):  # scored_at, then seq
        first.setdefault(row[0], row)
    kept = -1 if with_scored_at else -2  # seq goes; scored_at too unless asked for
    return [row[:kept] for row in sorted(first.values(), key=lambda r: r[-1])]


def with_archived(
    archived: Sequence[FirstDecision], hot: Sequence[tuple[str, str, Any, str, str]]
) -> list[tuple[str, str, Any, str, str]]:
    """(declaration_id, declaration_json, exploration, lane, scored_at) of the first
    decisions: archived ones first (older than any hot one), then the hot ones of
    declarations not archived."""
    seen = {d.declaration_id for d in archived}
    merged = [
        (d.declaration_id, d.declaration_json, d.exploration, d.lane, d.scored_at) for d in archived
    ]
    merged += [row for row in hot if row[0] not in seen]
    return merged


def archived_find(
    store: Any,
    *,
    answered_from: str | None = None,
    answered_to: str | None = None,
    lane: str | None = None,
    model_version: str | None = None,
    declaration_id: str | None = None,
    after_seq: int = 0,
    limit: int | None = None,
) -> list[Any]:
    """The archived decisions ``store.find`` would match, in seq order (at most ``limit``):
    what `audit list` and `audit export` read before the hot store, so a period before the
    archive cut is reviewed as any other. Only the day files the period touches are read."""
    from serving.decision import DecisionRecord

    _, _, cut = store.chain_start()
    if cut is None:
        return []
    folder = Path(cut["archive"])
    first_day = answered_from[:10] if answered_from else ""
    last_day = answered_to[:10] if answered_to else "9999"  # its day may hold earlier times
    # the filters read by pyarrow (only matching rows are decoded): a day of 30,000 decisions
    # turned into Python row by row took seconds a page, on the service's threads
    filters: list[tuple[str, str, Any]] = [("seq", ">", int(after_seq))]
    for column, op, value in (
        ("answered_at", ">=", answered_from),
        ("answered_at", "<", answered_to),
        ("lane", "==", lane),
        ("model_version", "==", model_version),
        ("declaration_id", "==", declaration_id),
    ):
        if value is not None:
            filters.append((column, op, value))
    found: list[DecisionRecord] = []
    for entry in live_archive_files(folder, archive_manifest_reaching(cut)):
        if not first_day <= entry["day"] <= last_day or entry["last_seq"] <= after_seq:
            continue
        for row in _day_rows(folder / entry["file"], filters):
            found.append(
                DecisionRecord.from_stored_values(
                    row.values, seq=row.seq, answered_at=row.answered_at
                )
            )
            if limit is not None and len(found) >= limit:
                return found
    return found


def find_with_archive(store: Any, *, after_seq: int = 0, limit: int, **filters: Any) -> list[Any]:
    """``store.find`` over the archived days and the hot store as one: at most ``limit``
    decisions after ``after_seq`` in seq order (archived seqs all precede the hot ones)."""
    found = archived_find(store, after_seq=after_seq, limit=limit, **filters)
    if len(found) < limit:
        found += store.find(after_seq=after_seq, limit=limit - len(found), **filters)
    return found


def since_with_archive(
    store: Any, seq: int, declared_from_us: int | None = None, limit: int | None = None
) -> list[tuple[int, str]]:
    """``store.since`` over the archived days and the hot store as one log: (seq,
    declaration_json) after ``seq`` declared at or after ``declared_from_us``, in seq order,
    at most ``limit``.

    What a new worker (a restart, a scale-up, a new champion) and `audit recompute` replay
    from a snapshot's cutoff: after an archive of days past that cutoff, reading the hot store
    alone rebuilt the live state without them, and two replicas scored one declaration with
    95 of 159 features apart (probe, 2026-12). Only the day files that can hold such
    declarations are read (answered at most ``MAX_CLOCK_SKEW_DAYS`` before their declaration);
    an archive that cannot be read stops the replay rather than leave its days out."""
    from features.errors import ParcelriskError
    from serving.decision import iso_utc

    _, _, cut = store.chain_start()
    rows: list[tuple[int, str]] = []
    if cut is not None and seq < int(cut["cut_seq"]):
        folder = Path(cut["archive"])
        try:
            files = archive_manifest_reaching(cut)["files"]  # absent, or behind: refused
        except (OSError, KeyError, ParcelriskError) as exc:
            raise ParcelriskError(
                f"the decision log's archived days ({folder}) cannot be read ({exc}): the live "
                "entity state would be built without them; give this process the archive "
                "directory (`audit archive --to`)"
            ) from None
        through = expired_through(read_expiries(folder))
        if seq < through:  # a snapshot older than the retention period: its log is gone
            logger.warning(
                "the decision log up to seq %d was expired under retention (`audit expire`): "
                "replayed from seq %d on, without the %d decisions before it",
                through,
                through + 1,
                through - seq,
            )
        since = iso_utc(int(declared_from_us)) if declared_from_us is not None else None
        first_day = _first_day_holding(since or "")
        filters: list[tuple[str, str, Any]] = [("seq", ">", int(seq))]
        if since is not None:
            filters.append(("declared_at", ">=", since))
        for entry in live_archive_files(folder, {"files": files}):
            if entry["last_seq"] <= seq or entry["day"] < first_day:
                continue
            found = _day_rows(folder / entry["file"], filters)
            rows += [(r.seq, r.values[_DECLARATION_JSON]) for r in found]
            if limit is not None and len(rows) >= limit:
                return rows[:limit]
    if limit is not None:
        if limit - len(rows) <= 0:
            return rows
        return rows + store.since(
            rows[-1][0] if rows else seq, declared_from_us, limit=limit - len(rows)
        )
    return rows + store.since(rows[-1][0] if rows else seq, declared_from_us)


def _first_day_holding(declared_from_iso: str) -> str:
    """The first archived day that can hold a declaration declared at or after the given
    time: a day answered before it holds earlier declarations only, but for the ones dated
    ahead of the clock (the contract allows ``MAX_CLOCK_SKEW_DAYS``). "" for no bound."""
    if not declared_from_iso:
        return ""
    from datetime import date, timedelta

    from features.intake.contract import MAX_CLOCK_SKEW_DAYS

    margin = timedelta(days=MAX_CLOCK_SKEW_DAYS + 1)
    return (date.fromisoformat(declared_from_iso[:10]) - margin).isoformat()


def _day_rows(path: Path, filters: list[tuple[str, str, Any]]) -> list[Any]:
    """The chain rows of one archived day file matching ``filters``; a file that cannot be
    read is an error naming it (`audit verify` says what happened to it)."""
    from features.errors import ParcelriskError
    from serving.sqlite_store import archived_rows

    try:
        return list(archived_rows(path, filters=filters))
    except (OSError, ValueError) as exc:
        raise ParcelriskError(
            f"archived day {path} cannot be read ({exc}): run `parcelrisk audit verify`"
        ) from None
