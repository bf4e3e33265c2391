"""Batch point-in-time features for a declaration history, its manifest and entity-state snapshot.

Pipeline (all vectorised; loops only over entities and refit periods, never over rows):
1. ``prepare`` derives keys and values from the contract columns (HS6/chapter, EUR value, unit
   values, entity keys including pairs and mapped ``entity`` extras).
2. Entity histories (``features.pipeline.history``): declarations counted at ``declared_at``, outcomes
   at ``inspected_at`` -- a parcel sees only what was recorded strictly before it.
3. Split shipments: the consignee's parcels and value in the last hours.
4. Learned components (reference prices, text models) refitted every ``refit_period_days`` on
   an expanding window: rows of period k use only declarations (and outcomes) before its start.
5. Raw declaration fields, calendar, categorical codes fixed in the manifest.

``features.pipeline.online`` computes the same features for new declarations from the snapshot written
by ``build_entity_state``; both call the family functions below, so they cannot drift apart.
"""

from __future__ import annotations

import functools
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import sparse

from features.intake.contract import (
    DECLARATION_FIELDS,
    FIELDS,
    Contract,
    ContractError,
    FrameColumns,
    RecordColumns,
    atomic_write,
    columns_of,
    read_declarations,
    text_array,
    utc_instant,
    with_default_index,
)
from features.params import FeatureParams, load_feature_params
from features.pipeline import history as hist
from features.pipeline.manifest import (
    ID_COLUMNS,
    LABEL_COLUMNS,
    REASON_CONTEXT,
    FeatureManifest,
    FeatureSpec,
)
from features.pipeline.text import (
    TextCounts,
    TextModel,
    chapter_index,
    description_shape,
    make_vectorizer,
    text_scores,
)
from features.pipeline.valuation import LOG_COLUMNS, fit_references, unit_values, valuation_features

log = logging.getLogger(__name__)

