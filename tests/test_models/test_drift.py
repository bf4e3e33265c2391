"""PSI and KS against hand-computed values; the training reference built, saved and loaded."""

from __future__ import annotations

import math

import numpy as np
import pytest

from features.pipeline.manifest import FeatureManifest, FeatureSpec
from models.drift import (
    ks_against_percentiles,
    measure_drift,
    population_stability_index,
    reference_cdf,
)
from models.reference import (
    ModelReference,
    bin_shares,
    build_reference,
    describe_values,
)


def test_psi_matches_the_formula_by_hand() -> None:
    # (0.3-0.5)ln(0.3/0.5) + (0.7-0.5)ln(0.7/0.5)
    # = -0.2 * -0.5108256 + 0.2 * 0.3364722 = 0.1021651 + 0.0672944 = 0.1694596
    assert population_stability_index([0.5, 0.5], [0.3, 0.7]) == pytest.approx(0.1694596, abs=1e-6)


def test_psi_is_zero_for_the_same_shares() -> None:
    assert population_stability_index([0.2, 0.3, 0.5], [0.2, 0.3, 0.5]) == 0.0


def test_psi_floors_an_empty_bin_at_epsilon() -> None:
    # live bin 2 is empty: floored at 1e-4.
    # (0.9-0.8)ln(0.9/0.8) + (1e-4-0.2)ln(1e-4/0.2)
    # = 0.1 * 0.1177830 + (-0.1999) * (-7.6009025) = 0.0117783 + 1.5194204 = 1.5311987
    got = population_stability_index([0.8, 0.2], [0.9, 0.0], eps=1e-4)
    assert got == pytest.approx(1.5311987, abs=1e-6)
    assert math.isfinite(got)


def test_psi_refuses_bins_that_do_not_line_up() -> None:
    with pytest.raises(ValueError):
        population_stability_index([0.5, 0.5], [0.2, 0.3, 0.5])


def test_reference_cdf_is_linear_between_percentiles() -> None:
    p = np.linspace(0, 100, 101)  # the percentiles of a uniform on [0, 100]: F(x) = x / 100
    assert reference_cdf(p, np.array([-1.0, 0.0, 25.5, 100.0, 101.0])) == pytest.approx(
        [0.0, 0.0, 0.255, 1.0, 1.0]
    )


def test_ks_matches_the_statistic_by_hand() -> None:
    # reference: uniform on [0, 100] (F(x) = x/100); sample 10, 20, 90 (n = 3)
    # i/n - F: 1/3-0.1 = 0.2333, 2/3-0.2 = 0.4667, 1-0.9 = 0.1
    # F - (i-1)/n: 0.1-0 = 0.1, 0.2-1/3 < 0, 0.9-2/3 = 0.2333 -> D = 0.4667
    result = ks_against_percentiles(np.linspace(0, 100, 101), np.array([90.0, 10.0, 20.0, np.nan]))
    assert result.statistic == pytest.approx(0.4666667, abs=1e-6)
    assert result.n == 3
    # scipy's exact one-sample distribution: P(D_3 >= 0.4667) is far from significant
    assert result.p_value is not None and 0.1 < result.p_value < 1


def test_ks_of_a_sample_from_the_reference_is_small() -> None:
    rng = np.random.default_rng(0)
    p = np.percentile(rng.normal(size=50_000), np.linspace(0, 100, 101))
    same = ks_against_percentiles(p, rng.normal(size=2000))
    shifted = ks_against_percentiles(p, rng.normal(0.5, 1, size=2000))
    assert same.statistic < 0.04 and same.p_value > 0.01
    # Phi(0.25) - Phi(-0.25) = 0.197: the largest CDF gap of a 0.5 shift
    assert shifted.statistic == pytest.approx(0.197, abs=0.03) and shifted.p_value < 1e-6


