"""The feature-family interface: what a family declares, computes and keeps in the snapshot.

A family (one module of ``features.families``) owns a set of features end to end:
- ``specs``: its manifest entries (names, dtypes, groups, descriptions, reason templates), only
  those whose inputs the history holds;
- ``compute``: ONE function from prepared rows (plus learned evidence) to feature arrays, called
  by ``batch`` on a whole history and by ``online`` on a request;
- optionally a snapshot part: ``fit_part`` (evidence as known at a cutoff), ``save_part`` /
  ``load_part`` (its files in the entity-state directory), and ``warnings`` for a request.

Families import from the lower pipeline modules (prepare, history, manifest, this one) only;
``features.pipeline.build``, ``snapshot`` and ``online`` drive them through ``features.families``.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pandas as pd

from features.intake.contract import Contract
from features.notes import RowNote
from features.params import FeatureParams
from features.pipeline import history as hist
from features.pipeline.manifest import FeatureManifest, FeatureSpec
from features.pipeline.prepare import (
    PAIR_SEPARATOR,
    Entity,
    Prepared,
    entity_codes,
    fit_cut_us,
    pair_codes,
    period_of,
)

T = TypeVar("T")
Values = dict[str, np.ndarray]
NO_CUT_US = np.iinfo(np.int64).min  # the cut of a history without rows: nothing before it
PROGRESS_DELAY_S = 2.0  # a step shows its bar only once it has run this long


@dataclass(frozen=True)
class SpecContext:
    """What decides a family's manifest entries."""

    params: FeatureParams
    contract: Contract
    inputs: tuple[str, ...] | None  # fields holding values in the history (None: all)
    categories: dict[str, tuple[str, ...]]  # cat_<column> -> its levels, code order

    def fed(self, *needs: str) -> bool:
        """The history holds values for every field in ``needs``."""
        return self.inputs is None or all(n in self.inputs for n in needs)


@dataclass
class Rows:
    """Prepared declarations and the settings they are computed with (a request, online)."""

    prep: Prepared
    params: FeatureParams
    contract: Contract
    manifest: FeatureManifest

    @property
    def categories(self) -> dict[str, tuple[str, ...]]:
        return self.manifest.categories


