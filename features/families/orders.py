"""Split-order signatures: the same seller sending to the same consignee within hours.

One order split into parcels that each stay under de minimis leaves a trace no single entity's
counts show: a seller ships to thousands of consignees and a consignee buys from many sellers,
but the same seller -> same consignee pair, a few parcels within a day or three, the same tariff
line, together above the duty-free threshold, is the order. For every parcel, in each window of
``features.order_windows_hours`` strictly before it:
- ``order_parcels_{h}h``: earlier parcels of the pair;
- ``order_value_{h}h_eur``: their declared value;
- ``order_same_hs6_{h}h``: those of the same HS6 subheading (the same item re-sent);
and over the longest window ``order_value_with_own_eur`` (this parcel's value plus theirs) and
``order_tops_de_minimis`` (under de minimis alone, at or above it with them).

Keys: ``seller_id*consignee_id`` and ``seller_id*consignee_id*hs6``; a parcel missing either id
has no pair (NaN), never one pooled "unknown" pair, and one without an HS code no line (its
``order_same_hs6_*`` NaN). Batch, online and the live layer share the
shipments family's event index (``families.shipments``), so parity is by construction.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from features.families.shipments import (
    RecentShipments,
    append_events,
    batch_index,
    load_recent,
    merge_recent,
    recent_events,
    recent_piece,
    request_index,
    save_recent,
    window_totals,
)
from features.params import FeatureParams
from features.pipeline import history as hist
from features.pipeline.family import Family, History, Rows, SpecContext, Values
from features.pipeline.manifest import FeatureSpec, priced_in
from features.pipeline.prepare import ORDER_ENTITIES, Entity, entity_of, forget_unknown

GROUP = "split_order"
PAIR, LINE = (entity_of(spec) for spec in ORDER_ENTITIES)
TOPS_DE_MINIMIS = "order_tops_de_minimis"
WITH_OWN = "order_value_with_own_eur"


@dataclass
class RecentOrders:
    """The pair's and the pair-and-HS6's declarations inside the snapshot horizon."""

    pair: RecentShipments
    line: RecentShipments

    def with_live(self) -> RecentOrders:
        return RecentOrders(self.pair.with_live(), self.line.with_live())


Indexed = tuple[np.ndarray, np.ndarray, "hist.EventIndex | hist.CombinedIndex | hist.BatchIndex"]


def order_features(
    t_us: np.ndarray,
    value_eur: np.ndarray,
    index_of: Callable[[Entity], Indexed],
    params: FeatureParams,
) -> Values:
    """The signatures of each parcel; ``index_of(entity)`` gives (query code per row, key
    known, the entity's event index). The pair is queried before the line's index is asked
    for: a history holds one entity's index at a time."""
    hours = params.order_windows_hours
    pair_query, pair_known, pair_index = index_of(PAIR)
    pair_windows = window_totals(pair_query, t_us, pair_index, hours)
    line_query, line_known, line_index = index_of(LINE)
    line_windows = window_totals(line_query, t_us, line_index, hours)
    out: Values = {}
    for h, (parcels, value), (same, _) in zip(hours, pair_windows, line_windows, strict=True):
        out[f"order_parcels_{h}h"] = parcels
        out[f"order_value_{h}h_eur"] = value
        out[f"order_same_hs6_{h}h"] = same
    own = np.nan_to_num(value_eur, nan=0.0)
    together = own + pair_windows[-1][1]
    out[WITH_OWN] = together
    out[TOPS_DE_MINIMIS] = (
        (own < params.de_minimis_base) & (together >= params.de_minimis_base)
    ).astype(np.float64)
    forget_unknown(out, pair_known, np.full(len(t_us), np.nan))
    # a parcel without an HS code (optional in the contract: postal items often have none) has
    # no line: its "same HS6" counts are unknown, never the pair's parcels without a code nor a
    # pooled "no code" line, which each engine and the live state counted otherwise (probe 25)
    line = {name: out[name] for name in out if name.startswith("order_same_hs6_")}
    forget_unknown(line, line_known, np.full(len(t_us), np.nan))
    return out


class Orders(Family):
    name = "orders"
    distribution = "keys"

    def partition_keys(self, ctx: SpecContext) -> tuple[str, ...]:
        return (PAIR.spec,)  # a line (pair and HS6) is in its pair's rows

    def specs(self, ctx: SpecContext) -> list[FeatureSpec]:
        hours = ctx.params.order_windows_hours
        if not hours or not ctx.fed(*PAIR.sources):
            return []
        specs = []
        for h in hours:
            specs += [
                FeatureSpec(
                    f"order_parcels_{h}h",
                    GROUP,
                    "float",
                    f"Earlier parcels from the same seller to the same consignee in the previous "
                    f"{h} hours.",
                    f"the seller sent this consignee {{value:.0f}} other parcel(s) in the last {h} "
                    f"hours",
                ),
                FeatureSpec(
                    f"order_value_{h}h_eur",
                    GROUP,
                    "float",
                    f"Declared value of those parcels (same seller, same consignee, previous {h} "
                    f"hours), EUR.",
                    f"the seller sent this consignee EUR {{value:,.0f}} in the last {h} hours",
                ),
                FeatureSpec(
                    f"order_same_hs6_{h}h",
                    GROUP,
                    "float",
                    f"Of those, parcels with the same HS6 subheading as this one (previous {h} "
                    f"hours).",
                    f"{{value:.0f}} earlier parcel(s) of the same goods from this seller to this "
                    f"consignee in the last {h} hours",
                ),
            ]
        longest = max(hours)
        specs += [
            FeatureSpec(
                WITH_OWN,
                GROUP,
                "float",
                f"This parcel's value plus the same seller's parcels to the same consignee in "
                f"the previous {longest} hours, EUR (the order's value if it was split).",
                "with the seller's other parcels to this consignee the order is worth "
                "EUR {value:,.0f}",
            ),
            FeatureSpec(
                TOPS_DE_MINIMIS,
                GROUP,
                "float",
                f"Below de minimis alone but at or above it with the same seller's parcels to "
                f"the same consignee in the previous {longest} hours.",
                "split order: under the duty-free threshold alone, above it with the seller's "
                "other parcels to this consignee",
            ),
        ]
        return priced_in(specs, ctx.params.base_currency)

    def compute(self, rows: Rows, part: RecentOrders | None = None) -> Values:
        """A request's signatures: the snapshot's and live events plus the request's own."""
        parts = {PAIR: part.pair, LINE: part.line} if part is not None else {}
        prep = rows.prep
        return order_features(
            prep["t_us"],
            prep["value_eur"],
            lambda entity: request_index(rows, entity, parts.get(entity)),
            rows.params,
        )

    def batch(self, history: History) -> Values:
        prep = history.prep
        return order_features(
            prep["t_us"],
            prep["value_eur"],
            lambda entity: batch_index(history, entity),
            history.params,
        )

    def append_live(self, rows: Rows, part: RecentOrders) -> None:
        append_events(rows, PAIR, part.pair)
        append_events(rows, LINE, part.line)

    def fold_live(self, part: RecentOrders, horizon_us: int) -> None:
        for recent in (part.pair, part.line):
            if recent.live is not None:
                recent.live.runs.fold_before(horizon_us)

    def fit_part(self, history: History, cutoff_us: int) -> RecentOrders:
        return RecentOrders(
            recent_events(history, PAIR, cutoff_us), recent_events(history, LINE, cutoff_us)
        )

    def snapshot_piece(self, history: History, key: str, cutoff_us: int, rows: np.ndarray) -> dict:
        return {
            "pair": recent_piece(history, PAIR, cutoff_us, rows),
            "line": recent_piece(history, LINE, cutoff_us, rows),
        }

    def merge_snapshot(
        self, pieces: dict[str, list[dict]], ctx: SpecContext, outcomes: dict, cutoff_us: int
    ) -> RecentOrders:
        mine = pieces[PAIR.spec]
        return RecentOrders(
            merge_recent([p["pair"] for p in mine]), merge_recent([p["line"] for p in mine])
        )

    def save_part(self, part: RecentOrders, directory: Path) -> None:
        save_recent(part.pair, directory, "orders_pair")
        save_recent(part.line, directory, "orders_line")

    def load_part(self, directory: Path) -> RecentOrders:
        return RecentOrders(
            load_recent(directory, "orders_pair"), load_recent(directory, "orders_line")
        )


FAMILY = Orders()
