"""params.yaml as one settings model: a pydantic model per section, each default written once here.

Every command reads the file once, at start-up, with ``load_settings`` and hands each layer its
section (``settings.features``, ``settings.train`` ...). A key the model does not know is an
error naming it (``params.yaml train.lightgbm: cat_smoothing: unknown key``), so a typo never
leaves a default silently in force. A missing file or section means the defaults below.

Environment variables override only the keys listed in ``ENV_OVERRIDES`` (what an operator sets
per deployment without editing the versioned file: the decision store's path, the exploration
secret). The model sits in the lowest layer so that features, models and serving read the same
one; it holds no behaviour beyond checking values.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from features.errors import ParcelriskError

DEFAULT_PARAMS = Path("params.yaml")
DEFAULT_MODEL_NAME = "parcel-risk"
# ingest --quarantine: above this share of rows set aside, the whole file is refused (so many
# bad rows point to the mapping or the export, not to a few faulty declarations)
DEFAULT_MAX_REJECTED = 0.01

# Indicative rates to EUR, the default base currency: an administration sets its own table
# (features.fx_to_base), or its base currency and table together.
DEFAULT_FX_TO_BASE = {
    "EUR": 1.0,
    "USD": 0.92,
    "GBP": 1.17,
    "CNY": 0.127,
    "HKD": 0.118,
    "JPY": 0.0061,
    "KRW": 0.00068,
    "TRY": 0.027,
    "INR": 0.011,
    "CHF": 1.04,
    "CAD": 0.68,
    "AUD": 0.60,
    "SGD": 0.69,
    "PLN": 0.23,
    "SEK": 0.088,
    "VND": 0.000037,
    "THB": 0.026,
    "MYR": 0.20,
    "BRL": 0.17,
    "MXN": 0.051,
    "AED": 0.25,
    # further currencies of administrations' exports (indicative, late 2025): a rate off by a
    # tenth moves the value limits, not the features' comparisons within a currency's parcels
    "NOK": 0.085,
    "DKK": 0.134,
    "CZK": 0.040,
    "HUF": 0.0025,
    "RON": 0.20,
    "BGN": 0.511,
    "ISK": 0.0066,
    "RSD": 0.0085,
    "UAH": 0.021,
    "RUB": 0.011,
    "KZT": 0.0017,
    "ILS": 0.25,
    "SAR": 0.23,
    "QAR": 0.24,
    "KWD": 2.8,
    "BHD": 2.3,
    "OMR": 2.25,
    "JOD": 1.22,
    "EGP": 0.018,
    "MAD": 0.093,
    "TND": 0.29,
    "NGN": 0.00058,
    "GHS": 0.075,
    "KES": 0.0067,
    "ZAR": 0.049,
    "XOF": 0.0015245,  # pegged: 655.957 per EUR
    "XAF": 0.0015245,
    "IDR": 0.000053,
    "PHP": 0.015,
    "PKR": 0.0031,
    "BDT": 0.0071,
    "LKR": 0.0029,
    "TWD": 0.027,
    "MOP": 0.107,
    "NZD": 0.50,
    "ARS": 0.00062,
    "CLP": 0.00091,
    "COP": 0.00022,
    "PEN": 0.25,
}

DEFAULT_VAGUE_TERMS = (
    "gift",
    "gifts",
    "present",
    "parts",
    "part",
    "spare",
    "goods",
    "accessories",
    "accessory",
    "sample",
    "samples",
    "item",
    "items",
    "stuff",
    "product",
    "products",
    "misc",
    "various",
    "merchandise",
    "package",
    "parcel",
    "other",
    "personal",
    "effects",
    "use",
)


_HS6 = re.compile(r"\d{6}")


def read_hs_correlation(path: Path) -> dict[str, str]:
    """``features.hs_correlation``: new 6-digit code -> the predecessor it reads as. Refused,
    naming the line, when a row is not two 6-digit codes, a code is given two predecessors,
    or a predecessor is itself replaced (a chain: give the code the history knows)."""
    import csv

    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"hs_correlation {path}: unreadable ({exc})") from None
    rows = list(csv.reader(text.splitlines()))
    header = [h.strip().lower() for h in rows[0]] if rows else []
    if header[:2] != ["code", "reads_as"]:
        raise ValueError(
            f"hs_correlation {path}: the first line must be 'code,reads_as' (a code of the new "
            "edition, the code of the edition the history knows), got "
            f"{','.join(rows[0]) if rows else 'an empty file'!r}"
        )
    table: dict[str, str] = {}
    for line, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        code, reads_as = [*row, "", ""][:2]
        code, reads_as = code.strip(), reads_as.strip()
        if not (_HS6.fullmatch(code) and _HS6.fullmatch(reads_as)):
            raise ValueError(
                f"hs_correlation {path} line {line}: {code!r},{reads_as!r}: two 6-digit HS "
                "subheadings expected"
            )
        if table.get(code, reads_as) != reads_as:
            raise ValueError(
                f"hs_correlation {path} line {line}: {code} reads as {table[code]} and "
                f"{reads_as}: give one, the predecessor whose history it continues"
            )
        table[code] = reads_as
    chained = sorted(code for code, old in table.items() if old in table and old != code)
    if chained:
        first = chained[0]
        raise ValueError(
            f"hs_correlation {path}: {first} reads as {table[first]}, itself replaced by "
            f"{table[table[first]]}: give the code the history knows"
        )
    read_as = {code: old for code, old in sorted(table.items()) if code != old}
    if not read_as:  # an empty table would read as a file not found (``prepare``)
        raise ValueError(f"hs_correlation {path}: no row reads a code as another one")
    return read_as


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    import hashlib

    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


class Section(BaseModel):
    """A section of params.yaml: frozen, unknown keys refused."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any] | None, where: str = "") -> Self:
        """Validate ``raw`` (a section as read from YAML); errors name ``where`` and the key."""
        try:
            return cls.model_validate(dict(raw or {}))
        except ValidationError as exc:
            raise ParcelriskError(settings_error(exc, where or cls.section_name())) from None

    @classmethod
    def section_name(cls) -> str:
        return cls.__name__.removesuffix("Params").lower()

    def replace(self, **changes: Any) -> Self:
        """A copy with ``changes``, validated like the file (``model_copy`` would not check)."""
        return self.from_dict({**self.model_dump(), **changes}, self.section_name())


