"""Point-in-time prefix sums over events: the one kernel batch and online share.

An ``EventIndex`` holds events (entity code, time, integer weights) sorted by (code, time) with
cumulative sums, so "how many events of entity c happened strictly before t" is two binary
searches, for a million queries at once. Weights are integers (counts, cents) so sums are exact
and batch and online agree to the last digit whatever the order of summation.

Time semantics: an event at time e counts for a query at time t iff e < t (strictly). Parcels
declared at the same instant do not see each other, which makes ties deterministic and makes the
result independent of input order.
"""

from __future__ import annotations

import itertools
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from features.errors import ParcelriskError

NO_TIME = np.iinfo(np.int64).min  # "never seen"
US_PER_DAY = 86_400 * 1_000_000
US_PER_HOUR = 3_600 * 1_000_000


def codes_of(lookup: dict, keys: Any, dtype: Any = np.int64) -> np.ndarray:
    """``lookup[key]`` for each key, -1 for keys it lacks.

    dict.get mapped in C: for request-sized inputs far cheaper than building a pandas Index,
    and linear for batch-sized ones. The one key -> code lookup of the feature families.
    """
    return np.fromiter(map(lookup.get, keys, itertools.repeat(-1)), dtype=dtype, count=len(keys))


# Below this many values a Python dict beats pandas: pd.factorize costs 30-70 us per call
# whatever the size, a request of one declaration calls it several times.
SMALL_INPUT = 64


def is_small(n: int) -> bool:
    """Whether ``n`` values are request-sized: Python loops, not pandas, for them."""
    return n < SMALL_INPUT


