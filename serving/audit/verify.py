"""Walk a decision store's chain (its archived days first) and report the first break."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from features.errors import ParcelriskError
from serving.audit.chain import GENESIS, ChainReport, ChainRow, ChainWalker, Problem, parse_head
from serving.audit.expiry import (
    checked_expiries,
    expired_result_runs,
    expired_summary,
    expired_through,
    file_sha256,
    results_excused,
)
from serving.decision import STORED_FIELDS
from serving.sqlite_store import archived_rows, read_archive_manifest

if TYPE_CHECKING:
    from serving.store import DecisionStore


def verify_store(
    store: DecisionStore, head: str | None = None, key: bytes | None = None
) -> ChainReport:
    """The whole chain of ``store``, the first break named. ``head``: a head filed earlier
    (``SEQ:MAC``, ``parcelrisk audit head``) that must still be in the chain, so a rewrite by
    someone holding the key is found too. ``key``: the audit key (default: the store's).

    A store whose older days were archived (``parcelrisk audit archive``) is walked from its
    archive's first day on, then across the cut into the hot rows.
    """
    # An archive that cuts the store during the walk moves rows from the hot store after the
    # cut was read: they were seen nowhere, a false "deleted" alarm on an intact chain (3 of 6
    # runs beside a nightly archive: probe, 2026-12). A break found while the cut moved is
    # walked again from the new cut; a real break is found again.
    # An archive writes its manifest before it cuts: a walk between the two reads files past
    # the cut in force, so a break found while the manifest is ahead of the store is walked
    # again once the cut is made (a killed archive stays ahead: its break is then reported).
    deadline = time.monotonic() + _ARCHIVE_SETTLE_S
    while True:
        start = store.chain_start()
        report = _verify_from(store, start, head, key)
        if report.problem is None:
            if start[2] is None:
                report.problem = _archive_without_cut(store, report)
            return report
        if store.chain_start()[0] != start[0]:
            continue  # the cut moved during the walk
        if not _archive_ahead(start) or time.monotonic() > deadline:
            return report
        time.sleep(0.2)


def _archive_without_cut(store: DecisionStore, report: ChainReport) -> Problem | None:
    """An archive beside a SQLite store (``STORE.archive``) that the store's chain does not
    start from: its cut row was deleted (no key needed). With decisions after the cut the walk
    finds the gap; with every decision archived it found "0 decisions, intact" (probe 12)."""
    path = getattr(store, "path", None)
    if path is None:
        return None
    try:
        manifest = read_archive_manifest(Path(path).with_name(f"{Path(path).name}.archive"))
    except ParcelriskError:  # a manifest that does not read: not an archive to vouch for
        return None
    cut_seq = int(manifest.get("cut_seq", 0) or 0)
    if cut_seq <= 0 or (report.first_seq == 1):
        return None  # the hot chain starts at the beginning: the archive is not its past
    return Problem(
        "deleted",
        1,
        None,
        f"the archive beside the store holds decisions up to seq {cut_seq}, but the store "
        "records no archive cut: its cut was removed, and the chain read from here hides them",
    )


# how long a walk waits for an archive whose manifest is written to make its cut
_ARCHIVE_SETTLE_S = 30.0


def _archive_ahead(start: tuple[int, bytes, dict[str, Any] | None]) -> bool:
    """Whether the archive's manifest names a later cut than the store's (being made)."""
    cut_seq, _, cut = start
    if cut is None:
        return False
    try:
        return int(read_archive_manifest(Path(cut["archive"])).get("cut_seq", 0)) > cut_seq
    except (OSError, ValueError, TypeError):
        return False


def _verify_from(
    store: DecisionStore,
    start: tuple[int, bytes, dict[str, Any] | None],
    head: str | None,
    key: bytes | None,
) -> ChainReport:
    filed = parse_head(head) if head is not None else None
    cut_seq, cut_mac, cut = start
    walker = _DecisionWalker(key or store.key, start=(0, GENESIS), head=filed)
    sources: list[str] = []
    if cut is not None:
        sources += walk_archive(cut["archive"], walker, cut_seq=cut_seq, cut_mac=cut_mac)
    if walker.report.problem is None:
        sources.append(str(getattr(store, "path", "the hot store")))
        walker.feed(store.chain_rows(after_seq=cut_seq))
    report = walker.finish()
    report.sources = sources
    return report


class _DecisionWalker(ChainWalker):
    """The decisions' walk, keeping the most results a verified decision knew
    (``ChainReport.results_known_seq``)."""

    def _check(self, row: ChainRow, following: ChainRow | None) -> bool:
        if not super()._check(row, following):
            return False
        known = int(row.values[_KNOWN_RESULTS])
        if known > self.report.results_known_seq:
            self.report.results_known_seq = known
            self.report.results_known_by = row.decision_id
        return True


_KNOWN_RESULTS = STORED_FIELDS.index("known_results_seq")


def walk_archive(archive: str, walker: ChainWalker, *, cut_seq: int, cut_mac: bytes) -> list[str]:
    """Feed the archive's days to ``walker`` in seq order; a missing or swapped file, or an
    archive that does not end exactly at the hot store's cut, is the walk's problem."""
    folder = Path(archive)
    manifest = read_archive_manifest(folder)
    sources: list[str] = []
    expiries, problem = checked_expiries(folder, walker.key)
    if problem is not None:
        walker.report.problem = problem
        return sources
    through = expired_through(expiries)
    named: dict[str, dict[str, Any]] = {}
    if expiries:  # the oldest days were deleted under retention: walk on from the last record
        walker.resume_after(through, bytes.fromhex(expiries[-1]["last_mac"]))
        walker.report.expired = [expired_summary(r) for r in expiries]
        named = {f["file"]: f for r in expiries for f in r["files"]}
    for entry in sorted(manifest["files"], key=lambda e: e["first_seq"]):
        path = folder / entry["file"]
        if int(entry["last_seq"]) <= through:
            # still on disk: an expiry stopped half-way (a re-run deletes it); still listed:
            # stopped before the manifest was rewritten. Either way it is the file the record
            # names, or the record does not account for it
            if path.is_file():
                known = named.get(entry["file"])
                if known is None or file_sha256(path) != known["sha256"]:
                    walker.report.problem = Problem(
                        "altered",
                        int(entry["first_seq"]),
                        None,
                        f"archive file {path} (seq {entry['first_seq']}..{entry['last_seq']}) "
                        "is not the file the expiry record names (its sha256 differs)",
                    )
                    return sources
                walker.report.expiry_pending.append(str(path))
            continue
        if not path.is_file():
            walker.report.problem = Problem(
                "deleted",
                entry["first_seq"],
                None,
                f"archive file {path} (seq {entry['first_seq']}..{entry['last_seq']}) missing",
            )
            return sources
        sources.append(str(path))
        if not walker.feed(archived_rows(path)):
            return sources
    walker.finish_part()
    if walker.report.problem is None and (
        walker.last_link_seq != cut_seq or walker.last_mac != cut_mac
    ):
        walker.report.problem = Problem(
            "deleted",
            walker.last_link_seq + 1,
            None,
            f"the archive ends at seq {walker.last_link_seq}, the hot store starts "
            f"after seq {cut_seq}: archived decisions are missing",
        )
    return sources


def verify_results(
    results: Any,
    key: bytes,
    head: str | None = None,
    decisions: ChainReport | None = None,
    expired: list[tuple[int, int, bytes]] | None = None,
) -> dict[str, Any]:
    """The inspection results' own chain (``serving.audit.chain.RESULT_FIELDS``), walked as
    the decisions' is; ``results``: an outcome store (``chain_rows``).

    A store whose results were all stored before results were chained (no chain columns), and
    never opened by a writer since (which chains them), has nothing to verify: said, not
    passed as intact. In a store with the columns every result was chained when stored, so
    one without a MAC is a break (its MAC was removed), even where all were removed.
    ``head``: a results head filed earlier (``SEQ:MAC``), which must still be in the chain.
    ``decisions``: the decisions' walk of the same store: the chain must reach the results its
    verified decisions knew (``results_known_seq``), as it must reach a filed head.
    ``expired``: runs of results deleted under retention (first, last, MAC of the last), named
    by the decisions' signed expiry records: the walk steps over them."""
    filed = parse_head(head) if head is not None else None
    walker = ChainWalker(key, start=(0, GENESIS), head=filed)
    walker.skip_expired(expired or [])
    if not results.has_chain() and filed is None:
        unchained = sum(1 for _ in results.chain_rows())
        return {"intact": None, "checked": 0, "unchained": unchained, "problem": None}
    walker.feed(results.chain_rows())
    report = walker.finish()
    if report.problem is None and decisions is not None:
        report.problem = _short_of_decisions(report.last_seq or 0, decisions)
    problem = report.problem
    return {
        "intact": report.intact,
        "checked": report.checked,
        "head": report.head,
        "problem": None
        if problem is None
        else {
            "kind": problem.kind,
            "seq": problem.seq,
            "declaration_id": problem.decision_id,
            # the walker speaks of decisions where a filed head is missed
            "detail": problem.detail.replace("decisions up to", "results up to"),
        },
        "head_checked": report.head_checked,
    }


def _short_of_decisions(last_seq: int, decisions: ChainReport) -> Problem | None:
    """The results chain ends before the results a signed decision knew (its tail deleted,
    a correction removed): None when it reaches them."""
    known = decisions.results_known_seq
    if known <= last_seq:
        return None
    return Problem(
        "truncated",
        last_seq + 1,
        None,
        f"the results chain ends at seq {last_seq}, but decision {decisions.results_known_by} "
        f"was made knowing results up to seq {known} (its MAC covers it): "
        + (
            f"result {known} was"
            if known == last_seq + 1
            else f"results {last_seq + 1}..{known} were"
        )
        + " removed",
    )


def describe_results_problem(problem: dict[str, Any]) -> str:
    at = f"result seq {problem['seq']}"
    if problem.get("declaration_id"):
        at += f" (declaration {problem['declaration_id']})"
    return f"{problem['kind']} at {at}: {problem['detail']}"


def verify_results_of(
    store: DecisionStore, head: str | None = None, decisions: ChainReport | None = None
) -> dict[str, Any] | None:
    """``verify_results`` on the results beside ``store``'s decisions, read-only (``head``: a
    results head filed earlier; ``decisions``: ``verify_store``'s walk of the same store, whose
    decisions vouch for the results they knew); None when the store never took a result (a
    filed head, or a decision that knew results, then is a problem: the results were
    removed)."""
    from serving.audit.recompute import has_results
    from serving.store import open_outcome_store

    if not has_results(store.source):
        short = None if decisions is None else _short_of_decisions(0, decisions)
        if head is None and short is None:
            return None
        if short is not None:
            detail = short.detail.replace(
                "the results chain ends at seq 0", "the store holds no results table"
            )
            seq = short.seq
        else:
            seq, _ = parse_head(head)  # type: ignore[arg-type]
            detail = f"a results head at seq {seq} was filed but the store holds no results table"
        problem = {"kind": "truncated", "seq": seq, "declaration_id": None, "detail": detail}
        return {"intact": False, "checked": 0, "head": None, "problem": problem}
    results = open_outcome_store(store.source, store, read_only=True)
    try:
        records = _expiries_of(store)
        report = verify_results(results, store.key, head, decisions, expired_result_runs(records))
    finally:
        results.close()
    if report["problem"] is None and decisions is not None:
        orphan = _result_without_decision(store, results_excused(records))
        if orphan is not None:
            seq, declaration_id = orphan
            report["intact"] = False
            report["problem"] = {
                "kind": "deleted",
                "seq": seq,
                "declaration_id": declaration_id,
                "detail": "no decision in the store or its archive is of this declaration, "
                "though a result is only stored for a decided one: its decisions were removed "
                "(an archive cut deleted, or the decisions themselves)",
            }
    return report


def _expiries_of(store: DecisionStore) -> list[dict[str, Any]]:
    """The expiry records of ``store``'s archive that hold (a forged one excuses nothing; the
    decisions' walk names it)."""
    _, _, cut = store.chain_start()
    if cut is None:
        return []
    return checked_expiries(Path(cut["archive"]), store.key)[0]


def _result_without_decision(
    store: DecisionStore, excused: set[int] | None = None
) -> tuple[int, str] | None:
    """The first stored result (seq, declaration id) whose declaration no decision holds, hot
    or archived: results are refused for declarations never decided, so such a result says its
    decisions were removed (probe 12: with every decision archived, deleting the one cut row
    read as "0 decisions, intact" beside 4 results)."""
    from serving.audit.archived import archived_declarations
    from serving.store_read import read_only

    with read_only(store.source) as reader:
        _, rows = reader.query(
            "SELECT o.seq, o.declaration_id FROM outcomes AS o WHERE NOT EXISTS "
            "(SELECT 1 FROM decisions AS d WHERE d.declaration_id = o.declaration_id) "
            "ORDER BY o.seq"
        )
    if not rows:
        return None
    rows = [r for r in rows if int(r[0]) not in (excused or ())]  # their decisions expired
    if not rows:
        return None
    archived = archived_declarations(store, sorted({str(r[1]) for r in rows}))
    for seq, declaration_id in rows:
        if str(declaration_id) not in archived:
            return int(seq), str(declaration_id)
    return None


def describe_results(report: dict[str, Any] | None) -> str:
    """One phrase for a report header: what the results' walk found."""
    if report is None:
        return "no inspection results"
    if report["problem"] is not None:
        return f"FAILED: {describe_results_problem(report['problem'])}"
    if report["intact"] is None:
        return f"{report['unchained']} inspection results from before the chain, not verified"
    return f"{report['checked']} inspection results intact"
