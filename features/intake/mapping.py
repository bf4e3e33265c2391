"""Bring your own data: convert an administration's declarations to the contract via a YAML mapping.

The mapping names, for each contract field, the source column it comes from (or a constant) and
how to read it; and it declares the extra columns the administration wants to keep::

    delimiter: ";"              # optional; sniffed from the header line when absent
    sheet: Declarations         # an .xlsx source's worksheet (required if it has several)
    encoding: utf-8             # optional
    null_values: ["", "NULL"]   # optional; cells that mean "no value" ("NA" is Namibia, not null)
    columns:                    # contract field -> source column (shorthand) or a spec
      declaration_id: DECL_NO
      declared_at: {column: LODGED, format: "%d/%m/%Y %H:%M", timezone: "Europe/Paris"}
      declared_value: {column: VALUE, decimal: ",", thousands: "."}
      currency: {value: EUR}                                  # the same constant for every row
      channel: {column: MODE, values: {P: postal, E: express, C: courier}}
      ioss_prepaid: {column: IOSS, true_values: ["Y"], false_values: ["N"]}
      illicit: {column: RESULT, values: {POS: true, NEG: false}}
      gross_weight_kg: {column: WEIGHT_G, scale: 0.001}       # grams -> kg
      inspected: {value: true}                                # an administration that inspects all
      inspected_at: {column: DATE, format: "%Y-%m-%d", timezone: Asia/Seoul, offset: "1 day"}
      category: {column: KIND, values: {M: merchandise, G: gift}, default: M}  # empty: M
    extras:
      - {column: BROKER, name: broker_id, kind: entity}       # identifier with history features
      - {column: BUYER_TAX_ID, name: buyer_tax_id, kind: entity, personal: true}  # pseudonymised
      - {column: INCOTERM, name: incoterm, kind: categorical}
      - {column: INSURED_VALUE, name: insured_value, kind: numeric, decimal: ","}

Spec keys: ``column``, ``columns`` (several source columns read as one, their non-empty cells
joined by ``separator``: a date and a time, a number and its unit) or ``value`` (exactly one);
``aliases`` (other names of a ``column`` in other exports of the series: the one the file has is
read); ``default`` (the value of an empty cell of
the column, read like any source value); ``format`` (strptime, ``ISO8601`` or ``excel`` for a
spreadsheet's serial days; a list is tried in order, each value read by the first format that
reads it whole), ``timezone`` (IANA name; local
times are converted to UTC, times already carrying an offset are converted from it; ambiguous
autumn-DST times are read as standard time, times the spring change skips are moved forward by
it, both counted in the summary) and ``offset`` (a duration added after reading, e.g.
``1 day`` when results are recorded the day after the declaration date) for timestamps;
``decimal``, ``thousands`` and ``scale`` (a multiplier > 0) for numbers; ``units`` (unit ->
multiplier, for numbers written with their unit: ``350 g``) and ``part`` (``number`` or
``unit``: one side of a cell holding a number and its unit or currency, ``12,50 €``);
``country_codes`` (``alpha3`` or ``numeric`` ISO 3166 codes -> alpha-2, or ``name``: country
names in any language Debian's iso-codes translates them into, ISO codes among them); ``currency`` (for
``revenue_recovered`` only: the ISO 4217 code its amounts are in, or ``row`` for the row's
declared currency; converted to EUR at ingest, ``rates_to_eur``); ``values`` (a code
table: every non-empty source value must be a key, else it is an error; ``ignore_case: true``
matches its keys whatever the case);
``true_values``/``false_values`` for booleans, or ``given: true``: true where the cell holds
anything, false where it is empty (``inspected`` from a column filled only on the parcels
inspected: their control's date or reference). Timestamps without a timezone or offset are taken
as UTC. Without a ``format`` only ISO 8601 text (year first: ``2026-01-02``,
``2026-01-02T10:00:00+02:00``) is read: any other layout is refused with a request for the
format, never read by guessing the day/month order value by value. A value written with the
``thousands`` separator must have groups of three digits after it (``1.234.567,5``), or the
separators are wrong for the column (``17.10`` read with ``thousands: "."`` would be 1710);
without ``thousands``, a value holding the other of ``.`` and ``,`` is refused (``1.234`` with
``decimal: ","`` would be 1.234). An empty string in ``true_values``/``false_values`` never
matches (empty cells are no value first) and is refused: ``default`` fills empty cells.
YAML is read with YAML 1.2 booleans: only true/false are booleans, so codes like ``NO``
(Norway) or ``Y`` stay text.

An ``hs_code`` column stored as numbers (a Parquet or spreadsheet export) has lost the leading
zero of chapters 01-09; HS codes have 6, 8 or 10 digits, so a number of 5, 7 or 9 digits gets
its zero back, counted in the summary and said in a warning.

Outcome fields are optional as a group: a file without outcomes is a file to score. If any
outcome field is mapped, ``inspected`` must be too; unmapped outcome fields are then null.
Source columns the mapping does not name are ignored (and counted in the summary); a source
whose header repeats a column name is refused, as is one whose names differ only by
surrounding spaces or case when the mapping names one of them (a warning otherwise). The output is contract Parquet (``.parquet``).

Every problem is a ``ContractError`` that lists all offending fields at once and, for values that
do not convert, the field, the source column and example values with their data row numbers
(1 = first row after the header). Nothing is silently turned into null.
"""

from __future__ import annotations

import codecs
import io
import logging
import lzma
import math
import re
import zipfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from features.intake.contract import (
    COUNTRY_PATTERN,
    FIELDS,
    FIELDS_BY_NAME,
    IDENTIFIER_FIELDS,
    PERSONAL_FIELDS,
    PERSONAL_NOT_SHOWN,
    TEXT_CASE,
    Contract,
    ContractError,
    ExtraColumn,
    ExtraKind,
    ascii_digit_table,
    coerce_declarations,
    fold_name,
    parse_text,
)
from features.intake.io import (
    first_undecodable,
    is_csv,
    lines_above_header,
    no_implicit_index,
    open_bytes,
    refuse_cut_last_row,
    require_regular_file,
    sniff_delimiter,
    zip_data_members,
)
from features.intake.iso3166 import (
    ALPHA2,
    ALPHA3_TO_ALPHA2,
    NUMERIC_TO_ALPHA2,
    name_to_alpha2,
    plain_name,
)
from features.intake.iso4217 import COMMON_MISTAKES, ISO_4217
from features.intake.jsonsrc import is_json, read_json_source
from features.intake.xmlsrc import is_xml, read_xml_source
from features.params import DEFAULT_MAX_REJECTED
from features.yamlio import UniqueKeyLoader

if TYPE_CHECKING:
    from collections.abc import Collection

    import pandas as pd

    from features.intake.items import Collapsed
    from features.intake.rules import Limits

logger = logging.getLogger(__name__)

DEFAULT_NULL_VALUES = ("", "NULL", "null", "N/A", "n/a", "NaN", "nan", "None")
# revenue_recovered: {currency: row}: each amount is in the row's declared currency
ROW_CURRENCY = "row"
_EXAMPLES = 5
OUTPUT_SUFFIXES = (".parquet", ".pq")
# spreadsheets calamine reads (Excel's current and 97-2003 formats, binary workbooks, ODF)
WORKBOOK_SUFFIXES = (".xlsx", ".xlsm", ".xls", ".xlsb", ".ods")
# spreadsheet formats no reader here takes: refused naming what to save them as
_OTHER_SPREADSHEETS = (".numbers",)

# Columns the feature pipeline derives beside the contract fields and the extras, in
# features/pipeline/prepare.py (``prepare``: t_us, hs6, hs_chapter, hs_heading, hs6_origin,
# value_eur, value_cents, description_obscured; ``unit_values``: the log_* columns) and
# features/pipeline/online.py
# (``already_seen``). An extra of one of these names would replace the derived column in the
# prepared rows (an entity extra ``hs6`` turned every HS6 history into the extra's). The intake
# layer may not import the pipeline, so the names are spelt here;
# tests/test_features/test_mapping_probe_fixes.py checks them against what ``prepare`` returns.
DERIVED_COLUMNS = frozenset(
    {
        "t_us",
        "hs6",
        "hs_chapter",
        "hs_heading",
        "hs6_origin",
        "value_eur",
        "value_cents",
        "description_obscured",
        "log_quantity",
        "log_value_per_item",
        "log_value_per_kg",
        "log_weight_per_item",
        "already_seen",
    }
)
# pandas' own layouts: "mixed" guesses each value's day/month order (what a format is to stop)
_GUESSING_FORMATS = ("mixed",)
# a spreadsheet's dates as numbers: days since 1899-12-30 (Excel's 1900 date system, as
# LibreOffice and Google Sheets write it too), the fraction the time of day
EXCEL_FORMAT = "excel"
# Unix time, UTC by definition (no timezone applies): seconds or milliseconds since 1970,
# read only within 1990-2100 so that a column of other numbers is refused, not misread
EPOCH_FORMATS = {"epoch_s": 1_000_000, "epoch_ms": 1_000}  # microseconds per unit
_EPOCH_RANGE_S = (631_152_000, 4_102_444_800)  # 1990-01-01, 2100-01-01
_EXCEL_EPOCH = "1899-12-30"
_EXCEL_MAX_SERIAL = 2958465  # 9999-12-31
# a number beside its unit or currency, either side: "350 g", "1,2 kg", "USD 12.50", "€12,50"
NUMBER_WITH_UNIT = (
    r"^(?P<before>[^\d+\-.,]*?)\s*"
    r"(?P<number>[+-]?(?:\d(?:[\d.,'\u00a0 ]*\d)?|[.,]\d+))"
    r"\s*(?P<after>[^\d]*?)$"
)
# the leading zero of chapters 01-09 that a number drops from a 6-, 8- or 10-digit HS code
_HS_LOST_ZERO = r"[0-9]{5}|[0-9]{7}|[0-9]{9}"
# an HS code in tariff notation: 2-digit groups after the chapter, joined by '.', ' ' or '-'
# (6109.10.00, 6109 10 00, 61.09.10, 6109-10); 6, 8 or 10 digits in all
# Japan prints its 9-digit statistical codes as heading.subheading-3 digits (8504.40-000)
_HS_GROUPED = r"[0-9]{2}(?:[. -]?[0-9]{2}){2,4}|[0-9]{4}\.[0-9]{2}-[0-9]{3}"
# a code or an identifier written from a floating-point column: programs print the number
# 610910 as "610910.0" (pandas makes a column of numbers with a blank float); no code or id
# is written so by hand, and tariff notation has groups of two digits, never one
_FLOAT_WRITTEN = r"[0-9]+\.0"
# a value a CSV written "for Excel" guards as text, so the spreadsheet keeps its leading zeros:
# a formula giving the text (="000123") or a leading apostrophe ('S002; a word, no spaces)
_EXCEL_TEXT_GUARD = r'="(?P<formula>[^"]*)"|\'(?P<apostrophe>[^\'\s]+)'
# The mark of the time values that are a day alone: written without a zone, at local midnight
# to the microsecond (a day in any format, a workbook's date cell, a database's DATE exported as
# "2026-11-21 00:00:00"). An inspected_at so written counts from the end of its day
# (``_convert_columns``): a result is almost never recorded at 00:00:00 exactly, and taking one
# that was a day late only delays it, where taking a day as its start counted it for that
# day's earlier declarations. Unix times are instants, and so are times written with a zone.
DATE_ONLY_MARK = "dated_without_time"
# declarations lodged at a day alone: same-day parcels share one instant (local midnight)
DECLARED_DATE_ONLY = "declared_without_time"
# an ISO 8601 time carrying its zone (Z, UTC or an offset): read as is, not in the mapping's zone
_ZONED_TIME = (
    r"(?i)[T ]\d{2}(?::?\d{2}(?::?\d{2}(?:[.,]\d+)?)?)?\s*(?:Z|UTC|[+-]\d{2}(?::?\d{2})?)$"
)


def _check_format(value: str) -> None:
    """A timestamp format the reader takes: strptime, ``ISO8601``, ``excel``, ``epoch_s`` or
    ``epoch_ms``."""
    if value in ("ISO8601", EXCEL_FORMAT, *EPOCH_FORMATS):
        return
    if value in _GUESSING_FORMATS:
        raise ValueError(
            f"format {value!r} guesses the day/month order of each value; give the "
            "column's strptime format, e.g. '%d/%m/%Y %H:%M'"
        )
    import pandas as pd

    try:  # the reader compiles the format before it reads a value: a bad one fails here
        pd.to_datetime(pd.Series(["2000-01-01"]), format=value, errors="coerce")
    except (ValueError, re.error) as exc:
        raise ValueError(
            f"format {value!r} is not a strptime format ({exc}); e.g. '%d/%m/%Y %H:%M', "
            "'excel' for a spreadsheet's serial days, or 'epoch_s' / 'epoch_ms' for Unix times"
        ) from exc


