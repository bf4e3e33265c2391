"""`parcelrisk monitor` (``serving.monitor``): the pure sections and their alert thresholds on
small frames, then the command end to end over decisions scored through the real scoring path
against the session's real champion (trained with its training reference)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import yaml

from features.errors import ParcelriskError
from features.params import MonitorParams
from models.bundle import LaneThresholds
from models.capacity import wilson_interval
from serving.auditor.disparity import LaneCount
from serving.monitor.acks import Ack, acknowledge, apply_acks, read_acks
from serving.monitor.compute import (
    Alert,
    _with_lane_advice,
    collapse_needs,
    feature_alert_level,
    mean_interval,
    measure_disparity,
    measure_exploration,
    measure_lane_shares,
    measure_period_drift,
    monitor_period,
)
from tests.test_serving.conftest import run_cli, score_into_store

INFO = {"name": "parcel-risk", "version": "1", "run_id": "r", "alias": "champion"}
POLICY = json.dumps({"aeo_risk_discount": 0.5, "exploration_rate": 0.02})


def test_wilson_interval_matches_the_formula_by_hand() -> None:
    # 5 hits in 20, z = 1.959964: centre (0.25 + z^2/40) / (1 + z^2/20) = 0.346037 / 1.192073
    # = 0.290281; half z * sqrt(0.25*0.75/20 + z^2/1600) / 1.192073 = 0.178419
    (low,), (high,) = wilson_interval(np.array([5]), np.array([20]))
    assert low == pytest.approx(0.111862, abs=1e-5) and high == pytest.approx(0.468700, abs=1e-5)
    assert wilson_interval(np.array([0]), np.array([10]))[0][0] == pytest.approx(0.0, abs=1e-12)


def test_revenue_interval_by_hand_never_leaves_the_values_range() -> None:
    # [0, 0, 0, 10]: mean 2.5, sd sqrt((3 * 2.5^2 + 7.5^2) / 3) = 5, half 1.959964 * 5 / 2
    # = 4.899910: the normal interval (-2.40, 7.40) is cut at the smallest amount, 0
    low, high = mean_interval(np.array([0.0, 0.0, 0.0, 10.0]))
    assert low == 0.0 and high == pytest.approx(7.399910, abs=1e-5)
    assert np.isnan(mean_interval(np.array([5.0]))[0])  # one result: no interval


@pytest.mark.parametrize(("baseline", "trending", "level"), [(None, False, 0.25),
    (0.1, False, 0.25), (0.2499, False, 0.25), (0.2501, True, 0.5002), (3.0, True, 6.0)])  # fmt: skip
def test_a_feature_trending_in_training_alerts_above_its_own_move(
    baseline, trending, level
) -> None:
    got = feature_alert_level(baseline, MonitorParams(psi_feature_alert=0.25, trend_margin=2.0))
    assert got["trending"] is trending and got["alert_above"] == pytest.approx(level)


def _champion(red_rate=0.1, yellow_rate=0.2, reference=None):
    thresholds = LaneThresholds("risk", 0.5, 0.3, red_rate, yellow_rate, "thr-1")
    return SimpleNamespace(
        thresholds=thresholds,
        reference=reference,
        manifest=SimpleNamespace(fingerprint="fp-1", categories={}, params={}),
    )


def _frame(lanes: list[str], exploration: list[bool] | None = None, **columns) -> pd.DataFrame:
    n = len(lanes)
    frame = pd.DataFrame(
        {
            "declared_at": pd.Timestamp("2026-03-01", tz="UTC")
            + pd.to_timedelta(np.arange(n), unit="min"),
            "lane": lanes,
            "exploration": exploration or [False] * n,
            "thresholds_version": ["thr-1"] * n,
            "exploration_rate": [json.loads(POLICY)["exploration_rate"]] * n,
            "aeo_risk_discount": [json.loads(POLICY)["aeo_risk_discount"]] * n,
            "model_name": ["parcel-risk"] * n,
            "model_version": ["1"] * n,
            "manifest_fingerprint": ["fp-1"] * n,
            "risk": np.linspace(0, 1, n),
            "expected_revenue": np.linspace(0, 10, n),
            "aeo_operator": [False] * n,
            "has_result": [False] * n,
            "illicit": [np.nan] * n,
            "revenue_recovered": [np.nan] * n,
        }
    )
    for name, values in columns.items():
        frame[name] = values
    return frame


@pytest.mark.parametrize(("red", "fires"), [(129, False), (131, True)])
def test_the_red_share_alerts_just_beyond_the_allowed_deviation(red, fires) -> None:
    # target 10% of 1000 = 100; allowed +30%: 130. 129 red is +29%, 131 is +31%.
    frame = _frame(["red"] * red + ["yellow"] * 200 + ["green"] * (800 - red))
    params = MonitorParams(max_lane_share_deviation=0.3, min_lane_decisions=100)
    section, alerts = measure_lane_shares(frame, _champion(), INFO, {"thr-1": (0.1, 0.2)}, params)
    assert section["overall"]["red"] == pytest.approx(red / 1000)
    assert [a.subject for a in alerts] == (["red"] if fires else [])


def test_lane_shares_leave_exploration_out_and_name_unknown_versions() -> None:
    frame = _frame(["red"] * 10 + ["yellow"] * 20 + ["green"] * 70, [False] * 90 + [True] * 10)
    frame.loc[:4, "thresholds_version"] = "thr-unknown"
    section, _ = measure_lane_shares(
        frame, _champion(), INFO, {"thr-1": (0.1, 0.2)}, MonitorParams()
    )
    assert section["unknown_thresholds_decisions"] == 5
    assert section["unknown_thresholds_versions"] == ["thr-unknown"]
    assert section["overall"]["decisions"] == 85  # 100 - 5 unknown - 10 exploration
    assert section["exploration"] == pytest.approx({"share": 0.1, "target": 0.02})
    assert not section["judged"]  # fewer than min_lane_decisions: reported, not judged
    # the refit fills 10% red on the champion's 100 decisions (risk 0..1 evenly)
    assert section["refit"]["red_cutoff"] == pytest.approx(0.909, abs=0.01)


def test_lanes_policy_raised_are_left_out_of_the_shares_and_named_with_their_currency() -> None:
    """A currency without an exchange rate raised 100 of 1000 parcels to yellow: the yellow
    share alerted and its advice was a lower cut-off (probe 32). Those decisions are not the
    cut-offs' doing: left out of the shares, and their own alert names the currency."""
    lanes = ["red"] * 100 + ["yellow"] * 300 + ["green"] * 600
    codes = ['["lane.unvalued_currency"]'] * 100 + [""] * 900
    codes[100:110] = ['["category.unknown", "lane.implausible"]'] * 10
    frame = _frame(lanes, warning_codes=codes, currency=["XAU"] * 100 + ["EUR"] * 900)
    frame.loc[100:109, "lane"] = "yellow"
    params = MonitorParams(max_lane_share_deviation=0.3, min_lane_decisions=100)
    section, alerts = measure_lane_shares(frame, _champion(), INFO, {"thr-1": (0.1, 0.2)}, params)
    assert section["policy_left_out"] == {"lane.unvalued_currency": 100, "lane.implausible": 10}
    assert section["overall"]["decisions"] == 890
    (raised,) = [a for a in alerts if a.kind == "lane_policy"]
    assert raised.value == pytest.approx(0.11)
    assert "100 for a currency without an exchange rate (XAU 100)" in raised.message
    assert "10 for a number above its plausible bound" in raised.message
    # a period whose decisions hold no codes (a store from before them) judges every lane
    section, alerts = measure_lane_shares(
        _frame(lanes), _champion(), INFO, {"thr-1": (0.1, 0.2)}, params
    )
    assert section["policy_left_out"] == {} and not [a for a in alerts if a.kind == "lane_policy"]


