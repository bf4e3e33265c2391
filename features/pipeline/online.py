"""Online features: new declarations + the entity-state snapshot -> exactly the batch features.

Every feature family computes a request's features from its snapshot part with the same
compute as batch (``features.families``); parity is tested, not hoped for.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from features.errors import ParcelriskError
from features.intake.columns import FrameColumns, RecordColumns, columns_of, extra_column
from features.notes import HISTORY_BEFORE_CUTOFF, HISTORY_STALE, RowNote
from features.pipeline.family import Rows
from features.pipeline.frame import assemble
from features.pipeline.history import NO_TIME, US_PER_DAY
from features.pipeline.manifest import (
    DERIVED_CONTEXT,
    REASON_CONTEXT,
    UNDECLARED,
    FeatureManifest,
)
from features.pipeline.prepare import Prepared, prepare
from features.pipeline.snapshot import LATE_ENTRY_DAYS, EntityState


@dataclass
class OnlineFeatures:
    """A request's features as arrays, before (and mostly instead of) a feature frame.

    The scoring path needs the model matrix and the reason context; building the feature frame
    (``frame.assemble``) and reading the matrix back out of it cost about a millisecond per
    request, so the frame is only built on demand (``/explain``, parity tests).
    """

    declarations: FrameColumns | RecordColumns
    prep: Prepared
    values: dict[str, np.ndarray]
    manifest: FeatureManifest
    # the declaration fields the served model's features read (``EntityState.features_inputs``):
    # the context says which of them each parcel left empty (``UNDECLARED``)
    tellable: tuple[str, ...] = ()

    def __len__(self) -> int:
        return self.prep.n_rows

    def matrix(self) -> np.ndarray:
        """The model input matrix: ``manifest.matrix(self.frame())``, without the frame."""
        return self.manifest.matrix_of(self.values, len(self))

    @property
    def context(self) -> dict[str, np.ndarray]:
        """``REASON_CONTEXT`` columns (str or None per row), as the frame would hold them, and
        the ``DERIVED_CONTEXT`` the families computed (the frame has none)."""
        context = {c: self.prep[c] for c in REASON_CONTEXT}
        context.update({c: self.values[c] for c in DERIVED_CONTEXT if c in self.values})
        if self.tellable:
            context[UNDECLARED] = self._undeclared()
        return context

    def _undeclared(self) -> np.ndarray:
        """Per row, the ``tellable`` fields it left empty (a tuple; most rows: ())."""
        empty = np.zeros((len(self), 0), dtype=bool)
        fields = [f for f in self.tellable if f in self.declarations]
        if fields:
            empty = np.column_stack([self.declarations.missing(f) for f in fields])
        out = np.empty(len(self), dtype=object)
        out[:] = [()] * len(self)
        for row in np.flatnonzero(empty.any(axis=1)).tolist():
            out[row] = tuple(f for f, e in zip(fields, empty[row], strict=True) if e)
        return out

    def context_of(self, X: np.ndarray) -> dict[str, np.ndarray]:
        """``context`` for the model input ``X`` of the same rows made elsewhere (a stored
        decision's vector against its declaration recomputed now): a derived value is kept
        only where the feature it explains has the value ``X`` holds, else it is None (the
        text model may have been refitted since: its top word need not be the one the value
        was of)."""
        context = self.context
        names = self.manifest.names
        for name, feature in DERIVED_CONTEXT.items():
            if name not in context or feature not in names:
                continue
            now = np.asarray(self.values[feature], dtype=np.float64)
            then = X[:, names.index(feature)]
            same = (now == then) | (np.isnan(now) & np.isnan(then))
            context[name] = np.where(same, context[name], None)
        return context

    def frame(self) -> pd.DataFrame:
        """ids + labels + reason context + manifest features (``frame.assemble``)."""
        return assemble(self.prep, self.declarations.frame(), self.values, self.manifest)


def online_features(
    declarations: pd.DataFrame | FrameColumns | RecordColumns,
    state: EntityState,
    warnings: list[RowNote] | None = None,
    already_seen: np.ndarray | None = None,
    *,
    appended_declared_us: int = NO_TIME,
    appended_result_us: int = NO_TIME,
) -> OnlineFeatures:
    """Features of new declarations (canonical contract frame or validated API models, no
    outcomes), in input order.

    Unknown codes never fail a declaration: they get priors, and if ``warnings`` is given,
    (row index, message) pairs are appended to it. (Not in ``DataFrame.attrs``: pandas deep-copies
    attrs on every column access.)

    ``already_seen``: rows the state's live layer holds already (a re-scored declaration): they
    are not added again as the request's own events (``prep["already_seen"]``).
    ``appended_declared_us``, ``appended_result_us``: the newest declaration and inspection
    result (UTC us) the live layer appended on top of the snapshot (``NO_TIME``: none), for
    the warnings on a history that ends too long before a declaration (``stale_history_notes``).
    """
    declarations = columns_of(declarations)
    read = state.extras_read
    missing = [e.name for e in state.contract.extras if e.name not in declarations]
    if read is not None and isinstance(declarations, FrameColumns):
        # an extra the model does not read, left out: unknown, as a feature nobody reads
        unread = [e for e in state.contract.extras if e.name in missing and e.name not in read]
        if unread:
            frame = declarations.frame()
            declarations = FrameColumns(
                frame.assign(**{e.name: extra_column([None] * len(frame), e) for e in unread})
            )
            missing = [name for name in missing if name in read]
    if missing:
        raise ParcelriskError(
            f"declarations lack the mapped extra field(s) the model uses: {', '.join(missing)} "
            "(the model learnt them from an export read through a mapping: score the export "
            "through it, `parcelrisk score EXPORT --mapping MAPPING --out OUT`, or convert it "
            "the same way, `parcelrisk ingest FILE --mapping MAPPING --out FILE.parquet`, and "
            "score the Parquet it writes, which carries them)"
        )
    prep = prepare(declarations, state.contract, state.params)
    if already_seen is not None and already_seen.any():
        prep["already_seen"] = already_seen
    rows = Rows(
        prep,
        state.params,
        state.contract,
        state.manifest,
    )
    values: dict[str, Any] = {}
    for family in state.families:
        values.update(family.online(rows, state.parts.get(family.name)))
    if warnings is not None:
        # (a currency without an exchange rate is the rules' warning: features.intake.rules)
        notes = [
            note
            for family in state.families
            for note in family.warnings(rows, values, state.parts.get(family.name))
        ]
        t_us = rows.prep["t_us"]
        early = (
            f"declared before the entity-state cutoff {state.cutoff}: history as of the cutoff used"
        )
        too_late = (
            f"; unless the history holds it, it came too late (over {LATE_ENTRY_DAYS} days "
            "before the history's last declaration) to count for later declarations"
        )
        notes += [
            RowNote(
                int(i),
                early + (too_late if t_us[i] < state.late_entry_from_us else ""),
                HISTORY_BEFORE_CUTOFF,
            )
            for i in np.flatnonzero(t_us < state.exact_from_us)
        ]
        notes += stale_history_notes(
            t_us,
            state,
            max(state.held_before_us, appended_declared_us),
            max(
                NO_TIME if state.last_result_us is None else state.last_result_us,
                appended_result_us,
            ),
        )
        warnings.extend(sorted(notes))
    tellable = tuple(dict.fromkeys(f for fs in state.features_inputs.values() for f in fs))
    return OnlineFeatures(declarations, rows.prep, values, state.manifest, tellable)


def stale_history_notes(
    t_us: np.ndarray, state: EntityState, newest_declared_us: int, newest_result_us: int
) -> list[RowNote]:
    """Notes (row, warning, code) for the declarations (declared_at in UTC us) declared longer after the
    newest declaration, or the newest inspection result, the state knows (``NO_TIME``: none)
    than the features' windows reach: their recent counts, first-seen ages and hit rates
    describe the history's end, not the entity.

    Fed back its own declarations and results, a served state never lags this far. A state
    that knows no result (a history without inspections, or an older snapshot that did not
    record its newest) gets no results warning: there are no hit rates to have gone stale,
    and warning on every declaration would bury the other warnings.
    """
    params = state.params
    notes = []
    for newest_us, window_days, text in (
        (
            newest_declared_us,
            params.max_window_days,
            "the model's history holds no declaration after {since} ({days:,} days before "
            "this one, beyond its longest window of {window:,} days): recent counts read 0 "
            "and first-seen ages date from then; retrain on recent declarations",
        ),
        (
            newest_result_us,
            params.outcome_window_days,
            "the model's history holds no inspection result after {since} ({days:,} days "
            "before this declaration, beyond the {window:,}-day window of recent results): "
            "hit rates are as of then; post inspection results (/outcomes) or retrain",
        ),
    ):
        if newest_us == NO_TIME:
            continue
        # whole days, so that no text says "180 days, beyond its window of 180 days"
        gap_days = (t_us - newest_us) // US_PER_DAY
        rows = np.flatnonzero(gap_days > window_days)
        if len(rows):
            since = _utc_date(newest_us)
            notes += [
                RowNote(
                    int(i),
                    text.format(since=since, days=int(gap_days[i]), window=window_days),
                    HISTORY_STALE,
                )
                for i in rows
            ]
    return notes


def _utc_date(t_us: int) -> str:
    """YYYY-MM-DD (UTC) of an instant in UTC microseconds."""
    return str(np.datetime64(int(t_us), "us").astype("datetime64[D]"))


def compute_online_features(
    declarations: pd.DataFrame,
    state: EntityState,
    warnings: list[RowNote] | None = None,
) -> pd.DataFrame:
    """``online_features`` as a feature frame, in the layout of the batch ``features.parquet``."""
    return online_features(declarations, state, warnings).frame()