class _Spec(BaseModel):
    """How to read one column: shared by contract fields and extras."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    column: str | None = None
    # other names the same column has in other exports of the series (renamed between monthly
    # exports): the one of ``column`` and these the file has is read (``resolve_aliases``)
    aliases: list[str] | None = None
    # several source columns read as one, their non-empty cells joined by ``separator``: a date
    # and a time of day, a number and its unit, kept apart by the export
    columns: list[str] | None = None
    separator: str = " "
    value: Any = None
    # strptime, "ISO8601" or "excel" (a spreadsheet's serial days); a list is tried in order,
    # each value read by the first format that reads it whole (date-only rows beside timed ones)
    format: str | list[str] | None = None
    timezone: str | None = None
    decimal: str | None = None
    thousands: str | None = None
    scale: float | None = None
    # numbers written with their unit in the cell ("350 g", "1,2 kg", "2 lb"): unit -> multiplier
    units: dict[str, float] | None = None
    # the cell holds a number and a unit or currency ("12.50 USD", "€ 12,50"): read one part
    part: Literal["number", "unit"] | None = None
    # countries written as ISO 3166 alpha-3 ("CHN") or numeric ("156") codes, or as names in
    # any language ("Chine", "中国"), -> alpha-2
    country_codes: Literal["alpha3", "numeric", "name"] | None = None
    values: dict[str, Any] | None = None
    ignore_case: bool = False  # 'values' keys matched whatever the case ("P", "p")
    # a name standing for an id (a postal export's sender name): read whatever its case and
    # spacing, so one party is one entity ("Yiwu Moonlight Co., Ltd", "YIWU MOONLIGHT CO.,LTD":
    # 1,443 senders read as 2,269 sellers, each variant a new seller with no history; probe 11)
    fold: bool = False
    # a value not in 'values': refused (the default), or kept as written (rename a few codes)
    unlisted: Literal["refuse", "keep"] = "refuse"
    # cells of this column that mean "no value" (a quantity of 0 in an export that writes 0 for
    # unknown), besides the mapping's null_values; then 'default', if any, fills them
    null_values: list[str] | None = None
    # hs_code: the export wrote the codes as numbers into text (a CSV saved from a spreadsheet
    # column of numbers): codes of 5, 7 or 9 digits get the zero of chapters 01-09 back
    lost_leading_zero: bool = False
    # hs_code: national codes longer than the contract's 10 digits (a national precision
    # suffix: 610910000011): keep their first N digits (6 to 10), the HS and national
    # subheadings the suffix refines
    digits: int | None = Field(default=None, ge=6, le=10)
    # identifiers (the contract's ``_id`` fields, the office, entity extras) a spreadsheet or a
    # database wrote as numbers, their leading zeros lost (515428 for 000515428): ids of digits
    # only and shorter than N get zeros on the left up to N digits, so a results file matches
    # the declarations and one consignee stays one entity across exports
    zero_pad: int | None = Field(default=None, ge=2, le=64)
    true_values: list[str] | None = None
    false_values: list[str] | None = None
    # booleans: true where the cell holds anything, false where it is empty (an export that
    # writes an inspection's date or reference only on the parcels inspected)
    given: bool = False
    default: Any = None  # the value of an empty source cell (read like any source value)
    offset: str | None = None  # timestamps: added after reading, e.g. "1 day", "-2 hours"
    # timestamps written with Buddhist-era years (Thailand: 2569 is 2026): the text's years
    # 2400-2799 are read 543 years earlier, before the format reads them (a day offset would
    # miss the leap days, and 29/02/2567 is no Gregorian date to begin with)
    # hijri (Umm al-Qura, Saudi Arabia and the Gulf: 1447 is 2025/26) and jalali (Solar Hijri,
    # Iran: 1404 is 2025/26): each date of the text converted day by day to the Gregorian one,
    # in the layout of the format that reads it (their months are not the Gregorian ones)
    calendar: Literal["gregorian", "buddhist", "hijri", "jalali"] = "gregorian"
    # revenue_recovered: the currency its amounts are in, an ISO 4217 code ("BRL") or "row"
    # (the row's declared currency); converted at ingest to EUR, the contract's unit, with
    # features.fx_to_base (``_revenue_to_eur``)
    currency: str | None = None

    @field_validator("values", mode="before")
    @classmethod
    def _keys_as_text(cls, value: Any) -> Any:
        # YAML reads `1: postal` with an int key; source cells are text, so compare as text.
        if isinstance(value, dict):
            return {str(k): v for k, v in value.items()}
        return value

    @field_validator("true_values", "false_values", mode="before")
    @classmethod
    def _items_as_text(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [str(v) for v in value]
        return value

    @field_validator("true_values", "false_values")
    @classmethod
    def _no_empty_item(cls, value: list[str] | None) -> list[str] | None:
        # an empty cell is "no value" before it is compared, so "" would never match and the
        # blank cells would stay null unsaid; `default` is what fills them
        if value is not None and any(not item.strip() for item in value):
            raise ValueError(
                f"{value!r} holds an empty value, which never matches: empty cells are read as "
                "no value before they are compared; to read them as one of the values, give "
                "it as the column's default, e.g. false_values: ['N'], default: 'N' (default "
                "fills every empty cell, and every cell in null_values, before it is read)"
            )
        return value

    @field_validator("default", mode="before")
    @classmethod
    def _default_as_text(cls, value: Any) -> Any:
        # source cells are text; a default is read exactly like one (codes, decimals, formats)
        return (
            None if value is None else str(value).lower() if isinstance(value, bool) else str(value)
        )

    @field_validator("offset")
    @classmethod
    def _known_offset(cls, value: str | None) -> str | None:
        if value is not None:
            import pandas as pd

            try:
                delta = pd.Timedelta(value)
            except (ValueError, TypeError) as exc:
                raise ValueError(
                    f"offset {value!r} is not a duration (e.g. '1 day', '12 hours', '-30 min')"
                ) from exc
            if pd.isna(delta):
                raise ValueError(f"offset {value!r} is not a duration")
        return value

    @field_validator("currency")
    @classmethod
    def _currency_code(cls, value: str | None) -> str | None:
        if value is None or value == ROW_CURRENCY or value in ISO_4217:
            return value
        hint = COMMON_MISTAKES.get(str(value).strip().upper(), str(value).strip().upper())
        raise ValueError(
            f"currency {value!r} is neither an ISO 4217 code"
            + (f" (write {hint})" if hint in ISO_4217 else " (e.g. BRL, USD, XOF)")
            + f" nor {ROW_CURRENCY!r} (the row's declared currency)"
        )

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str | None) -> str | None:
        if value is not None:
            from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

            try:
                ZoneInfo(value)
            except (ZoneInfoNotFoundError, ValueError) as exc:
                raise ValueError(f"unknown timezone {value!r} (use an IANA name)") from exc
        return value

    @field_validator("format")
    @classmethod
    def _known_format(cls, value: str | list[str] | None) -> str | list[str] | None:
        if value is None:
            return value
        formats = [value] if isinstance(value, str) else value
        if not formats:
            raise ValueError("format: an empty list; give one format or several to try in order")
        for one in formats:
            _check_format(one)
        return value

    @field_validator("units", mode="before")
    @classmethod
    def _unit_keys_as_text(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {str(k).strip(): v for k, v in value.items()}
        return value

    @field_validator("units")
    @classmethod
    def _known_units(cls, value: dict[str, float] | None) -> dict[str, float] | None:
        if value is None:
            return value
        if not value:
            raise ValueError("units: an empty table; e.g. units: {g: 0.001, kg: 1, lb: 0.4536}")
        bad = [f"{k}: {v!r}" for k, v in value.items() if not (math.isfinite(v) and v > 0)]
        if bad:
            raise ValueError(f"units: multipliers must be numbers > 0 ({', '.join(bad)})")
        folded = [k.casefold() for k in value]
        clash = sorted({k for k in value if folded.count(k.casefold()) > 1})
        if clash:  # units are matched whatever their case ("KG", "kg"): two keys would tie
            raise ValueError(f"units: keys that differ only by case: {', '.join(clash)}")
        return value

    @property
    def formats(self) -> list[str] | None:
        """``format`` as a list (None when the spec gives none)."""
        return [self.format] if isinstance(self.format, str) else self.format

    @field_validator("scale")
    @classmethod
    def _positive_scale(cls, value: float | None) -> float | None:
        if value is not None and not (math.isfinite(value) and value > 0):
            raise ValueError(f"scale {value!r} must be a number > 0 (e.g. 0.001 for grams)")
        return value

    @model_validator(mode="after")
    def _distinct_separators(self) -> _Spec:
        if self.decimal == AUTO_DECIMAL and self.thousands is not None:
            raise ValueError(
                "decimal: auto reads each cell's own decimal mark and grouping: no thousands"
            )
        if self.decimal is not None and self.decimal == self.thousands:
            raise ValueError(
                f"decimal and thousands are the same separator {self.decimal!r}: a number "
                "could not be read (e.g. decimal: ',' with thousands: '.', or decimal: '.' "
                "with thousands: ',')"
            )
        return self

    @model_validator(mode="after")
    def _aliases_of_a_column(self) -> _Spec:
        if self.aliases is None:
            return self
        if self.column is None:
            raise ValueError("'aliases' are other names of a 'column': give the column")
        names = [self.column, *self.aliases]
        if not self.aliases or len(set(names)) < len(names):
            raise ValueError(f"'aliases' must name other columns than {self.column!r}, once each")
        return self

    @model_validator(mode="after")
    def _joined_columns(self) -> _Spec:
        if self.columns is None:
            return self
        if self.column is not None:
            raise ValueError("give 'column' or 'columns' (several joined), not both")
        if len(self.columns) < 2:
            raise ValueError("'columns' joins two or more source columns; one is 'column'")
        if len(set(self.columns)) < len(self.columns):
            raise ValueError(f"'columns' names a column twice: {self.columns}")
        return self

    @property
    def sources(self) -> list[str]:
        """The source columns this spec reads (none for a constant)."""
        return self.columns or ([self.column] if self.column is not None else [])

    @field_validator("null_values", mode="before")
    @classmethod
    def _nulls_as_text(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [str(v).strip() for v in value]
        return value

    @model_validator(mode="after")
    def _case_needs_a_table(self) -> _Spec:
        if self.unlisted == "keep" and self.values is None:
            raise ValueError("unlisted: keep keeps the values a 'values' table lacks: give one")
        if self.ignore_case and self.values is None:
            raise ValueError("ignore_case matches the keys of a 'values' table: give one")
        if self.ignore_case and self.values is not None:
            folded = [key.casefold() for key in self.values]
            clash = sorted({key for key in self.values if folded.count(key.casefold()) > 1})
            if clash:
                raise ValueError(
                    f"ignore_case with 'values' keys that differ only by case: {', '.join(clash)}"
                )
        return self

    @model_validator(mode="after")
    def _units_alone(self) -> _Spec:
        if self.units is not None and self.scale is not None:
            raise ValueError("give the multiplier of each unit in 'units', not also a 'scale'")
        if self.units is not None and self.part == "unit":
            raise ValueError("'units' converts the number; part: unit reads the unit as text")
        if self.part == "unit" and any(
            x is not None for x in (self.decimal, self.thousands, self.scale)
        ):
            raise ValueError(
                "part: unit reads the unit or currency as text: no decimal, thousands or scale"
            )
        if self.values is not None and (self.units is not None or self.part == "number"):
            raise ValueError(
                "a 'values' table reads codes; it does not apply to the number "
                "of a cell (part: unit reads the code beside it)"
            )
        return self


class ColumnSpec(_Spec):
    """Where a contract field comes from: a source column or a constant ``value``."""

    @model_validator(mode="after")
    def _column_or_value(self) -> ColumnSpec:
        if (not self.sources) == (self.value is None):
            raise ValueError(
                "give exactly one of 'column' (source column), 'columns' (several joined) or "
                "'value' (constant)"
            )
        if self.default is not None and not self.sources:
            raise ValueError("'default' fills empty cells of a 'column'; a constant needs none")
        return self


class ExtraSpec(_Spec):
    """A source column kept beyond the contract."""

    name: str
    kind: ExtraKind
    description: str = ""
    personal: bool = False  # a person's identifier: held only as a keyed pseudonym
    # numeric: an amount in the row's currency, converted to the base currency in features
    amount: bool = False

    @model_validator(mode="after")
    def _needs_column(self) -> ExtraSpec:
        if not self.sources:
            raise ValueError(f"extra {self.name!r}: 'column' (or 'columns') is required")
        if self.value is not None:
            raise ValueError(f"extra {self.name!r}: constants ('value') are not allowed in extras")
        # name rules, clashes, kinds
        ExtraColumn(self.name, self.kind, self.description, self.personal, self.amount, self.fold)
        if self.name in DERIVED_COLUMNS:
            raise ValueError(
                f"extra {self.name!r} clashes with a column the pipeline derives from the "
                f"contract (it would replace it); give the extra another name (derived: "
                f"{', '.join(sorted(DERIVED_COLUMNS))})"
            )
        return self


class Mapping(BaseModel):
    """A parsed mapping file: contract field -> spec, plus extras and CSV reading options."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    columns: dict[str, ColumnSpec]
    extras: list[ExtraSpec] = []
    delimiter: str | None = None
    encoding: str = "utf-8"
    null_values: list[str] = list(DEFAULT_NULL_VALUES)
    # outcome cells of rows not inspected are the export's filler (ASYCUDA writes illicit 0 and
    # revenue 0 on every row): read as empty, counted, and warned where one held a finding
    outcomes_only_if_inspected: bool = False
    sheet: str | None = None  # the worksheet of an .xlsx source (required if it has several)
    # one row per goods item: how each field combines into its declaration (features.intake.items)
    items: dict[str, str] | None = None
    # a JSON source (features.intake.jsonsrc): the key of a document holding the records, and
    # the array of each record whose elements are its goods items (one row each)
    records: str | None = None
    explode: str | None = None

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, value: str) -> str:
        try:
            codecs.lookup(value)
        except LookupError as exc:
            raise ValueError(f"unknown encoding {value!r} (e.g. utf-8, cp1252, latin-1)") from exc
        return value

    @field_validator("columns", mode="before")
    @classmethod
    def _expand_shorthand(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: ({"column": v} if isinstance(v, str) else v) for k, v in value.items()}
        return value

    @field_validator("columns")
    @classmethod
    def _known_fields(cls, value: dict[str, ColumnSpec]) -> dict[str, ColumnSpec]:
        unknown = [name for name in value if name not in FIELDS_BY_NAME]
        if unknown:
            raise ValueError(
                f"unknown contract field(s): {', '.join(unknown)}; "
                f"known fields: {', '.join(FIELDS_BY_NAME)}"
            )
        return value

    @field_validator("columns")
    @classmethod
    def _targets_in_domain(cls, value: dict[str, ColumnSpec]) -> dict[str, ColumnSpec]:
        # A values table or constant that produces codes outside the contract's domain is a
        # mapping mistake: say so now rather than as a failed gate after ingest.
        problems = []
        for name, spec in value.items():
            allowed = FIELDS_BY_NAME[name].allowed
            if not allowed:
                continue
            targets = list(spec.values.values()) if spec.values else []
            targets += [spec.value] if spec.value is not None else []
            bad = [t for t in targets if t is not None and str(t).strip().lower() not in allowed]
            if bad:
                problems.append(f"{name}: {', '.join(map(repr, bad))} not in {', '.join(allowed)}")
        if problems:
            raise ValueError("values outside the contract domain: " + "; ".join(problems))
        return value

    @model_validator(mode="after")
    def _flags_not_null_values(self) -> Mapping:
        # a cell in null_values is no value before true_values/false_values are compared
        specs = {**self.columns, **{e.name: e for e in self.extras}}
        nulls = set(self.null_values)
        clashes = [
            f"{name}: {value!r}"
            for name, spec in specs.items()
            for value in (spec.true_values or []) + (spec.false_values or [])
            if value in nulls
        ]
        if clashes:
            raise ValueError(
                f"true_values/false_values that are also null_values never match (the cells "
                f"are read as no value first): {', '.join(clashes)}; drop them from "
                "null_values, or give the value as the column's default"
            )
        return self

    @model_validator(mode="after")
    def _blanking_needs_inspected(self) -> Mapping:
        if self.outcomes_only_if_inspected and "inspected" not in self.columns:
            raise ValueError(
                "outcomes_only_if_inspected reads outcome cells by the row's 'inspected': map it"
            )
        return self

    @model_validator(mode="after")
    def _specs_fit_kinds(self) -> Mapping:
        # a unit table on a text field or a format on a number would be ignored unsaid
        problems = []
        targets = [(n, FIELDS_BY_NAME[n].kind, s) for n, s in self.columns.items()]
        targets += [(e.name, _extra_kind(e), e) for e in self.extras]
        for name, kind, spec in targets:
            numeric, text = kind in ("int", "float"), kind in ("str", "category")
            if spec.format is not None and kind != "datetime":
                problems.append(f"{name}: 'format' reads timestamps; {name} is not one")
            if spec.calendar != "gregorian" and kind != "datetime":
                problems.append(f"{name}: 'calendar' reads timestamps; {name} is not one")
            if spec.calendar in CALENDAR_YEARS and kind == "datetime":
                # a format whose date the conversion cannot find would be read as Gregorian
                unread = [
                    f
                    for f in spec.formats or []
                    if f != "ISO8601" and not all(d in f for d in _DATE_PARTS)
                ]
                if unread:
                    problems.append(
                        f"{name}: calendar: {spec.calendar} converts dates written with %Y, %m "
                        f"and %d; {unread[0]!r} has not all three (a two-digit year, a serial "
                        "day or a Unix time would be read as a Gregorian date)"
                    )
            if (spec.units is not None or spec.part == "number") and not numeric:
                problems.append(f"{name}: 'units' and part: number read numbers; {name} is text")
            if spec.part == "unit" and not text:
                problems.append(f"{name}: part: unit reads a unit or currency code as text")
            is_country = name not in FIELDS_BY_NAME or (
                FIELDS_BY_NAME[name].pattern == COUNTRY_PATTERN
            )
            if spec.country_codes is not None and not (text and is_country):
                problems.append(f"{name}: 'country_codes' converts country fields only")
            if spec.lost_leading_zero and name != "hs_code":
                problems.append(f"{name}: 'lost_leading_zero' restores HS codes only")
            if spec.fold and not text:
                problems.append(f"{name}: 'fold' reads names as one party: {name} is no text")
            if spec.digits is not None and name != "hs_code":
                problems.append(f"{name}: 'digits' shortens HS codes only")
            if spec.zero_pad is not None:
                is_id = name in IDENTIFIER_FIELDS or getattr(spec, "kind", None) == "entity"
                if not is_id:
                    problems.append(
                        f"{name}: 'zero_pad' writes back the zeros of identifiers only (the "
                        "_id fields, arrival_office, entity extras)"
                    )
                elif spec.column is None:
                    problems.append(f"{name}: 'zero_pad' pads one source 'column'")
            if spec.given and (kind != "bool" or not spec.sources):
                problems.append(f"{name}: 'given' reads a column as a yes/no field, filled or not")
            if spec.given and any(
                x is not None for x in (spec.values, spec.true_values, spec.false_values)
            ):
                problems.append(
                    f"{name}: 'given' reads whether a cell is filled, not what it says: no "
                    "values, true_values or false_values with it"
                )
            if spec.country_codes is not None and not spec.sources:
                problems.append(f"{name}: 'country_codes' converts a column, not a constant")
            if spec.currency is not None and name != "revenue_recovered":
                problems.append(
                    f"{name}: 'currency' converts revenue_recovered only"
                    + (" (a numeric extra in the row's currency takes amount: true)")
                    * (name not in FIELDS_BY_NAME)
                )
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @model_validator(mode="after")
    def _row_currency_mapped(self) -> Mapping:
        revenue = self.columns.get("revenue_recovered")
        if (
            revenue is not None
            and revenue.currency == ROW_CURRENCY
            and "currency" not in self.columns
        ):
            raise ValueError(
                "revenue_recovered: currency: row converts each amount by the row's "
                "currency, and 'currency' is not mapped: map it (in a results mapping, the "
                "results file's column of the amounts' currency), or give the code the "
                "amounts are in (currency: BRL)"
            )
        return self

    @model_validator(mode="after")
    def _item_rules(self) -> Mapping:
        if self.explode is not None and self.items is None:
            raise ValueError(
                f"explode: {self.explode} gives each goods item its own row: say how the items "
                "combine into their declaration (items:, see the README)"
            )
        if self.items is None:
            return self
        from features.intake.items import item_rule_problems

        kinds = {n: FIELDS_BY_NAME[n].kind for n in self.columns}
        kinds.update({e.name: _extra_kind(e) for e in self.extras})
        amounts = {e.name for e in self.extras if e.amount}
        problems = item_rule_problems(self.items, kinds, amounts)
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @model_validator(mode="after")
    def _unique_extras(self) -> Mapping:
        names = [e.name for e in self.extras]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"extra column name(s) declared twice: {', '.join(dupes)}")
        return self

    @property
    def contract(self) -> Contract:
        return Contract(
            tuple(
                ExtraColumn(e.name, e.kind, e.description, e.personal, e.amount, e.fold)
                for e in self.extras
            ),
            folded=tuple(sorted(name for name, spec in self.columns.items() if spec.fold)),
        )

    def source_columns(self) -> list[str]:
        cols = [c for s in self.columns.values() for c in s.sources]
        return cols + [c for e in self.extras for c in e.sources]

    def named_columns(self) -> list[str]:
        """Every source column name the mapping gives, aliases included."""
        aliases = [a for s in [*self.columns.values(), *self.extras] for a in (s.aliases or [])]
        return self.source_columns() + aliases


def _extra_kind(extra: ExtraSpec) -> str:
    """The conversion kind of an extra: numbers for numeric extras, text otherwise."""
    return "float" if extra.kind == "numeric" else "str"


class _Yaml12Loader(UniqueKeyLoader):
    """SafeLoader with YAML 1.2 booleans: `NO`, `Y`, `on` stay strings (country and yes/no codes).

    A key given twice (two ``hs_code:`` lines, a code twice in a ``values`` table) is refused
    (``UniqueKeyLoader``).
    """