def settings_error(exc: ValidationError, where: str, source: str = "params.yaml") -> str:
    """One line per problem: ``<source> <section>.<path>: <key>: unknown key`` and the like."""
    problems = []
    for error in exc.errors(include_url=False):
        loc = [str(part) for part in error["loc"]]
        if error["type"] == "extra_forbidden":
            parent = ".".join(part for part in [where, *loc[:-1]] if part)
            what = "unknown key" if parent else "unknown section"
            problems.append(f"{source} {parent or '-'}: {loc[-1]}: {what}")
        else:
            path = ".".join(part for part in [where, *loc] if part) or "-"
            message = str(error["msg"]).removeprefix("Value error, ")
            problems.append(f"{source} {path}: {message}")
    return "; ".join(problems)


# --------------------------------------------------------------------------------------------
# generate, validate, features
# --------------------------------------------------------------------------------------------


class GenerateParams(Section):
    """The demo history ``parcelrisk generate`` writes (dvc.yaml passes these as options)."""

    parcels: int = Field(300_000, ge=1)
    days: int = Field(180, ge=1)
    seed: int = 42
    start: str = "2026-01-01"


class ValidateParams(Section):
    """Plausibility limits: beyond these a value is an outlier, warned with examples and kept.

    Values are in ``features.base_currency``; structural faults come from the contract."""

    max_weight_kg: float = Field(1_000.0, gt=0)  # heavier: a bulk consignment, not a parcel
    max_value: float = Field(100_000.0, gt=0)
    max_quantity: int = Field(10_000, gt=0)
    # A recovered revenue above this is a fault (a label, final once stored); unset: max_value.
    # Apart from it, so that an administration whose bulk consignments yield revenues above
    # max_value raises this alone, not the bound that warns of values and keeps them from the
    # green lane (serve.implausible_lane).
    max_revenue: float | None = Field(None, gt=0)
    # More of a file's rows than this in currencies without an exchange rate (the
    # administration's own currency missing from features.fx_to_base) is a fault, not a warning:
    # their valuation features would be empty, the model blind to value on a share of the file
    max_share_without_rate: float = Field(0.05, ge=0, le=1)


