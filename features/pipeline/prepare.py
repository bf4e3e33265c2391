"""Prepared rows: the keys and values every feature family reads, derived once per build or request.

Also the history's shape in time: the deterministic declaration order, entity keys (pairs and
mapped ``entity`` extras), refit periods and the outcome events of inspections.
"""

from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from features.errors import ParcelriskError
from features.intake.columns import (
    DISTINCT_FROM_ROWS,
    Coding,
    FrameColumns,
    RecordColumns,
    columns_of,
)
from features.intake.contract import (
    DECLARATION_FIELDS,
    FIELDS,
    IDENTIFIER_FIELDS,
    MIN_WEIGHT_KG,
    Contract,
)
from features.intake.hidden_text import is_obscured, key_skeleton, readable_text
from features.params import FeatureParams
from features.pipeline.history import US_PER_DAY, is_missing, is_small
from features.pipeline.manifest import REASON_CONTEXT

# Refit periods are anchored on a Monday so 7- and 14-day periods start on Mondays at 00:00 UTC.
PERIOD_ORIGIN_US = int(pd.Timestamp("1970-01-05", tz="UTC").value // 1000)
NONE_KEY = "<none>"
# A parcel's value in the base currency is capped here: an absurd one (1e308, accepted with a
# plausibility warning) would overflow to inf, and its int64 cents, summed over an entity's
# window, wrapped around to negative sums (a cap of 2**62 cents per parcel let three of them
# overflow). At 1e10 EUR a window needs 9 million capped parcels of one entity to overflow.
MAX_VALUE_EUR = 1e10
MAX_CENTS = MAX_VALUE_EUR * 100
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

# The split-order signatures' keys (features.families.orders): the pair, and the pair's tariff line
ORDER_ENTITIES = ("seller_id*consignee_id", "seller_id*consignee_id*hs6")

# Derived keys and the contract field each comes from: an entity or categorical needs its source.
DERIVED_FROM = {"hs6": "hs_code", "hs_chapter": "hs_code", "hs_heading": "hs_code"}

# text fields prepare itself derives values from (besides entities, categoricals and reasons)
_TEXT_INPUTS = (
    "hs_code",
    "currency",
    "description",
    "origin_country",
    "seller_country",
    "platform_id",
)


@dataclass(frozen=True)
class Entity:
    spec: str  # "seller_id" or "seller_id*hs_chapter"
    prefix: str  # feature name prefix
    phrase: str  # how a reason names it

    @property
    def parts(self) -> list[str]:
        return self.spec.split("*")

    @property
    def sources(self) -> tuple[str, ...]:
        """The contract fields the entity's key is made of."""
        return tuple(source_of(p) for p in self.parts)


def source_of(column: str) -> str:
    return DERIVED_FROM.get(column, column)


# What an extra's name adds to the party it names: "this declarant past inspections hit rate
# 18%", not "this declarant id ..." (the hit rate of an id; probe 9)
_ID_SUFFIXES = ("_id", "_code", "_no", "_number", "_nr", "_ref")


# Words naming a kind of number, not a party: ``consignee_tax_no`` is the consignee's tax
# number, and "this consignee tax" said a tax (probe 35)
_NUMBER_KINDS = frozenset({"tax", "vat", "tin", "eori", "registration", "licence", "license",
                           "passport", "phone", "account", "permit", "certificate"})  # fmt: skip


def _party(name: str) -> str:
    """An entity extra's name as a reason says it: ``declarant_id`` -> "declarant",
    ``consignee_tax_no`` -> "consignee tax number", ``broker_vat_id`` -> "broker vat id"."""
    for suffix in _ID_SUFFIXES:
        if name.endswith(suffix) and len(name) > len(suffix):
            rest = name.removesuffix(suffix)
            if rest.rsplit("_", 1)[-1].lower() in _NUMBER_KINDS:
                noun = "id" if suffix == "_id" else "number"
                return f"{rest.replace('_', ' ')} {noun}"
            name = rest
            break
    return name.replace("_", " ")


@functools.lru_cache(maxsize=256)
def entity_of(spec: str) -> Entity:
    """The entity of a spec ("seller_id", "seller_id*hs_chapter"), with its feature prefix."""
    labels = [_ENTITY_LABELS.get(p, (p, f"this {_party(p)}")) for p in spec.split("*")]
    prefix = "_x_".join(lab[0] for lab in labels)
    phrase = " with ".join(lab[1] for lab in labels)
    return Entity(spec=spec, prefix=prefix, phrase=phrase)


def entities_for(
    params: FeatureParams, contract: Contract, inputs: tuple[str, ...] | None = None
) -> list[Entity]:
    """Entities with history features; with ``inputs``, only those whose keys exist in the data."""
    extras = tuple(e.name for e in contract.extras if e.kind == "entity")
    return list(_entities(params.entities, extras, inputs))


@functools.lru_cache(maxsize=64)  # asked on every online request: the answer never changes
def _entities(
    specs: tuple[str, ...], extras: tuple[str, ...], inputs: tuple[str, ...] | None
) -> tuple[Entity, ...]:
    entities = [entity_of(spec) for spec in dict.fromkeys(specs + extras)]
    return tuple(e for e in entities if inputs is None or all(s in inputs for s in e.sources))


def categorical_columns(params: FeatureParams, contract: Contract) -> list[str]:
    return list(params.categoricals) + [e.name for e in contract.extras if e.kind == "categorical"]


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

    def __init__(
        self, n_rows: int, columns: dict[str, np.ndarray], codes: dict[str, Coding] | None = None
    ):
        super().__init__(columns)
        self.n_rows = n_rows
        # key columns as prepare factorised them anyway, what ``entity_codes`` gives of the
        # column (a whole history's; a request's rows are not factorised)
        self.codes = codes or {}
        # pair keys built by ``entity_keys`` (a request's: asked by its features, then again
        # when it is appended to the live state)
        self.pair_keys: dict[str, np.ndarray] = {}

    def slice(self, lo: int, hi: int) -> Prepared:
        """Rows [lo, hi) as views of the same arrays (without codes: a slice's first
        appearances are not the history's)."""
        return Prepared(hi - lo, {name: values[lo:hi] for name, values in self.items()})

    def take(self, rows: np.ndarray) -> Prepared:
        """The rows at positions ``rows`` (copies; without codes, as ``slice``)."""
        return Prepared(len(rows), {name: values[rows] for name, values in self.items()})


def filled(values: np.ndarray, fill: str) -> np.ndarray:
    """A text array with its missing values (None) replaced by ``fill``."""
    return np.array([fill if v is None else v for v in values.tolist()], dtype=object)


def readable_descriptions(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each description as ``readable_text`` reads it, and whether that differs from what it
    holds (``is_obscured``: hidden marks or look-alike letters). All ASCII, the common case:
    the array itself, one ``isascii`` each (~40 ms a million); else each distinct non-ASCII
    one read once."""
    obscured = np.zeros(len(values), dtype=bool)
    other = [i for i, v in enumerate(values.tolist()) if not v.isascii()]
    if not other:
        return values, obscured
    out = values.copy()
    read: dict[str, tuple[str, bool]] = {}
    for i in other:
        v = out[i]
        if v not in read:
            read[v] = (readable_text(v), is_obscured(v))
        out[i], obscured[i] = read[v]
    return out, obscured


def _skeletons(values: np.ndarray, coding: Coding | None) -> tuple[np.ndarray, Coding | None]:
    """An identifier column as the keys its entities are known by (``key_skeleton``: a
    seller "АВС-123" written in Cyrillic is the seller "ABC-123"), batch and online alike.
    Only the distinct values are looked at when a coding holds them; a column whose values
    all are ASCII (the common case) comes back as it is, its coding with it. A coding of
    changed values is dropped: two values may now be one key."""
    distinct = coding[1] if coding is not None else values
    if all(v is None or v.isascii() for v in distinct.tolist()):
        return values, coding
    out = np.array([None if v is None else key_skeleton(v) for v in values.tolist()], dtype=object)
    return out, None


def _prefix(
    values: np.ndarray, length: int, coding: Coding | None = None
) -> tuple[np.ndarray, Coding | None]:
    """The first ``length`` characters of each value and, given the values' coding (or from
    ``DISTINCT_FROM_ROWS`` rows on), the prefixes' coding: the prefixes of the distinct
    values, in their order, come in order of first appearance in the rows."""
    if coding is None and len(values) >= DISTINCT_FROM_ROWS:
        coding = entity_codes(values)
    if coding is None:
        prefixes = [None if v is None else v[:length] for v in values.tolist()]
        return np.array(prefixes, dtype=object), None
    codes, uniques = coding
    # one str per distinct code, as FrameColumns.text
    distinct = np.array([*(v[:length] for v in uniques.tolist()), None], dtype=object)
    prefix_of, prefixes = entity_codes(distinct[:-1])
    prefix_codes = np.concatenate((prefix_of, [-1]))[codes]
    return distinct[codes], (prefix_codes, prefixes)


def joined(left: np.ndarray, right: np.ndarray) -> tuple[np.ndarray, Coding | None]:
    """``left + PAIR_SEPARATOR + right`` of two text arrays (no missing values) of few
    distinct pairs (HS6 x origin), kept for the whole build, so one str per pair; and from
    ``DISTINCT_FROM_ROWS`` rows on, their coding (what ``entity_codes`` gives of them).
    A missing ``left`` (a declaration without an HS code) makes no pair: None, uncoded."""
    gone = pd.isna(left)
    if gone.any():
        pairs, _ = joined(np.where(gone, "", left).astype(object), right)
        pairs = np.asarray(pairs, dtype=object).copy()
        pairs[gone] = None
        return pairs, None
    if len(left) < DISTINCT_FROM_ROWS:
        return left + PAIR_SEPARATOR + right, None
    # once per distinct pair, one str shared by its rows (~55 MB less per million rows)
    left_codes, left_uniques = pd.factorize(left, use_na_sentinel=False)
    right_codes, right_uniques = pd.factorize(right, use_na_sentinel=False)
    pairs, left_of, right_of = pair_codes(left_codes, right_codes, len(right_uniques))
    distinct = np.asarray(
        left_uniques[left_of] + PAIR_SEPARATOR + right_uniques[right_of], dtype=object
    )
    # pairs are coded in order of first appearance, so are their strings if no two are equal
    # ("a|b" + "c" and "a" + "b|c")
    coding = (pairs, distinct) if len(set(distinct.tolist())) == len(distinct) else None
    return distinct[pairs], coding


def pair_codes(
    left: np.ndarray, right: np.ndarray, n_right: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Codes of the (left, right) code pairs in order of first appearance, -1 where either code
    is -1 (a key part missing), and each pair code's left and right codes: a pair of keys coded
    without building a string per row (``right`` codes are below ``n_right``)."""
    known = (left >= 0) & (right >= 0)
    codes = np.full(len(left), -1, dtype=np.int64)
    codes[known], distinct = pd.factorize(left[known] * np.int64(n_right) + right[known])
    left_of, right_of = np.divmod(distinct, max(n_right, 1))
    return codes, left_of, right_of


def _text_fields(params: FeatureParams, contract: Contract) -> tuple[str, ...]:
    """The contract's text fields that features, entity keys or reasons use (in field order).

    Only these become Python-object arrays: a million declarations cost ~60 MB per column so.
    """
    return _columns_used(params, contract).text


def _key_columns(params: FeatureParams, contract: Contract) -> frozenset[str]:
    """Prepared columns the families code as keys (entity parts, categoricals, the
    valuation's references): their codes are kept (8 bytes a row each, only these)."""
    return _columns_used(params, contract).coded


class _ColumnsUsed(NamedTuple):
    text: tuple[str, ...]  # text fields read (``_text_fields``)
    coded: frozenset[str]  # key columns (``_key_columns``)
    # fields keyed as they print (``_skeletons``): the identifiers, and any field an entity is
    # keyed by (a free-text consignee_region put in features.entities: probe 22)
    as_printed: frozenset[str]


_COLUMNS_USED: dict[tuple[int, int], tuple[Any, Any, _ColumnsUsed]] = {}


def _columns_used(params: FeatureParams, contract: Contract) -> _ColumnsUsed:
    """What ``prepare`` reads and keys, asked on every request and every live append: kept per
    (params, contract) object. Both are frozen but not hashable (a dict of exchange rates);
    the entry holds them, so their ids are not reused while it lives."""
    key = (id(params), id(contract))
    hit = _COLUMNS_USED.get(key)
    if hit is not None and hit[0] is params and hit[1] is contract:
        return hit[2]
    parts: set[str] = set()
    for entity in [*entities_for(params, contract), entity_of(params.split_entity)]:
        parts.update(entity.parts)
    if params.order_windows_hours:
        parts.update(entity_of(ORDER_ENTITIES[-1]).parts)
    keys = set(categorical_columns(params, contract)) | {"hs6", "hs6_origin"} | parts
    used = set(_TEXT_INPUTS) | set(REASON_CONTEXT) | keys
    names = [f.name for f in DECLARATION_FIELDS if f.kind in ("str", "category")]
    found = _ColumnsUsed(
        text=tuple(n for n in names if n in used),
        coded=frozenset(keys),
        as_printed=IDENTIFIER_FIELDS | frozenset(parts),
    )
    if len(_COLUMNS_USED) >= 64:
        _COLUMNS_USED.clear()
    _COLUMNS_USED[key] = (params, contract, found)
    return found


def unused_inputs(
    params: FeatureParams, contract: Contract, inputs: tuple[str, ...] | None
) -> list[str]:
    """Text fields a history holds values for that no feature reads: neither an entity, a
    categorical, nor a value ``prepare`` derives (a mapped ``consignee_region`` with the default
    params). Named in the build's summary: a mapped field quietly ignored looks used (probe,
    2026-12); ``features.categoricals`` or ``features.entities`` put it to use."""
    keys = _columns_used(params, contract).coded
    read = {source_of(k) for k in keys} | set(_TEXT_INPUTS) | {"declaration_id"}  # the row's name
    names = [f.name for f in DECLARATION_FIELDS if f.kind in ("str", "category")]
    return [n for n in names if inputs is not None and n in inputs and n not in read]


# A declared value of 0 is read as one cent: ratios to it stay finite ("far above"), not -inf/inf
VALUE_FLOOR = 0.01


def unit_values(
    value_eur: np.ndarray, quantity: np.ndarray, weight_kg: np.ndarray
) -> dict[str, np.ndarray]:
    """Log value per item, per kg and log weight per item (value 0 -> a floor, not -inf)."""
    value = np.maximum(value_eur, VALUE_FLOOR)  # NaN (no exchange rate) stays NaN
    qty = np.maximum(quantity.astype(np.float64), 1.0)
    weight = np.maximum(weight_kg, MIN_WEIGHT_KG)
    return {
        "log_quantity": np.log(qty),
        "log_value_per_item": np.log(value / qty),
        "log_value_per_kg": np.log(value / weight),
        "log_weight_per_item": np.log(weight / qty),
    }


def prepare(
    declarations: pd.DataFrame | FrameColumns | RecordColumns,
    contract: Contract,
    params: FeatureParams,
) -> Prepared:
    """Derived keys and values of canonical declarations (same rows, same order).

    ``declarations``: a canonical frame, or validated API models (``RecordColumns``).
    """
    d = columns_of(declarations)
    text: dict[str, np.ndarray] = {}
    codings: dict[str, Coding | None] = {}
    used = _columns_used(params, contract)
    for name in used.text:
        text[name], codings[name] = d.text_codes(name)
        if name in used.as_printed:
            text[name], codings[name] = _skeletons(text[name], codings[name])
    if params.hs_correlation and "hs_code" in text:
        text["hs_code"], codings["hs_code"] = read_as_predecessors(
            text["hs_code"], codings["hs_code"], params
        )
    fx = params.fx
    rate = np.fromiter(map(fx.get, text["currency"], itertools.repeat(np.nan)), np.float64, len(d))
    with np.errstate(over="ignore"):  # an absurd value times its rate is inf: capped
        value_eur = np.minimum(d.numbers("declared_value") * rate, MAX_VALUE_EUR)  # NaN stays
    quantity = d.numbers("quantity")
    weight = d.numbers("gross_weight_kg")
    description, obscured = readable_descriptions(filled(text["description"], ""))
    hs6, codings["hs6"] = _prefix(text["hs_code"], 6, codings["hs_code"])
    hs_chapter, codings["hs_chapter"] = _prefix(text["hs_code"], 2, codings["hs_code"])
    hs_heading, codings["hs_heading"] = _prefix(text["hs_code"], 4, codings["hs_code"])
    hs6_origin, codings["hs6_origin"] = joined(hs6, filled(text["origin_country"], NONE_KEY))
    columns: dict[str, np.ndarray] = {
        **text,
        "t_us": d.t_us("declared_at"),  # UTC microseconds since the epoch
        "hs6": hs6,
        "hs_chapter": hs_chapter,
        "hs_heading": hs_heading,
        "value_eur": value_eur,
        # clipped (``MAX_VALUE_EUR``): an absurd value must not wrap around int64 sums
        "value_cents": np.clip(
            np.round(np.nan_to_num(value_eur, nan=0.0) * 100), -MAX_CENTS, MAX_CENTS
        ).astype(np.int64),
        "quantity": quantity,
        "gross_weight_kg": weight,
        # as a reader sees it: hidden marks and look-alike letters read the words they print
        # (``features.intake.hidden_text``), for every family that reads words; the stored
        # declaration keeps what was sent, and a decision says it was read so
        "description": description,
        "description_obscured": obscured,
        "hs6_origin": hs6_origin,
        "ioss_prepaid": d.numbers("ioss_prepaid"),
        "aeo_operator": d.numbers("aeo_operator"),
    }
    for extra in contract.extras:
        if extra.kind == "numeric" and extra.amount:  # in the row's currency, as the value
            with np.errstate(over="ignore"):
                columns[extra.name] = np.minimum(d.numbers(extra.name) * rate, MAX_VALUE_EUR)
        elif extra.kind == "numeric":
            columns[extra.name] = d.numbers(extra.name)
        else:
            columns[extra.name], codings[extra.name] = d.text_codes(extra.name)
            if extra.kind == "entity":  # keyed as it prints, as the contract's ids
                columns[extra.name], codings[extra.name] = _skeletons(
                    columns[extra.name], codings[extra.name]
                )
    columns.update(unit_values(value_eur, quantity, weight))
    keys = _key_columns(params, contract)
    codes = {
        name: coding for name, coding in codings.items() if coding is not None and name in keys
    }
    return Prepared(len(d), columns, codes)


def read_as_predecessors(
    codes: np.ndarray, coding: Coding | None, params: FeatureParams
) -> tuple[np.ndarray, Coding | None]:
    """HS codes with their first six digits read as ``features.hs_reads_as`` says (a code of
    a new edition as the one the history knows), the rest kept; looked up once per distinct
    code. The coding is dropped where two codes became one (a split read as its parent)."""
    table = params.hs_reads_as
    if not table:
        raise ParcelriskError(
            f"features.hs_correlation: {params.hs_correlation}: file not found (a relative path "
            f"is read from {Path.cwd()}); a params file copied elsewhere names it by its full "
            "path, or none: hs_correlation: null"
        )
    distinct = coding[1] if coding is not None else pd.unique(codes[~pd.isna(codes)])
    renamed = {
        code: table[code[:6]] + code[6:]
        for code in distinct.tolist()
        if isinstance(code, str) and code[:6] in table
    }
    if not renamed:
        return codes, coding
    if coding is not None:  # per distinct code, then by the rows' codes (-1: missing)
        read = np.array([*(renamed.get(c, c) for c in distinct.tolist()), None], dtype=object)
        return read[coding[0]], None
    out = np.empty(len(codes), dtype=object)
    out[:] = [renamed.get(c, c) if isinstance(c, str) else c for c in codes.tolist()]
    return out, None


def entity_keys(prep: Prepared, entity: Entity) -> np.ndarray:
    """Entity key per row as a Python-str object array ("a|b" for pairs); None where a part of
    the key is missing (an unknown entity, see ``forget_unknown``)."""
    parts = [prep[p] for p in entity.parts]
    if len(parts) == 1:
        return parts[0]
    if is_small(len(parts[0])):  # a request: a Python join beats numpy's object ops
        if (kept := prep.pair_keys.get(entity.spec)) is not None:
            return kept
        joined_keys = [
            None if any(is_missing(v) for v in values) else PAIR_SEPARATOR.join(values)
            for values in zip(*(part.tolist() for part in parts), strict=True)
        ]
        out = np.empty(len(joined_keys), dtype=object)
        out[:] = joined_keys
        out.flags.writeable = False  # shared by every family that asks
        prep.pair_keys[entity.spec] = out
        return out
    keys = filled(parts[0], NONE_KEY)
    missing = pd.isna(parts[0])
    for part in parts[1:]:
        # per row, not per distinct pair (``joined``): pairs of ids are nearly all distinct,
        # and the keys live only while the entity is being computed
        keys = keys + PAIR_SEPARATOR + filled(part, NONE_KEY)
        missing |= pd.isna(part)
    if missing.any():
        keys[missing] = None
    return keys


def entity_codes(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Integer codes of keys (-1 for None) and the distinct keys, in order of appearance."""
    codes, vocabulary = pd.factorize(keys)
    return codes.astype(np.int64), np.asarray(vocabulary, dtype=object)


def forget_unknown(
    values: dict[str, np.ndarray], known: np.ndarray, prior: np.ndarray, hit_rate: str = ""
) -> None:
    """Rows whose entity key is missing get no history, in place: every feature NaN except the
    hit rate (if named), which is the prior. An empty seller id is "unknown", never one pooled
    seller whose history would mix every unidentified parcel of the file."""
    unknown = ~known
    if not unknown.any():
        return
    for name, column in values.items():
        column[unknown] = prior[unknown] if name == hit_rate else np.nan


def period_of(t_us: np.ndarray, period_days: int) -> np.ndarray:
    return (t_us - PERIOD_ORIGIN_US) // (period_days * US_PER_DAY)


def period_start_us(period: int, period_days: int) -> int:
    return PERIOD_ORIGIN_US + int(period) * period_days * US_PER_DAY


def evidence_period(t_us: np.ndarray, params: FeatureParams) -> np.ndarray:
    """The last refit period whose fit does not learn from an event at ``t_us`` (declared, or
    a result recorded): fits of later periods do (``fit_cut_us``)."""
    lag_us = params.refit_lag_days * US_PER_DAY
    return period_of(np.asarray(t_us, dtype=np.int64) + lag_us, params.refit_period_days)


def fit_cut_us(period: int, params: FeatureParams) -> int:
    """A refit period's fit learns from what was declared or recorded before this instant:
    ``refit_lag_days`` before the period start."""
    return period_start_us(period, params.refit_period_days) - params.refit_lag_days * US_PER_DAY


def refit_start_us(cutoff_us: int, period_days: int) -> int:
    """Start of the refit period holding ``cutoff_us``: learned components are fitted before it."""
    return period_start_us(int(period_of(np.array([cutoff_us]), period_days)[0]), period_days)


def snapshot_horizon_us(cutoff_us: int, params: FeatureParams) -> int:
    """Before this instant a snapshot cut at ``cutoff_us`` keeps per-entity totals, not events.

    The longest window back from the last instant before the cutoff, not from the cutoff: a
    declaration at that instant not in the snapshot (the rest of a local day exported part-way,
    every declaration of a date-only export being at its local midnight) gets exact windows,
    down to the events exactly one window before it.
    """
    return cutoff_us - 1 - params.max_window_days * US_PER_DAY


def sort_declarations(declarations: pd.DataFrame) -> pd.DataFrame:
    """Deterministic order: by declaration time, ties by id (input order never matters)."""
    if _in_order(declarations):  # histories are written in time order: no copy to make
        return declarations.reset_index(drop=True)
    return declarations.sort_values(["declared_at", "declaration_id"], kind="stable").reset_index(
        drop=True
    )


def _in_order(declarations: pd.DataFrame) -> bool:
    """Already sorted as ``sort_declarations`` sorts (a stable sort would keep every row)."""
    stamps = declarations["declared_at"]
    if not pd.api.types.is_datetime64_any_dtype(stamps.dtype) or stamps.isna().any():
        return False
    t = stamps.array.asi8  # in the column's own unit: no two instants merged
    if not (t[1:] >= t[:-1]).all():
        return False
    ties = np.flatnonzero(t[1:] == t[:-1])  # same instant: ordered by id
    ids = declarations["declaration_id"]
    first, second = ids.iloc[ties].to_numpy(object), ids.iloc[ties + 1].to_numpy(object)
    if pd.isna(first).any() or pd.isna(second).any():
        return False
    return bool((first <= second).all())


def result_times(declarations: pd.DataFrame) -> pd.Series:
    """When each row's inspection result became known to the risk system: its
    ``result_known_at`` where that is later than its ``inspected_at`` (a lab report, a weekly
    file, a result the decision store received days late), else its ``inspected_at`` (NaT:
    no result). Entity features and the history as known at a cutoff count a result from
    this time; its label stays placed at ``inspected_at``. A ``result_known_at`` before
    ``inspected_at`` says nothing more (a result is not known before it is recorded): the
    gate warns of it."""
    at = declarations["inspected_at"]
    if "result_known_at" not in declarations.columns:
        return at
    known = pd.to_datetime(declarations["result_known_at"], utc=True)  # all-NaT: any dtype
    later = (known > at).to_numpy(dtype=bool, na_value=False)  # NaT on either side: False
    if not later.any():
        return at
    return at.where(~later, known.astype(at.dtype))


def as_known_at(declarations: pd.DataFrame, cutoff: pd.Timestamp) -> pd.DataFrame:
    """History as it was known at ``cutoff``: earlier declarations, outcomes known before it
    (``result_times``)."""
    before = (declarations["declared_at"] < cutoff).to_numpy()
    # a cutoff after every declaration (a snapshot of the whole history) keeps every row: a
    # shallow copy, in which copy-on-write copies only the outcome columns changed below
    known = declarations.copy(deep=False) if before.all() else declarations.loc[before].copy()
    if "inspected_at" in known.columns:
        at = result_times(known)
        later = at.notna() & (at >= cutoff)
        for col in (
            "inspected_at",
            "result_known_at",
            "illicit",
            "offence_type",
            "revenue_recovered",
            "selection_reason",
        ):
            if col in known.columns:
                known.loc[later, col] = None
        known.loc[later, "inspected"] = False
    return known.reset_index(drop=True)


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
    """Recorded inspection results: their rows, when known (``result_times``), the label and
    revenue (cents)."""
    rows = outcome_rows(declarations)
    idx = np.flatnonzero(rows)
    revenue = declarations["revenue_recovered"].to_numpy(dtype=np.float64, na_value=0.0)[idx]
    return {
        "rows": idx,
        "t_us": result_times(declarations)
        .astype("datetime64[us, UTC]")
        .astype("int64")
        .to_numpy()[idx],
        "illicit": declarations["illicit"].to_numpy(dtype=bool, na_value=False)[idx],
        "revenue_cents": np.round(np.nan_to_num(revenue, nan=0.0) * 100).astype(np.int64),
    }


def outcomes_known_at(
    declarations: pd.DataFrame, outcomes: dict[str, np.ndarray], cutoff: pd.Timestamp
) -> dict[str, np.ndarray]:
    """``outcome_events(as_known_at(declarations, cutoff))`` from the ``outcomes`` of the same
    sorted ``declarations``, all declared before ``cutoff``: the results recorded before it,
    without copying the history (same rows, same order, same prepared values)."""
    if len(declarations) and not declarations["declared_at"].max() < cutoff:
        raise ValueError(f"declarations at or after the cutoff {cutoff}: cut them first")
    # as_known_at's own comparison, on the recorded results only
    recorded = result_times(declarations).iloc[outcomes["rows"]] < cutoff
    keep = recorded.to_numpy(dtype=bool)
    return {name: values[keep] for name, values in outcomes.items()}
