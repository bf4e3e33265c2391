"""The declaration contract: the one definition of a parcel declaration record.

Everything else derives from ``FIELDS``: the pandas dtypes of a batch (``coerce_declarations``),
the pydantic model of one declaration for the HTTP API (``Declaration``), the Great Expectations
suite (``features.intake.validation``), the ingest mapping (``features.intake.mapping``) and the generator.

Two scopes: ``declaration`` fields exist for every parcel (pre-arrival data, what the scoring API
receives); ``outcome`` fields exist only in history and are filled only for inspected parcels.
Extra columns an administration maps in (``ExtraColumn``) travel with the data in the Parquet
metadata, so a file carries its own contract (``features.intake.io``). ``features.intake.columns``
turns a batch (API records or a frame) into the arrays the feature code reads.
"""

from __future__ import annotations

import functools
import math
import re
import unicodedata
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model, field_validator

from features.errors import ParcelriskError
from features.intake.hidden_text import ID_REFUSED, INVISIBLE
from features.intake.pseudonym import PSEUDONYM, process_key, pseudonym_of, pseudonymise

if TYPE_CHECKING:
    from collections.abc import Collection, Sequence

    import numpy as np
    import pandas as pd

Kind = Literal["str", "category", "datetime", "int", "float", "bool"]
INT64_LIMIT = 2**63  # integer fields are held as int64: |value| below this
Scope = Literal["declaration", "outcome"]
ExtraKind = Literal["categorical", "numeric", "entity"]

# Parcel channels (postal/express/courier) and the transport modes a general customs export uses.
CHANNELS = ("postal", "express", "courier", "sea", "air", "rail", "road")
CATEGORIES = ("merchandise", "gift", "sample", "return", "documents")
OFFENCE_TYPES = (
    "undervaluation",
    "misclassification",
    "prohibited",
    "split_shipment",
    "counterfeit",
    "origin_misdeclared",
    "vague_description",
    "other",
)
# selection_reason of the random exploration quota: unbiased labels.
RANDOM_SELECTION = "random"
# selection_reason of a parcel inspected because every parcel was (a crackdown on all traffic):
# unbiased labels too, but not the quota (``models.labels.census_mask``).
CENSUS_SELECTION = "census"

HS_CODE_PATTERN = r"^[0-9]{6,10}$"  # ASCII digits: \\d also matches other scripts
# Countries are ISO 3166 alpha-2 codes. An export that codes them its own way (a pseudonymised
# research file's CNTRY376, a national table) is read as written, each code a country of its
# own, with a warning (``features.intake.rules``: ``.iso3166``): refusing it would leave such
# an administration no way in, as no values table can name countries it never disclosed. ISO
# alpha-3 codes and country names stay faults (``.iso_form``): the mapping's `country_codes`
# converts them, where kept as written they would split CN's history from CHN's.
COUNTRY_PATTERN = r"^[A-Z0-9][A-Z0-9_.-]{1,15}$"
CURRENCY_PATTERN = r"^[A-Z]{3}$"

# Declarations before this are treated as a data error (typo'd years, epoch zeros).
EARLIEST_DECLARATION = "2000-01-01T00:00:00Z"
# Declarations and inspection results may be a little ahead of the clock of the system
# validating them: clocks differ between systems, and a date-only time moved by a mapping's
# `offset` (results known "1 day" after a local date) can land after now. Beyond it: future.
MAX_CLOCK_SKEW_DAYS = 2


@dataclass(frozen=True)
class ContractField:
    """One column of the contract: its type, domain, unit and meaning."""

    name: str
    kind: Kind
    scope: Scope
    description: str
    required: bool = True  # must be present as a column
    nullable: bool = False  # may hold nulls (outcomes: only where not inspected)
    allowed: tuple[str, ...] | None = None
    pattern: str | None = None
    pattern_text: str | None = None  # the pattern in words, for error messages
    min_value: float | None = None
    max_value: float | None = None
    unit: str | None = None
    max_length: int | None = None
    # Identifies a person: held only as a keyed pseudonym (``features.intake.pseudonym``) from
    # the moment it is read, and never quoted in a message.
    personal: bool = False


# Which fields a file must have is a question of structure: an administration's export always
# has ids, dates, goods codes, origin, weight and value, but may lack platform, consignee region,
# item text, quantity, category, IOSS or AEO flags, and leaves identifiers empty where unknown.
# Optional fields may be absent as columns and null as values; the feature families that need
# them switch off. Bounds here are structural (impossible values: faults); plausibility limits
# (outliers: warnings) live in params.yaml ``validate`` and are applied by ``features.intake.rules``.
_HS_TEXT = "an HS code of 6 to 10 digits"
_COUNTRY_TEXT = (
    "a country code: ISO 3166 alpha-2, or the export's own (2 to 16 letters, digits, . _ -)"
)
_CURRENCY_TEXT = "a three-letter ISO 4217 currency code"