def test_hs6_codes_the_model_never_learned_are_counted_and_named() -> None:
    """A new HS edition showed only as "cat_hs6 PSI 0.307" (probe 32): its codes are named,
    and those a correlation table reads as known ones are not new."""
    from features.pipeline.manifest import FeatureManifest, FeatureSpec
    from serving.monitor.compute import _unseen_hs6_words, unseen_hs6

    hs6 = FeatureSpec("cat_hs6", "product", "category", "HS6", "HS6 {value}", ("610910", "640399"))
    value = FeatureSpec("value_eur", "value", "float", "value", "value {value}")
    manifest = FeatureManifest((hs6, value), {"hs_reads_as": {"640396": "640399"}})
    champion = SimpleNamespace(manifest=manifest)
    frame = pd.DataFrame(
        {"hs6": ["610910"] * 90 + ["640395"] * 6 + ["851632"] * 2 + ["640396"] * 2}
    )
    unseen = unseen_hs6(frame, champion)
    assert unseen == {
        "measured": True, "share": 0.08, "decisions": 8, "top": {"640395": 6, "851632": 2}
    }  # fmt: skip
    words = _unseen_hs6_words(unseen)
    assert "8.0% of decisions were declared under HS6 codes the model never learned" in words
    assert "640395 (6), 851632 (2)" in words and "features.hs_correlation" in words
    # a champion without the categorical, or a period read without the column: not measured
    assert not unseen_hs6(frame.drop(columns="hs6"), champion)["measured"]
    without = SimpleNamespace(manifest=FeatureManifest((value,), {}))
    assert not unseen_hs6(frame, without)["measured"]


def test_another_version_s_targets_are_used_for_its_decisions() -> None:
    frame = _frame(["red"] * 50 + ["green"] * 950)
    targets = {"thr-1": (0.1, 0.2), "thr-2": (0.05, 0.2)}
    frame["thresholds_version"] = "thr-2"
    params = MonitorParams(min_lane_decisions=100)
    section, alerts = measure_lane_shares(frame, _champion(), INFO, targets, params)
    assert section["overall"]["red_target"] == pytest.approx(0.05)
    assert not [a for a in alerts if a.subject == "red"]


@pytest.mark.parametrize(("hits", "fires"), [(6, False), (2, True)])
def test_exploration_hit_rate_alerts_when_its_interval_is_below_expected(hits, fires) -> None:
    # 60 results, the model expected 0.25 on them; tolerance 25%: alert when the Wilson upper
    # bound is below 0.1875. 2/60: upper 0.114; 6/60: upper 0.202.
    n = 60
    frame = _frame(["yellow"] * n, [True] * n, risk=[0.25] * n, has_result=[True] * n,
                   illicit=[1.0] * hits + [0.0] * (n - hits))  # fmt: skip
    params = MonitorParams(min_results=30, hit_rate_tolerance=0.25)
    section, alerts = measure_exploration(
        frame, pd.Timestamp("2026-03-01", tz="UTC"), _champion(), params
    )
    assert section["overall"]["hit_rate"] == pytest.approx(hits / n)
    rate_alerts = [a.kind for a in alerts if a.kind == "exploration_hit_rate"]
    assert rate_alerts == (["exploration_hit_rate"] if fires else [])


def test_exploration_says_how_many_results_are_missing_and_does_not_judge_too_few() -> None:
    frame = _frame(["yellow"] * 40, [True] * 40, has_result=[True] * 10 + [False] * 30,
                   illicit=[1.0] * 10 + [np.nan] * 30)  # fmt: skip
    section, alerts = measure_exploration(
        frame, pd.Timestamp("2026-03-01", tz="UTC"), _champion(), MonitorParams(min_results=30)
    )
    assert section["overall"]["results_missing"] == 30 and not section["judged"]
    assert "30 still missing" in section["not_judged"] and alerts == []


def test_disparity_flags_a_platform_too() -> None:
    counts = [
        LaneCount("CN", "postal", "red", 300, 100, 10, "PL1"),
        LaneCount("CN", "postal", "green", 700, 50, 5, "PL1"),
        LaneCount("US", "express", "red", 30, 30, 15, "PL2"),
        LaneCount("US", "express", "green", 970, 60, 30, "PL2"),
    ]
    section, alerts = measure_disparity(counts, MonitorParams())
    assert {r["group"] for r in section["platform_id"]} == {"PL1", "PL2"}
    assert {a.subject for a in alerts} >= {"platform_id=PL1", "origin_country=US"}
    _, none = measure_disparity(counts, MonitorParams(disparity_tolerance=100))
    assert none == []


def test_a_champion_without_reference_skips_drift_without_failing() -> None:
    section, alerts = measure_period_drift(
        _frame(["green"] * 3), _champion(), INFO, MonitorParams()
    )
    assert section["available"] is False and "no training reference" in section["reason"]
    assert alerts == []


# --- what a duty officer acts on (probe 17) ---------------------------------------------------