def factorize(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``pd.factorize`` of an object array: int64 codes in order of first appearance, -1 for
    None/NaN, and the distinct values (an object array). Request-sized inputs by a dict."""
    if not is_small(len(values)):
        codes, uniques = pd.factorize(pd.Series(values, dtype=object), use_na_sentinel=True)
        return codes.astype(np.int64), np.asarray(uniques, dtype=object)
    seen: dict = {}
    codes = np.fromiter(
        (-1 if is_missing(v) else seen.setdefault(v, len(seen)) for v in values.tolist()),
        dtype=np.int64,
        count=len(values),
    )
    uniques = np.empty(len(seen), dtype=object)
    uniques[:] = list(seen)
    return codes, uniques


def is_missing(value: Any) -> bool:
    """What pd.factorize codes -1: None, NaN (float or numpy), pd.NA, NaT."""
    return value is None or value is pd.NA or value is pd.NaT or value != value


def _search(haystack: np.ndarray, needles: np.ndarray) -> np.ndarray:
    """np.searchsorted(side='left'), sorting large needle arrays first (3x faster: cache hits)."""
    if len(needles) < 20_000 or np.all(needles[1:] >= needles[:-1]):
        return np.searchsorted(haystack, needles, side="left")
    order = np.argsort(needles, kind="stable")
    out = np.empty(len(needles), dtype=np.int64)
    out[order] = np.searchsorted(haystack, needles[order], side="left")
    return out


class EventIndex:
    """Events sorted by (code, time) with prefix sums of integer weights."""

    def __init__(
        self, codes: np.ndarray, times_us: np.ndarray, weights: dict[str, np.ndarray] | None = None
    ):
        codes = np.asarray(codes, dtype=np.int64)
        times_us = np.asarray(times_us, dtype=np.int64)
        if len(codes) and codes.min() < 0:
            raise ValueError("entity codes must be non-negative")
        # Rank times among the distinct event times so (code, rank) packs into one int64 key
        # for any time range and any number of entities up to ~4e12 / n_events.
        # one sort gives the distinct times and each event's rank among them (np.unique and a
        # searchsorted cost ~3x more: the live layer re-indexes a few thousand events per append)
        by_time = np.argsort(times_us, kind="stable")
        ordered = times_us[by_time]
        first = np.ones(len(ordered), dtype=bool)
        first[1:] = ordered[1:] != ordered[:-1]
        self.unique_times = ordered[first]
        rank = np.empty(len(ordered), dtype=np.int64)
        rank[by_time] = np.cumsum(first) - 1
        self.stride = np.int64(len(self.unique_times) + 1)
        keys = codes * self.stride + rank
        order = np.argsort(keys, kind="stable")
        # each event's time is its rank's (keys % stride) distinct time: not kept per event,
        # which saves 8 bytes an event in every snapshot and live index of every worker
        self.keys = keys[order]
        self.cumsums = {
            name: np.concatenate(([0], np.cumsum(np.asarray(w, dtype=np.int64)[order])))
            for name, w in (weights or {}).items()
        }
        self._start_cache: tuple[np.ndarray, np.ndarray] | None = None

    @classmethod
    def _sorted(
        cls,
        keys: np.ndarray,
        unique_times: np.ndarray,
        stride: np.int64,
        cumsums: dict[str, np.ndarray],
    ) -> EventIndex:
        """An index from its parts, already in order (``merge_indexes``)."""
        index = cls.__new__(cls)
        index.keys, index.unique_times, index.stride = keys, unique_times, stride
        index.cumsums = cumsums
        index._start_cache = None
        return index

    def __len__(self) -> int:
        return len(self.keys)

    @property
    def sorted_times(self) -> np.ndarray:
        """Each event's time, in the index's (code, time) order (computed when asked)."""
        return self.unique_times[self.keys % self.stride]

    def group_start(self, codes: np.ndarray) -> np.ndarray:
        """Index of each code's first event (cached for the last codes array asked)."""
        cache = self._start_cache  # one read: requests may share a snapshot index across threads
        if cache is not None and cache[0] is codes:
            return cache[1]
        start = _search(self.keys, codes * self.stride)
        self._start_cache = (codes, start)
        return start

    def position(self, codes: np.ndarray, times_us: np.ndarray) -> np.ndarray:
        """Index of the first event of ``codes`` at or after ``times_us`` (= events before it)."""
        rank = _search(self.unique_times, times_us)
        return _search(self.keys, codes * self.stride + rank)

    def prefix(
        self, codes: np.ndarray, times_us: np.ndarray, shift_us: int = 0
    ) -> dict[str, np.ndarray]:
        """Count and weight sums of each code's events strictly before ``times_us - shift_us``."""
        pos = self.position(codes, times_us - shift_us if shift_us else times_us)
        start = self.group_start(codes)
        out = {"count": pos - start}
        for name, cum in self.cumsums.items():
            out[name] = cum[pos] - cum[start]
        return out

    def first_time_before(self, codes: np.ndarray, times_us: np.ndarray) -> np.ndarray:
        """Time of the code's earliest event before ``times_us``, or NO_TIME."""
        if not len(self.keys):
            return np.full(len(codes), NO_TIME, dtype=np.int64)
        start = self.group_start(codes)
        before = self.position(codes, times_us)
        first = self.unique_times[self.keys[np.minimum(start, len(self.keys) - 1)] % self.stride]
        return np.where(before > start, first, NO_TIME)


def request_events(
    codes: np.ndarray, times_us: np.ndarray, weights: dict[str, np.ndarray] | None = None
) -> tuple[EventIndex, ...]:
    """A request's own rows as an index for queries at those rows' times, as a tuple of parts
    for ``CombinedIndex``: empty when the rows are all at one instant (one declaration), since
    an event counts only strictly before a query; that saves a sort per family and request."""
    if len(times_us) == 0 or times_us.min() == times_us.max():
        return ()
    return (EventIndex(codes, times_us, weights),)


class CombinedIndex:
    """Disjoint event sets queried as one (a prebuilt snapshot, the live runs, a request's rows).

    Counts and integer sums add exactly; the first time is the earliest of the parts. This keeps
    a request from re-sorting the whole snapshot.
    """

    def __init__(self, *parts: EventIndex):
        self.parts = tuple(p for p in parts if len(p)) or parts[:1]

    def prefix(
        self, codes: np.ndarray, times_us: np.ndarray, shift_us: int = 0
    ) -> dict[str, np.ndarray]:
        first, *rest = (p.prefix(codes, times_us, shift_us) for p in self.parts)
        for other in rest:
            first = {k: first[k] + other[k] for k in first}
        return first

    def first_time_before(self, codes: np.ndarray, times_us: np.ndarray) -> np.ndarray:
        big = np.iinfo(np.int64).max
        first = np.full(len(codes), big, dtype=np.int64)
        for part in self.parts:
            t = part.first_time_before(codes, times_us)
            first = np.minimum(first, np.where(t == NO_TIME, big, t))
        return np.where(first == big, NO_TIME, first)


def events_of(index: EventIndex) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """The (codes, times, weights) an index was built from, in its sorted order."""
    return (
        index.keys // index.stride,
        index.sorted_times,
        {name: np.diff(cum) for name, cum in index.cumsums.items()},
    )


def merge_indexes(older: EventIndex, newer: EventIndex) -> EventIndex:
    """One index over the events of two: the same as ``EventIndex`` built from the older's
    events followed by the newer's (at one code and instant, the older's come first), in
    linear time. Both are sorted by (code, time) already, so their keys are re-ranked on the
    union of their distinct times, which keeps each sorted, and the two are merged; building
    it from the events would sort them all again (a live run of 500k events: ~60 ms, each time
    a request's events reach it)."""
    if set(older.cumsums) != set(newer.cumsums):
        raise ValueError(f"weights differ: {tuple(older.cumsums)} and {tuple(newer.cumsums)}")
    if not len(newer):
        return older
    if not len(older):
        return newer
    times = np.concatenate([older.unique_times, newer.unique_times])
    times.sort(kind="stable")  # two sorted runs: timsort merges them in one pass
    distinct = np.ones(len(times), dtype=bool)
    distinct[1:] = times[1:] != times[:-1]
    unique_times = times[distinct]
    stride = np.int64(len(unique_times) + 1)

    def rekeyed(index: EventIndex) -> np.ndarray:
        rank = np.searchsorted(unique_times, index.unique_times)
        return (index.keys // index.stride) * stride + rank[index.keys % index.stride]

    old_keys, new_keys = rekeyed(older), rekeyed(newer)
    # each newer event goes after the older events with keys up to its own
    at = np.searchsorted(old_keys, new_keys, side="right") + np.arange(len(new_keys))
    from_older = np.ones(len(old_keys) + len(new_keys), dtype=bool)
    from_older[at] = False

    def merged(old: np.ndarray, new: np.ndarray) -> np.ndarray:
        out = np.empty(len(from_older), dtype=np.int64)
        out[at] = new
        out[from_older] = old
        return out

    cumsums = {
        name: np.concatenate(([0], np.cumsum(merged(np.diff(cum), np.diff(newer.cumsums[name])))))
        for name, cum in older.cumsums.items()
    }
    return EventIndex._sorted(merged(old_keys, new_keys), unique_times, stride, cumsums)


# --- batch: a whole history queried by its own rows ---------------------------------------------
#
# In a batch build the queries are the history's rows (sorted by time), at a few time shifts
# (the windows). Sorting the rows once per entity by (code, time) makes every query of every
# shift a search of sorted needles in sorted keys (a merge, ~10x faster than unsorted needles),
# and the ranks of the shifted times among the event times are shared by every entity. The
# definitions are those of ``EventIndex`` (strictly before; ties at an instant do not see each
# other); the counts and integer sums are exact, so batch and online agree to the last digit.


class TimeGrid:
    """Distinct event times, and each row's time (minus a shift) ranked among them.

    One grid per kind of event (declarations, inspection results) serves every entity of a
    build: the rank of ``row_times - shift`` is computed once per shift.
    """

    def __init__(self, event_times_us: np.ndarray, row_times_us: np.ndarray):
        times = np.asarray(event_times_us, dtype=np.int64)
        if len(times) > 1 and not bool(np.all(times[1:] >= times[:-1])):
            times = np.sort(times)
        distinct = np.ones(len(times), dtype=bool)
        distinct[1:] = times[1:] != times[:-1]
        self.unique = times[distinct]
        self.stride = np.int64(len(self.unique) + 1)
        self.row_times = np.asarray(row_times_us, dtype=np.int64)
        self._row_ranks: dict[int, np.ndarray] = {}

    def rank(self, times_us: np.ndarray) -> np.ndarray:
        """Distinct event times strictly before each time."""
        return np.searchsorted(self.unique, times_us, side="left")

    def row_rank(self, shift_us: int) -> np.ndarray:
        """``rank(row_times - shift_us)``, kept per shift."""
        if shift_us not in self._row_ranks:
            self._row_ranks[shift_us] = self.rank(self.row_times - shift_us)
        return self._row_ranks[shift_us]


class RowQueries:
    """One entity's code for each row of a history (rows in time order), sorted once by
    (code, time). Every code must be >= 0: give rows with an unknown key a code of their own
    (their results are forgotten by the caller)."""

    def __init__(self, codes: np.ndarray):
        self.codes = np.asarray(codes, dtype=np.int64)
        # rows are in time order, so a stable sort by code sorts by (code, time); numpy sorts
        # 16-bit keys by radix (linear, ~8x faster): most entities have fewer codes than that
        narrow = len(self.codes) and self.codes.max() < np.iinfo(np.uint16).max
        keys = self.codes.astype(np.uint16) if narrow else self.codes
        self.order = np.argsort(keys, kind="stable")
        self.sorted_codes = self.codes[self.order]
        self._inverse: np.ndarray | None = None

    def run_starts(self, *sorted_keys: np.ndarray) -> np.ndarray:
        """Per row in sorted order: the position of the first row of its run of equal
        (code, *sorted_keys), e.g. its code's first row, or its first row at the same instant."""
        n = len(self.sorted_codes)
        new = np.ones(n, dtype=bool)
        new[1:] = self.sorted_codes[1:] != self.sorted_codes[:-1]
        for keys in sorted_keys:
            new[1:] |= keys[1:] != keys[:-1]
        return np.maximum.accumulate(np.where(new, np.arange(n, dtype=np.int64), 0))

    def in_rows(self, sorted_values: np.ndarray) -> np.ndarray:
        """Values given in sorted order, back in row order."""
        if self._inverse is None:
            inverse = np.empty(len(self.order), dtype=np.int64)
            inverse[self.order] = np.arange(len(self.order), dtype=np.int64)
            self._inverse = inverse
        return sorted_values[self._inverse]


class BatchIndex:
    """Events of one entity (codes in the ``RowQueries``' code space, times ranked on
    ``grid``) with prefix sums of integer weights, queried by the rows of ``rows`` only.

    Same answers as ``EventIndex.prefix`` / ``first_time_before`` for those rows; asked for
    other queries, it refuses (a programming error, not a data one).
    """

    def __init__(
        self,
        rows: RowQueries,
        grid: TimeGrid,
        codes: np.ndarray,
        times_us: np.ndarray,
        weights: dict[str, np.ndarray] | None = None,
        *,
        order: np.ndarray | None = None,
    ):
        """``order``: a permutation known to sort the events by (code, time), if any (the
        rows' own order when the events are the rows)."""
        ranks = grid.row_rank(0) if times_us is grid.row_times else grid.rank(times_us)
        keys = np.asarray(codes, dtype=np.int64) * grid.stride + ranks
        if order is None:
            order = np.argsort(keys, kind="stable")
        self.rows, self.grid = rows, grid
        # the events are the rows themselves: starts and shift-0 positions are run boundaries
        self.are_rows = order is rows.order
        self.keys = keys[order]
        self.sorted_times = np.asarray(times_us, dtype=np.int64)[order]
        self.cumsums = {
            name: np.concatenate(([0], np.cumsum(np.asarray(w, dtype=np.int64)[order])))
            for name, w in (weights or {}).items()
        }
        self._positions: dict[int, np.ndarray] = {}
        self._starts: np.ndarray | None = None

    def _check(self, codes: np.ndarray, times_us: np.ndarray) -> None:
        if codes is not self.rows.codes or times_us is not self.grid.row_times:
            raise ValueError("a BatchIndex answers only the rows it was built for")

    def _position(self, shift_us: int) -> np.ndarray:
        """Per row in sorted order: index of its code's first event at or after t - shift."""
        if shift_us not in self._positions and shift_us == 0 and self.are_rows:
            # strictly before t: the first row of the run at the same (code, instant)
            self._positions[0] = self.rows.run_starts(self.sorted_times)
        if shift_us not in self._positions:
            rows = self.rows
            needles = (
                rows.sorted_codes * self.grid.stride + self.grid.row_rank(shift_us)[rows.order]
            )
            self._positions[shift_us] = np.searchsorted(self.keys, needles, side="left")
        return self._positions[shift_us]

    def _start(self) -> np.ndarray:
        """Per row in sorted order: index of its code's first event."""
        if self._starts is None and self.are_rows:
            self._starts = self.rows.run_starts()
        if self._starts is None:
            needles = self.rows.sorted_codes * self.grid.stride
            self._starts = np.searchsorted(self.keys, needles, side="left")
        return self._starts

    def prefix(
        self, codes: np.ndarray, times_us: np.ndarray, shift_us: int = 0
    ) -> dict[str, np.ndarray]:
        """Count and weight sums of each row's code's events strictly before t - shift."""
        self._check(codes, times_us)
        pos, start = self._position(shift_us), self._start()
        out = {"count": self.rows.in_rows(pos - start)}
        for name, cum in self.cumsums.items():
            out[name] = self.rows.in_rows(cum[pos] - cum[start])
        return out

    def first_time_before(self, codes: np.ndarray, times_us: np.ndarray) -> np.ndarray:
        """Time of each row's code's earliest event before the row, or NO_TIME."""
        self._check(codes, times_us)
        if not len(self.keys):
            return np.full(len(codes), NO_TIME, dtype=np.int64)
        pos, start = self._position(0), self._start()
        first = self.sorted_times[np.minimum(start, len(self.keys) - 1)]
        return self.rows.in_rows(np.where(pos > start, first, NO_TIME))


# Live runs (``EventRuns``) are levels of growing capacity: a new batch is sorted and merged
# into level 0 at once; a level over its capacity merges into the next, LEVEL_RATIO times larger.
# A query reads at most a handful of runs (4 up to ~2M events, 5 up to ~33M). Merges are linear
# (``merge_indexes``), and an event is copied about LEVEL_RATIO / 2 times per level in its life.
FIRST_LEVEL = 2_048
LEVEL_RATIO = 16


class EventRuns:
    """Append-only events in a few sorted runs (LSM-style), for a live layer over a snapshot.

    Events may arrive in any time order; queries read ``runs`` once (a tuple replaced whole
    under the lock), so a query running in another thread sees a consistent set of runs.
    """

    def __init__(self, weight_names: tuple[str, ...] = ()):
        self.weight_names = weight_names
        empty = np.zeros(0, dtype=np.int64)
        self._empty = EventIndex(empty, empty, {name: empty for name in weight_names})
        self.runs: tuple[EventIndex, ...] = ()  # level 0 first, empty levels kept
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return sum(len(r) for r in self.runs)

    def append(
        self, codes: np.ndarray, times_us: np.ndarray, weights: dict[str, np.ndarray] | None = None
    ) -> None:
        weights = weights or {}
        if set(weights) != set(self.weight_names):
            raise ValueError(f"events need the weights {self.weight_names}, got {tuple(weights)}")
        codes = np.asarray(codes, dtype=np.int64)
        times_us = np.asarray(times_us, dtype=np.int64)
        weights = {k: np.asarray(w, dtype=np.int64) for k, w in weights.items()}
        with self._lock:
            runs = list(self.runs) or [self._empty]
            runs[0] = merge_indexes(runs[0], EventIndex(codes, times_us, weights))
            capacity = FIRST_LEVEL
            for level in range(len(runs)):
                if len(runs[level]) <= capacity:
                    break
                if level + 1 == len(runs):
                    runs.append(self._empty)
                runs[level + 1] = merge_indexes(runs[level + 1], runs[level])
                runs[level] = self._empty
                capacity *= LEVEL_RATIO
            self.runs = tuple(runs)

    def fold_before(self, horizon_us: int) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        """Remove the events older than ``horizon_us`` and return them (codes, times, weights),
        for the caller to fold into per-entity totals. Re-sorts the runs that hold such events:
        call it rarely (the live state does once a day of events)."""
        with self._lock:
            runs, dropped = [], []
            for run in self.runs:
                if not len(run) or run.unique_times[0] >= horizon_us:
                    runs.append(run)
                    continue
                codes, t, w = events_of(run)
                old = t < horizon_us
                keep = ~old
                runs.append(EventIndex(codes[keep], t[keep], {k: v[keep] for k, v in w.items()}))
                dropped.append((codes[old], t[old], {k: v[old] for k, v in w.items()}))
            self.runs = tuple(runs)
        empty = np.zeros(0, dtype=np.int64)
        return (
            np.concatenate([empty] + [d[0] for d in dropped]),
            np.concatenate([empty] + [d[1] for d in dropped]),
            {k: np.concatenate([empty] + [d[2][k] for d in dropped]) for k in self.weight_names},
        )


@dataclass(frozen=True)
class EntityBase:
    """Per-entity totals of events older than an index's horizon (the online snapshot's past).

    Arrays are indexed by entity code. Batch runs use no base: the index holds every event.
    """

    first_seen_us: np.ndarray
    n_inspected: np.ndarray
    n_illicit: np.ndarray
    revenue_cents: np.ndarray

    @staticmethod
    def empty(n_codes: int) -> EntityBase:
        return EntityBase(
            first_seen_us=np.full(n_codes, NO_TIME, dtype=np.int64),
            n_inspected=np.zeros(n_codes, dtype=np.int64),
            n_illicit=np.zeros(n_codes, dtype=np.int64),
            revenue_cents=np.zeros(n_codes, dtype=np.int64),
        )

    def take(self, codes: np.ndarray) -> EntityBase:
        """Rows for ``codes``; codes beyond the base (new entities) get the empty base."""
        n = len(self.n_inspected)
        inside = codes < n
        safe = np.where(inside, codes, 0)

        def pick(arr: np.ndarray, fill: int) -> np.ndarray:
            if n == 0:
                return np.full(len(codes), fill, dtype=np.int64)
            return np.where(inside, arr[safe], fill)

        return EntityBase(
            first_seen_us=pick(self.first_seen_us, NO_TIME),
            n_inspected=pick(self.n_inspected, 0),
            n_illicit=pick(self.n_illicit, 0),
            revenue_cents=pick(self.revenue_cents, 0),
        )


def key_hashes(keys: np.ndarray) -> np.ndarray:
    """A 64-bit hash of each entity key (text), the same in every process and run:
    ``pandas.util.hash_array`` (SipHash-2-4 with pandas' fixed key over the UTF-8 text, then a
    bit mixer). Missing keys (None) hash like any value: callers mask them. Two distinct keys
    share a hash with probability ~n^2 / 2^65 (about 3e-6 among 10M keys); they would then
    share one history, never fail.

    A request's few keys skip hash_array's Python overhead (~6 us a call, a dozen calls a
    declaration): the same SipHash and mixer, called directly (a test holds the two equal)."""
    keys = np.asarray(keys, dtype=object)
    if len(keys) > FEW_KEYS:
        from pandas.util import hash_array

        return hash_array(keys, categorize=False)
    from pandas._libs.hashing import hash_object_array

    try:
        sips = hash_object_array(keys, _PANDAS_HASH_KEY, "utf8").tolist()
    except TypeError:  # not text: as hash_array reads it
        sips = hash_object_array(keys.astype(str).astype(object), _PANDAS_HASH_KEY, "utf8").tolist()
    return np.array([_mix64(x) for x in sips], dtype=np.uint64)


# Up to this many keys, hashing and coding them one by one in Python beats numpy's per-call cost
# (measured: ~0.6 us a key against ~25 us for any numpy pass; a declaration has one per entity).
FEW_KEYS = 16
_PANDAS_HASH_KEY = "0123456789123456"  # pandas.core.util.hashing's default hash key
_MASK64 = (1 << 64) - 1


def _mix64(x: int) -> int:
    """hash_array's bit mixer (splitmix64's finalizer) on one value."""
    x ^= x >> 30
    x = (x * 0xBF58476D1CE4E5B9) & _MASK64
    x ^= x >> 27
    x = (x * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def hash_codes(codes: np.ndarray, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Keys coded by their hash: (the distinct hashes, sorted; each code's position among
    them). ``codes`` index ``keys``; a collision merges the two keys' codes."""
    hashes, position = np.unique(key_hashes(keys), return_inverse=True)
    return hashes, position.astype(np.int64)[np.asarray(codes, dtype=np.int64)]


def _factorize_hashes(h: np.ndarray) -> tuple[np.ndarray, int]:
    """Codes of hashes in order of first appearance, and how many distinct (a dict for
    request-sized inputs: pd.factorize costs ~15 us whatever the size)."""
    if not is_small(len(h)):
        codes, distinct = pd.factorize(h)
        return codes.astype(np.int64), len(distinct)
    seen: dict[int, int] = {}
    codes = [seen.setdefault(x, len(seen)) for x in h.tolist()]
    return np.array(codes, dtype=np.int64), len(seen)


class HashedKeys:
    """Entity key -> code by the key's hash (``key_hashes``): the snapshot's keys as one sorted
    array of hashes (8 bytes a key, where a dict of Python strings took ~200), then keys first
    seen live, coded from ``len(hashes)`` up in order of arrival: codes never change once
    given; a missing key (None) is -1."""

    def __init__(self, hashes: np.ndarray, limit: int, codes: np.ndarray | None = None):
        # sorted uint64: a snapshot key's code is its position, or ``codes`` at it (the codes
        # of a vocabulary kept in its own order, ``hashes`` then holding one hash per code)
        self.hashes = hashes
        self.code_at = codes
        self.n_snapshot = len(hashes)
        self.limit = limit  # codes stay below n_snapshot + limit
        self.new: dict[int, int] = {}  # hash -> code of keys first seen live
        self._lock = threading.Lock()

    def _codes(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        keys = np.asarray(keys, dtype=object)
        h = key_hashes(keys)
        if len(keys) <= FEW_KEYS:
            return self._request_codes(keys, h), h
        missing = pd.isna(keys)
        at = np.searchsorted(self.hashes, h)
        inside = at < self.n_snapshot
        found = inside & (self.hashes[np.where(inside, at, 0)] == h if self.n_snapshot else False)
        if self.code_at is not None and self.n_snapshot:
            at = self.code_at[np.where(found, at, 0)]
        codes = np.where(found & ~missing, at, -1).astype(np.int64)
        unseen = (codes < 0) & ~missing
        if unseen.any():
            if self.new:
                get = self.new.get
                codes[unseen] = [get(x, -1) for x in h[unseen].tolist()]
                unseen = (codes < 0) & ~missing
            # len(new) read after the lookups: a key added meanwhile keeps a code below it
            first_free = self.n_snapshot + len(self.new)
            fresh, n_distinct = _factorize_hashes(h[unseen])
            if first_free + n_distinct >= self.n_snapshot + self.limit:
                raise ParcelriskError(
                    f"live entity state full: more than {self.limit} keys not in the snapshot "
                    "(roll the snapshot over)"
                )
            codes[unseen] = first_free + fresh
        return codes, h

    def _request_codes(self, keys: np.ndarray, h: np.ndarray) -> np.ndarray:
        """``_codes`` of a request's few keys in Python: numpy's per-call cost on arrays of a
        few values was most of a declaration's key lookups (a dozen a declaration)."""
        n, hashes, code_at, new = self.n_snapshot, self.hashes, self.code_at, self.new
        at = np.searchsorted(hashes, h).tolist() if n else [n] * len(h)
        codes: list[int] = []
        unseen: list[int] = []  # rows of keys neither in the snapshot nor seen live
        for row, (key, x, i) in enumerate(zip(keys.tolist(), h.tolist(), at, strict=True)):
            if is_missing(key):
                codes.append(-1)
            elif i < n and int(hashes[i]) == x:
                codes.append(int(code_at[i]) if code_at is not None else i)
            else:
                code = new.get(x, -1)
                codes.append(code)
                if code < 0:
                    unseen.append(row)
        if unseen:
            # len(new) read after the lookups: a key added meanwhile keeps a code below it
            first_free = n + len(new)
            fresh: dict[int, int] = {}
            hs = h.tolist()
            for row in unseen:
                codes[row] = first_free + fresh.setdefault(hs[row], len(fresh))
            if first_free + len(fresh) >= n + self.limit:
                raise ParcelriskError(
                    f"live entity state full: more than {self.limit} keys not in the snapshot "
                    "(roll the snapshot over)"
                )
        return np.array(codes, dtype=np.int64)

    def codes(self, keys: np.ndarray) -> np.ndarray:
        """Codes of a request's keys; keys never seen get fresh codes after every given code
        (equal keys share one), missing keys (None) -1: an unknown entity, not a new one."""
        return self._codes(keys)[0]

    def add(self, keys: np.ndarray) -> np.ndarray:
        """Codes of ``keys``, registering those never seen (-1 for missing keys)."""
        with self._lock:
            codes, h = self._codes(keys)
            fresh = np.flatnonzero(codes >= self.n_snapshot + len(self.new))
            # equal keys share a code: the first row of each registers it
            for key, code in zip(h[fresh].tolist(), codes[fresh].tolist(), strict=True):
                self.new.setdefault(key, code)
        return codes