FIELDS: tuple[ContractField, ...] = (
    ContractField(
        "declaration_id",
        "str",
        "declaration",
        "Unique id of the declaration (one parcel).",
        max_length=64,
    ),
    ContractField(
        "declared_at",
        "datetime",
        "declaration",
        "When the pre-arrival declaration was lodged, UTC.",
        unit="UTC timestamp",
    ),
    ContractField(
        "arrival_office",
        "str",
        "declaration",
        "Customs office code where the parcel arrives.",
        max_length=32,
    ),
    ContractField(
        "channel",
        "category",
        "declaration",
        "Parcel channel or transport mode.",
        allowed=CHANNELS,
    ),
    ContractField(
        "operator_id",
        "str",
        "declaration",
        "Postal or express operator (or carrier) lodging the declaration; null if unknown.",
        required=False,
        nullable=True,
        max_length=64,
    ),
    ContractField(
        "platform_id",
        "str",
        "declaration",
        "E-commerce platform / marketplace; null for direct sales or unknown.",
        required=False,
        nullable=True,
        max_length=64,
    ),
    ContractField(
        "seller_id",
        "str",
        "declaration",
        "Seller (consignor) identifier; null if unknown.",
        required=False,
        nullable=True,
        max_length=64,
    ),
    ContractField(
        "seller_country",
        "str",
        "declaration",
        "Seller's country, ISO 3166-1 alpha-2 (or the export's own code); null if unknown.",
        required=False,
        nullable=True,
        pattern=COUNTRY_PATTERN,
        pattern_text=_COUNTRY_TEXT,
    ),
    ContractField(
        "consignee_id",
        "str",
        "declaration",
        "Consignee (buyer, importer) identifier, held as a keyed pseudonym; null if unknown.",
        required=False,
        nullable=True,
        max_length=64,
        personal=True,
    ),
    ContractField(
        "consignee_region",
        "str",
        "declaration",
        "Consignee region (e.g. NUTS-2), if known.",
        required=False,
        nullable=True,
        max_length=32,
    ),
    ContractField(
        "origin_country",
        "str",
        "declaration",
        "Declared country of origin of the goods, ISO 3166-1 alpha-2 (or the export's own code).",
        pattern=COUNTRY_PATTERN,
        pattern_text=_COUNTRY_TEXT,
    ),
    ContractField(
        "hs_code",
        "str",
        "declaration",
        "Declared Harmonized System code, 6 to 10 digits; null where the declaration gives "
        "none (postal items often have none).",
        required=False,
        nullable=True,
        pattern=HS_CODE_PATTERN,
        pattern_text=_HS_TEXT,
    ),
    ContractField(
        "description",
        "str",
        "declaration",
        "Goods description as declared (free text of at most 1,024 characters, the text an "
        "items: join gives included: longer is a fault, refused by row at ingest and set "
        "aside by --quarantine); null if the export has none.",
        required=False,
        nullable=True,
        max_length=1024,
    ),
    ContractField(
        "quantity",
        "int",
        "declaration",
        "Number of items in the parcel; null if not declared.",
        required=False,
        nullable=True,
        min_value=1,
        unit="items",
    ),
    ContractField(
        "gross_weight_kg",
        "float",
        "declaration",
        "Gross (or net) weight of the parcel or consignment.",
        min_value=0.0,
        unit="kg",
    ),
    ContractField(
        "declared_value",
        "float",
        "declaration",
        "Declared intrinsic value of the goods, in `currency`.",
        min_value=0.0,
        unit="currency units",
    ),
    ContractField(
        "currency",
        "str",
        "declaration",
        "Currency of `declared_value`, ISO 4217.",
        pattern=CURRENCY_PATTERN,
        pattern_text=_CURRENCY_TEXT,
    ),
    ContractField(
        "category",
        "category",
        "declaration",
        "Declared nature of the transaction; null if not declared.",
        required=False,
        nullable=True,
        allowed=CATEGORIES,
    ),
    ContractField(
        "ioss_prepaid",
        "bool",
        "declaration",
        "VAT prepaid through IOSS (or equivalent) at sale; null if not recorded.",
        required=False,
        nullable=True,
    ),
    ContractField(
        "aeo_operator",
        "bool",
        "declaration",
        "The declaring operator holds AEO (trusted trader) status; null if not recorded.",
        required=False,
        nullable=True,
    ),
    ContractField(
        "inspected", "bool", "outcome", "The parcel was physically or documentarily inspected."
    ),
    ContractField(
        "inspected_at",
        "datetime",
        "outcome",
        "When the inspection result was recorded, UTC; null if not inspected.",
        nullable=True,
        unit="UTC timestamp",
    ),
    ContractField(
        "result_known_at",
        "datetime",
        "outcome",
        "When the result reached the risk system, UTC, if later than `inspected_at` (a lab "
        "report, a weekly file); null: known at `inspected_at`. Entity features count a result "
        "from the later of the two; its label stays placed at `inspected_at`.",
        required=False,
        nullable=True,
        unit="UTC timestamp",
    ),
    ContractField(
        "illicit",
        "bool",
        "outcome",
        "Inspection found an offence; null if not inspected.",
        nullable=True,
    ),
    ContractField(
        "offence_type",
        "category",
        "outcome",
        "Kind of offence found; null if none, not inspected or not recorded.",
        required=False,
        nullable=True,
        allowed=OFFENCE_TYPES,
    ),
    ContractField(
        "revenue_recovered",
        "float",
        "outcome",
        "Duty and VAT recovered by the inspection, EUR; null if not inspected or not recorded.",
        required=False,
        nullable=True,
        min_value=0.0,
        unit="EUR",
    ),
    ContractField(
        "selection_reason",
        "str",
        "outcome",
        "Why the parcel was inspected ('random' = exploration quota, 'census' = every parcel "
        "inspected); null if not inspected.",
        required=False,
        nullable=True,
        max_length=64,
    ),
)

FIELDS_BY_NAME = {f.name: f for f in FIELDS}
DECLARATION_FIELDS = tuple(f for f in FIELDS if f.scope == "declaration")
OUTCOME_FIELDS = tuple(f for f in FIELDS if f.scope == "outcome")
DECLARATION_COLUMNS = tuple(f.name for f in DECLARATION_FIELDS)
OUTCOME_COLUMNS = tuple(f.name for f in OUTCOME_FIELDS)
PERSONAL_FIELDS = tuple(f.name for f in FIELDS if f.personal)
# Fields naming a parcel, a party or an office: keys of histories and of the decision store
IDENTIFIER_FIELDS = frozenset(
    f.name for f in FIELDS if f.name.endswith("_id") or f.name == "arrival_office"
)

EXTRAS_METADATA_KEY = b"parcelrisk.extras"
FOLDED_METADATA_KEY = b"parcelrisk.folded"  # the contract fields read with fold: true
# the decision store's last result a history export holds (features.intake.io.read_results_seq)
RESULTS_SEQ_METADATA_KEY = b"parcelrisk.results_seq"


class ContractError(ParcelriskError, ValueError):
    """Data does not fit the declaration contract; the message names the columns and rows."""