def test_no_hit_at_all_has_an_interval_from_exactly_0_and_its_chart_draws() -> None:
    from serving.monitor.report import hit_rate_chart

    # 0/66 left a rounding residue of 3.5e-18 as the lower bound: the rate fell below its own
    # interval and matplotlib refused the error bar, so the whole monitor crashed (exit 1)
    n = np.arange(1, 400)
    low, high = wilson_interval(np.zeros_like(n), n)
    assert (low == 0.0).all() and (high > 0).all()
    low, high = wilson_interval(n, n)
    assert (high == 1.0).all() and (low < 1).all()
    bucket = {"from": "2026-03-16", "results": 66, "hit_rate": 0.0, "expected_hit_rate": 0.034,
              "hit_rate_low": float(low[0] * 0), "hit_rate_high": 0.055}  # fmt: skip
    assert hit_rate_chart([bucket]).startswith("<img")


def _reference_champion(rng: np.random.Generator) -> SimpleNamespace:
    from models.reference import ModelReference, describe_values

    reference = ModelReference(
        features=(
            describe_values("count", rng.uniform(0, 100, 4000)),
            describe_values("stable", rng.normal(0, 1, 4000)),
            describe_values("origin", rng.integers(0, 5, 4000).astype(float), categorical=True),
        ),
        score=describe_values("risk", rng.uniform(0, 1, 4000)),
        rows=4000,
        period={"name": "test"},
        mean_risk=0.05,
        mean_expected_revenue=2.0,
        manifest_fingerprint="fp-1",
    )
    return _champion(reference=reference)


def _drift_frame(
    rng: np.random.Generator, count_shift: float, n: int = 1000, operator_id=None, **change
):
    from serving.decision import pack_feature_rows

    frame = _frame(["green"] * n, risk=rng.uniform(0, 1, n))
    if operator_id is not None:
        frame["operator_id"] = pd.Series(operator_id, dtype="category")
    X = np.column_stack(
        [
            rng.uniform(0, 100, n) + count_shift,
            rng.normal(0, 1, n),
            rng.integers(0, 5, n).astype(float),
        ]
    )
    for column, values in change.items():
        X[:, ["count", "stable", "origin"].index(column)] = values
    frame["features"] = pack_feature_rows([row.astype("<f8").tobytes() for row in X])
    return frame


def test_a_drift_alert_says_whether_the_previous_period_showed_it_and_never_drops_it() -> None:
    rng = np.random.default_rng(7)
    champion, params = _reference_champion(rng), MonitorParams(min_drift_rows=100)
    shifted = _drift_frame(rng, 60)
    # no previous period: said, and alerted
    section, alerts = measure_period_drift(shifted, champion, INFO, params)
    assert [a.subject for a in alerts] == ["count"] and not section["previous"]["judged"]
    assert "previous period" not in alerts[0].message
    # the period before showed the same shift: still alerted (two windows showing a broken
    # feed is no reason to stop paging: probe 19), saying so and how far it moved
    section, alerts = measure_period_drift(
        shifted, champion, INFO, params, _drift_frame(rng, 60), pd.Timestamp("2026-02-22")
    )
    assert [a.subject for a in alerts] == ["count"] and section["previous"]["judged"]
    assert "stood out in the previous period too (PSI " in alerts[0].message
    assert section["features"][0]["psi_since_previous"] < 0.1
    # the period before was quiet: new
    _, alerts = measure_period_drift(shifted, champion, INFO, params, _drift_frame(rng, 0))
    assert "new since the previous period" in alerts[0].message


def test_a_period_with_no_comparable_decision_after_one_with_many_is_not_judged() -> None:
    rng = np.random.default_rng(10)
    champion, params = _reference_champion(rng), MonitorParams(min_drift_rows=100)
    other = _drift_frame(rng, 0)
    other["manifest_fingerprint"] = "fp-2"  # decided with another model's features
    section, alerts = measure_period_drift(other, champion, INFO, params, _drift_frame(rng, 0))
    assert alerts == [] and not section["judged"] and section["previous"]["judged"]
    assert section["other_manifest_decisions"] == 1000


def test_a_feature_gone_missing_is_called_a_broken_feed() -> None:
    rng = np.random.default_rng(9)
    champion, params = _reference_champion(rng), MonitorParams(min_drift_rows=100)
    _, alerts = measure_period_drift(_drift_frame(rng, 0, stable=np.nan), champion, INFO, params)
    assert [a.subject for a in alerts] == ["stable"] and "a broken feed" in alerts[0].message
    # a gap below monitor.missing_rise_alert is a shift like any other
    gap = np.where(rng.uniform(size=1000) < 0.15, np.nan, rng.normal(0, 1, 1000))
    _, alerts = measure_period_drift(_drift_frame(rng, 0, stable=gap), champion, INFO, params)
    assert [a.subject for a in alerts] == ["stable"] and "broken feed" not in alerts[0].message


def _operators(**counts: int) -> list[str | None]:
    return [None if name == "none" else name for name, n in counts.items() for _ in range(n)]


def test_a_broken_feed_names_the_operator_whose_declarations_broke() -> None:
    """One carrier's export stopped filling a field, and the alert said "missing in 41% of
    decisions" without saying whose (probe 32 MEDIUM-3): it names the operator, its own rate
    against the others' and the period before's."""
    rng = np.random.default_rng(12)
    champion, params = _reference_champion(rng), MonitorParams(min_drift_rows=100)
    operators = _operators(POST=300, **{"DHL-EXP": 400}, UPS=300)
    before = _drift_frame(rng, 0, operator_id=operators)
    stable = rng.normal(0, 1, 1000)
    stable[300:700] = np.nan  # every DHL-EXP declaration
    stable[[5, 900]] = np.nan  # and two of the others'
    frame = _drift_frame(rng, 0, stable=stable, operator_id=operators)
    section, alerts = measure_period_drift(frame, champion, INFO, params, before)
    (alert,) = [a for a in alerts if a.subject == "stable"]
    assert "a broken feed" in alert.message
    assert (
        "100% of them from operator DHL-EXP (missing in 100% of its 400 decisions, "
        "0% of the others'; 0% in the period before)"
    ) in alert.message
    (source,) = next(f for f in section["features"] if f["name"] == "stable")["feed_sources"]
    assert source["operator"] == "DHL-EXP" and source["share_of_faults"] == pytest.approx(400 / 402)
    assert source["others_rate"] == pytest.approx(2 / 600)
    # no previous period: the same source, without the comparison
    _, alerts = measure_period_drift(frame, champion, INFO, params)
    assert "(missing in 100% of its 400 decisions, 0% of the others')" in alerts[0].message


