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
from dataclasses import dataclass
from typing import Any

import numpy as np

NO_TIME = np.iinfo(np.int64).min  # "never seen"
US_PER_DAY = 86_400 * 1_000_000
US_PER_HOUR = 3_600 * 1_000_000


def codes_of(lookup: dict, keys: Any, dtype: Any = np.int64) -> np.ndarray:
    """``lookup[key]`` for each key, -1 for keys it lacks.

    dict.get mapped in C: for request-sized inputs far cheaper than building a pandas Index,
    and linear for batch-sized ones. The one key -> code lookup of the feature families.
    """
    return np.fromiter(map(lookup.get, keys, itertools.repeat(-1)), dtype=dtype, count=len(keys))


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
        self.unique_times = np.unique(times_us)
        self.stride = np.int64(len(self.unique_times) + 1)
        keys = codes * self.stride + np.searchsorted(self.unique_times, times_us)
        order = np.argsort(keys, kind="stable")
        self.keys = keys[order]
        self.sorted_times = times_us[order]
        self.cumsums = {
            name: np.concatenate(([0], np.cumsum(np.asarray(w, dtype=np.int64)[order])))
            for name, w in (weights or {}).items()
        }
        self._start_cache: tuple[np.ndarray, np.ndarray] | None = None

    def __len__(self) -> int:
        return len(self.keys)

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

    def prefix(self, codes: np.ndarray, times_us: np.ndarray) -> dict[str, np.ndarray]:
        """Count and weight sums of each code's events strictly before ``times_us``."""
        pos = self.position(codes, times_us)
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
        first = self.sorted_times[np.minimum(start, len(self.keys) - 1)]
        return np.where(before > start, first, NO_TIME)


class CombinedIndex:
    """Two disjoint event sets queried as one (a prebuilt snapshot + a request's own rows).

    Counts and integer sums add exactly; the first time is the earlier of the two. This keeps a
    request from re-sorting the whole snapshot.
    """

    def __init__(self, first: EventIndex, second: EventIndex):
        self.parts = (first, second)

    def prefix(self, codes: np.ndarray, times_us: np.ndarray) -> dict[str, np.ndarray]:
        a, b = (p.prefix(codes, times_us) for p in self.parts)
        return {k: a[k] + b[k] for k in a}

    def first_time_before(self, codes: np.ndarray, times_us: np.ndarray) -> np.ndarray:
        big = np.iinfo(np.int64).max
        a, b = (p.first_time_before(codes, times_us) for p in self.parts)
        first = np.minimum(np.where(a == NO_TIME, big, a), np.where(b == NO_TIME, big, b))
        return np.where(first == big, NO_TIME, first)


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
