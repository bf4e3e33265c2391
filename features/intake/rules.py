"""The declaration rules: defined once, applied to a file by the gate and to a request by the API.

A rule looks at canonical values (``features.intake.contract`` has read the text, numbers, booleans and
timestamps) and flags rows. Two severities:

- ``fault``: the record cannot be right: a required value missing, a code that is not a code, a
  negative weight or value, a date in the future (beyond ``MAX_CLOCK_SKEW_DAYS``), an outcome on
  a parcel never inspected, a recovered revenue above ``validate.max_revenue`` (max_value).
  A file with a fault does not enter the pipeline; a request with one is answered 400.
- ``warning``: possible but unusual (bulk weights, very high values, a currency without an
  exchange rate). Counted and shown with examples; the data is used as it is.

Structural rules derive from ``features.intake.contract.FIELDS`` (patterns, code lists, bounds,
nullability); plausibility limits come from params.yaml ``validate`` in the base currency
(``Limits``). Nothing here spells a column list. The same ``check`` runs on a file's canonical
frame (``FrameColumns``) and on a request's validated models (``RecordColumns``), so a row is
accepted by both or rejected by both, with the same messages.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import numpy as np

from features.intake.columns import FrameColumns, RecordColumns
from features.intake.contract import (
    COUNTRY_PATTERN,
    CURRENCY_PATTERN,
    EARLIEST_DECLARATION,
    FIELDS,
    MAX_CLOCK_SKEW_DAYS,
    MIN_WEIGHT_KG,
    OUTCOME_FIELDS,
    BadValues,
    Contract,
    ContractField,
)
from features.intake.iso3166 import (
    ALPHA2,
    ALPHA3_TO_ALPHA2,
    NUMERIC_TO_ALPHA2,
    name_to_alpha2,
    plain_name,
)
from features.intake.iso4217 import COMMON_MISTAKES, ISO_4217
from features.params import FeatureParams, Settings, ValidateParams

# a currency of the right shape (three capitals) that is no code: the format rule judges others
CURRENCY_FORMAT = re.compile(CURRENCY_PATTERN.removeprefix("^").removesuffix("$"))

Severity = Literal["fault", "warning"]
Columns = FrameColumns | RecordColumns

MAX_EXAMPLES = 5
_US = 1_000_000


@dataclass(frozen=True)
class Limits:
    """Plausibility limits (params.yaml ``validate``); values in ``base_currency``."""

    max_weight_kg: float
    max_value: float
    max_quantity: int
    base_currency: str
    fx_to_base: dict[str, float]
    max_share_without_rate: float = 0.05
    max_revenue: float | None = None  # None: max_value

    @property
    def weakest_rate(self) -> float:
        """The smallest rate to the base currency in the table (NaN: no table): what an amount
        in a currency without a rate is at least worth, judged against the bounds."""
        rates = [r for r in self.fx_to_base.values() if r > 0 and math.isfinite(r)]
        return min(rates) if rates else math.nan

    @property
    def revenue_bound(self) -> float:
        """The largest recovered revenue accepted (``validate.max_revenue``, else max_value)."""
        return self.max_value if self.max_revenue is None else self.max_revenue

    @property
    def revenue_key(self) -> str:
        """The params key that sets ``revenue_bound``, as messages name it."""
        return "validate.max_value" if self.max_revenue is None else "validate.max_revenue"

    @classmethod
    def from_params(
        cls, validate: ValidateParams | Mapping[str, Any] | None, features: FeatureParams
    ) -> Limits:
        """The ``validate`` section (a mapping is checked as one) + the currency table."""
        if not isinstance(validate, ValidateParams):
            validate = ValidateParams.from_dict(validate, "validate")
        return cls(
            max_weight_kg=validate.max_weight_kg,
            max_value=validate.max_value,
            max_quantity=validate.max_quantity,
            base_currency=features.base_currency,
            fx_to_base=features.fx,
            max_share_without_rate=validate.max_share_without_rate,
            max_revenue=validate.max_revenue,
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        return cls.from_params(settings.validation, settings.features)

    def bounds(self) -> dict[str, float]:
        """The plausibility bounds, as ``validate`` keys (``from_params`` reads them back)."""
        return {
            "max_value": self.max_value,
            "max_weight_kg": self.max_weight_kg,
            "max_quantity": self.max_quantity,
        }


# --------------------------------------------------------------------------------------------
# Rules and findings
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)  # rules are compared by identity
class Rule:
    """One check: which rows break it, and how to say so for one offending value."""

    name: str  # e.g. "hs_code.format"
    field: str  # what messages name
    severity: Severity
    requires: str  # what the rule asks for, in words (the report's rule column)
    flag: Callable[[Columns], np.ndarray]  # bool mask of offending rows
    explain: Callable[[Any], str]  # message for one offending value (without the field)
    shown: Callable[[Columns, np.ndarray], list[Any]]  # the values shown for rows
    scope: Literal["declaration", "outcome", "file"] = "declaration"
    # The same rule on one canonical value of ``field`` (True: breaks it), for requests of a
    # few declarations where a Python call per value beats a dozen numpy calls per rule.
    # ``None``: a rule over several fields, checked column-wise only.
    test: Callable[[Any], bool] | None = None
    value: Literal["text", "number", "time"] = "text"  # how ``test`` and messages read it
    on_missing: bool = False  # ``test`` is about a missing value (required fields)

    def message(self, value: Any) -> str:
        return f"{self.field}: {self.explain(value)}"


@dataclass
class Finding:
    """The rows of one batch or file that break one rule."""

    rule: Rule
    rows: np.ndarray  # int positions
    values: list[Any]  # shown values, aligned with rows

    @property
    def count(self) -> int:
        return len(self.rows)

    def messages(self) -> list[str]:
        return [self.rule.message(v) for v in self.values]


@dataclass
class Findings:
    """Everything the rules found in one batch of ``n_rows`` declarations."""

    n_rows: int
    items: list[Finding]

    @property
    def faults(self) -> list[Finding]:
        return [f for f in self.items if f.rule.severity == "fault"]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.items if f.rule.severity == "warning"]

    def rows_with(self, severity: Severity) -> np.ndarray:
        """Bool mask of the rows with at least one finding of ``severity``."""
        mask = np.zeros(self.n_rows, dtype=bool)
        for finding in self.items:
            if finding.rule.severity == severity:
                mask[finding.rows] = True
        return mask

    def messages_by_row(self, severity: Severity) -> dict[int, list[str]]:
        """row -> messages of that severity, in rule order."""
        return {
            row: [message for _, message in notes]
            for row, notes in self.coded_messages_by_row(severity).items()
        }

    def coded_messages_by_row(self, severity: Severity) -> dict[int, list[tuple[str, str]]]:
        """row -> (rule name, message) of that severity, in rule order: the rule's name is the
        stable code a decision's warning carries (``features.notes``)."""
        out: dict[int, list[tuple[str, str]]] = {}
        for finding in self.items:
            if finding.rule.severity != severity:
                continue
            name = finding.rule.name
            for row, message in zip(finding.rows.tolist(), finding.messages(), strict=True):
                out.setdefault(row, []).append((name, message))
        return out