class FeatureParams(Section):
    """How features are computed (``features``); recorded in every feature manifest."""

    base_currency: str = "EUR"
    # Exchange rates to base_currency (1 unit of the currency = this many of the base)
    fx_to_base: dict[str, float] = Field(default_factory=lambda: dict(DEFAULT_FX_TO_BASE))
    windows_days: tuple[int, ...] = (7, 30, 180)  # declaration-count windows of entity histories
    outcome_window_days: int = Field(90, gt=0)  # recent outcomes: catches entities that turn bad
    split_windows_hours: tuple[int, ...] = (24, 72, 168)
    split_entity: str = "consignee_id"  # whose recent parcels add up (split shipments)
    # same seller -> same consignee windows (split-order signatures; empty: none)
    order_windows_hours: tuple[int, ...] = (24, 72)
    prior_strength: float = Field(20.0, gt=0)  # pseudo-inspections of the hit-rate prior
    default_prior: float = Field(0.05, ge=0, le=1)  # hit-rate prior before any outcome is known
    refit_period_days: int = Field(14, gt=0)  # reference prices and text models refit this often
    # A period's fit learns from what was declared (or recorded, for results) this many days
    # before the period starts: declarations and results reach the system late (pre-arrival
    # data lodged before it is sent, results posted after they are recorded), and one arriving
    # after the period's first declaration was scored would change the fit the live state
    # made (``features.pipeline.refit``). With the lag, only what comes more than this late
    # makes a worker refit; batch and the live state learn from the same rows either way.
    refit_lag_days: int = Field(2, ge=0)
    # the administration's de minimis, in EUR like its name; values are compared with it in the
    # base currency (``de_minimis_base``)
    de_minimis_eur: float = Field(150.0, gt=0)
    min_reference_count: int = Field(5, ge=1)  # fewer past parcels: the coarser reference
    # Levels kept per categorical column, in order of first appearance in time so codes never
    # depend on later data (levels first seen after that many others code as unknown). Sized
    # for tariff codes: about 5,600 HS6 subheadings and 1,230 headings exist.
    max_categories: int = Field(6000, ge=1)
    timezone: str = "UTC"  # the administration's IANA time zone: calendar features in local time
    text_alpha: float = Field(0.5, gt=0)
    vague_terms: tuple[str, ...] = DEFAULT_VAGUE_TERMS
    # entity columns that get history features; "a*b" is a pair; mapped `entity` extras added
    entities: tuple[str, ...] = (
        "seller_id",
        "consignee_id",
        "platform_id",
        "operator_id",
        "origin_country",
        "hs_chapter",
        "hs6",
        "seller_id*hs_chapter",
        "seller_country*origin_country",
    )
    # native LightGBM categories; mapped `categorical` extras are added
    categoricals: tuple[str, ...] = (
        "seller_country",
        "channel",
        "category",
        "currency",
        "origin_country",
        "hs_chapter",
        "hs_heading",
        "hs6",
        "arrival_office",
    )
    extra_families: tuple[str, ...] = ()  # optional feature families (features.families)
    # The administration's restricted / prohibited goods list (CSV: kind, pattern, category,
    # note; features.families.watchlist). None: no list, no watchlist features.
    watchlist: str | None = None
    # Content hash of that file, filled in when the settings are read: the manifest records it,
    # so a changed list is a different model input. Never set by hand.
    watchlist_sha256: str | None = None
    # A nomenclature change (HS 2027 from 1 January 2027): a CSV of ``code,reads_as`` rows, a
    # 6-digit subheading of the new edition and the one of the edition the history and the
    # models know that it continues (a split: several codes read as one; a merge: the code
    # reads as the predecessor whose history it continues). Every feature reads a declaration's
    # HS code with its first six digits so replaced; the stored declaration keeps the code
    # sent. Without it a new code had no history, no reference price, no watchlist match, and
    # its description "rarely went with" it (probe 32). None: codes read as sent.
    hs_correlation: str | None = None
    # That table, read when the settings are read: the manifest and the entity state record
    # it, so the service reads codes as the features were built. Never set by hand.
    hs_reads_as: dict[str, str] = Field(default_factory=dict)

    @classmethod
    def section_name(cls) -> str:
        return "features"

    @model_validator(mode="before")
    @classmethod
    def _fingerprint_watchlist(cls, raw: Any) -> Any:
        # Only when absent: a snapshot's recorded settings keep the hash of the list they were
        # built with (its copy travels in the snapshot), whatever the file holds now. A missing
        # file is reported by the watchlist family when features are built, not here, so a
        # service reading params.yaml without the data directory still starts.
        if isinstance(raw, dict) and raw.get("watchlist") and not raw.get("watchlist_sha256"):
            path = Path(raw["watchlist"])
            if path.is_file():
                raw = {**raw, "watchlist_sha256": file_sha256(path)}
        return raw

    @model_validator(mode="before")
    @classmethod
    def _read_hs_correlation(cls, raw: Any) -> Any:
        # Only when absent, as the watchlist's hash: a snapshot's recorded settings keep the
        # table they were built with. A missing file is left to ``features build`` to refuse
        # (``prepare``), so a service reading params.yaml without the data directory starts.
        if isinstance(raw, dict) and raw.get("hs_correlation") and not raw.get("hs_reads_as"):
            path = Path(raw["hs_correlation"])
            if path.is_file():
                raw = {**raw, "hs_reads_as": read_hs_correlation(path)}
        return raw

    @field_validator("windows_days", "split_windows_hours")
    @classmethod
    def _positive_windows(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if not value or min(value) <= 0:
            raise ValueError("must be a non-empty list of positive numbers")
        return value

    @field_validator("order_windows_hours")
    @classmethod
    def _optional_windows(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if value and min(value) <= 0:
            raise ValueError("must be a list of positive numbers (empty: no such features)")
        return tuple(sorted(set(value)))

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown time zone {value!r} (use an IANA name such as Europe/Paris or Asia/Seoul)"
            ) from None
        return value

    @model_validator(mode="after")
    def _lag_within_the_period(self) -> Self:
        if self.refit_lag_days >= self.refit_period_days:
            raise ValueError(
                f"refit_lag_days ({self.refit_lag_days}) must be shorter than refit_period_days "
                f"({self.refit_period_days})"
            )
        return self

    @model_validator(mode="after")
    def _rates_for_the_base(self) -> Self:
        # The built-in rates are to EUR: another base currency without its own table would
        # convert every value with the wrong rates, silently.
        if self.base_currency != "EUR" and self.fx_to_base == DEFAULT_FX_TO_BASE:
            raise ValueError(
                f"base_currency {self.base_currency} needs its own fx_to_base table "
                "(the built-in rates are to EUR)"
            )
        rate = self.fx_to_base.get("EUR")
        if self.base_currency != "EUR" and not (rate is not None and rate > 0):
            raise ValueError(
                f"fx_to_base needs a rate for EUR (1 EUR in {self.base_currency}): de_minimis_eur "
                "and recovered revenue are in EUR, compared with values in the base currency"
            )
        return self

    @property
    def fx(self) -> dict[str, float]:
        return dict(self.fx_to_base)

    @property
    def de_minimis_base(self) -> float:
        """``de_minimis_eur`` in the base currency, the one declared values are in once
        converted: with base XOF, 150 compared with XOF values was a de minimis of 0.23 EUR,
        every parcel above it (probe, 2026-12)."""
        if self.base_currency == "EUR":
            return self.de_minimis_eur
        return self.de_minimis_eur * self.fx_to_base["EUR"]

    @property
    def max_window_days(self) -> int:
        return max(
            max(self.windows_days),
            self.outcome_window_days,
            max((*self.split_windows_hours, *self.order_windows_hours)) // 24 + 1,
        )

    def to_dict(self) -> dict[str, Any]:
        """What the feature manifest records (and fingerprints), the currency table included."""
        return self.model_dump()


# --------------------------------------------------------------------------------------------
# train, promote
# --------------------------------------------------------------------------------------------

# Parameters of lgb.train under the sklearn-style names params.yaml uses.
LGB_NAMES = {
    "num_leaves": "num_leaves",
    "max_depth": "max_depth",
    "learning_rate": "learning_rate",
    "min_child_samples": "min_data_in_leaf",
    "subsample": "bagging_fraction",
    "subsample_freq": "bagging_freq",
    "colsample_bytree": "feature_fraction",
    "reg_lambda": "lambda_l2",
    "num_threads": "num_threads",  # 0 = LightGBM's default (all cores)
    # categorical splits (LightGBM's own names): smoothing and limits of the category search
    "cat_smooth": "cat_smooth",
    "cat_l2": "cat_l2",
    "max_cat_threshold": "max_cat_threshold",
    "min_data_per_group": "min_data_per_group",
    "max_cat_to_onehot": "max_cat_to_onehot",
}


class LightGBMParams(Section):
    """``train.lightgbm``. A key left out (None) means LightGBM's own default: the project does
    not restate LightGBM's defaults, it only sets the boosting loop and the thread count."""

    n_estimators: int = Field(1000, ge=1)
    early_stopping_rounds: int = Field(50, ge=1)
    num_threads: int = Field(2, ge=0)  # fixed for reproducible timings
    num_leaves: int | None = None
    max_depth: int | None = None
    learning_rate: float | None = Field(None, gt=0)
    min_child_samples: int | None = None
    subsample: float | None = Field(None, gt=0, le=1)
    subsample_freq: int | None = None
    colsample_bytree: float | None = Field(None, gt=0, le=1)
    reg_lambda: float | None = None
    cat_smooth: float | None = None
    cat_l2: float | None = None
    max_cat_threshold: int | None = None
    min_data_per_group: int | None = None
    max_cat_to_onehot: int | None = None

    def booster_params(self, objective: str, seed: int) -> dict[str, Any]:
        """``lgb.train`` parameters under LightGBM's names (loop keys excluded)."""
        out: dict[str, Any] = {
            "objective": objective,
            "seed": seed,
            "deterministic": True,
            "force_row_wise": True,
            "verbose": -1,
        }
        for key, name in LGB_NAMES.items():
            value = getattr(self, key)
            if value is not None:
                out[name] = value
        return out


class LaneRates(Section):
    red_rate: float = Field(0.01, gt=0, lt=1)
    yellow_rate: float = Field(0.04, ge=0, lt=1)


class CalibrationParams(Section):
    # Calibrate on the unbiased parcels (random exploration, or a census) of the validation
    # period when at least this many with this many illicit exist; else on all labelled ones.
    min_random: int = Field(300, ge=0)
    min_random_illicit: int = Field(15, ge=0)


class TrainParams(Section):
    """How models are trained (``train``)."""

    # fractions {train, validation, test} or dates {validation_start, test_start}: models.split
    split: dict[str, float | str] = Field(
        default_factory=lambda: {"train": 0.6, "validation": 0.2, "test": 0.2}
    )
    objective: Literal["risk", "revenue"] = "risk"  # how parcels are ranked into lanes
    # Refit the deployed boosters on all labelled parcels with the first pass's rounds.
    refit: bool = True
    # E[revenue | illicit] as a mixture over the offence types the history records (P(kind) x
    # revenue of that kind); false, or no offence types in the data: one pooled revenue model.
    revenue_by_offence: bool = True
    lanes: LaneRates = LaneRates()
    lightgbm: LightGBMParams = LightGBMParams()
    seed: int = 7
    # Warn when an offence type has fewer illicit labels than this in the training history: a
    # model cannot rank what it was shown a handful of times (the demo's split shipments had 22,
    # origin misdeclarations 15). 0 = no check.
    min_offence_labels: int = Field(50, ge=0)
    # Refuse to train when one feature alone ranks the validation period's labelled parcels
    # above this ROC AUC (``models.leakage``): an inspection result mapped as a feature, not a
    # signal (demo: strongest real feature 0.82, a leaked result 1.0). 1.0 = no check.
    max_single_feature_auc: float = Field(0.98, ge=0.5, le=1.0)
    # Features (manifest names) vouched for above that bound, e.g. a seizure list's match.
    trusted_features: list[str] = Field(default_factory=list)
    calibration: CalibrationParams = CalibrationParams()
    profile_strength: float = Field(20.0, gt=0)  # pseudo-inspections of the profile baseline

    @field_validator("refit", "revenue_by_offence", mode="before")
    @classmethod
    def _strict_bool(cls, value: Any) -> Any:
        if not isinstance(value, bool):  # "yes" would otherwise be read as true
            raise ValueError(f"must be true or false, got {value!r}")
        return value

    def lgb_params(self, objective: str) -> dict[str, Any]:
        return self.lightgbm.booster_params(objective, self.seed)

    @property
    def n_estimators(self) -> int:
        return self.lightgbm.n_estimators

    @property
    def early_stopping_rounds(self) -> int:
        return self.lightgbm.early_stopping_rounds


class PromoteParams(Section):
    """The champion/challenger gate (``promote``)."""

    # the registered model; serving loads its alias. Letters, digits and . _ - only: the
    # name goes into MLflow's search filters, where a quote broke the query (probe, 2026-12)
    model_name: str = DEFAULT_MODEL_NAME
    min_gain_revenue_at_5: float = 0.0  # challenger must beat the champion by this (absolute)
    min_gain_precision_at_5: float = 0.0
    max_calibration_error: float = Field(0.05, gt=0)
    # Share of paired bootstrap resamples of the holdout in which the challenger must beat the
    # champion on the metric lanes rank by (precision@5%, or revenue@5% with the revenue
    # objective): a one-sided confidence that the gain is not the sample's noise. 0.8, not a
    # textbook 0.95, since exploration samples are small and a stale champion costs too; an
    # administration with more results raises it, 0 turns it off (probe 29: two models of the
    # same data each beat the other on a third of the resamples of a 443-parcel holdout).
    min_confidence: float = Field(0.8, ge=0, lt=1)

    @field_validator("model_name")
    @classmethod
    def _registry_name(cls, value: str) -> str:
        if re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}", value) is None:
            raise ValueError(
                f"{value!r} is not a model name: letters, digits, '.', '_' and '-' only "
                "(at most 100, starting with a letter or digit)"
            )
        return value