@dataclass
class History(Rows):
    """A whole history, sorted by (declared_at, id), with its recorded inspection results.

    An entity's codes and declaration index are kept only until another entity is asked for:
    at 1M parcels each entity holds ~100 MB, and the families walk the entities one after the
    other (the split-shipment entity first, then every history entity in turn).
    """

    outcomes: dict[str, np.ndarray] = field(default_factory=dict)  # prepare.outcome_events
    show_progress: bool = False
    # Facts of the whole history that rows holding only some of its keys cannot see, set by
    # the Dask engine (features.pipeline.dask_engine) on each partition's history; a family
    # reads one where its batch needs more than its keys' rows, else derives it from its rows.
    whole: dict[str, Any] = field(default_factory=dict)
    _current: dict[str, Any] = field(default_factory=dict, repr=False)  # one entity's arrays
    _columns: dict[str, Any] = field(default_factory=dict, repr=False)  # codes of key columns
    _vocabularies: dict[str, np.ndarray] = field(default_factory=dict, repr=False)  # pairs' keys

    def _of(self, entity: Entity) -> dict[str, Any]:
        if self._current.get("spec") != entity.spec:
            self._current = {}  # free the previous entity's arrays before building the next
            codes, keys_of = self._entity_codes(entity)
            self._current = {"spec": entity.spec, "codes": codes, "keys_of": keys_of}
        return self._current

    def column_codes(self, column: str) -> tuple[np.ndarray, np.ndarray]:
        """``entity_codes`` of one prepared text column (codes per row, -1 for None; the
        distinct values), kept for the build: pairs reuse their parts', categories too."""
        if column not in self._columns:
            coded = self.prep.codes.get(column)  # as prepare factorised it
            self._columns[column] = coded if coded is not None else entity_codes(self.prep[column])
        return self._columns[column]

    def share_codes(self, other: History) -> None:
        """Use ``other``'s codes of key columns (and pairs' keys): a history of the same
        prepared rows (the snapshot's, after the build's)."""
        if other.prep is not self.prep:
            raise ValueError("codes are shared only between histories of the same rows")
        self._columns = other._columns
        self._vocabularies = other._vocabularies

    def _entity_codes(
        self, entity: Entity
    ) -> tuple[np.ndarray, Callable[[np.ndarray], np.ndarray]]:
        """``entity_codes(entity_keys(prep, entity))`` with the keys built on demand: for a
        pair, from its parts' integer codes (the same codes, in order of first appearance),
        and the "a|b" strings only of the codes asked for (the snapshot asks for some; the
        features for none)."""
        codes, vocabulary = self.column_codes(entity.parts[0])
        keys_of = vocabulary.__getitem__
        for i, part in enumerate(entity.parts[1:], start=2):
            part_codes, part_vocabulary = self.column_codes(part)
            codes, left, right = pair_codes(codes, part_codes, len(part_vocabulary))
            keys_of = functools.partial(_joined_keys, keys_of, left, part_vocabulary, right)
            # a longer key starting with a pair whose keys were built (the orders' line after
            # their pair): the same codes, so the same keys
            known_keys = self._vocabularies.get("*".join(entity.parts[:i]))
            if known_keys is not None:
                keys_of = known_keys.__getitem__
        return codes, keys_of

    def entity(self, entity: Entity) -> tuple[np.ndarray, np.ndarray]:
        """Codes per row (-1: unknown key) and the distinct keys."""
        current = self._of(entity)
        if "vocabulary" not in current:
            codes = current["codes"]
            vocabulary = current["keys_of"](np.arange(codes.max(initial=-1) + 1))
            current["vocabulary"] = vocabulary
            if len(entity.parts) > 1:  # built from parts: kept for longer keys that start so
                self._vocabularies[entity.spec] = vocabulary
        return current["codes"], current["vocabulary"]

    def keys_of(self, entity: Entity, codes: np.ndarray) -> np.ndarray:
        """The keys of ``entity`` with these codes (codes >= 0)."""
        return self._of(entity)["keys_of"](codes)

    def recent(self, entity: Entity, since_us: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The rows declared from ``since_us`` on with a known key of ``entity``: their row
        numbers, codes among them (order of first appearance) and those codes' keys."""
        codes = self._of(entity)["codes"]
        t = self.prep["t_us"]
        if not len(t) or since_us <= t[0]:  # every row: the history's own codes and keys
            rows = np.flatnonzero(codes >= 0)
            return rows, codes[rows], self.entity(entity)[1]
        rows = np.flatnonzero((t >= since_us) & (codes >= 0))
        local, distinct = pd.factorize(codes[rows])
        return rows, local.astype(np.int64), self.keys_of(entity, distinct)

    def known(self, entity: Entity) -> np.ndarray:
        """Rows whose key of ``entity`` is known."""
        return self._of(entity)["codes"] >= 0

    def queries(self, entity: Entity) -> hist.RowQueries:
        """The rows sorted once by (code of ``entity``, time); rows with an unknown key share
        one code of their own, after every key's (callers forget their results)."""
        current = self._of(entity)
        if "queries" not in current:
            codes = current["codes"]
            unknown = codes.max(initial=-1) + 1  # after every key's code
            current["queries"] = hist.RowQueries(np.where(codes >= 0, codes, unknown))
        return current["queries"]

    def declarations(self, entity: Entity, *weights: str) -> hist.BatchIndex:
        """The rows as declaration events of ``entity`` with sums of the prepared integer
        columns ``weights`` (e.g. ``value_cents``), for queries by the rows (``queries``)."""
        current = self._of(entity)
        if ("index", weights) not in current:
            rows = self.queries(entity)
            current["index", weights] = hist.BatchIndex(
                rows,
                self.declaration_grid,
                rows.codes,
                self.prep["t_us"],
                {name: self.prep[name] for name in weights},
                order=rows.order,  # the events are the rows: the rows' order sorts them
            )
        return current["index", weights]

    @functools.cached_property
    def declaration_grid(self) -> hist.TimeGrid:
        """Declaration times, ranked once for every entity."""
        return hist.TimeGrid(self.prep["t_us"], self.prep["t_us"])

    @functools.cached_property
    def outcome_grid(self) -> hist.TimeGrid:
        """Times results were recorded at, and the rows' times ranked among them."""
        return hist.TimeGrid(self.outcomes["t_us"], self.prep["t_us"])

    def by_refit_period(
        self,
        what: str,
        fit: Callable[[History, slice, int], Any],
        compute: Callable[[Rows, Any], Values],
    ) -> Values:
        """Point-in-time batch of evidence refitted every ``refit_period_days``: the rows of each
        period are computed with ``fit(history, rows declared before the cut, the cut)``, the
        cut ``refit_lag_days`` before the period start (``fit_cut_us``)."""
        t = self.prep["t_us"]  # sorted ascending
        periods = period_of(t, self.params.refit_period_days)
        bounds = np.flatnonzero(np.diff(periods)) + 1
        starts = np.concatenate(([0], bounds))
        ends = np.concatenate((bounds, [len(t)]))
        out: Values = {}
        for lo, hi in self.track(zip(starts, ends, strict=True), what, len(starts)):
            # (no row: nothing to fit, though the compute still names its columns)
            cut_us = fit_cut_us(int(periods[lo]), self.params) if lo < len(t) else NO_CUT_US
            stop = int(np.searchsorted(t, cut_us, side="left"))
            evidence = fit(self, slice(0, stop), cut_us)
            period = Rows(self.prep.slice(lo, hi), self.params, self.contract, self.manifest)
            for name, values in compute(period, evidence).items():
                if name not in out:  # (setdefault would allocate a full column every period)
                    out[name] = np.full(len(t), np.nan)
                out[name][lo:hi] = values
        return out

    def track(self, steps: Iterable[T], what: str, total: int | None = None) -> Iterator[T]:
        """``steps`` with a progress bar on stderr when asked for; it appears only after
        ``PROGRESS_DELAY_S``, so quick steps stay silent."""
        if not self.show_progress:
            yield from steps
            return
        from tqdm import tqdm

        yield from tqdm(
            steps, desc=what, total=total, delay=PROGRESS_DELAY_S, leave=False, file=sys.stderr
        )


def _joined_keys(
    keys_of: Callable[[np.ndarray], np.ndarray],
    left: np.ndarray,
    right_keys: np.ndarray,
    right: np.ndarray,
    codes: np.ndarray,
) -> np.ndarray:
    """The keys of the pairs with ``codes``: "left key|right key"."""
    return keys_of(left[codes]) + PAIR_SEPARATOR + right_keys[right[codes]]


class Family:
    """Base of the feature families; a stateless family only implements ``specs`` and ``compute``."""

    name: str = ""
    optional: bool = False  # built only when named in ``features.extra_families``
    # How the Dask engine (``features.pipeline.dask_engine``) computes the family over a history
    # no process holds: "rows": ``batch`` on any rows alone; "keys": ``batch_keys`` on rows that
    # hold every row of each of their keys (after a shuffle on one of ``partition_keys``);
    # "aggregates": the engine fits it from partial aggregates of every partition. None: not
    # distributable; the engine refuses a manifest that needs it.
    distribution: str | None = None

    def partition_keys(self, ctx: SpecContext) -> tuple[str, ...]:
        """The keys (entity specs of prepared columns: "seller_id", "seller_id*consignee_id",
        "hs_heading") whose rows alone determine the family's features ("keys" families)."""
        return ()

    def batch_keys(self, history: History, key: str) -> Values:
        """The features determined by the rows of ``key``: ``history`` holds every row of each
        of its keys (and ``History.whole`` what the family needs of the rest)."""
        return self.batch(history)

    def snapshot_piece(self, history: History, key: str, cutoff_us: int, rows: np.ndarray) -> Any:
        """("keys" families) What ``fit_part`` keeps of ``key``'s rows: ``history`` holds every
        row of each of its keys as known at ``cutoff_us``; ``rows`` their numbers in the whole
        history (to put merged pieces in its order). By default this history's ``fit_part``."""
        return self.fit_part(history, cutoff_us)

    def merge_snapshot(
        self,
        pieces: dict[str, list[Any]],
        ctx: SpecContext,
        outcomes: dict[str, np.ndarray],
        cutoff_us: int,
    ) -> Any:
        """("keys" families) ``fit_part`` of the whole history from the ``snapshot_piece`` of
        every partition, by partition key (``outcomes``: every result recorded before
        ``cutoff_us``, in the history's order)."""
        raise NotImplementedError(f"{self.name}: no merge of snapshot pieces")

    def specs(self, ctx: SpecContext) -> list[FeatureSpec]:
        raise NotImplementedError

    def compute(self, rows: Rows, part: Any = None) -> Values:
        """The features of ``rows`` given learned evidence ``part`` (what ``fit_part`` gives)."""
        raise NotImplementedError

    def batch(self, history: History) -> Values:
        """Point-in-time features of every row of a history."""
        return self.compute(history)

    def online(self, rows: Rows, part: Any) -> Values:
        """Features of a request from the snapshot part."""
        return self.compute(rows, part)

    def fit_part(self, history: History, cutoff_us: int) -> Any:
        """What ``online`` needs, as known at ``cutoff_us`` (None: nothing)."""
        return None

    def save_part(self, part: Any, directory: Path) -> None:
        """Write the part's files (named after the family) into the snapshot directory."""

    def load_part(self, directory: Path) -> Any:
        return None

    def warnings(self, rows: Rows, values: Values, part: Any) -> list[RowNote]:
        """Notes (row, message, code) on codes the model has not seen, read off computed
        features (``features.notes``)."""
        return []