# --------------------------------------------------------------------------------------------
# How values are shown in messages
# --------------------------------------------------------------------------------------------


def show(value: Any) -> str:
    """A value as messages quote it: text in quotes, numbers plainly, times in ISO UTC."""
    if value is None or (isinstance(value, float) and value != value):
        return "null"
    if isinstance(value, str):
        return repr(value if len(value) <= 40 else value[:37] + "...")
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e15:
            return str(int(value))
        return f"{value:.10g}"
    return str(value)


def _unquoted(value: Any) -> str:
    return "the value"


def _amount(value: float) -> str:
    """A money amount with thousands separators; absurd ones (1e300) in short scientific form."""
    return f"{value:,.0f}" if abs(value) < 1e15 else f"{value:.3g}"


def iso_utc(t_us: int | None) -> str:
    if t_us is None:
        return "null"
    return (datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=int(t_us))).strftime(
        "%Y-%m-%dT%H:%M:%SZ"
    )


def _outcome_value(value: Any, kind: str) -> str:
    """A recorded outcome as a person reads it: a time in ISO 8601, a flag as true/false
    (the columns hold microseconds and 0/1)."""
    if kind == "datetime":
        return iso_utc(value)
    if kind == "bool" and value is not None and value == value:
        return "true" if value else "false"
    return show(value)


def _text_values(columns: Columns, name: str, rows: np.ndarray) -> list[Any]:
    return columns.text(name)[rows].tolist()


def _number_values(columns: Columns, name: str, rows: np.ndarray) -> list[Any]:
    return columns.numbers(name)[rows].tolist()


def _time_values(columns: Columns, name: str, rows: np.ndarray) -> list[Any]:
    """Microseconds since the epoch (None where missing); messages format them (``iso_utc``)."""
    missing = columns.missing(name)[rows].tolist()
    return [
        None if gone else t
        for t, gone in zip(columns.t_us(name)[rows].tolist(), missing, strict=True)
    ]


_SHOWN = {
    "str": _text_values,
    "category": _text_values,
    "int": _number_values,
    "float": _number_values,
    "bool": _number_values,
    "datetime": _time_values,
}


def _shown_by(name: str, kind: str) -> Callable[[Columns, np.ndarray], list[Any]]:
    return lambda columns, rows: _SHOWN[kind](columns, name, rows)


def _present_text(columns: Columns, name: str) -> tuple[np.ndarray, np.ndarray]:
    values = columns.text(name)
    return values, ~columns.missing(name)


# --------------------------------------------------------------------------------------------
# Structural rules, derived from the contract's fields
# --------------------------------------------------------------------------------------------


