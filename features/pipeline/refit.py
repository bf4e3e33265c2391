"""Refits in the live state: the families batch refits every ``refit_period_days``.

Batch fits the valuation references, the HS-heading references and the text models for each
refit period on every declaration before the period's cut, ``refit_lag_days`` before its start
(text: and the inspection results recorded before it; ``prepare.fit_cut_us``). The snapshot
fits them for the period holding its cutoff; a scorer that runs past the next period start
refits them the same way, from the evidence of the whole history the snapshot keeps
(``RefitPart.evidence``) and the declarations and results the live state has seen since, so a
parcel declared weeks after the cutoff is valued against the references batch gives it (and
the next model is trained on), not frozen ones.

Evidence is a multiset of rows per kind ("declared", "results"): a family says which columns
(``RefitFamily.evidence_of_rows``), each row with its evidence period (the fits of later
periods learn it: ``prepare.evidence_period``) and a count ``n`` (a result taken back counts
-1). On disk it is grouped and sorted (``canonical``): the pandas and Dask engines write the
same bytes. In memory text columns are integer codes of a vocabulary the live copy grows.

A period's fit is made once, by the first request holding a declaration of it, and kept; a
declaration or result appended later that its fit learns from (declared or recorded before the
cut, yet reaching the system after the period began: a backlog over ``refit_lag_days`` late, a
laboratory result posted days after it was recorded) drops it: the next request refits. The
snapshot's own period too: a result stored after the history was exported but recorded before
that period's cut, or a backlog declared before it (``LATE_ENTRY_DAYS``), makes its fit stale
(``RefitPart.snapshot_stale``) and it is made again from the evidence, as batch over the
history holding them makes it.

A period's fit is also made ahead, in a thread (``RefitPart.prefit``), once a declaration past
its cut comes in: what it learns from is in by then (barring stragglers, which drop it as
above), so the first request of the period finds it made rather than making it while every
request behind it waits. The
lag is what keeps that rare: a declaration lodged a day before it is sent, or a result posted
the next morning, is no evidence of the period starting in between. A fit depends only on what
the state holds, so ``audit recompute`` rebuilds it from the same log. A refit takes about a
second at a million history rows, once per period per process.
Memory: every declaration seen since the cutoff is kept (about 40 bytes each for valuation),
as batch's expanding window needs; a new champion starts again from its own snapshot.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features.errors import ParcelriskError
from features.pipeline.family import Family, History, Rows, Values
from features.pipeline.prepare import evidence_period, fit_cut_us, period_of

log = logging.getLogger(__name__)

Evidence = dict[str, pd.DataFrame]  # kind -> rows of evidence with a count "n"
N = "n"
KEPT_FITS = 2  # the fits of the latest periods a live copy keeps
# the evidence period of a row (``prepare.evidence_period``): fits of later periods learn it
PERIOD = "period"


def canonical(frame: pd.DataFrame) -> pd.DataFrame:
    """Evidence rows grouped (the counts ``n`` summed, empty groups dropped) and sorted: one
    form whatever order or partitioning the rows came in."""
    keys = [c for c in frame.columns if c != N]
    for column in keys:  # one dtype per column, whichever engine made the frame
        if frame[column].dtype == object or pd.api.types.is_string_dtype(frame[column]):
            frame[column] = frame[column].astype("str")
    grouped = frame.groupby(keys, dropna=False, sort=True)[N].sum().reset_index()
    grouped[N] = grouped[N].astype(np.int64)
    return grouped[grouped[N] != 0].reset_index(drop=True)


class _Coded:
    """Evidence columns as arrays, text as codes of one growing vocabulary per column."""

    def __init__(self) -> None:
        self.index: dict[str, dict[Any, int]] = {}
        self.levels: dict[str, list[Any]] = {}

    def encode(self, name: str, values: np.ndarray) -> np.ndarray:
        index = self.index.setdefault(name, {})
        levels = self.levels.setdefault(name, [])
        out = np.empty(len(values), dtype=np.int64)
        for i, value in enumerate(values.tolist()):
            if value is None or value != value:  # None / NaN: missing, code -1
                out[i] = -1
                continue
            code = index.get(value)
            if code is None:
                code = index[value] = len(levels)
                levels.append(value)
            out[i] = code
        return out

    def encode_many(self, name: str, values: pd.Series) -> np.ndarray:
        """``encode`` of a long column: factorised first, each distinct value encoded once."""
        codes, uniques = pd.factorize(values)
        mapped = self.encode(name, np.asarray(uniques, dtype=object))
        return np.append(mapped, -1)[codes]  # code -1 (missing) -> the appended -1

    def copy(self) -> _Coded:
        """Another vocabulary starting from this one (codes given so far mean the same)."""
        other = _Coded()
        other.index = {name: dict(index) for name, index in self.index.items()}
        other.levels = {name: list(levels) for name, levels in self.levels.items()}
        return other

    def decode(self, name: str, codes: np.ndarray) -> np.ndarray:
        levels = np.array([*self.levels.get(name, []), None], dtype=object)
        return levels[codes]  # -1: the appended None


Columns = dict[str, np.ndarray]  # evidence rows as arrays (text: object arrays, None missing)
SMALL = 256  # fewer rows (a request's): coded value by value, no factorising


def _columns_of(frame: pd.DataFrame | Columns, coded: _Coded) -> Columns:
    """Evidence columns as arrays, text coded (``_Coded``)."""
    out = {}
    for name in frame:
        column = frame[name]
        if column.dtype == object or pd.api.types.is_string_dtype(column):
            if len(column) < SMALL:
                out[name] = coded.encode(name, np.asarray(column, dtype=object))
            else:
                out[name] = coded.encode_many(name, pd.Series(column))
        else:
            out[name] = np.asarray(column)
    return out


def _concat(chunks: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {name: np.concatenate([c[name] for c in chunks]) for name in chunks[0]}


@dataclass
class RefitPart:
    """A refit family's snapshot part: its fit for the cutoff's period and what refits it."""

    fitted: Any  # the family's fit for the refit period holding the cutoff (the snapshot's)
    period: int  # that period
    # the whole history's evidence, canonical; None: a snapshot from before evidence was kept,
    # whose fit serves every later period (as then)
    evidence: Evidence | None
    # the live copy's (``with_live``): evidence as coded arrays, the snapshot's and appended
    _coded: _Coded | None = None
    _base: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    _live: dict[str, list[dict[str, np.ndarray]]] = field(default_factory=dict)
    _fits: dict[int, Any] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _released: bool = False
    name: str = ""  # the family's (for the log)
    prefits: bool = True  # fit the next period in a thread once its cut has passed
    refit_count: int = 0  # fits made since the snapshot's (kept ones: a refit's cost, counted)
    # evidence of the snapshot's period came in after it: its fit is made again (``add``)
    snapshot_stale: bool = False
    _prefitting: int | None = None  # the period being fitted ahead of it (``prefit``)
    _prefit_thread: threading.Thread | None = None
    _coded_base: tuple[_Coded, dict[str, dict[str, np.ndarray]]] | None = None

    def __getstate__(self) -> dict[str, Any]:
        """What a snapshot piece carries between processes (the Dask engine's): no live layer."""
        return {
            "fitted": self.fitted,
            "period": self.period,
            "evidence": self.evidence,
            "name": self.name,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["fitted"], state["period"], state["evidence"], name=state["name"])

    def with_live(self) -> RefitPart:
        """A live copy: the evidence coded once per process (about half the memory of the
        frames, which the snapshot part then keeps only to be saved: ``release_event_copies``)
        and shared by every copy; what a copy appends is its own."""
        if self._coded_base is None:
            if self.evidence is None:  # nothing to refit from: the snapshot's fit throughout
                return RefitPart(self.fitted, self.period, None, name=self.name)
            coded = _Coded()
            base = {kind: _columns_of(frame, coded) for kind, frame in self.evidence.items()}
            self._coded_base = (coded, base)
        coded, base = self._coded_base
        live = RefitPart(self.fitted, self.period, None, coded.copy(), name=self.name)
        live._base = base
        return live

    def release_event_copies(self) -> None:
        """Free the evidence frames once coded (a serving process); saving the part
        afterwards is refused."""
        if self.evidence is not None and self._coded_base is not None:
            self.evidence = None
            self._released = True

    @property
    def refits(self) -> bool:
        """A live copy that refits for later periods (not one of an older snapshot)."""
        return self._coded is not None

    def add(self, kind: str, frame: Columns) -> None:
        """Evidence seen since the snapshot (with its ``PERIOD``): the fits of periods after
        the earliest of them no longer hold."""
        if not self.refits or not len(frame[N]):
            return
        earliest = int(np.min(frame[PERIOD]))
        with self._lock:  # (the vocabulary grows here, and a refit decodes it)
            _push(self._live.setdefault(kind, []), _columns_of(frame, self._coded))
            for period in [p for p in self._fits if p > earliest]:
                del self._fits[period]
            if earliest < self.period:
                # evidence of the snapshot's own period the history lacked (a result stored
                # after the export but recorded before the period's cut, a correction of
                # one, a backlog declared before it): its fit is made again, as for any period
                self.snapshot_stale = True

    def _chunks(self) -> dict[str, list[Columns]]:
        """Every chunk of evidence by kind, the snapshot's first (a copy of the lists: chunks
        themselves are never changed, only replaced when merged)."""
        kinds = set(self._base) | set(self._live)
        return {
            kind: ([self._base[kind]] if kind in self._base else [])
            + list(self._live.get(kind, []))
            for kind in kinds
        }

    def _rows_for(self, period: int, chunks: dict[str, list[Columns]]) -> int:
        """How many evidence rows ``period``'s fit learns from: appending only ever adds
        rows, so an unchanged count is unchanged evidence."""
        return sum(int((c[PERIOD] < period).sum()) for kind in chunks.values() for c in kind)

    def evidence_for(
        self,
        period: int,
        extra: Evidence | None = None,
        chunks: dict[str, list[Columns]] | None = None,
    ) -> Evidence:
        """The evidence ``period``'s fit learns from (evidence periods before it): the
        snapshot's, what was appended since (``chunks``: as taken earlier), and ``extra`` (a
        request's own declarations)."""
        out: Evidence = {}
        chunks = self._chunks() if chunks is None else chunks
        kinds = set(chunks) | set(extra or {})
        for kind in kinds:
            taken = []
            for chunk in chunks.get(kind, []):
                keep = chunk[PERIOD] < period
                if keep.all():
                    taken.append(chunk)
                elif keep.any():
                    taken.append({k: v[keep] for k, v in chunk.items()})
            frame = (
                pd.DataFrame(
                    {
                        name: self._coded.decode(name, values)
                        if name in self._coded.levels
                        else values
                        for name, values in _concat(taken).items()
                    }
                )
                if taken
                else None
            )
            frames = [f for f in (frame, (extra or {}).get(kind)) if f is not None and len(f)]
            if frames:
                out[kind] = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
        return out

    def fit_for(
        self, period: int, fit: Callable[[Evidence], Any], extra: Evidence | None = None
    ) -> Any:
        """The family's fit for ``period`` (after the snapshot's, or the snapshot's once stale):
        made once and kept, unless ``extra`` evidence of the request itself takes part (then
        made for this request only)."""
        with self._lock:  # one refit at a time; appends wait for it
            if not extra and period in self._fits:
                return self._fits[period]
            started = time.perf_counter()
            evidence = self.evidence_for(period, extra)
            fitted = fit(evidence)
            if not extra:
                self._keep(period, fitted)
            # a refit is a second's work at a million rows: in the log, so a worker refitting
            # often (evidence arriving over refit_lag_days late, again and again) shows
            log.info(
                "refitted %s for refit period %d on %s evidence rows in %.2f s%s",
                self.name,
                period,
                {kind: len(frame) for kind, frame in evidence.items()},
                time.perf_counter() - started,
                " (with the request's own declarations)" if extra else "",
            )
            return fitted

    def prefit(self, period: int, fit: Callable[[Evidence], Any]) -> threading.Thread | None:
        """Make ``period``'s fit in a thread, before its first declaration comes: once the
        period's cut has passed (a declaration of a later evidence period is in), what it
        learns from is in, barring stragglers. The first request of the period then finds it
        made instead of making it (a second at a million rows, every request queued behind
        it waiting). Kept only if no evidence it learns from came meanwhile. None: made or
        being made already."""
        with self._lock:
            if period in self._fits or self._prefitting is not None:
                return None
            self._prefitting = period
            chunks = self._chunks()
            rows = self._rows_for(period, chunks)

        def run() -> None:
            try:
                started = time.perf_counter()
                fitted = fit(self.evidence_for(period, None, chunks))
                with self._lock:
                    if period not in self._fits and self._rows_for(period, self._chunks()) == rows:
                        self._keep(period, fitted)
                        log.info(
                            "refitted %s for refit period %d ahead of it in %.2f s",
                            self.name,
                            period,
                            time.perf_counter() - started,
                        )
            except Exception:  # a failed prefit costs nothing: the first request fits
                log.exception("refitting %s ahead of refit period %d failed", self.name, period)
            finally:
                self._prefitting = None

        thread = threading.Thread(target=run, name=f"refit-{self.name}-{period}", daemon=True)
        thread.start()
        self._prefit_thread = thread
        return thread

    def _keep(self, period: int, fitted: Any) -> None:
        """Keep ``period``'s fit (under the lock), the latest ``KEPT_FITS`` periods' only."""
        self._fits[period] = fitted
        self.refit_count += 1
        # a fit of an older period is rarely asked again (a declaration weeks late): made
        # again then, not kept (a text model is tens of MB)
        for old in [p for p in self._fits if p < max(self._fits) - KEPT_FITS + 1]:
            del self._fits[old]


def _push(chunks: list[dict[str, np.ndarray]], chunk: dict[str, np.ndarray]) -> None:
    """Append ``chunk``, merging the last chunks while the newer is at least as long as the one
    before it: O(log n) chunks, each row copied O(log n) times (as a binary counter)."""
    chunks.append(chunk)
    while len(chunks) > 1 and len(chunks[-1][PERIOD]) >= len(chunks[-2][PERIOD]):
        last = chunks.pop()
        chunks[-1] = _concat([chunks[-1], last])


class RefitFamily(Family):
    """A family batch refits per period, refitted the same way in the live state.

    A subclass gives ``evidence_of_rows`` (and ``evidence_of_results`` if results teach it),
    ``fit_evidence`` (its fit from evidence, the same as batch's from the same rows),
    ``fit_before`` (its fit of the history's rows before a period start) and keeps
    ``compute``, ``save_fitted`` and ``load_fitted`` for the fit itself."""

    def evidence_of_rows(self, rows: Rows) -> Columns:
        """One evidence row per declaration (without ``n``): what refits learn from it (text
        as the prepared object arrays)."""
        raise NotImplementedError

    def evidence_of_results(self, rows: Rows, illicit: np.ndarray) -> Columns | None:
        """One evidence row per inspection result of ``rows`` (without ``n``); None: the
        family does not learn from results."""
        return None

    def fit_evidence(self, evidence: Evidence, rows: Rows) -> Any:
        """The fit from evidence (every row before a period start), as ``compute`` takes it."""
        raise NotImplementedError

    def fit_before(self, history: History, start_us: int) -> Any:
        """The fit batch makes for the period starting at ``start_us``."""
        raise NotImplementedError

    def save_fitted(self, fitted: Any, directory: Path) -> None:
        raise NotImplementedError

    def load_fitted(self, directory: Path) -> Any:
        raise NotImplementedError

    # -- the snapshot part ----------------------------------------------------------------

    def history_evidence(self, history: History) -> Evidence:
        """The evidence of a history as known at its cutoff (every row; results recorded)."""
        evidence = {"declared": canonical(pd.DataFrame(self._declared(history)))}
        outcomes = history.outcomes
        rows = Rows(
            history.prep.take(outcomes["rows"]), history.params, history.contract, history.manifest
        )
        results = self.evidence_of_results(rows, outcomes["illicit"])
        if results is not None:
            results[PERIOD] = evidence_period(outcomes["t_us"], history.params)
            results[N] = np.ones(len(outcomes["t_us"]), dtype=np.int64)
            evidence["results"] = canonical(pd.DataFrame(results))
        return evidence

    def fit_part(self, history: History, cutoff_us: int) -> RefitPart:
        period = int(period_of(np.array([cutoff_us]), history.params.refit_period_days)[0])
        return RefitPart(
            self.fit_before(history, fit_cut_us(period, history.params)),
            period,
            self.history_evidence(history),
            name=self.name,
        )

    def merge_pieces(self, pieces: list[RefitPart], fitted: Any) -> RefitPart:
        """The part of the whole history from parts of disjoint rows (``fitted``: their fits
        merged by the family)."""
        kinds = {kind for p in pieces for kind in (p.evidence or {})}
        evidence = {
            kind: canonical(
                pd.concat(
                    [p.evidence[kind] for p in pieces if kind in p.evidence], ignore_index=True
                )
            )
            for kind in sorted(kinds)
        }
        return RefitPart(fitted, pieces[0].period, evidence, name=self.name)

    def save_part(self, part: RefitPart, directory: Path) -> None:
        if part._released:
            raise ParcelriskError(
                f"{self.name}: this entity state was loaded to serve and its evidence released "
                "(release_event_copies): save the state features build wrote, not a served one"
            )
        self.save_fitted(part.fitted, directory)
        for kind, frame in (part.evidence or {}).items():
            frame.to_parquet(directory / f"{self.name}_evidence_{kind}.parquet", index=False)

    def load_part(self, directory: Path) -> RefitPart:
        fitted = self.load_fitted(directory)
        files = sorted(directory.glob(f"{self.name}_evidence_*.parquet"))
        evidence = {
            f.stem.removeprefix(f"{self.name}_evidence_"): pd.read_parquet(f) for f in files
        }
        # the period is the snapshot's to tell (``EntityState.load`` sets it)
        return RefitPart(fitted, -1, evidence or None, name=self.name)

    # -- online ---------------------------------------------------------------------------

    def online(self, rows: Rows, part: Any) -> Values:
        if not isinstance(part, RefitPart):
            return self.compute(rows, part)
        if not part.refits:
            return self.compute(rows, part.fitted)
        params = rows.params
        t_us = rows.prep["t_us"]
        # a declaration of a period before the snapshot's is valued as of the snapshot's
        # (it was declared before the cutoff, and is warned so)
        periods = np.maximum(period_of(t_us, params.refit_period_days), part.period)
        seen = rows.prep.get("already_seen")
        new = np.ones(len(t_us), dtype=bool) if seen is None else ~seen
        evidence = evidence_period(t_us, params)
        distinct = np.unique(periods)
        out: Values = {}
        for period in distinct.tolist():
            # the request's own new declarations a fit of this period learns from (a backlog
            # across a period start): made for this request with them
            earlier = np.flatnonzero(new & (evidence < period))
            extra = None
            if len(earlier):
                extra = {"declared": pd.DataFrame(self._declared(_take(rows, earlier)))}
            if period == part.period and extra is None and not part.snapshot_stale:
                fitted = part.fitted  # the usual request until the next period starts
            else:
                fitted = part.fit_for(period, lambda e: self.fit_evidence(e, rows), extra)
            if len(distinct) == 1:
                return self.compute(rows, fitted)
            at = np.flatnonzero(periods == period)
            for name, values in self.compute(_take(rows, at), fitted).items():
                if name not in out:  # features are floats; a reason's words (text) objects
                    text = values.dtype == object
                    out[name] = np.full(
                        len(t_us), None if text else np.nan, values.dtype if text else np.float64
                    )
                out[name][at] = values
        return out

    def _declared(self, rows: Rows) -> Columns:
        columns = self.evidence_of_rows(rows)
        columns[PERIOD] = evidence_period(rows.prep["t_us"], rows.params)
        columns[N] = np.ones(rows.prep.n_rows, dtype=np.int64)
        return columns

    def append_live(self, rows: Rows, part: Any) -> None:
        if isinstance(part, RefitPart) and part.refits:
            declared = self._declared(rows)
            part.add("declared", declared)
            # past the cut of the period after the latest fitted: fit it ahead of its start
            latest = max(part.period, max(part._fits, default=part.period))
            if int(declared[PERIOD].max()) > latest and part.prefits:
                part.prefit(latest + 1, lambda e: self.fit_evidence(e, rows))

    def fold_live(self, part: Any, horizon_us: int) -> None:
        """Nothing folds: batch's references and models learn from the whole past."""

    def append_outcomes(
        self,
        rows: Rows,
        part: Any,
        inspected_at_us: np.ndarray,
        illicit: np.ndarray,
        revenue_cents: np.ndarray,
        signs: np.ndarray,
    ) -> None:
        if not (isinstance(part, RefitPart) and part.refits):
            return
        columns = self.evidence_of_results(rows, np.asarray(illicit, dtype=bool))
        if columns is None:
            return
        columns[PERIOD] = evidence_period(inspected_at_us, rows.params)
        columns[N] = np.asarray(signs, dtype=np.int64)
        part.add("results", columns)


def fitted_of(part: Any) -> Any:
    """The fit a family's part holds for the snapshot's period (the part itself if not refit)."""
    return part.fitted if isinstance(part, RefitPart) else part


def _take(rows: Rows, at: np.ndarray) -> Rows:
    if len(at) == rows.prep.n_rows:
        return rows
    return Rows(rows.prep.take(at), rows.params, rows.contract, rows.manifest)
