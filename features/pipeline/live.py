"""The live entity state: the snapshot plus every declaration and inspection result seen since.

The snapshot (``features.pipeline.snapshot``) freezes the entity histories at the training
cutoff; a long-running scorer appends what it sees to a live layer on top of it, so a
declaration sees exactly the declarations declared strictly before it that the system has seen,
whatever request, chunk or worker carried them (the parcels of one request still see each other
by ``declared_at`` order, as in batch).

The families that learn from events (entity histories, split shipments) keep their live events
in a few sorted runs (``features.pipeline.history.EventRuns``) queried together with the
snapshot's index: appending sorts only the new events, merged into the smallest run. Families that
refit per period in batch (valuation references, text models) keep the evidence they are fitted
on and refit past the snapshot's period as batch does (``features.pipeline.refit``).

Memory is bounded: events older than the longest window (plus ``FOLD_LAG_DAYS``) fold into
per-entity totals, as the snapshot did at its cutoff.

Each declaration enters once (by ``declaration_id``), so a worker may be fed its own decisions
back from the shared decision store without counting them twice (``serving.scoring``'s
``ScoringRuntime.catch_up`` reads that store, the event log of every worker, before each batch).

What the snapshot holds is not appended again: declarations declared before its last one,
those declared at the same instant that it holds (by id: a date-only export cut part-way
through a day ends on the local midnight the rest of the day shares), and inspection results
of its declarations recorded before its cutoff. The history's results recorded after the
cutoff (a result comes back days after its declaration) ride beside the snapshot
(``EntityState.pending_results``) and are appended at their time when the state starts; a
result log handing over one of them again (the store the history was exported from replays
results inspected from the cutoff on) adds nothing. The snapshot was built from a history
that ends at its cutoff, and that history is what the decision store exported (``parcelrisk
history export``), so a new champion's state replays the store from its last declaration on
and nothing counts twice. A result stored after the history was exported
(``EntityState.results_seq``: it came back late) is appended whenever it was inspected.
A declaration the history does not hold but declared before its last one (a backlog re-sent
after an outage, pre-arrival data lodged before the export and sent after it) enters the state
if declared at most ``LATE_ENTRY_DAYS`` before that last one: the snapshot keeps the hashed
ids of those days (``EntityState.holds``), so a re-sent declaration it holds is not counted
twice; an earlier one never enters (its own features are still computed, with a warning).

Appends are serialised; a query reads each run set once, so a query racing an append (two
unmerged large requests scored in threads, or ``/explain`` beside a batch) may see that append
in some families and not yet in others. With merged requests (the default) a worker's batches
are scored one at a time, each after its catch-up.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable

import numpy as np
import pandas as pd

from features.intake.columns import FrameColumns, RecordColumns, StoredColumns, columns_of
from features.notes import RowNote
from features.pipeline.family import Rows
from features.pipeline.history import NO_TIME, US_PER_DAY
from features.pipeline.online import OnlineFeatures, online_features
from features.pipeline.prepare import Prepared, prepare, snapshot_horizon_us
from features.pipeline.snapshot import EntityState

# Live events are folded into totals once they are older than the longest window plus this lag:
# a declaration arriving up to this late (declared this long before the newest one seen) still
# gets exact windows; later than that, its windows may miss folded events.
FOLD_LAG_DAYS = 2


class LiveState:
    """A snapshot and the live layer of the families that learn from events (one per process)."""

    def __init__(self, snapshot: EntityState):
        self.snapshot = snapshot  # untouched: the live parts are copies with their own layer
        parts = dict(snapshot.parts)
        self.live_families = [f for f in snapshot.families if hasattr(f, "append_live")]
        for family in self.live_families:
            if parts.get(family.name) is not None:
                parts[family.name] = parts[family.name].with_live()
        # the state online_features reads: the snapshot's parts, live ones in place of theirs
        self.state = dataclasses.replace(snapshot, parts=parts)
        # the snapshot's last declaration: declared after it, none is the snapshot's; at or
        # before it, ``EntityState.holds`` tells (late entries from ``replay_from_us``)
        self.appends_from_us = snapshot.held_before_us
        # the declaration ids appended, with their declared_at, pruned with the folded events
        self.seen_ids = SeenIds()
        self.newest_us = NO_TIME
        # the newest inspection result appended (taken-back ones aside), at its inspected_at
        self.newest_result_us = NO_TIME
        # the snapshot's events before its horizon are totals already
        self.folded_before_us = snapshot_horizon_us(snapshot.cutoff_us, snapshot.params)
        self._lock = threading.Lock()  # one append at a time: ids and runs move together
        # the history's results recorded after the cutoff (``EntityState.pending_results``),
        # appended now at their time
        if snapshot.pending_results:
            self._append_carried(snapshot.pending_results)

    def _append_carried(self, pending: tuple[dict, ...]) -> None:
        declarations = StoredColumns([r["declaration"] for r in pending], self.snapshot.contract)
        events = [
            np.array([r["inspected_at_us"] for r in pending], dtype=np.int64),
            np.array([r["illicit"] for r in pending], dtype=bool),
            np.array([r["revenue_cents"] for r in pending], dtype=np.int64),
            np.ones(len(pending), dtype=np.int64),  # each added
        ]
        with self._lock:
            self._append_events(declarations, events, np.ones(len(pending), dtype=bool))

    def release_snapshot_copies(self) -> None:
        """Free what the snapshot keeps only to be saved (a family's event arrays, once its
        indexes hold them): for a process that serves it and never saves it. Saving the
        snapshot afterwards is refused."""
        for part in self.snapshot.parts.values():
            release = getattr(part, "release_event_copies", None)
            if release is not None:
                release()

    @property
    def replay_from_us(self) -> int:
        """What a new process replays from the decision log (declared, or results recorded, at
        or after this): everything the snapshot may not hold, late entries included."""
        return self.snapshot.late_entry_from_us

    def __len__(self) -> int:
        """Declarations held for de-duplication (appended, not yet folded)."""
        return len(self.seen_ids)

    @property
    def refit_count(self) -> int:
        """Fits made for refit periods after the snapshot's (``features.pipeline.refit``)."""
        return sum(getattr(p, "refit_count", 0) for p in self.state.parts.values())

    def features(
        self,
        declarations: pd.DataFrame | FrameColumns | RecordColumns,
        warnings: list[RowNote] | None = None,
    ) -> OnlineFeatures:
        """``online_features`` over the snapshot and everything appended so far (declarations
        appended already are not counted twice)."""
        declarations = columns_of(declarations)
        ids = declarations.text("declaration_id")
        already = self.seen_ids.among(ids) if len(self.seen_ids) else None
        # a re-sent declaration the snapshot holds is one of its events already; one declared
        # before the late-entry span is the snapshot's or came too late to count for others:
        # neither counts again, not even for the other declarations of its request
        t_us = declarations.t_us("declared_at")
        near = t_us <= self.appends_from_us
        if near.any():
            held = near & self.snapshot.holds(ids, t_us)
            already = held if already is None else already | held
        return online_features(
            declarations,
            self.state,
            warnings,
            already,
            appended_declared_us=self.newest_us,
            appended_result_us=self.newest_result_us,
        )

    def _rows(self, declarations: FrameColumns | RecordColumns, prep: Prepared | None) -> Rows:
        state = self.state
        if prep is None:
            prep = prepare(declarations, state.contract, state.params)
        return Rows(prep, state.params, state.contract, state.manifest)

    def append(
        self,
        declarations: pd.DataFrame | FrameColumns | RecordColumns,
        prep: Prepared | None = None,
    ) -> int:
        """Add scored declarations (any order, any time); those already seen, and those the
        snapshot holds (``EntityState.holds``: its own, and those declared too long before its
        last declaration to enter), are skipped.
        ``prep``: their prepared arrays if at hand (``OnlineFeatures.prep``), else made here.
        Returns how many were new."""
        declarations = columns_of(declarations)
        with self._lock:
            ids = declarations.text("declaration_id")
            new = _first_unseen(ids, self.seen_ids)
            if not new.any():
                return 0
            rows = self._rows(declarations, prep)
            t_us = rows.prep["t_us"]
            new &= ~self.snapshot.holds(ids, t_us)
            if not new.any():
                return 0
            if not new.all():
                keep = np.flatnonzero(new)
                rows.prep = rows.prep.take(keep)
            for family in self.live_families:
                part = self.state.parts.get(family.name)
                if part is not None:
                    family.append_live(rows, part)
            t_us = rows.prep["t_us"]
            self.seen_ids.add(ids[new], t_us)
            self.newest_us = max(self.newest_us, int(t_us.max()))
            self._fold_if_due()
            return int(new.sum())

    def _fold_if_due(self) -> None:
        """Fold the events older than every window (and a lag for late arrivals) into per-entity
        totals once a day of them has gathered: memory stays bounded over any run."""
        params = self.state.params
        horizon = self.newest_us - (params.max_window_days + FOLD_LAG_DAYS) * US_PER_DAY
        if horizon < self.folded_before_us + US_PER_DAY:
            return
        for family in self.live_families:
            part = self.state.parts.get(family.name)
            if part is not None:
                family.fold_live(part, horizon)
        # late entries (declared before the snapshot's last declaration) are kept: few, and
        # a re-send of one must still find it
        late = self.appends_from_us
        self.seen_ids.keep(lambda t: (t >= horizon) | (t <= late))
        self.folded_before_us = horizon

    def append_outcomes(
        self,
        declarations: pd.DataFrame | FrameColumns | RecordColumns,
        inspected_at_us: np.ndarray,
        illicit: np.ndarray,
        revenue_cents: np.ndarray,
        seqs: np.ndarray | None = None,
        signs: np.ndarray | None = None,
    ) -> int:
        """Add inspection results, one per declaration (as it was scored: its entity keys), at
        ``inspected_at_us`` (UTC microseconds): entity hit rates and the prior move from then on.
        Results of the snapshot's declarations recorded before its cutoff are in it already
        and are skipped; but with ``seqs`` (the results' seq in the decision store) and a
        snapshot that knows the store's last result its history held (``results_seq``), a
        result stored after that is appended whenever it was inspected: it came back after
        the history was exported.
        ``signs``: -1 for a result taken back. A correction is two rows with the correction's
        seq: the result it replaces, at that one's time, with -1, and the corrected one with +1.
        Both pass the rule above by the correction's seq, so what the snapshot held (the
        result current when the history was exported) is taken back exactly when the
        correction came after the export, and what was appended exactly when it was.
        The caller checks the results (known ids, no duplicates, not before the declaration).
        Returns how many were added."""
        declarations = columns_of(declarations)
        n = len(declarations)
        sign = np.ones(n, dtype=np.int64) if signs is None else np.asarray(signs, np.int64)
        arrays = [np.asarray(a) for a in (inspected_at_us, illicit, revenue_cents, sign)]
        if any(len(a) != n for a in arrays):
            raise ValueError(f"one inspection result per declaration: {n} declarations")
        after = arrays[0].astype(np.int64) >= self.snapshot.cutoff_us
        if seqs is not None and self.snapshot.results_seq is not None:
            after |= np.asarray(seqs, dtype=np.int64) > self.snapshot.results_seq
        if (~after & (arrays[0] >= self.snapshot.late_entry_from_us)).any():
            # recorded before the cutoff, so in the snapshot only if its declaration is: not
            # one the snapshot does not hold (a late entry; one declared at its last instant
            # it does not hold, as a date-only export's declaration and result on one local
            # midnight), nor one declared after it
            ids = declarations.text("declaration_id")
            after |= ~self.snapshot.holds(ids, declarations.t_us("declared_at"))
        if not after.any():
            return 0
        # A declaration's first result (not one side of a correction) whose declaration has
        # one in the snapshot (counted there, or carried) is that one again: the store the
        # history was exported from, a base-history parcel's result posted again, the same
        # result written to the minute in the history and to the second in the store. The
        # snapshot's stands; a correction replaces it.
        first = sign > 0
        if seqs is not None:
            seq = np.asarray(seqs, dtype=np.int64)
            correction = np.isin(seq, seq[sign < 0])
            first &= ~correction
            if self.snapshot.results_seq is not None:
                # a correction stored before the export: the history holds what it corrected
                # to (counted or carried), whenever that was inspected
                after &= ~(correction & (seq <= self.snapshot.results_seq))
        candidates = after & first
        if candidates.any() and self.snapshot.result_ids is not None:
            ids = declarations.text("declaration_id")
            rows = np.flatnonzero(candidates)
            after[rows[self.snapshot.holds_result(ids[rows])]] = False
        if not after.any():
            return 0
        with self._lock:
            self._append_events(declarations, arrays, after)
        return int(after.sum())

    def _append_events(
        self,
        declarations: FrameColumns | RecordColumns,
        arrays: list[np.ndarray],
        keep_rows: np.ndarray,
    ) -> None:
        """The rows ``keep_rows`` of these results into every family that counts them (under
        the lock)."""
        rows = self._rows(declarations, None)
        if not keep_rows.all():
            keep = np.flatnonzero(keep_rows)
            rows.prep = rows.prep.take(keep)
            arrays = [a[keep] for a in arrays]
        for family in self.live_families:
            part = self.state.parts.get(family.name)
            if part is not None and hasattr(family, "append_outcomes"):
                family.append_outcomes(rows, part, *arrays)
        added = arrays[0][arrays[3] > 0]
        if len(added):
            self.newest_result_us = max(self.newest_result_us, int(added.max()))