def test_a_field_emptied_everywhere_is_said_spread_and_categories_are_attributed_too() -> None:
    rng = np.random.default_rng(13)
    champion, params = _reference_champion(rng), MonitorParams(min_drift_rows=100)
    operators = _operators(A=500, B=500)
    # 40% missing at every operator: no one carrier, an upstream change
    gap = np.where(rng.uniform(size=1000) < 0.4, np.nan, rng.normal(0, 1, 1000))
    _, alerts = measure_period_drift(
        _drift_frame(rng, 0, stable=gap, operator_id=operators), champion, INFO, params
    )
    assert "spread over the operators (none stands out" in alerts[0].message
    assert "of them from" not in alerts[0].message
    # a categorical's unknown codes, all from declarations that name no operator
    origin = rng.integers(0, 5, 1000).astype(float)
    origin[:400] = 9.0
    frame = _drift_frame(rng, 0, origin=origin, operator_id=_operators(none=400, A=300, B=300))
    (alert,) = measure_period_drift(frame, champion, INFO, params)[1]
    assert alert.subject == "origin"
    assert (
        "100% of them from declarations without an operator (outside the reference's "
        "categories in 100% of its 400 decisions, 0% of the others')"
    ) in alert.message
    # `lanes refit`'s feed check says whose feed broke as well
    from serving.monitor.compute import check_feed

    (broken,) = check_feed(frame, champion, INFO, params)["broken"]
    assert broken["feature"] == "origin" and broken["moved"].startswith("40% of decisions hold")
    assert broken["whose"].startswith("100% of them from declarations without an operator")


def test_an_operator_new_or_gone_between_two_periods_alerts_and_a_swap_reads_as_a_rename():
    rng = np.random.default_rng(14)
    champion, params = _reference_champion(rng), MonitorParams(min_drift_rows=100)
    before = _drift_frame(rng, 0, operator_id=_operators(POST=500, DHL=300, GLS=200))
    # the same three carriers: no alert, the shares reported
    section, alerts = measure_period_drift(
        _drift_frame(rng, 0, operator_id=_operators(POST=450, DHL=350, GLS=200)),
        champion, INFO, params, before,
    )  # fmt: skip
    assert not [a for a in alerts if a.kind == "operator_change"]
    assert section["operators"]["shares"] == {"POST": 0.45, "DHL": 0.35, "GLS": 0.2}
    # DHL's export now says DHL-EXPRESS: one alert naming both, read as a rename
    renamed = _drift_frame(
        rng, 0, operator_id=_operators(POST=500, **{"DHL-EXPRESS": 300}, GLS=200)
    )
    section, alerts = measure_period_drift(renamed, champion, INFO, params, before)
    (alert,) = [a for a in alerts if a.kind == "operator_change"]
    assert alert.subject == "DHL, DHL-EXPRESS" and alert.value == pytest.approx(0.3)
    assert "operators new since the period before: DHL-EXPRESS (30% of decisions)" in alert.message
    assert "with no decisions since the period before: DHL (30% then)" in alert.message
    assert "one carrier under a new id?" in alert.message
    assert section["operators"]["new"] == {"DHL-EXPRESS": 0.3}
    # a new carrier alone is said as one; one under 5% of the traffic is not news
    grown = _drift_frame(rng, 0, operator_id=_operators(POST=400, DHL=300, GLS=200, EVRI=100))
    (alert,) = [a for a in measure_period_drift(grown, champion, INFO, params, before)[1]]
    assert alert.subject == "EVRI" and "under a new id" not in alert.message
    small = _drift_frame(rng, 0, operator_id=_operators(POST=460, DHL=300, GLS=200, EVRI=40))
    assert not measure_period_drift(small, champion, INFO, params, before)[1]
    # a period before too small to judge, or none: nothing said of operators
    tiny = _drift_frame(rng, 0, n=50, operator_id=_operators(POST=50))
    section, alerts = measure_period_drift(renamed, champion, INFO, params, tiny)
    assert "operators" not in section and not alerts


# --- acknowledgements: a person silences an alert at its level, until a date ---------------


def _ack(kind: str, subject: str, value: float, until: str = "2026-04-01", **more) -> Ack:
    return Ack(kind, subject, value, until, "known: lanes refit on Monday", **more)


def test_an_acknowledged_alert_is_listed_not_paged_while_at_its_level() -> None:
    params = MonitorParams()
    alerts = [
        Alert("feature_drift", "platform_n_7d", 2.9, 0.25, "feature platform_n_7d: PSI 2.9"),
        Alert("lane_share", "red", -0.55, 0.3, "red lane: ..."),
        Alert("exploration_revenue", "exploration", 0.8, 3.0, "revenue ...", 0.3, 1.4),
        Alert("disparity", "origin_country=CN", 0.02, 1.5, "origin CN ...", flag="more red"),
        Alert("disparity", "channel=postal", 0.01, 1.5, "postal ...", flag="less red"),
        Alert("feature_drift", "seller_n_7d", 0.55, 0.25, "feature seller_n_7d: PSI 0.55"),
    ]
    acks = [
        _ack("feature_drift", "platform_n_7d", 2.46),  # 2.9 <= 2.46 x 1.5
        _ack("lane_share", "red", -0.34),  # no further than 0.3 beyond -0.34
        _ack("exploration_revenue", "exploration", 0.79),  # inside today's interval
        _ack("disparity", "channel=postal", 0.004, flag="less red"),  # the same direction
        _ack("feature_drift", "seller_n_7d", 0.34),  # 0.55 <= 0.34 + its alert level 0.25
    ]
    paged, acknowledged, expired = apply_acks(alerts, acks, "2026-03-20", params)
    assert [a.subject for a in paged] == ["origin_country=CN"] and expired == []
    assert [a["alert"]["subject"] for a in acknowledged] == [
        "platform_n_7d", "red", "exploration", "channel=postal", "seller_n_7d"
    ]  # fmt: skip
    # a red lane nearer its target than acknowledged is no news
    nearer = Alert("lane_share", "red", -0.31, 0.3, "red lane: ...")
    assert apply_acks([nearer], [_ack("lane_share", "red", -0.69)], "2026-03-20", params)[0] == []
    assert acknowledged[0]["acknowledgement"]["reason"] == "known: lanes refit on Monday"


