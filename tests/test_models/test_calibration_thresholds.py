"""Calibration is monotone within [0, 1]; thresholds fill the lanes at the configured rates."""

from __future__ import annotations

import numpy as np
import pytest

from features.errors import ParcelriskError
from models.calibration import fit_isotonic
from models.thresholds import fit_lane_thresholds, lane_shares


@pytest.fixture
def scored():
    rng = np.random.default_rng(3)
    raw = rng.normal(-2, 1.5, 5000)
    y = rng.random(5000) < 1 / (1 + np.exp(-raw))
    return raw, y


def test_calibration_is_strictly_increasing_within_unit_interval(scored):
    raw, y = scored
    cal = fit_isotonic(raw, y)
    grid = np.linspace(raw.min() - 5, raw.max() + 5, 2000)
    prob = cal(grid)
    assert np.all(np.diff(cal.raw_knots) > 0) and np.all(np.diff(cal.prob_knots) > 0)
    assert np.all(np.diff(prob) > 0)
    assert prob.min() >= 0 and prob.max() <= 1


def test_calibration_matches_hit_rate(scored):
    raw, y = scored
    prob = fit_isotonic(raw, y)(raw)
    assert prob.mean() == pytest.approx(y.mean(), abs=0.01)


def test_calibration_needs_both_classes():
    with pytest.raises(ParcelriskError, match="both illicit and clean"):
        fit_isotonic(np.array([0.1, 0.2, 0.3]), np.array([0, 0, 0]))


@pytest.mark.parametrize(("red", "yellow"), [(0.01, 0.04), (0.02, 0.08), (0.05, 0.0)])
def test_thresholds_fill_lanes_at_configured_rates(red, yellow):
    priority = np.random.default_rng(1).random(20_000)
    th = fit_lane_thresholds(priority, red, yellow, "risk")
    shares = lane_shares(priority, th)
    assert shares["red"] == pytest.approx(red, abs=1e-4)
    assert shares["yellow"] == pytest.approx(yellow, abs=1e-4)
    # and on fresh traffic from the same distribution
    fresh = lane_shares(np.random.default_rng(2).random(20_000), th)
    assert fresh["red"] == pytest.approx(red, abs=0.005)


def test_threshold_version_is_a_content_hash():
    priority = np.linspace(0, 1, 1000)
    a = fit_lane_thresholds(priority, 0.01, 0.04, "risk")
    assert a.version == fit_lane_thresholds(priority, 0.01, 0.04, "risk").version
    assert a.version != fit_lane_thresholds(priority, 0.02, 0.04, "risk").version


def test_thresholds_reject_bad_rates():
    with pytest.raises(ParcelriskError, match="lane rates"):
        fit_lane_thresholds(np.linspace(0, 1, 10), 0.6, 0.5, "risk")
