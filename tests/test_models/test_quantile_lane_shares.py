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
    """6% of the traffic on one score: a cut-off for 2% lands on it and takes all 6%; yellow
    takes the next 5% below them (it got what was left of 7%, under 1%, and a parcel a hair
    below the tied score went green)."""
    priority = np.minimum(np.random.default_rng(1).uniform(size=20_000), 0.94)
    stored, actual = _shares(priority, 0.02, 0.05)
    tied = float((priority >= 0.94).mean())
    assert actual["red"] == pytest.approx(tied)
    assert stored["red"] == pytest.approx(tied, rel=0.03)
    assert actual["yellow"] == pytest.approx(0.05, abs=0.002)  # the table's resolution
    assert stored["yellow"] == pytest.approx(actual["yellow"], abs=0.003)


def test_a_share_below_one_parcel_is_one_parcel() -> None:
    stored, actual = _shares(np.random.default_rng(2).uniform(size=4_000), 0.0001, 0.05)
    assert stored["red"] == actual["red"] == 1 / 4_000


def test_a_tie_block_wider_than_red_and_yellow_leaves_yellow_its_share_below_it() -> None:
    """The probe's census: calibration saturated 7% of the traffic on one risk, so both
    cut-offs sat on it, and 101 arrivals scored a hair below it (all illicit) went green."""
    from models.thresholds import fit_lane_thresholds

    rng = np.random.default_rng(3)
    saturated = 0.9999990036156551
    priority = np.where(rng.random(20_000) < 0.07, saturated, rng.uniform(0, 0.99, 20_000))
    thresholds = fit_lane_thresholds(priority, 0.01, 0.04, "risk")
    assert thresholds.red_cutoff == saturated and thresholds.yellow_cutoff < saturated
    shares = lane_shares(priority, thresholds)
    assert shares["red"] == pytest.approx(float((priority == saturated).mean()))
    assert shares["yellow"] == pytest.approx(0.04, abs=1e-4)
    below = lane_shares(np.array([0.9999990032]), thresholds)
    assert below["yellow"] == 1.0  # a hair below the saturated risk: a look, not green


def test_train_warns_when_tied_parcels_fill_red_past_its_rate(caplog) -> None:
    from models.thresholds import fit_lane_thresholds
    from models.train import _warn_tied_red

    def warn(priority: np.ndarray) -> None:
        _warn_tied_red(priority, fit_lane_thresholds(priority, 0.01, 0.04, "risk"))

    rng = np.random.default_rng(3)
    caplog.set_level("WARNING", logger="models.train")
    warn(rng.uniform(size=20_000))
    assert caplog.text == ""
    tied = np.where(rng.random(20_000) < 0.07, 0.9999990036, rng.uniform(0, 0.99, 20_000))
    warn(tied)
    assert "the red cut-off sends 7." in caplog.text and "not the 1.00% asked" in caplog.text
    assert f"{int((tied == 0.9999990036).sum())} parcels share its priority" in caplog.text