def _field_rules(f: ContractField, latest_us: Callable[[], int]) -> list[Rule]:
    """``latest_us()``: the latest plausible timestamp (now + clock skew), read at check time.

    Text rules are one scalar test, mapped over a column; number and time rules also have a
    numpy form for files (the property-based test holds the two forms equal).
    """
    name, kind = f.name, f.kind
    shown = _shown_by(name, kind)
    # a personal field's message names the field, never its value (a pseudonym by now anyway)
    quote = _unquoted if f.personal else show
    value: Literal["text", "number", "time"] = (
        "text" if kind in ("str", "category") else "time" if kind == "datetime" else "number"
    )

    def rule(suffix: str, requires: str, explain: Callable[[Any], str], **how: Any) -> Rule:
        flag = how.pop("flag", None)
        test = how["test"]
        if flag is None:  # text: the scalar test over the present values
            flag = lambda c: _text_flag(c, name, test)  # noqa: E731
        return Rule(
            f"{name}.{suffix}", name, "fault", requires, flag, explain, shown, f.scope,
            value=value, **how,
        )  # fmt: skip

    rules: list[Rule] = []
    if not f.nullable:
        rules.append(
            rule(
                "required",
                "a value",
                lambda v: "a value is required",
                flag=lambda c: c.missing(name),
                test=_is_missing,
                on_missing=True,
            )
        )
    if kind in ("str", "category"):
        if f.max_length:
            limit = f.max_length
            rules.append(
                rule(
                    "length",
                    f"at most {limit} characters",
                    lambda v: f"{quote(v)} is longer than {limit} characters",
                    test=lambda v: len(v) > limit,
                )
            )
        if f.pattern:
            regex = re.compile(f.pattern.removeprefix("^").removesuffix("$"))
            what = f.pattern_text or f"text matching {f.pattern}"
            rules.append(
                rule(
                    "format",
                    what,
                    lambda v: (
                        f"{quote(v)} is not {what}"
                        + (f" (write {COMMON_MISTAKES[v]})" if v in COMMON_MISTAKES else "")
                    ),
                    test=lambda v: regex.fullmatch(v) is None,
                )
            )
        if f.pattern == CURRENCY_PATTERN:
            rules.append(
                rule(
                    "iso4217",
                    "an ISO 4217 currency code",
                    lambda v: (
                        f"{quote(v)} is not an ISO 4217 currency code"
                        + (f" (write {COMMON_MISTAKES[v]})" if v in COMMON_MISTAKES else "")
                    ),
                    test=lambda v: CURRENCY_FORMAT.fullmatch(v) is not None and v not in ISO_4217,
                )
            )
        if f.allowed:
            allowed = frozenset(f.allowed)
            listed = ", ".join(f.allowed)
            rules.append(
                rule(
                    "code",
                    f"one of {listed}",
                    lambda v: f"{quote(v)} is not one of {listed}",
                    test=lambda v: v not in allowed,
                )
            )
    if kind in ("int", "float"):
        rules.append(
            rule(
                "finite",
                "a finite number",
                lambda v: f"{quote(v)} is not a finite number",
                flag=lambda c: np.isinf(c.numbers(name)),
                test=math.isinf,
            )
        )
        if f.min_value is not None:
            low = f.min_value
            unit = f" {f.unit}" if f.unit in ("kg", "EUR") else ""
            rules.append(
                rule(
                    "minimum",
                    f"at least {low:g}",
                    (lambda v: f"{quote(v)}{unit} is negative")
                    if low == 0
                    else (lambda v: f"{quote(v)} is below {low:g}"),
                    flag=lambda c: _number_flag(c, name, lambda x: x < low),
                    test=lambda v: v < low,
                )
            )
    if kind == "datetime":
        earliest = int(datetime.fromisoformat(EARLIEST_DECLARATION).timestamp()) * _US
        rules.append(
            rule(
                "not_before",
                f"not before {EARLIEST_DECLARATION[:10]}",
                lambda v: f"{iso_utc(v)} is before {EARLIEST_DECLARATION[:10]}" + _era_hint(v),
                flag=lambda c: ~c.missing(name) & (c.t_us(name) < earliest),
                test=lambda v: v < earliest,
            )
        )
        rules.append(
            rule(
                "not_future",
                f"not in the future (at most {MAX_CLOCK_SKEW_DAYS} days of clock skew)",
                lambda v: (
                    f"{iso_utc(v)} is in the future (later than {iso_utc(latest_us())}: now plus "
                    f"{MAX_CLOCK_SKEW_DAYS} days of clock skew)" + _era_hint(v)
                ),
                flag=lambda c: ~c.missing(name) & (c.t_us(name) > latest_us()),
                test=lambda v: v > latest_us(),
            )
        )
    return rules


def _era_hint(t_us: int) -> str:
    """For a year of the Buddhist era read as Gregorian (2569 for 2026: a Thai export), the
    mapping's way to read it; for a Hijri or Solar Hijri year, that it is not read."""
    # the ISO text's year, whatever its width (year 287 is "287-", schema fuzzing sends such)
    year = int(re.match(r"-?\d+", iso_utc(t_us)).group())  # type: ignore[union-attr]
    if 1300 <= year < 1500:  # a Saudi or Gulf (1448 for 2026) or Iranian (1405) export
        return (
            "; a year of the Hijri or Solar Hijri calendar? the mapping reads such dates with "
            "calendar: hijri (Umm al-Qura) or calendar: jalali in their spec"
        )
    if not 2400 <= year < 2800:
        return ""
    return (
        "; a year of the Buddhist era, 543 years ahead of the Gregorian? the mapping reads "
        "such dates with calendar: buddhist in their spec"
    )


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and value != value)


def _text_flag(columns: Columns, name: str, bad: Callable[[str], bool]) -> np.ndarray:
    """Rows whose present value breaks ``bad``, testing each distinct value once (a batch has
    few distinct channels, currencies or countries; a clean batch costs one set())."""
    values, present = _present_text(columns, name)
    out = np.zeros(len(values), dtype=bool)
    rows = np.flatnonzero(present)
    if not len(rows):
        return out
    texts = values[rows].tolist()
    broken = {v for v in set(texts) if bad(v)}
    if broken:
        out[rows] = np.fromiter((v in broken for v in texts), dtype=bool, count=len(rows))
    return out


def _number_flag(
    columns: Columns, name: str, bad: Callable[[np.ndarray], np.ndarray]
) -> np.ndarray:
    x = columns.numbers(name)
    with np.errstate(invalid="ignore"):
        return ~np.isnan(x) & bad(x)