@dataclass(frozen=True)
class ExtraColumn:
    """A column beyond the contract, declared in the mapping.

    ``entity`` columns are identifiers that get history features like ``seller_id``;
    ``categorical`` columns are used as categories; ``numeric`` as numbers. A ``personal``
    entity (a person's identifier) is held only as a keyed pseudonym, as ``consignee_id`` is.
    """

    name: str
    kind: ExtraKind
    description: str = ""
    personal: bool = False
    # a numeric amount in the row's ``currency`` (an FOB value, duties paid): converted to the
    # base currency with features.fx_to_base as declared_value is, in batch and online alike
    amount: bool = False
    # a name read whatever its case and spacing (the mapping's ``fold: true``): recorded so the
    # API folds what a client sends as a file's mapping folded it, or one person's name had
    # two pseudonyms, one per path, and its history never met live requests (probe 18)
    fold: bool = False

    def __post_init__(self) -> None:
        if self.kind not in ("categorical", "numeric", "entity"):
            raise ContractError(
                f"extra column {self.name!r}: kind must be categorical, numeric or entity, got {self.kind!r}"
            )
        if self.personal and self.kind != "entity":
            raise ContractError(
                f"extra column {self.name!r}: only an entity (an identifier) can be personal"
            )
        if self.fold and self.kind == "numeric":
            raise ContractError(f"extra column {self.name!r}: 'fold' reads names; a number is none")
        if self.amount and self.kind != "numeric":
            raise ContractError(
                f"extra column {self.name!r}: only a numeric extra can be an amount in the "
                "row's currency"
            )
        if not re.fullmatch(r"[a-z][a-z0-9_]{0,62}", self.name):
            raise ContractError(
                f"extra column name {self.name!r} must be snake_case (a-z, 0-9, _), at most 63 characters"
            )
        if self.name in FIELDS_BY_NAME:
            raise ContractError(f"extra column {self.name!r} clashes with a contract field")


@dataclass(frozen=True)
class Contract:
    """The contract plus the extras of one dataset."""

    extras: tuple[ExtraColumn, ...] = field(default_factory=tuple)
    # Contract fields the mapping read with ``fold: true`` (a seller's name as its id): every
    # path folds them as the file did, the API too (``fold_online``). Only extras recorded
    # their fold: a seller sent as "Star Goods Inc" missed its history "STAR GOODS INC", and
    # the API and `score --mapping` gave 100 risks of 150 apart (probe 35).
    folded: tuple[str, ...] = ()

    def columns(self, with_outcomes: bool) -> list[str]:
        fields = FIELDS if with_outcomes else DECLARATION_FIELDS
        return [f.name for f in fields] + [e.name for e in self.extras]

    def personal_columns(self) -> tuple[str, ...]:
        """The columns held only as keyed pseudonyms: personal fields and personal extras."""
        return PERSONAL_FIELDS + tuple(e.name for e in self.extras if e.personal)

    def extras_json(self) -> list[dict[str, Any]]:
        """The extras as files and snapshots record them (``personal`` only where set, so a
        contract without personal extras is recorded as before)."""
        return [
            {"name": e.name, "kind": e.kind, "description": e.description}
            | ({"personal": True} if e.personal else {})
            | ({"amount": True} if e.amount else {})
            | ({"fold": True} if e.fold else {})
            for e in self.extras
        ]


# --------------------------------------------------------------------------------------------
# DataFrame side
# --------------------------------------------------------------------------------------------


def fold_text(value: str) -> str:
    """``fold_name`` of one value (a request's), the same rules in the same order."""
    if PSEUDONYM.fullmatch(value):
        return value
    folded = re.sub(r"\s+([,.])", r"\1", value.upper())
    folded = re.sub(r"([,.]+)\s*", r"\1 ", folded)
    return re.sub(r"\s+", " ", folded).strip()


# The contract fields the API folds in this process: those of the served model's contract
# (``fold_online``). Process-wide, as the pseudonym key is: a request is validated, and its
# consignee keyed, before it reaches the model's runtime.
_FOLDED_ONLINE: frozenset[str] = frozenset()


def fold_online(fields: Collection[str]) -> None:
    """Fold these contract fields of every declaration this process validates from now on."""
    global _FOLDED_ONLINE
    _FOLDED_ONLINE = frozenset(fields)


def fold_name(text: pd.Series) -> pd.Series:
    """Names as one party whatever their case and spacing (``fold: true``): upper case, runs of
    spaces as one, none before a comma or full stop, one after them. Idempotent: a value
    folded once (a file's, by its mapping) reads the same folded again (by the contract). A
    value that is already a pseudonym (an exported history read back) is kept as it is:
    upper-cased it would no longer read as one, and be keyed a second time."""
    folded = text.str.upper().str.replace(r"\s+([,.])", r"\1", regex=True)
    folded = folded.str.replace(r"([,.]+)\s*", r"\1 ", regex=True)
    folded = folded.str.replace(r"\s+", " ", regex=True).str.strip()
    keyed = text.str.fullmatch(PSEUDONYM.pattern).fillna(False).astype(bool)
    return folded.where(text.notna() & ~keyed, text)


@dataclass(frozen=True)
class BadValues:
    """Values of one column that do not convert to its contract type (row positions, raw values)."""

    field: str
    rows: np.ndarray  # int positions in the frame
    values: list[Any]  # the raw values, aligned with ``rows``
    problem: str  # what is wrong with each, e.g. "is not a number"


def _show_rows(
    df: pd.DataFrame, mask: Any, column: str, limit: int = 5, personal: bool = False
) -> str:
    """Render a few offending rows as 'declaration_id=value' for an error message (a personal
    column's rows by their id alone)."""
    bad = df.loc[mask, column].head(limit)
    ids = df.loc[bad.index, "declaration_id"] if "declaration_id" in df.columns else bad.index
    pairs = ", ".join(
        f"{i}={PERSONAL_NOT_SHOWN if personal else repr(v)}" for i, v in zip(ids, bad, strict=False)
    )
    return f"{int(mask.sum())} row(s), e.g. {pairs}"