# --------------------------------------------------------------------------------------------
# serve
# --------------------------------------------------------------------------------------------


LANE_POLICY_KEYS = ("aeo_risk_discount", "exploration_lane", "exploration_rate", "implausible_lane")


class ServeParams(Section):
    """The scoring service (``serve``)."""

    # Lanes: priority >= the model's stored cut-offs (fitted at train.lanes rates) -> red/yellow.
    aeo_risk_discount: float = Field(0.5, ge=0, le=1)  # AEO: priority x this (1.0 = off)
    # Random quota of all traffic: the only labels of offences no rule targets. At least the
    # rate the champion's history was built with (the service warns when below it): at 1% the
    # demo's rarer offences starved, each 2.5% of random labels gave +0.003 precision@5%.
    exploration_rate: float = Field(0.025, ge=0, le=1)
    exploration_lane: Literal["red", "yellow"] = "yellow"  # where the quota goes (at least)
    # A declaration with a number above its plausible bound (validate.max_value for the value
    # and amount extras, max_weight_kg, max_quantity) goes at least to this lane ("green":
    # off). The model never saw such a number: trees read 1e300 EUR as the largest value they
    # were trained on, and a value no consignment has cleared green at risk 0.0003 (probe 9).
    # A document check is what a unit or decimal error, or a probe of the system, needs.
    # So does a declaration in an ISO currency without a rate in features.fx_to_base: its value
    # features are empty, and the README's undervalued parcel went red -> green in lari (30 of
    # 37 red parcels lost red, probe 14): a trader could clear undervaluation by the currency.
    implausible_lane: Literal["red", "yellow", "green"] = "yellow"
    # blake2b(seed:declaration_id) -> uniform: whoever knows it can predict the draw; set
    # PARCELRISK_EXPLORATION_SEED in production instead of versioning it.
    exploration_seed: int = 2026
    reasons_per_decision: int = Field(5, ge=0)  # reasons for red/yellow; green on /explain
    max_batch: int = Field(1000, ge=1)  # declarations per request (422 above)
    max_body_bytes: int = Field(5_000_000, ge=1)  # request body limit (413 above)
    # Score concurrently waiting requests as one batch. Online features let a parcel see the
    # other parcels of its batch declared before it, so with merging it may also see those of
    # a concurrent request; the audit store keeps each feature vector.
    merge_concurrent_requests: bool = True
    # Under load, how long a merged batch may wait for the clients the previous batch just
    # answered; an idle service never waits. 0 = never wait.
    batch_linger_ms: float = Field(2.0, ge=0, le=100)
    # Batches up to this many rows are scored on the worker's event loop (no thread hop, no
    # GIL hand-off), bigger ones in a thread so the loop keeps answering; 0 = always a thread.
    inline_batch_rows: int = Field(32, ge=0, le=256)
    model_alias: str = "champion"  # registry alias loaded
    model_name: str = DEFAULT_MODEL_NAME  # in params.yaml: promote.model_name unless set here
    audit_db: str = "audit.db"  # SQLite decision store
    # The store's write-ahead log is checkpointed and cut back before it holds this much
    # (it grew ~37 MB/s at 3,850 single declarations/s, never shrinking, without a cap).
    audit_wal_max_mb: float = Field(64.0, ge=1)
    workers: int = Field(2, ge=1)  # worker processes (one model copy each); one per core
    # One log line per HTTP request: ~10% of a worker's event loop on single declarations,
    # and every decision is already in the audit store and every request in /metrics.
    access_log: bool = False
    # OpenTelemetry server spans: BentoML samples none unless tracing is configured
    # (BENTOML_CONFIG), yet building them costs ~10% of the event loop.
    tracing: bool = False
    # Not answered by then -> 504, so the clearance system can fall back to its default lane.
    request_timeout_s: float = Field(10.0, gt=0, le=3600)
    # An idle keep-alive connection is closed after this long. Above the idle time of the
    # clients' pools and balancers (60 s for nginx's upstream keepalive and most load
    # balancers): the client closes first, and never sends on a connection the server is
    # closing; uvicorn's 5 s made every pool of Java, .NET or Go clients meet resets (probe 31).
    keep_alive_s: int = Field(75, ge=1, le=3600)
    # Requests in flight across all workers; beyond -> 429 at once (load shedding).
    max_concurrency: int = Field(512, ge=1)
    # Admission by work: a request whose declarations would wait longer than this behind the
    # ones queued (at the worker's recent scoring rate) gets 429 with Retry-After at once,
    # instead of a 504 after request_timeout_s with its batch scored anyway. None: half of
    # request_timeout_s (room for the request's own scoring and the network).
    max_queue_wait_s: float | None = Field(None, gt=0)
    # Each worker asks the registry this often whether the alias moved, then loads the new
    # champion beside the running one and swaps it in between batches (serving.rollover).
    # 0: never (a new champion needs a restart).
    champion_check_s: float = Field(30.0, ge=0)

    def lane_policy(self) -> dict[str, Any]:
        """What decides a lane beside the model's cut-offs: recorded with every decision."""
        return {
            **{key: getattr(self, key) for key in LANE_POLICY_KEYS},
            "exploration_seed_version": self.exploration_seed_version,
        }

    @property
    def exploration_seed_version(self) -> str:
        """What a decision records of the exploration seed: a digest that tells which seed
        drew it (an auditor holding the seed can check it) and cannot be turned back into the
        seed, which would predict which parcels escape the random quota."""
        import hashlib

        digest = hashlib.sha256(f"parcelrisk-exploration-seed:{self.exploration_seed}".encode())
        return digest.hexdigest()[:16]

    @property
    def queue_wait_limit_s(self) -> float:
        """``max_queue_wait_s``, or half the request timeout when unset."""
        if self.max_queue_wait_s is None:
            return self.request_timeout_s / 2
        return self.max_queue_wait_s

    @model_validator(mode="after")
    def _queue_wait_below_timeout(self) -> Self:
        if self.max_queue_wait_s is not None and self.max_queue_wait_s >= self.request_timeout_s:
            raise ValueError(
                f"max_queue_wait_s ({self.max_queue_wait_s}) must be below request_timeout_s "
                f"({self.request_timeout_s}): an admitted request must be answerable in time"
            )
        return self

    @model_validator(mode="after")
    def _enough_concurrency(self) -> Self:
        if self.max_concurrency < self.workers:
            raise ValueError(
                f"max_concurrency ({self.max_concurrency}) must be at least workers ({self.workers})"
            )
        return self