# --------------------------------------------------------------------------------------------
# Plausibility (warnings), from the limits
# --------------------------------------------------------------------------------------------


def _rates(columns: Columns, limits: Limits) -> np.ndarray:
    currency = columns.text("currency")
    return np.fromiter(
        (limits.fx_to_base.get(c, np.nan) if c is not None else np.nan for c in currency.tolist()),
        dtype=np.float64,
        count=len(currency),
    )


def _bound_rates(columns: Columns, limits: Limits) -> tuple[np.ndarray, np.ndarray]:
    """The rate each row's amounts are judged against the plausible bound with, and where it
    is the table's weakest rate standing in for one the table lacks. A value of 1e300 in a
    currency without a rate (BTN, XAU) escaped the bound and the lane it raises (probe 10):
    above the bound even at the weakest rate of the table, it is above it in any currency."""
    rates = _rates(columns, limits)
    estimated = np.isnan(rates)
    return np.where(estimated, limits.weakest_rate, rates), estimated


def _above_bound(v: tuple[Any, ...], base: str, bound: float) -> str:
    """ "1e+300 JPY (6.1e+297 EUR) is above the plausible 100,000 EUR" for (value, currency,
    in base, estimated)."""
    if v[3]:
        said = f"no exchange rate to {base}; at least {_amount(v[2])} {base} at any rate"
    else:
        said = f"{_amount(v[2])} {base}"
    return f"{show(v[0])} {v[1]} ({said}) is above the plausible {bound:,.0f} {base}"


# Two letters that are no ISO 3166 code but that exports write for a country: the fix is a
# values table in the mapping (Kosovo's XK, which the EU and most customs use, is taken as is)
_COUNTRY_MISTAKES = {"UK": "GB", "EL": "GR", "EN": "GB", "SP": "ES"}
_COUNTRIES = ALPHA2 | {"XK"}


def _iso_form(code: str) -> str | None:
    """The ISO 3166 alpha-2 that ``code`` (canonical: upper case) writes another way, as
    "alpha-3 for CN" or "a name of CN"; None when it is no alpha-3 code or country name."""
    if code in ALPHA3_TO_ALPHA2:
        return f"ISO 3166 alpha-3 for {ALPHA3_TO_ALPHA2[code]}"
    if len(code) > 3 and code.isalpha():  # the names table only for words (~0.3 s, once)
        meant = name_to_alpha2().get(plain_name(code))
        if meant is not None:
            return f"a name of {meant}"
    return None


def _country_code_rules(name: str) -> list[Rule]:
    """Countries that are no ISO 3166 alpha-2 code.

    A warning for a code of the export's own (``CNTRY376``; two capital letters such as "UK"
    and "EL", the EU's code for Greece, passed as countries of their own, their histories
    apart from GB's and GR's, probe): its parcels form a country of their own, as they would
    for a clearance system's code for an unknown origin, which must still be scored. A
    three-digit code is said to read as ISO numeric, which the mapping converts
    (``country_codes: numeric``), but kept as the export's own when it is not. A fault for an
    ISO alpha-3 code or a country name (``CHN``, ``CHINA``): a known code written another way,
    which ``country_codes`` converts, and which kept as written would split a country's
    history in two (and meet a champion that knows only CN)."""
    own_code = re.compile(COUNTRY_PATTERN)

    def not_iso(code: str) -> bool:
        return code not in _COUNTRIES and own_code.fullmatch(code) is not None

    def explain_own(value: Any) -> str:
        code = str(value)
        if code in _COUNTRY_MISTAKES:
            return (
                f"{show(value)} is no ISO 3166 country code ({_COUNTRY_MISTAKES[code]} in ISO "
                "3166?): its parcels form a country of their own; the mapping's values table "
                "can name the code meant"
            )
        if code in NUMERIC_TO_ALPHA2:
            return (
                f"{show(value)} is no ISO 3166 alpha-2 code: read as the export's own code, a "
                f"country of its own (as ISO 3166 numeric it is {NUMERIC_TO_ALPHA2[code]}: "
                "then map the column with country_codes: numeric)"
            )
        # short, and no word of a mapping: on a served export's own codes it is on every
        # decision, to a clearance system that has no mapping (probe 9)
        return f"{show(value)} is no ISO 3166 country code: read as the export's own code"

    def explain_form(value: Any) -> str:
        form = _iso_form(str(value))
        fix = "alpha3" if form and form.startswith("ISO") else "name"
        return (
            f"{show(value)} is {form}: map the column with country_codes: {fix} (kept as "
            "written it would be a country apart from its alpha-2 code's)"
        )

    return [
        Rule(
            f"{name}.iso3166",
            name,
            "warning",
            "an ISO 3166 country code",
            lambda c: _text_flag(c, name, lambda v: not_iso(v) and _iso_form(v) is None),
            explain_own,
            _shown_by(name, "str"),
            test=lambda v: not_iso(str(v)) and _iso_form(str(v)) is None,
        ),
        Rule(
            f"{name}.iso_form",
            name,
            "fault",
            "an ISO 3166 alpha-2 code, not alpha-3 or a name",
            lambda c: _text_flag(c, name, lambda v: not_iso(v) and _iso_form(v) is not None),
            explain_form,
            _shown_by(name, "str"),
            test=lambda v: not_iso(str(v)) and _iso_form(str(v)) is not None,
        ),
    ]