_Yaml12Loader.yaml_implicit_resolvers = {
    key: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:bool"]
    for key, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def _format_validation_error(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        lines.append(f"  {where}: {msg}")
    return "\n".join(lines)


def parse_mapping(data: Any, origin: str = "mapping") -> Mapping:
    """Validate an already-loaded mapping document."""
    if not isinstance(data, dict):
        raise ContractError(f"{origin}: expected a YAML mapping with a 'columns' section")
    try:
        return Mapping.model_validate(data)
    except ValidationError as exc:
        raise ContractError(f"{origin}: invalid mapping:\n{_format_validation_error(exc)}") from exc
    except ContractError as exc:  # raised by ExtraColumn inside a validator
        raise ContractError(f"{origin}: invalid mapping: {exc}") from exc


def parse_mapping_text(text: str, origin: str = "mapping") -> Mapping:
    """Parse and validate mapping YAML given as text."""
    return parse_mapping(_yaml_document(text, origin), origin=origin)


def _yaml_document(text: str, origin: str) -> Any:
    """A mapping's YAML as data (YAML 1.2 booleans, no key twice), or a ContractError."""
    try:
        return yaml.load(text, Loader=_Yaml12Loader)
    except yaml.YAMLError as exc:
        raise ContractError(f"{origin}: malformed YAML: {exc}") from exc


def declarations_only(mapping: Mapping) -> Mapping:
    """``mapping`` without its outcome fields (and their ``items`` rules): what a file to be
    scored is read with, when the mapping was written for a history. Results are what the
    scoring predicts, so their columns are not read (a file to score may hold them empty)."""
    outcomes = {f.name for f in FIELDS if f.scope == "outcome"}
    items = {k: v for k, v in (mapping.items or {}).items() if k not in outcomes}
    return mapping.model_copy(
        update={
            "columns": {k: v for k, v in mapping.columns.items() if k not in outcomes},
            "outcomes_only_if_inspected": False,
            "items": items if mapping.items is not None else None,
        }
    )


def load_mapping(path: Path) -> Mapping:
    """Read and validate a mapping YAML file."""
    return parse_mapping(_mapping_document(path), origin=str(path))


def _mapping_document(path: Path) -> Any:
    path = Path(path)
    if not path.exists():
        raise ContractError(
            f"mapping file not found: {path} (none written yet? `parcelrisk mapping draft "
            f"EXPORT --out {path}` proposes one from the export)"
        )
    return _yaml_document(path.read_text(encoding="utf-8"), str(path))


# Why a result replaces the one stored is not a contract field (a history holds each result as
# now known), so the declarations' mapping cannot name it; a results file's remarks column
# holding it on the corrected rows had to be renamed `correction` by hand (probe 37). A results
# mapping names it beside the fields, under ``columns``.
CORRECTION_COLUMN = "correction"


def load_results_mapping(path: Path) -> tuple[Mapping, ColumnSpec | None]:
    """A results mapping, and its ``correction`` column if it names one.

    ``correction: Observaciones``: the cell says why the row replaces the stored result (empty:
    no correction). With ``true_values``/``false_values`` (or a ``values`` table to true and
    false) the column is a yes/no flag: its rows flagged yes are corrections, and
    ``--correction`` says why."""
    data = _mapping_document(path)
    columns = data.get("columns") if isinstance(data, dict) else None
    if not isinstance(columns, dict) or CORRECTION_COLUMN not in columns:
        return parse_mapping(data, origin=str(path)), None
    given = columns[CORRECTION_COLUMN]
    rest = {**data, "columns": {k: v for k, v in columns.items() if k != CORRECTION_COLUMN}}
    mapping = parse_mapping(rest, origin=str(path))
    try:
        spec = ColumnSpec.model_validate({"column": given} if isinstance(given, str) else given)
    except ValidationError as exc:
        raise ContractError(
            f"{path}: invalid mapping: columns.{CORRECTION_COLUMN}:\n"
            + _format_validation_error(exc)
        ) from exc
    if spec.column is None:
        raise ContractError(
            f"{path}: columns.{CORRECTION_COLUMN}: name the one source column that says a row "
            "corrects the stored result (a constant would mark every row: that is --correction)"
        )
    if spec.values is not None and not all(isinstance(v, bool) for v in spec.values.values()):
        raise ContractError(
            f"{path}: columns.{CORRECTION_COLUMN}: a 'values' table reads the column as a "
            "yes/no flag (values: {S: true, N: false}); to keep the text as the reason, map "
            "the column alone"
        )
    return mapping, spec


def is_correction_flag(spec: ColumnSpec) -> bool:
    """Whether a results mapping's correction column is a yes/no flag, not the reason's text."""
    return any(x is not None for x in (spec.true_values, spec.false_values, spec.values)) or (
        spec.given
    )


def map_correction(raw: pd.DataFrame, spec: ColumnSpec) -> pd.Series:
    """A results file's correction column as each row's reason (text, None where empty), or as
    a yes/no flag (``is_correction_flag``: True, False, None where empty)."""
    if spec.column not in raw.columns:
        raise ContractError(
            f"columns.{CORRECTION_COLUMN}: {_absent_columns([str(spec.column)], raw)}"
        )
    kind = "bool" if is_correction_flag(spec) else "str"
    converted, _ = _convert_all(raw, [(CORRECTION_COLUMN, kind, spec)], None)
    column = converted[CORRECTION_COLUMN].astype(object)
    return column.where(column.notna(), None)


# --------------------------------------------------------------------------------------------
# Conversion (pure): one source Series -> one contract Series, errors collected, not raised.
# --------------------------------------------------------------------------------------------


def _as_text(series: pd.Series) -> pd.Series:
    import pandas as pd

    if pd.api.types.is_float_dtype(series.dtype) and series.dropna().mod(1).eq(0).all():
        series = series.astype("Int64")
    return series.astype("str").str.strip().where(series.notna())


def _filled(source: pd.Series) -> pd.Series:
    """Cells holding a value: not null and not blank text."""
    text = source.astype("str").str.strip()
    return source.notna() & text.ne("")


def _examples(source: pd.Series, bad: pd.Series, ids: pd.Series | None) -> str:
    rows = source[bad].head(_EXAMPLES)
    parts = []
    for idx, value in rows.items():
        row = int(idx) + 1
        ident = f" ({ids.loc[idx]})" if ids is not None and ids.loc[idx] is not None else ""
        parts.append(f"row {row}{ident}: {value!r}")
    return f"{int(bad.sum())} value(s), e.g. " + "; ".join(parts)


def _apply_values(
    text: pd.Series, table: dict[str, Any], ignore_case: bool = False
) -> tuple[pd.Series, pd.Series]:
    import pandas as pd

    if ignore_case:  # keys were checked distinct once case-folded (``_Spec``)
        table = {key.casefold(): value for key, value in table.items()}
        text = text.astype("str").str.casefold().where(text.notna())
    known = text.isin(list(table))
    bad = text.notna() & ~known
    mapped = text.map(table).where(known)
    return pd.Series(mapped, index=text.index, dtype="object"), bad


def _convert(
    spec: _Spec, kind: str, source: pd.Series, n_rows: int
) -> tuple[pd.Series, pd.Series, str, dict[str, pd.Series]]:
    """Return (converted, bad mask, problem description, local-time marks) for one column.

    The marks are masks of the values a timezone read specially (``_localise``), for the
    summary to count; empty for other kinds.
    """
    import numpy as np
    import pandas as pd

    if spec.column is None:  # constant
        source = pd.Series([spec.value] * n_rows, index=source.index, dtype="object")
    else:
        if spec.null_values:
            source = source.astype("object").where(~_as_text(source).isin(spec.null_values))
        if spec.default is not None:
            source = source.astype("object").where(_filled(source), spec.default)
    text = _as_text(source) if source.dtype != bool else source
    none = pd.Series(False, index=source.index)
    factor = None  # per-row multipliers of a 'units' table
    if spec.given:  # a boolean said by a cell being filled (null_values and default first)
        return _filled(source).astype("boolean"), none, "", {}

    if spec.part is not None or spec.units is not None:
        number_text, unit_text, unsplit = _split_unit(text)
        nothing = pd.Series(np.nan, index=text.index)
        if unsplit.any():
            return (
                nothing,
                unsplit,
                "not a number with at most one unit or currency code beside it (e.g. "
                "'350 g', 'USD 12.50', '12,50 €')",
                {},
            )
        if spec.part == "unit":
            bare = text.notna() & unit_text.isna()
            if bare.any():
                return nothing, bare, "a number without its unit or currency code beside it", {}
            text = source = unit_text
        else:
            if spec.units is not None:
                factor, unknown = _unit_factors(unit_text, spec.units)
                unknown &= text.notna()
                if unknown.any():
                    listed = ", ".join(repr(u) for u in spec.units)
                    return nothing, unknown, f"units not in the 'units' table ({listed})", {}
            text = source = number_text

    if spec.country_codes is not None:
        return (*_read_country_codes(spec, text), {})

    if spec.fold and kind in ("str", "category"):
        text = fold_name(text)

    if spec.values is not None:
        mapped, bad = _apply_values(text, spec.values, spec.ignore_case)
        if spec.unlisted == "keep":  # a few codes renamed, the others as written
            mapped, bad = mapped.where(~bad, text), bad & False
        if bad.any():
            return mapped, bad, f"codes not in the 'values' table ({', '.join(spec.values)})", {}
        if kind in ("str", "category"):
            return _as_text(mapped), none, "", {}
        text = mapped  # e.g. POS -> true, then parsed by kind below

    if kind == "bool":
        if spec.true_values is not None or spec.false_values is not None:
            trues, falses = spec.true_values or [], spec.false_values or []
            out = pd.Series(pd.NA, index=text.index, dtype="boolean")
            out[text.isin(trues)] = True
            out[text.isin(falses)] = False
            if spec.values is None:
                # cells the export typed as booleans (Parquet, a workbook) are read as they
                # are: the tables say how the column's text writes yes and no
                typed = source.map(lambda v: isinstance(v, (bool, np.bool_)), na_action="ignore")
                typed = typed.astype("boolean").fillna(False).astype(bool)
                if typed.any():
                    out[typed] = source[typed].astype(bool)
            bad = out.isna() & text.notna()
            return out, bad, f"not in true_values {trues} or false_values {falses}", {}
        return text, none, "", {}  # contract's coercion reads true/false, yes/no, 1/0

    if kind in ("int", "float"):
        if pd.api.types.is_numeric_dtype(source.dtype) and spec.values is None:
            number = source.astype("float64")
        elif spec.decimal == AUTO_DECIMAL:
            number, ambiguous = _auto_decimal(text.astype("str").where(text.notna()))
            if ambiguous.any():
                return (
                    pd.Series(np.nan, index=text.index),
                    ambiguous,
                    "one separator before exactly three digits (12,500 or 12.500): a decimal "
                    "mark or thousands, the cell cannot tell (decimal: auto); write such "
                    "amounts with both marks or two decimals, or set the row aside",
                    {},
                )
        else:
            cleaned = text.astype("str").where(text.notna())
            if spec.thousands == " ":
                # typography writes the space between thousands unbreakable (U+00A0, and the
                # narrow U+202F French software uses): the same separator
                cleaned = cleaned.str.replace("[\u00a0\u202f]", " ", regex=True)
            if spec.thousands:
                misgrouped = _misgrouped(cleaned, spec.thousands, spec.decimal or ".")
                if misgrouped.any():
                    return (
                        pd.Series(np.nan, index=text.index),
                        misgrouped,
                        f"the thousands separator {spec.thousands!r} without groups of 3 digits "
                        f"after it (e.g. 1{spec.thousands}234{spec.thousands}567"
                        f"{spec.decimal or '.'}5): the mapping's decimal "
                        f"({spec.decimal or '.'!r}) and thousands separators do not fit this "
                        "column",
                        {},
                    )
                cleaned = cleaned.str.replace(spec.thousands, "", regex=False)
            elif spec.values is None:
                ungrouped = _separator_without_thousands(cleaned, spec.decimal or ".")
                if ungrouped.any():
                    problem = _ungrouped_problem(spec)
                    return pd.Series(np.nan, index=text.index), ungrouped, problem, {}
            if spec.decimal and spec.decimal != ".":
                cleaned = cleaned.str.replace(spec.decimal, ".", regex=False)
            number = pd.to_numeric(cleaned, errors="coerce")
        bad = number.isna() & text.notna()
        if bad.any():
            hint = f" with decimal {spec.decimal!r}" if spec.decimal else ""
            return number, bad, f"not numbers{hint}", {}
        if spec.scale is not None:
            number = number * spec.scale
        if factor is not None:
            number = number * factor
        if kind == "int":
            # scaling can leave float noise (e.g. 3 * 0.1); round what is whole to 9 decimals
            number = number.round(9)
            frac = number.notna() & (np.floor(number) != number)
            if frac.any():
                return number, frac, "not whole numbers", {}
        return number, none, "", {}

    if kind == "datetime":
        if pd.api.types.is_datetime64_any_dtype(source.dtype) and spec.column is not None:
            (stamps, marks), bad, problem = _localise(source, spec), none, ""
            if source.dt.tz is None:  # a workbook's date cell: a day alone, held as midnight
                marks = {**marks, DATE_ONLY_MARK: _at_midnight(source)}
        else:
            if spec.calendar == "buddhist":
                text = _gregorian_years(text)
            stamps, bad, problem, marks = _convert_datetime(spec, text)
        if spec.offset and not bad.any():
            stamps = stamps + pd.Timedelta(spec.offset)
        return stamps, bad, problem, marks

    return text, none, "", {}


# ``decimal: auto``: each cell's decimal mark read from the cell itself, for an amount column
# whose rows follow their own currency's conventions (a marketplace's "€22,77" beside
# "$63.62", "1.234,50 €" beside "US$ 1,234.50"): one mark per column refused such a file whole.
AUTO_DECIMAL = "auto"
# a cell read with ``decimal: auto``: digits, at most one kind of separator repeated in
# groups of three, and a last separator before the decimals
_AUTO_NUMBER = re.compile(r"[+-]?\d{1,3}(?:([.,\u00a0 ])\d{3})*(?:([.,])\d+)?|[+-]?\d+(?:[.,]\d+)?")


def _auto_decimal(text: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Numbers of cells each written with its own decimal mark (``decimal: auto``), and the
    cells no reading settles: one separator followed by exactly three digits (``12,500``:
    twelve and a half, or twelve thousand five hundred?). Both marks in a cell: the last one
    is the decimal (``1.234,50``, ``1,234.50``); one mark repeated: thousands (``1,234,567``);
    one mark once before 1-2 or 4+ digits: the decimal (``22,77``, ``4.15``)."""
    import numpy as np
    import pandas as pd

    values = np.full(len(text), np.nan)
    ambiguous = np.zeros(len(text), dtype=bool)
    for i, cell in enumerate(text.tolist()):
        if cell is None or (isinstance(cell, float) and cell != cell):
            continue
        cell = str(cell).strip().replace("\u00a0", " ").replace("\u202f", " ")
        marks = [c for c in cell if c in ".,"]
        if not _AUTO_NUMBER.fullmatch(cell):
            continue  # not a number: refused as one below
        if not marks:
            digits = cell.replace(" ", "")
        elif len(set(marks)) == 2:
            decimal = marks[-1]
            digits = cell.replace(" ", "").replace("." if decimal == "," else ",", "")
            digits = digits.replace(decimal, ".")
        elif len(marks) > 1:  # one mark, repeated: it groups thousands
            digits = cell.replace(" ", "").replace(marks[0], "")
        else:
            after = len(cell) - cell.index(marks[0]) - 1
            if after == 3:
                ambiguous[i] = True
                continue
            digits = cell.replace(" ", "").replace(marks[0], ".")
        try:
            values[i] = float(digits)
        except ValueError:
            continue
    return pd.Series(values, index=text.index), pd.Series(ambiguous, index=text.index)


def _separator_without_thousands(text: pd.Series, decimal: str) -> pd.Series:
    """Values holding ``.`` or ``,`` other than ``decimal``, for a spec without ``thousands``.

    With ``decimal: ","`` pandas reads ``1.234`` (1,234 grams in a German export) as 1.234
    and ``1.200`` as 1.2, silently; a ``,`` with the default decimal does not convert at all.
    Either way the separator groups thousands the mapping does not declare, or the decimal is
    the wrong one: refused, so the mapping says which.
    """
    held = text.notna() & False
    for separator in _other_separators(decimal):
        held |= text.str.contains(separator, regex=False).fillna(False).astype(bool)
    return held


def _other_separators(decimal: str) -> list[str]:
    return [separator for separator in (".", ",") if separator != decimal]


def _ungrouped_problem(spec: _Spec) -> str:
    decimal = spec.decimal or "."
    other = _other_separators(decimal)[0]
    example = (
        "1.234 would be read as 1.234, not 1234"
        if other == "."
        else "is 1,234 one thousand two hundred and thirty-four, or 1.234?"
    )
    return (
        f"numbers holding {' or '.join(map(repr, _other_separators(decimal)))}, but the "
        f"mapping reads {decimal!r} as the decimal separator and gives no thousands separator "
        f'({example}): if {other!r} groups thousands, add thousands: "{other}" to the '
        f'column\'s spec; if it is the decimal separator, set decimal: "{other}"'
    )


def _misgrouped(text: pd.Series, thousands: str, decimal: str) -> pd.Series:
    """Values that use the thousands separator without 3-digit groups after it: ``17.10``
    read with thousands '.' is no 1,710 but a sign that the separators are wrong.

    The Indian grouping (lakh and crore: ``1,90,581.82``, ``1,23,45,678``, groups of two
    above the last three) is a grouping too: no other reading of such a value exists, and an
    Indian export writes every INR amount so (probe, 2026-12)."""
    t, d = re.escape(thousands), re.escape(decimal)
    grouped = text.str.fullmatch(
        rf"[+-]?(?:[0-9]{{1,3}}(?:{t}[0-9]{{3}})+|[0-9]{{1,2}}(?:{t}[0-9]{{2}})+{t}[0-9]{{3}})"
        rf"(?:{d}[0-9]*)?"
    )
    uses = text.str.contains(thousands, regex=False)
    return (uses & ~grouped).fillna(False).astype(bool)


# a Buddhist-era year in a date's text: four digits from 2400 (1857) to 2799 (2256), not
# part of a longer number, nor the fraction of a time's seconds (10:05:33.2569)
_BUDDHIST_YEAR = r"(?<![0-9])(?<!:[0-9][0-9][.,])(2[4-7][0-9][0-9])(?![0-9])"
_BUDDHIST_ERA_OFFSET = 543


def _gregorian_years(text: pd.Series) -> pd.Series:
    """Dates written with Buddhist-era years (``05/10/2569``) with their Gregorian years
    (``05/10/2026``), as text for the spec's format to read (``calendar: buddhist``)."""
    return text.str.replace(
        _BUDDHIST_YEAR, lambda m: str(int(m.group(1)) - _BUDDHIST_ERA_OFFSET), regex=True
    )


# The years a date of each day-converted calendar may have (what its converter knows; a year
# outside them, a Gregorian one among others, is refused rather than read in another calendar)
CALENDAR_YEARS = {"hijri": (1343, 1500), "jalali": (1300, 1500)}
_DATE_PARTS = {"%Y": r"([0-9]{4})", "%m": r"([0-9]{1,2})", "%d": r"([0-9]{1,2})"}


def _calendar_dates(text: pd.Series, fmt: str, calendar: str) -> pd.Series:
    """The text's dates of a Hijri or Solar Hijri ``calendar`` as Gregorian dates, written in
    the layout ``fmt`` reads (day, month and year where it has them, two-digit day and
    month). A date that is none of that calendar (30 Safar in a 29-day month, a year outside
    ``CALENDAR_YEARS``) keeps its text with a "?" after it, for the format to refuse.
    Formats without %Y, %m and %d (Unix times, serial days) are left alone."""
    parts = sorted((fmt.find(d), d) for d in _DATE_PARTS if d in fmt)
    if len(parts) != 3:
        return text
    (a, first), (b, second), (c, third) = parts
    # the literal text between the three (its separators), as the format writes it
    between = fmt[a + 2 : b], fmt[b + 2 : c]
    if any("%" in sep for sep in between):
        return text
    pattern = re.compile(
        r"(?<![0-9])"
        + _DATE_PARTS[first]
        + re.escape(between[0])
        + _DATE_PARTS[second]
        + re.escape(between[1])
        + _DATE_PARTS[third]
        + r"(?![0-9])"
    )
    order = (first, second, third)
    low, high = CALENDAR_YEARS[calendar]

    def gregorian(match: re.Match[str]) -> str:
        found = dict(zip(order, (int(g) for g in match.groups()), strict=True))
        year, month, day = found["%Y"], found["%m"], found["%d"]
        try:
            if not low <= year <= high:
                raise ValueError(f"year {year}")
            if calendar == "hijri":
                from hijridate import Hijri

                date = Hijri(year, month, day).to_gregorian()
            else:
                import jdatetime

                date = jdatetime.date(year, month, day).togregorian()
        except (ValueError, OverflowError, TypeError):
            return match.group(0) + "?"
        written = {"%Y": f"{date.year:04d}", "%m": f"{date.month:02d}", "%d": f"{date.day:02d}"}
        return between[0].join((written[first], written[second])) + between[1] + written[third]

    values = text.dropna().unique()
    converted = {v: pattern.sub(gregorian, str(v)) for v in values}
    return text.map(converted) if converted else text


def _convert_datetime(
    spec: _Spec, text: pd.Series
) -> tuple[pd.Series, pd.Series, str, dict[str, pd.Series]]:
    """Text read with the spec's format(s), each value by the first that reads it whole."""
    import pandas as pd

    formats = spec.formats
    if formats is None or formats == ["ISO8601"]:
        if spec.calendar in CALENDAR_YEARS:
            text = _calendar_dates(text, "%Y-%m-%d", spec.calendar)
        return _convert_iso(spec, text)
    out = pd.Series(pd.NaT, index=text.index, dtype="datetime64[us, UTC]")
    none = pd.Series(False, index=text.index)
    marks = {"skipped": none, "repeated": none, DATE_ONLY_MARK: none}
    left = text.notna()
    failures = []
    for fmt in formats:
        if not left.any():
            break
        part = text[left]
        if spec.calendar in CALENDAR_YEARS:
            part = _calendar_dates(part, fmt, spec.calendar)
        try:
            stamps, read, part_marks = _read_format(spec, fmt, part)
        except (ValueError, re.error) as exc:  # formats were checked with the mapping
            failures.append(f"{fmt!r} ({exc})")
            continue
        if swapped := day_month_swapped(fmt, part[read]):
            raise ContractError(f"column {spec.column!r}: {swapped}")
        done = read[read].index
        out.loc[done] = stamps.loc[done].astype(out.dtype)
        for mark, mask in part_marks.items():
            marks[mark] = marks[mark] | (mask & read).reindex(text.index, fill_value=False)
        left.loc[done] = False
    if left.any():
        if len(formats) > 1:
            problem = f"not timestamps in any of the formats {formats}"
        elif formats == [EXCEL_FORMAT]:
            problem = (
                f"not spreadsheet serial dates (format {EXCEL_FORMAT!r}: days since "
                f"{_EXCEL_EPOCH}, e.g. 46023.5 for 2026-01-01 12:00)"
            )
        elif formats[0] in EPOCH_FORMATS:
            unit = "seconds" if formats[0] == "epoch_s" else "milliseconds"
            problem = (
                f"not Unix times in {unit} from 1990 to 2100 (format {formats[0]!r}, e.g. "
                f"{1_767_225_600 * (1 if unit == 'seconds' else 1000)} for 2026-01-01 00:00 UTC)"
            )
        else:
            problem = f"not timestamps in format {formats[0]!r}"
        if failures:
            problem += f"; not readable with format {', '.join(failures)}"
        year_first = text[left].str.fullmatch(r"\d{4}-\d{2}-\d{2}(?: \d{2}:\d{2}:\d{2})?")
        if bool(year_first.fillna(False).any()):
            # a workbook's own date cells in a column of text dates are written so
            # (``_cell_text``): said, not left to look like text the format did not fit
            problem += (
                " (values written year first, as a spreadsheet's own date cells are: add "
                "'%Y-%m-%d %H:%M:%S' and '%Y-%m-%d' to the column's formats to read them too)"
            )
        return out, left, problem, {}
    return out, none, "", marks


def _read_format(
    spec: _Spec, fmt: str, text: pd.Series
) -> tuple[pd.Series, pd.Series, dict[str, pd.Series]]:
    """``text`` read with one format: UTC stamps, the mask of values it read, DST marks."""
    import pandas as pd

    if fmt == "ISO8601":
        stamps, bad, _, marks = _convert_iso(spec, text)
        return stamps, ~bad, marks
    if fmt in EPOCH_FORMATS:
        stamps = _epoch(text, EPOCH_FORMATS[fmt])
        return stamps, stamps.notna(), {}
    zoned = "%z" in fmt or "%Z" in fmt
    if fmt == EXCEL_FORMAT:
        parsed = _excel_serials(text)
    else:
        # with an offset in the format, values may carry different ones (a DST change)
        parsed = pd.to_datetime(text, format=fmt, errors="coerce", utc=zoned)
        if not zoned and ends_in_literal_z(fmt):
            # "...%SZ": the values say they are UTC; read in the mapping's timezone they were
            # an hour or more off, unsaid (probe 32: Paris times one hour early)
            parsed, zoned = parsed.dt.tz_localize("UTC"), True
    read = parsed.notna()
    stamps, marks = _localise(parsed, spec)
    if not zoned:  # as written: a day format, a serial without a fraction, a 00:00:00
        marks = {**marks, DATE_ONLY_MARK: read & _at_midnight(parsed)}
    return stamps, read, marks


# A column read with a day/month format is refused as swapped when every value's day is at
# most 12 (either order reads), read as written its dates spread over at least this many days,
# and read the other way round they would lie within a quarter of that: an export switched to
# the other order (US month/day) had its week of 1-9 November read as 11 January to 11
# September, passed the gate and went into the history, unsaid (probe 32). A real history in
# the mapping's order has days above 12, or its other reading is the wider one.
SWAP_MIN_VALUES = 20
SWAP_SAMPLE = 20_000
SWAP_MIN_SPAN_DAYS = 60


def day_month_swapped(fmt: str, text: pd.Series) -> str | None:
    """Why ``text`` (the values ``fmt`` read) looks written in the other day/month order, or
    None. Only for strptime formats holding both ``%d`` and ``%m``."""
    import pandas as pd

    if "%d" not in fmt or "%m" not in fmt or len(text) < SWAP_MIN_VALUES:
        return None
    # judged on an even sample (a million rows parsed twice cost two seconds), then, in the
    # rare case it says swapped, confirmed on every value: one day above 12 clears it
    step = max(1, len(text) // SWAP_SAMPLE)
    if step > 1 and day_month_swapped(fmt, text.iloc[::step]) is None:
        return None
    written = pd.to_datetime(text, format=fmt, errors="coerce").dropna()
    if getattr(written.dt, "tz", None) is not None:  # an offset in the format: the local time
        written = written.dt.tz_localize(None)
    if len(written) < SWAP_MIN_VALUES or int(written.dt.day.max()) > 12:
        return None
    span = written.max() - written.min()
    if span < pd.Timedelta(days=SWAP_MIN_SPAN_DAYS):
        return None
    other = pd.to_datetime(
        {"year": written.dt.year, "month": written.dt.day, "day": written.dt.month},
        errors="coerce",
    ).dropna()
    if len(other) < len(written) or (other.max() - other.min()) * 4 > span:
        return None
    day_first = fmt.index("%d") < fmt.index("%m")
    turned = fmt.replace("%d", "\0").replace("%m", "%d").replace("\0", "%m")
    return (
        f"read with format {fmt!r} ({'day' if day_first else 'month'} first) its dates spread "
        f"from {written.min():%Y-%m-%d} to {written.max():%Y-%m-%d} with no day above 12; read "
        f"{'month' if day_first else 'day'} first they lie within {other.min():%Y-%m-%d} .. "
        f"{other.max():%Y-%m-%d}: the export writes the other order? give format {turned!r}"
    )


def ends_in_literal_z(fmt: str) -> bool:
    """Whether a strptime format ends in the letter Z, ISO 8601's mark of UTC, rather than in
    the ``%Z`` directive (which pandas reads as a zone name)."""
    stripped = fmt.rstrip()
    return stripped.endswith("Z") and not stripped.endswith("%Z")


def _at_midnight(written: pd.Series) -> pd.Series:
    """Which naive times, as written, are midnight to the microsecond (``DATE_ONLY_MARK``)."""
    return (written.notna() & written.eq(written.dt.normalize())).fillna(False).astype(bool)


def _epoch(text: pd.Series, us_per_unit: int) -> pd.Series:
    """Unix times in seconds or milliseconds -> UTC timestamps; NaT where not one (or outside
    1990-2100). Exact: whole microseconds, never through a float of the whole count."""
    import numpy as np
    import pandas as pd

    number = pd.to_numeric(text.astype("str").str.strip().where(text.notna()), errors="coerce")
    low, high = (bound * 1_000_000 // us_per_unit for bound in _EPOCH_RANGE_S)
    number = number.where(number.between(low, high))
    micros = (number * us_per_unit).round()
    known = micros.notna().to_numpy()
    values = np.full(len(text), np.datetime64("NaT"), dtype="datetime64[us]")
    values[known] = micros[known].to_numpy(dtype=np.int64).astype("datetime64[us]")
    return pd.Series(values, index=text.index).dt.tz_localize("UTC")


def _excel_serials(text: pd.Series) -> pd.Series:
    """Spreadsheet serial days (``46023.5``) -> naive timestamps; NaT where not one.

    Rounded to the millisecond, a spreadsheet's own precision: a time of day stored as a
    binary fraction (0.1 d) would otherwise land microseconds off the written time.
    """
    import pandas as pd

    number = pd.to_numeric(text.astype("str").str.strip().where(text.notna()), errors="coerce")
    number = number.where(number.between(1, _EXCEL_MAX_SERIAL))
    millis = (number * 86_400_000).round()
    return pd.Timestamp(_EXCEL_EPOCH) + pd.to_timedelta(millis, unit="ms")


def _split_unit(text: pd.Series) -> tuple[pd.Series, pd.Series, pd.Series]:
    """Cells holding a number and at most one unit or currency code, either side of it.

    Returns the number as text, the unit (null where the cell has none) and the mask of
    cells that are no such thing ("kg", "12 kg 300 g", "EUR 12 USD").
    """
    parts = text.str.extract(NUMBER_WITH_UNIT)
    matched = parts["number"].notna()
    before = parts["before"].fillna("").str.strip()
    after = parts["after"].fillna("").str.strip()
    unsplit = (text.notna() & (~matched | (before.ne("") & after.ne("")))).astype(bool)
    unit = before.where(before.ne(""), after)
    unit = unit.where(matched & unit.ne(""))
    return parts["number"].where(matched), unit, unsplit


def _unit_factors(unit: pd.Series, table: dict[str, float]) -> tuple[pd.Series, pd.Series]:
    """Each row's multiplier from the ``units`` table (matched whatever the case; a number
    without a unit only if the table has the key ``""``), and the mask of unknown units."""
    folded = {key.casefold(): factor for key, factor in table.items()}
    key = unit.fillna("").str.casefold()
    known = key.isin(list(folded))
    return key.map(folded).astype("float64"), ~known


def _read_country_codes(spec: _Spec, text: pd.Series) -> tuple[pd.Series, pd.Series, str]:
    """ISO 3166 alpha-3 or numeric codes -> alpha-2; the column's ``values`` table first
    (codes beyond the standard, e.g. ``XKX``), so an administration's own codes still read."""
    if spec.country_codes == "name":
        # names in any language iso-codes translates them into (China, Chine, Vereinigte
        # Staaten, 中国), or ISO alpha-2/alpha-3 codes among them; each distinct value once
        names = name_to_alpha2()
        distinct = text.dropna().unique()
        read = {
            v: (
                v.strip().upper()
                if v.strip().upper() in ALPHA2
                else ALPHA3_TO_ALPHA2.get(v.strip().upper()) or names.get(plain_name(v))
            )
            for v in distinct
        }
        table, key = read, text
        example = "China, Allemagne, Estados Unidos"
    elif spec.country_codes == "alpha3":
        table, key = ALPHA3_TO_ALPHA2, text.str.upper()
        example = "CHN, DEU"
    else:
        table, key = NUMERIC_TO_ALPHA2, text.str.zfill(3)
        example = "156, 276"
    own = spec.values or {}
    if spec.ignore_case:
        own = {code.casefold(): country for code, country in own.items()}
        text = text.str.casefold()
    in_own = text.isin(list(own)).astype(bool)
    out = key.map(table).where(~in_own, text.map(own))
    bad = (text.notna() & ~in_own & out.isna()).astype(bool)
    problem = (
        f"not ISO 3166 {spec.country_codes} country codes (e.g. {example}); a column mixing "
        "codes and country names reads with country_codes: name (alpha-2, alpha-3 and names "
        "alike); a code beyond the standard goes in the column's 'values' table"
        if spec.country_codes != "name"
        else f"not country names the ISO 3166 names and their translations hold (e.g. "
        f"{example}); write the others in the column's 'values' table"
    )
    return out.astype("object"), bad, problem


def _convert_iso(
    spec: _Spec, text: pd.Series
) -> tuple[pd.Series, pd.Series, str, dict[str, pd.Series]]:
    """ISO 8601 text (no ``format``): zoned values converted from their offset, naive ones
    local to ``spec.timezone``. Anything else is refused: its day/month order is not known."""
    from features.intake.contract import parse_utc

    text = text.astype("str").where(text.notna())
    stamps, bad = parse_utc(text)  # the gate's reader: naive values as UTC
    if bad.any():
        return stamps, bad, _not_iso_problem(text[bad]), {}
    marks: dict[str, pd.Series] = {}
    naive = text.notna() & ~text.str.contains(_ZONED_TIME, regex=True).fillna(False)
    # naive values as written (read as UTC): a day alone is their midnight
    dated = naive & _at_midnight(stamps.dt.tz_localize(None))
    if spec.timezone is not None and naive.any():
        local, marks = _localise(stamps[naive].dt.tz_localize(None), spec)
        stamps = stamps.where(~naive, local.astype(stamps.dtype))
        marks = {k: m.reindex(text.index, fill_value=False) for k, m in marks.items()}
    return stamps, bad, "", {**marks, DATE_ONLY_MARK: dated}


# a time ending in a zone's abbreviation (CET, CEST, EST, JST), which no reader takes: they
# are ambiguous (IST is India's, Israel's and Ireland's), so the mapping names the zone
_ZONE_ABBREVIATION = r".*[0-9]\s*\(?([A-Z]{2,5})\)?"


def _not_iso_problem(values: pd.Series) -> str:
    abbreviations = values.str.strip().str.extract(f"^{_ZONE_ABBREVIATION}$")[0].dropna()
    if len(abbreviations) and abbreviations.str.fullmatch("UTC|GMT|Z").sum() < len(abbreviations):
        found = sorted(set(abbreviations))[:4]
        return (
            f"times ending in a zone abbreviation ({', '.join(found)}), which is not a zone a "
            "reader can take (IST is India's, Israel's and Ireland's): give the column's "
            "timezone (e.g. timezone: Europe/Paris for CET/CEST) and a format per abbreviation "
            "with it as literal text, e.g. format: ['%Y-%m-%d %H:%M:%S CET', "
            f"'%Y-%m-%d %H:%M:%S CEST'] (e.g. {str(values.dropna().iloc[0]).strip()!r})"
        )
    if values.str.strip().str.match(r"[0-9]{4}-[0-9]{2}-[0-9]{2}").fillna(False).all():
        # year first, as ISO writes it, yet unread: a month or day that does not exist
        # (2026-13-45), not a question of day/month order
        return (
            "not a date that exists (year first as ISO 8601 writes it, but a month above 12, a "
            "day past the month's end, or an hour past 23): the export wrote an impossible "
            "date; correct it, or set the row aside (--quarantine)"
        )
    if values.str.strip().str.fullmatch(r"[+-]?[0-9]+(?:[.,][0-9]+)?").all():
        return (
            "numbers, not timestamps: if they are a spreadsheet's serial dates (46023.5 for "
            "2026-01-01 12:00), read them with format: excel; Unix times with format: epoch_s "
            "(seconds) or epoch_ms (milliseconds)"
        )
    return (
        "not ISO 8601 timestamps (year first, e.g. 2026-01-02T10:00:00Z) and the mapping gives "
        "no 'format', so the day/month order cannot be told (02/01/2026: 2 January or "
        "1 February?); give the column's format in the mapping, e.g. format: '%d/%m/%Y %H:%M'"
    )


def _localise(parsed: pd.Series, spec: _Spec) -> tuple[pd.Series, dict[str, pd.Series]]:
    """Naive local times -> UTC in ``spec.timezone`` (UTC if none); aware times -> UTC.

    A time the spring change skips (02:30 when clocks jump from 02:00 to 03:00) is read with
    the offset in force before the change, i.e. moved forward by the jump (02:30 -> 03:30), so
    the times inside the gap keep their order instead of collapsing onto the first instant
    after it. A time the autumn change repeats is read as standard time. Also returned: masks
    of both (``skipped``, ``repeated``) for the ingest summary to count.
    """
    import numpy as np
    import pandas as pd

    if isinstance(parsed.dtype, pd.DatetimeTZDtype):
        return parsed.dt.tz_convert("UTC"), {}
    zone = spec.timezone or "UTC"
    standard = parsed.dt.tz_localize(
        zone, ambiguous=np.zeros(len(parsed), dtype=bool), nonexistent="NaT"
    ).dt.tz_convert("UTC")
    summer = parsed.dt.tz_localize(
        zone, ambiguous=np.ones(len(parsed), dtype=bool), nonexistent="NaT"
    ).dt.tz_convert("UTC")
    skipped = (standard.isna() & parsed.notna()).astype(bool)
    repeated = (standard.notna() & standard.ne(summer)).astype(bool)
    if skipped.any():
        from zoneinfo import ZoneInfo

        # pandas shifts by one timedelta for all; the jump is the zone's own (30 min on Lord
        # Howe Island), so each time takes the offset before its change (PEP 495: fold=0)
        tz = ZoneInfo(zone)
        before = pd.to_timedelta(
            [tz.utcoffset(t.to_pydatetime(warn=False)) for t in parsed[skipped]]
        )
        moved = (parsed[skipped] - before.to_numpy()).dt.tz_localize("UTC")
        standard = standard.where(~skipped, moved.astype(standard.dtype))
    return standard, {"skipped": skipped, "repeated": repeated}


def _check_structure(raw: pd.DataFrame, mapping: Mapping) -> None:
    problems: list[str] = []
    mapped = set(mapping.columns)
    outcome_names = [f.name for f in FIELDS if f.scope == "outcome"]
    with_outcomes = any(name in mapped for name in outcome_names)
    unmapped = [
        f.name for f in FIELDS if f.required and f.name not in mapped and (f.scope == "declaration")
    ]
    if unmapped:
        problems.append(f"required contract field(s) not mapped: {', '.join(unmapped)}")
    if with_outcomes and "inspected" not in mapped:
        problems.append(
            "outcome field(s) mapped without 'inspected': "
            + ", ".join(n for n in outcome_names if n in mapped)
        )
    missing = [c for c in mapping.source_columns() if c not in raw.columns]
    if missing:
        problems.append(_absent_columns(missing, raw))
    if problems:
        raise ContractError("mapping does not fit the data:\n  " + "\n  ".join(problems))


def _absent_columns(missing: list[str], raw: pd.DataFrame) -> str:
    """Columns the mapping names that the file lacks, quoted (a trailing space shows), each
    with the file's column it differs from only by spaces or case, if any."""
    present = [str(c) for c in raw.columns]
    alike = {name.strip().casefold(): name for name in present}
    named = []
    for column in dict.fromkeys(missing):
        near = alike.get(column.strip().casefold())
        hint = f" (the file has {near!r}: write it so in the mapping)" if near else ""
        named.append(f"{column!r}{hint}")
    return (
        f"source column(s) named in the mapping but absent from the file: {', '.join(named)} "
        f"(file has: {', '.join(map(repr, present))})" + _mojibake_hint(present)
    )


def _mojibake_hint(header: list[str]) -> str:
    """A hint when the header reads like UTF-8 decoded as a single-byte code page: the
    mapping's ``encoding`` is the likelier mistake than its column names."""
    text = "".join(header)
    if text.startswith(("\u00ef\u00bb\u00bf", "\u00c3\u00af\u00c2\u00bb\u00c2\u00bf")):
        return (
            "; the file starts with a UTF-8 byte-order mark read in another encoding: it is "
            "UTF-8, so set encoding: utf-8-sig (or utf-8) in the mapping"
        )
    if re.search("\u00c3[\u0080-\u00bf\u00a0-\u00ff\u2018-\u203a\u0152-\u0178]", text):
        return (
            "; the names read like UTF-8 text decoded in another encoding ('\u00c3\u00a7' for "
            "'\u00e7'): the file is likely UTF-8, so set encoding: utf-8 in the mapping"
        )
    return ""


def _hs_sources(mapping: Mapping) -> tuple[str, ...]:
    """The source column of ``hs_code``, if it has one."""
    spec = mapping.columns.get("hs_code")
    return (spec.column,) if spec is not None and spec.column is not None else ()


def restore_hs_zeros(raw: pd.DataFrame, mapping: Mapping) -> tuple[pd.DataFrame, int]:
    """``raw`` with a numeric source column of ``hs_code`` as text, the leading zero a number
    drops from chapters 01-09 given back; and how many codes got it.

    HS codes have 6, 8 or 10 digits, so a stored number of 5, 7 or 9 digits lost exactly one
    zero. Text columns are left as they are (their zeros are kept; the rules judge them),
    unless the spec says ``lost_leading_zero`` (the text was written from numbers).
    """
    import pandas as pd

    spec = mapping.columns.get("hs_code")
    if spec is None or spec.column is None or spec.column not in raw.columns:
        return raw, 0
    source = raw[spec.column]
    numeric = pd.api.types.is_numeric_dtype(source.dtype) and not pd.api.types.is_bool_dtype(source)
    if not numeric and not spec.lost_leading_zero:
        return raw, 0
    text = _as_text(source)
    short = text.str.fullmatch(_HS_LOST_ZERO).fillna(False).astype(bool)
    return raw.assign(**{spec.column: text.mask(short, "0" + text)}), int(short.sum())


def _identifier_specs(mapping: Mapping) -> list[tuple[str, _Spec]]:
    """(name, spec) of the identifiers the mapping reads: the contract's ``_id`` fields and
    the office, in name order, then the entity extras."""
    specs: list[tuple[str, _Spec]] = [
        (n, mapping.columns[n]) for n in sorted(IDENTIFIER_FIELDS) if n in mapping.columns
    ]
    return specs + [(e.name, e) for e in mapping.extras if e.kind == "entity"]


def read_excel_text_guards(
    raw: pd.DataFrame, mapping: Mapping
) -> tuple[pd.DataFrame, dict[str, int]]:
    """``raw`` with the HS codes and identifiers a CSV written "for Excel" guards as text
    (``="000123"``, ``'S002``) read without the guard; and how many per field (none: left out).

    Kept, the guard made '="S001"' a seller apart from the same seller sent plain (by the API,
    another export), and a consignee's pseudonym another person's; an HS code so written was
    refused as no code without the guard named (probe 5f). Only codes and identifiers: a
    description keeps its text as written. ``=""`` is an empty cell."""
    import pandas as pd

    specs = [("hs_code", mapping.columns["hs_code"])] if "hs_code" in mapping.columns else []
    specs += _identifier_specs(mapping)
    counts: dict[str, int] = {}
    for name, spec in specs:
        if spec.column is None or spec.column not in raw.columns:
            continue
        column = raw[spec.column]
        if pd.api.types.is_numeric_dtype(column.dtype):
            continue
        text = column.astype("str").str.strip().where(column.notna())
        # a prefix test first (C speed over a million ids), the pattern on those it finds
        if not text.str.startswith(("=", "'")).fillna(False).any():
            continue
        parts = text.str.extract(f"^(?:{_EXCEL_TEXT_GUARD})$")
        guarded = parts.notna().any(axis=1)
        if not guarded.any():
            continue
        inner = parts["formula"].fillna(parts["apostrophe"])
        inner = inner.where(inner.str.strip().ne(""))  # ="" holds no value
        raw = raw.assign(**{spec.column: column.mask(guarded, inner)})
        counts[name] = int(guarded.sum())
    return raw, counts


def warn_excel_text_guards(counts: dict[str, int], mapping: Mapping, source: Any) -> None:
    """One warning per field ``read_excel_text_guards`` read."""
    _warn_per_field(
        counts,
        mapping,
        source,
        "written with a spreadsheet's text guard (=\"000123\" or '000123, a CSV made for "
        "Excel) read without it ('000123')",
    )


def _warn_per_field(counts: dict[str, int], mapping: Mapping, source: Any, what: str) -> None:
    """One warning per field of ``counts``: its source column, how many values, ``what``."""
    for name, n in counts.items():
        spec = mapping.columns.get(name) or next(e for e in mapping.extras if e.name == name)
        logger.warning(
            "%s: %s (source column %r): %d value(s) %s", source, name, spec.column, n, what
        )


def read_float_written(raw: pd.DataFrame, mapping: Mapping) -> tuple[pd.DataFrame, dict[str, int]]:
    """``raw`` with HS codes, identifiers and ISO numeric country codes written from
    floating-point numbers ("610910.0", "100002.0", "156.0") read as the whole numbers they
    are; and how many per field (none: left out).

    Kept as written, "100002.0" was a declaration of its own beside "100002" (one parcel of two
    overlapping exports taken twice) and "555001.0" a consignee apart from "555001"; an HS code
    "610910.0" was joined as tariff notation into 06109100, another chapter (probe, 2026-12),
    and "156.0" under ``country_codes: numeric`` was refused as no country. A code so written
    is a number, so one of 5, 7 or 9 digits gets the zero of chapters 01-09 back, as from a
    numeric column. Numeric columns are read as numbers already (``_as_text``)."""
    import pandas as pd

    specs = [("hs_code", mapping.columns["hs_code"])] if "hs_code" in mapping.columns else []
    specs += _identifier_specs(mapping)
    specs += [
        (name, spec) for name, _, spec in _targets(mapping) if spec.country_codes == "numeric"
    ]
    counts: dict[str, int] = {}
    for name, spec in specs:
        if spec.column is None or spec.column not in raw.columns:
            continue
        column = raw[spec.column]
        if pd.api.types.is_numeric_dtype(column.dtype):
            continue
        text = column.astype("str")
        # a substring test first (C speed over a million ids), the pattern on those it finds
        if not text.str.contains(".0", regex=False).fillna(False).any():
            continue
        text = text.str.strip().where(column.notna())
        written = text.str.fullmatch(_FLOAT_WRITTEN).fillna(False).astype(bool)
        if not written.any():
            continue
        whole = text.str.slice(0, -2)
        if name == "hs_code":
            short = whole.str.fullmatch(_HS_LOST_ZERO).fillna(False).astype(bool)
            whole = whole.mask(short, "0" + whole)
        raw = raw.assign(**{spec.column: column.mask(written, whole)})
        counts[name] = int(written.sum())
    return raw, counts


def warn_float_written(counts: dict[str, int], mapping: Mapping, source: Any) -> None:
    """One warning per field ``read_float_written`` read."""
    _warn_per_field(
        counts,
        mapping,
        source,
        "written as floating-point numbers ('100002.0') read as the whole numbers they are "
        "('100002'); export the column as text to keep codes and identifiers as written",
    )


def pad_identifier_zeros(
    raw: pd.DataFrame, mapping: Mapping
) -> tuple[pd.DataFrame, dict[str, int]]:
    """``raw`` with the identifiers whose spec says ``zero_pad: N`` zero-filled to N digits
    where they are digits only and shorter; and how many per field (none: left out).

    Only digits are padded: an id with a letter or a separator was not written from a number,
    and one already N digits or longer is as written. A numeric source column (a Parquet or
    workbook integer) is read as text first, as every identifier is."""
    specs = [(n, s) for n, s in _identifier_specs(mapping) if s.zero_pad is not None]
    padded: dict[str, int] = {}
    for name, spec in specs:
        if spec.column is None or spec.column not in raw.columns or spec.zero_pad is None:
            continue
        text = _as_text(raw[spec.column])
        short = text.str.fullmatch(r"[0-9]+").fillna(False).astype(bool)
        short &= text.str.len().lt(spec.zero_pad).fillna(False).astype(bool)
        if short.any():
            raw = raw.assign(**{spec.column: text.mask(short, text.str.zfill(spec.zero_pad))})
            padded[name] = int(short.sum())
    return raw, padded


def warn_ids_repeated(declarations: pd.DataFrame, mapping: Mapping, source: Path) -> dict[str, int]:
    """Rows of an export read without ``items:`` whose declaration id another row holds too
    ({rows, ids}; empty: none), warned. Probe 33: an export of one row per goods item ingested
    without the block exited 0, every item a parcel, and the gate then said "unique
    declaration ids" without a word of items. Said, not refused: a declaration export repeats
    a few ids by mistake, and the gate judges those."""
    if mapping.items is not None or "declaration_id" not in declarations:
        return {}
    ids = declarations["declaration_id"]
    repeated = (ids.duplicated(keep=False) & ids.notna()).to_numpy()
    if not repeated.any():
        return {}
    rows, distinct = int(repeated.sum()), int(ids[repeated].nunique())
    examples = ", ".join(str(v) for v in ids[repeated].drop_duplicates().head(3))
    logger.warning(
        "%s: %d of %d rows share their declaration_id with another row (%d ids, e.g. %s): the "
        "gate refuses repeated ids; if the export holds one row per goods item, give the "
        "mapping an items: block (`parcelrisk mapping draft` proposes one) and each "
        "declaration's items are read as one",
        source,
        rows,
        len(declarations),
        distinct,
        examples,
    )
    return {"rows": rows, "ids": distinct}


def personal_spellings(raw: pd.DataFrame, mapping: Mapping, source: Path) -> dict[str, int]:
    """Personal ids (the consignee, ``personal`` entity extras) read without ``fold`` whose
    distinct values are fewer once case and spacing are ignored: how many fewer, per field,
    each warned. Judged here, on the source's cells: once keyed, ``k0000003`` and
    ``K0000003`` are two pseudonyms nothing can compare, two consignees each with half a
    history (probe 33; sellers are judged on the ids written, ``features.intake.ingest``). The
    values are never shown: they are personal."""
    import pandas as pd

    said: dict[str, int] = {}
    for name, spec in _identifier_specs(mapping):
        personal = name in PERSONAL_FIELDS or getattr(spec, "personal", False)
        if not personal or spec.fold or spec.column is None or spec.column not in raw.columns:
            continue
        ids = pd.Series(_as_text(raw[spec.column]).dropna().unique(), dtype="string")
        folded = int(fold_name(ids).nunique())
        if folded < len(ids):
            said[name] = len(ids) - folded
            logger.warning(
                "%s: %s (source column %r, personal: not shown): %d ids are %d once case and "
                "spacing are ignored: if such spellings name one person, map the column with "
                "fold: true (otherwise each spelling is a consignee with a history of its own)",
                source,
                name,
                spec.column,
                len(ids),
                folded,
            )
    return said


# How a spreadsheet writes a long number it rounded: 7.70001E+11, 7E+11 (the sign always
# written, which no code of letters and digits such as 3E12 has)
_SPREADSHEET_SCIENTIFIC = r"[0-9](?:[.,][0-9]+)?[eE]\+[0-9]{1,3}"


def _check_identifiers_text(raw: pd.DataFrame, mapping: Mapping) -> None:
    """Refuse identifiers (the contract's ``_id`` fields, the office, entity extras) a
    spreadsheet wrote in scientific notation: 770001234567 and 770001987654 are both
    7.70001E+11, so distinct consignees would become one entity, their histories pooled,
    unsaid (probe: 155 consignees read as 3). Numbers typed as such (a Parquet or workbook
    integer column) are whole, and read as written."""
    import pandas as pd

    for name, spec in _identifier_specs(mapping):
        if spec.column is None or spec.column not in raw.columns:
            continue
        column = raw[spec.column]
        if pd.api.types.is_numeric_dtype(column.dtype):
            continue
        text = _as_text(column)
        # a substring test first (C speed over a million ids), the pattern on those it finds
        rounded = text.str.contains("E+", regex=False).fillna(False).astype(bool)
        rounded |= text.str.contains("e+", regex=False).fillna(False).astype(bool)
        if rounded.any():
            rounded &= text.str.fullmatch(_SPREADSHEET_SCIENTIFIC).fillna(False).astype(bool)
        if rounded.any():
            rows = ", ".join(str(int(i) + 1) for i in column.index[rounded.astype(bool)][:5])
            personal = name in PERSONAL_FIELDS or getattr(spec, "personal", False)
            shown = f"rows {rows}" if personal else _examples(column, rounded.astype(bool), None)
            raise ContractError(
                f"{name} (source column {spec.column!r}): {int(rounded.sum())} identifier(s) "
                "in scientific notation, rounded by the spreadsheet that wrote them, so "
                f"different ones read alike; export the column as text: {shown}"
                + (" (personal: values not shown)" if personal else "")
            )


def check_hs_text(raw: pd.DataFrame, mapping: Mapping, source: Any) -> None:
    """Refuse identifiers (``_check_identifiers_text``) and HS codes a spreadsheet wrote in
    scientific notation (``4.0221E+08``: rounded to the digits it shows, the code cannot be
    read back); warn about text codes of 5, 7 or 9
    digits when the spec does not say they lost a zero (a 9-digit national code exists, e.g.
    Japan's, so they are not changed unasked)."""
    import pandas as pd

    _check_identifiers_text(raw, mapping)
    spec = mapping.columns.get("hs_code")
    if spec is None or spec.column is None or spec.column not in raw.columns:
        return
    column = raw[spec.column]
    if pd.api.types.is_numeric_dtype(column.dtype):
        return
    text = _as_text(column)
    scientific = text.str.fullmatch(r"[0-9](?:[.,][0-9]+)?[eE][+]?[0-9]+").fillna(False)
    if scientific.any():
        raise ContractError(
            f"hs_code (source column {spec.column!r}): codes in scientific notation, rounded by "
            "the spreadsheet that wrote them, so their last digits are lost; export the column "
            f"as text: {_examples(column, scientific.astype(bool), None)}"
        )
    national = text.str.replace(r"[. -]", "", regex=True).str.fullmatch(r"\d{11,}").fillna(False)
    if spec.digits is None and national.any():
        # refused here, naming the spec that reads them, not left for validate to refuse
        raise ContractError(
            f"hs_code (source column {spec.column!r}): national codes of more than 10 digits "
            "(the contract's HS codes have 6 to 10): keep their first digits with digits: 10 "
            f"(or 8, 6) in the column's spec: {_examples(column, national.astype(bool), None)}"
        )
    if not spec.lost_leading_zero:
        odd = text.str.fullmatch(_HS_LOST_ZERO).fillna(False).astype(bool)
        if odd.any():
            logger.warning(
                "%s: hs_code (source column %r): %d code(s) of 5, 7 or 9 digits, e.g. %r: if the "
                "export wrote HS codes as numbers they lost the leading zero of chapters 01-09 "
                "(0901210000 -> 901210000, read as chapter 90); say lost_leading_zero: true in "
                "the column's spec to restore it",
                source,
                spec.column,
                int(odd.sum()),
                text[odd].iloc[0],
            )


def ascii_digits(text: pd.Series, decimal: str = ".", thousands: str | None = ",") -> pd.Series:
    """``text`` with its non-ASCII decimal digits and full-width forms written in ASCII (and
    the Arabic separators as ``decimal`` and ``thousands``), as a request's are read
    (``contract.ascii_digit_table``)."""
    return text.str.translate(ascii_digit_table(decimal, thousands))


def _reads_digits(spec: Any, kind: str) -> bool:
    """Whether a column's cells are read again in ASCII digits where they fail: numbers and
    times, and codes a table reads (``values``, ``true_values``): a Gulf export's channel ٤١
    and flag ١ are the 41 and 1 its draft lists (``draft.profile`` reads them so)."""
    tables = ("values", "true_values", "false_values")
    return kind in ("float", "int", "datetime") or any(
        getattr(spec, t, None) is not None for t in tables
    )


def _with_ascii_digits(source: pd.Series, spec: Any) -> pd.Series | None:
    """``source`` with its non-ASCII digits in ASCII where any cell has them, else None."""
    text = _as_text(source)
    foreign = text.str.contains(r"[^\x00-\x7f]", regex=True).fillna(False).astype(bool)
    if not foreign.any():
        return None
    decimal = getattr(spec, "decimal", None) or "."
    thousands = getattr(spec, "thousands", None)
    rewritten = ascii_digits(text[foreign], decimal, thousands)
    if rewritten.equals(text[foreign]):
        return None
    return source.astype("object").mask(foreign, rewritten)


def join_hs_groups(raw: pd.DataFrame, mapping: Mapping) -> tuple[pd.DataFrame, int]:
    """``raw`` with the text ``hs_code`` column's tariff notation joined: ``6109.10.00``,
    ``6109 10 00``, ``61.09.10`` -> digits; and how many codes were written so.

    National tariffs print codes in groups of two after the heading (``6109.10.00``); the
    grouping is the standard's, so joining them is no guess. Anything else with a separator
    (``610.910``) is left for the rules to refuse, as is any code that is not 6, 8 or 10 digits.
    """
    spec = mapping.columns.get("hs_code")
    if spec is None or spec.column is None or spec.column not in raw.columns:
        return raw, 0
    if (ascii_codes := _with_ascii_digits(raw[spec.column], None)) is not None:
        raw = raw.assign(**{spec.column: ascii_codes})  # ٦١٠٩١٠٠٠ -> 61091000
    text = _as_text(raw[spec.column])
    grouped = text.str.fullmatch(_HS_GROUPED).fillna(False).astype(bool)
    grouped &= text.str.contains(r"[. -]", regex=True).fillna(False).astype(bool)
    joined = text.mask(grouped, text.str.replace(r"[. -]", "", regex=True))
    if spec.digits is not None:
        # a national code's first N digits (610910000011 -> 6109100000 with digits: 10);
        # grouped national codes (6109.10.00.00.11) are joined first
        national = text.str.fullmatch(r"\d{2}(?:[. -]?\d{2}){2,}[. -]?\d*").fillna(False)
        national &= ~grouped
        digits_only = text.where(~national, text.str.replace(r"[. -]", "", regex=True))
        joined = joined.where(~national, digits_only)
        # any code longer than asked: digits: 6 reads every code as its HS subheading
        long = joined.str.fullmatch(rf"\d{{{spec.digits + 1},}}").fillna(False).astype(bool)
        joined = joined.mask(long, joined.str.slice(0, spec.digits))
    # counted: the codes written otherwise than they are read (a plain code of 6 to 10 digits
    # matches the national pattern too, and is not joined); an empty cell is no code (NaN
    # differs from NaN: a declaration without items was counted as joined)
    changed = (joined.ne(text) & text.notna()).fillna(False).astype(bool)
    if not changed.any():
        return raw, 0
    return raw.assign(**{spec.column: joined.where(raw[spec.column].notna())}), int(changed.sum())


def resolve_aliases(raw: pd.DataFrame, mapping: Mapping) -> tuple[Mapping, dict[str, str]]:
    """The mapping reading, for each spec with ``aliases``, the one of its names the file has;
    and field -> the alias read, for the summary.

    A file holding two of a spec's names is refused: which one holds the values is not known.
    None of them: left to the structure check, which names the column as missing."""
    present = {str(c) for c in raw.columns}
    read: dict[str, str] = {}

    def resolved(name: str, spec: Any) -> Any:
        if not spec.aliases:
            return spec
        found = [n for n in (spec.column, *spec.aliases) if n in present]
        if len(found) > 1:
            raise ContractError(
                f"{name}: the file has {' and '.join(map(repr, found))}, names of the same "
                "column in the mapping (column and aliases): which one holds the values is not "
                "known; drop one from the export or the mapping"
            )
        if found and found[0] != spec.column:
            read[name] = found[0]
            return spec.model_copy(update={"column": found[0], "aliases": None})
        return spec

    if not any(s.aliases for s in [*mapping.columns.values(), *mapping.extras]):
        return mapping, read
    rewritten = mapping.model_copy(
        update={
            "columns": {n: resolved(n, s) for n, s in mapping.columns.items()},
            "extras": [resolved(e.name, e) for e in mapping.extras],
        }
    )
    return rewritten, read


# What a spreadsheet writes in the first cell of a totals row at the end of an export (lowercase,
# no accents), in the languages the mapping draft reads.
_TOTAL_WORDS = ("total", "totals", "totaux", "totales", "totale", "totaal", "gesamt", "summe",
                "soma", "suma", "somme", "sum", "subtotal", "sub total", "grand total",
                "razem", "ogolem", "ogołem", "toplam", "genel toplam", "ara toplam")  # fmt: skip
# Totals rows looked for at the end (a subtotal per page, a grand total, a count).
_MAX_FOOTER_ROWS = 3


def drop_empty_and_totals_rows(
    raw: pd.DataFrame, mapping: Mapping, source: Path | str, time_field: str = "declared_at"
) -> tuple[pd.DataFrame, dict[str, int]]:
    """``raw`` without the rows that hold no declaration: rows with every cell empty (a
    spreadsheet's ``;;;;`` lines), and up to three totals rows at its end, whose id cell
    says total (``TOTAL``, ``Soma``, ``Gesamt: 199``) or is empty (not in an item export) and
    whose ``time_field`` (``declared_at``; ``inspected_at`` in a results file) is empty. Both
    are said in a warning and counted; any other row goes on to be read (and refused if it
    does not convert): a row that might be a record is never dropped."""
    import numpy as np
    import pandas as pd

    counts = {"empty": 0, "totals": 0}
    if raw.empty:
        return raw, counts
    # column by column over the rows still blank: after the first column (an id, filled on
    # nearly every row) almost none are left, so 1M rows cost ~40 ms, not ~0.9 s
    blank_rows = np.arange(len(raw))
    for name in raw.columns:
        cells = raw[name].iloc[blank_rows]
        blank_rows = blank_rows[(cells.isna() | cells.eq("")).to_numpy(dtype=bool)]
        if not len(blank_rows):
            break
    empty = pd.Series(False, index=raw.index)
    empty.iloc[blank_rows] = True
    id_spec, at_spec = mapping.columns.get("declaration_id"), mapping.columns.get(time_field)
    footer = pd.Series(False, index=raw.index)
    if (
        id_spec is not None
        and at_spec is not None
        and id_spec.column in raw.columns
        and at_spec.column in raw.columns
    ):
        filled = raw.index[~empty]
        for row in reversed(filled[-_MAX_FOOTER_ROWS:]):
            ident, when = raw.at[row, id_spec.column], raw.at[row, at_spec.column]
            plain = "" if pd.isna(ident) else plain_name(str(ident))
            # an item export may leave the id to its declaration's first row: there an empty
            # id is an item, and only a row saying total is one
            says_total = plain.startswith(_TOTAL_WORDS) or (plain == "" and not mapping.items)
            if not says_total or not (pd.isna(when) or str(when).strip() == ""):
                break
            footer[row] = True
    counts = {"empty": int(empty.sum()), "totals": int(footer.sum())}
    if counts["empty"]:
        logger.warning("%s: %d row(s) with every cell empty are not read", source, counts["empty"])
    if counts["totals"]:
        logger.warning(
            "%s: the last %d row(s) are totals (id %s, no %s): not read",
            source,
            counts["totals"],
            ", ".join(repr(str(v)) for v in raw.loc[footer, id_spec.column].fillna("")),  # type: ignore[union-attr]
            time_field,
        )
    if not (counts["empty"] or counts["totals"]):
        return raw, counts
    dropped = (empty | footer).to_numpy()
    kept = int(np.argmax(dropped)) if dropped.any() else len(raw)
    if dropped[kept:].all():  # all at the end (the usual footer): a slice, no copy
        return raw.iloc[:kept], counts
    # the rows keep their labels, the source's row positions: messages and the quarantine name
    # the rows of the file, not of what is left of it
    return raw.loc[~dropped], counts


def declaration_id_columns(mapping: Mapping) -> list[str]:
    """The source columns that may hold the declaration id (its aliases too): the records of
    an exploded JSON or XML export naming one declaration are compared by them, a document
    sent twice read once (``features.intake.jsonsrc.records_frame``)."""
    spec = mapping.columns.get("declaration_id")
    return [*spec.sources, *(spec.aliases or [])] if spec is not None else []


def drop_repeated_items(
    raw: pd.DataFrame, mapping: Mapping, source: Path | str
) -> tuple[pd.DataFrame, int]:
    """``raw`` (an item export: ``items:`` in the mapping) without the item rows that repeat
    an earlier row cell for cell, and how many; said in a warning naming them.

    An item table joined 1:n with another (documents, containers) or a message sent twice
    (an H7 record exploded again) repeats rows whole; summed, each repeat would add its
    value and weight to the declaration's, unsaid, and the gate would see a plausible total.
    A row that differs in any cell (the item's number, a second line of the same goods) is
    an item and is kept. Rows without a declaration id are left to the reader's refusal."""
    spec = mapping.columns.get("declaration_id")
    if mapping.items is None or raw.empty or spec is None or spec.column not in raw.columns:
        return raw, 0
    has_id = raw[spec.column].notna().to_numpy(dtype=bool)
    repeated = raw.duplicated(keep="first").to_numpy(dtype=bool) & has_id
    count = int(repeated.sum())
    if not count:
        return raw, 0
    rows = ", ".join(str(int(r) + 1) for r in raw.index[repeated][:_EXAMPLES])
    logger.warning(
        "%s: %d item row(s) repeat an earlier row of their declaration cell for cell (rows "
        "%s%s): read once (summed, they would add their value and weight again); a file where "
        "two lines of the same goods are meant should number its items",
        source,
        count,
        rows,
        ", ..." if count > _EXAMPLES else "",
    )
    # the rows keep their labels, the source's row positions (as ``drop_empty_and_totals_rows``)
    return raw.loc[~repeated], count


def join_columns(raw: pd.DataFrame, mapping: Mapping) -> tuple[pd.DataFrame, Mapping]:
    """``raw`` with one column per spec that joins several (named ``DATE + TIME``), and the
    mapping reading it as its ``column``; both unchanged when no spec joins columns.

    The non-empty cells of a row are joined by the spec's ``separator``; a row with none is
    empty. A date column of a workbook is written as a date (``2026-01-02``) when it holds no
    time of day, so a time column can follow it.
    """

    specs = [*mapping.columns.values(), *mapping.extras]
    if not any(spec.columns for spec in specs):
        return raw, mapping
    if any(c not in raw.columns for c in mapping.source_columns()):
        return raw, mapping  # the callers' structure checks name the missing columns
    added: dict[str, pd.Series] = {}

    def joined(spec: Any) -> Any:
        if not spec.columns:
            return spec
        name = " + ".join(spec.columns)
        if name not in added:
            parts = [_part_text(raw[column], spec.decimal or ".") for column in spec.columns]
            text = parts[0].fillna("")
            for part in parts[1:]:
                both = text.ne("") & part.notna()
                text = text.where(~both, text + spec.separator) + part.fillna("")
            added[name] = text.where(text.ne(""))
        return spec.model_copy(update={"column": name, "columns": None})

    rewritten = mapping.model_copy(
        update={
            "columns": {field: joined(spec) for field, spec in mapping.columns.items()},
            "extras": [joined(extra) for extra in mapping.extras],
        }
    )
    clash = sorted(set(added) & {str(c) for c in raw.columns})
    if clash:
        raise ContractError(f"the file already has a column named {clash[0]!r}: rename it")
    return raw.assign(**added), rewritten


def _part_text(column: pd.Series, decimal: str = ".") -> pd.Series:
    """One part of a joined column as text; empty cells null.

    A column of numbers (a workbook's or a Parquet file's typed cells) is written with
    ``decimal``, the mark the joined spec reads, and no grouping: ``1.506`` joined to ``kg``
    and read with ``decimal: ","`` and ``thousands: "."`` (the CSV's mapping reused on the
    workbook) was 1506 kg (probe, 2026-12)."""
    import pandas as pd

    if pd.api.types.is_numeric_dtype(column.dtype) and not pd.api.types.is_bool_dtype(column.dtype):
        present = column.notna()
        text = pd.Series(None, index=column.index, dtype="object")
        text[present] = column[present].astype("object").map(lambda v: _cell_text(v, decimal))
        return text
    if pd.api.types.is_datetime64_any_dtype(column.dtype):
        stamps = column.dropna()
        at_midnight = stamps.empty or bool((stamps == stamps.dt.normalize()).all())
        layout = "%Y-%m-%d" if at_midnight else "%Y-%m-%d %H:%M:%S"
        return column.dt.strftime(layout).where(column.notna())
    text = _as_text(column)
    return text.where(text.notna() & text.ne(""))


def apply_mapping(
    raw: pd.DataFrame, mapping: Mapping, fx_to_base: dict[str, float] | None = None
) -> tuple[pd.DataFrame, Contract]:
    """Convert a frame with source columns to canonical contract dtypes (plus the extras).

    ``fx_to_base`` (features.fx_to_base) is needed when the mapping gives revenue_recovered's
    currency."""
    mapping, _ = resolve_aliases(raw, mapping)
    raw, mapping = join_columns(raw, mapping)
    eur_rates = rates_to_eur(mapping, fx_to_base)
    declarations, contract, _ = _map_declarations(raw, mapping, eur_rates=eur_rates)
    return declarations, contract


def _targets(mapping: Mapping) -> list[tuple[str, str, _Spec]]:
    """(name, kind, spec) of every mapped field and extra, in the mapping's order."""
    targets: list[tuple[str, str, _Spec]] = [
        (name, FIELDS_BY_NAME[name].kind, spec) for name, spec in mapping.columns.items()
    ]
    return targets + [(e.name, _extra_kind(e), e) for e in mapping.extras]


def _map_declarations(
    raw: pd.DataFrame,
    mapping: Mapping,
    *,
    keep_index: bool = False,
    eur_rates: dict[str, float] | None = None,
    collapsed_out: list[Collapsed] | None = None,
) -> tuple[pd.DataFrame, Contract, dict[str, list[tuple[int, str]]]]:
    """``apply_mapping``, and the local times read specially, as ``_convert_all`` returns them.

    ``keep_index``: ``raw``'s index is the source's row positions (some rows set aside), so
    messages name the rows of the file, not of what is left of it.

    A mapping with ``items`` (one row per goods item) gives one row per declaration
    (``features.intake.items``); its counts are under ``local_times["items"]`` as
    ``[(item rows, declarations, most items in one)]``. Items that disagree on an ``agree``
    field stop it, unless ``collapsed_out`` takes the ``Collapsed`` to set them aside.
    """
    import pandas as pd

    _check_structure(raw, mapping)
    raw, _ = read_excel_text_guards(raw if keep_index else raw.reset_index(drop=True), mapping)
    raw, _ = read_float_written(raw, mapping)
    raw, _ = restore_hs_zeros(raw, mapping)
    raw, _ = pad_identifier_zeros(raw, mapping)
    raw, _ = join_hs_groups(raw, mapping)
    contract = mapping.contract
    with_outcomes = any(FIELDS_BY_NAME[n].scope == "outcome" for n in mapping.columns)
    id_spec = mapping.columns.get("declaration_id")
    ids = (
        _as_text(raw[id_spec.column])
        if id_spec is not None and id_spec.column is not None
        else None
    )

    converted, local_times = _convert_all(raw, _targets(mapping), ids, eur_rates)
    frame = pd.DataFrame(converted, index=raw.index)
    if with_outcomes:
        for f in FIELDS:
            if f.scope == "outcome" and f.name not in frame.columns and f.nullable:
                frame[f.name] = pd.Series(pd.NA, index=raw.index, dtype="object")
    if mapping.outcomes_only_if_inspected:
        if mapping.items is not None:
            frame = _inspected_on_every_item(frame)
        frame, local_times["outcomes_blanked"] = _blank_outcomes_not_inspected(frame, ids)
    declarations = coerce_declarations(frame, with_outcomes=with_outcomes, contract=contract)
    if mapping.items is not None:
        from features.intake.items import collapse_items

        no_id = declarations["declaration_id"].isna().to_numpy()
        if no_id.any():
            shown = ", ".join(str(i + 1) for i in raw.index[no_id][:_EXAMPLES])
            raise ContractError(
                f"declaration_id is empty on {int(no_id.sum())} item row(s) (rows {shown}): "
                "item rows are grouped into declarations by it (--quarantine sets them aside)"
            )
        collapsed = collapse_items(declarations, mapping.items)
        if collapsed_out is not None:
            collapsed_out.append(collapsed)
        elif collapsed.disagreements:
            raise ContractError(
                _item_problems(
                    collapsed.disagreements, " (--quarantine sets their declarations aside)"
                )
            )
        else:
            # texts each within the limit can exceed it joined (items: join, description's
            # default); --quarantine sets such declarations aside by the gate's own check
            _refuse_joined_too_long(collapsed, raw.index)
        declarations = coerce_declarations(
            collapsed.frame, with_outcomes=with_outcomes, contract=contract
        )
        local_times["items"] = [
            (collapsed.item_rows, len(collapsed.frame), collapsed.max_items)  # type: ignore[list-item]
        ]
    return declarations, contract, local_times


def _refuse_joined_too_long(collapsed: Collapsed, item_rows: pd.Index) -> None:
    """Refuse a declaration whose items' texts, joined, are longer than the contract allows
    (the gate's ``<name>.length`` rule), naming it, its item rows (``item_rows``: the source
    positions of the rows collapsed), the field and the limit."""
    import numpy as np

    from features.intake.items import JOINED_BY

    for name in collapsed.frame.columns:
        too_long = _longer_than_the_contract(name, collapsed.frame[name])
        if too_long is None:
            continue
        declarations = np.flatnonzero(too_long.to_numpy())
        shown = []
        for d in declarations[:_EXAMPLES].tolist():
            rows = np.asarray(item_rows)[collapsed.group == d] + 1
            shown.append(
                f"{collapsed.frame['declaration_id'].iloc[d]} (rows "
                f"{', '.join(str(r) for r in rows[:_EXAMPLES].tolist())}"
                f"{', ...' if len(rows) > _EXAMPLES else ''})"
            )
        limit = FIELDS_BY_NAME[name].max_length
        raise ContractError(
            f"{name}: the items' texts joined by {JOINED_BY!r} are longer than {limit:,} "
            f"characters (the contract's {name}.length rule) in {len(declarations)} "
            f"declaration(s): {'; '.join(shown)}; shorten them, keep one item's text "
            f"(items: {name}: principal), or set the declarations aside (--quarantine)"
        )


def _item_problems(problems: list[Any], hint: str = "") -> str:
    """One line for the items that stop an export: fields that differ between the items of
    a declaration (``agree``), amounts below zero on an item (``sum``)."""
    differ = [p.message for p in problems if not p.negative]
    negative = [p.message for p in problems if p.negative]
    parts = (["items that do not agree: " + "; ".join(differ)] if differ else []) + negative
    return "; ".join(parts) + hint


# outcome fields a row not inspected cannot hold (``inspected`` itself stays)
_BLANKED_OUTCOMES = (
    "inspected_at",
    "result_known_at",
    "illicit",
    "offence_type",
    "revenue_recovered",
    "selection_reason",
)


def _inspected_on_every_item(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` (one row per goods item) with an empty ``inspected`` cell given its
    declaration's: an export writing it on the first item row only would otherwise keep the
    outcome filler of the other rows, and the declaration not inspected would carry it."""
    from features.intake.contract import parse_bool

    inspected, bad = parse_bool(frame["inspected"])  # values no booleans: coercion names them
    ids = frame["declaration_id"].astype("object")
    given = inspected.astype("object").groupby(ids.to_numpy(), sort=False).transform("first")
    empty = (inspected.isna() & ~bad & ids.notna()).to_numpy(dtype=bool)
    out = frame.copy()
    out["inspected"] = frame["inspected"].astype("object").mask(empty, given)
    return out


def _blank_outcomes_not_inspected(
    frame: pd.DataFrame, ids: pd.Series | None
) -> tuple[pd.DataFrame, list[tuple[int, str]]]:
    """``frame`` with the outcome cells of rows not inspected empty; and, as (count, where),
    the rows whose blanked cells held a finding (illicit true, revenue above 0): a
    contradiction in the export, named rather than kept or lost unsaid."""
    import pandas as pd

    from features.intake.contract import parse_bool

    inspected, _ = parse_bool(frame["inspected"])
    idle = inspected.eq(False).fillna(False).to_numpy(dtype=bool)
    found = pd.Series(False, index=frame.index)
    if "illicit" in frame.columns:
        found |= parse_bool(frame["illicit"])[0].eq(True).fillna(False).astype(bool)
    if "revenue_recovered" in frame.columns:
        revenue = pd.to_numeric(frame["revenue_recovered"], errors="coerce")
        found |= revenue.gt(0).fillna(False).astype(bool)
    found &= idle
    out = frame.copy()
    for name in _BLANKED_OUTCOMES:
        if name in out.columns:
            out[name] = out[name].astype("object").where(~idle, None)
    notes = [(int(idle.sum()), "")]
    if found.any():
        shown = frame.get("illicit", pd.Series(index=frame.index)).astype("object")
        notes.append((int(found.sum()), _examples(shown, found, ids)))
    return out, notes


# --------------------------------------------------------------------------------------------
# Edges: read the source file, write the contract Parquet.
# --------------------------------------------------------------------------------------------


def read_source(path: Path, mapping: Mapping) -> pd.DataFrame:
    """Read a CSV (all cells as text, so codes and ids keep leading zeros) or a Parquet file.

    A header naming a column twice is refused: pandas would read the first under the name and
    rename the second (``VALEUR.1``), so which one a mapping reads would be chance. Names that
    differ only by surrounding spaces or case (``"Zollstelle "`` and ``Zollstelle``) are
    refused when the mapping names one of them (a trailing space is invisible where the
    mapping was written from, so the one it names may not be the one meant) and a warning
    otherwise (the mapping reads neither).
    """
    import pandas as pd

    path = Path(path)
    if not path.exists():
        raise ContractError(f"source file not found: {path}")
    require_regular_file(path)
    suffix = path.suffix.lower()
    parquet = suffix in (".parquet", ".pq")
    if suffix in WORKBOOK_SUFFIXES:
        raw, header = _read_workbook(path, mapping)
        _check_header(path, header, mapping)
        return raw
    if suffix in _OTHER_SPREADSHEETS:
        raise ContractError(
            f"{path}: a {suffix} spreadsheet is not read; save it as .xlsx or .ods (or export "
            "a CSV)"
        )
    if is_json(path):
        if mapping.sheet is not None:
            raise ContractError(f"{path}: the mapping names a sheet, but this is JSON")
        raw = read_json_source(
            path,
            encoding=mapping.encoding,
            records=mapping.records,
            explode=mapping.explode,
            fields=mapping.named_columns(),
            document_id=declaration_id_columns(mapping),
            # HS codes written as JSON numbers are read as a workbook's numeric cells are
            numbers=_hs_sources(mapping),
        )
        if mapping.null_values:  # text that means "no value", as in a CSV
            raw = raw.mask(raw.isin(list(mapping.null_values)))
        _check_header(path, list(raw.columns), mapping)
        return raw
    if is_xml(path):
        if mapping.sheet is not None:
            raise ContractError(f"{path}: the mapping names a sheet, but this is XML")
        raw = read_xml_source(
            path,
            records=mapping.records,
            explode=mapping.explode,
            fields=mapping.named_columns(),
            document_id=declaration_id_columns(mapping),
        )
        if mapping.null_values:  # text that means "no value", as in a CSV
            raw = raw.mask(raw.isin(list(mapping.null_values)))
        _check_header(path, list(raw.columns), mapping)
        return raw
    if mapping.records is not None or mapping.explode is not None:
        raise ContractError(
            f"{path}: records and explode read a JSON or XML export (.json, .jsonl, .ndjson, "
            ".xml); this is not one"
        )
    if not parquet and not is_csv(path):
        raise ContractError(
            f"{path}: unsupported file type (use .csv, .parquet, JSON: .json, .jsonl, .ndjson, "
            "XML: .xml, or a workbook: .xlsx, .xls, .ods; a CSV, JSON or XML file may be "
            "compressed: .csv.gz, .csv.bz2, .csv.xz, .csv.zip or a .zip of one CSV)"
            + _zipped_format_hint(path)
        )
    if mapping.sheet is not None:
        raise ContractError(f"{path}: the mapping names a sheet, but this is not a workbook")
    try:
        if parquet:
            raw = _whole_decimals_as_integers(
                pd.read_parquet(path, columns=_flat_parquet_columns(path, mapping)), path
            )
            header = list(raw.columns)
            # text cells that mean "no value" are missing, as in a CSV (an export to Parquet
            # often writes "" for an empty cell): only in text columns, compared as written
            nulls = set(mapping.null_values)
            for name in raw.columns:
                column = raw[name]
                if nulls and (pd.api.types.is_string_dtype(column) or column.dtype == object):
                    raw[name] = column.mask(column.isin(nulls))
        else:
            # a compressed CSV too, opened as the sniffer opens it (``open_bytes``), never by
            # pandas' own unzipping: a Finder zip's resource fork was "Multiple files"
            names = mapping.named_columns()
            skip = lines_above_header(path, mapping.encoding, names)
            sep = mapping.delimiter or sniff_delimiter(path, mapping.encoding, names, skip)
            refuse_cut_last_row(path, mapping.encoding, sep, skip)
            options = {"sep": sep, "dtype": "str", "encoding": mapping.encoding, "skiprows": skip}
            # the header as written: read_csv renames a repeated name ("VALEUR.1")
            with open_bytes(path) as fh:
                header = pd.read_csv(fh, header=None, nrows=1, **options).iloc[0].dropna().tolist()
            with open_bytes(path) as fh:
                raw = pd.read_csv(
                    fh, keep_default_na=False, na_values=mapping.null_values, **options
                )
    except UnicodeDecodeError as exc:
        raise _not_in_encoding(path, mapping.encoding, exc) from exc
    # truncated or damaged compressed files fail with EOFError and the decompressors' own errors
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, lzma.LZMAError) as exc:
        if isinstance(exc, ContractError):  # said already (a file expanding beyond its bound)
            raise
        hint = ""
        if "Expected 1 fields" in str(exc):  # the first line is one cell: a title above it?
            hint = (
                " (if a title stands above the header, the header is found by the columns "
                "the mapping names: none of the first lines holds them all; check their "
                "spelling, and the encoding)"
            )
        raise ContractError(f"{path}: cannot read file: {exc}{hint}") from exc
    if not parquet:
        raw = no_implicit_index(raw, path, sep, skip, mapping.encoding)
    _check_header(path, header, mapping)
    return raw


def _zipped_format_hint(path: Path) -> str:
    """For a zip whose name says no format: what it holds, and the name it is read by."""
    if path.suffix.lower() != ".zip":
        return ""
    with zipfile.ZipFile(path) as archive:
        (member,) = zip_data_members(archive)  # is_csv took any other zip for a CSV
    inner = Path(member)
    if is_json(inner) or is_xml(inner):
        return f"; it holds {inner.name!r}: name the zip {inner.name}.zip to read it so"
    if not inner.suffix:
        return f"; it holds {inner.name!r}: if that is a CSV, name the zip {inner.name}.csv.zip"
    return f"; it holds {inner.name!r}: unzip it"


def _flat_parquet_columns(path: Path, mapping: Mapping) -> list[str] | None:
    """The columns of a Parquet export holding one value per row (None: every column). A list, struct or map column
    the mapping reads is refused, naming it and its type; one it does not read is left out,
    with a warning. Read, such a column ended in Arrow's "Unsupported cast from list<...> to
    large_utf8", a traceback (probe 34)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pq.read_schema(path)
    nested = {field.name: str(field.type) for field in schema if pa.types.is_nested(field.type)}
    named = set(mapping.named_columns())
    if read := sorted(nested.keys() & named):
        listed = ", ".join(f"{name!r} is {nested[name]}" for name in read)
        raise ContractError(
            f"{path}: {listed}, not one value per row: the mapping reads it; write it flat in "
            "the export (one column per value), or export CSV or JSON"
        )
    if not nested:
        return None
    logger.warning(
        "%s: column(s) %s hold lists or records, not one value per row: not read",
        path,
        ", ".join(sorted(nested)),
    )
    return [field.name for field in schema if field.name not in nested]


def _whole_decimals_as_integers(raw: pd.DataFrame, path: Path) -> pd.DataFrame:
    """``raw`` (a Parquet file read) with its decimal columns of whole numbers that fit 64 bits
    as integers (Int64), as an int64 column is read.

    A database NUMBER(10) column arrives as decimal128(10, 0), which pandas gives as
    ``decimal.Decimal`` objects in a column of dtype object: an HS code so stored was taken for
    text, and 901210000 kept the zero of chapter 09 lost, read as chapter 90 (probe 5f). The
    cast is Arrow's safe one: a column holding a fraction (an amount) or a number beyond 64
    bits (an id of 20 digits) is left as it is, and read from its exact decimal text."""
    import pandas as pd
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    schema = pq.read_schema(path)
    for field in schema:
        if not pa.types.is_decimal(field.type) or field.name not in raw.columns:
            continue
        column = raw[field.name]
        try:
            whole = pc.cast(pa.array(column, type=field.type, from_pandas=True), pa.int64())
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            continue
        raw[field.name] = pd.Series(
            whole.to_pandas(types_mapper={pa.int64(): pd.Int64Dtype()}.get), index=column.index
        )
    return raw


def _check_header(path: Path, header: list[Any], mapping: Mapping) -> None:
    # counted once: ``header.count`` per name took minutes on 100,000 columns (probe 34)
    repeated = sorted(str(c) for c, n in Counter(header).items() if n > 1)
    if repeated:
        raise ContractError(
            f"{path}: the header names column(s) more than once: {', '.join(repeated)}; "
            "rename them in the export so the mapping can say which one it means"
        )
    _check_near_duplicate_headers(path, header, mapping)


def _read_workbook(path: Path, mapping: Mapping) -> tuple[pd.DataFrame, list[str]]:
    """The mapping's sheet of a workbook (.xlsx, .xls, .xlsb, .ods; the only sheet if it names
    none), with its header as written.

    Cells keep what the spreadsheet typed them as: a column of numbers is numbers (an HS code
    stored as a number gets its lost zero back, as from Parquet), a column of dates is
    timestamps (local times, read in the spec's ``timezone``), anything mixed is text, numbers
    written without a trailing ``.0``. Text cells in ``null_values`` are no value.
    """
    import pandas as pd

    _refuse_unreadable_workbook(path)
    try:
        # calamine (Rust): ~6x openpyxl's speed on a 20k-row export, and .xls/.xlsb/.ods too
        book = pd.ExcelFile(path, engine="calamine")
    except ImportError as exc:  # pragma: no cover - python-calamine is a dependency
        raise ContractError(f"{path}: reading workbooks needs python-calamine ({exc})") from exc
    except Exception as exc:
        raise ContractError(f"{path}: cannot read the workbook: {exc}") from exc
    with book:
        sheets = [str(name) for name in book.sheet_names]
        if mapping.sheet is None and len(sheets) > 1:
            raise ContractError(
                f"{path}: a workbook of {len(sheets)} sheets ({', '.join(map(repr, sheets))}); "
                f"name the one to read in the mapping, e.g. sheet: {sheets[0]!r}"
            )
        sheet = mapping.sheet if mapping.sheet is not None else sheets[0]
        if sheet not in sheets:
            raise ContractError(
                f"{path}: no sheet {sheet!r} in the workbook; its sheets: "
                + ", ".join(map(repr, sheets))
            )
        try:
            cells = book.parse(sheet, header=None, dtype=object)
        except Exception as exc:
            raise ContractError(f"{path}: cannot read sheet {sheet!r}: {exc}") from exc
    if cells.empty:
        raise ContractError(f"{path}: sheet {sheet!r} is empty")
    expected = mapping.named_columns()
    top = _sheet_header_row(cells, expected)
    # a row holding every name the mapping reads is the header: two rows are looked for only
    # when none does (a mapping of the joined names) or nothing is named yet (a draft)
    named_in_one_row = bool(expected) and set(expected) <= {
        "" if _blank(v) else str(_cell_text(v)).strip() for v in cells.iloc[top]
    }
    two_rows = None if named_in_one_row else _two_row_header(cells, top)
    if two_rows is not None:
        top, names = two_rows
        logger.warning(
            "%s: sheet %r: the header is rows %d-%d, group titles above their columns' own "
            "names (merged cells): read as one name each (e.g. %r)",
            path,
            sheet,
            top + 1,
            top + 2,
            next((n for n in names if " " in n), names[0]),
        )
    elif top:
        logger.warning(
            "%s: sheet %r: the header is row %d; the %d row(s) above it (a title) are not read",
            path,
            sheet,
            top + 1,
            top,
        )
    if two_rows is None:
        names = [
            str(_cell_text(v)) if not _blank(v) else f"Unnamed: {i}"
            for i, v in enumerate(cells.iloc[top])
        ]
    header = [n for n in names if not n.startswith("Unnamed: ")]
    first = top + (2 if two_rows is not None else 1)
    facts = _xlsx_facts(path, sheet)
    cells = _merged_filled_down(cells, first, names, path, sheet, facts.merged)
    body = cells.iloc[first:].reset_index(drop=True)
    body.columns = names
    nulls = set(mapping.null_values)
    # A column of numbers typed as numbers beside text cells ("7,5") becomes text: its numbers
    # are written with the decimal mark its spec reads, or "12.125" would read 12125 under
    # decimal "," with thousands "." (probe, 2026-12).
    decimals = {
        source: spec.decimal
        for _, _, spec in _targets(mapping)
        if spec.decimal
        for source in spec.sources
    }
    raw = pd.DataFrame(
        {
            name: _workbook_column(body.iloc[:, i], nulls, decimals.get(name, "."))
            for i, name in enumerate(names)
        }
    )
    if facts.uncalculated:
        _refuse_uncalculated(path, sheet, facts.uncalculated, names, top, mapping)
    if facts.date1904:
        raw = _serials_from_1904(raw, mapping, path, sheet)
    return raw, header


def _refuse_unreadable_workbook(path: Path) -> None:
    """Refuse, before calamine reads it, a workbook that is encrypted (an .xlsx saved with a
    password is an OLE2 file, which calamine called "Cannot detect file format") or whose
    parts expand beyond ``MAX_EXPANSION`` times its size (a 3 MB .xlsx of 3 GiB of sheet XML
    held 4.4 GB: probe 34). A zip-based workbook's parts declare their sizes."""
    from features.intake.io import EXPANSION_FLOOR, MAX_EXPANSION

    with open(path, "rb") as fh:
        head = fh.read(8)
    if head.startswith(b"\xd0\xcf\x11\xe0") and path.suffix.lower() in (".xlsx", ".xlsm", ".xlsb"):
        raise ContractError(
            f"{path}: a password-protected (encrypted) workbook, or an .xls renamed: save it "
            "without a password as .xlsx, or export CSV"
        )
    if not head.startswith(b"PK\x03\x04"):
        return
    size = path.stat().st_size
    try:
        with zipfile.ZipFile(path) as book:
            expanded = sum(info.file_size for info in book.infolist())
    except zipfile.BadZipFile:
        return  # calamine says what is wrong with it
    if expanded > max(EXPANSION_FLOOR, MAX_EXPANSION * size):
        raise ContractError(
            f"{path}: its parts expand to {expanded / 1024**2:,.0f} MB from "
            f"{size / 1024**2:,.1f} MB, more than {MAX_EXPANSION} times its size: not an export "
            "(a decompression bomb?); if it is one, export it as CSV"
        )


def _merged_filled_down(
    cells: pd.DataFrame,
    first: int,
    names: list[str],
    path: Path,
    sheet: str,
    ranges: tuple[_Range, ...] | None,
) -> pd.DataFrame:
    """``cells`` with each range merged over several rows of the data (from row ``first``)
    holding its value on every row it covers, as the sheet shows it, said in a warning. A
    person grouping rows merges a platform or broker down them; read as they are, the rows
    under the first were empty, a direct sale or no broker, unsaid (probe 34). A range merged
    across columns too is read in its first column alone, and said.

    ``ranges``: an .xlsx sheet's, read from its XML with ``_xlsx_facts``; None for the other
    formats, asked of calamine (which parses the sheet again: 0.9 s of 2.3 s at 60k rows)."""
    if ranges is None:
        from python_calamine import CalamineWorkbook

        try:
            workbook = CalamineWorkbook.from_path(str(path))
            try:
                ranges = tuple(workbook.get_sheet_by_name(sheet).merged_cell_ranges or [])
            finally:
                workbook.close()
        except Exception:  # a format calamine gives no ranges for (.ods): nothing to say
            return cells
    down = [
        ((r0, c0), (r1, c1))
        for (r0, c0), (r1, c1) in ranges
        if r1 > r0 and r0 >= first and c0 < len(cells.columns)
    ]
    if not down:
        return cells
    cells = cells.copy()
    for (r0, c0), (r1, _) in down:
        cells.iloc[r0 + 1 : r1 + 1, c0] = cells.iat[r0, c0]
    (r0, c0), (r1, _) = down[0]
    wide = sum(1 for (_, a), (_, b) in down if b > a)
    logger.warning(
        "%s: sheet %r: %d cell range(s) merged over several rows of the data (e.g. rows %d-%d "
        "of column %r): each read on every row it covers, as the sheet shows it%s",
        path,
        sheet,
        len(down),
        r0 + 1,
        r1 + 1,
        names[c0] if c0 < len(names) else c0,
        f"; {wide} of them span columns too, read in their first column alone" if wide else "",
    )
    return cells


# A merged cell range: its first and last cells, (row, column) from 0.
_Range = tuple[tuple[int, int], tuple[int, int]]

# <mergeCell ref="B3:B6"/> in a sheet's XML (after its data: the whole part is searched)
_MERGE_CELL = re.compile(
    rb'<(?:\w+:)?mergeCell\b[^>]*?\bref="([A-Z]{1,3}[0-9]+):([A-Z]{1,3}[0-9]+)"'
)


@dataclass(frozen=True)
class _XlsxFacts:
    """What calamine does not say of an Office Open XML workbook: its date system, and the
    cells holding a formula with no value saved ((row, column) from 0, as the frame's); and
    what it says only by parsing the sheet again, its merged ranges (None: not read here)."""

    date1904: bool = False
    uncalculated: tuple[tuple[int, int], ...] = ()
    merged: tuple[_Range, ...] | None = None


def _merged_ranges(sheet_xml: bytes) -> tuple[_Range, ...]:
    """The merged ranges a sheet's XML declares."""
    ranges = []
    for first, last in _MERGE_CELL.findall(sheet_xml):
        start, end = _cell_position(first.decode()), _cell_position(last.decode())
        if start is not None and end is not None:
            ranges.append((start, end))
    return tuple(ranges)


def _xlsx_facts(path: Path, sheet: str) -> _XlsxFacts:
    """``_XlsxFacts`` of an .xlsx/.xlsm workbook (other formats: none known).

    A workbook saved in the 1904 date system (Mac Excel, ``date1904``) counts serial days from
    1904-01-01, 1,462 days after the usual epoch: calamine types date cells right, but a
    serial stored as a number read with ``format: excel`` came out 4 years and a day early.
    A workbook written by a program (a report writer, openpyxl) and never opened in a
    spreadsheet holds formulas without their results: calamine reads them as empty, so a
    computed amount was lost unsaid (probe, 2026-12). The sheet's XML is parsed only when it
    holds a formula at all."""
    from xml.etree import ElementTree

    if path.suffix.lower() not in (".xlsx", ".xlsm") or not zipfile.is_zipfile(path):
        return _XlsxFacts()
    try:
        with zipfile.ZipFile(path) as book:
            workbook = ElementTree.fromstring(book.read("xl/workbook.xml"))
            props = next((e for e in workbook.iter() if e.tag.endswith("}workbookPr")), None)
            date1904 = props is not None and props.get("date1904", "").lower() in ("1", "true")
            target = _sheet_part(book, workbook, sheet)
            if target is None or target not in book.namelist():
                return _XlsxFacts(date1904)
            with book.open(target) as part:
                head = part.read()
            if re.search(rb"<!DOCTYPE", head[:4096]) is not None:
                # no spreadsheet writes one; parsed, it switched this guard off (probe 34)
                raise ContractError(
                    f"{path}: sheet {sheet!r}: its XML declares a document type (DOCTYPE), "
                    "which no spreadsheet writes: not read"
                )
            merged = _merged_ranges(head)
            if re.search(rb"<(?:\w+:)?f[\s>/]", head) is None:
                return _XlsxFacts(date1904, merged=merged)
            uncalculated = []
            for _, cell in ElementTree.iterparse(io.BytesIO(head), events=("end",)):
                if not cell.tag.endswith("}c") and cell.tag != "c":
                    continue
                children = {child.tag.rsplit("}", 1)[-1]: child for child in cell}
                value = children.get("v")
                empty = value is None or not (value.text or "").strip()
                if "f" in children and empty and (at := _cell_position(cell.get("r", ""))):
                    uncalculated.append(at)
                cell.clear()
    except ElementTree.ParseError as exc:
        # formulas it cannot check: their values may be missing, as calamine reads them empty
        raise ContractError(
            f"{path}: sheet {sheet!r} holds formulas, and its XML cannot be read to check each "
            f"has its value saved ({exc}): open and save it in a spreadsheet, or export CSV"
        ) from exc
    except (OSError, KeyError, zipfile.BadZipFile):
        return _XlsxFacts()  # calamine read it: what it could not tell stays unknown
    return _XlsxFacts(date1904, tuple(uncalculated), merged)


def _sheet_part(book: Any, workbook: Any, sheet: str) -> str | None:
    """The zip member of the sheet named ``sheet`` (its relationship in the workbook's)."""
    from xml.etree import ElementTree

    rel_id = next(
        (
            value
            for e in workbook.iter()
            if e.tag.endswith("}sheet") and e.get("name") == sheet
            for key, value in e.attrib.items()
            if key.endswith("}id")
        ),
        None,
    )
    if rel_id is None:
        return None
    rels = ElementTree.fromstring(book.read("xl/_rels/workbook.xml.rels"))
    target = next((e.get("Target") for e in rels if e.get("Id") == rel_id), None)
    if target is None:
        return None
    return target.lstrip("/") if target.startswith("/") else f"xl/{target}"


def _cell_position(ref: str) -> tuple[int, int] | None:
    """``"H12"`` -> (11, 7): row and column from 0."""
    match = re.fullmatch(r"([A-Z]{1,3})([0-9]+)", ref)
    if match is None:
        return None
    column = 0
    for letter in match.group(1):
        column = column * 26 + ord(letter) - ord("A") + 1
    return int(match.group(2)) - 1, column - 1


def _refuse_uncalculated(
    path: Path,
    sheet: str,
    cells: tuple[tuple[int, int], ...],
    names: list[str],
    top: int,
    mapping: Mapping,
) -> None:
    """Refuse formulas without a saved value in the columns the mapping reads (their cells
    would be read as empty: a required amount refused by the gate without a word of why, an
    optional one nulled); in other columns, a warning."""
    read = set(mapping.named_columns())
    below = [(r, c) for r, c in cells if r > top and c < len(names)]
    if not below:
        return
    refs = [f"{_column_letters(c)}{r + 1}" for r, c in below]
    mapped = sorted({names[c] for r, c in below if names[c] in read})
    what = (
        f"{path}: sheet {sheet!r}: {len(below)} cell(s) hold a formula with no value saved "
        f"(e.g. {', '.join(refs[:5])}): the workbook was written by a program and never "
        "calculated, so they read as empty"
    )
    if mapped:
        raise ContractError(
            f"{what}, in column(s) the mapping reads: {', '.join(map(repr, mapped))}; open the "
            "workbook in a spreadsheet program and save it (the results are then stored), or "
            "export the sheet as CSV"
        )
    logger.warning("%s; the mapping reads none of their columns", what)


def _column_letters(column: int) -> str:
    letters = ""
    column += 1
    while column:
        column, rest = divmod(column - 1, 26)
        letters = chr(ord("A") + rest) + letters
    return letters


# days from the 1900 date system's epoch (1899-12-30) to the 1904 system's (1904-01-01)
_DAYS_1900_TO_1904 = 1462


def _serials_from_1904(raw: pd.DataFrame, mapping: Mapping, path: Path, sheet: str) -> pd.DataFrame:
    """Serial days of a 1904-date-system workbook in the columns read with ``format: excel``
    counted from the usual epoch, as the reader takes them (``_xlsx_facts``)."""
    import pandas as pd

    shifted = []
    for _, _, spec in _targets(mapping):
        formats = spec.format if isinstance(spec.format, list) else [spec.format]
        if EXCEL_FORMAT not in formats:
            continue
        for source in [*spec.sources, *(spec.aliases or [])]:
            if source not in raw.columns or source in shifted:
                continue
            column = raw[source]
            number = pd.to_numeric(column, errors="coerce") if column.dtype == object else column
            if not pd.api.types.is_numeric_dtype(number.dtype):
                continue
            serial = number.notna() & column.map(
                lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)
            ).astype(bool)
            if serial.any():
                raw = raw.assign(**{source: column.mask(serial, number + _DAYS_1900_TO_1904)})
                shifted.append(source)
    if shifted:
        logger.warning(
            "%s: sheet %r: the workbook counts dates from 1904 (Mac Excel's date system): the "
            "serial days of %s read from that epoch",
            path,
            sheet,
            ", ".join(map(repr, shifted)),
        )
    return raw


def _two_row_header(cells: pd.DataFrame, top: int) -> tuple[int, list[str]] | None:
    """A header written on two rows (group titles merged across their columns above each
    column's own name, the other names merged down both rows: a national report's layout)
    as (its first row, one name per column: "Peso lordo (kg)"), or None.

    Taken row by row, the first row's names left the groups' columns "Unnamed", the second
    was read as data, and the draft and ingest chose different rows (probe, 2026-12). Two rows
    are one header only when they fill each other: every column named in one of them, a
    column unnamed in the first named in the second (a group's), one named in the first and
    not the second (merged down), and the second row text only. A one-row header has no
    unnamed columns, and a title above one leaves none of its names alone, so neither reads
    so."""
    for first in (top - 1, top):
        if first < 0 or first + 2 > len(cells):
            continue
        upper = ["" if _blank(v) else str(_cell_text(v)).strip() for v in cells.iloc[first]]
        lower_cells = list(cells.iloc[first + 1])
        lower = ["" if _blank(v) else str(_cell_text(v)).strip() for v in lower_cells]
        if not all(u or w for u, w in zip(upper, lower, strict=True)):
            continue
        if not any(w and not u for u, w in zip(upper, lower, strict=True)):
            continue
        if not any(u and not w for u, w in zip(upper, lower, strict=True)):
            # no name merged down both rows: a title above a whole header ("Export of May"
            # over id, date, ...), not groups over their columns
            continue
        if any(not _blank(v) and not isinstance(v, str) for v in lower_cells):
            continue  # numbers or dates: a data row
        if not upper or not upper[0]:
            continue  # a group continues from a column with no title
        names, group = [], ""
        for u, w in zip(upper, lower, strict=True):
            if u and w:  # a group's first column
                group = u
                names.append(f"{u} {w}")
            elif u:  # a name merged down both rows
                group = ""
                names.append(u)
            else:  # a group's next column
                if not group:
                    break
                names.append(f"{group} {w}")
        else:
            if len(set(names)) == len(names):
                return first, names
    return None


def _sheet_header_row(cells: pd.DataFrame, expected: Collection[str]) -> int:
    """The row of a sheet's header: 0 unless a title stands above it (``header_row``)."""
    from features.intake.io import PREAMBLE_LINES, header_row

    rows = [
        ["" if _blank(v) else str(_cell_text(v)).strip() for v in row]
        for row in cells.head(PREAMBLE_LINES + 6).itertuples(index=False)
    ]
    found = header_row(rows, expected)
    return found[0] if found is not None else 0


def _blank(value: Any) -> bool:
    import pandas as pd

    return value is None or (not isinstance(value, str) and pd.isna(value))


def _cell_text(value: Any, decimal: str = ".") -> Any:
    """A cell as text, written as a person reads it: 12 not 12.0, dates in ISO order; a
    number with ``decimal`` as its decimal mark and no grouping (``decimal``: the mark the
    column's spec reads, so a typed 12.125 beside text cells "7,5" reads 12.125, not 12125)."""
    import datetime as dt
    import numbers

    import numpy as np

    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, float):  # positional, never 1e-05: no spec reads exponents
        return np.format_float_positional(value, trim="-").replace(".", decimal)
    if isinstance(value, numbers.Number) and not isinstance(value, numbers.Integral):
        return str(value).replace(".", decimal)
    if isinstance(value, dt.datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    return str(value)


def _workbook_column(column: pd.Series, nulls: set[str], decimal: str = ".") -> pd.Series:
    """One sheet column: numbers, timestamps or text, as its cells were typed (a mixed column
    is text, its numbers written with ``decimal``, the mark its spec reads)."""
    import datetime as dt
    import numbers

    import pandas as pd

    blank = column.map(_blank).astype(bool)
    if nulls:
        blank |= column.map(lambda v: isinstance(v, str) and v.strip() in nulls).astype(bool)
    values = column[~blank]
    if values.empty:
        return pd.Series(None, index=column.index, dtype="object")
    kinds = set(values.map(type))
    is_number = all(issubclass(k, numbers.Number) and not issubclass(k, bool) for k in kinds)
    if is_number and all(issubclass(k, numbers.Integral) for k in kinds):
        return pd.Series(values, index=column.index, dtype="object").astype("Int64")
    if is_number:
        return pd.Series(values, index=column.index, dtype="object").astype("float64")
    if all(issubclass(k, dt.datetime) for k in kinds):
        return pd.to_datetime(pd.Series(values, index=column.index, dtype="object"))
    text = values.map(lambda v: _cell_text(v, decimal))
    return pd.Series(text, index=column.index, dtype="object")


def _check_near_duplicate_headers(path: Path, header: list[Any], mapping: Mapping) -> None:
    groups: dict[str, list[str]] = {}
    for name in dict.fromkeys(str(c) for c in header):
        groups.setdefault(name.strip().casefold(), []).append(name)
    alike = [names for names in groups.values() if len(names) > 1]
    if not alike:
        return
    named = set(mapping.named_columns())
    shown = "; ".join(" and ".join(map(repr, names)) for names in alike)
    if any(name in named for names in alike for name in names):
        raise ContractError(
            f"{path}: the header has column names that differ only by surrounding spaces or "
            f"case: {shown}; the mapping names one of them, which may not be the one meant: "
            "rename them in the export so each name says which column it is"
        )
    logger.warning(
        "%s: the header has column names that differ only by surrounding spaces or case: %s; "
        "the mapping names none of them, so none is read",
        path,
        shown,
    )


def _east_asian_page(path: Path) -> str | None:
    """The East Asian code page a file's first megabyte reads as (``mapping draft``'s
    guess): a Shift_JIS export was told to set latin-1, which reads it as mojibake."""
    from features.intake.io import east_asian_code_page

    with open_bytes(path) as fh:
        return east_asian_code_page(fh.read(1 << 20))


def _not_in_encoding(path: Path, encoding: str, exc: UnicodeDecodeError) -> ContractError:
    """One line for a source that is not text in the mapping's ``encoding``: where, and what
    to set. Not guessed as the gate's reader does: the mapping is where an export's reading is
    stated, and the reader's own error counts its position in a buffer, not in the file."""
    where = first_undecodable(path, encoding)
    if where is None:  # the reader failed on text that decodes: say what it said
        return ContractError(f"{path}: cannot read file: {exc}")
    at, line, bad = where
    with open_bytes(path) as fh:
        start = fh.read(3)
    utf16 = start[:2] in (b"\xff\xfe", b"\xfe\xff")  # Excel's "Unicode text"
    if utf16:
        example = "`encoding: utf-16` (it starts with a UTF-16 byte-order mark)"
    elif start == b"\xef\xbb\xbf" or first_undecodable(path, "utf-8") is None:
        # a UTF-8 file read with a Windows code page: 0x81, 0x8d, 0x8f... are no cp1252 byte
        example = "`encoding: utf-8-sig` (the file is UTF-8 text)"
    elif (east_asian := _east_asian_page(path)) is not None:
        example = f"`encoding: {east_asian}` (its bytes read as {east_asian} text)"
    elif encoding.lower().replace("-", "") in ("cp1252", "windows1252"):
        example = "`encoding: latin-1` (every byte is a character in it)"
    else:
        example = "`encoding: cp1252` (a Windows export) or `encoding: latin-1`"
    return ContractError(
        f"{path}: not {encoding} text: byte {at} (line {line}) is {bad!r}; set the file's "
        f"encoding in the mapping, e.g. {example}"
    )


@dataclass(frozen=True)
class ExportRead:
    """One export read through the mapping, nothing written yet: its contract rows, the rows
    set aside (as the source holds them, with row number and reasons) and its summary."""

    declarations: pd.DataFrame
    contract: Contract
    rejected: pd.DataFrame | None
    summary: dict


# How many of an export's unmapped columns the ingest summary names (all are counted).
SHOWN_IGNORED_COLUMNS = 50


def read_export(
    source: Path,
    mapping: Mapping,
    *,
    eur_rates: dict[str, float] | None = None,
    timezone: str | None = None,
    quarantine: bool = False,
    max_rejected: float = DEFAULT_MAX_REJECTED,
    limits: Limits | None = None,
) -> ExportRead:
    """Read one export with the mapping: aliases resolved for its header, its columns joined,
    HS codes repaired, values converted (rows that do not convert or break a gate fault rule
    set aside with ``quarantine``, else any such value stops it), warnings logged, counted in
    the summary. ``timezone`` (features.timezone, the administration's zone) is what times
    read without a zone are warned against (``warn_times_read_as_utc``)."""
    raw = read_source(source, mapping)
    source_names = [str(c) for c in raw.columns]
    mapping, by_alias = resolve_aliases(raw, mapping)
    used = set(mapping.source_columns())
    raw, mapping = join_columns(raw, mapping)
    raw, not_declarations = drop_empty_and_totals_rows(raw, mapping, source)
    raw, repeated_items = drop_repeated_items(raw, mapping, source)
    raw, text_guards = read_excel_text_guards(raw, mapping)  # counted here, for the summary
    warn_excel_text_guards(text_guards, mapping, source)
    raw, float_written = read_float_written(raw, mapping)  # counted here, for the summary
    warn_float_written(float_written, mapping, source)
    check_hs_text(raw, mapping, source)
    raw, restored = restore_hs_zeros(raw, mapping)  # counted here, for the summary
    if restored:
        # a warning where a typed column (Parquet, a workbook) lost the zeros unsaid; only
        # said where the mapping asked for it (lost_leading_zero), as a person already knows
        asked = mapping.columns["hs_code"].lost_leading_zero
        logger.log(
            logging.INFO if asked else logging.WARNING,
            "%s: hs_code (source column %r) was written as numbers: %d code(s) of 5, 7 or 9 "
            "digits had lost the leading zero of chapters 01-09 and got it back (e.g. "
            "901111000 -> 0901111000); export HS codes as text to keep them as written",
            source,
            mapping.columns["hs_code"].column,
            restored,
        )
    raw, ids_padded = pad_identifier_zeros(raw, mapping)  # counted here, for the summary
    personal_folded = personal_spellings(raw, mapping, source)
    read_as_utc = warn_times_read_as_utc(raw, mapping, timezone, source)
    other_zone = warn_zone_unlike_features(mapping, timezone, source)
    raw, joined = join_hs_groups(raw, mapping)
    if joined:
        cut = mapping.columns["hs_code"].digits
        logger.warning(
            "%s: hs_code (source column %r): %d code(s) written in tariff notation were "
            "joined to digits (6109.10.00 -> 61091000)%s",
            source,
            mapping.columns["hs_code"].column,
            joined,
            f", or cut to their first {cut} digits (digits: {cut})" if cut else "",
        )
    rejected = None
    if not quarantine:
        declarations, contract, local_times = _map_declarations(
            raw, mapping, keep_index=True, eur_rates=eur_rates
        )
        declarations = declarations.reset_index(drop=True)
    else:
        declarations, contract, local_times, rejected = _map_setting_aside(
            raw, mapping, limits, max_rejected, source, eur_rates
        )
    dst = warn_local_times(source, local_times)
    repeated_ids = warn_ids_repeated(declarations, mapping, source)
    blanked = local_times.get("outcomes_blanked", [])
    if len(blanked) > 1:
        logger.warning(
            "%s: %d row(s) not inspected held a finding (illicit true or revenue above 0) in "
            "outcome cells read as empty (outcomes_only_if_inspected): %s",
            source,
            *blanked[1],
        )
    ignored = [c for c in source_names if c not in used]
    items = local_times.get("items")
    summary = {
        "rows": len(declarations),
        **(
            {
                "items_collapsed": dict(
                    zip(("item_rows", "declarations", "most_items_in_one"), items[0], strict=True)
                )
            }
            if items
            else {}
        ),
        **({"item_rows_repeated_dropped": repeated_items} if repeated_items else {}),
        **(
            {"rows_not_declarations_dropped": not_declarations}
            if any(not_declarations.values())
            else {}
        ),
        "columns_mapped": len(mapping.columns),
        "constants": sorted(n for n, s in mapping.columns.items() if s.column is None),
        "with_outcomes": "inspected" in mapping.columns,
        "extras": {e.name: e.kind for e in mapping.extras},
        "ignored_source_columns": len(ignored),
        # named up to a bound: a header of 100,000 columns printed 100,000 lines (probe 34)
        "ignored_source_column_names": ignored[:SHOWN_IGNORED_COLUMNS],
        **(
            {"ignored_source_column_names_cut_at": SHOWN_IGNORED_COLUMNS}
            if len(ignored) > SHOWN_IGNORED_COLUMNS
            else {}
        ),
        "hs_code_zeros_restored": restored,
        "hs_code_groups_joined": joined,
        **({"identifier_zeros_restored": ids_padded} if ids_padded else {}),
        **({"personal_ids_one_once_folded": personal_folded} if personal_folded else {}),
        **({"declaration_ids_repeated": repeated_ids} if repeated_ids else {}),
        **({"excel_text_guards_removed": text_guards} if text_guards else {}),
        **({"float_written_values_read": float_written} if float_written else {}),
        **({"columns_read_by_alias": by_alias} if by_alias else {}),
        **revenue_summary(mapping, declarations, source),
        **({"times_read_as_utc": read_as_utc} if read_as_utc else {}),
        **({"declared_at_zone_unlike_features": other_zone} if other_zone else {}),
        **dst,
        **(
            {
                "outcomes_blanked_not_inspected": blanked[0][0],
                "findings_on_rows_not_inspected": blanked[1][0] if len(blanked) > 1 else 0,
            }
            if blanked
            else {}
        ),
    }
    shown = None
    if rejected is not None:
        summary.update(_quarantine_counts(rejected, len(raw)))
        # the source's columns as read (not the joins of several made for the mapping)
        shown = rejected.rows[[REJECTED_ROW, *source_names, REJECTED_REASONS]]
    return ExportRead(declarations, contract, shown, summary)


def revenue_summary(mapping: Mapping, frame: pd.DataFrame, source: Any) -> dict:
    """How many recovered amounts were converted to EUR, and from what; or, when the mapping
    gives revenue_recovered no currency, a warning that its amounts were taken as EUR.

    Taken as EUR unsaid, revenue recorded in BRL went in x5.9 (probe, 2026-12). Not refused:
    an EU export declares values in USD or CNY and records revenue in EUR, so the declared
    currencies cannot tell. The warning names what they suggest and how to say it either way.
    """
    import pandas as pd

    spec = mapping.columns.get("revenue_recovered")
    if spec is None or "revenue_recovered" not in frame.columns:
        return {}
    if spec.currency is None:
        revenue = pd.to_numeric(frame["revenue_recovered"], errors="coerce")
        amounts = revenue.gt(0).fillna(False).to_numpy(dtype=bool)
        if not amounts.any() or spec.column is None:
            return {}
        evidence = ""
        if "currency" in frame.columns:
            declared = frame.loc[amounts, "currency"].astype("object").value_counts()
            if len(declared) and "EUR" not in declared.index:
                shares = ", ".join(
                    f"{code} {n / declared.sum():.0%}" for code, n in declared.head(3).items()
                )
                evidence = (
                    f"; none of the {int(amounts.sum()):,} rows with an amount declares its "
                    f"value in EUR ({shares})"
                )
        logger.warning(
            "%s: revenue_recovered (source column %r) is read as EUR, the contract's unit, as "
            "its spec gives no currency%s. If the export records it in another currency, say "
            "which (currency: BRL, or currency: row for each row's declared currency); if it is "
            "EUR, write currency: EUR to say so",
            source,
            spec.column,
            evidence,
        )
        return {"revenue_recovered_currency": "EUR (assumed: the mapping gives none)"}
    converted = int(frame["revenue_recovered"].notna().sum())
    if spec.currency == "EUR":  # said to be in the contract's unit: nothing converted
        return {"revenue_recovered_currency": "EUR (as the mapping says)"}
    source = "each row's declared currency" if spec.currency == ROW_CURRENCY else spec.currency
    logger.info("revenue_recovered: %d amount(s) converted from %s to EUR", converted, source)
    return {"revenue_recovered_converted_to_eur": {"from": source, "rows": converted}}


# a time written with its offset ("...+02:00", "...Z"): read as such, whatever the mapping's zone
# (after a time of day: "01-08-2026" ends in "-2026", no offset)
_WITH_OFFSET = re.compile(
    r"\d:\d{2}(?::\d{2}(?:[.,]\d+)?)?\s*(?:Z|UTC|[+-]\d{2}(?::?\d{2})?)$", re.IGNORECASE
)
_TIME_FIELDS = ("declared_at", "inspected_at", "result_known_at")
# times of a result: one written as a day alone counts from the end of that day
_RESULT_TIMES = ("inspected_at", "result_known_at")


def warn_times_read_as_utc(
    raw: pd.DataFrame, mapping: Mapping, timezone: str | None, source: Any
) -> list[str]:
    """The time fields whose spec gives no ``timezone`` and whose values carry no offset, so
    they are read as UTC, while the administration's zone (features.timezone) is another:
    warned, as an export of local times mapped without its zone shifts every time by the
    zone's offset unsaid (3 hours for Sao Paulo; probe, 2026-12). Times in UTC need no zone:
    ``timezone: UTC`` in the spec says so and silences this."""
    import pandas as pd

    if timezone is None or timezone.upper() in ("UTC", "ETC/UTC", "Z"):
        return []
    fields = []
    for name in _TIME_FIELDS:
        spec = mapping.columns.get(name)
        if spec is None or spec.timezone is not None or spec.column not in raw.columns:
            continue
        if spec.formats and all(f in EPOCH_FORMATS for f in spec.formats):
            continue  # Unix times are UTC
        column = raw[spec.column]
        if pd.api.types.is_datetime64_any_dtype(column.dtype):
            naive = getattr(column.dtype, "tz", None) is None
        else:
            sample = _as_text(column).dropna().head(1000)
            naive = bool(len(sample)) and not sample.str.strip().str.contains(_WITH_OFFSET).all()
        if naive:
            fields.append(name)
            logger.warning(
                "%s: %s (source column %r) is read as UTC: its spec gives no timezone and its "
                "times carry no offset, while features.timezone is %s. If the export writes "
                "local times, add timezone: %s to the spec; if they are UTC, write "
                "timezone: UTC to say so",
                source,
                name,
                spec.column,
                timezone,
                timezone,
            )
    return fields


def warn_zone_unlike_features(mapping: Mapping, timezone: str | None, source: Any) -> str | None:
    """The zone ``declared_at``'s local times are read in, when it is not features.timezone:
    warned, as the calendar features (hour of day, day of week, ``features.calendar``) are
    computed in features.timezone, so a Sunday 00:30 in Warsaw read with a UTC
    features.timezone is a Saturday 23:00 to the model, every day of the history (probe,
    2026-12)."""
    spec = mapping.columns.get("declared_at")
    if timezone is None or spec is None or spec.timezone is None:
        return None
    # times said to be UTC are instants like any: the calendar is features.timezone's, as meant
    if spec.timezone == timezone or spec.timezone.upper() in ("UTC", "ETC/UTC", "Z"):
        return None
    if spec.formats and all(f in EPOCH_FORMATS for f in spec.formats):
        return None  # Unix times: the zone is not read
    logger.warning(
        "%s: declared_at is read as local times of %s (the mapping), while features.timezone "
        "is %s: the calendar features (hour of day, day of week) are computed in %s. If the "
        "administration works in %s, set features.timezone: %s in params.yaml",
        source,
        spec.timezone,
        timezone,
        timezone,
        spec.timezone,
        spec.timezone,
    )
    return spec.timezone


# --------------------------------------------------------------------------------------------
# Quarantine: the rows of an export that cannot be right, set aside with their reasons.
# --------------------------------------------------------------------------------------------

# Columns the quarantine file adds to the source's (named so no export's column is taken)
REJECTED_ROW = "parcelrisk_source_row"
REJECTED_REASONS = "parcelrisk_reasons"
# A conversion problem can hide the next one in the same column (a misgrouped thousands
# separator is reported before "not a number"): the rows are converted again without those
# set aside, at most this many times.
_MAX_CONVERSION_PASSES = 8


@dataclass(frozen=True)
class _Rejected:
    """The rows set aside: as the source holds them, plus row number and reasons; and how
    many rows each reason set aside."""

    rows: pd.DataFrame
    counts: dict[str, int]


def _map_setting_aside(
    raw: pd.DataFrame,
    mapping: Mapping,
    limits: Limits | None,
    max_rejected: float,
    source: Path,
    eur_rates: dict[str, float] | None = None,
) -> tuple[pd.DataFrame, Contract, dict[str, list[tuple[int, str]]], _Rejected]:
    """``_map_declarations`` of the rows that convert and pass the gate's fault rules; and the
    others as the source holds them, with their row number and reasons."""

    from features.intake.validation import check_declarations

    _check_structure(raw, mapping)  # a mapping that does not fit the file is no row's fault
    # the source's row positions (empty rows left out keep the others' numbers)
    source_rows = raw.index.to_numpy()
    raw = raw.reset_index(drop=True)
    reasons = _unconvertible_rows(raw, mapping, eur_rates)
    item_ids = None
    if mapping.items is not None:
        # a declaration is set aside whole: ingested without one of its items, it would be
        # understated (its value, weight, quantity)
        item_ids = _as_text(raw[mapping.columns["declaration_id"].column]).str.strip()
        nulls = set(mapping.null_values) | set(mapping.columns["declaration_id"].null_values or [])
        for position in item_ids.index[item_ids.isna() | item_ids.isin(nulls)].tolist():
            reasons.setdefault(int(position), []).append(
                (
                    "declaration_id empty (items)",
                    "declaration_id: empty; item rows are grouped into declarations by it",
                )
            )
        _with_sibling_items(reasons, item_ids)
    kept = raw.drop(index=list(reasons))
    collapsed_out: list[Collapsed] = []
    declarations, contract, local_times = _map_declarations(
        kept, mapping, keep_index=True, eur_rates=eur_rates, collapsed_out=collapsed_out
    )
    declarations = declarations.reset_index(drop=True)
    positions = kept.index.to_numpy()
    # the source rows of each row of ``declarations`` (one each, unless items were collapsed)
    rows_of: Any = positions[:, None]
    if collapsed_out:
        collapsed = collapsed_out[0]
        rows_of = _source_rows(collapsed.group, positions, len(declarations))
        differing: dict[int, list[str]] = {}
        negative: dict[int, list[str]] = {}
        for disagreement in collapsed.disagreements:
            held = negative if disagreement.negative else differing
            for d in disagreement.declarations.tolist():
                held.setdefault(d, []).append(disagreement.field)
        for held, key, says in (
            (differing, "items disagree (items: ... agree)", "differ(s) between the items"),
            (negative, "item amount below zero (items: ... sum)", "below zero on an item"),
        ):
            for d, fields in held.items():
                message = (
                    f"items: {', '.join(fields)} {says} of declaration "
                    f"{declarations['declaration_id'].iloc[d]}"
                )
                for position in rows_of[d].tolist():
                    reasons.setdefault(int(position), []).append((key, message))
        kept_rows = [
            d for d in range(len(declarations)) if d not in differing and d not in negative
        ]
        declarations = declarations.iloc[kept_rows].reset_index(drop=True)
        rows_of = [rows_of[d] for d in kept_rows]
    if limits is None:
        from features.intake.rules import Limits
        from features.params import load_settings

        limits = Limits.from_settings(load_settings(None))
    result, _ = check_declarations(declarations, contract, limits)
    faulty = gate_fault_reasons(result.findings)
    for row, items in faulty.items():
        for position in rows_of[row].tolist():
            reasons.setdefault(int(position), []).extend(items)
    declarations = declarations.drop(index=sorted(faulty)).reset_index(drop=True)
    share = len(reasons) / max(len(raw), 1)
    counts = reason_counts(reasons)
    if share > max_rejected:
        raise ContractError(
            f"{source}: {len(reasons)} of {len(raw)} rows ({share:.2%}) cannot be right, more "
            f"than --max-rejected {max_rejected:.2%}: so many point to the mapping or the "
            "export, not to a few bad declarations, so nothing is written. Most common: "
            + _common_reasons(reasons, counts, source_rows)
        )
    rows = rejected_frame(raw, reasons, source_rows + 1)
    return declarations, contract, local_times, _Rejected(rows, counts)


def gate_fault_reasons(findings: Any) -> dict[int, list[tuple[str, str]]]:
    """Row -> (rule, message) of each of the gate's faults in ``findings`` (a check's): the
    reasons a quarantine gives a row, and what it counts them by."""
    reasons: dict[int, list[tuple[str, str]]] = {}
    for finding in findings.faults:
        key = f"{finding.rule.name} ({finding.rule.requires})"
        for row, message in zip(finding.rows.tolist(), finding.messages(), strict=True):
            reasons.setdefault(int(row), []).append((key, message))
    return reasons


def rejected_frame(
    raw: pd.DataFrame, reasons: dict[int, list[tuple[str, str]]], row_numbers: Any
) -> pd.DataFrame:
    """The rows of ``raw`` (positions) set aside for ``reasons``, as the source holds them:
    their row number (``row_numbers``, by position) first, every reason last."""
    import numpy as np

    order = np.array(sorted(reasons), dtype=np.int64)
    rows = raw.iloc[order].copy()
    rows.insert(0, REJECTED_ROW, np.asarray(row_numbers)[order])
    rows[REJECTED_REASONS] = ["; ".join(text for _, text in reasons[int(i)]) for i in order]
    return rows


def _with_sibling_items(reasons: dict[int, list[tuple[str, str]]], ids: pd.Series) -> None:
    """Add to ``reasons`` every other item row of a declaration one of whose rows is in it."""
    if not reasons:
        return
    rejected = ids.iloc[sorted(reasons)]
    first: dict[str, str] = {}
    for position, declaration_id in zip(rejected.index.tolist(), rejected.tolist(), strict=True):
        if declaration_id:  # an empty id groups nothing
            first.setdefault(declaration_id, reasons[position][0][1])
    siblings = ids.isin(list(first)) & ~ids.index.isin(list(reasons))
    for position, declaration_id in ids[siblings].items():
        reasons[int(position)] = [
            (
                "another item of the declaration was set aside",
                f"another item of declaration {declaration_id} was set aside: "
                f"{first[declaration_id]}",
            )
        ]


def _source_rows(group: Any, positions: Any, n: int) -> list[Any]:
    """For each of ``n`` collapsed declarations, the source positions of its item rows."""
    import numpy as np

    order = np.argsort(group, kind="stable")
    bounds = np.searchsorted(group[order], np.arange(n + 1))
    return [positions[order[bounds[d] : bounds[d + 1]]] for d in range(n)]


def _unconvertible_rows(
    raw: pd.DataFrame, mapping: Mapping, eur_rates: dict[str, float] | None = None
) -> dict[int, list[tuple[str, str]]]:
    """Source row position -> (reason, message) for each value of the row that does not
    convert, for every row with one."""
    id_spec = mapping.columns.get("declaration_id")
    ids = (
        _as_text(raw[id_spec.column])
        if id_spec is not None and id_spec.column is not None
        else None
    )
    targets = _targets(mapping)
    reasons: dict[int, list[tuple[str, str]]] = {}
    for _ in range(_MAX_CONVERSION_PASSES):
        left = raw.drop(index=list(reasons))
        shown_ids = None if ids is None else ids[left.index]
        unconverted = _convert_columns(left, targets, shown_ids, eur_rates)[2]
        if not unconverted:
            return reasons
        for item in unconverted:
            key = f"{item.field} ({item.origin}): {item.problem}"
            for position in item.rows[item.rows].index:
                message = f"{key}: {item.shown.loc[position]!r}"
                reasons.setdefault(int(position), []).append((key, message))
    raise ContractError(  # pragma: no cover - each pass sets at least one row aside
        f"values still do not convert after {_MAX_CONVERSION_PASSES} passes"
    )


def reason_counts(reasons: dict[int, list[tuple[str, str]]]) -> dict[str, int]:
    """Reason -> rows it sets aside, most rows first."""
    from collections import Counter

    counts = Counter(key for items in reasons.values() for key in dict(items))
    return dict(counts.most_common())


def _common_reasons(
    reasons: dict[int, list[tuple[str, str]]],
    counts: dict[str, int],
    source_rows: Any,
    top: int = 3,
) -> str:
    """The ``top`` reasons, each with its first row as the file numbers it (``source_rows``:
    the source position of each position ``reasons`` names)."""
    examples: dict[str, tuple[int, str]] = {}
    for position, items in sorted(reasons.items()):
        for key, message in items:
            examples.setdefault(key, (int(source_rows[position]) + 1, message))
    return "; ".join(
        f"{count} row(s): {examples[key][1]} (row {examples[key][0]}, first of them)"
        for key, count in list(counts.items())[:top]
    )


def _quarantine_counts(rejected: _Rejected, rows_read: int) -> dict:
    return {
        "rows_read": rows_read,
        "rows_rejected": len(rejected.rows),
        "rejected_reasons": rejected.counts,
    }


__all__ = [
    "ColumnSpec",
    "ExportRead",
    "ExtraSpec",
    "Mapping",
    "apply_mapping",
    "apply_outcome_mapping",
    "join_columns",
    "join_hs_groups",
    "load_mapping",
    "map_outcomes",
    "pad_identifier_zeros",
    "parse_mapping",
    "parse_mapping_text",
    "rates_to_eur",
    "read_excel_text_guards",
    "read_export",
    "read_float_written",
    "read_source",
    "resolve_aliases",
    "restore_hs_zeros",
    "revenue_summary",
    "warn_excel_text_guards",
    "warn_float_written",
    "warn_local_times",
    "warn_times_read_as_utc",
    "warn_zone_unlike_features",
]


# --------------------------------------------------------------------------------------------
# Inspection-result files: the declaration id and the outcome fields only.
# --------------------------------------------------------------------------------------------


def warn_local_times(source: Any, local_times: dict[str, list[tuple[int, str]]]) -> dict[str, int]:
    """Warn about the local times a timezone read specially (``_localise``), naming the field
    and example rows; and their counts, for a summary."""
    for count, where in local_times["skipped"]:
        logger.warning(
            "%s: %d local time(s) the spring clock change skips, each moved forward by the "
            "change (02:30 -> 03:30 when clocks jump from 02:00 to 03:00), keeping their "
            "order: %s",
            source,
            count,
            where,
        )
    for count, where in local_times["repeated"]:
        logger.warning(
            "%s: %d local time(s) in the hour the autumn clock change repeats, read as "
            "standard time (the second pass of that hour): %s",
            source,
            count,
            where,
        )
    dated = local_times.get(DATE_ONLY_MARK, [])
    for count, where in dated:
        logger.warning(
            "%s: %d result time(s) that are a day alone (no time of day, or midnight "
            "exactly), read as the end of that day (the next midnight, local to the column's "
            "timezone), so that none counts before that day's declarations; give the times, "
            "or an `offset` in the mapping: %s",
            source,
            count,
            where,
        )
    declared = local_times.get(DECLARED_DATE_ONLY, [])
    for count, where in declared:
        logger.warning(
            "%s: %d declaration time(s) that are a day alone (midnight exactly): read as local "
            "midnight, so a day's parcels share one instant and one hour of day; export the "
            "time of lodging if the system has it: %s",
            source,
            count,
            where,
        )
    return {
        "dst_skipped_times_moved_forward": sum(n for n, _ in local_times["skipped"]),
        "dst_repeated_times_read_as_standard": sum(n for n, _ in local_times["repeated"]),
        DATE_ONLY_MARK: sum(n for n, _ in dated),
        DECLARED_DATE_ONLY: sum(n for n, _ in declared),
    }


def apply_outcome_mapping(
    raw: pd.DataFrame, mapping: Mapping, fx_to_base: dict[str, float] | None = None
) -> pd.DataFrame:
    """An export of inspection results -> ``declaration_id`` and the mapped outcome fields.

    Values are converted as in ``apply_mapping`` (formats, zones, codes, units) but not checked:
    the results' checker (``serving.outcomes``) applies the contract's rules to them.
    """
    return map_outcomes(raw, mapping, fx_to_base)[0]


def map_outcomes(
    raw: pd.DataFrame, mapping: Mapping, fx_to_base: dict[str, float] | None = None
) -> tuple[pd.DataFrame, dict[str, list[tuple[int, str]]]]:
    """``apply_outcome_mapping``, and the local times read specially (``warn_local_times``).

    ``fx_to_base`` converts a revenue_recovered given in another currency (``rates_to_eur``)."""
    import pandas as pd

    mapping, _ = resolve_aliases(raw, mapping)
    wanted = {"declaration_id"} | {f.name for f in FIELDS if f.scope == "outcome"}
    revenue = mapping.columns.get("revenue_recovered")
    # a results file's own column of the amounts' currency (Direitos; Moeda): read to put the
    # revenue in EUR, then dropped, as a result carries no currency
    by_row = revenue is not None and revenue.currency == ROW_CURRENCY
    if by_row:
        wanted.add("currency")
    others = sorted(set(mapping.columns) - wanted)
    if others or "declaration_id" not in mapping.columns:
        raise ContractError(
            "a results mapping maps declaration_id and outcome fields only (and currency, "
            "for revenue_recovered: {currency: row})"
            + (f"; not: {', '.join(others)}" if others else "; declaration_id is not mapped")
        )
    missing = [c for c in mapping.source_columns() if c not in raw.columns]
    if missing:
        raise ContractError(_absent_columns(missing, raw))
    # the source's row positions are kept (empty rows left out keep the others' numbers);
    # anything else is numbered afresh
    positions = raw.index.is_unique and pd.api.types.is_integer_dtype(raw.index.dtype)
    raw, mapping = join_columns(raw if positions else raw.reset_index(drop=True), mapping)
    raw, text_guards = read_excel_text_guards(raw, mapping)
    warn_excel_text_guards(text_guards, mapping, "results")
    raw, _ = read_float_written(raw, mapping)
    raw, _ = pad_identifier_zeros(raw, mapping)
    id_spec = mapping.columns["declaration_id"]
    ids = _as_text(raw[id_spec.column]) if id_spec.column is not None else None
    targets = [(name, FIELDS_BY_NAME[name].kind, spec) for name, spec in mapping.columns.items()]
    converted, local_times = _convert_all(raw, targets, ids, rates_to_eur(mapping, fx_to_base))
    if by_row:
        converted.pop("currency", None)  # the revenue's, now in EUR
    frame = pd.DataFrame(converted, index=raw.index)
    if mapping.items is not None:  # results recorded per goods item: one per declaration
        from features.intake.items import collapse_items

        collapsed = collapse_items(frame, mapping.items)
        if collapsed.disagreements:
            raise ContractError(_item_problems(collapsed.disagreements))
        frame = collapsed.frame
        local_times["items"] = [
            (collapsed.item_rows, len(frame), collapsed.max_items)  # type: ignore[list-item]
        ]
    return frame, local_times


def _holding_nul(source: pd.Series) -> pd.Series:
    """Text cells holding a NUL character.

    No export writes one in a value: it is a corrupted file or a fixed-width field padded
    with NULs. Kept, it reaches the contract file (the gate's CSV reader refuses a file that
    holds one, and PostgreSQL refuses it in text); dropped, the value would change unsaid. So it
    is refused like a value that does not convert, naming the rows.
    """
    import pandas as pd

    none = pd.Series(False, index=source.index)
    if not (pd.api.types.is_string_dtype(source.dtype) or source.dtype == object):
        return none
    try:
        return source.str.contains("\x00", regex=False).fillna(False).astype(bool)
    except AttributeError:  # an object column holding no text (Parquet decimals)
        return none


class _Withheld:
    """A personal value in an error's examples: shown as withheld, never as written."""

    def __repr__(self) -> str:
        return PERSONAL_NOT_SHOWN


@dataclass(frozen=True)
class _Unconverted:
    """One column's values that do not convert: the rows, and what is wrong with them."""

    field: str
    origin: str  # "source column 'X'" or "constant value"
    problem: str
    rows: pd.Series  # mask over the source rows
    shown: pd.Series  # the values as the source holds them, for examples

    def message(self, ids: pd.Series | None) -> str:
        return (
            f"{self.field} ({self.origin}): {self.problem}: {_examples(self.shown, self.rows, ids)}"
        )


def _convert_all(
    raw: pd.DataFrame,
    targets: list[tuple[str, str, Any]],
    ids: pd.Series | None,
    eur_rates: dict[str, float] | None = None,
) -> tuple[dict[str, pd.Series], dict[str, list[tuple[int, str]]]]:
    """Each target (name, kind, spec) converted from its source column or constant; every
    column that does not convert is named with examples, in one error.

    Also returned: the local times a timezone read specially, by mark (``skipped``,
    ``repeated``: see ``_localise``), as (count, "field (source column): examples") per field.
    """
    out, local_times, unconverted = _convert_columns(raw, targets, ids, eur_rates)
    if unconverted:
        if ids is not None and _holding_nul(ids).any():
            ids = None  # examples would print the NULs raw; declaration_id's own error shows them
        lines = [u.message(ids) for u in unconverted]
        raise ContractError("values that do not convert:\n  " + "\n  ".join(lines))
    return out, local_times


def _convert_columns(
    raw: pd.DataFrame,
    targets: list[tuple[str, str, Any]],
    ids: pd.Series | None,
    eur_rates: dict[str, float] | None = None,
) -> tuple[dict[str, pd.Series], dict[str, list[tuple[int, str]]], list[_Unconverted]]:
    """``_convert_all`` without raising: the columns that convert, the local-time marks, and
    what does not convert (a column with a problem is left out of the first).

    ``eur_rates`` (``rates_to_eur``) converts a revenue_recovered given in another currency.
    """
    import pandas as pd

    from features.intake.contract import IDENTIFIER_FIELDS, PERSONAL_FIELDS, identifier_faults

    out: dict[str, pd.Series] = {}
    local_times: dict[str, list[tuple[int, str]]] = {
        "skipped": [],
        "repeated": [],
        DATE_ONLY_MARK: [],
        DECLARED_DATE_ONLY: [],
    }
    unconverted: list[_Unconverted] = []
    if ids is not None and _holding_nul(ids).any():
        ids = None
    for name, kind, spec in targets:
        source = raw[spec.column] if spec.column is not None else pd.Series(index=raw.index)
        origin = f"source column {spec.column!r}" if spec.column else "constant value"
        # a personal value's error goes to a terminal, cron mail and dvc's log: rows by id alone
        personal = name in PERSONAL_FIELDS or getattr(spec, "personal", False)
        withheld = pd.Series(_Withheld(), index=raw.index, dtype=object) if personal else None
        nul = _holding_nul(source)
        if nul.any():
            problem = (
                "text holding a NUL byte (\\x00: a corrupted export, or fields padded with "
                "NULs); remove them from the export"
            )
            shown = source if withheld is None else withheld
            unconverted.append(_Unconverted(name, origin, problem, nul, shown))
            continue
        converted, bad, problem, marks = _convert(spec, kind, source, len(raw))
        if bad.any() and spec.column is not None and _reads_digits(spec, kind):
            # numbers, times and codes in Arabic-Indic (or other non-ASCII) digits: read again
            # with them in ASCII; only where something failed, so a clean export costs nothing
            ascii_source = _with_ascii_digits(source, spec)
            if ascii_source is not None:
                retried = _convert(spec, kind, ascii_source, len(raw))
                if int(retried[1].sum()) < int(bad.sum()):
                    converted, bad, problem, marks = retried
        shown = source if spec.column is not None else converted
        if withheld is not None:
            shown = withheld
        if bad.any():
            unconverted.append(_Unconverted(name, origin, problem, bad, shown))
            continue
        if name in IDENTIFIER_FIELDS:
            # the gate's identifier rules here too: a row the gate would refuse for them is
            # set aside by --quarantine like one that does not convert, never the whole file
            # (one listing name stopped a day's file, probe 22)
            faults = identifier_faults(name, converted)
            for fault, rows in faults:
                found = pd.Series(rows, index=raw.index)
                unconverted.append(_Unconverted(name, origin, fault, found, shown))
            if faults:
                continue
        too_long = _longer_than_the_contract(name, converted)
        if too_long is not None:
            # the gate's length rule here too: a description of 1,025 characters was written
            # with exit 0, then validate, features build and score refused the whole file
            # (probe 38); the row is refused by number, or set aside by --quarantine
            limit = FIELDS_BY_NAME[name].max_length
            problem = f"longer than {limit:,} characters (the contract's {name}.length rule)"
            if withheld is None:
                shown = _shortened(source)
            unconverted.append(_Unconverted(name, origin, problem, too_long, shown))
            continue
        dated = marks.pop(DATE_ONLY_MARK, None)
        if name in _RESULT_TIMES and dated is not None and dated.any() and not spec.offset:
            # a result known by its day alone counts from the end of that day (the next local
            # midnight), as a results file's ISO days are read: at its start it counted for
            # that day's declarations, before the inspection (probe 23). `offset` (the
            # drafted `1 day`) says otherwise explicitly.
            converted = converted.where(~dated, _next_midnight(converted, spec.timezone))
            marks[DATE_ONLY_MARK] = dated
        elif name == "declared_at" and dated is not None and dated.any():
            # counted and said (the summary read 0 for 5,591 declarations that lost their
            # time of day, probe 32): their hour of day is one, and a day's parcels one instant
            marks[DECLARED_DATE_ONLY] = dated
        out[name] = converted
        for mark, mask in marks.items():
            if mask.any():
                where = f"{name} ({origin}): {_examples(shown, mask, ids)}"
                local_times[mark].append((int(mask.sum()), where))
    if "currency" in out:
        spec = next(spec for name, _, spec in targets if name == "currency")
        failed = _not_currency_codes(out, spec)
        if failed is not None:
            unconverted.append(failed)
    spec = next((spec for name, _, spec in targets if name == "revenue_recovered"), None)
    if spec is not None and spec.currency is not None and "revenue_recovered" in out:
        failed = _revenue_to_eur(out, spec, eur_rates)
        if failed is not None:
            unconverted.append(failed)
    return out, local_times, unconverted


def _longer_than_the_contract(name: str, converted: pd.Series) -> pd.Series | None:
    """Rows whose text the gate's ``<name>.length`` rule refuses (the contract's
    ``max_length``, measured on the text as the gate reads it), or None when none is."""
    field = FIELDS_BY_NAME.get(name)
    if field is None or not field.max_length or field.kind not in ("str", "category"):
        return None
    text = parse_text(converted, TEXT_CASE.get(name), narrow=name in IDENTIFIER_FIELDS)
    too_long = text.str.len().gt(field.max_length).fillna(False).astype(bool)
    return too_long if too_long.any() else None


class _Shortened:
    """A long text in an error's examples: its start and its length, not a page of it."""

    def __init__(self, text: Any) -> None:
        self.text = str(text)

    def __repr__(self) -> str:
        if len(self.text) <= _SHOWN_CHARS:
            return repr(self.text)
        return f"{self.text[:_SHOWN_CHARS]!r}... ({len(self.text):,} characters)"


# Characters of a long text an error's example shows
_SHOWN_CHARS = 40


def _shortened(source: pd.Series) -> pd.Series:
    return source.map(_Shortened, na_action="ignore").astype(object)


def _next_midnight(stamps: pd.Series, timezone: str | None) -> pd.Series:
    """The midnight that ends each UTC instant's local day in ``timezone`` (UTC when none):
    the end of a day read at its start, 23 or 25 hours on, not 24, on a clock change (24 hours
    on left the autumn day's last hour counting the result: probe 25). A midnight the clocks
    skip is the first time after it; one they repeat, its second pass."""
    import numpy as np
    import pandas as pd

    zone = timezone or "UTC"
    day = stamps.dt.tz_convert(zone).dt.tz_localize(None).dt.normalize()
    ends = (day + pd.Timedelta(days=1)).dt.tz_localize(
        zone, ambiguous=np.zeros(len(day), dtype=bool), nonexistent="shift_forward"
    )
    return ends.dt.tz_convert("UTC").astype(stamps.dtype)


def _not_currency_codes(out: dict[str, pd.Series], spec: _Spec) -> _Unconverted | None:
    """The ``currency`` cells that are no ISO 4217 code (``R$``, ``US$``, ``RMB``), as not
    converting: the gate would refuse them anyway, but only the mapping can fix them (a values
    table), so they are named here with that fix; removed from ``out`` when any."""
    codes = parse_text(out["currency"].astype("object"), case="upper")
    bad = codes.notna() & ~codes.isin(ISO_4217)
    if not bad.any():
        return None
    del out["currency"]
    found = list(dict.fromkeys(str(c) for c in codes[bad]))
    table = ", ".join(f"{c!r}: {COMMON_MISTAKES.get(c, '...')}" for c in found[:3])
    hints = [f"{c!r} (write {COMMON_MISTAKES[c]})" for c in found if c in COMMON_MISTAKES]
    return _Unconverted(
        "currency",
        f"source column {spec.column!r}" if spec.column else "constant value",
        "not ISO 4217 currency codes"
        + (f": {', '.join(hints[:3])}" if hints else "")
        + f"; give the codes in the mapping with a values table, e.g. currency: {{column: "
        f"{spec.column or 'COLUMN'}, values: {{{table}}}, unlisted: keep}}",
        bad,
        codes.where(bad, None),
    )


def rates_to_eur(mapping: Mapping, fx_to_base: dict[str, float] | None) -> dict[str, float] | None:
    """Each currency's rate to EUR, from features.fx_to_base, when the mapping gives the
    currency of revenue_recovered; None when it gives none (the amounts are in EUR already).

    Revenue is converted at ingest, not later like declared values: it is a recorded fact in
    the contract's unit (EUR), read by the gate's plausibility rule, the results store, the
    entity histories, the revenue model's labels and its evaluation, so one conversion here
    keeps every reader on one scale. The rate is the one of the ingest, as a recovered amount
    is final.
    """
    spec = mapping.columns.get("revenue_recovered")
    if spec is None or spec.currency is None:
        return None
    if spec.currency == "EUR":  # said to be in EUR already: no table needed
        return {"EUR": 1.0}
    if fx_to_base is None:
        raise ContractError(
            f"revenue_recovered is given in {spec.currency}: converting it to EUR needs the "
            "exchange rates of features.fx_to_base"
        )
    eur = fx_to_base.get("EUR")
    if eur is None or not math.isfinite(eur) or eur <= 0:
        raise ContractError(
            f"revenue_recovered (currency: {spec.currency}) is recorded in EUR, the contract's "
            "unit, and features.fx_to_base in params.yaml has no rate for EUR: add it (the "
            "value of 1 EUR in the base currency)"
        )
    rates = {code: rate / eur for code, rate in fx_to_base.items()}
    if spec.currency != ROW_CURRENCY and spec.currency not in rates:
        raise ContractError(
            f"revenue_recovered (currency: {spec.currency}): features.fx_to_base in params.yaml "
            f"has no rate for {spec.currency}; add it, or the amounts could not be put in EUR"
        )
    return rates


def _revenue_to_eur(
    out: dict[str, pd.Series], spec: _Spec, eur_rates: dict[str, float] | None
) -> _Unconverted | None:
    """Put ``out["revenue_recovered"]`` in EUR by the spec's ``currency``, in place; the rows
    whose amount has no rate (currency: row, a currency missing from the table) are returned
    as not converting, never kept on the wrong scale."""
    import pandas as pd

    if eur_rates is None:
        raise ContractError(
            "revenue_recovered gives a currency: its conversion needs rates_to_eur(...)"
        )
    amounts = out["revenue_recovered"]
    if spec.currency == ROW_CURRENCY:
        if "currency" not in out:  # itself not converted: named there; revenue waits for it
            del out["revenue_recovered"]
            return None
        codes = parse_text(out["currency"].astype("object"), case="upper")
    else:
        codes = pd.Series(spec.currency, index=amounts.index, dtype="object")
    rate = codes.map(eur_rates).astype("float64")
    missing = amounts.notna() & rate.isna()
    out["revenue_recovered"] = amounts * rate
    if not missing.any():
        return None
    del out["revenue_recovered"]
    common = ", ".join(map(str, codes[missing].fillna("(no currency)").value_counts().index[:5]))
    return _Unconverted(
        "revenue_recovered",
        f"source column {spec.column!r}" if spec.column else "constant value",
        f"amounts in currencies without a rate in features.fx_to_base ({common}), so they "
        "cannot be put in EUR: add the rates to params.yaml",
        missing,
        codes.fillna("(no currency)"),
    )