@pytest.mark.parametrize(
    ("alert", "ack"),
    [
        # a slow drift is judged against where it was acknowledged, not against last week
        (Alert("feature_drift", "quantity", 2.97, 0.25, "m"), _ack("feature_drift", "quantity", 1.71)),
        # the red lane emptied by a broken feed, acknowledged when it was 34% under
        (Alert("lane_share", "red", -1.0, 0.3, "m"), _ack("lane_share", "red", -0.34)),
        # revenue collapsed: today's interval no longer holds the acknowledged 0.79 EUR
        (Alert("exploration_revenue", "exploration", 0.09, 3.0, "m", 0.0, 0.2),
         _ack("exploration_revenue", "exploration", 0.79)),
        # the red lane overfull, acknowledged when it was under its target
        (Alert("lane_share", "red", 0.4, 0.3, "m"), _ack("lane_share", "red", -0.34)),
        # a disparity that turned the other way
        (Alert("disparity", "channel=postal", 0.03, 1.5, "m", flag="more red"),
         _ack("disparity", "channel=postal", 0.004, flag="less red")),
    ],
)  # fmt: skip
def test_an_acknowledged_alert_pages_again_once_it_moves_beyond_its_level(alert, ack) -> None:
    paged, acknowledged, _ = apply_acks([alert], [ack], "2026-03-20", MonitorParams())
    assert acknowledged == [] and len(paged) == 1
    assert "moved beyond its acknowledged by" in paged[0].message


def test_an_expired_acknowledgement_pages_again_and_the_newest_one_is_read() -> None:
    alert = Alert("lane_share", "red", -0.34, 0.3, "red lane")
    old = _ack("lane_share", "red", -0.34, until="2026-03-01", acknowledged_at="2026-02-01")
    paged, _, expired = apply_acks([alert], [old], "2026-03-20", MonitorParams())
    assert len(paged) == 1 and "expired" in paged[0].message and len(expired) == 1
    renewed = _ack("lane_share", "red", -0.34, until="2026-05-01", acknowledged_at="2026-03-19")
    paged, acknowledged, _ = apply_acks([alert], [renewed, old], "2026-03-20", MonitorParams())
    assert paged == [] and len(acknowledged) == 1


def test_acknowledgements_are_written_whole_and_read_back(tmp_path) -> None:
    path = tmp_path / "acks.yaml"
    now = pd.Timestamp("2026-03-20T08:00", tz="UTC")
    alert = {"kind": "lane_share", "subject": "red", "value": -0.34, "low": None, "high": None}
    (added,) = acknowledge(path, [alert], period="2026-03-13_2026-03-20",
                           until=pd.Timestamp("2026-04-01", tz="UTC"), reason="refit Monday",
                           now=now, by="analyst@unit")  # fmt: skip
    assert read_acks(path) == [added] and added.until == "2026-04-01"
    assert path.read_text().startswith("# parcelrisk monitor acknowledgements")
    with pytest.raises(ParcelriskError, match="--reason"):
        acknowledge(path, [alert], period="p", until=now + pd.Timedelta(days=1), reason=" ",
                    now=now, by="x")  # fmt: skip
    with pytest.raises(ParcelriskError, match="is not in the future"):
        acknowledge(path, [alert], period="p", until=now, reason="r", now=now, by="x")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("kind: lane_share", "acknowledgements are a YAML list"),
        ("- {kind: lane_share, subject: red, value: -0.3, until: 2026-04-01}", "missing reason"),
        ("- {kind: lane_share, subject: red, value: low, until: 2026-04-01, reason: r}",
         "acknowledgement 1: could not convert"),
        ("- {kind: lane_share, subject: red, value: 1, until: someday, reason: r}",
         "until 'someday' is not a date"),
        ("- [1, 2]", "acknowledgement 1 is not a mapping"),
    ],
)  # fmt: skip
def test_a_malformed_acknowledgement_is_refused_by_position_never_skipped(
    tmp_path, text, message
) -> None:
    path = tmp_path / "acks.yaml"
    path.write_text(text)
    with pytest.raises(ParcelriskError, match=message):
        read_acks(path)


def test_a_drift_message_says_a_feed_went_missing_or_holds_unseen_values() -> None:
    rng = np.random.default_rng(8)
    champion, params = _reference_champion(rng), MonitorParams(min_drift_rows=100)
    frame = _drift_frame(rng, 0, stable=np.nan, origin=np.r_[np.full(600, 9.0), np.zeros(400)])
    _, alerts = measure_period_drift(frame, champion, INFO, params)
    messages = {a.subject: a.message for a in alerts}
    assert "missing in 100% of decisions (reference 0%)" in messages["stable"]
    assert (
        "60% of decisions hold a value outside the reference's 5 commonest" in (messages["origin"])
    )


def test_revenue_per_inspection_alerts_and_each_bucket_is_judged() -> None:
    n = 80
    # the hit rate is as expected over the period; the revenue recovered collapsed to 0
    frame = _frame(["yellow"] * n, [True] * n, risk=[0.25] * n, has_result=[True] * n,
                   illicit=[1.0, 0.0, 0.0, 0.0] * 20, revenue_recovered=[0.0] * n,
                   expected_revenue=[40.0] * n)  # fmt: skip
    params = MonitorParams(min_results=30, bucket_days=7)
    since = pd.Timestamp("2026-03-01", tz="UTC")
    _, alerts = measure_exploration(frame, since, _champion(), params)
    assert [a.kind for a in alerts] == ["exploration_revenue"]
    assert "revenue per inspection 0.00" in alerts[0].message
    # the second week alone found nothing: its bucket alerts, though the month is within bounds
    frame["declared_at"] = since + pd.to_timedelta(np.r_[np.zeros(40), np.full(40, 8)], unit="D")
    frame["illicit"] = [1.0] * 20 + [0.0] * 60
    frame["revenue_recovered"] = [160.0] * 20 + [0.0] * 60
    _, alerts = measure_exploration(frame, since, _champion(), params)
    assert {(a.kind, a.subject) for a in alerts} >= {
        ("exploration_hit_rate", "exploration 2026-03-08")
    }
    assert ("exploration_hit_rate", "exploration") not in {(a.kind, a.subject) for a in alerts}


