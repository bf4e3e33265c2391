"""Entity history family: what each entity (seller, consignee, pairs...) did before this parcel.

Declarations count at ``declared_at``, inspection results at ``inspected_at``: a parcel sees only
what was recorded strictly before it (``features.pipeline.history``). Hit rates are smoothed
towards the global hit rate of the results recorded so far.

The snapshot holds per entity the vocabulary of keys, totals of everything older than the
longest window (first seen, inspections, offences, revenue) and the events inside it; a request
is answered by one merged query over every entity's events plus the request's own rows.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from features.errors import ParcelriskError
from features.params import FeatureParams
from features.pipeline import history as hist
from features.pipeline.family import Family, History, Rows, SpecContext, Values
from features.pipeline.history import NO_TIME, US_PER_DAY, EntityBase, EventIndex
from features.pipeline.manifest import FeatureSpec
from features.pipeline.prepare import (
    Entity,
    entities_for,
    entity_keys,
    entity_of,
    forget_unknown,
    snapshot_horizon_us,
)

# features that need the recovered revenue of past inspections
_REVENUE = ("revenue_recovered_eur", "revenue_per_offence_eur")


OUTCOME_WEIGHTS = ("inspected", "illicit", "revenue_cents")
# ``History.whole``: every recorded result of the whole history (t_us, illicit, revenue_cents)
ALL_OUTCOMES = "entity_history.outcomes"


def outcome_weights(
    illicit: np.ndarray, revenue_cents: np.ndarray, signs: np.ndarray | None = None
) -> dict[str, np.ndarray]:
    """An inspection result's event weights. ``signs``: -1 where a result is taken back (the
    one a correction replaced, at its own time): every total is a sum, so the correction's two
    events leave the totals as if only the corrected result had ever been stored."""
    weights = {
        "inspected": np.ones(len(illicit), dtype=np.int64),
        "illicit": illicit.astype(np.int64),
        "revenue_cents": revenue_cents.astype(np.int64),
    }
    if signs is not None:
        sign = np.asarray(signs, dtype=np.int64)
        weights = {name: w * sign for name, w in weights.items()}
    return weights


def smoothed_rate(
    hits: np.ndarray, trials: np.ndarray, prior: np.ndarray, strength: float
) -> np.ndarray:
    """Beta-prior hit rate: a new entity gets the prior, never 0 or 1."""
    return (hits + strength * prior) / (trials + strength)


def _outcome_index(outcomes: dict[str, np.ndarray]) -> EventIndex:
    """Every recorded result as an event of code 0 (the prior's index)."""
    out_t = outcomes["t_us"]
    weights = outcome_weights(outcomes["illicit"], outcomes["revenue_cents"])
    return EventIndex(np.zeros(len(out_t), dtype=np.int64), out_t, weights)


def global_prior(
    times_us: np.ndarray,
    outcomes: EventIndex | hist.CombinedIndex,
    base: EntityBase | None,
    params: FeatureParams,
) -> np.ndarray:
    """Hit rate of all inspections recorded before each query (code 0 = everything)."""
    known = outcomes.prefix(np.zeros(len(times_us), dtype=np.int64), times_us)
    n_insp, n_ill = known["inspected"], known["illicit"]
    if base is not None and len(base.n_inspected):
        n_insp = n_insp + base.n_inspected[0]
        n_ill = n_ill + base.n_illicit[0]
    default = np.full(len(times_us), params.default_prior)
    return smoothed_rate(n_ill, n_insp, default, params.prior_strength)


def entity_history(
    prefix: str,
    codes: np.ndarray,
    times_us: np.ndarray,
    declarations: EventIndex | hist.CombinedIndex | hist.BatchIndex,
    outcomes: EventIndex | hist.CombinedIndex | hist.BatchIndex,
    prior: np.ndarray,
    params: FeatureParams,
    base: EntityBase | None = None,
) -> Values:
    """History features of one entity for each query (code, time): the family's compute.

    ``declarations`` indexes declaration events at ``declared_at``; ``outcomes`` indexes
    inspection results at ``inspected_at`` (weights inspected/illicit/revenue_cents). ``base``
    (one row per query, see ``EntityBase.take``) adds what happened before the indexes' horizon
    (online snapshot); windows never reach it.
    """
    out: Values = {}
    now = declarations.prefix(codes, times_us)
    for w in params.windows_days:
        then = declarations.prefix(codes, times_us, shift_us=w * US_PER_DAY)
        out[f"{prefix}_n_{w}d"] = (now["count"] - then["count"]).astype(np.float64)
    first = declarations.first_time_before(codes, times_us)
    if base is not None:
        first = _earliest(base.first_seen_us, first)
    out[f"{prefix}_days_since_first"] = np.where(
        first == NO_TIME, np.nan, (times_us - first) / US_PER_DAY
    )

    ow = params.outcome_window_days
    known = outcomes.prefix(codes, times_us)
    n_insp, n_ill, rev = known["inspected"], known["illicit"], known["revenue_cents"]
    if base is not None:
        n_insp = n_insp + base.n_inspected
        n_ill = n_ill + base.n_illicit
        rev = rev + base.revenue_cents
    recent_start = outcomes.prefix(codes, times_us, shift_us=ow * US_PER_DAY)
    out[f"{prefix}_n_inspected"] = n_insp.astype(np.float64)
    out[f"{prefix}_n_illicit"] = n_ill.astype(np.float64)
    out[f"{prefix}_hit_rate"] = smoothed_rate(n_ill, n_insp, prior, params.prior_strength)
    out[f"{prefix}_revenue_recovered_eur"] = rev / 100.0
    out[f"{prefix}_revenue_per_offence_eur"] = np.where(
        n_ill > 0, rev / 100.0 / np.maximum(n_ill, 1), np.nan
    )
    out[f"{prefix}_illicit_{ow}d"] = (known["illicit"] - recent_start["illicit"]).astype(np.float64)
    out[f"{prefix}_inspected_{ow}d"] = (known["inspected"] - recent_start["inspected"]).astype(
        np.float64
    )
    return out


def _specs_of(entity: Entity, params: FeatureParams) -> list[FeatureSpec]:
    p, who, ow = entity.prefix, entity.phrase, params.outcome_window_days

    def spec(name: str, description: str, reason: str) -> FeatureSpec:
        return FeatureSpec(f"{p}_{name}", "entity_history", "float", description, reason)

    what = entity.spec
    return [
        *(
            spec(
                f"n_{w}d",
                f"Declarations by the same {what} in the previous {w} days.",
                f"{who} lodged {{value:.0f}} declarations in the last {w} days",
            )
            for w in params.windows_days
        ),
        spec(
            "days_since_first",
            f"Days since the {what} was first seen (empty if new).",
            f"{who} first seen {{value:.0f}} days ago",
        ),
        spec(
            "n_inspected",
            f"Past inspections of the {what} with a recorded result.",
            f"{who} inspected {{value:.0f}} times before",
        ),
        spec(
            "n_illicit",
            f"Past inspections of the {what} that found an offence.",
            f"{who} caught {{value:.0f}} times before",
        ),
        spec(
            "hit_rate",
            f"Smoothed hit rate of past inspections of the {what}.",
            f"{who} past inspections hit rate {{value:.0%}}",
        ),
        spec(
            "revenue_recovered_eur",
            f"Revenue recovered from the {what} in past inspections, EUR.",
            f"EUR {{value:,.0f}} already recovered from {who}",
        ),
        spec(
            "revenue_per_offence_eur",
            f"Mean revenue recovered per offence found for the {what}, EUR (empty if none).",
            f"offences of {who} recovered EUR {{value:,.0f}} each on average",
        ),
        spec(
            f"illicit_{ow}d",
            f"Offences found for the {what} in results recorded in the last {ow} days.",
            f"{who} caught {{value:.0f}} times in the last {ow} days",
        ),
        spec(
            f"inspected_{ow}d",
            f"Inspection results for the {what} recorded in the last {ow} days.",
            f"{who} inspected {{value:.0f}} times in the last {ow} days",
        ),
    ]


# --- snapshot ----------------------------------------------------------------------------------


@dataclass
class EntityTable:
    vocabulary: pd.Index  # code -> key
    base: EntityBase  # totals before the horizon, by code
    decl_codes: np.ndarray
    decl_t_us: np.ndarray
    out_codes: np.ndarray
    out_t_us: np.ndarray
    out_illicit: np.ndarray
    out_revenue_cents: np.ndarray
    # the event arrays and the keys' text were dropped once the indexes held them
    # (``release_event_copies``)
    released: bool = False
    n_keys: int = -1  # len(vocabulary), kept when the vocabulary's text is released

    def __post_init__(self) -> None:
        if self.n_keys < 0:
            self.n_keys = len(self.vocabulary)

    @functools.cached_property
    def key_index(self) -> tuple[np.ndarray, np.ndarray]:
        """The keys' hashes sorted (``hist.key_hashes``) and the code at each position: how a
        served snapshot finds a key's code, in 16 bytes a key where the keys as Python strings
        and a dict to find them took about 200 (two keys sharing a hash share one code)."""
        hashes = hist.key_hashes(self.vocabulary.to_numpy(dtype=object))
        order = np.argsort(hashes, kind="stable")
        return hashes[order], order.astype(np.int64)

    def live_keys(self) -> hist.HashedKeys:
        """Key -> code: the snapshot's keys by hash, then keys first seen live."""
        hashes, codes = self.key_index
        return hist.HashedKeys(hashes, MAX_NEW_KEYS - 1, codes)


# Online, all entities are queried at once: entity e's codes are shifted by an offset that leaves
# room for MAX_NEW_KEYS unseen keys per request, so one sorted index answers every entity.
MAX_NEW_KEYS = 1 << 20


@dataclass
class EntityHistories:
    """The family's snapshot part: per-entity tables and the global outcomes (for the prior)."""

    tables: dict[str, EntityTable]  # by entity spec
    global_base: EntityBase
    global_out_t_us: np.ndarray
    global_out_illicit: np.ndarray
    global_out_revenue_cents: np.ndarray
    live: LiveHistories | None = None  # events seen since the snapshot (features.pipeline.live)

    def with_live(self) -> EntityHistories:
        """This snapshot with an empty live layer of its own (the snapshot stays shared)."""
        merged = self.merged
        part = EntityHistories(
            self.tables,
            self.global_base,
            self.global_out_t_us,
            self.global_out_illicit,
            self.global_out_revenue_cents,
        )
        part.__dict__["merged"] = merged
        part.live = LiveHistories(
            keys={spec: table.live_keys() for spec, table in self.tables.items()},
            declarations=hist.EventRuns(),
            outcomes=hist.EventRuns(OUTCOME_WEIGHTS),
            global_outcomes=hist.EventRuns(OUTCOME_WEIGHTS),
        )
        return part

    def release_event_copies(self) -> None:
        """Drop the tables' own event arrays once the indexes (``merged``) hold every event.

        A served snapshot is read, never saved, and those copies were most of its event memory
        in every worker: 158 bytes a declaration of the window against the indexes' 95
        (200,000 generated parcels over 180 days: 31.5 MB freed, 19.0 MB kept; ~0.8 GB a
        worker at 5M). ``save_part`` refuses a part released so.
        """
        self.merged  # noqa: B018 - the indexes, built from the arrays before they go
        for table in self.tables.values():
            table.key_index  # noqa: B018 - keys are found by hash from here on
            for name in _EVENT_ARRAYS:
                setattr(table, name, np.zeros(0, dtype=getattr(table, name).dtype))
            table.vocabulary = pd.Index([], dtype=object)  # n_keys holds its length
            table.released = True

    def keys(self, spec: str) -> hist.HashedKeys:
        if self.live is not None:
            return self.live.keys[spec]
        return self.tables[spec].live_keys()

    @functools.cached_property
    def merged(self) -> _Merged:
        """Sorted indexes of every entity's events, built once per loaded snapshot."""
        offsets, base_offsets = {}, {}
        decl_codes, decl_t, out_codes, out_t, out_ill, out_rev = ([] for _ in range(6))
        bases = []
        offset = base_offset = 0
        for spec, table in self.tables.items():
            offsets[spec], base_offsets[spec] = offset, base_offset
            decl_codes.append(table.decl_codes + offset)
            decl_t.append(table.decl_t_us)
            out_codes.append(table.out_codes + offset)
            out_t.append(table.out_t_us)
            out_ill.append(table.out_illicit)
            out_rev.append(table.out_revenue_cents)
            bases.append(table.base)
            offset += table.n_keys + MAX_NEW_KEYS
            base_offset += table.n_keys
        bases.append(EntityBase.empty(1))

        def cat(arrays: list[np.ndarray]) -> np.ndarray:
            return np.concatenate(arrays) if arrays else np.zeros(0, dtype=np.int64)

        return _Merged(
            offsets=offsets,
            declarations=EventIndex(cat(decl_codes), cat(decl_t)),
            outcomes=EventIndex(
                cat(out_codes), cat(out_t), outcome_weights(cat(out_ill), cat(out_rev))
            ),
            base=EntityBase(
                first_seen_us=cat([b.first_seen_us for b in bases]),
                n_inspected=cat([b.n_inspected for b in bases]),
                n_illicit=cat([b.n_illicit for b in bases]),
                revenue_cents=cat([b.revenue_cents for b in bases]),
            ),
            base_offsets=base_offsets,
            empty_row=base_offset,
            global_outcomes=EventIndex(
                np.zeros(len(self.global_out_t_us), dtype=np.int64),
                self.global_out_t_us,
                outcome_weights(self.global_out_illicit, self.global_out_revenue_cents),
            ),
        )


@dataclass
class LiveHistories:
    """Declarations and inspection results seen after the snapshot, in the snapshot's merged code
    space (``_Merged.offsets``); keys the snapshot never saw get codes after its vocabulary."""

    keys: dict[str, hist.HashedKeys]  # by entity spec
    declarations: hist.EventRuns
    outcomes: hist.EventRuns  # weights OUTCOME_WEIGHTS
    global_outcomes: hist.EventRuns  # code 0: every result, for the prior
    # totals of live events folded out of the runs (older than every window), replaced whole
    folded: FoldedTotals = dataclasses.field(default_factory=lambda: FoldedTotals.empty())


@dataclass(frozen=True)
class FoldedTotals:
    """Per merged code (``rows``: code -> row of the arrays) what folded live events add to the
    snapshot's base, and the same for the prior (every result)."""

    rows: dict[int, int]
    base: EntityBase
    global_inspected: int = 0
    global_illicit: int = 0

    @staticmethod
    def empty() -> FoldedTotals:
        return FoldedTotals({}, EntityBase.empty(0))

    def _take(self, codes: np.ndarray) -> EntityBase:
        """Rows of ``codes`` (the empty base for codes never folded)."""
        rows = hist.codes_of(self.rows, codes.tolist())
        return self.base.take(np.where(rows >= 0, rows, len(self.base.n_inspected)))

    def add_to(self, base: EntityBase, codes: np.ndarray) -> EntityBase:
        """``base`` (one row per query code) plus the folded totals of each code."""
        if not self.rows:
            return base
        mine = self._take(codes)
        return EntityBase(
            first_seen_us=_earliest(base.first_seen_us, mine.first_seen_us),
            n_inspected=base.n_inspected + mine.n_inspected,
            n_illicit=base.n_illicit + mine.n_illicit,
            revenue_cents=base.revenue_cents + mine.revenue_cents,
        )

    def fold(
        self,
        decl_codes: np.ndarray,
        decl_t: np.ndarray,
        out_codes: np.ndarray,
        out_w: dict[str, np.ndarray],
        global_w: dict[str, np.ndarray],
    ) -> FoldedTotals:
        """These totals plus dropped events: declarations (first seen) and results (sums)."""
        before = np.fromiter(self.rows, dtype=np.int64, count=len(self.rows))
        codes = np.unique(np.concatenate([before, decl_codes, out_codes]))
        old = self._take(codes)
        never = np.iinfo(np.int64).max
        first = np.where(old.first_seen_us == NO_TIME, never, old.first_seen_us)
        np.minimum.at(first, np.searchsorted(codes, decl_codes), decl_t)
        at = np.searchsorted(codes, out_codes)

        def total(old_values: np.ndarray, name: str) -> np.ndarray:
            out = old_values.copy()
            np.add.at(out, at, out_w[name])
            return out

        return FoldedTotals(
            rows={int(c): i for i, c in enumerate(codes.tolist())},
            base=EntityBase(
                first_seen_us=np.where(first == never, NO_TIME, first),
                n_inspected=total(old.n_inspected, "inspected"),
                n_illicit=total(old.n_illicit, "illicit"),
                revenue_cents=total(old.revenue_cents, "revenue_cents"),
            ),
            global_inspected=self.global_inspected + int(global_w["inspected"].sum()),
            global_illicit=self.global_illicit + int(global_w["illicit"].sum()),
        )


def _earliest(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Element-wise earliest time, NO_TIME meaning none."""
    never = np.iinfo(np.int64).max
    first = np.minimum(np.where(a == NO_TIME, never, a), np.where(b == NO_TIME, never, b))
    return np.where(first == never, NO_TIME, first)


@dataclass
class _Merged:
    offsets: dict[str, int]  # entity spec -> code offset
    declarations: EventIndex  # all entities' recent declaration events
    outcomes: EventIndex  # all entities' recent outcome events
    base: EntityBase  # all entities' bases, then one empty row (index ``empty_row``)
    base_offsets: dict[str, int]
    empty_row: int
    global_outcomes: EventIndex


def _table_of(
    history: History, entity: Entity, horizon: int
) -> tuple[EntityTable, np.ndarray, np.ndarray, np.ndarray]:
    """An entity's snapshot table, and the rows where each key first appears, of the table's
    declaration events and of its results' declarations."""
    prep, outcomes = history.prep, history.outcomes
    t = prep["t_us"]
    codes, vocab = history.entity(entity)
    known = codes >= 0  # parcels with an unknown key belong to no entity
    out_known = known[outcomes["rows"]]
    out_codes = codes[outcomes["rows"]][out_known]
    out_t = outcomes["t_us"][out_known]
    out_ill = outcomes["illicit"][out_known]
    out_rev = outcomes["revenue_cents"][out_known]
    recent = known & (t >= horizon)
    recent_out = out_t >= horizon
    table = EntityTable(
        vocabulary=pd.Index(vocab.astype("str")),
        base=_base_totals(
            len(vocab), codes[known], t[known], horizon, out_codes, out_t, out_ill, out_rev
        ),
        decl_codes=codes[recent],
        decl_t_us=t[recent],
        out_codes=out_codes[recent_out],
        out_t_us=out_t[recent_out],
        out_illicit=out_ill[recent_out].astype(np.int64),
        out_revenue_cents=out_rev[recent_out],
    )
    _, first = np.unique(codes[known], return_index=True)  # codes come in order of appearance
    first = np.flatnonzero(known)[first]
    return table, first, np.flatnonzero(recent), outcomes["rows"][out_known][recent_out]


def _merged_table(pieces: list[dict]) -> EntityTable:
    """One entity's table from pieces of disjoint keys: keys coded in order of their first
    row, events in the order of their rows (as ``_table_of`` gives them on the whole)."""
    first_row = np.concatenate([p["first_row"] for p in pieces])
    order = np.argsort(first_row, kind="stable")
    code_of = np.empty(len(order), dtype=np.int64)
    code_of[order] = np.arange(len(order))
    offsets = np.cumsum([0] + [len(p["first_row"]) for p in pieces])

    def codes(name: str) -> np.ndarray:
        return np.concatenate(
            [code_of[p["table"].__dict__[name] + offsets[i]] for i, p in enumerate(pieces)]
        ).astype(np.int64)

    def cat(name: str, part: str = "") -> np.ndarray:
        return np.concatenate(
            [getattr(p["table"].base if part else p["table"], name) for p in pieces]
        )

    decl = np.argsort(np.concatenate([p["decl_row"] for p in pieces]), kind="stable")
    out = np.argsort(np.concatenate([p["out_row"] for p in pieces]), kind="stable")
    vocabulary = np.concatenate([p["table"].vocabulary.to_numpy(object) for p in pieces])
    return EntityTable(
        vocabulary=pd.Index(vocabulary[order].astype("str")),
        base=EntityBase(**{n: cat(n, "base")[order] for n in _BASE_TOTALS}),
        decl_codes=codes("decl_codes")[decl],
        decl_t_us=cat("decl_t_us")[decl],
        out_codes=codes("out_codes")[out],
        out_t_us=cat("out_t_us")[out],
        out_illicit=cat("out_illicit")[out],
        out_revenue_cents=cat("out_revenue_cents")[out],
    )


_BASE_TOTALS = ("first_seen_us", "n_inspected", "n_illicit", "revenue_cents")
_EVENT_ARRAYS = (
    "decl_codes", "decl_t_us", "out_codes", "out_t_us", "out_illicit", "out_revenue_cents",
)  # fmt: skip


def _with_global(
    tables: dict[str, EntityTable],
    outcomes: dict[str, np.ndarray],
    horizon: int,
    t_us: np.ndarray | None = None,
) -> EntityHistories:
    """The snapshot part: the tables, and every result for the prior (older ones as totals;
    ``t_us``: every declaration's time, for a first-seen the saved snapshot does not keep)."""
    recent_out = outcomes["t_us"] >= horizon
    zero = np.zeros(len(outcomes["t_us"]), dtype=np.int64)
    t_us = np.zeros(0, dtype=np.int64) if t_us is None else t_us
    global_base = _base_totals(
        1,
        np.zeros(len(t_us), dtype=np.int64),
        t_us,
        horizon,
        zero,
        outcomes["t_us"],
        outcomes["illicit"],
        outcomes["revenue_cents"],
    )
    return EntityHistories(
        tables=tables,
        global_base=global_base,
        global_out_t_us=outcomes["t_us"][recent_out],
        global_out_illicit=outcomes["illicit"][recent_out].astype(np.int64),
        global_out_revenue_cents=outcomes["revenue_cents"][recent_out],
    )


def _base_totals(
    n_codes: int,
    codes: np.ndarray,
    t_us: np.ndarray,
    horizon: int,
    out_codes: np.ndarray,
    out_t: np.ndarray,
    out_ill: np.ndarray,
    out_rev: np.ndarray,
) -> EntityBase:
    old = t_us < horizon
    first = np.full(n_codes, NO_TIME, dtype=np.int64)
    if old.any():
        firsts = pd.Series(t_us[old]).groupby(codes[old]).min()
        first[firsts.index.to_numpy()] = firsts.to_numpy()
    old_out = out_t < horizon
    return EntityBase(
        first_seen_us=first,
        n_inspected=np.bincount(out_codes[old_out], minlength=n_codes).astype(np.int64),
        n_illicit=np.bincount(
            out_codes[old_out], weights=out_ill[old_out], minlength=n_codes
        ).astype(np.int64),
        revenue_cents=np.bincount(out_codes[old_out], weights=out_rev[old_out], minlength=n_codes)
        .round()
        .astype(np.int64),
    )


class EntityHistoryFamily(Family):
    name = "entity_history"
    distribution = "keys"

    def partition_keys(self, ctx: SpecContext) -> tuple[str, ...]:
        return tuple(e.spec for e in entities_for(ctx.params, ctx.contract, ctx.inputs))

    def batch_keys(self, history: History, key: str) -> Values:
        return self.entity_batch(history, entity_of(key), self.prior(history))

    def specs(self, ctx: SpecContext) -> list[FeatureSpec]:
        specs = []
        for entity in entities_for(ctx.params, ctx.contract, ctx.inputs):
            specs += [
                s
                for s in _specs_of(entity, ctx.params)
                if ctx.fed("revenue_recovered") or not s.name.endswith(_REVENUE)
            ]
        return specs

    def batch(self, history: History) -> Values:
        prior = self.prior(history)
        result: Values = {}
        entities = entities_for(history.params, history.contract, history.manifest.inputs)
        for entity in history.track(entities, "entity histories"):
            result.update(self.entity_batch(history, entity, prior))
        return result

    @staticmethod
    def prior(history: History) -> np.ndarray:
        """The global hit rate each row is smoothed towards: of every result recorded before
        it. (The Dask engine computes it from every partition's results and hands it to
        ``entity_batch`` on rows holding a few keys.)"""
        outcomes = history.whole.get(ALL_OUTCOMES, history.outcomes)
        return global_prior(history.prep["t_us"], _outcome_index(outcomes), None, history.params)

    @staticmethod
    def entity_batch(history: History, entity: Entity, prior: np.ndarray) -> Values:
        """One entity's features of every row: a row's values depend only on the rows with
        its key (and on ``prior``), so any rows holding every row of their keys give the same."""
        prep, params, outcomes = history.prep, history.params, history.outcomes
        t = prep["t_us"]
        out_t = outcomes["t_us"]
        weights = outcome_weights(outcomes["illicit"], outcomes["revenue_cents"])
        rows = history.queries(entity)
        known = history.known(entity)
        # Parcels with an unknown key share a code of their own (their results are
        # forgotten below): every row is an event of its code, every result too.
        out_index = hist.BatchIndex(
            rows,
            history.outcome_grid,
            rows.codes[outcomes["rows"]],
            out_t,
            weights,
        )
        values = entity_history(
            entity.prefix, rows.codes, t, history.declarations(entity), out_index, prior, params
        )
        forget_unknown(values, known, prior, f"{entity.prefix}_hit_rate")
        return values

    def online(self, rows: Rows, part: EntityHistories) -> Values:
        """A request's histories: one merged query over the snapshot plus the request rows."""
        prep, params = rows.prep, rows.params
        entities = entities_for(params, rows.contract, rows.manifest.inputs)
        t = prep["t_us"]
        n = len(t)
        if n > MAX_NEW_KEYS:
            raise ParcelriskError(
                f"at most {MAX_NEW_KEYS} declarations per online request, got {n}"
            )
        merged, live = part.merged, part.live
        global_outcomes = merged.global_outcomes
        if live is not None:
            global_outcomes = hist.CombinedIndex(global_outcomes, *live.global_outcomes.runs)
        global_base = part.global_base
        if live is not None and live.folded.global_inspected:
            global_base = dataclasses.replace(
                global_base,
                n_inspected=global_base.n_inspected + live.folded.global_inspected,
                n_illicit=global_base.n_illicit + live.folded.global_illicit,
            )
        prior = global_prior(t, global_outcomes, global_base, params)
        codes, base_rows, identified = [], [], []
        for entity in entities:
            n_vocab = part.tables[entity.spec].n_keys
            local = part.keys(entity.spec).codes(entity_keys(prep, entity))
            known = local >= 0
            in_snapshot = known & (local < n_vocab)
            # an unknown key queries the last code of the entity's range, which no event has
            # (new keys, live or of this request, stay below it); its results are forgotten below
            codes.append(
                np.where(known, local, n_vocab + MAX_NEW_KEYS - 1) + merged.offsets[entity.spec]
            )
            base_rows.append(
                np.where(in_snapshot, local + merged.base_offsets[entity.spec], merged.empty_row)
            )
            identified.append(known)
        all_codes = np.concatenate(codes)
        all_known = np.concatenate(identified)
        all_t = np.tile(t, len(entities))
        # the request's own rows: parcels of one request see each other as in batch (parcels
        # with an unknown key are events of no entity)
        own = all_known
        if "already_seen" in prep:  # re-scored declarations are events of the live layer already
            own = all_known & ~np.tile(prep["already_seen"], len(entities))
        live_declarations = live.declarations.runs if live is not None else ()
        live_outcomes = live.outcomes.runs if live is not None else ()
        declarations = hist.CombinedIndex(
            merged.declarations,
            *live_declarations,
            *hist.request_events(all_codes[own], all_t[own]),
        )
        tiled = np.tile(prior, len(entities))
        base = merged.base.take(np.concatenate(base_rows))
        if live is not None:
            base = live.folded.add_to(base, all_codes)
        values = entity_history(
            "",
            all_codes,
            all_t,
            declarations,
            hist.CombinedIndex(merged.outcomes, *live_outcomes),
            tiled,
            params,
            base=base,
        )
        forget_unknown(values, all_known, tiled, "_hit_rate")
        result: Values = {}
        for i, entity in enumerate(entities):
            rows_i = slice(i * n, (i + 1) * n)
            for name, column in values.items():
                result[entity.prefix + name] = column[rows_i]
        return result

    def append_live(self, rows: Rows, part: EntityHistories) -> None:
        """Add declarations to the live layer: events at ``declared_at`` of every entity."""
        live = _live_of(part)
        codes, row = self._live_codes(rows, part)
        live.declarations.append(codes, rows.prep["t_us"][row])

    def append_outcomes(
        self,
        rows: Rows,
        part: EntityHistories,
        inspected_us: np.ndarray,
        illicit: np.ndarray,
        revenue_cents: np.ndarray,
        signs: np.ndarray | None = None,
    ) -> None:
        """Add the inspection results of declarations (``rows``, as they were scored) to the live
        layer: events at ``inspected_us`` of every entity of the declaration, and of the prior
        (``signs``: -1 for a result taken back, ``outcome_weights``)."""
        live = _live_of(part)
        times = np.asarray(inspected_us, dtype=np.int64)
        weights = outcome_weights(np.asarray(illicit), np.asarray(revenue_cents), signs)
        codes, row = self._live_codes(rows, part)
        live.outcomes.append(codes, times[row], {k: w[row] for k, w in weights.items()})
        live.global_outcomes.append(np.zeros(len(times), dtype=np.int64), times, weights)

    def fold_live(self, part: EntityHistories, horizon_us: int) -> None:
        """Fold the live events older than ``horizon_us`` into per-entity totals (bounded
        memory); queries after ``horizon_us`` + the longest window give the same features."""
        live = _live_of(part)
        decl_codes, decl_t, _ = live.declarations.fold_before(horizon_us)
        out_codes, _, out_w = live.outcomes.fold_before(horizon_us)
        _, _, global_w = live.global_outcomes.fold_before(horizon_us)
        live.folded = live.folded.fold(decl_codes, decl_t, out_codes, out_w, global_w)

    def _live_codes(self, rows: Rows, part: EntityHistories) -> tuple[np.ndarray, np.ndarray]:
        """Merged codes of the rows' entities (registering new keys) and the row of each;
        parcels with an unknown key are events of no entity."""
        merged = part.merged
        codes, row = [], []
        for entity in entities_for(rows.params, rows.contract, rows.manifest.inputs):
            local = part.keys(entity.spec).add(entity_keys(rows.prep, entity))
            known = np.flatnonzero(local >= 0)
            codes.append(local[known] + merged.offsets[entity.spec])
            row.append(known)
        return np.concatenate(codes), np.concatenate(row)

    def fit_part(self, history: History, cutoff_us: int) -> EntityHistories:
        params, outcomes = history.params, history.outcomes
        horizon = snapshot_horizon_us(cutoff_us, params)
        tables = {
            entity.spec: _table_of(history, entity, horizon)[0]
            for entity in entities_for(params, history.contract, history.manifest.inputs)
        }
        return _with_global(tables, outcomes, horizon, history.prep["t_us"])

    def snapshot_piece(self, history: History, key: str, cutoff_us: int, rows: np.ndarray) -> dict:
        """``fit_part``'s table of entity ``key`` from rows holding every row of their keys
        (``rows``: their numbers in the whole history), with the rows of its keys' first
        appearance and of its events, to be put in the whole history's order."""
        horizon = snapshot_horizon_us(cutoff_us, history.params)
        table, first, decl_rows, out_rows = _table_of(history, entity_of(key), horizon)
        return {
            "table": table,
            "first_row": rows[first],
            "decl_row": rows[decl_rows],
            "out_row": rows[out_rows],
        }

    def merge_snapshot(
        self, pieces: dict[str, list[dict]], ctx: SpecContext, outcomes: dict, cutoff_us: int
    ) -> EntityHistories:
        """``fit_part`` of the whole history from every partition's pieces of every entity
        (``outcomes``: every result recorded before ``cutoff_us``, in the history's order)."""
        horizon = snapshot_horizon_us(cutoff_us, ctx.params)
        tables = {
            entity.spec: _merged_table(pieces[entity.spec])
            for entity in entities_for(ctx.params, ctx.contract, ctx.inputs)
        }
        return _with_global(tables, outcomes, horizon)

    def save_part(self, part: EntityHistories, directory: Path) -> None:
        if any(table.released for table in part.tables.values()):
            raise ParcelriskError(
                "this entity state was loaded to serve and its event copies released "
                "(release_event_copies): save the state features build wrote, not a served one"
            )
        for i, table in enumerate(part.tables.values()):
            pd.DataFrame(
                {
                    "key": table.vocabulary.astype("str"),
                    "first_seen_us": table.base.first_seen_us,
                    "n_inspected": table.base.n_inspected,
                    "n_illicit": table.base.n_illicit,
                    "revenue_cents": table.base.revenue_cents,
                }
            ).to_parquet(  # keys are distinct: no Parquet dictionary (built, then dropped)
                directory / f"entity_{i}.parquet", index=False, use_dictionary=False
            )
            np.savez(
                directory / f"events_{i}.npz",
                decl_codes=table.decl_codes,
                decl_t_us=table.decl_t_us,
                out_codes=table.out_codes,
                out_t_us=table.out_t_us,
                out_illicit=table.out_illicit,
                out_revenue_cents=table.out_revenue_cents,
            )
        pd.DataFrame({"spec": list(part.tables)}).to_parquet(
            directory / "entity_specs.parquet", index=False
        )
        np.savez(
            directory / "global.npz",
            base_n_inspected=part.global_base.n_inspected,
            base_n_illicit=part.global_base.n_illicit,
            out_t_us=part.global_out_t_us,
            out_illicit=part.global_out_illicit,
            out_revenue_cents=part.global_out_revenue_cents,
        )

    def load_part(self, directory: Path) -> EntityHistories:
        tables = {}
        specs = pd.read_parquet(directory / "entity_specs.parquet")["spec"].tolist()
        for i, spec in enumerate(specs):
            base = pd.read_parquet(directory / f"entity_{i}.parquet")
            events = np.load(directory / f"events_{i}.npz")
            tables[spec] = EntityTable(
                # object dtype: hash lookups of a few keys per request are cheapest
                vocabulary=pd.Index(base["key"].to_numpy(dtype=object), dtype="object"),
                base=EntityBase(
                    first_seen_us=base["first_seen_us"].to_numpy(np.int64),
                    n_inspected=base["n_inspected"].to_numpy(np.int64),
                    n_illicit=base["n_illicit"].to_numpy(np.int64),
                    revenue_cents=base["revenue_cents"].to_numpy(np.int64),
                ),
                **{k: events[k] for k in events.files},
            )
        g = np.load(directory / "global.npz")
        part = EntityHistories(
            tables=tables,
            global_base=EntityBase(
                first_seen_us=np.array([NO_TIME]),
                n_inspected=g["base_n_inspected"],
                n_illicit=g["base_n_illicit"],
                revenue_cents=np.zeros(1, dtype=np.int64),
            ),
            global_out_t_us=g["out_t_us"],
            global_out_illicit=g["out_illicit"],
            global_out_revenue_cents=g["out_revenue_cents"],
        )
        _ = part.merged  # sort and index once at load, not on the first request
        for table in tables.values():
            _ = table.key_index
        return part


def _live_of(part: EntityHistories) -> LiveHistories:
    if part.live is None:
        raise ValueError("this entity-history part has no live layer (EntityHistories.with_live)")
    return part.live


FAMILY = EntityHistoryFamily()