# A declaration time this far ahead of the clock of the system checking it, yet within the
# clock skew a fault allows, is warned: the common integration slip of a local time sent as
# UTC ("Z") puts a declaration hours ahead, and its history windows are then counted from the
# wrong instant, unsaid (probe 31: +8 h, +30 h and +47 h answered without a word).
AHEAD_WARNING_MINUTES = 15


def _ahead_rule(now_us: Callable[[], int], latest_us: Callable[[], int]) -> Rule:
    """``declared_at.ahead``: ahead of ``now_us()`` by more than ``AHEAD_WARNING_MINUTES``, up
    to ``latest_us()`` (beyond it the field's ``not_future`` fault says so)."""
    margin = AHEAD_WARNING_MINUTES * 60 * _US

    def ahead(t: np.ndarray | int) -> Any:
        return (t > now_us() + margin) & (t <= latest_us())

    def explain(v: Any) -> str:
        now = now_us()
        return (
            f"{iso_utc(v)} is {(v - now) / (3600 * _US):.1f} h ahead of this system's clock "
            f"({iso_utc(now)}): a local time sent as UTC? Its history windows count from it"
        )

    return Rule(
        "declared_at.ahead",
        "declared_at",
        "warning",
        f"at most {AHEAD_WARNING_MINUTES} minutes ahead of the clock",
        lambda c: ~c.missing("declared_at") & ahead(c.t_us("declared_at")),
        explain,
        _shown_by("declared_at", "datetime"),
        test=lambda v: bool(ahead(v)),
        value="time",
    )


def _plausibility_rules(limits: Limits) -> list[Rule]:
    base = limits.base_currency
    weight = _shown_by("gross_weight_kg", "float")

    # An absurd value (1.7e308 GBP, accepted with this warning) overflows to inf in the base
    # currency: above any limit, as it should read, and no numpy warning on the console.
    def value_shown(columns: Columns, rows: np.ndarray) -> list[Any]:
        values = columns.numbers("declared_value")[rows]
        currency = columns.text("currency")[rows]
        rates, estimated = _bound_rates(columns, limits)
        with np.errstate(over="ignore"):
            based = values * rates[rows]
        return list(
            zip(
                values.tolist(),
                currency.tolist(),
                based.tolist(),
                estimated[rows].tolist(),
                strict=True,
            )
        )

    def value_flag(columns: Columns) -> np.ndarray:
        values = columns.numbers("declared_value")
        with np.errstate(over="ignore", invalid="ignore"):
            based = values * _bound_rates(columns, limits)[0]
            # an infinite value is the finite rule's fault; one that overflowed is flagged here
            return np.isfinite(values) & (based > limits.max_value)

    # only ISO 4217 codes: a value that is no code ("R$") is a fault of its own, whose fix is
    # in the mapping, not a rate to add to features.fx_to_base
    def no_rate(columns: Columns) -> np.ndarray:
        codes = columns.text("currency")
        is_code = np.fromiter((c in ISO_4217 for c in codes.tolist()), bool, len(codes))
        return ~columns.missing("currency") & np.isnan(_rates(columns, limits)) & is_code

    return [
        *(r for name in ("origin_country", "seller_country") for r in _country_code_rules(name)),
        # The HS has no chapter 00: such a code is a placeholder (0000000000) or a zero-padded
        # id in the wrong column, scored as a code the model never saw, unsaid (probe 9). A
        # warning, not a fault: an export's placeholder for an unknown code must still be scored.
        Rule(
            "hs_code.chapter",
            "hs_code",
            "warning",
            "an HS code of a chapter from 01 to 99",
            lambda c: _text_flag(c, "hs_code", lambda v: v.startswith("00")),
            lambda v: f"{show(v)} is in no HS chapter (00): a placeholder, or an id?",
            _shown_by("hs_code", "str"),
            test=lambda v: str(v).startswith("00"),
        ),
        Rule(
            "gross_weight_kg.zero",
            "gross_weight_kg",
            "warning",
            "a weight above 0 kg",
            lambda c: _number_flag(c, "gross_weight_kg", lambda x: x == 0),
            lambda v: "0 kg: no weight (a light item rounded down, or not declared)",
            weight,
            test=lambda v: v == 0,
            value="number",
        ),
        # Above 0 and below a gram: no parcel weighs so little; a weight in tonnes, or a
        # probe (1e-300 kg, probe 10). Read by the features as the 1 g they floor weights to,
        # so warned as 0 kg is, without raising the lane.
        Rule(
            "gross_weight_kg.small",
            "gross_weight_kg",
            "warning",
            "0 kg or at least 1 g",
            lambda c: _number_flag(c, "gross_weight_kg", lambda x: (x > 0) & (x < MIN_WEIGHT_KG)),
            lambda v: f"{show(v)} kg is below one gram: a weight in tonnes, or mistyped?",
            weight,
            test=lambda v: 0 < v < MIN_WEIGHT_KG,
            value="number",
        ),
        Rule(
            "gross_weight_kg.plausible",
            "gross_weight_kg",
            "warning",
            f"at most {limits.max_weight_kg:g} kg (validate.max_weight_kg)",
            lambda c: _number_flag(c, "gross_weight_kg", lambda x: x > limits.max_weight_kg),
            lambda v: (
                f"{show(v)} kg is above the plausible {limits.max_weight_kg:g} kg "
                "(a bulk consignment?)"
            ),
            weight,
            test=lambda v: v > limits.max_weight_kg,
            value="number",
        ),
        Rule(
            "currency.rate",
            "currency",
            "warning",
            f"a currency with an exchange rate to {base} (features.fx_to_base)",
            no_rate,
            lambda v: (
                f"{show(v)} has no exchange rate to {base} (features.fx_to_base): "
                "its value features are left empty"
            ),
            _shown_by("currency", "str"),
            test=lambda v: v not in limits.fx_to_base and v in ISO_4217,
        ),
        Rule(
            "declared_value.plausible",
            "declared_value",
            "warning",
            f"at most {limits.max_value:,.0f} {base} (validate.max_value)",
            value_flag,
            lambda v: _above_bound(v, base, limits.max_value),
            value_shown,
        ),
        Rule(
            "quantity.plausible",
            "quantity",
            "warning",
            f"at most {limits.max_quantity:,} items (validate.max_quantity)",
            lambda c: _number_flag(c, "quantity", lambda x: x > limits.max_quantity),
            lambda v: f"{show(v)} items is above the plausible {limits.max_quantity:,}",
            _shown_by("quantity", "int"),
            test=lambda v: v > limits.max_quantity,
            value="number",
        ),
    ]


