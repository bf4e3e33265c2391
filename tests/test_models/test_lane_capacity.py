"""Lane cut-offs on the effective priority, stored traffic quantiles, and the capacity plan,
against values computed by hand on tiny frames."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from features.errors import ParcelriskError
from models.capacity import plan_capacity, wilson_interval
from models.thresholds import (
    QUANTILE_SHARES,
    effective_priority,
    fit_from_quantiles,
    fit_lane_thresholds,
    lane_shares,
    parse_thresholds,
    thresholds_json,
    traffic_quantiles,
)


def test_effective_priority_discounts_only_aeo_rows():
    out = effective_priority(np.array([0.4, 0.4, 0.2]), np.array([True, False, True]), 0.5)
    assert out.tolist() == [0.2, 0.4, 0.1]


def _aeo_traffic() -> tuple[np.ndarray, np.ndarray]:
    # 1000 parcels, every other one AEO: the top of the raw ranking is half AEO
    priority = np.linspace(1.0, 0.001, 1000)
    aeo = np.arange(1000) % 2 == 0
    return priority, aeo


def test_the_aeo_aware_fit_fills_red_at_its_configured_share():
    priority, aeo = _aeo_traffic()
    th = fit_lane_thresholds(priority, 0.02, 0.08, "risk", aeo=aeo, aeo_discount=0.5)
    shares = lane_shares(effective_priority(priority, aeo, 0.5), th)
    assert shares["red"] == pytest.approx(0.02)
    assert shares["yellow"] == pytest.approx(0.08)
    assert (th.aeo_discount, th.parcels) == (0.5, 1000)


def test_the_raw_fit_underfills_red_once_aeo_parcels_are_discounted():
    priority, aeo = _aeo_traffic()
    th = fit_lane_thresholds(priority, 0.02, 0.08, "risk")
    # the 10 AEO parcels of the raw top 20 fall below the cut-off at half their priority
    assert lane_shares(effective_priority(priority, aeo, 0.5), th)["red"] == pytest.approx(0.01)


def test_the_version_hashes_what_the_cutoffs_were_fitted_with():
    priority, aeo = _aeo_traffic()
    a = fit_lane_thresholds(priority, 0.02, 0.08, "risk", aeo=aeo, aeo_discount=0.5)
    again = fit_lane_thresholds(priority, 0.02, 0.08, "risk", aeo=aeo, aeo_discount=0.5)
    other = fit_lane_thresholds(priority, 0.02, 0.08, "risk", aeo=aeo, aeo_discount=0.6)
    assert a.version == again.version != other.version


def test_stored_quantiles_give_the_same_cutoffs_at_a_stored_share():
    rng = np.random.default_rng(3)
    effective = rng.random(5000)
    quantiles = traffic_quantiles(effective, 0.5)
    assert len(quantiles["shares"]) == len(QUANTILE_SHARES) < 450
    share = QUANTILE_SHARES[200]
    direct = fit_lane_thresholds(effective, share, 0.0, "risk")
    stored = fit_from_quantiles(quantiles, share, 0.0, "risk", fitted_on="quantiles")
    assert stored.red_cutoff == pytest.approx(direct.red_cutoff)
    assert (stored.aeo_discount, stored.parcels, stored.fitted_on) == (0.5, 5000, "quantiles")


@pytest.mark.parametrize(("red", "yellow"), [(0.0, 0.1), (0.5, 0.5), (-0.1, 0.1), (0.1, -0.1)])
def test_impossible_rates_are_refused(red, yellow):
    with pytest.raises(ParcelriskError, match="lane rates"):
        fit_from_quantiles(traffic_quantiles(np.arange(10.0), 1.0), red, yellow, "risk")


def test_thresholds_round_trip_through_their_json_and_bad_text_is_refused():
    th = fit_lane_thresholds(np.arange(100.0), 0.05, 0.1, "revenue", fitted_on="x")
    assert parse_thresholds(thresholds_json(th)) == th
    with pytest.raises(ParcelriskError, match="not JSON"):
        parse_thresholds("{not json")
    with pytest.raises(ParcelriskError, match="lack red_cutoff"):
        parse_thresholds(json.dumps({"objective": "risk"}))


def test_wilson_interval_of_two_in_three():
    lo, hi = wilson_interval(np.array([2, 0]), np.array([3, 0]))
    assert lo[0] == pytest.approx(0.2077, abs=1e-4) and hi[0] == pytest.approx(0.9385, abs=1e-4)
    assert np.isnan(lo[1]) and np.isnan(hi[1])


def _tiny_period() -> pd.DataFrame:
    nan = np.nan
    return pd.DataFrame(
        {
            "effective_priority": [10.0, 9, 8, 7, 6, 5, 4, 3, 2, 1],
            "exploration": [True, False, True, True, False, False, False, False, True, True],
            # parcel 9 was inspected but not at random: it must not enter the estimate
            "illicit": [1, 1, 0, 1, nan, nan, nan, nan, 0, nan],
            "revenue": [100, 999, nan, 50, nan, nan, nan, nan, nan, nan],
            "true_illicit": [1, 1, 0, 1, 0, 1, 0, 0, 0, 0],
            "true_revenue": [100, 999, 0, 50, 0, 20, 0, 0, 0, 0],
        }
    )


def test_the_plan_estimates_from_the_exploration_parcels_above_each_cutoff():
    plan = plan_capacity(_tiny_period(), days=2.0, rates=(0.2, 0.5))
    top, half = plan.iloc[0], plan.iloc[1]
    # top 20%: cut-off 9, 2 parcels (1/day); explored above it: parcel 10 only, a 100 EUR hit
    assert (top.cutoff, top.parcels, top.per_day) == (9.0, 2, 1.0)
    assert (top.explored, top.explored_hits, top.hit_rate) == (1, 1, 1.0)
    assert top.revenue_per_day == pytest.approx(100.0)
    # top 50%: cut-off 6, 5 parcels (2.5/day); explored: 10 (hit 100), 8 (clean), 7 (hit 50)
    assert (half.cutoff, half.parcels, half.per_day) == (6.0, 5, 2.5)
    assert (half.explored, half.explored_hits) == (3, 2)
    assert half.hit_rate == pytest.approx(2 / 3)
    assert (half.hit_rate_lo, half.hit_rate_hi) == pytest.approx((0.2077, 0.9385), abs=1e-4)
    assert half.revenue_per_inspection == pytest.approx(50.0)
    assert half.hits_per_day == pytest.approx(2.5 * 2 / 3)
    assert half.revenue_per_day == pytest.approx(125.0)
    # against the truth of the 5 parcels at or above 6: 10, 9 and 7 are illicit (5 is below)
    assert half.true_hit_rate == pytest.approx(3 / 5)
    assert half.true_hits_per_day == pytest.approx(1.5)
    assert half.true_revenue_per_day == pytest.approx((100 + 999 + 50) / 2)


def test_without_exploration_results_the_traffic_columns_remain():
    period = (
        _tiny_period()
        .assign(illicit=np.nan, revenue=np.nan)
        .drop(columns=["true_illicit", "true_revenue"])
    )
    plan = plan_capacity(period, days=1.0, rates=(0.2,))
    assert plan.iloc[0].per_day == 2 and plan.iloc[0].explored == 0
    assert np.isnan(plan.iloc[0].hit_rate) and "true_hit_rate" not in plan.columns


def test_the_plan_refuses_an_empty_period_length():
    with pytest.raises(ParcelriskError, match="more than 0 days"):
        plan_capacity(_tiny_period(), days=0.0)