# --------------------------------------------------------------------------------------------
# monitor
# --------------------------------------------------------------------------------------------


class MonitorParams(Section):
    """When ``parcelrisk monitor`` raises an alert on a period of live decisions (``monitor``)."""

    # PSI of a feature against the model's training reference: < 0.1 stable, 0.1-0.25 a
    # moderate shift, > 0.25 a major one (the usual reading). Features alert at a major shift;
    # the score earlier, since the lane shares move with it.
    psi_feature_alert: float = Field(0.25, gt=0)
    psi_score_alert: float = Field(0.2, gt=0)
    # A feature that already moved between the train and the reference period (an entity's
    # age, a cumulative count: they grow with time) alerts only above this many times that
    # move (its ``baseline_psi``), if that is more than psi_feature_alert.
    trend_margin: float = Field(2.0, ge=1)
    # A feature missing in this much more of a period's decisions than in the reference (a
    # share, 0.2 = 20 points): its drift alert calls it a broken feed.
    missing_rise_alert: float = Field(0.2, gt=0, le=1)
    psi_epsilon: float = Field(1e-4, gt=0, lt=0.01)  # floor of an empty bin's share (ln 0)
    # Fewer comparable decisions (made with the champion's feature manifest): no drift verdict.
    min_drift_rows: int = Field(500, ge=1)
    # |live share - target| / target of the red or the yellow lane over the period (exploration
    # parcels left out: they are a random draw, so the rest keep the model's shares).
    max_lane_share_deviation: float = Field(0.3, gt=0)
    min_lane_decisions: int = Field(200, ge=1)  # fewer decisions: lane shares not judged
    # Exploration hit rate against what the model expected of the same parcels (their mean
    # calibrated risk): alert when the whole Wilson interval lies beyond expected x (1 -/+ this)
    min_results: int = Field(30, ge=1)  # exploration results before the hit rate is judged
    hit_rate_tolerance: float = Field(0.25, ge=0)
    # Revenue per exploration inspection: alert when its interval lies wholly beyond the model's
    # expected revenue per inspection x (1 -/+ this); it is the unit's business figure.
    revenue_tolerance: float = Field(0.25, ge=0)
    confidence: float = Field(0.95, gt=0.5, lt=1)  # of the hit-rate and revenue intervals
    bucket_days: int = Field(7, ge=1)  # exploration hit rate per this many days
    # Disparity by origin, channel, platform: as the auditor's model page (a group whose relative
    # red rate and relative hit rate differ by this ratio even at the ends of their intervals,
    # at ``confidence`` shared among the groups judged; groups with fewer results not judged).
    disparity_tolerance: float = Field(1.5, gt=1)
    disparity_min_results: int = Field(20, ge=1)
    report_top_features: int = Field(15, ge=1)  # features in the report's PSI chart
    # People's acknowledgements of alerts (serving/monitor/acks.py): the file, and how far an
    # acknowledged drift's PSI may grow (x (1 + this)) before it pages again
    acknowledged_file: str = "monitor-acknowledged.yaml"
    ack_margin: float = Field(0.5, gt=0)


