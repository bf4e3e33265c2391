"""The decision store's tamper-evident chain: pure functions, the same for every store.

Each stored decision carries its sequence number, the MAC of the decision before it and its own
MAC: HMAC-SHA256, keyed with the audit key (``features.keys``, never stored with the data), over
its sequence number, the time it was answered, the previous MAC and every stored value. A plain
hash (the earlier ``record_hash``) stops nobody who can write the store: they edit the row and
recompute it. Without the key nobody can make a MAC that verifies, so an edited, inserted,
deleted or reordered record breaks the chain where it happened; with the key (an insider), the
head filed elsewhere (``parcelrisk audit head``) proves nothing before it was rewritten.

Every field is length-prefixed before it is MAC'd: a value can never shift bytes into its
neighbour and collide (feature vectors are raw bytes and may hold any byte).
"""

from __future__ import annotations

import hmac
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from features.keys import hmac_sha256
from serving.decision import ADDED_FIELDS, STORED_FIELDS

GENESIS = bytes(32)  # the "previous MAC" of the first decision ever recorded
_SEARCH = 64  # how far a broken record's original seq is looked for, to name what happened


def record_mac(
    key: bytes, seq: int, answered_at: str, prev_mac: bytes, values: Sequence[Any]
) -> bytes:
    """The MAC of one stored decision (``DecisionRecord.stored_values()``, features as
    canonical little-endian float64 bytes) at ``seq``, after ``prev_mac``.

    The message is every part's length, then the parts: one ``struct.pack`` for all the
    lengths keeps it to a few microseconds a decision (it runs for each one recorded)."""
    parts = [
        str(seq).encode(),
        answered_at.encode(),
        prev_mac,
        *[v if type(v) is bytes else str(v).encode("utf-8", "surrogateescape") for v in values],
    ]
    lengths = struct.pack(f">{len(parts)}I", *map(len, parts))
    return hmac_sha256(key, lengths + b"".join(parts))


_CHAINED_FROM_THE_START = len(STORED_FIELDS) - len(ADDED_FIELDS)


def decision_mac_input(values: Sequence[Any]) -> Sequence[Any]:
    """What a decision's MAC covers: its ``STORED_FIELDS`` values, less the trailing ones
    added after decisions were chained (``ADDED_FIELDS``) that are empty.

    Every decision recorded before those fields existed has them empty and a MAC over the
    fields before them: leaving trailing empties out keeps those MACs valid as they are, with
    no rewrite of the chain (rechaining would vouch anew for whatever had been edited) and no
    version column to trust, as results do (``result_mac_input``). The forms cannot stand for
    each other: the message starts with every part's length, so a run id removed from a
    decision, or one added to an old decision, fails its MAC. Results' values, and a cut's,
    are shorter than any decision's, so this leaves them as they are."""
    n = len(values)
    while n > _CHAINED_FROM_THE_START and values[n - 1] == "":
        n -= 1
    return values[:n]


def decision_mac(
    key: bytes, seq: int, answered_at: str, prev_mac: bytes, values: Sequence[Any]
) -> bytes:
    """The MAC of one decision (``DecisionRecord.stored_values()``, features canonical)."""
    return record_mac(key, seq, answered_at, prev_mac, decision_mac_input(values))


# An inspection result's stored values, in the order its MAC covers them. Results form a chain
# of their own (their own seq, from GENESIS), MAC'd as decisions are, ``recorded_at`` in the
# place of the answer time: an edited result would retrain the next model and move every hit
# rate the live state serves, so `verify` must see it as it sees an edited decision.
RESULT_FIELDS = (
    "declaration_id",
    "inspected_at",
    "illicit",
    "offence_type",
    "revenue_recovered",
    "source",
    "selection_reason",
    # why this result replaces the one stored before it for the same declaration (null: a
    # first result); a correction is a new, chained row, never an edit of the old one
    "correction",
)


def result_values(
    declaration_id: str,
    inspected_at: str,
    illicit: bool | int,
    offence_type: str | None,
    revenue_recovered: float | None,
    source: str,
    selection_reason: str | None = None,
    correction: str | None = None,
) -> tuple[Any, ...]:
    """A result's values as stored and as read back (``RESULT_FIELDS``): the types a store
    gives back, so writer and verifier MAC the same text."""
    revenue = None if revenue_recovered is None else float(revenue_recovered)
    return (
        declaration_id,
        inspected_at,
        int(illicit),
        offence_type,
        revenue,
        source,
        selection_reason,
        correction,
    )