def parse_utc(series: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Timestamps as UTC (naive values are UTC), and the mask of values that are not timestamps.

    Text is read as ISO 8601, year first (``2026-01-02``, ``2026-01-02T10:00:00Z``; each value
    may carry its own UTC offset): any other layout is not a timestamp here, because reading it
    means guessing the day/month order value by value (``02/01/2026`` read as 1 February,
    ``13/01/2026`` as 13 January, silently). A mapping's ``format`` reads such exports. Numbers
    (epoch or spreadsheet serials) are not timestamps either.
    """
    import pandas as pd

    if isinstance(series.dtype, pd.DatetimeTZDtype):
        out = series.dt.tz_convert("UTC")
    elif pd.api.types.is_datetime64_any_dtype(series.dtype):
        out = series.dt.tz_localize("UTC")
    elif pd.api.types.is_numeric_dtype(series.dtype):
        out = pd.Series(pd.NaT, index=series.index, dtype="datetime64[us, UTC]")
    else:
        text = series.where(series.notna()).astype("str").str.strip().str.upper()
        text = text.str.replace(r"\s*UTC$", "Z", regex=True)  # "2026-01-02 10:00:00 UTC"
        # utc=True: values with different offsets (an export across a DST change) each to UTC
        out = pd.to_datetime(text, format="ISO8601", utc=True, errors="coerce")
    bad = out.isna() & series.notna()
    return out.astype("datetime64[us, UTC]"), bad


# The words a boolean may be written as (what pydantic's lax mode reads too), compared lowercased.
TRUE_WORDS = frozenset({"true", "t", "yes", "y", "1", "on", "1.0"})
FALSE_WORDS = frozenset({"false", "f", "no", "n", "0", "off", "0.0"})
BOOL_WORDS_SAID = "true/false, t/f, yes/no, y/n, on/off, 1/0"  # every word read, as refusals say


def parse_bool_value(value: Any) -> bool | None:
    """One boolean as the contract reads it; None for missing; ValueError if not a boolean."""
    if value is None or (isinstance(value, float) and value != value):
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        word = value.strip().lower()
        if not word:
            return None
        if word in TRUE_WORDS:
            return True
        if word in FALSE_WORDS:
            return False
    raise ValueError(f"{value!r} is not a boolean ({BOOL_WORDS_SAID})")


def parse_bool(series: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Nullable booleans and the mask of values that are not booleans.

    Each distinct value is read once by ``parse_bool_value``, the reader the API uses too.
    """
    import pandas as pd

    if series.dtype == bool or isinstance(series.dtype, pd.BooleanDtype):
        # already booleans (a Parquet file's): mapping each value to itself through a dict
        # cost ~0.4 s per column at a million rows
        return series.astype("boolean"), pd.Series(False, index=series.index)
    table: dict[Any, Any] = {}
    for value in series.dropna().unique().tolist():
        try:
            table[value] = parse_bool_value(value)
        except ValueError:
            table[value] = "bad"
    mapped = series.map(table)
    bad = mapped.eq("bad").fillna(False).astype(bool)
    out = mapped.where(~bad & mapped.notna()).astype("boolean")
    return out, bad


def parse_number(series: pd.Series, kind: Kind) -> tuple[pd.Series, list[tuple[pd.Series, str]]]:
    """Numbers (float64; int64 or Int64 for ``int``) and, per problem, the mask of its rows."""
    import numpy as np
    import pandas as pd

    if pd.api.types.is_bool_dtype(series.dtype):
        return series.astype("float64"), [(pd.Series(True, index=series.index), "is not a number")]
    source = series
    if not pd.api.types.is_numeric_dtype(series.dtype):
        source = series.where(series.notna()).astype("object")
        source = source.map(lambda v: v.strip() if isinstance(v, str) else v).replace("", None)
    out = pd.to_numeric(source, errors="coerce").astype("float64")
    problems = []
    not_number = out.isna() & source.notna()
    if not_number.any():
        problems.append((not_number, "is not a number"))
    if kind != "int":
        return out, problems
    values = out.to_numpy()
    present = ~np.isnan(values)
    not_whole = present & ~(np.isfinite(values) & (np.floor(values) == values))
    if not_whole.any():
        problems.append((pd.Series(not_whole, index=out.index), "is not a whole number"))
    # a 64-bit integer column cannot hold it (the cast would wrap it to garbage)
    out_of_range = present & ~not_whole & (np.abs(values) >= INT64_LIMIT)
    if out_of_range.any():
        problems.append((pd.Series(out_of_range, index=out.index), "is out of range"))
    if problems:
        return out, problems
    return (out.astype("int64") if present.all() else out.astype("Int64")), problems


HS_NUMBER_PROBLEM = (
    "is a number, not text: an HS code written as a number has lost the leading zero of "
    "chapters 01-09 (0901210000 reads 901210000); write HS codes as text"
)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


# Full-width forms (U+FF01-FF5E, what CJK input methods type) and the ideographic space, as
# the ASCII characters they are: an identifier typed ０１２３ is the 0123 another export writes
# (probe, 2026-12: one consignee was two entities). Identifiers only: text keeps its forms.
# Identifiers are read in NFKC besides (``parse_text``), which holds this and more.
WIDE_TO_ASCII = {cp: cp - 0xFEE0 for cp in range(0xFF01, 0xFF5F)} | {0x3000: 0x20}

# The Arabic decimal separator and thousands separator (U+066B, U+066C) of numbers written in
# Arabic-Indic digits (١٢٫٥٠), read as a spec's decimal mark and thousands separator
ARABIC_DECIMAL, ARABIC_THOUSANDS = "\u066b", "\u066c"


@functools.cache
def _decimal_digits() -> dict[int, str]:
    """Every Unicode decimal digit that is not ASCII (Arabic-Indic ٣, Persian ۳, Devanagari
    ३, full-width ３ ...) -> its ASCII digit."""
    return {
        cp: str(unicodedata.digit(chr(cp)))
        for cp in range(0x80, 0x20000)
        if unicodedata.category(chr(cp)) == "Nd"
    }


@functools.cache
def ascii_digit_table(decimal: str = ".", thousands: str | None = None) -> dict[int, Any]:
    """The ``str.translate`` table that writes codes, numbers and times in ASCII: every
    non-ASCII decimal digit and full-width form as its ASCII character, the Arabic separators
    as ``decimal`` and ``thousands`` (dropped when None). Gulf and Egyptian exports and
    clearance systems write them in Arabic-Indic digits, which no number or date reader takes
    (probes, 2026-12); a mapped file and a request are read with this one table."""
    return {
        # full-width forms as their ASCII characters: a Japanese or Chinese export mixes
        # ０．５ and １，２３４ into columns of 0.5 and 1,234 (probe, 2026-12)
        **WIDE_TO_ASCII,
        **_decimal_digits(),
        ord(ARABIC_DECIMAL): decimal,
        ord(ARABIC_THOUSANDS): thousands or "",
    }


def read_ascii_digits(value: str) -> str:
    """``value`` (a code, a number or a time sent as text) in ASCII digits, as a mapped file's
    are read (``ascii_digit_table``); ASCII text, the common case, costs one ``isascii``."""
    return value if value.isascii() else value.translate(ascii_digit_table())


def parse_text(
    series: pd.Series, case: Literal["upper", "lower"] | None = None, *, narrow: bool = False
) -> pd.Series:
    """Text stripped of surrounding spaces; empty text is missing (an empty id is "unknown").

    ``narrow`` (identifiers): read in Unicode's compatibility composition (NFKC), the form
    UTS #31 compares identifiers in: full-width characters as ASCII, an accent typed as a
    combining mark as the precomposed letter another export writes (macOS writes the first),
    a thin or no-break space as a space, a ligature as its letters. Forms a reader cannot tell
    apart are one id, not two entities (probe 20)."""
    import pandas as pd

    if pd.api.types.is_float_dtype(series.dtype) or pd.api.types.is_integer_dtype(series.dtype):
        # ids read as numbers from CSV: 1234.0 -> "1234", never "1234.0"
        as_int = series.astype("Int64") if series.dropna().mod(1).eq(0).all() else series
        return as_int.astype("str").where(series.notna())
    out = series.astype("str").where(series.notna())
    # ~13 ms per million ASCII ids; a missing id reads as not ASCII in pandas 3's str dtype
    # (False, not NaN), which sent every id column with a blank through translate (0.85 s a
    # million), so the missing are counted as ASCII
    if narrow and not (out.str.isascii() | out.isna()).all():
        out = out.str.normalize("NFKC")
    out = out.str.strip()
    if case == "upper":
        out = out.str.upper()
    elif case == "lower":
        out = out.str.lower()
    return out.where(out.str.len() > 0)


# Codes compared case-insensitively: stored upper (ISO codes) or lower (contract vocabularies).
TEXT_CASE: dict[str, Literal["upper", "lower"]] = {
    "seller_country": "upper",
    "origin_country": "upper",
    "currency": "upper",
    "channel": "lower",
    "category": "lower",
    "offence_type": "lower",
}


# The lightest weight a parcel is declared with (1 g): the features floor weights to it, the
# gate warns of a weight above 0 below it
MIN_WEIGHT_KG = 0.001


NUL_PROBLEM = "holds a NUL byte (\\x00), which is not text"
# What no identifier may hold (``features.intake.hidden_text``): controls, and the bidi controls
# that make an id read backwards on the auditors' pages. The other hidden marks (a soft hyphen,
# a zero-width space, a Persian non-joiner, an emoji's selector) and look-alike letters are kept
# as sent and dropped or folded in the key the entity is known by (``key_skeleton``), so
# "S<soft hyphen>SPLIT" is the seller "SSPLIT". A declaration id keys the decision itself and
# its retries: "A1<U+200B>" and "A1" would be two parcels, so it holds no hidden mark at all.
INVISIBLE_PROBLEM = "holds a control or bidi control character, which no identifier may"
DECLARATION_ID_INVISIBLE_PROBLEM = (
    "holds a control or invisible character, which no declaration id may (it would be "
    "another declaration that prints the same)"
)


def _refused_in(name: str) -> tuple[str, str]:
    """(the characters an identifier field may not hold, the problem said of them)."""
    if name == "declaration_id":
        return INVISIBLE, DECLARATION_ID_INVISIBLE_PROBLEM
    return ID_REFUSED, INVISIBLE_PROBLEM


def identifier_faults(name: str, text: pd.Series) -> list[tuple[str, np.ndarray]]:
    """(problem, rows) of an identifier column's values it may not hold (``_refused_in``),
    by pyarrow's RE2 called straight: pandas' own ``str.contains`` parses the pattern with
    Python's sre on every call (0.2 ms, paid per chunk and per small file: a file gated in
    chunks of one row took 20% longer), 38 us here; 0.1 s a million ids. Shared by the gate
    and a mapping's conversion, so ``--quarantine`` sets such rows aside (probe 22)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    pattern, problem = _refused_in(name)
    found = pc.match_substring_regex(pa.array(text.array), pattern)
    rows = pc.fill_null(found, False).to_numpy(zero_copy_only=False)
    return [(problem, rows)] if rows.any() else []


# What an error message shows in place of a personal value (a consignee id, a personal extra):
# messages reach terminals, cron mail, `dvc repro` logs and 400 bodies (probe 18)
PERSONAL_NOT_SHOWN = "(personal: not shown)"

# An extra is an id or a code (entity, categorical) or a measure (numeric): longer text is not
# one, and would be held per parcel in every history, snapshot and stored decision.
EXTRA_MAX_CHARS = 200


def extra_value_faults(extra: ExtraColumn, values: pd.Series, raw: pd.Series) -> list[BadValues]:
    """Values of a mapped extra (converted ``values``, as sent ``raw``) no model can use: a
    numeric one that is not finite (the contract's own numbers are refused so too), a text
    one longer than ``EXTRA_MAX_CHARS``."""
    import numpy as np

    if extra.kind == "numeric":
        number = values.to_numpy(dtype=np.float64, na_value=np.nan)
        bad, problem = np.isinf(number), "is not a finite number"
        if extra.amount and not bad.any():
            # an amount (duties paid, a CIF value) below 0 is no amount, as a declared value
            # below 0 is not: taxes of -500 cut the revenue at stake silently (probe 9)
            with np.errstate(invalid="ignore"):
                bad, problem = number < 0, "is negative"
    else:
        # a NUL in a request's extras (a file's are refused when they are read); an entity
        # extra (a broker's id) is an identifier, refused as the contract's are (a bidi
        # override, a control character went in, probe 22), its other hidden marks and
        # look-alikes folded in its key (``features.pipeline.prepare``)
        nul = values.str.contains("\x00", regex=False).fillna(False).to_numpy(dtype=bool)
        faults = [(NUL_PROBLEM, nul)] if nul.any() else []
        if not faults and extra.kind == "entity":
            faults = identifier_faults(extra.name, values)
        if faults:
            problem, found = faults[0]
            rows = np.flatnonzero(found)
            shown = (
                [PERSONAL_NOT_SHOWN] * len(rows)
                if extra.personal
                else [repr(v) for v in raw.iloc[rows]]
            )
            return [BadValues(extra.name, rows, shown, problem)]
        bad = values.str.len().gt(EXTRA_MAX_CHARS).fillna(False).to_numpy(dtype=bool)
        problem = f"is longer than {EXTRA_MAX_CHARS} characters"
    if not bad.any():
        return []
    rows = np.flatnonzero(bad)
    shown = (
        [PERSONAL_NOT_SHOWN] * len(rows)
        if extra.personal
        else raw.iloc[rows].tolist()
        if extra.kind == "numeric"
        else ["(too long: not shown)"] * len(rows)
    )
    return [BadValues(extra.name, rows, shown, problem)]


def parse_declarations(
    df: pd.DataFrame,
    *,
    with_outcomes: bool,
    contract: Contract | None = None,
    keep_unknown: bool = False,
    pseudonym_key: bytes | None = None,
    only: Sequence[str] | None = None,
) -> tuple[pd.DataFrame, list[BadValues], list[str]]:
    """Every contract column of ``df`` in its canonical dtype, without raising on bad values.
    ``only``: just these contract fields (no extras), for a caller that reads a few of them
    (inspection results: building the other columns cost more than reading one result).

    Returns the canonical frame (0..n-1 index; values that do not convert are null in it), the
    values that did not convert, and the required columns that are missing (absent optional
    columns are added as nulls). The gate reports both as faults; ``coerce_declarations`` raises.
    Personal columns hold their pseudonyms (``pseudonym_key``, by default this process's key):
    every file, the gate included, passes here, so nothing downstream sees a raw value.
    """
    import numpy as np
    import pandas as pd

    contract = contract or Contract()
    df = df.reset_index(drop=True)
    fields = FIELDS if with_outcomes else DECLARATION_FIELDS
    if only is not None:
        fields = tuple(f for f in fields if f.name in only)
        contract = Contract()  # the extras are not asked for
    missing = [f.name for f in fields if f.required and f.name not in df.columns]
    missing += [e.name for e in contract.extras if e.name not in df.columns]
    out: dict[str, pd.Series] = {}
    bad_values: list[BadValues] = []

    def convert(name: str, kind: Kind, s: pd.Series) -> pd.Series:
        problem = ""
        if kind == "datetime":
            converted, bad = parse_utc(s)
            problem = (
                "is not a timestamp in ISO 8601 (e.g. 2026-05-01T10:00:00Z; another layout "
                "goes through `parcelrisk ingest` with its format)"
            )
        elif kind == "bool":
            converted, bad = parse_bool(s)
            problem = f"is not a boolean ({BOOL_WORDS_SAID})"
        elif kind in ("int", "float"):
            converted, problems = parse_number(s, kind)
            for bad, problem in problems:
                rows = np.flatnonzero(bad.to_numpy())
                bad_values.append(BadValues(name, rows, s.iloc[rows].tolist(), problem))
            return converted
        else:
            converted = parse_text(s, TEXT_CASE.get(name), narrow=name in IDENTIFIER_FIELDS)
            # a NUL byte is not text: PostgreSQL refuses it in a column, SQLite and Parquet
            # keep it, and a CSV reader refuses the whole file; ingest refuses it too
            nul = converted.str.contains("\x00", regex=False).fillna(False).astype(bool)
            checks = [(NUL_PROBLEM, nul.to_numpy(dtype=bool))]
            if name in IDENTIFIER_FIELDS:  # each row refused for the first it fails
                checks += identifier_faults(name, converted)
            flagged = np.zeros(len(converted), dtype=bool)
            for problem, found in checks:
                found = found & ~flagged
                if found.any():
                    rows = np.flatnonzero(found)
                    shown = [repr(v) for v in s.iloc[rows].tolist()]
                    if name in contract.personal_columns():
                        shown = [PERSONAL_NOT_SHOWN] * len(rows)
                    bad_values.append(BadValues(name, rows, shown, problem))
                    flagged |= found
            if flagged.any():
                converted = converted.mask(pd.Series(flagged, index=converted.index))
            if name == "hs_code" and s.dtype == object:
                # a number among the cells (a JSON or spreadsheet export) has lost the zero of
                # chapters 01-09, as a JSON number sent to the API has: refused on both paths
                numeric = s.map(_is_number).to_numpy(dtype=bool)
                if numeric.any():
                    rows = np.flatnonzero(numeric)
                    bad_values.append(
                        BadValues(name, rows, s.iloc[rows].tolist(), HS_NUMBER_PROBLEM)
                    )
                    converted = converted.mask(numeric)
            return converted
        if bad.any():
            rows = np.flatnonzero(bad.to_numpy())
            bad_values.append(BadValues(name, rows, s.iloc[rows].tolist(), problem))
        return converted

    for f in fields:
        if f.name not in df.columns:
            out[f.name] = _null_column(f.kind, len(df))
        else:
            out[f.name] = convert(f.name, f.kind, df[f.name])
            if f.name in contract.folded:  # idempotent: a file's mapping folded it already
                out[f.name] = fold_name(out[f.name])
    for extra in contract.extras:
        if extra.name not in df.columns:
            out[extra.name] = _null_column("float" if extra.kind == "numeric" else "str", len(df))
        else:
            kind: Kind = "float" if extra.kind == "numeric" else "str"
            out[extra.name] = convert(extra.name, kind, df[extra.name])
            if extra.fold:
                out[extra.name] = fold_name(out[extra.name])
            bad_values += extra_value_faults(extra, out[extra.name], df[extra.name])
    for name in contract.personal_columns():
        if name in out and out[name].notna().any():  # no key needed for a column of nulls
            # the length rule sees only the pseudonym: an over-long raw id is a bad value
            # here, reported by row without its text (personal), and held as missing
            limit = FIELDS_BY_NAME[name].max_length if name in FIELDS_BY_NAME else None
            if limit:
                too_long = out[name].str.len().gt(limit).fillna(False).to_numpy(dtype=bool)
                if too_long.any():
                    rows = np.flatnonzero(too_long)
                    withheld = [PERSONAL_NOT_SHOWN] * len(rows)
                    bad_values.append(
                        BadValues(name, rows, withheld, f"is longer than {limit} characters")
                    )
                    out[name] = out[name].mask(too_long)
            out[name] = pseudonymise(out[name], pseudonym_key or process_key())
    result = pd.DataFrame(out, index=df.index)
    if keep_unknown:
        rest = [c for c in df.columns if c not in result.columns]
        result = pd.concat([result, df[rest]], axis=1)
    return result, bad_values, missing


def _null_column(kind: Kind, n: int) -> pd.Series:
    import numpy as np
    import pandas as pd

    dtype = {
        "str": "str",
        "category": "str",
        "datetime": "datetime64[us, UTC]",
        "int": "Int64",
        "float": "float64",
        "bool": "boolean",
    }[kind]
    if kind == "float":  # float64 whatever n (an empty list of floats would frame as object)
        return pd.Series(np.full(n, np.nan))
    return pd.Series([None] * n, dtype=dtype)


def coerce_declarations(
    df: pd.DataFrame,
    *,
    with_outcomes: bool,
    contract: Contract | None = None,
    keep_unknown: bool = False,
    pseudonym_key: bytes | None = None,
) -> pd.DataFrame:
    """Return ``df`` with every contract column in its canonical dtype (personal ones as
    pseudonyms, see ``parse_declarations``).

    Raises ``ContractError`` naming the columns for missing required columns and for values
    that cannot be converted (never coerces them to null silently). Domain checks (ranges,
    allowed values, formats) belong to the rules (``features.intake.rules``), not here. Columns not in
    the contract or its extras are dropped unless ``keep_unknown``.
    """
    frame, bad_values, missing = parse_declarations(
        df,
        with_outcomes=with_outcomes,
        contract=contract,
        keep_unknown=keep_unknown,
        pseudonym_key=pseudonym_key,
    )
    if missing:
        raise ContractError(f"missing required column(s): {', '.join(missing)}")
    if bad_values:
        import numpy as np

        raw = df.reset_index(drop=True)
        personal = set((contract or Contract()).personal_columns())
        lines = []
        for bad in bad_values:
            mask = np.zeros(len(raw), dtype=bool)
            mask[bad.rows] = True
            lines.append(
                f"column {bad.field!r}: {bad.problem.removeprefix('is ')}: "
                f"{_show_rows(raw, mask, bad.field, personal=bad.field in personal)}"
            )
        raise ContractError("; ".join(lines))
    return frame


def utc_instant(value: Any, what: str) -> pd.Timestamp:
    """An ISO date or datetime (text, or what YAML made of it) as a UTC timestamp; naive is UTC.

    For instants people type (``--as-of``, ``train.split`` dates); ``what`` names the setting.
    """
    import pandas as pd

    try:
        stamp = pd.Timestamp(value)
    except (TypeError, ValueError) as exc:
        raise ContractError(
            f"{what}: {value!r} is not an ISO date or datetime (e.g. 2026-06-01 or "
            "2026-06-01T12:00Z)"
        ) from exc
    if pd.isna(stamp):
        raise ContractError(f"{what}: {value!r} is not an ISO date or datetime")
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def empty_declarations(with_outcomes: bool, contract: Contract | None = None) -> pd.DataFrame:
    """A zero-row frame with the canonical columns and dtypes."""
    import pandas as pd

    contract = contract or Contract()
    fields = FIELDS if with_outcomes else DECLARATION_FIELDS
    dtypes = {
        "str": "str",
        "category": "str",
        "datetime": "datetime64[us, UTC]",
        "int": "int64",
        "float": "float64",
        "bool": "boolean",
    }
    cols = {f.name: pd.Series([], dtype=dtypes[f.kind]) for f in fields}
    for e in contract.extras:
        cols[e.name] = pd.Series([], dtype="float64" if e.kind == "numeric" else "str")
    return pd.DataFrame(cols)


# --------------------------------------------------------------------------------------------
# API side: the pydantic model of one declaration, generated from the same FIELDS.
# --------------------------------------------------------------------------------------------


def _pydantic_field(f: ContractField) -> tuple[Any, Any]:
    """Type only: the domain (formats, codes, bounds, required values) is ``features.intake.rules``'s.

    Every field is optional here so that a missing, empty or out-of-domain value reaches the
    rules, which answer with the same message as the file gate. The JSON schema still documents
    the domain (pattern, enum, bounds, required fields) for the clients.
    """
    base: Any = {
        "str": str,
        "category": str,
        "datetime": datetime,
        "int": int,
        "float": float,
        "bool": bool,
    }[f.kind]
    domain: dict[str, Any] = {}
    if f.allowed:
        domain["enum"] = list(f.allowed)
    if f.pattern:
        domain["pattern"] = f.pattern
    if f.max_length:
        domain["maxLength"] = f.max_length
    if f.min_value is not None:
        domain["minimum"] = f.min_value

    def document(schema: dict[str, Any]) -> None:
        if not f.nullable:  # documented as required and non-null, as the rules enforce it
            (typed,) = [s for s in schema.pop("anyOf", []) if s.get("type") != "null"] or [{}]
            schema.update(typed)
            schema.pop("default", None)
        schema.update(domain)

    return base | None, Field(None, description=f.description, json_schema_extra=document)


_TEXT_FIELDS = tuple(f.name for f in DECLARATION_FIELDS if f.kind in ("str", "category"))
_BOOL_FIELDS = tuple(f.name for f in DECLARATION_FIELDS if f.kind == "bool")
_PERSONAL_FIELDS = frozenset(f.name for f in DECLARATION_FIELDS if f.personal)
_REFUSED_IN = {
    True: (re.compile(INVISIBLE), DECLARATION_ID_INVISIBLE_PROBLEM),
    False: (re.compile(ID_REFUSED), INVISIBLE_PROBLEM),
}
_INT_FIELDS = tuple(f.name for f in DECLARATION_FIELDS if f.kind == "int")
_NUMBER_FIELDS = tuple(f.name for f in DECLARATION_FIELDS if f.kind in ("int", "float"))
_TIME_FIELDS = tuple(f.name for f in DECLARATION_FIELDS if f.kind == "datetime")
_REQUIRED_FIELDS = [f.name for f in DECLARATION_FIELDS if not f.nullable]


def _declaration_schema(schema: dict[str, Any]) -> None:
    schema["required"] = list(_REQUIRED_FIELDS)


def require_utc_time(value: datetime | None, field: str, example: str) -> datetime | None:
    """A time sent in JSON: it must carry a zone, and exist in UTC (year 1 at +01:00 does not:
    its conversion overflowed into a 500). The rules then judge whether it is plausible."""
    if value is None:
        return None
    if value.tzinfo is None:
        raise ValueError(f"{field} must carry a time zone (e.g. '{example}')")
    try:
        value.astimezone(UTC)
    except OverflowError:
        raise ValueError(f"{field} is out of the range of dates") from None
    return value


class DeclarationBase(BaseModel):
    # Extra fields are allowed: a mapping's extra columns arrive as extra keys; the service
    # checks them against the model's manifest. Text is read as in batch ingest (stripped,
    # empty = missing, codes case-folded, personal fields pseudonymised) so both paths see the
    # same values; validation is where a request enters canonical form, so nothing after it
    # (rules, features, the stored JSON, logs) ever holds a raw personal value.
    model_config = ConfigDict(extra="allow", frozen=True, json_schema_extra=_declaration_schema)

    @field_validator(*_TEXT_FIELDS, mode="before", check_fields=False)
    @classmethod
    def _read_text(cls, value: Any, info: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool):
            if info.field_name == "hs_code":  # as the gate refuses a numeric hs_code cell
                raise ValueError(
                    f"{HS_NUMBER_PROBLEM} (send HS codes as JSON strings: {value} could be "
                    f"0{value})"
                )
            value = str(value)  # numeric ids, as a CSV column of numbers reads them
        if not isinstance(value, str):
            return value
        if info.field_name == "hs_code":  # ٦١٠٩١٠ is 610910, as a mapped file's code
            value = read_ascii_digits(value)
        if info.field_name in IDENTIFIER_FIELDS and not value.isascii():
            # as parse_text(narrow=True) reads files
            value = unicodedata.normalize("NFKC", value)
        value = value.strip()
        if not value:
            return None
        if "\x00" in value:  # as the gate's files (``coerce_frame``)
            raise ValueError(NUL_PROBLEM)
        if info.field_name in IDENTIFIER_FIELDS:  # as the gate's ``identifier_faults``
            refused, problem = _REFUSED_IN[info.field_name == "declaration_id"]
            if refused.search(value):
                raise ValueError(problem)
        if info.field_name in _FOLDED_ONLINE:  # as the model's history was read
            value = fold_text(value)
        if info.field_name in _PERSONAL_FIELDS:  # ~1 us: the one HMAC of the request's value
            limit = FIELDS_BY_NAME[info.field_name].max_length
            if limit and len(value) > limit:  # the length rule will see only the pseudonym
                raise ValueError(f"longer than {limit} characters (personal: value not shown)")
            return pseudonym_of(value, process_key())
        case = TEXT_CASE.get(info.field_name)
        return value.upper() if case == "upper" else value.lower() if case == "lower" else value

    @field_validator(*_BOOL_FIELDS, mode="before", check_fields=False)
    @classmethod
    def _read_bool(cls, value: Any) -> Any:
        return parse_bool_value(value)  # the file gate's reader: same words, same errors

    @field_validator(*_NUMBER_FIELDS, mode="before", check_fields=False)
    @classmethod
    def _read_number(cls, value: Any, info: Any) -> Any:
        # JSON true/false read as 1/0 would score a client's bug as a parcel of one item
        if isinstance(value, bool):
            raise ValueError(f"must be a number, not {str(value).lower()}")
        # a NaN literal in JSON is not "missing" (null is): the rules would say "a value is
        # required" of a value that was sent (from a frame, NaN is how missing is held)
        if info.mode == "json" and isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"must be a finite number, not {value}")
        # a number sent as text in Arabic-Indic digits (١٢٫٥) is read as a mapped file's
        return read_ascii_digits(value) if isinstance(value, str) else value

    @field_validator(*_TIME_FIELDS, mode="before", check_fields=False)
    @classmethod
    def _require_iso_time(cls, value: Any, info: Any) -> Any:
        # pydantic would read a number (or digits) as Unix seconds or milliseconds, guessing
        # which by size: a time is ISO 8601 text with its zone, as the contract documents
        if isinstance(value, str):  # in Arabic-Indic digits, read as a mapped file's times
            value = read_ascii_digits(value)
        if isinstance(value, int | float) or (
            isinstance(value, str) and value.strip().lstrip("+-").replace(".", "", 1).isdigit()
        ):
            raise ValueError(
                f"{info.field_name} must be ISO 8601 text with a time zone (e.g. "
                f"'2026-05-01T10:00:00Z'), not a number"
            )
        return value

    @field_validator(*_INT_FIELDS, check_fields=False)
    @classmethod
    def _fit_int64(cls, value: int | None) -> int | None:
        # JSON integers have no bound; the columns scored from them are 64-bit (a 500 before)
        if value is not None and not -INT64_LIMIT < value < INT64_LIMIT:
            raise ValueError("is out of range")
        return value

    @field_validator("declared_at", check_fields=False)
    @classmethod
    def _require_time_zone(cls, value: datetime | None) -> datetime | None:
        # A file declares its zone once in its mapping; a JSON value must carry its own, or a
        # clearance system sending local times would shift every calendar feature silently.
        return require_utc_time(value, "declared_at", "2026-05-01T10:00:00Z")


Declaration: type[BaseModel] = create_model(  # type: ignore[call-overload]
    "Declaration",
    __base__=DeclarationBase,
    __doc__="One parcel declaration to score (pre-arrival data, no outcomes).",
    **{f.name: _pydantic_field(f) for f in DECLARATION_FIELDS},
)