# --------------------------------------------------------------------------------------------
# the whole file
# --------------------------------------------------------------------------------------------


class Settings(Section):
    """params.yaml: every section, each with its defaults."""

    generate: GenerateParams = GenerateParams()
    # "validate" would shadow pydantic's BaseModel.validate: the field is named for what it holds
    validation: ValidateParams = Field(ValidateParams(), alias="validate")
    features: FeatureParams = FeatureParams()
    train: TrainParams = TrainParams()
    promote: PromoteParams = PromoteParams()
    serve: ServeParams = ServeParams()
    monitor: MonitorParams = MonitorParams()

    @model_validator(mode="before")
    @classmethod
    def _serve_the_promoted_model(cls, data: Any) -> Any:
        # the registered name is promote's; serve only says which alias to load
        if isinstance(data, dict) and isinstance(data.get("serve") or {}, dict):
            serve = dict(data.get("serve") or {})
            promote = data.get("promote") or {}
            if "model_name" not in serve and isinstance(promote, dict) and "model_name" in promote:
                serve["model_name"] = promote["model_name"]
                data = {**data, "serve": serve}
        return data


# Environment variables that override a key, for what differs per deployment and should not be
# versioned. Nothing else in the environment changes a setting.
ENV_OVERRIDES: dict[str, tuple[str, str]] = {
    "PARCELRISK_AUDIT_DB": ("serve", "audit_db"),
    "PARCELRISK_EXPLORATION_SEED": ("serve", "exploration_seed"),
}