def result_mac_input(values: Sequence[Any]) -> tuple[Any, ...]:
    """What a result's MAC covers: its ``RESULT_FIELDS`` values, less the trailing ones that
    are null (``selection_reason``, ``correction``).

    Both came after results were chained: every result stored before has them null and a MAC
    over the first six values, and every first result (not a correction) a MAC over six or
    seven. Leaving trailing nulls out keeps those MACs valid as they are, with no rewrite of
    the chain (rechaining would vouch anew for whatever had been edited) and no version column
    to trust. The forms cannot stand for each other: the message starts with every part's
    length, so six values, seven and eight never give the same bytes; a reason or a
    correction removed from a row, or one added to an old row, fails its MAC."""
    values = result_values(*values)
    n = len(values)
    while n > 6 and values[n - 1] is None:
        n -= 1
    return values[:n]


def result_link(
    seq: int, recorded_at: str, prev_mac: bytes | None, mac: bytes | None, values: Sequence[Any]
) -> ChainRow:
    """One stored result as the chain sees it (``values`` in ``RESULT_FIELDS`` order)."""
    return ChainRow(
        seq=int(seq),
        decision_id=str(values[0]),  # the declaration the result answers, to name it
        answered_at=recorded_at,
        prev_mac=bytes(prev_mac or b""),
        mac=bytes(mac or b""),
        values=result_mac_input(values),
    )


def result_mac(
    key: bytes, seq: int, recorded_at: str, prev_mac: bytes, values: Sequence[Any]
) -> bytes:
    """The MAC of one stored result (``values`` in ``RESULT_FIELDS`` order) at ``seq``."""
    return record_mac(key, seq, recorded_at, prev_mac, result_mac_input(values))


def chain_results(
    key: bytes, last: Sequence[Any] | None, recorded_at: str, rows: Sequence[Sequence[Any]]
) -> list[tuple[int, bytes, bytes]]:
    """(seq, prev_mac, mac) of new results (``RESULT_FIELDS`` values each) after the last
    stored one (``last``: its seq and MAC as stored; None: the first result ever).

    A last result whose MAC was removed: the new ones are chained from the start, so
    recording goes on and the removal stays the break ``audit verify`` names."""
    seq, prev = 0, GENESIS
    if last is not None:
        seq = int(last[0])
        prev = bytes(last[1]) if last[1] is not None else GENESIS
    links = []
    for values in rows:
        seq += 1
        mac = result_mac(key, seq, recorded_at, prev, values)
        links.append((seq, prev, mac))
        prev = mac
    return links


def format_head(seq: int, mac: bytes) -> str:
    """A chain head as text to file elsewhere: ``SEQ:MAC_HEX``."""
    return f"{seq}:{mac.hex()}"


def parse_head(text: str) -> tuple[int, bytes]:
    """``SEQ:MAC_HEX`` back to (seq, mac); ValueError naming the problem."""
    seq_text, sep, mac_text = text.strip().partition(":")
    try:
        if not sep:
            raise ValueError
        seq, mac = int(seq_text), bytes.fromhex(mac_text)
    except ValueError:
        raise ValueError(
            f"head {text!r}: expected SEQ:MAC as `parcelrisk audit head` prints it"
        ) from None
    if seq < 1 or len(mac) != 32:
        raise ValueError(f"head {text!r}: expected SEQ >= 1 and a 64-hex-digit MAC")
    return seq, mac


@dataclass(frozen=True)
class ChainRow:
    """One stored decision as the chain sees it."""

    seq: int
    decision_id: str
    answered_at: str
    prev_mac: bytes
    mac: bytes
    values: Sequence[Any]  # DecisionRecord.stored_values(), canonical features
    # a column the store keeps beside the content as a copy of part of it (for its queries),
    # named when the copy no longer equals the content the MAC covers
    copy_differs: str = ""

    def valid(self, key: bytes, seq: int | None = None) -> bool:
        """Whether its MAC matches its content (at ``seq``, default its own)."""
        # a decision's added fields left out when empty; a result's values are already its
        # MAC input, and shorter than any decision's (``decision_mac_input``)
        expected = record_mac(
            key,
            self.seq if seq is None else seq,
            self.answered_at,
            self.prev_mac,
            decision_mac_input(self.values),
        )
        return hmac.compare_digest(expected, self.mac)


@dataclass
class Problem:
    """The first place the chain breaks."""

    kind: str  # altered | inserted | deleted | reordered | rewritten | truncated
    seq: int
    decision_id: str | None
    detail: str

    def describe(self) -> str:
        at = f"seq {self.seq}" + (f" (decision {self.decision_id})" if self.decision_id else "")
        return f"{self.kind} at {at}: {self.detail}"