def _extra_amount_rules(contract: Contract | None, limits: Limits) -> list[Rule]:
    """An amount extra (``amount: true``: duties paid, a CIF value) above the plausible value of
    a consignment, as ``declared_value.plausible`` warns: taxes of 1e300 on a 512 USD parcel
    moved its revenue at stake from 1 to 393 EUR, unsaid (probe 9). The amount is in the
    row's currency, judged in the base currency; without a rate, at the table's weakest one,
    as declared values are (``_bound_rates``)."""
    base = limits.base_currency
    rules = []
    for extra in contract.extras if contract else ():
        if not extra.amount:
            continue
        name = extra.name

        def based(columns: Columns, rows: np.ndarray | None = None, name: str = name) -> Any:
            values = columns.numbers(name)
            rates, estimated = _bound_rates(columns, limits)
            if rows is not None:
                values, rates, estimated = values[rows], rates[rows], estimated[rows]
            with np.errstate(over="ignore", invalid="ignore"):
                return values, values * rates, estimated

        def flag(columns: Columns, based: Callable[..., Any] = based) -> np.ndarray:
            values, in_base, _ = based(columns)
            with np.errstate(invalid="ignore"):
                return np.isfinite(values) & (in_base > limits.max_value)

        def shown(
            columns: Columns, rows: np.ndarray, based: Callable[..., Any] = based
        ) -> list[Any]:
            values, in_base, estimated = based(columns, rows)
            currency = columns.text("currency")[rows]
            return list(
                zip(
                    values.tolist(),
                    currency.tolist(),
                    in_base.tolist(),
                    estimated.tolist(),
                    strict=True,
                )
            )

        rules.append(
            Rule(
                f"{name}.plausible",
                name,
                "warning",
                f"at most {limits.max_value:,.0f} {base} (validate.max_value)",
                flag,
                lambda v: f"{_above_bound(v, base, limits.max_value)}: a unit or decimal error?",
                shown,
            )
        )
    return rules


# --------------------------------------------------------------------------------------------
# Outcomes (history files): results only where inspected, and consistent
# --------------------------------------------------------------------------------------------


def _inspected(columns: Columns) -> np.ndarray:
    return columns.numbers("inspected") == 1.0


def _not_before(later: str, earlier: str, severity: Severity, then: str, name: str) -> Rule:
    """The outcome rule that time field ``later`` is not before ``earlier`` where both are
    given; ``then``: what the message adds about the row (a warning's consequence)."""

    def flag(columns: Columns) -> np.ndarray:
        present = ~columns.missing(later) & ~columns.missing(earlier)
        return present & (columns.t_us(later) < columns.t_us(earlier))

    def shown(columns: Columns, rows: np.ndarray) -> list[Any]:
        pairs = zip(
            _time_values(columns, later, rows), _time_values(columns, earlier, rows), strict=True
        )
        return list(pairs)

    return Rule(
        name,
        later,
        severity,
        f"not before {earlier}" + (" (else read as it)" if then else ""),
        flag,
        lambda v: f"{iso_utc(v[0])} is before {earlier} {iso_utc(v[1])}{then}",
        shown,
        "outcome",
    )