def test_a_period_too_small_to_see_a_collapse_says_so() -> None:
    params = MonitorParams(min_results=30)
    needs = collapse_needs(0.034, params)
    z2 = 1.959964**2
    assert z2 / (needs + z2) < 0.034 * 0.75 <= z2 / (needs - 1 + z2)
    n = 66
    frame = _frame(["yellow"] * n, [True] * n, risk=[0.034] * n, has_result=[True] * n,
                   illicit=[0.0] * n, expected_revenue=[0.0] * n)  # fmt: skip
    section, alerts = measure_exploration(
        frame, pd.Timestamp("2026-03-01", tz="UTC"), _champion(), params
    )
    assert section["judged"] and alerts == []  # 0/66: interval 0-5.5% holds 3.4% x 0.75
    assert f"it needs {needs}" in section["collapse_not_judged"]
    summary = monitor_period(frame, [], _champion(), INFO, {"thr-1": (0.1, 0.2)},
                             pd.Timestamp("2026-03-01", tz="UTC"),
                             pd.Timestamp("2026-03-08", tz="UTC"), params)  # fmt: skip
    assert any(
        m.startswith("an exploration collapse (with 66 results") for m in summary["not_judged"]
    )
    # no group with enough results: disparity is named among what was not judged
    assert any(m.startswith("disparity (no origin") for m in summary["not_judged"])


def test_a_lane_alert_gives_the_cut_off_and_warns_of_a_broken_feed() -> None:
    frame = _frame(["green"] * 1000)
    params = MonitorParams(min_lane_decisions=100)
    lanes, alerts = measure_lane_shares(frame, _champion(), INFO, {"thr-1": (0.1, 0.2)}, params)
    assert {a.subject for a in alerts} == {"red", "yellow"}
    red = _with_lane_advice(next(a for a in alerts if a.subject == "red"), lanes, [])
    assert "red cut-off that would have filled its target on this traffic: 0.9" in red.message
    assert "(in force: 0.5; `parcelrisk lanes refit` puts it in force)" in red.message
    drifted = [Alert("feature_drift", "value_eur", 7.69, 0.25, "...")]
    red = _with_lane_advice(next(a for a in alerts if a.subject == "red"), lanes, drifted)
    assert "1 feature(s) moved in the same period (value_eur PSI 7.69)" in red.message
    assert "a refit would follow a broken one" in red.message


# --- the command end to end ------------------------------------------------------------------


@pytest.fixture(scope="module")
def monitored(real_pipeline, tmp_path_factory):
    """600 fresh declarations scored through the real path into a store, with the results of
    the red and exploration parcels posted; params files that alert on anything and on nothing."""
    from features.params import load_settings
    from serving.outcome_store import SqliteOutcomeStore
    from serving.outcomes import store_outcomes
    from serving.scoring import load_runtime
    from tests.test_serving.conftest import fresh_declarations

    tmp = tmp_path_factory.mktemp("monitor")
    settings = load_settings(real_pipeline["params"])
    runtime = load_runtime(settings, real_pipeline["tracking_uri"], tmp / "model")
    db = tmp / "audit.db"
    parcels = fresh_declarations(real_pipeline["history"], 600, prefix="MON")
    records = score_into_store(runtime, db, parcels)
    results = SqliteOutcomeStore(db)
    try:
        inspected = [r for r in records if r.lane == "red" or r.exploration]
        rng = np.random.default_rng(0)
        illicit = rng.uniform(size=len(inspected)) < 0.3
        store_outcomes(
            results,
            pd.DataFrame(
                {
                    "declaration_id": [r.declaration_id for r in inspected],
                    "inspected_at": [
                        (
                            pd.Timestamp(r.declaration["declared_at"]) + pd.Timedelta(hours=1)
                        ).strftime("%Y-%m-%dT%H:%M:%SZ")
                        for r in inspected
                    ],
                    "illicit": ["true" if x else "false" for x in illicit],
                    "offence_type": ["undervaluation" if x else "" for x in illicit],
                    "revenue_recovered": ["40" if x else "" for x in illicit],
                }
            ),
            source="test",
        )
    finally:
        results.close()
    # the fresh parcels may straddle a midnight: the period covers every day they touch
    day = pd.Timestamp(parcels["declared_at"].min()).strftime("%Y-%m-%d")
    last = pd.Timestamp(parcels["declared_at"].max()).normalize() + pd.Timedelta(days=1)
    base = yaml.safe_load(real_pipeline["params"].read_text())
    paths = {}
    for name, monitor in (
        ("alerting", {"psi_score_alert": 0.0001, "min_drift_rows": 10}),
        (
            "quiet",
            {
                "psi_feature_alert": 1e9,
                "psi_score_alert": 1e9,
                "max_lane_share_deviation": 1e9,
                "min_results": 1_000_000,
                "disparity_min_results": 1_000_000,
            },
        ),
    ):
        paths[name] = tmp / f"{name}.yaml"
        paths[name].write_text(yaml.safe_dump({**base, "monitor": monitor}))
    return {
        "db": db,
        "day": day,
        "next_day": last.strftime("%Y-%m-%d"),
        "records": records,
        "tracking_uri": real_pipeline["tracking_uri"],
        "params": paths,
    }


def _args(m, params: str, *extra: str) -> list[str]:
    return ["monitor", "--since", m["day"], "--until", m["next_day"], "--db", str(m["db"]),
            "--tracking-uri", m["tracking_uri"], "--params", str(m["params"][params]), *extra]  # fmt: skip