FEATURES_FILE = "features.parquet"
SOURCE_FILE = "source.json"  # what the features were built from, and how it passed the gate
STATE_DIR = "entity_state"
# Refit periods are anchored on a Monday so 7- and 14-day periods start on Mondays at 00:00 UTC.
PERIOD_ORIGIN_US = int(pd.Timestamp("1970-01-05", tz="UTC").value // 1000)
NONE_KEY = "<none>"
PAIR_SEPARATOR = "|"

_ENTITY_LABELS = {
    "seller_id": ("seller", "seller {seller_id}"),
    "consignee_id": ("consignee", "consignee {consignee_id}"),
    "platform_id": ("platform", "platform {platform_id}"),
    "operator_id": ("operator", "operator {operator_id}"),
    "origin_country": ("origin", "origin {origin_country}"),
    "seller_country": ("seller_country", "sellers from {seller_country}"),
    "hs_chapter": ("hs_chapter", "HS chapter {hs_chapter}"),
    "hs6": ("hs6", "HS {hs6}"),
    "arrival_office": ("office", "arrival office"),
    "consignee_region": ("region", "consignee region"),
}


# ------------------------------------------------------------------------------------------
# Entities and preparation
# ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Entity:
    spec: str  # "seller_id" or "seller_id*hs_chapter"
    prefix: str  # feature name prefix
    phrase: str  # how a reason names it

    @property
    def parts(self) -> list[str]:
        return self.spec.split("*")


# Derived keys and the contract field each comes from: an entity or categorical needs its source.
DERIVED_FROM = {"hs6": "hs_code", "hs_chapter": "hs_code", "hs_heading": "hs_code"}


def source_of(column: str) -> str:
    return DERIVED_FROM.get(column, column)


def entities_for(
    params: FeatureParams, contract: Contract, inputs: tuple[str, ...] | None = None
) -> list[Entity]:
    """Entities with history features; with ``inputs``, only those whose keys exist in the data."""
    specs = list(params.entities) + [e.name for e in contract.extras if e.kind == "entity"]
    out = []
    for spec in dict.fromkeys(specs):
        parts = spec.split("*")
        if inputs is not None and not all(source_of(p) in inputs for p in parts):
            continue
        labels = [_ENTITY_LABELS.get(p, (p, f"this {p.replace('_', ' ')}")) for p in parts]
        prefix = "_x_".join(lab[0] for lab in labels)
        phrase = " with ".join(lab[1] for lab in labels)
        out.append(Entity(spec=spec, prefix=prefix, phrase=phrase))
    return out


def available_inputs(declarations: pd.DataFrame, contract: Contract) -> tuple[str, ...]:
    """Contract fields and extras holding at least one value in a history, in contract order.

    Feature families whose inputs are absent (an export without item text, quantity, revenue,
    platform...) are left out of the manifest, not kept as constant columns.
    """
    names = [f.name for f in FIELDS] + [e.name for e in contract.extras]
    return tuple(
        n for n in names if n in declarations.columns and bool(declarations[n].notna().any())
    )


class Prepared(dict):
    """Named columns derived from declarations, as numpy arrays of one length.

    Text columns are object arrays of ``str`` with None where missing; numbers are float64 or
    int64. Plain arrays, not pandas Series or a DataFrame: an online request holds a handful
    of rows, and pandas costs tens of microseconds per operation whatever the size.
    """

    def __init__(self, n_rows: int, columns: dict[str, np.ndarray]):
        super().__init__(columns)
        self.n_rows = n_rows


def filled(values: np.ndarray, fill: str) -> np.ndarray:
    """A text array with its missing values (None) replaced by ``fill``."""
    return np.array([fill if v is None else v for v in values.tolist()], dtype=object)


def _prefix(values: np.ndarray, length: int) -> np.ndarray:
    return np.array([None if v is None else v[:length] for v in values.tolist()], dtype=object)


# text fields read by the feature families themselves (besides entities and categoricals)
_TEXT_INPUTS = (
    "hs_code",
    "currency",
    "description",
    "origin_country",
    "seller_country",
    "platform_id",
)


def _text_fields(params: FeatureParams, contract: Contract) -> tuple[str, ...]:
    """The contract's text fields that features, entity keys or reasons use (in field order).

    Only these become Python-object arrays: a million declarations cost ~60 MB per column so.
    """
    used = set(_TEXT_INPUTS) | set(REASON_CONTEXT) | set(categorical_columns(params, contract))
    for entity in entities_for(params, contract):
        used.update(entity.parts)
    names = [f.name for f in DECLARATION_FIELDS if f.kind in ("str", "category")]
    return tuple(n for n in names if n in used)


def prepare(
    declarations: pd.DataFrame | FrameColumns | RecordColumns,
    contract: Contract,
    params: FeatureParams,
) -> Prepared:
    """Derived keys and values of canonical declarations (same rows, same order).

    ``declarations``: a canonical frame, or validated API models (``RecordColumns``).
    """
    d = columns_of(declarations)
    text = {name: d.text(name) for name in _text_fields(params, contract)}
    fx = params.fx
    rate = np.fromiter((fx.get(c, np.nan) for c in text["currency"]), np.float64, len(d))
    value_eur = d.numbers("declared_value") * rate
    quantity = d.numbers("quantity")
    weight = d.numbers("gross_weight_kg")
    hs6 = _prefix(text["hs_code"], 6)
    columns: dict[str, np.ndarray] = {
        **text,
        "t_us": d.t_us("declared_at"),  # UTC microseconds since the epoch
        "hs6": hs6,
        "hs_chapter": _prefix(text["hs_code"], 2),
        "hs_heading": _prefix(text["hs_code"], 4),
        "value_eur": value_eur,
        "value_cents": np.round(np.nan_to_num(value_eur, nan=0.0) * 100).astype(np.int64),
        "quantity": quantity,
        "gross_weight_kg": weight,
        "description": filled(text["description"], ""),
        "hs6_origin": hs6 + PAIR_SEPARATOR + filled(text["origin_country"], NONE_KEY),
        "ioss_prepaid": d.numbers("ioss_prepaid"),
        "aeo_operator": d.numbers("aeo_operator"),
    }
    for extra in contract.extras:
        columns[extra.name] = (
            d.numbers(extra.name) if extra.kind == "numeric" else d.text(extra.name)
        )
    columns.update(unit_values(value_eur, quantity, weight))
    return Prepared(len(d), columns)


def entity_keys(prep: Prepared, entity: Entity) -> np.ndarray:
    """Entity key per row as a Python-str object array ("a|b" for pairs); None where a part of
    the key is missing (an unknown entity, see ``history.forget_unknown``)."""
    parts = [prep[p] for p in entity.parts]
    if len(parts) == 1:
        return parts[0]
    keys = filled(parts[0], NONE_KEY)
    missing = pd.isna(parts[0])
    for part in parts[1:]:
        keys = keys + PAIR_SEPARATOR + filled(part, NONE_KEY)
        missing |= pd.isna(part)
    if missing.any():
        keys[missing] = None
    return keys


def entity_codes(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Integer codes of keys (-1 for None) and the distinct keys, in order of appearance."""
    codes, vocabulary = pd.factorize(keys)
    return codes.astype(np.int64), np.asarray(vocabulary, dtype=object)


def period_of(t_us: np.ndarray, period_days: int) -> np.ndarray:
    return (t_us - PERIOD_ORIGIN_US) // (period_days * hist.US_PER_DAY)


def period_start_us(period: int, period_days: int) -> int:
    return PERIOD_ORIGIN_US + int(period) * period_days * hist.US_PER_DAY


def outcome_rows(declarations: pd.DataFrame) -> np.ndarray:
    """Rows whose inspection result is recorded (inspected, with a result time and a label)."""
    if "inspected" not in declarations.columns:
        return np.zeros(len(declarations), dtype=bool)
    return (
        declarations["inspected"].fillna(False).to_numpy(dtype=bool)
        & declarations["inspected_at"].notna().to_numpy()
        & declarations["illicit"].notna().to_numpy()
    )


def outcome_events(declarations: pd.DataFrame) -> dict[str, np.ndarray]:
    rows = outcome_rows(declarations)
    idx = np.flatnonzero(rows)
    revenue = declarations["revenue_recovered"].to_numpy(dtype=np.float64, na_value=0.0)[idx]
    return {
        "rows": idx,
        "t_us": declarations["inspected_at"]
        .astype("datetime64[us, UTC]")
        .astype("int64")
        .to_numpy()[idx],
        "illicit": declarations["illicit"].to_numpy(dtype=bool, na_value=False)[idx],
        "revenue_cents": np.round(np.nan_to_num(revenue, nan=0.0) * 100).astype(np.int64),
    }


# ------------------------------------------------------------------------------------------
# Feature families shared by batch and online
# ------------------------------------------------------------------------------------------


def split_shipment_features(
    codes: np.ndarray,
    t_us: np.ndarray,
    value_eur: np.ndarray,
    index: hist.EventIndex | hist.CombinedIndex,
    params: FeatureParams,
) -> dict[str, np.ndarray]:
    """The consignee's parcels and value just before this one (orders split under de minimis)."""
    out: dict[str, np.ndarray] = {}
    value = np.nan_to_num(value_eur, nan=0.0)
    now = index.prefix(codes, t_us)
    for h in params.split_windows_hours:
        then = index.prefix(codes, t_us - h * hist.US_PER_HOUR)
        out[f"consignee_parcels_{h}h"] = (now["count"] - then["count"]).astype(np.float64)
        out[f"consignee_value_{h}h_eur"] = (now["value_cents"] - then["value_cents"]) / 100.0
    first = params.split_windows_hours[0]
    together = value + out[f"consignee_value_{first}h_eur"]
    out["split_tops_de_minimis"] = (
        (value < params.de_minimis_eur) & (together >= params.de_minimis_eur)
    ).astype(np.float64)
    return out


def local_time_us(t_us: np.ndarray, timezone: str) -> np.ndarray:
    """UTC microseconds moved to the wall clock of ``timezone`` (daylight saving included).

    Offsets are looked up once per distinct quarter hour (transitions fall on quarter hours),
    so a batch of a million parcels costs a few thousand lookups and a request a handful.
    """
    if timezone == "UTC":
        return t_us
    from datetime import datetime
    from zoneinfo import ZoneInfo

    quarter = 15 * 60 * 1_000_000
    buckets, inverse = np.unique(t_us // quarter, return_inverse=True)
    zone = ZoneInfo(timezone)
    offsets = np.fromiter(
        (
            datetime.fromtimestamp(int(b) * 900, zone).utcoffset().total_seconds()
            for b in buckets.tolist()
        ),
        dtype=np.float64,
        count=len(buckets),
    )
    return t_us + (offsets[inverse.reshape(-1)] * 1_000_000).astype(np.int64)


def declaration_features(
    prep: Prepared,
    manifest_categories: dict[str, tuple[str, ...]],
    contract: Contract,
    timezone: str = "UTC",
) -> dict[str, np.ndarray]:
    """Raw declaration fields, calendar (in the administration's local time) and fixed
    categorical codes."""
    t_us = local_time_us(prep["t_us"], timezone)
    days = t_us // hist.US_PER_DAY
    seller_country = prep["seller_country"]
    out: dict[str, np.ndarray] = {
        "quantity": prep["quantity"],
        "gross_weight_kg": prep["gross_weight_kg"],
        "ioss_prepaid": prep["ioss_prepaid"],
        "aeo_operator": prep["aeo_operator"],
        "platform_missing": pd.isna(prep["platform_id"]).astype(np.float64),
        "seller_country_differs": np.where(
            pd.isna(seller_country),
            np.nan,
            (filled(seller_country, "") != filled(prep["origin_country"], "")).astype(np.float64),
        ),
        "hs_code_digits": np.fromiter(
            (0 if v is None else len(v) for v in prep["hs_code"].tolist()),
            np.float64,
            prep.n_rows,
        ),
        "hour_of_day": ((t_us - days * hist.US_PER_DAY) // hist.US_PER_HOUR).astype(np.float64),
        "day_of_week": ((days + 3) % 7).astype(np.float64),  # 1970-01-01 was a Thursday
    }
    for name, categories in manifest_categories.items():
        column = name.removeprefix("cat_")
        lookup = _category_lookup(categories)
        values = prep[column]
        out[name] = hist.codes_of(lookup, values, dtype=np.float64)
    for extra in contract.extras:
        if extra.kind == "numeric":
            out[f"extra_{extra.name}"] = np.asarray(prep[extra.name], dtype=np.float64)
    return out


@functools.lru_cache(maxsize=256)
def _category_lookup(categories: tuple[str, ...]) -> dict[str, int]:
    """category -> code; anything else (unknown, null) maps to -1."""
    return {category: code for code, category in enumerate(categories)}


def categorical_columns(params: FeatureParams, contract: Contract) -> list[str]:
    return list(params.categoricals) + [e.name for e in contract.extras if e.kind == "categorical"]


def learn_categories(
    prep: Prepared, params: FeatureParams, contract: Contract
) -> dict[str, tuple[str, ...]]:
    """The most frequent values of each categorical column; the rest code as unknown (-1)."""
    out = {}
    for col in categorical_columns(params, contract):
        counts = pd.Series(prep[col], dtype="str").value_counts(dropna=True)
        counts = counts.sort_index(kind="stable").sort_values(ascending=False, kind="stable")
        if len(counts):  # a column without values (absent from the export) has no feature
            out[f"cat_{col}"] = tuple(str(v) for v in counts.index[: params.max_categories])
    return out


# ------------------------------------------------------------------------------------------
# Manifest: names, groups, descriptions, reason templates
# ------------------------------------------------------------------------------------------


def _history_specs(entity: Entity, params: FeatureParams) -> list[FeatureSpec]:
    p, who, ow = entity.prefix, entity.phrase, params.outcome_window_days
    specs = [
        FeatureSpec(
            f"{p}_n_{w}d",
            "entity_history",
            "float",
            f"Declarations by the same {entity.spec} in the previous {w} days.",
            f"{who} lodged {{value:.0f}} declarations in the last {w} days",
        )
        for w in params.windows_days
    ]
    specs += [
        FeatureSpec(
            f"{p}_days_since_first",
            "entity_history",
            "float",
            f"Days since the {entity.spec} was first seen (empty if new).",
            f"{who} first seen {{value:.0f}} days ago",
        ),
        FeatureSpec(
            f"{p}_n_inspected",
            "entity_history",
            "float",
            f"Past inspections of the {entity.spec} with a recorded result.",
            f"{who} inspected {{value:.0f}} times before",
        ),
        FeatureSpec(
            f"{p}_n_illicit",
            "entity_history",
            "float",
            f"Past inspections of the {entity.spec} that found an offence.",
            f"{who} caught {{value:.0f}} times before",
        ),
        FeatureSpec(
            f"{p}_hit_rate",
            "entity_history",
            "float",
            f"Smoothed hit rate of past inspections of the {entity.spec}.",
            f"{who} past inspections hit rate {{value:.0%}}",
        ),
        FeatureSpec(
            f"{p}_revenue_recovered_eur",
            "entity_history",
            "float",
            f"Revenue recovered from the {entity.spec} in past inspections, EUR.",
            f"EUR {{value:,.0f}} already recovered from {who}",
        ),
        FeatureSpec(
            f"{p}_revenue_per_offence_eur",
            "entity_history",
            "float",
            f"Mean revenue recovered per offence found for the {entity.spec}, EUR (empty if none).",
            f"offences of {who} recovered EUR {{value:,.0f}} each on average",
        ),
        FeatureSpec(
            f"{p}_illicit_{ow}d",
            "entity_history",
            "float",
            f"Offences found for the {entity.spec} in results recorded in the last {ow} days.",
            f"{who} caught {{value:.0f}} times in the last {ow} days",
        ),
        FeatureSpec(
            f"{p}_inspected_{ow}d",
            "entity_history",
            "float",
            f"Inspection results for the {entity.spec} recorded in the last {ow} days.",
            f"{who} inspected {{value:.0f}} times in the last {ow} days",
        ),
    ]
    return specs


_STATIC_SPECS = (
    FeatureSpec(
        "value_eur",
        "valuation",
        "float",
        "Declared value in EUR.",
        "declared value EUR {value:,.2f}",
    ),
    FeatureSpec(
        "value_per_item_eur",
        "valuation",
        "float",
        "Declared value per item, EUR.",
        "declared value EUR {value:,.2f} per item",
    ),
    FeatureSpec(
        "value_per_kg_eur",
        "valuation",
        "float",
        "Declared value per kg, EUR.",
        "declared value EUR {value:,.2f} per kg",
    ),
    FeatureSpec(
        "reference_value_eur",
        "valuation",
        "float",
        "Value of the declared items at the past median unit value of the HS6 from the origin (HS6 if too few), EUR.",
        "the items would be worth about EUR {value:,.0f} at usual prices",
    ),
    FeatureSpec(
        "value_gap_eur",
        "valuation",
        "float",
        "Reference value minus declared value when positive, EUR: the amount possibly undervalued.",
        "declared EUR {value:,.0f} below the usual value of these items",
    ),
    FeatureSpec(
        "unit_value_ratio_hs6",
        "valuation",
        "float",
        "Unit value / median unit value of past declarations of the HS6.",
        "declared unit value is {value:.0%} of the past median for HS {hs6}",
    ),
    FeatureSpec(
        "value_per_kg_ratio_hs6",
        "valuation",
        "float",
        "Value per kg / median of past declarations of the HS6.",
        "declared value per kg is {value:.0%} of the past median for HS {hs6}",
    ),
    FeatureSpec(
        "unit_value_ratio_hs6_origin",
        "valuation",
        "float",
        "Unit value / median of past declarations of the HS6 from the same origin (HS6 median if too few).",
        "declared unit value is {value:.0%} of the past median for HS {hs6} from {origin_country}",
    ),
    FeatureSpec(
        "value_per_kg_ratio_hs6_origin",
        "valuation",
        "float",
        "Value per kg / median of past declarations of the HS6 from the same origin (HS6 median if too few).",
        "declared value per kg is {value:.0%} of the past median for HS {hs6} from {origin_country}",
    ),
    FeatureSpec(
        "weight_per_item_ratio_hs6",
        "weight",
        "float",
        "Weight per item / median of past declarations of the HS6.",
        "weight per item is {value:.0%} of the usual for HS {hs6}",
    ),
    FeatureSpec(
        "reference_count_hs6",
        "valuation",
        "float",
        "Past declarations behind the HS6 reference.",
        "only {value:.0f} past declarations of HS {hs6} to compare with",
    ),
    FeatureSpec(
        "de_minimis_ratio",
        "valuation",
        "float",
        "Declared value / de minimis threshold.",
        "declared value is {value:.0%} of the duty-free threshold",
    ),
    FeatureSpec(
        "just_below_de_minimis",
        "valuation",
        "float",
        "Declared value between 80% and 100% of the de minimis threshold.",
        "declared value just below the duty-free threshold",
    ),
    FeatureSpec(
        "text_p_declared_chapter",
        "text",
        "float",
        "Probability of the declared HS chapter given the description (model of past declarations).",
        "description matches HS chapter {hs_chapter} with probability {value:.0%} only",
    ),
    FeatureSpec(
        "text_p_top_chapter",
        "text",
        "float",
        "Probability of the most likely HS chapter given the description.",
        "description points to another chapter with probability {value:.0%}",
    ),
    FeatureSpec(
        "text_top_chapter_differs",
        "text",
        "float",
        "The description's most likely chapter is not the declared one.",
        "description suggests a different HS chapter than {hs_chapter}",
    ),
    FeatureSpec(
        "text_p_illicit",
        "text",
        "float",
        "Probability of an offence given the description words (model of past inspection results).",
        "description words are frequent in past offences ({value:.0%})",
    ),
    FeatureSpec(
        "text_word_hit_rate_max",
        "text",
        "float",
        "Highest smoothed hit rate of past inspections among the description's words.",
        "a word of the description was found in offences at rate {value:.0%}",
    ),
    FeatureSpec(
        "text_hs6_support_mean",
        "text",
        "float",
        "Mean over the description's words of the share of past declarations with the word that used the declared HS6.",
        "description words rarely go with HS {hs6} ({value:.0%} of past uses)",
    ),
    FeatureSpec(
        "text_hs6_support_min",
        "text",
        "float",
        "Least support of any description word for the declared HS6.",
        "a description word was declared under HS {hs6} in only {value:.0%} of past uses",
    ),
    FeatureSpec(
        "description_n_tokens",
        "text",
        "float",
        "Distinct words in the description.",
        "description has only {value:.0f} word(s)",
    ),
    FeatureSpec(
        "description_vague",
        "text",
        "float",
        "The description uses only vague words (gift, parts, goods...).",
        "vague goods description",
    ),
)

_DECLARATION_SPECS = (
    FeatureSpec(
        "quantity", "declaration", "float", "Number of items.", "{value:.0f} items declared"
    ),
    FeatureSpec(
        "gross_weight_kg",
        "declaration",
        "float",
        "Gross weight, kg.",
        "gross weight {value:.2f} kg",
    ),
    FeatureSpec(
        "ioss_prepaid",
        "declaration",
        "float",
        "VAT prepaid through IOSS.",
        "IOSS prepaid: {value:.0f}",
    ),
    FeatureSpec(
        "aeo_operator",
        "declaration",
        "float",
        "Operator holds AEO status.",
        "operator AEO status: {value:.0f}",
    ),
    FeatureSpec(
        "platform_missing",
        "declaration",
        "float",
        "No e-commerce platform declared.",
        "no platform declared",
    ),
    FeatureSpec(
        "seller_country_differs",
        "declaration",
        "float",
        "Declared origin differs from the seller's country.",
        "origin {origin_country} differs from the seller's country",
    ),
    FeatureSpec(
        "hs_code_digits",
        "declaration",
        "float",
        "Number of digits of the declared HS code.",
        "HS code given with {value:.0f} digits",
    ),
    FeatureSpec(
        "hour_of_day",
        "calendar",
        "float",
        "Hour of declaration, local time (features.timezone).",
        "declared at {value:.0f}h",
    ),
    FeatureSpec(
        "day_of_week",
        "calendar",
        "float",
        "Day of week of declaration (0 = Monday).",
        "declared on weekday {value:.0f}",
    ),
)


# What the non-history features need from the data, by feature name or group: a feature whose
# inputs the history lacks is left out of the manifest (it could only be constant or empty).
_FEATURE_NEEDS = {
    "quantity": ("quantity",),
    "ioss_prepaid": ("ioss_prepaid",),
    "aeo_operator": ("aeo_operator",),
    "platform_missing": ("platform_id",),
    "seller_country_differs": ("seller_country",),
    "value_per_item_eur": ("quantity",),
    "unit_value_ratio_hs6": ("quantity",),
    "unit_value_ratio_hs6_origin": ("quantity",),
    "weight_per_item_ratio_hs6": ("quantity",),
}
_GROUP_NEEDS = {"text": ("description",), "split_shipment": ("consignee_id",)}
_REVENUE_HISTORY = ("_revenue_recovered_eur", "_revenue_per_offence_eur")


def _has_inputs(spec: FeatureSpec, inputs: tuple[str, ...] | None) -> bool:
    if inputs is None:
        return True
    needs = _FEATURE_NEEDS.get(spec.name, ()) + _GROUP_NEEDS.get(spec.group, ())
    if spec.group == "entity_history" and spec.name.endswith(_REVENUE_HISTORY):
        needs += ("revenue_recovered",)
    return all(n in inputs for n in needs)


def build_manifest(
    params: FeatureParams,
    contract: Contract,
    categories: dict[str, tuple[str, ...]],
    inputs: tuple[str, ...] | None = None,
) -> FeatureManifest:
    """The feature list for ``params`` and the extras; with ``inputs``, only features the
    history can feed (``available_inputs``)."""
    specs: list[FeatureSpec] = list(_DECLARATION_SPECS)
    for name, cats in categories.items():
        col = name.removeprefix("cat_")
        specs.append(
            FeatureSpec(
                name,
                "declaration",
                "category",
                f"{col.replace('_', ' ')} (category code).",
                f"{col.replace('_', ' ')} is {{value}}",
                categories=cats,
            )
        )
    for extra in contract.extras:
        if extra.kind == "numeric" and (inputs is None or extra.name in inputs):
            specs.append(
                FeatureSpec(
                    f"extra_{extra.name}",
                    "extra",
                    "float",
                    extra.description or f"Mapped numeric column {extra.name}.",
                    f"{extra.name.replace('_', ' ')} {{value:,.2f}}",
                )
            )
    specs += list(_STATIC_SPECS)
    for h in params.split_windows_hours:
        specs.append(
            FeatureSpec(
                f"consignee_parcels_{h}h",
                "split_shipment",
                "float",
                f"Parcels to the same consignee in the previous {h} hours.",
                f"consignee {{consignee_id}} received {{value:.0f}} parcels in the last {h} hours",
            )
        )
        specs.append(
            FeatureSpec(
                f"consignee_value_{h}h_eur",
                "split_shipment",
                "float",
                f"Declared value to the same consignee in the previous {h} hours, EUR.",
                f"consignee {{consignee_id}} received EUR {{value:,.0f}} in the last {h} hours",
            )
        )
    specs.append(
        FeatureSpec(
            "split_tops_de_minimis",
            "split_shipment",
            "float",
            "Below de minimis alone but above it with the consignee's parcels of the first split window.",
            "with the consignee's other recent parcels the value exceeds the duty-free threshold",
        )
    )
    for entity in entities_for(params, contract, inputs):
        specs += _history_specs(entity, params)
    specs = [spec for spec in specs if _has_inputs(spec, inputs)]
    return FeatureManifest(features=tuple(specs), params=params.to_dict(), inputs=inputs)


# ------------------------------------------------------------------------------------------
# Batch
# ------------------------------------------------------------------------------------------


@dataclass
class FeatureSet:
    frame: pd.DataFrame  # ids, labels, reason context, features; sorted by (declared_at, id)
    manifest: FeatureManifest


def sort_declarations(declarations: pd.DataFrame) -> pd.DataFrame:
    """Deterministic order: by declaration time, ties by id (input order never matters)."""
    return declarations.sort_values(["declared_at", "declaration_id"], kind="stable").reset_index(
        drop=True
    )


def _history_batch(
    prep: Prepared,
    outcomes: dict[str, np.ndarray],
    entities: list[Entity],
    params: FeatureParams,
) -> dict[str, np.ndarray]:
    t = prep["t_us"]
    out_t = outcomes["t_us"]
    weights = hist.outcome_weights(outcomes["illicit"], outcomes["revenue_cents"])
    global_outcomes = hist.EventIndex(np.zeros(len(out_t), dtype=np.int64), out_t, weights)
    prior = hist.global_prior(
        t,
        global_outcomes,
        None,
        default_prior=params.default_prior,
        prior_strength=params.prior_strength,
    )
    result: dict[str, np.ndarray] = {}
    for entity in entities:
        codes, _ = entity_codes(entity_keys(prep, entity))
        known = codes >= 0
        # Parcels with an unknown key are not events of any entity; they query a code no
        # event has (0 when all are unknown) and get their results forgotten below.
        query = np.where(known, codes, 0)
        extra_w = (
            {"value_cents": prep["value_cents"][known]} if entity.spec == "consignee_id" else None
        )
        decl_index = hist.EventIndex(codes[known], t[known], extra_w)
        out_rows = outcomes["rows"][known[outcomes["rows"]]]
        out_known = known[outcomes["rows"]]
        out_index = hist.EventIndex(
            codes[out_rows], out_t[out_known], {k: w[out_known] for k, w in weights.items()}
        )
        values = hist.entity_history(
            entity.prefix,
            query,
            t,
            decl_index,
            out_index,
            prior,
            windows_days=params.windows_days,
            outcome_window_days=params.outcome_window_days,
            prior_strength=params.prior_strength,
        )
        hist.forget_unknown(values, known, prior, f"{entity.prefix}_hit_rate")
        result.update(values)
        if entity.spec == "consignee_id":
            split = split_shipment_features(query, t, prep["value_eur"], decl_index, params)
            hist.forget_unknown(split, known, prior, "")
            result.update(split)
    return result


def _learned_batch(
    prep: Prepared,
    declarations: pd.DataFrame,
    outcomes: dict[str, np.ndarray],
    params: FeatureParams,
    per_item: bool = True,
) -> dict[str, np.ndarray]:
    """Valuation and text features, refitted per period on everything before the period start.

    ``per_item``: reference values count items (see ``valuation_features``).
    """
    n = prep.n_rows
    t = prep["t_us"]  # sorted ascending
    periods = period_of(t, params.refit_period_days)
    logs = {k: prep[k] for k in LOG_COLUMNS}

    inverse, uniques = pd.factorize(prep["description"])
    vectorizer = make_vectorizer()
    try:
        U = vectorizer.fit_transform(uniques.astype(str)).tocsr()
        vocabulary = vectorizer.get_feature_names_out()
    except ValueError:  # not a single word in any description
        U = sparse.csr_matrix((len(uniques), 0), dtype=np.int64)
        vocabulary = np.array([], dtype=str)
    vague_mask = np.isin(vocabulary, list(params.vague_terms))
    chapters = chapter_index(prep["hs_chapter"])
    hs6_codes, hs6_vocabulary = pd.factorize(prep["hs6"])
    hs6_codes = hs6_codes.astype(np.int64)
    counts = TextCounts.zeros(len(vocabulary), len(hs6_vocabulary))
    out_order = np.argsort(outcomes["t_us"], kind="stable")
    out_rows_sorted = outcomes["rows"][out_order]
    out_t_sorted = outcomes["t_us"][out_order]
    out_ill_sorted = outcomes["illicit"][out_order]

    result = {
        name: np.full(n, np.nan)
        for name in (
            "value_eur",
            "value_per_item_eur",
            "value_per_kg_eur",
            "reference_value_eur",
            "value_gap_eur",
            "unit_value_ratio_hs6",
            "value_per_kg_ratio_hs6",
            "unit_value_ratio_hs6_origin",
            "value_per_kg_ratio_hs6_origin",
            "weight_per_item_ratio_hs6",
            "reference_count_hs6",
            "de_minimis_ratio",
            "just_below_de_minimis",
            "text_p_declared_chapter",
            "text_p_top_chapter",
            "text_top_chapter_differs",
            "text_p_illicit",
            "text_word_hit_rate_max",
            "text_hs6_support_mean",
            "text_hs6_support_min",
        )
    }
    decl_done = 0
    out_done = 0
    bounds = np.flatnonzero(np.diff(periods)) + 1
    starts = np.concatenate(([0], bounds))
    ends = np.concatenate((bounds, [n]))
    for lo, hi in zip(starts, ends, strict=True):
        start_us = period_start_us(int(periods[lo]), params.refit_period_days)
        # declarations known at the period start: rows [0, lo) (sorted by time, all < start_us)
        known = lo
        refs = fit_references(
            prep["hs6"][:known],
            prep["hs6_origin"][:known],
            {k: v[:known] for k, v in logs.items()},
        )
        vals = valuation_features(
            prep["value_eur"][lo:hi],
            {k: v[lo:hi] for k, v in logs.items()},
            prep["hs6"][lo:hi],
            prep["hs6_origin"][lo:hi],
            refs,
            de_minimis_eur=params.de_minimis_eur,
            min_reference_count=params.min_reference_count,
            per_item=per_item,
        )
        # text evidence: declarations before the period, outcomes recorded before its start
        counts.add_declarations(
            U[inverse[decl_done:known]], chapters[decl_done:known], hs6_codes[decl_done:known]
        )
        decl_done = known
        new_out = np.searchsorted(out_t_sorted, start_us, side="left")
        rows = out_rows_sorted[out_done:new_out]
        counts.add_outcomes(U[inverse[rows]], out_ill_sorted[out_done:new_out])
        out_done = new_out
        model, seen = TextModel.from_counts(
            counts, vocabulary, params.text_alpha, np.asarray(hs6_vocabulary)
        )
        texts = _score_in_chunks(
            U[inverse[lo:hi]], model, seen, chapters[lo:hi], hs6_codes[lo:hi], params
        )
        for name, values in {**vals, **texts}.items():
            result[name][lo:hi] = values
    result.update(description_shape(U[inverse], vague_mask))
    return result


def _score_in_chunks(
    X: Any,
    model: TextModel,
    seen: np.ndarray,
    chapters: np.ndarray,
    hs6_codes: np.ndarray,
    params: FeatureParams,
) -> dict[str, np.ndarray]:
    """Score rows tokenised with the global vocabulary, keeping only the model's (seen) tokens.

    Dropping unseen columns makes "has tokens" mean "has known tokens", exactly as online.
    """
    parts: dict[str, list[np.ndarray]] = {}
    chunk = 100_000
    for s in range(0, X.shape[0], chunk):
        part = text_scores(
            X[s : s + chunk][:, seen].tocsr(),
            model,
            chapters[s : s + chunk],
            hs6_codes[s : s + chunk],
            min_token_docs=params.min_reference_count,
        )
        for k, v in part.items():
            parts.setdefault(k, []).append(v)
    return {k: np.concatenate(v) for k, v in parts.items()}


def assemble(
    prep: Prepared,
    declarations: pd.DataFrame,
    values: dict[str, np.ndarray],
    manifest: FeatureManifest,
) -> pd.DataFrame:
    """ids + labels + reason context + manifest features, in manifest order."""
    declarations = with_default_index(declarations)
    # arrays, not Series: every column already has the same rows in the same order, and
    # index alignment of a dict of Series costs ~0.4 ms per online request
    meta: dict[str, Any] = {c: declarations[c].array for c in ID_COLUMNS}
    for c in LABEL_COLUMNS:
        if c in declarations.columns:
            meta[c] = declarations[c].array
    for c in REASON_CONTEXT:  # as declared where possible; derived keys (hs6...) as str
        meta[c] = declarations[c].array if c in declarations.columns else text_array(prep[c])
    # one float block for all features: far cheaper than one column at a time
    names = manifest.names
    block = np.empty((len(declarations), len(names)), dtype=np.float64, order="F")
    for j, name in enumerate(names):
        block[:, j] = values[name]
    features = pd.DataFrame(block, columns=names, copy=False)
    frame = pd.concat([pd.DataFrame(meta), features], axis=1)
    return frame


def build_features(
    declarations: pd.DataFrame,
    contract: Contract,
    params: FeatureParams,
    categories: dict[str, tuple[str, ...]] | None = None,
    inputs: tuple[str, ...] | None = None,
) -> FeatureSet:
    """Point-in-time features of every declaration of a history (canonical contract frame).

    ``categories`` fixes the categorical codes (e.g. to a deployed model's); by default they are
    learned from the data. ``inputs`` fixes which fields the families may use; by default the
    fields holding values in ``declarations`` (``available_inputs``).
    """
    declarations = sort_declarations(declarations)
    if inputs is None:
        inputs = available_inputs(declarations, contract)
    prep = prepare(declarations, contract, params)
    outcomes = outcome_events(declarations)
    if categories is None:
        categories = learn_categories(prep, params, contract)
    manifest = build_manifest(params, contract, categories, inputs)
    values: dict[str, np.ndarray] = {}
    values.update(declaration_features(prep, categories, contract, params.timezone))
    values.update(_history_batch(prep, outcomes, entities_for(params, contract, inputs), params))
    values.update(
        _learned_batch(prep, declarations, outcomes, params, per_item=uses_quantity(manifest))
    )
    return FeatureSet(frame=assemble(prep, declarations, values, manifest), manifest=manifest)


def uses_quantity(manifest: FeatureManifest) -> bool:
    """Reference values count items when the history declares quantities, else kilograms."""
    return manifest.inputs is None or "quantity" in manifest.inputs


def build_to_dir(
    *,
    declarations_path: Path,
    out: Path,
    params_path: Path,
    no_validate: bool = False,
    validated_by: Path | None = None,
    as_of: str | None = None,
) -> dict[str, Any]:
    """CLI edge: gate, read, build, write features.parquet + manifest + entity_state atomically.

    ``as_of``: build as known at that instant (declarations before it, results recorded before
    it) and cut the entity state there; by default just after the last declaration.
    """
    from features.intake.rules import load_limits
    from features.intake.validation import require_valid
    from features.pipeline.online import as_known_at, build_entity_state

    started = time.perf_counter()
    params = load_feature_params(params_path)
    gate = require_valid(
        Path(declarations_path),
        load_limits(params_path),
        no_validate=no_validate,
        validated_by=validated_by,
        what="features build",
    )
    if gate.declarations is not None and gate.contract is not None:  # read by the gate
        declarations, contract = gate.declarations, gate.contract
    else:
        declarations, contract = read_declarations(Path(declarations_path), with_outcomes=True)
    if as_of is not None:
        cutoff = utc_instant(as_of, "--as-of")
        declarations = as_known_at(declarations, cutoff)
        if declarations.empty:
            raise ContractError(f"{declarations_path}: no declarations before --as-of {cutoff}")
    if declarations.empty:
        raise ContractError(f"{declarations_path}: no declarations to build features from")
    feature_set = build_features(declarations, contract, params)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / FEATURES_FILE, lambda tmp: feature_set.frame.to_parquet(tmp, index=False))
    feature_set.manifest.write(out)
    if as_of is None:
        cutoff = declarations["declared_at"].max() + pd.Timedelta(microseconds=1)
    state = build_entity_state(
        declarations, contract, params, cutoff=cutoff, manifest=feature_set.manifest
    )
    state.save(out / STATE_DIR)
    source = {
        "declarations": str(declarations_path),
        **gate.to_dict(),
        "as_of": str(cutoff) if as_of is not None else None,
    }
    atomic_write(out / SOURCE_FILE, lambda tmp: tmp.write_text(json.dumps(source, indent=1)))
    absent = [f.name for f in FIELDS if f.name not in (feature_set.manifest.inputs or ())]
    summary = {
        "rows": len(feature_set.frame),
        "features": len(feature_set.manifest.names),
        "groups": feature_set.manifest.groups(),
        "inputs_absent": absent,
        "gate": gate.status,
        "entity_state_cutoff": str(cutoff),
        "entity_state_fingerprint": state.fingerprint,
        "seconds": round(time.perf_counter() - started, 2),
        "out": str(out),
    }
    atomic_write(
        out / "features_summary.json", lambda tmp: tmp.write_text(json.dumps(summary, indent=1))
    )
    return summary