def _outcome_rules(limits: Limits) -> list[Rule]:
    rules: list[Rule] = []
    for f in OUTCOME_FIELDS:
        if f.name == "inspected":
            continue
        name = f.name
        rules.append(
            Rule(
                f"{name}.without_inspection",
                name,
                "fault",
                "null where the parcel was not inspected",
                lambda c, name=name: ~_inspected(c) & ~c.missing(name),
                lambda v, kind=f.kind: (
                    f"{_outcome_value(v, kind)} is recorded but the parcel was not inspected"
                ),
                _shown_by(name, f.kind),
                "outcome",
            )
        )
    for name, what in (("inspected_at", "result time"), ("illicit", "result (illicit)")):
        rules.append(
            Rule(
                f"{name}.when_inspected",
                name,
                "fault",
                "a value where the parcel was inspected",
                lambda c, name=name: _inspected(c) & c.missing(name),
                lambda v, what=what: f"the parcel was inspected but its {what} is missing",
                _shown_by(name, "str" if name == "illicit" else "datetime"),
                "outcome",
            )
        )

    rules.append(
        _not_before("inspected_at", "declared_at", "fault", "", "inspected_at.after_declaration")
    )
    # a warning, not a fault: the row keeps its result, counted from inspected_at (a result
    # is not known before it is recorded: features.pipeline.prepare.result_times)
    rules.append(
        _not_before(
            "result_known_at",
            "inspected_at",
            "warning",
            ": read as it",
            "result_known_at.after_result",
        )
    )
    # revenue_recovered is in EUR (the contract's unit), the limit in the base currency
    eur = limits.fx_to_base.get("EUR", math.nan)  # no rate: not judged, as declared values
    base = limits.base_currency

    def revenue_flag(columns: Columns) -> np.ndarray:
        return _number_flag(
            columns,
            "revenue_recovered",
            lambda x: np.isfinite(x) & (x * eur > limits.revenue_bound),  # inf: the finite rule's
        )

    # No parcel yields more duty and VAT than the most a parcel is plausibly worth
    # (validate.max_value, or validate.max_revenue where set). A fault, where a high declared
    # value is a warning: a recovered revenue is a training label (the revenue model's target)
    # and a stored result is final, so a unit or decimal error (1e300) must not get in.
    rules.append(
        Rule(
            "revenue_recovered.plausible",
            "revenue_recovered",
            "fault",
            f"at most {limits.revenue_bound:,.0f} {base} ({limits.revenue_key})",
            revenue_flag,
            lambda v: (
                f"{show(v)} EUR is above the plausible {limits.revenue_bound:,.0f} {base} "
                f"({limits.revenue_key}): a unit or decimal error? (if amounts like it are "
                "real, as for bulk consignments, set validate.max_revenue in params.yaml)"
            ),
            _shown_by("revenue_recovered", "float"),
            "outcome",
        )
    )
    rules.append(
        Rule(
            "offence_type.without_offence",
            "offence_type",
            "fault",
            "null unless the parcel was found illicit",
            lambda c: (c.numbers("illicit") == 0.0) & ~c.missing("offence_type"),
            lambda v: f"{show(v)} is recorded but the parcel was not found illicit",
            _shown_by("offence_type", "category"),
            "outcome",
        )
    )
    # Revenue recovered from a parcel found clean: a recording error, as an offence type is.
    # 0 is what exports write for "nothing recovered" and passes. One rule for history files
    # and results alike (``serving.outcomes`` runs these outcome rules).
    rules.append(
        Rule(
            "revenue_recovered.without_offence",
            "revenue_recovered",
            "fault",
            "0 or null unless the parcel was found illicit",
            lambda c: (
                (c.numbers("illicit") == 0.0)
                & ~c.missing("revenue_recovered")
                & (np.nan_to_num(c.numbers("revenue_recovered")) > 0)
            ),
            lambda v: f"{show(v)} EUR is recorded but the parcel was not found illicit",
            _shown_by("revenue_recovered", "float"),
            "outcome",
        )
    )
    return rules


# --------------------------------------------------------------------------------------------
# Running the rules
# --------------------------------------------------------------------------------------------


def rules_for(
    limits: Limits,
    *,
    with_outcomes: bool,
    now: datetime | None = None,
    contract: Contract | None = None,
) -> list[Rule]:
    """Every rule for a batch of declarations (with outcomes: a history), in reporting order.

    ``now`` fixes the clock of the "not in the future" rules (tests, re-runs); by default they
    read the clock when they run, so a long-lived service can build its rules once.
    ``contract``: the mapping's extras, whose amounts get the declared value's plausibility bound.
    """
    skew_us = MAX_CLOCK_SKEW_DAYS * 86_400 * _US
    if now is not None:
        fixed = int(now.timestamp() * _US) + skew_us

        def latest_us() -> int:
            return fixed
    else:

        def latest_us() -> int:
            return int(datetime.now(UTC).timestamp() * _US) + skew_us

    fields = [f for f in FIELDS if with_outcomes or f.scope == "declaration"]
    rules = [rule for f in fields for rule in _field_rules(f, latest_us)]
    rules.append(_ahead_rule(lambda: latest_us() - skew_us, latest_us))
    rules += _plausibility_rules(limits)
    rules += _extra_amount_rules(contract, limits)
    if with_outcomes:
        rules += _outcome_rules(limits)
    return rules


def check(
    columns: Columns, rules: list[Rule], unreadable: dict[str, np.ndarray] | None = None
) -> Findings:
    """Run ``rules`` over a batch of declarations.

    ``unreadable``: field -> bool mask of rows whose value did not convert (already a fault);
    no other rule of that field flags those rows again.
    """
    n = len(columns)
    items = []
    columns = _Memo(columns)  # type: ignore[assignment]  # each column is read once
    for rule in rules:
        mask = rule.flag(columns)
        if unreadable and rule.field in unreadable:
            mask = mask & ~unreadable[rule.field]
        rows = np.flatnonzero(mask)
        if len(rows):
            items.append(Finding(rule, rows, rule.shown(columns, rows)))
    return Findings(n, items)


class _Memo:
    """A column source that reads each column once (several rules look at the same one)."""

    def __init__(self, columns: Columns) -> None:
        self._columns = columns
        self._cache: dict[tuple[str, str], np.ndarray] = {}

    def __len__(self) -> int:
        return len(self._columns)

    def _get(self, how: str, name: str) -> np.ndarray:
        key = (how, name)
        if key not in self._cache:
            self._cache[key] = getattr(self._columns, how)(name)
        return self._cache[key]

    def text(self, name: str) -> np.ndarray:
        return self._get("text", name)

    def numbers(self, name: str) -> np.ndarray:
        return self._get("numbers", name)

    def t_us(self, name: str) -> np.ndarray:
        return self._get("t_us", name)

    def missing(self, name: str) -> np.ndarray:
        # derived from the values the other rules read anyway, not read a second time
        key = ("missing", name)
        if key not in self._cache:
            kind = _KINDS.get(name)
            if kind in ("str", "category"):
                self._cache[key] = np.equal(self.text(name), None)
            elif kind in ("int", "float", "bool"):
                self._cache[key] = np.isnan(self.numbers(name))
            else:
                self._cache[key] = self._columns.missing(name)
        return self._cache[key]


