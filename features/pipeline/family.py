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

import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from features.intake.contract import Contract
from features.params import FeatureParams
from features.pipeline import history as hist
from features.pipeline.manifest import FeatureManifest, FeatureSpec
from features.pipeline.prepare import Entity, Prepared, entity_codes, entity_keys, period_of

T = TypeVar("T")
Values = dict[str, np.ndarray]
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
    _current: dict[str, Any] = field(default_factory=dict, repr=False)  # one entity's arrays

    def _of(self, entity: Entity) -> dict[str, Any]:
        if self._current.get("spec") != entity.spec:
            self._current = {}  # free the previous entity's arrays before building the next
            codes, vocabulary = entity_codes(entity_keys(self.prep, entity))
            self._current = {"spec": entity.spec, "codes": codes, "vocabulary": vocabulary}
        return self._current

    def entity(self, entity: Entity) -> tuple[np.ndarray, np.ndarray]:
        """Codes per row (-1: unknown key) and the distinct keys."""
        current = self._of(entity)
        return current["codes"], current["vocabulary"]

    def declarations(self, entity: Entity) -> hist.EventIndex:
        """The index of the declarations of known keys of ``entity`` (weights: ``value_cents``)."""
        current = self._of(entity)
        if "index" not in current:
            codes, known = current["codes"], current["codes"] >= 0
            current["index"] = hist.EventIndex(
                codes[known],
                self.prep["t_us"][known],
                {"value_cents": self.prep["value_cents"][known]},
            )
        return current["index"]

    def by_refit_period(
        self,
        what: str,
        fit: Callable[[History, slice], Any],
        compute: Callable[[Rows, Any], Values],
    ) -> Values:
        """Point-in-time batch of evidence refitted every ``refit_period_days``: the rows of each
        period are computed with ``fit(history, rows before the period start)``."""
        t = self.prep["t_us"]  # sorted ascending
        periods = period_of(t, self.params.refit_period_days)
        bounds = np.flatnonzero(np.diff(periods)) + 1
        starts = np.concatenate(([0], bounds))
        ends = np.concatenate((bounds, [len(t)]))
        out: Values = {}
        for lo, hi in self.track(zip(starts, ends, strict=True), what, len(starts)):
            evidence = fit(self, slice(0, lo))  # rows [0, lo): declared before the period
            period = Rows(self.prep.slice(lo, hi), self.params, self.contract, self.manifest)
            for name, values in compute(period, evidence).items():
                out.setdefault(name, np.full(len(t), np.nan))[lo:hi] = values
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


class Family:
    """Base of the feature families; a stateless family only implements ``specs`` and ``compute``."""

    name: str = ""
    optional: bool = False  # built only when named in ``features.extra_families``

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

    def warnings(self, rows: Rows, values: Values, part: Any) -> list[tuple[int, str]]:
        """(row, message) notes on codes the model has not seen, read off computed features."""
        return []