def test_monitor_alerts_writes_the_report_and_logs_it(monitored, capsys, tmp_path) -> None:
    from mlflow.tracking import MlflowClient

    code, out, _ = run_cli(capsys, *_args(monitored, "alerting", "--report", str(tmp_path)))
    summary = json.loads(out)
    assert code == 1, summary["alerts"]
    assert summary["decisions"] == 600
    assert summary["drift"]["available"] and summary["drift"]["comparable_decisions"] == 600
    assert "score_drift" in {a["kind"] for a in summary["alerts"]}
    features = summary["drift"]["features"]
    assert features and all(f["psi"] >= 0 and f["alert_above"] >= 0.25 for f in features)
    assert {"kind", "subject", "value", "threshold", "message"} <= set(summary["alerts"][0])
    assert summary["exploration"]["overall"]["parcels"] == sum(
        r.exploration for r in monitored["records"]
    )
    assert summary["exploration"]["overall"]["results_missing"] == 0
    assert set(summary["disparity"]) == {"origin_country", "channel", "platform_id"}
    # the HS6 declared is read from the store: codes the model learned are not new
    unseen = summary["drift"]["hs6_unseen"]
    assert unseen["measured"] and 0 <= unseen["share"] < 0.2
    html = (tmp_path / "report.html").read_text()
    assert "data:image/png;base64," in html and "<script" not in html
    assert json.loads((tmp_path / "summary.json").read_text()) == summary
    run_id = summary["champion"]["run_id"]
    folder = f"monitoring/{monitored['day']}_{monitored['next_day']}"
    logged = {
        a.path for a in MlflowClient(monitored["tracking_uri"]).list_artifacts(run_id, folder)
    }
    assert logged == {f"{folder}/report.html", f"{folder}/summary.json"}


def test_monitor_exits_0_without_alerts(monitored, capsys) -> None:
    import glob
    import tempfile

    pattern = f"{tempfile.gettempdir()}/parcelrisk-monitor-report-*"
    before = set(glob.glob(pattern))
    code, out, err = run_cli(capsys, *_args(monitored, "quiet"))
    assert code == 0, err
    summary = json.loads(out)
    assert summary["alerts"] == []
    assert summary["lanes"]["refit"]["decisions"] == 600
    # the line a cron job reads names what was not judged ("0 alert(s)" alone read healthy)
    unjudged = [k for k, v in summary.items() if isinstance(v, dict) and v.get("judged") is False]
    assert unjudged, "the quiet period has a section too small to judge"
    assert "0 alert(s); NOT JUDGED: " + unjudged[0] in err
    assert summary[unjudged[0]]["not_judged"] in err
    # without --report the files go to the run only: no temporary directory left behind
    assert set(glob.glob(pattern)) == before and "report /" not in err
    assert summary["not_judged"] and err.count("NOT JUDGED") == 1


def test_quiet_prints_the_verdict_line_alone_for_a_cron_mail(monitored, capsys) -> None:
    code, out, err = run_cli(capsys, *_args(monitored, "alerting", "--quiet"))
    assert code == 1 and out == ""
    verdict = err.strip().splitlines()[-1]
    assert "score_drift" in verdict.split(";")[0]  # the kinds that fired, first
    assert "logged to run" in verdict


def test_a_person_acknowledges_a_period_s_alerts_and_the_next_run_is_quiet(
    monitored, capsys, tmp_path
) -> None:
    acks = tmp_path / "acknowledged.yaml"
    with_acks = ("--acknowledged", str(acks), "--quiet")
    code, _, err = run_cli(capsys, *_args(monitored, "alerting", *with_acks))
    assert code == 1 and "score_drift" in err
    # no reason, no acknowledgement: one line, nothing written
    code, _, err = run_cli(
        capsys, *_args(monitored, "alerting", *with_acks, "--acknowledge-until", "2099-01-01")
    )
    assert code == 2 and "needs --reason" in err and not acks.exists()
    code, _, err = run_cli(
        capsys,
        *_args(monitored, "alerting", *with_acks, "--only", "score_drift:nothing",
               "--acknowledge-until", "2099-01-01", "--reason", "r"),
    )  # fmt: skip
    assert code == 2 and "no such alert in this period" in err and not acks.exists()
    for bad, said in ((("--only", "score_drift"), "write KIND:SUBJECT"),
                      (("--acknowledge-until", "soon"), "--acknowledge-until")):  # fmt: skip
        args = ("--acknowledge-until", "2099-01-01", "--reason", "r", *bad)
        code, _, err = run_cli(capsys, *_args(monitored, "alerting", *with_acks, *args))
        assert code == 2 and said in err and not acks.exists(), err
    code, _, err = run_cli(
        capsys,
        *_args(monitored, "alerting", *with_acks, "--acknowledge-until", "2099-01-01",
               "--reason", "a test store: every shift is expected"),
    )  # fmt: skip
    assert code == 0, err
    written = yaml.safe_load(acks.read_text())
    assert {a["kind"] for a in written} >= {"score_drift"}
    assert all(a["until"] == "2099-01-01" and a["by"] for a in written)
    # the next run reads them: the same alerts, at the same level, page no more
    code, out, err = run_cli(capsys, *_args(monitored, "alerting", "--acknowledged", str(acks)))
    summary = json.loads(out)
    assert code == 0 and summary["alerts"] == [], summary["alerts"]
    assert len(summary["acknowledged"]) == len(written)
    assert f"0 alert(s); {len(written)} acknowledged at their level" in err


def test_a_malformed_acknowledgements_file_is_one_line_and_exit_2(
    monitored, capsys, tmp_path
) -> None:
    acks = tmp_path / "acknowledged.yaml"
    acks.write_text("- {kind: score_drift, subject: risk, value: 9}\n")
    code, out, err = run_cli(capsys, *_args(monitored, "alerting", "--acknowledged", str(acks)))
    assert code == 2 and out == ""
    assert err.strip() == f"error: {acks}: acknowledgement 1: missing until, reason"