@dataclass
class ChainReport:
    """What a walk of the chain found."""

    checked: int = 0
    first_seq: int | None = None
    last_seq: int | None = None
    head: str | None = None  # the last record's SEQ:MAC
    head_checked: str | None = None  # the filed head proven, if one was given
    # a filed head at a seq expired under retention (``serving.audit.expiry``): its decisions
    # are gone lawfully, so it proves nothing, and says so instead of failing for ever
    head_expired: str | None = None
    problem: Problem | None = None
    sources: list[str] = field(default_factory=list)  # archive days and the hot store
    # Of a decisions walk: the most inspection results any verified decision knew when it was
    # made (its MAC'd ``known_results_seq``) and that decision's id. The results chain must
    # reach that seq: the decisions vouch its results existed, so a deleted tail is found.
    results_known_seq: int = 0
    results_known_by: str | None = None
    # the signed expiry records the walk started after (``serving.audit.expiry``), and the
    # expired files still on disk (an expiry stopped half-way: a re-run finishes it)
    expired: list[dict[str, Any]] = field(default_factory=list)
    expiry_pending: list[str] = field(default_factory=list)

    @property
    def intact(self) -> bool:
        return self.problem is None

    def as_dict(self) -> dict[str, Any]:
        return {
            "intact": self.intact,
            "checked": self.checked,
            "first_seq": self.first_seq,
            "last_seq": self.last_seq,
            "head": self.head,
            "head_checked": self.head_checked,
            "problem": None
            if self.problem is None
            else {
                "kind": self.problem.kind,
                "seq": self.problem.seq,
                "decision_id": self.problem.decision_id,
                "detail": self.problem.detail,
            },
            "sources": self.sources,
            "results_known_seq": self.results_known_seq,
            "expired": self.expired,
            "expiry_pending": self.expiry_pending,
            "head_expired": self.head_expired,
        }


