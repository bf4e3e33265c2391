"""Valuation family: declared value against reference distributions learned from the past.

References are medians of log unit values per HS6 (and HS6 x origin) over declarations lodged
before a period's cut (``refit_lag_days`` before its start); batch refits them every
``refit_period_days`` on an expanding window, so a parcel is compared only with what was
declared before its period began; the snapshot keeps those of the cutoff's period and the
values behind them, from which the live state refits them for later periods
(``features.pipeline.refit``). Medians in log space resist the undervalued minority that
contaminates declared prices. The count that makes a reference reliable is of values per item
where the history declares quantities, else per kg, at every level alike.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from features.notes import HS6_NO_REFERENCE, RowNote
from features.pipeline.family import History, Rows, SpecContext, Values
from features.pipeline.history import codes_of
from features.pipeline.manifest import FeatureManifest, FeatureSpec, priced_in
from features.pipeline.refit import Evidence, RefitFamily, RefitPart, fitted_of

REFERENCE_COLUMNS = ("log_value_per_item", "log_value_per_kg", "log_weight_per_item")
LOG_COLUMNS = (*REFERENCE_COLUMNS, "log_quantity")  # what prepare.unit_values returns
PAIR_COLUMNS = ("log_value_per_item", "log_value_per_kg")  # referenced per HS6|origin too


@dataclass(frozen=True)
class References:
    """Median log unit values per HS6 and per HS6|origin, with the counts behind them."""

    hs6: pd.DataFrame  # index hs6; REFERENCE_COLUMNS + count
    hs6_origin: pd.DataFrame  # index "hs6|origin"; PAIR_COLUMNS + count

    @staticmethod
    def empty() -> References:
        return References(
            hs6=pd.DataFrame(
                columns=[*REFERENCE_COLUMNS, "count"], index=pd.Index([], dtype="str")
            ),
            hs6_origin=pd.DataFrame(
                columns=[*PAIR_COLUMNS, "count"], index=pd.Index([], dtype="str")
            ),
        )

    # Lookups are served from plain dicts and arrays built once per References: a pandas
    # get_indexer on the string index re-converts the whole index to objects on every call,
    # which online costs O(number of references) per request.
    @functools.cached_property
    def _keys(self) -> dict[str, dict[str, int]]:
        return {
            name: {key: i for i, key in enumerate(table.index.tolist())}
            for name, table in (("hs6", self.hs6), ("hs6_origin", self.hs6_origin))
        }

    @functools.cached_property
    def _columns(self) -> dict[tuple[str, str], np.ndarray]:
        return {
            (name, column): table[column].to_numpy(dtype=np.float64)
            for name, table in (("hs6", self.hs6), ("hs6_origin", self.hs6_origin))
            for column in table.columns
        }

    def positions(self, table: str, keys: np.ndarray) -> np.ndarray:
        """Row of each key in reference table ``table`` ("hs6" or "hs6_origin"), -1 if absent."""
        return codes_of(self._keys[table], keys)

    def values(self, table: str, column: str, at: np.ndarray) -> np.ndarray:
        """``column`` of reference table ``table`` at rows ``at`` (-1 -> NaN)."""
        values = self._columns.get((table, column))
        if values is None or len(values) == 0:
            return np.full(len(at), np.nan)
        return np.where(at >= 0, values[np.maximum(at, 0)], np.nan)


def fit_references(
    hs6: np.ndarray, hs6_origin: np.ndarray, logs: dict[str, np.ndarray]
) -> References:
    """Medians over the given (past) declarations; NaN values (unknown currency) are skipped."""
    return references_of_codes(key_codes(hs6), key_codes(hs6_origin), logs)


def key_codes(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Code of each key in the sorted distinct keys (-1: missing), and those keys."""
    codes, levels = pd.factorize(np.asarray(keys, dtype=object), sort=True)
    return codes, np.asarray(levels, dtype=object)