def test_a_since_in_the_future_says_so(monitored, capsys) -> None:
    args = _args(monitored, "quiet")
    args[args.index("--since") + 1] = "2099-01-01"
    del args[args.index("--until") : args.index("--until") + 2]
    code, _, err = run_cli(capsys, *args)
    assert code == 2 and "--since 2099-01-01 is not in the past" in err and "None" not in err


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"--since": "yesterday"}, "--since 'yesterday': not a date"),
        ({"--until": "2020-01-01"}, "is not after --since"),
        ({"--since": "2020-01-01", "--until": "2020-01-02"}, "no decisions declared in"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(monitored, capsys, change, message) -> None:
    args = _args(monitored, "quiet")
    for option, value in change.items():
        args[args.index(option) + 1] = value
    code, out, err = run_cli(capsys, *args)
    assert code == 2 and out == ""
    assert err.startswith("error: ") and message in err and len(err.strip().splitlines()) == 1


def test_a_missing_store_is_one_line_and_exit_2(monitored, capsys, tmp_path) -> None:
    missing = tmp_path / "nope.db"
    args = _args(monitored, "quiet")
    args[args.index("--db") + 1] = str(missing)
    code, _, err = run_cli(capsys, *args)
    assert code == 2 and err.strip() == f"error: decision store {missing}: no such file"
    assert not missing.exists()


def test_no_champion_is_one_line_and_exit_2(monitored, capsys, tmp_path) -> None:
    from models.registry import registry_client

    args = _args(monitored, "quiet")
    missing = f"sqlite:///{tmp_path / 'missing.db'}"
    args[args.index("--tracking-uri") + 1] = missing
    code, _, err = run_cli(capsys, *args)  # a typo is named, not made into an empty store
    assert code == 2 and f"error: the MLflow tracking store {missing} does not exist" in err
    assert not (tmp_path / "missing.db").exists()
    empty = f"sqlite:///{tmp_path / 'empty.db'}"
    registry_client(empty).search_registered_models()  # a store with no model in it
    args[args.index("--tracking-uri") + 1] = empty
    code, _, err = run_cli(capsys, *args)
    assert code == 2 and "error: no model 'parcel-risk'@champion" in err


def test_a_report_place_it_cannot_write_is_one_line_before_any_work(
    monitored, capsys, tmp_path
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    code, out, err = run_cli(capsys, *_args(monitored, "quiet", "--report", str(blocker / "r")))
    assert code == 2 and "--report" in err and "cannot create it" in err
    assert out == "" and "Traceback" not in err


def test_a_period_straddling_a_promotion_knows_the_previous_champions_targets(
    monkeypatch,
) -> None:
    """After a promotion, the decisions laned with the previous champion's cut-offs were
    "unknown thresholds", and a period holding them could not be judged (probe)."""
    from types import SimpleNamespace

    from mlflow.exceptions import MlflowException

    import serving.monitor.data as data

    runs = {"1": "run-one", "2": "run-two"}

    class Client:
        def get_model_version(self, name, version):
            if version not in runs:
                raise MlflowException("no such version")
            return SimpleNamespace(run_id=runs[version])

    held = {"run-one": {"aaa": (0.01, 0.04)}, "run-two": {"bbb": (0.02, 0.05)}}
    monkeypatch.setattr(data, "read_lane_targets", lambda client, run_id: held[run_id])
    targets = data.lane_targets_of_versions(
        Client(),
        "parcel-risk",
        {("parcel-risk", "1"), ("parcel-risk", "9"), ("other-model", "2")},
    )
    assert targets == {"aaa": (0.01, 0.04)}


# --- the feed check `lanes refit` runs first (a daily re-fit must not follow a broken feed) ---


def test_the_feed_check_names_features_gone_missing_or_off_their_categories() -> None:
    from serving.monitor.compute import check_feed

    rng = np.random.default_rng(11)
    champion, params = _reference_champion(rng), MonitorParams(min_drift_rows=100)
    healthy = check_feed(_drift_frame(rng, 0), champion, INFO, params)
    assert healthy == {"rows": 1000, "checked": True, "broken": []}
    # a count shifted by a third of its range pages as drift, but is no broken feed
    assert check_feed(_drift_frame(rng, 30), champion, INFO, params)["broken"] == []
    frame = _drift_frame(rng, 0, stable=np.nan, origin=np.r_[np.full(600, 9.0), np.zeros(400)])
    broken = check_feed(frame, champion, INFO, params)["broken"]
    assert [b["feature"] for b in broken] == ["stable", "origin"]
    assert broken[0]["moved"] == "missing in 100% of decisions (reference 0%)"
    assert broken[1]["moved"].startswith("60% of decisions hold a value outside")
    # too few comparable decisions: not checked, and says why
    few = check_feed(_drift_frame(rng, 0, n=50), champion, INFO, params)
    assert not few["checked"] and "50 decisions" in few["not_checked"]
    assert not check_feed(_drift_frame(rng, 0), _champion(), INFO, params)["checked"]


def test_a_period_s_newest_decisions_alone_are_read_when_asked(monitored) -> None:
    """`lanes refit` checks the feed on the window's newest decisions only: a hub's week of
    feature vectors would not fit in memory, and shares need no more."""
    from serving.monitor.data import read_period

    stored = "%Y-%m-%dT%H:%M:%S.%fZ"
    frm = pd.Timestamp(monitored["day"], tz="UTC").strftime(stored)
    to = pd.Timestamp(monitored["next_day"], tz="UTC").strftime(stored)
    every = read_period(monitored["db"], frm, to)
    newest = read_period(monitored["db"], frm, to, newest=10)
    assert len(every) == 600 and len(newest) == 10
    # whose export each declaration came from, for a broken feed's alert
    assert every["operator_id"].notna().all() and every["operator_id"].nunique() > 1
    expected = every.sort_values(["declared_at"], ascending=False).head(10)
    # the period holds no ids (nothing computed names a decision): newest first, by time
    assert newest["declared_at"].tolist() == expected["declared_at"].tolist()


def test_a_long_period_is_read_in_chunks_with_a_sample_of_its_vectors(monitored, monkeypatch):
    """`monitor` on 300,000 decisions peaked at 1.7 GB, ~4.5 KB a decision (every row a Python
    tuple, every lane policy's JSON, every feature vector): rows come in chunks, the policy as
    its two numbers, and the vectors of every k-th decision beyond ``DRIFT_VECTORS``."""
    import serving.monitor.data as data
    from serving.monitor.data import read_period

    stored = "%Y-%m-%dT%H:%M:%S.%fZ"
    frm = pd.Timestamp(monitored["day"], tz="UTC").strftime(stored)
    to = pd.Timestamp(monitored["next_day"], tz="UTC").strftime(stored)
    whole = read_period(monitored["db"], frm, to)
    monkeypatch.setattr(data, "_CHUNK_ROWS", 64)  # 600 rows in 10 chunks: the same frame
    chunked = read_period(monitored["db"], frm, to)
    pd.testing.assert_frame_equal(chunked, whole)
    assert "lane_policy" not in whole
    assert whole["exploration_rate"].notna().all() and whole["aeo_risk_discount"].notna().all()
    sampled = read_period(monitored["db"], frm, to, vectors_at_most=100)
    assert len(sampled) == 600 and sampled["features"].notna().sum() in range(90, 111)
    same = sampled["features"].notna()
    assert sampled.loc[same, "features"].equals(whole.loc[same, "features"])
    pd.testing.assert_frame_equal(sampled.drop(columns="features"), whole.drop(columns="features"))
