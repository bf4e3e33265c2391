"""A numeric extra far beyond anything the model learnt from is warned (probe 9: taxes of
1e300, a plain numeric extra, moved the revenue at stake 300-fold with no word)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from features.intake.contract import Contract, ExtraColumn
from models.reference import describe_values
from serving.scoring import beyond_training_warnings, extra_ranges


def _model(**columns: np.ndarray) -> SimpleNamespace:
    features = tuple(describe_values(name, values) for name, values in columns.items())
    return SimpleNamespace(reference=SimpleNamespace(features=features))


CONTRACT = Contract(
    (
        ExtraColumn("total_taxes", "numeric"),
        ExtraColumn("cif_value", "numeric", amount=True),
        ExtraColumn("zeros", "numeric"),
        ExtraColumn("broker_id", "entity"),
    )
)


def test_the_ranges_are_the_reference_traffics_largest_magnitudes() -> None:
    model = _model(
        extra_total_taxes=np.array([-5.0, 10.0, 250.0, np.nan]),
        extra_cif_value=np.array([1.0, 2_000.0]),
        extra_zeros=np.zeros(3),  # nothing to scale against: not judged
        broker_id_n_7d=np.array([1.0, 2.0]),
    )
    assert extra_ranges(model, CONTRACT) == {
        "extra_total_taxes": ("total_taxes", 250.0),
        "extra_cif_value": ("cif_value", 2_000.0),
    }
    assert extra_ranges(SimpleNamespace(reference=None), CONTRACT) == {}


def test_a_value_over_a_thousand_times_the_largest_is_warned() -> None:
    ranges = {"extra_total_taxes": ("total_taxes", 250.0)}
    features = SimpleNamespace(
        values={"extra_total_taxes": np.array([1e300, 250_000.0, 250_001.0, np.nan, -1e9])}
    )
    notes = beyond_training_warnings(features, ranges)
    assert [note.row for note in notes] == [0, 2, 4]
    assert {note.code for note in notes} == {"extra.beyond_training"}
    assert notes[0].text == (
        "total_taxes: 1e+300 is over 1,000 times the largest the model learnt from (250): a "
        "unit or decimal error? It is scored as the largest"
    )


def test_an_amount_held_at_the_features_cap_is_said_as_at_least_it() -> None:
    """An amount extra's feature holds at most MAX_VALUE_EUR: 1e12 declared was said to be
    1e+10 (probe 27)."""
    from features.pipeline.prepare import MAX_VALUE_EUR

    ranges = {"extra_cif_value": ("cif_value", 45.0)}
    features = SimpleNamespace(values={"extra_cif_value": np.array([MAX_VALUE_EUR, 1e6])})
    capped, plain = beyond_training_warnings(features, ranges)
    assert capped.text.startswith("cif_value: 1e+10 or more is over 1,000 times the largest")
    assert plain.text.startswith("cif_value: 1e+06 is over")