def sorted_codes(codes: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``key_codes`` of a column from its ``entity_codes`` (the history's, in order of first
    appearance): the distinct values sorted, the codes renumbered to them."""
    order = np.argsort(values, kind="stable")
    rank = np.empty(len(order) + 1, dtype=np.int64)
    rank[order] = np.arange(len(order))
    rank[-1] = -1  # a missing key stays missing
    return rank[codes], values[order]


def _reference_codes(history: History) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    """``key_codes`` of the history's HS6 and HS6|origin keys, from the codes it keeps."""
    return tuple(sorted_codes(*history.column_codes(name)) for name in ("hs6", "hs6_origin"))


def references_of_codes(
    hs6: tuple[np.ndarray, np.ndarray],
    hs6_origin: tuple[np.ndarray, np.ndarray],
    logs: dict[str, np.ndarray],
    per_item_counted: bool | None = None,
) -> References:
    """``fit_references`` of keys already coded (``key_codes``): batch codes a history's keys
    once, not once per refit period; grouping by integers, not strings, is also ~5x cheaper.
    The same groups in the same row order: the same medians, to the bit.

    ``per_item_counted``: whether the references count per item (any past declaration has a
    value per item); None: decided from ``logs``. Both levels count in the same unit: counted
    per item in an export without quantities, every HS6 count would be 0 and no per-kg ratio
    or HS6 fallback of the pair would ever be reliable."""
    if len(hs6[0]) == 0:
        return References.empty()
    frame = pd.DataFrame({k: logs[k] for k in REFERENCE_COLUMNS})
    # the count behind a reference: per item where items are declared, else per kg
    if per_item_counted is None:
        per_item_counted = bool(frame["log_value_per_item"].notna().any())
    counted = "log_value_per_item" if per_item_counted else "log_value_per_kg"
    ref6, count6 = _medians(frame, *hs6, counted)
    ref6["count"] = count6
    ref_pair, count_pair = _medians(frame[list(PAIR_COLUMNS)], *hs6_origin, counted)
    ref_pair["count"] = count_pair
    return References(hs6=ref6, hs6_origin=ref_pair)


def _medians(
    frame: pd.DataFrame, codes: np.ndarray, levels: np.ndarray, counted: str
) -> tuple[pd.DataFrame, pd.Series]:
    """Median of each column per key (indexed by the key, sorted) and the count of ``counted``."""
    known = codes >= 0
    if not known.all():  # a missing key is no group
        frame, codes = frame[known], codes[known]
    groups = frame.groupby(codes, sort=True)
    medians = groups.median()
    counts = groups[counted].count().astype(np.float64)
    medians.index = counts.index = pd.Index(levels[medians.index.to_numpy()])
    return medians, counts


def valuation_features(
    value_eur: np.ndarray,
    logs: dict[str, np.ndarray],
    hs6: np.ndarray,
    hs6_origin: np.ndarray,
    refs: References,
    *,
    de_minimis: float,  # in the base currency, as the values (FeatureParams.de_minimis_base)
    min_reference_count: int,
    per_item: bool = True,
) -> dict[str, np.ndarray]:
    """Ratios of this parcel's unit values to the references (1.0 = at the median).

    ``per_item``: the reference value counts items (the history declares quantities); without
    quantities it counts kilograms, the unit every export has. With ``per_item``, a parcel that
    declares no quantity itself is valued by kilograms too.
    """
    at6 = refs.positions("hs6", hs6)
    at_pair = refs.positions("hs6_origin", hs6_origin)
    count6 = np.nan_to_num(refs.values("hs6", "count", at6), nan=0.0)
    reliable6 = count6 >= min_reference_count
    med_item = np.where(reliable6, refs.values("hs6", "log_value_per_item", at6), np.nan)
    med_kg = np.where(reliable6, refs.values("hs6", "log_value_per_kg", at6), np.nan)
    med_weight = np.where(reliable6, refs.values("hs6", "log_weight_per_item", at6), np.nan)
    count_pair = np.nan_to_num(refs.values("hs6_origin", "count", at_pair), nan=0.0)
    reliable_pair = count_pair >= min_reference_count
    med_pair = np.where(
        reliable_pair, refs.values("hs6_origin", "log_value_per_item", at_pair), med_item
    )
    med_pair_kg = np.where(
        reliable_pair, refs.values("hs6_origin", "log_value_per_kg", at_pair), med_kg
    )
    # An absurd declaration (1e308 kg, 1e308 EUR) overflows these ratios to inf (with a
    # RuntimeWarning in the service's log): the gate and the API warn about such values;
    # here they are kept finite, the largest float, so features and SHAP stay numbers.
    with np.errstate(over="ignore"):
        value_ratio = value_eur / de_minimis
        # what the goods would be worth at the reference price (HS6 x origin, else HS6): the gap is
        # the undervalued amount that duty and VAT were not paid on. By weight: weight x reference
        # value per kg, with weight = value / (value per kg) as unit_values floored them.
        reference_value = np.exp(med_pair_kg - logs["log_value_per_kg"]) * np.maximum(
            value_eur, 0.01
        )
        if per_item:
            # by items where the parcel declares a quantity and the references count items; a
            # parcel without one (or a period before the first quantity) is valued by its weight,
            # as a whole export without quantities is, not left without a reference value
            by_items = np.exp(med_pair + logs["log_quantity"])
            reference_value = np.where(np.isnan(by_items), reference_value, by_items)
        out = {
            "reference_value_eur": reference_value,
            "value_gap_eur": np.maximum(reference_value - value_eur, 0.0),
            "value_eur": value_eur,
            "value_per_item_eur": np.exp(logs["log_value_per_item"]),
            "value_per_kg_eur": np.exp(logs["log_value_per_kg"]),
            "unit_value_ratio_hs6": np.exp(logs["log_value_per_item"] - med_item),
            "value_per_kg_ratio_hs6": np.exp(logs["log_value_per_kg"] - med_kg),
            "unit_value_ratio_hs6_origin": np.exp(logs["log_value_per_item"] - med_pair),
            "value_per_kg_ratio_hs6_origin": np.exp(logs["log_value_per_kg"] - med_pair_kg),
            "weight_per_item_ratio_hs6": np.exp(logs["log_weight_per_item"] - med_weight),
            "reference_count_hs6": count6,
            "de_minimis_ratio": value_ratio,
            "just_below_de_minimis": ((value_ratio >= 0.8) & (value_ratio < 1.0)).astype(
                np.float64
            ),
        }
    top = np.finfo(np.float64).max
    return {name: np.minimum(values, top) for name, values in out.items()}


# (spec, contract fields it needs beyond the declared value, weight and HS code)
_SPECS = (
    (
        FeatureSpec(
            "value_eur",
            "valuation",
            "float",
            "Declared value in EUR.",
            "declared value EUR {value:,.2f}",
        ),
        (),
    ),
    (
        FeatureSpec(
            "value_per_item_eur",
            "valuation",
            "float",
            "Declared value per item, EUR.",
            "declared value EUR {value:,.2f} per item",
        ),
        ("quantity",),
    ),
    (
        FeatureSpec(
            "value_per_kg_eur",
            "valuation",
            "float",
            "Declared value per kg, EUR.",
            "declared value EUR {value:,.2f} per kg",
        ),
        (),
    ),
    (
        FeatureSpec(
            "reference_value_eur",
            "valuation",
            "float",
            "Value of the declared items at the past median unit value of the HS6 from the origin (HS6 if too few), EUR.",
            "the items would be worth about EUR {value:,.0f} at usual prices",
        ),
        (),
    ),
    (
        FeatureSpec(
            "value_gap_eur",
            "valuation",
            "float",
            "Reference value minus declared value when positive, EUR: the amount possibly undervalued.",
            "declared EUR {value:,.0f} below the usual value of these items",
        ),
        (),
    ),
    (
        FeatureSpec(
            "unit_value_ratio_hs6",
            "valuation",
            "float",
            "Unit value / median unit value of past declarations of the HS6.",
            "declared unit value is {value:.0%} of the past median for HS {hs6}",
        ),
        ("quantity",),
    ),
    (
        FeatureSpec(
            "value_per_kg_ratio_hs6",
            "valuation",
            "float",
            "Value per kg / median of past declarations of the HS6.",
            "declared value per kg is {value:.0%} of the past median for HS {hs6}",
        ),
        (),
    ),
    (
        FeatureSpec(
            "unit_value_ratio_hs6_origin",
            "valuation",
            "float",
            "Unit value / median of past declarations of the HS6 from the same origin (HS6 median if too few).",
            "declared unit value is {value:.0%} of the past median for HS {hs6} from {origin_country}",
        ),
        ("quantity",),
    ),
    (
        FeatureSpec(
            "value_per_kg_ratio_hs6_origin",
            "valuation",
            "float",
            "Value per kg / median of past declarations of the HS6 from the same origin (HS6 median if too few).",
            "declared value per kg is {value:.0%} of the past median for HS {hs6} from {origin_country}",
        ),
        (),
    ),
    (
        FeatureSpec(
            "weight_per_item_ratio_hs6",
            "weight",
            "float",
            "Weight per item / median of past declarations of the HS6.",
            "weight per item is {value:.0%} of the usual for HS {hs6}",
        ),
        ("quantity",),
    ),
    (
        FeatureSpec(
            "reference_count_hs6",
            "valuation",
            "float",
            "Past declarations behind the HS6 reference.",
            "only {value:.0f} past declarations of HS {hs6} to compare with",
        ),
        (),
    ),
    (
        FeatureSpec(
            "de_minimis_ratio",
            "valuation",
            "float",
            "Declared value / de minimis threshold.",
            "declared value is {value:.0%} of the duty-free threshold",
        ),
        (),
    ),
    (
        FeatureSpec(
            "just_below_de_minimis",
            "valuation",
            "float",
            "Declared value between 80% and 100% of the de minimis threshold.",
            "declared value just below the duty-free threshold",
        ),
        (),
    ),
)


def uses_quantity(manifest: FeatureManifest) -> bool:
    """Reference values count items when the history declares quantities, else kilograms."""
    return manifest.inputs is None or "quantity" in manifest.inputs


def _references_before(
    history: History, before: slice | np.ndarray, per_item_counted: bool | None = None
) -> References:
    """``fit_references`` of the rows ``before``, from the history's codes: the keys of
    other rows are no group (the same references)."""
    (hs6, levels6), (pairs, pair_levels) = _reference_codes(history)
    return references_of_codes(
        (hs6[before], levels6),
        (pairs[before], pair_levels),
        {k: history.prep[k][before] for k in REFERENCE_COLUMNS},
        per_item_counted,
    )


def merge_references(parts: list[References]) -> References:
    """The references of rows of disjoint HS6 codes together (each table sorted by key)."""
    tables = {}
    for name in ("hs6", "hs6_origin"):
        filled = [getattr(p, name) for p in parts if len(getattr(p, name))]
        tables[name] = pd.concat(filled).sort_index() if filled else None
    if tables["hs6"] is None:
        return References.empty()
    return References(hs6=tables["hs6"], hs6_origin=tables["hs6_origin"])


# ``History.whole``: when the first declaration with a value per item was made (int64 max: never)
FIRST_PER_ITEM_US = "valuation.first_per_item_us"


class Valuation(RefitFamily):
    name = "valuation"
    distribution = "keys"

    def partition_keys(self, ctx: SpecContext) -> tuple[str, ...]:
        # HS6 and HS6|origin references nest in the HS heading: one shuffle with the heading
        # family's (features.families.hs_heading_value)
        return ("hs_heading",)

    def specs(self, ctx: SpecContext) -> list[FeatureSpec]:
        specs = [spec for spec, needs in _SPECS if ctx.fed(*needs)]
        return priced_in(specs, ctx.params.base_currency)

    def compute(self, rows: Rows, part: References | None = None) -> Values:
        refs = part if part is not None else References.empty()
        prep = rows.prep
        return valuation_features(
            prep["value_eur"],
            {k: prep[k] for k in LOG_COLUMNS},
            prep["hs6"],
            prep["hs6_origin"],
            refs,
            de_minimis=rows.params.de_minimis_base,
            min_reference_count=rows.params.min_reference_count,
            per_item=uses_quantity(rows.manifest),
        )

    def batch(self, history: History) -> Values:
        """References refitted per period on every declaration before the period start."""
        prep = history.prep
        hs6, hs6_origin = _reference_codes(history)

        t = prep["t_us"]
        # the first declaration with a value per item, of the whole history (a Dask partition
        # holding a few HS headings is told it): the pair references count per item from the
        # first period after it, as they would over every row
        first_per_item = history.whole.get(FIRST_PER_ITEM_US)
        if first_per_item is None:
            has_value = np.flatnonzero(~np.isnan(prep["log_value_per_item"]))
            first_per_item = int(t[has_value[0]]) if len(has_value) else None

        def fit(_: History, before: slice, cut_us: int) -> References:
            return references_of_codes(
                (hs6[0][before], hs6[1]),
                (hs6_origin[0][before], hs6_origin[1]),
                {k: prep[k][before] for k in REFERENCE_COLUMNS},
                per_item_counted=first_per_item is not None and first_per_item < cut_us,
            )

        return history.by_refit_period("valuation", fit, self.compute)

    def fit_before(self, history: History, cut_us: int) -> References:
        first_per_item = history.whole.get(FIRST_PER_ITEM_US)  # the whole history's, if told
        counted = None if first_per_item is None else first_per_item < cut_us
        return _references_before(history, history.prep["t_us"] < cut_us, counted)

    def evidence_of_rows(self, rows: Rows) -> dict[str, np.ndarray]:
        return {k: rows.prep[k] for k in ("hs6", "hs6_origin", *REFERENCE_COLUMNS)}

    def fit_evidence(self, evidence: Evidence, rows: Rows) -> References:
        """The medians of every declaration in ``evidence`` (each row ``n`` times): the same
        groups and values as batch's, so the same medians (a median does not depend on the
        order of its values). Counted per item once any of them has a value per item, as
        batch's ``first_per_item < start``."""
        frame = evidence.get("declared")
        if frame is None or not len(frame):
            return References.empty()
        every = np.repeat(np.arange(len(frame)), frame["n"].to_numpy(np.int64))
        return fit_references(
            frame["hs6"].to_numpy(object, na_value=None)[every],
            frame["hs6_origin"].to_numpy(object, na_value=None)[every],
            {k: frame[k].to_numpy(np.float64)[every] for k in REFERENCE_COLUMNS},
        )

    def merge_snapshot(
        self, pieces: dict[str, list[RefitPart]], ctx: SpecContext, outcomes: dict, cutoff_us: int
    ) -> RefitPart:
        parts = pieces["hs_heading"]
        return self.merge_pieces(parts, merge_references([p.fitted for p in parts]))

    def save_fitted(self, part: References, directory: Path) -> None:
        part.hs6.to_parquet(directory / "references_hs6.parquet")
        part.hs6_origin.to_parquet(directory / "references_hs6_origin.parquet")

    def load_fitted(self, directory: Path) -> References:
        return References(
            hs6=pd.read_parquet(directory / "references_hs6.parquet"),
            hs6_origin=pd.read_parquet(directory / "references_hs6_origin.parquet"),
        )

    def warnings(self, rows: Rows, values: Values, part: RefitPart) -> list[RowNote]:
        if fitted_of(part).hs6.empty:
            return []
        hs6 = rows.prep["hs6"]
        # a declaration without an HS code has no reference price by design, unwarned: postal
        # items often have none, and the warning would be on most of their decisions
        return [
            RowNote(
                int(i), f"HS6 {hs6[i]} not seen in history: no reference price", HS6_NO_REFERENCE
            )
            for i in np.flatnonzero(values["reference_count_hs6"] == 0)
            if hs6[i] is not None
        ]


FAMILY = Valuation()
