"""The lane shares of cut-offs fitted from stored traffic quantiles: what the traffic gives, to
the table's resolution, not the rates asked."""

from __future__ import annotations

import numpy as np
import pytest

from models.thresholds import (
    fit_from_quantiles,
    lane_shares,
    lane_shares_from_quantiles,
    traffic_quantiles,
)


def _shares(priority: np.ndarray, red: float, yellow: float) -> tuple[dict, dict]:
    """(from the quantiles, on the traffic itself) for cut-offs fitted from its quantiles."""
    quantiles = traffic_quantiles(priority, aeo_discount=1.0)
    thresholds = fit_from_quantiles(quantiles, red, yellow, "risk")
    return lane_shares_from_quantiles(quantiles, thresholds), lane_shares(priority, thresholds)


def test_untied_traffic_gets_the_rates_asked() -> None:
    stored, actual = _shares(np.random.default_rng(0).uniform(size=20_000), 0.02, 0.05)
    assert stored["red"] == 0.02 and stored["yellow"] == pytest.approx(0.05)
    assert actual["red"] == pytest.approx(0.02, abs=2e-4)


def test_a_saturated_top_sends_all_its_parcels_to_red() -> None:
    """6% of the traffic on one score: a cut-off for 2% lands on it and takes all 6%."""
    priority = np.minimum(np.random.default_rng(1).uniform(size=20_000), 0.94)
    stored, actual = _shares(priority, 0.02, 0.05)
    tied = float((priority >= 0.94).mean())
    assert actual["red"] == pytest.approx(tied)
    assert stored["red"] == pytest.approx(tied, rel=0.03)
    assert (
        stored["yellow"] == pytest.approx(actual["yellow"], abs=0.002) and stored["yellow"] < 0.02
    )


def test_a_share_below_one_parcel_is_one_parcel() -> None:
    stored, actual = _shares(np.random.default_rng(2).uniform(size=4_000), 0.0001, 0.05)
    assert stored["red"] == actual["red"] == 1 / 4_000
