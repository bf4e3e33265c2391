"""Shipments family: one entity's parcels and value just before this one (orders split to stay
under de minimis).

The entity is ``features.split_entity`` (default ``consignee_id``: ``consignee_parcels_24h``...);
names and reasons follow the entity's prefix and phrase (``features.pipeline.prepare.entity_of``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from features.params import FeatureParams
from features.pipeline import history as hist
from features.pipeline.family import Family, History, Rows, SpecContext, Values
from features.pipeline.manifest import FeatureSpec, priced_in
from features.pipeline.prepare import (
    Entity,
    entity_keys,
    entity_of,
    forget_unknown,
    snapshot_horizon_us,
)

TOPS_DE_MINIMIS = "split_tops_de_minimis"


def _names(entity: Entity, hours: int) -> tuple[str, str]:
    return f"{entity.prefix}_parcels_{hours}h", f"{entity.prefix}_value_{hours}h_eur"


def split_shipment_features(
    entity: Entity,
    codes: np.ndarray,
    t_us: np.ndarray,
    value_eur: np.ndarray,
    index: hist.EventIndex | hist.CombinedIndex | hist.BatchIndex,
    params: FeatureParams,
) -> Values:
    """Parcels and value of the entity in each window strictly before each parcel (``index``:
    the entity's declarations, weights ``value_cents``), and whether this parcel, under de
    minimis alone, tops it together with those of the first window."""
    out: Values = {}
    hours = params.split_windows_hours
    for h, totals in zip(hours, window_totals(codes, t_us, index, hours), strict=True):
        out.update(zip(_names(entity, h), totals, strict=True))
    own = np.nan_to_num(value_eur, nan=0.0)
    together = own + out[_names(entity, params.split_windows_hours[0])[1]]
    out[TOPS_DE_MINIMIS] = (
        (own < params.de_minimis_base) & (together >= params.de_minimis_base)
    ).astype(np.float64)
    return out


def window_totals(
    codes: np.ndarray,
    t_us: np.ndarray,
    index: hist.EventIndex | hist.CombinedIndex | hist.BatchIndex,
    hours: tuple[int, ...],
) -> list[tuple[np.ndarray, np.ndarray]]:
    """(parcels, value in EUR) of each key's events in each window of ``hours`` strictly before
    ``t_us`` (weights ``value_cents``)."""
    now = index.prefix(codes, t_us)
    out = []
    for h in hours:
        then = index.prefix(codes, t_us, shift_us=h * hist.US_PER_HOUR)
        out.append(
            (
                (now["count"] - then["count"]).astype(np.float64),
                (now["value_cents"] - then["value_cents"]) / 100.0,
            )
        )
    return out


@dataclass
class RecentShipments:
    """The entity's declarations inside the snapshot horizon: key hashes, and events by code.

    Keys are kept as their 64-bit hashes (``hist.key_hashes``), sorted, a key's code being its
    position: 8 bytes a key where the keys as Python strings and a dict to find them took about
    200, on every worker. A seller-consignee pair is nearly one key per parcel, so at 5M parcels
    that was ~1.2 GB a worker for the split-order signatures alone."""

    hashes: np.ndarray  # sorted distinct uint64 key hashes: code -> hash
    index: hist.EventIndex  # weights value_cents
    live: LiveShipments | None = None  # declarations seen since the snapshot

    def codes(self) -> hist.HashedKeys:
        """Key -> code, live keys included."""
        if self.live is not None:
            return self.live.keys
        return hist.HashedKeys(self.hashes, MAX_NEW_KEYS)

    def with_live(self) -> RecentShipments:
        """This snapshot with an empty live layer of its own (the snapshot stays shared)."""
        live = LiveShipments(
            hist.HashedKeys(self.hashes, MAX_NEW_KEYS), hist.EventRuns(("value_cents",))
        )
        return RecentShipments(self.hashes, self.index, live)


# keys not in the snapshot one live layer (or request) may add before a roll-over
MAX_NEW_KEYS = 1 << 30


@dataclass
class LiveShipments:
    keys: hist.HashedKeys
    runs: hist.EventRuns  # weights value_cents, codes of ``keys``


def _no_shipments() -> RecentShipments:
    empty = np.zeros(0, dtype=np.int64)
    return RecentShipments(
        np.zeros(0, dtype=np.uint64), hist.EventIndex(empty, empty, {"value_cents": empty})
    )


class Shipments(Family):
    name = "shipments"
    distribution = "keys"

    def partition_keys(self, ctx: SpecContext) -> tuple[str, ...]:
        return (self.entity(ctx.params).spec,)

    def entity(self, params: FeatureParams) -> Entity:
        return entity_of(params.split_entity)

    def specs(self, ctx: SpecContext) -> list[FeatureSpec]:
        entity = self.entity(ctx.params)
        if not ctx.fed(*entity.sources):
            return []
        noun, who = entity.prefix.replace("_", " "), entity.phrase
        # consignees receive parcels; any other entity lodges them
        verb = "received" if entity.spec == "consignee_id" else "lodged"
        specs = []
        for h in ctx.params.split_windows_hours:
            parcels, value = _names(entity, h)
            specs += [
                FeatureSpec(
                    parcels,
                    "split_shipment",
                    "float",
                    f"Parcels to the same {noun} in the previous {h} hours.",
                    f"{who} {verb} {{value:.0f}} parcels in the last {h} hours",
                ),
                FeatureSpec(
                    value,
                    "split_shipment",
                    "float",
                    f"Declared value to the same {noun} in the previous {h} hours, EUR.",
                    f"{who} {verb} EUR {{value:,.0f}} in the last {h} hours",
                ),
            ]
        specs.append(
            FeatureSpec(
                TOPS_DE_MINIMIS,
                "split_shipment",
                "float",
                f"Below de minimis alone but above it with the {noun}'s parcels of the first split window.",
                f"with the {noun}'s other recent parcels the value exceeds the duty-free threshold",
            )
        )
        return priced_in(specs, ctx.params.base_currency)

    def compute(self, rows: Rows, part: RecentShipments | None = None) -> Values:
        """A request's features: the snapshot's events plus the request's own (parcels of one
        request see each other, as in batch)."""
        entity = self.entity(rows.params)
        query, known, index = request_index(rows, entity, part)
        out = split_shipment_features(
            entity, query, rows.prep["t_us"], rows.prep["value_eur"], index, rows.params
        )
        forget_unknown(out, known, np.full(rows.prep.n_rows, np.nan))
        return out

    def batch(self, history: History) -> Values:
        entity = self.entity(history.params)
        query, known, index = batch_index(history, entity)
        prep = history.prep
        out = split_shipment_features(
            entity, query, prep["t_us"], prep["value_eur"], index, history.params
        )
        forget_unknown(out, known, np.full(prep.n_rows, np.nan))
        return out

    def append_live(self, rows: Rows, part: RecentShipments) -> None:
        """Add declarations to the live layer (events at ``declared_at``, weights value)."""
        append_events(rows, self.entity(rows.params), part)

    def fold_live(self, part: RecentShipments, horizon_us: int) -> None:
        """Drop the live events older than ``horizon_us`` (beyond every split window)."""
        if part.live is not None:
            part.live.runs.fold_before(horizon_us)

    def fit_part(self, history: History, cutoff_us: int) -> RecentShipments:
        return recent_events(history, self.entity(history.params), cutoff_us)

    def snapshot_piece(self, history: History, key: str, cutoff_us: int, rows: np.ndarray) -> dict:
        return recent_piece(history, self.entity(history.params), cutoff_us, rows)

    def merge_snapshot(
        self, pieces: dict[str, list[dict]], ctx: SpecContext, outcomes: dict, cutoff_us: int
    ) -> RecentShipments:
        return merge_recent(pieces[self.entity(ctx.params).spec])

    def save_part(self, part: RecentShipments, directory: Path) -> None:
        save_recent(part, directory, "shipments")

    def load_part(self, directory: Path) -> RecentShipments:
        return load_recent(directory, "shipments")


# --------------------------------------------------------------------------------------------
# one entity's recent declarations: also the split-order signatures' (``families.orders``)
# --------------------------------------------------------------------------------------------


def request_index(
    rows: Rows, entity: Entity, part: RecentShipments | None
) -> tuple[np.ndarray, np.ndarray, hist.CombinedIndex]:
    """(query code per row, key known, index of the snapshot's, the live layer's and the
    request's own declarations of ``entity``)."""
    prep = rows.prep
    keys = entity_keys(prep, entity)
    snapshot = part if part is not None else _no_shipments()
    codes = snapshot.codes().codes(keys)  # new keys get fresh codes; None stays -1: unknown
    known = codes >= 0
    # re-scored declarations are events of the live layer already
    mine = known & ~prep["already_seen"] if "already_seen" in prep else known
    own = hist.request_events(
        codes[mine], prep["t_us"][mine], {"value_cents": prep["value_cents"][mine]}
    )
    live = snapshot.live.runs.runs if snapshot.live is not None else ()
    index = hist.CombinedIndex(snapshot.index, *live, *own)
    return np.where(known, codes, 0), known, index  # unknown rows: any code, forgotten later


def batch_index(history: History, entity: Entity) -> tuple[np.ndarray, np.ndarray, hist.BatchIndex]:
    """(query code per row, key known, index of the history's declarations of ``entity``)."""
    index = history.declarations(entity, "value_cents")
    return history.queries(entity).codes, history.known(entity), index


def append_events(rows: Rows, entity: Entity, part: RecentShipments) -> None:
    """Add declarations to ``part``'s live layer (events at ``declared_at``, weights value)."""
    if part.live is None:
        raise ValueError("this part has no live layer (RecentShipments.with_live)")
    prep = rows.prep
    codes = part.live.keys.add(entity_keys(prep, entity))
    known = codes >= 0
    part.live.runs.append(
        codes[known], prep["t_us"][known], {"value_cents": prep["value_cents"][known]}
    )


def recent_events(history: History, entity: Entity, cutoff_us: int) -> RecentShipments:
    """The declarations of ``entity`` inside the snapshot horizon before ``cutoff_us``."""
    horizon = snapshot_horizon_us(cutoff_us, history.params)
    rows, codes, keys = history.recent(entity, horizon)
    hashes, codes = hist.hash_codes(codes, keys)
    return RecentShipments(
        hashes,
        hist.EventIndex(
            codes, history.prep["t_us"][rows], {"value_cents": history.prep["value_cents"][rows]}
        ),
    )


def recent_piece(history: History, entity: Entity, cutoff_us: int, rows: np.ndarray) -> dict:
    """``recent_events`` of rows holding every row of their keys, each event with its row's
    number in the whole history (``rows``) and its key, for ``merge_recent``."""
    horizon = snapshot_horizon_us(cutoff_us, history.params)
    local, codes, keys = history.recent(entity, horizon)
    return {
        "row": rows[local],
        "key": keys[codes],
        "t_us": history.prep["t_us"][local],
        "value_cents": history.prep["value_cents"][local],
    }


def merge_recent(pieces: list[dict]) -> RecentShipments:
    """``recent_events`` of the whole history from its pieces: events in row order, keys coded
    by their hash as there."""
    order = np.argsort(np.concatenate([p["row"] for p in pieces]), kind="stable")

    def cat(name: str) -> np.ndarray:
        return np.concatenate([np.asarray(p[name]) for p in pieces])[order]

    codes, keys = pd.factorize(cat("key"))
    hashes, codes = hist.hash_codes(codes, np.asarray(keys, dtype=object))
    return RecentShipments(
        hashes,
        hist.EventIndex(
            codes,
            cat("t_us").astype(np.int64),
            {"value_cents": cat("value_cents").astype(np.int64)},
        ),
    )


def save_recent(part: RecentShipments, directory: Path, stem: str) -> None:
    index = part.index
    np.savez(
        directory / f"{stem}_events.npz",
        key_hashes=part.hashes,
        codes=index.keys // index.stride,
        t_us=index.sorted_times,
        value_cents=np.diff(index.cumsums["value_cents"]),
    )


def load_recent(directory: Path, stem: str) -> RecentShipments:
    events = np.load(directory / f"{stem}_events.npz")
    codes = events["codes"]
    if "key_hashes" in events.files:
        hashes = events["key_hashes"]
    else:  # a snapshot saved with its keys as text (before hashes): hashed as it loads
        keys = pd.read_parquet(directory / f"{stem}_keys.parquet")["key"].to_numpy(dtype=object)
        hashes, codes = hist.hash_codes(codes, keys)
    return RecentShipments(
        hashes,
        hist.EventIndex(codes, events["t_us"], {"value_cents": events["value_cents"]}),
    )


FAMILY = Shipments()