def read_params_file(path: Path) -> dict[str, Any]:
    """The raw mapping of sections; a missing file means defaults, a broken one is an error."""
    import yaml

    from features.yamlio import load_unique

    path = Path(path)
    if not path.exists():
        return {}
    try:
        payload = load_unique(path.read_text(encoding="utf-8")) or {}
    except UnicodeDecodeError as exc:  # a binary file or another encoding: a traceback before
        raise ParcelriskError(
            f"{path}: not UTF-8 text (byte {exc.object[exc.start]:#04x} at offset {exc.start}): "
            "params files are YAML in UTF-8"
        ) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ParcelriskError(f"{path}: not valid YAML{where}: {problem}") from None
    if not isinstance(payload, dict):
        raise ParcelriskError(f"{path}: expected a mapping of sections")
    for name, section in payload.items():
        if section is not None and not isinstance(section, dict):
            raise ParcelriskError(f"{path}: section {name!r} must be a mapping")
    return payload


# Settings that name a file: relative to the directory commands run from, which is the one
# params.yaml sits in (the repository root, where dvc runs its stages).
FILE_SETTINGS = (("features", "watchlist"), ("features", "hs_correlation"))


def params_for_copy(path: Path) -> dict[str, Any]:
    """The raw params of ``path`` with the files it names made absolute, for a copy written to
    and run from another directory (benchmarks, reliability checks, test pipelines)."""
    import yaml

    raw = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    for section, key in FILE_SETTINGS:
        value = (raw.get(section) or {}).get(key)
        if value and not Path(value).is_absolute():
            raw[section][key] = str((Path(path).resolve().parent / value).resolve())
    return raw


def load_settings(
    path: Path | None = DEFAULT_PARAMS,
    environ: Mapping[str, str] | None = None,
    *,
    must_exist: bool = False,
) -> Settings:
    """params.yaml (``None`` or absent: the defaults) with the documented environment overrides.

    ``must_exist``: a file the user named; its absence is an error, not the defaults."""
    if path is not None and must_exist and not Path(path).is_file():
        raise ParcelriskError(f"params file not found: {path}")
    raw = read_params_file(path) if path is not None else {}
    raw = {name: dict(section or {}) for name, section in raw.items()}
    for variable, (section, key) in ENV_OVERRIDES.items():
        value = (os.environ if environ is None else environ).get(variable)
        if value:
            raw.setdefault(section, {})[key] = value
    try:
        return Settings.model_validate(raw)
    except ValidationError as exc:
        source = str(path) if path is not None else "settings"
        raise ParcelriskError(settings_error(exc, "", source)) from None