class ChainWalker:
    """Walk stored decisions in seq order and stop at the first break.

    ``start``: (seq, mac) the walk starts after: (0, GENESIS) for a store that was never
    archived, else the archive cut. ``head``: a head filed earlier (``parse_head``), checked
    in ``finish``. Diagnosis of a break looks one record ahead, so rows are fed through
    ``feed`` and the walker keeps one back.
    """

    def __init__(
        self,
        key: bytes,
        start: tuple[int, bytes] = (0, GENESIS),
        head: tuple[int, bytes] | None = None,
    ) -> None:
        self.key = key
        self.report = ChainReport()
        self._prev_seq, self._prev_mac = start
        self._head = head
        self._mac_at_head: bytes | None = None
        self._pending: ChainRow | None = None
        # runs of records removed under retention: first seq -> (last seq, last MAC)
        self._expired_runs: dict[int, tuple[int, bytes]] = {}

    def resume_after(self, seq: int, mac: bytes) -> None:
        """Start the walk after ``seq`` (whose MAC was ``mac``): the records up to it expired
        under retention, their signed record vouching for the last MAC (before any feed)."""
        self._prev_seq, self._prev_mac = seq, mac
        if self._head is not None and self._head[0] <= seq:
            filed_seq, filed_mac = self._head
            if filed_seq == seq and hmac.compare_digest(filed_mac, mac):
                self._mac_at_head = mac
            elif filed_seq < seq:  # neither provable nor disprovable: its records are gone
                self.report.head_expired = format_head(filed_seq, filed_mac)
                self._head = None

    def skip_expired(self, runs: Iterable[tuple[int, int, bytes]]) -> None:
        """Accept these gaps (first seq, last seq, MAC of the last): records removed under
        retention, named by a signed expiry record; the next record must follow that MAC."""
        for first, last, mac in runs:
            self._expired_runs[int(first)] = (int(last), bytes(mac))

    @property
    def last_link_seq(self) -> int:
        """The seq of the last record checked, or the seq the walk resumed after."""
        return self._prev_seq

    def feed(self, rows: Iterable[ChainRow]) -> bool:
        """Check ``rows`` (in seq order); False once a break is found (stop feeding)."""
        for row in rows:
            if self._pending is not None and not self._check(self._pending, row):
                return False
            self._pending = row
        return True

    @property
    def last_mac(self) -> bytes:
        """The MAC of the last record checked (the start's, before any)."""
        return self._prev_mac

    def finish_part(self) -> None:
        """Check the record held back: the end of one part of the chain (an archive) whose
        continuation is checked against ``last_seq`` / ``last_mac``."""
        if self.report.problem is None and self._pending is not None:
            self._check(self._pending, None)
        self._pending = None

    def finish(self) -> ChainReport:
        """Check the last row and, if one was given, that the filed head is in the chain."""
        report = self.report
        if report.problem is None and self._pending is not None:
            self._check(self._pending, None)
        if report.problem is None and self._head is not None:
            seq, mac = self._head
            if seq > self._prev_seq:  # past the last record (or the expired ones resumed after)
                report.problem = Problem(
                    "truncated",
                    seq,
                    None,
                    f"the filed head is at seq {seq} but the chain ends at "
                    f"{report.last_seq or 0}: decisions up to the head were removed",
                )
            elif self._mac_at_head is None or not hmac.compare_digest(self._mac_at_head, mac):
                report.problem = Problem(
                    "rewritten",
                    seq,
                    None,
                    "the chain verifies but its MAC at the filed head differs: the records "
                    "up to it were rewritten (by someone holding the audit key) or replaced",
                )
            else:
                report.head_checked = format_head(seq, mac)
        return report

    def _check(self, row: ChainRow, following: ChainRow | None) -> bool:
        report = self.report
        expected_seq = self._prev_seq + 1
        while row.seq > expected_seq and expected_seq in self._expired_runs:
            self._prev_seq, self._prev_mac = self._expired_runs[expected_seq]
            expected_seq = self._prev_seq + 1
        problem = None
        if row.seq != expected_seq:
            if row.seq > expected_seq:
                missing = f"seq {expected_seq}" + (
                    f"..{row.seq - 1}" if row.seq - 1 > expected_seq else ""
                )
                problem = Problem(
                    "deleted", expected_seq, None, f"{missing} missing before {row.decision_id}"
                )
            else:
                problem = Problem(
                    "inserted", row.seq, row.decision_id, f"seq {row.seq} repeats an earlier one"
                )
        elif not row.valid(self.key):
            problem = self._diagnose(row, following)
        elif not hmac.compare_digest(row.prev_mac, self._prev_mac):
            problem = Problem(
                "reordered",
                row.seq,
                row.decision_id,
                "a valid record whose predecessor is not the record before it",
            )
        elif row.copy_differs:
            problem = Problem(
                "altered",
                row.seq,
                row.decision_id,
                f"its stored {row.copy_differs} no longer equals the declaration's, which the "
                "MAC covers: edited after it was recorded (what monitor, lanes and the live "
                "state select by)",
            )
        if problem is not None:
            report.problem = problem
            return False
        if report.first_seq is None:
            report.first_seq = row.seq
        report.checked += 1
        report.last_seq = row.seq
        report.head = format_head(row.seq, row.mac)
        if self._head is not None and row.seq == self._head[0]:
            self._mac_at_head = row.mac
        self._prev_seq, self._prev_mac = row.seq, row.mac
        return True

    def _diagnose(self, row: ChainRow, following: ChainRow | None) -> Problem:
        """A record whose MAC fails at its seq: edited in place, slipped in, moved, or the
        first of the records renumbered to close a gap left by a deletion."""
        expected = self._prev_mac
        if (
            following is not None
            and following.valid(self.key, row.seq)
            and row.valid(self.key, following.seq)
        ):
            return Problem(
                "reordered",
                row.seq,
                row.decision_id,
                f"it and the record after it ({following.decision_id}) changed places",
            )
        if following is not None and hmac.compare_digest(following.prev_mac, expected):
            # the record after it links to the one before it: this one was slipped in between
            return Problem(
                "inserted", row.seq, row.decision_id, "not part of the chain (no valid MAC)"
            )
        if following is not None and following.valid(self.key, row.seq):
            return Problem(
                "inserted",
                row.seq,
                row.decision_id,
                "not part of the chain; the records after it were renumbered to make room",
            )
        for gap in range(1, _SEARCH + 1):  # a valid record further on, renumbered down
            if row.valid(self.key, row.seq + gap):
                return Problem(
                    "deleted",
                    row.seq,
                    row.decision_id,
                    f"{gap} record(s) before it were removed and the rest renumbered "
                    f"(it was recorded at seq {row.seq + gap})",
                )
        for back in range(1, _SEARCH + 1):
            if row.seq - back >= 1 and row.valid(self.key, row.seq - back):
                return Problem(
                    "reordered",
                    row.seq,
                    row.decision_id,
                    f"a record of seq {row.seq - back} moved to seq {row.seq}",
                )
        detail = (
            "its stored content does not match its MAC: edited after it was recorded, or "
            "written by someone without the audit key"
        )
        if self.report.checked == 0 and following is not None and not following.valid(self.key):
            # nothing checked yet and the next record fails too: more likely the wrong key
            # than two edits in a row; said first, since it is the likelier cause
            detail += (
                "; the records after it fail too: check the audit key first "
                "(PARCELRISK_AUDIT_KEY or the key file) is the one the store was written with"
            )
        return Problem("altered", row.seq, row.decision_id, detail)
