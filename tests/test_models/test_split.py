"""train.split: the fractions form and the dates form, and every way to get them wrong."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from features.errors import ParcelriskError
from models.split import split_boundaries

# 60 days of parcels, six hours apart, from 2026-01-01 00:00 UTC
DECLARED_AT = pd.Series(
    pd.date_range("2026-01-01", periods=240, freq="6h", tz="UTC").astype("datetime64[us, UTC]")
)
UTC = dt.UTC


def test_fractions_form_is_unchanged():
    b = split_boundaries(DECLARED_AT, {"train": 0.6, "validation": 0.2, "test": 0.2})
    assert b.validation_start == pd.Timestamp("2026-02-06", tz="UTC")
    assert b.test_start == pd.Timestamp("2026-02-18", tz="UTC")


@pytest.mark.parametrize(
    ("validation_start", "test_start"),
    [
        ("2026-02-01", "2026-02-15"),  # ISO dates: naive means UTC
        ("2026-02-01T00:00:00", "2026-02-15T00:00"),
        ("2026-02-01T01:00:00+01:00", "2026-02-15T00:00:00Z"),  # offsets are honoured
        (dt.date(2026, 2, 1), dt.datetime(2026, 2, 15, tzinfo=UTC)),  # what YAML parses
    ],
)
def test_dates_form_gives_utc_boundaries(validation_start, test_start):
    b = split_boundaries(
        DECLARED_AT, {"validation_start": validation_start, "test_start": test_start}
    )
    assert b.validation_start == pd.Timestamp("2026-02-01", tz="UTC")
    assert b.test_start == pd.Timestamp("2026-02-15", tz="UTC")
    assert b.start == DECLARED_AT.min() and b.end == DECLARED_AT.max()
    masks = b.masks(DECLARED_AT)
    assert DECLARED_AT[masks["validation"]].min() == pd.Timestamp("2026-02-01", tz="UTC")
    assert DECLARED_AT[masks["test"]].min() == pd.Timestamp("2026-02-15", tz="UTC")
    assert sum(int(m.sum()) for m in masks.values()) == len(DECLARED_AT)


@pytest.mark.parametrize(
    ("split", "message"),
    [
        (
            {"train": 0.6, "validation": 0.2, "validation_start": "2026-02-01"},
            "mixes fractions and dates",
        ),
        ({"validation_start": "2026-02-01"}, "lacks date"),
        ({"validation_start": "2026-02-15", "test_start": "2026-02-01"}, "must be before"),
        ({"validation_start": "2026-02-01", "test_start": "2026-02-01"}, "must be before"),
        ({"validation_start": "2025-12-01", "test_start": "2026-02-01"}, "no training period"),
        ({"validation_start": "2026-01-01", "test_start": "2026-02-01"}, "no training period"),
        ({"validation_start": "2026-02-01", "test_start": "2026-04-01"}, "no test period"),
        ({"validation_start": "first of May", "test_start": "2026-02-01"}, "validation_start"),
        ({"validation_start": None, "test_start": "2026-02-01"}, "not an ISO date"),
        ({"train": 0.6, "validation": 0.2, "holdout": 0.2}, "unknown key"),
        ({"train": 0.5, "validation": 0.2, "test": 0.2}, "sum to 1"),
    ],
)
def test_bad_split_is_a_clear_error(split, message):
    with pytest.raises(ParcelriskError, match=message):
        split_boundaries(DECLARED_AT, split)


def test_error_names_the_declaration_period():
    with pytest.raises(ParcelriskError, match="2026-03-01"):
        split_boundaries(
            DECLARED_AT, {"validation_start": "2026-02-01", "test_start": "2027-01-01"}
        )


FRACTIONS = {"train": 0.6, "validation": 0.2, "test": 0.2}


def _with(*stamps: str) -> pd.Series:
    extra = pd.Series(pd.to_datetime(list(stamps), utc=True).astype("datetime64[us, UTC]"))
    return pd.concat([DECLARED_AT, extra], ignore_index=True)


@pytest.mark.parametrize("typo", ["2006-01-20T08:00Z", "2025-01-05T08:00Z", "2031-01-05T08:00Z"])
def test_a_mistyped_year_does_not_stretch_the_period(typo, caplog):
    """One declaration dated 2006 for 2026 made the period 20 years long: every real parcel
    fell in the test period and the retrain stopped for lack of labels (probe 10). Isolated
    declarations at either end are left out of the span the fractions divide, said in a
    warning; they stay in the first or last part."""
    plain = split_boundaries(DECLARED_AT, FRACTIONS)
    with caplog.at_level("WARNING", logger="models.split"):
        b = split_boundaries(_with(typo), FRACTIONS)
    assert (b.validation_start, b.test_start) == (plain.validation_start, plain.test_start)
    assert min(b.start, b.end) <= pd.Timestamp(typo) <= max(b.start, b.end)
    (said,) = [r.getMessage() for r in caplog.records]
    assert "1 declaration(s) lie more than 30 days" in said and typo[:10] in said


def test_isolated_declarations_are_few_or_they_are_the_history():
    """More than 0.1% of the rows (at least one) apart is a period of the history, not a typo:
    the span keeps them, as before."""
    early = [f"2025-10-{d:02d}T08:00Z" for d in range(1, 4)]  # 3 of 243 rows
    b = split_boundaries(_with(*early), FRACTIONS)
    assert b.validation_start < pd.Timestamp("2026-02-06", tz="UTC")


def test_too_few_labels_names_the_periods():
    from models.train import _periods_said

    b = split_boundaries(DECLARED_AT, FRACTIONS)
    assert _periods_said(b) == (
        "train 2026-01-01 to 2026-02-06, validation to 2026-02-18, test to 2026-03-01"
    )