_KINDS = {f.name: f.kind for f in FIELDS}


def type_requirement(problem: str) -> str:
    """What a value failing to convert breaks, as its ``<field>.type`` rule states it."""
    return problem.removeprefix("is not ").removeprefix("is ")


def parse_findings(bad_values: list[BadValues]) -> list[Finding]:
    """Values that did not convert to their type, as faults of a ``<field>.type`` rule."""
    out = []
    for bad in bad_values:
        problem = bad.problem
        out.append(
            Finding(
                Rule(
                    f"{bad.field}.type",
                    bad.field,
                    "fault",
                    type_requirement(problem),
                    lambda c: np.zeros(len(c), dtype=bool),
                    lambda v, problem=problem: f"{show(v)} {problem}",
                    lambda c, rows: [],
                ),
                np.asarray(bad.rows, dtype=np.int64),
                list(bad.values),
            )
        )
    return out


# Up to this many declarations a request is checked value by value (``Rule.test``); beyond,
# column-wise (measured crossover). A single declaration costs ~60 us so, ~650 us column-wise.
SCALAR_ROWS = 32


_NOT_A_VALUE = {
    "numeric": "is not a number",
    "entity": "is not an identifier (text or a number)",
    "categorical": "is not a code (text or a number)",
}


def check_records(records: list[Any], contract: Contract | None, rules: list[Rule]) -> Findings:
    """The rules over a request's validated ``Declaration`` models (the API path).

    Numeric extras are read here as in a file (a value that is not a number is a fault).
    """
    import pandas as pd

    from features.intake.columns import extra_column
    from features.intake.contract import PERSONAL_NOT_SHOWN, ContractError, extra_value_faults

    bad: list[BadValues] = []
    for extra in contract.extras if contract else ():
        values = [(r.model_extra or {}).get(extra.name) for r in records]
        wrong = [i for i, v in enumerate(values) if isinstance(v, dict | list)]
        if extra.kind == "numeric":
            # JSON true is no number (read as 1.0), and NaN no value (read as unknown, unsaid),
            # as the contract's own numbers refuse them (probe 9)
            wrong += [i for i, v in enumerate(values) if isinstance(v, bool) or v != v]
            for i, value in enumerate(values):
                if i in wrong:
                    continue
                try:
                    extra_column([value], extra)
                except ContractError:
                    shown = PERSONAL_NOT_SHOWN if extra.personal else value
                    bad.append(BadValues(extra.name, np.array([i]), [shown], "is not a number"))
        for i in sorted(set(wrong)):
            # an object or list is no code either: its Python text was stored as a new entity
            shown = "NaN" if values[i] != values[i] else values[i]  # not "null": it was sent
            if extra.personal:  # a 400 body reaches the client and any proxy logging bodies
                shown = PERSONAL_NOT_SHOWN
            bad.append(BadValues(extra.name, np.array([i]), [shown], _NOT_A_VALUE[extra.kind]))
        values = [None if i in wrong else v for i, v in enumerate(values)]
        if any(v is not None for v in values):  # as a file's: finite numbers, short codes
            try:
                column = extra_column(values, extra)
            except ContractError:
                continue  # named above
            bad += extra_value_faults(extra, column, pd.Series(values, dtype=object))
    small = len(records) <= SCALAR_ROWS
    scalar = [r for r in rules if small and r.test is not None]
    columnwise = [r for r in rules if not (small and r.test is not None)]
    items = _check_values(records, scalar)
    if columnwise:
        items += check(RecordColumns(records, contract), columnwise).items
        order = {id(rule): i for i, rule in enumerate(rules)}
        items.sort(key=lambda finding: order[id(finding.rule)])
    return Findings(len(records), parse_findings(bad) + items)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def _canonical(value: Any, kind: str) -> Any:
    """A validated model's value as the column-wise rules read it (numbers as floats, times
    as microseconds since the epoch), so both forms show and test the same value."""
    if kind == "number":
        return float(value)
    if kind == "time":
        return (value - _EPOCH) // _MICROSECOND
    return value


def _check_values(records: list[Any], rules: list[Rule]) -> list[Finding]:
    """Scalar tests, field by field: each value is read and converted once for all its rules."""
    by_field: dict[str, list[Rule]] = {}
    for rule in rules:
        by_field.setdefault(rule.field, []).append(rule)
    hits: dict[int, tuple[list[int], list[Any]]] = {}
    for name, field_rules in by_field.items():
        kind = field_rules[0].value
        for i, record in enumerate(records):
            value = getattr(record, name)
            missing = _is_missing(value)
            if not missing:
                value = _canonical(value, kind)
            for rule in field_rules:
                broken = missing if rule.on_missing else not missing and rule.test(value)  # type: ignore[misc]
                if broken:
                    rows, shown = hits.setdefault(id(rule), ([], []))
                    rows.append(i)
                    shown.append(None if missing else value)
    return [
        Finding(rule, np.asarray(hits[id(rule)][0], dtype=np.int64), hits[id(rule)][1])
        for rule in rules
        if id(rule) in hits
    ]