def test_numeric_bins_are_deciles_with_ties_merged() -> None:
    values = np.array([0.0] * 60 + list(range(1, 41)) + [np.nan] * 25, dtype=float)
    ref = describe_values("count", values)
    assert ref.kind == "numeric"
    assert ref.missing_share == pytest.approx(25 / 125)
    # deciles 10..60 are all 0: one bin for the zeros, holding 60 of 125 rows
    assert ref.edges[0] == 0.0 and ref.shares[0] == pytest.approx(60 / 125)
    assert sum(ref.shares) == pytest.approx(1.0)
    assert ref.shares[-1] == pytest.approx(0.2)
    assert len(ref.percentiles) == 101


def test_discrete_bins_put_unseen_levels_in_other() -> None:
    ref = describe_values("origin", np.array([0, 0, 1, 2, 2, 2, np.nan, 1.0]), categorical=True)
    assert ref.kind == "discrete" and ref.edges == (0.0, 1.0, 2.0)
    # 0: 2/8, 1: 2/8, 2: 3/8, other: 0, missing: 1/8
    assert ref.shares == pytest.approx((0.25, 0.25, 0.375, 0.0, 0.125))
    live = bin_shares(ref, np.array([0, 5, 5, 2.0]))  # level 5 never seen: "other"
    assert live == pytest.approx([0.25, 0.0, 0.25, 0.5, 0.0])


def test_measure_drift_on_a_shifted_numeric_feature() -> None:
    rng = np.random.default_rng(1)
    ref = describe_values("x", rng.normal(size=20_000))
    steady = measure_drift(ref, rng.normal(size=5000))
    moved = measure_drift(ref, rng.normal(1.0, 1, size=5000))
    assert steady.psi < 0.02 and moved.psi > 0.25
    assert moved.ks is not None and moved.ks > 0.3


def _manifest() -> FeatureManifest:
    return FeatureManifest(
        (
            FeatureSpec("value", "g", "float", "d", "r"),
            FeatureSpec("flag", "g", "int", "d", "r"),
            FeatureSpec("origin", "g", "category", "d", "r", categories=("CN", "US", "TR")),
        )
    )


def test_build_reference_covers_every_feature_and_the_score() -> None:
    rng = np.random.default_rng(2)
    X = np.column_stack(
        [rng.lognormal(3, 1, 1000), rng.integers(0, 2, 1000), rng.integers(0, 3, 1000)]
    ).astype(float)
    risk = rng.uniform(0, 0.2, 1000)
    ref = build_reference(X, _manifest(), risk, risk * 50, {"name": "validation"})
    assert [f.name for f in ref.features] == ["value", "flag", "origin"]
    assert [f.kind for f in ref.features] == ["numeric", "discrete", "discrete"]
    assert ref.score.name == "risk" and ref.mean_risk == pytest.approx(risk.mean())
    assert ModelReference.from_dict(ref.to_dict()) == ref
    with pytest.raises(ValueError):
        build_reference(X[:, :2], _manifest(), risk, risk, {})


def test_the_reference_travels_with_the_bundle(tmp_path) -> None:
    import lightgbm as lgb

    from models.bundle import Calibration, LaneThresholds, RiskModel
    from models.reference import REFERENCE_FILE

    rng = np.random.default_rng(3)
    X = np.column_stack(
        [rng.normal(size=300), rng.integers(0, 2, 300), rng.integers(0, 3, 300)]
    ).astype(float)
    y = (X[:, 0] + rng.normal(size=300) > 1).astype(int)
    booster = lgb.train(
        {"objective": "binary", "verbose": -1, "num_leaves": 4}, lgb.Dataset(X, y), 5
    )
    thresholds = LaneThresholds("risk", 0.5, 0.3, 0.05, 0.1, "v1")
    model = RiskModel(_manifest(), booster, None, Calibration((-5.0, 5.0), (0.0, 1.0)), thresholds)
    old = RiskModel.load(model.save(tmp_path / "old"))
    assert old.reference is None and not (tmp_path / "old" / REFERENCE_FILE).exists()
    risk = model.risk(X)
    model.reference = build_reference(X, _manifest(), risk, risk, {"name": "validation"})
    loaded = RiskModel.load(model.save(tmp_path / "new"))
    assert loaded.reference == model.reference
    # a reused directory loses a reference its new model does not have
    model.reference = None
    assert RiskModel.load(model.save(tmp_path / "new")).reference is None