def _first_unseen(ids: np.ndarray, seen: SeenIds) -> np.ndarray:
    """Rows whose id is neither in ``seen`` nor repeated earlier in ``ids``."""
    here: set[str] = set()
    new = ~seen.among(ids) if len(seen) else np.ones(len(ids), dtype=bool)
    for row, i in enumerate(ids.tolist()):
        # one pass of set lookups: np.unique over a request's few ids cost more than this
        new[row] &= i not in here
        here.add(i)
    return new


class SeenIds:
    """The declaration ids a live state appended, each with its declared_at (UTC us), for
    de-duplication: a worker is fed every worker's decisions, its own included.

    Held as this process's 64-bit ``hash`` of each id (Python salts str hashes per process:
    never saved, never compared across processes) in a few sorted runs, with a table of 8-16
    one-byte slots an id telling most new ids apart at one look: 24-32 bytes an id, where
    a dict of the ids took ~170 (a worker grew 0.36 KB per declaration scored, 0.25 since:
    probe 24). Two ids sharing a hash is a chance of about n^2 / 2^65 (1e-5 at 20 million ids
    held): the later one would be taken as appended already, its parcel missing from its
    entities' counts.

    Appends are serialised by the live state; a query may run beside one (``/explain`` beside
    a batch): each change builds its runs and its table apart and puts each in place in one
    assignment, so a reader sees the ids before the append or after it, never a run missing."""

    _MIN_SLOTS = 1 << 16

    def __init__(self) -> None:
        # (hashes sorted, declared_at in that order); each run at most half the one before
        self._runs: list[tuple[np.ndarray, np.ndarray]] = []
        self._n = 0
        # (slots, mask): slot ``hash & mask`` is set for every id held (some others share it),
        # so an id whose slot is clear was never added, without searching the runs
        self._table = (np.zeros(self._MIN_SLOTS, dtype=bool), self._MIN_SLOTS - 1)

    def __len__(self) -> int:
        return self._n

    @staticmethod
    def _hashes(ids: np.ndarray) -> np.ndarray:
        return np.fromiter(map(hash, ids.tolist()), dtype=np.int64, count=len(ids))

    @staticmethod
    def _holds(
        h: int, runs: list[tuple[np.ndarray, np.ndarray]], table: tuple[np.ndarray, int]
    ) -> bool:
        """One hash, in Python scalars: a single declaration's path, ~1 us a run searched."""
        slots, mask = table
        if not slots[h & mask]:
            return False
        for hashes, _ in runs:
            at = int(hashes.searchsorted(h))
            if at < len(hashes) and hashes[at] == h:
                return True
        return False

    def among(self, ids: np.ndarray) -> np.ndarray:
        """Which of ``ids`` were added (and not dropped since)."""
        runs, (slots, mask) = self._runs, self._table
        if not runs or not len(ids):
            return np.zeros(len(ids), dtype=bool)
        if len(ids) <= 4:
            return np.array(
                [self._holds(hash(i), runs, (slots, mask)) for i in ids.tolist()], dtype=bool
            )
        wanted = self._hashes(ids)
        found = np.zeros(len(ids), dtype=bool)
        maybe = np.flatnonzero(slots[wanted & mask])
        if not len(maybe):
            return found
        asked = wanted[maybe]
        for hashes, _ in runs:
            at = np.searchsorted(hashes, asked).clip(max=len(hashes) - 1)
            found[maybe] |= hashes[at] == asked
        return found

    def __contains__(self, declaration_id: object) -> bool:
        return bool(self._runs) and self._holds(hash(declaration_id), self._runs, self._table)

    def add(self, ids: np.ndarray, t_us: np.ndarray) -> None:
        """Add ids (not among those held) declared at ``t_us``."""
        if not len(ids):
            return
        hashes = self._hashes(ids)
        order = np.argsort(hashes, kind="stable")
        runs = [*self._runs, (hashes[order], np.asarray(t_us, dtype=np.int64)[order])]
        # merged while the newest run is not below half the one before: O(log n) runs
        while len(runs) > 1 and 2 * len(runs[-1][0]) >= len(runs[-2][0]):
            (h2, t2), (h1, t1) = runs.pop(), runs.pop()
            merged, t = np.concatenate((h1, h2)), np.concatenate((t1, t2))
            order = np.argsort(merged, kind="stable")
            runs.append((merged[order], t[order]))
        n = self._n + len(hashes)
        slots, mask = self._table
        if 8 * n > len(slots):  # kept at 8+ slots an id: ~1 in 8 new ids searched
            self._table = _slot_table(runs, n)
        else:
            slots[hashes & mask] = True  # set before the runs hold them: never a false "no"
        self._runs, self._n = runs, n

    def keep(self, wanted: Callable[[np.ndarray], np.ndarray]) -> None:
        """Keep the ids whose declared_at ``wanted`` (a mask of the times) holds."""
        runs = []
        for hashes, t in self._runs:
            mask = wanted(t)
            if mask.any():
                runs.append((hashes[mask], t[mask]))
        n = sum(len(h) for h, _ in runs)
        table = _slot_table(runs, n)
        self._runs, self._n = runs, n  # the old table still covers these until replaced
        self._table = table


def _slot_table(runs: list[tuple[np.ndarray, np.ndarray]], n: int) -> tuple[np.ndarray, int]:
    """``SeenIds``' slot table for the ids of ``runs``, sized at 8-16 slots an id."""
    size = max(SeenIds._MIN_SLOTS, 1 << int(8 * n).bit_length())
    slots = np.zeros(size, dtype=bool)
    for hashes, _ in runs:
        slots[hashes & (size - 1)] = True
    return slots, size - 1
