"""Real administrations' exports: every parcel inspected, no revenue, constant features."""

from __future__ import annotations

import logging
import math

import numpy as np
import pandas as pd
import pytest

from features.errors import ParcelriskError
from features.params import TrainParams
from features.pipeline.manifest import FeatureManifest
from models.labels import unbiased_mask
from models.train import train_models
from tests.test_models.conftest import CENSUS_EXTRA_FEATURES, TRAIN_SECTION

pytestmark = pytest.mark.xdist_group("models_census")
PARAMS = TrainParams.from_dict(TRAIN_SECTION)
NO_REVENUE = (
    "no revenue data: revenue_recovered is empty for all {n} illicit parcels with results "
    "recorded before the test period; revenue model and revenue metrics skipped, lanes rank "
    "on risk"
)


@pytest.fixture(scope="module")
def census(census_frames, caplog_module):
    features, _, manifest = census_frames
    return train_models(features, manifest, PARAMS)


@pytest.fixture(scope="module")
def caplog_module():
    """Log records of the module's census training (caplog is function-scoped)."""
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler, logger = Keep(level=logging.INFO), logging.getLogger("models.train")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield records
    logger.removeHandler(handler)
    logger.setLevel(level)


# --- the unbiased sample ----------------------------------------------------------------------


def _outcomes(inspected, illicit, reason) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "inspected": inspected,
            "illicit": pd.array(illicit, dtype="boolean"),
            "selection_reason": pd.Series(reason, dtype="str"),
        }
    )


@pytest.mark.parametrize(
    ("inspected", "illicit", "reason", "mask", "kind"),
    [
        # random exploration wins wherever it exists
        ([1, 1, 0], [1, 0, None], ["random", "rule:x", None], [1, 0, 0], "random"),
        ([1, 1, 1], [1, 0, 0], ["random", None, None], [1, 0, 0], "random"),
        # everything inspected with a result: a census, all of it unbiased
        ([1, 1, 1], [1, 0, 0], [None, None, None], [1, 1, 1], "census"),
        # inspected but one result missing: not a census
        ([1, 1, 1], [1, 0, None], [None, None, None], [0, 0, 0], "none"),
        ([1, 1, 0], [1, 0, None], ["rule:x", "rule:y", None], [0, 0, 0], "none"),
        ([], [], [], [], "none"),
    ],
)
def test_unbiased_mask(inspected, illicit, reason, mask, kind):
    got, got_kind = unbiased_mask(_outcomes(np.array(inspected, bool), illicit, reason))
    assert got.tolist() == [bool(m) for m in mask] and got_kind == kind


# --- census training --------------------------------------------------------------------------


def test_census_is_evaluated_and_calibrated_on_every_parcel(census):
    assert census.info["unbiased_sample"] == "census"
    assert census.info["test_random_parcels"] == census.info["test_parcels"]
    assert census.model.metadata["calibration_sample"] == "census"
    assert census.model.metadata["inspection_census"] is True
    assert census.metrics["test_random.model.roc_auc"] > 0.65


def test_census_has_no_legacy_baseline_and_says_why(census):
    assert not any(".legacy." in k for k in census.metrics)
    assert census.info["not_applicable"]["test_random.legacy.*"] == (
        "every parcel inspected: no legacy selection to compare"
    )


def test_metrics_hold_only_finite_numbers(census):
    assert census.metrics and all(math.isfinite(v) for v in census.metrics.values())


def test_selected_history_is_not_a_census(frames):
    features = frames[0]
    assert unbiased_mask(features)[1] == "random"
    no_random = features.assign(
        selection_reason=features["selection_reason"].where(
            features["selection_reason"] != "random", "rule:low_value"
        )
    )
    assert unbiased_mask(no_random)[1] == "none"


# --- no revenue data --------------------------------------------------------------------------


def test_no_revenue_skips_the_model_with_one_accurate_message(census, census_frames, caplog_module):
    features = census_frames[0]
    known = features["inspected_at"] < census.boundaries.test_start  # what the first pass learns
    n_illicit = int(features.loc[known, "illicit"].sum())
    warnings = [r.getMessage() for r in caplog_module if r.levelno >= logging.WARNING]
    assert warnings.count(NO_REVENUE.format(n=n_illicit)) == 1
    assert not any("too few" in w for w in warnings)
    assert census.model.revenue_booster is None
    assert census.model.metadata["revenue_model"] == NO_REVENUE.format(n=n_illicit)


def test_no_revenue_metrics_are_left_out_not_nan(census):
    assert not any(".revenue_at_" in k for k in census.metrics)
    assert census.info["not_applicable"]["test_random.*.revenue_at_*"] == "no revenue data"
    assert "test_random.model.precision_at_5" in census.metrics


def test_some_revenue_but_too_little_says_the_counts(frames, caplog):
    features, _, manifest = frames
    illicit = features["illicit"].fillna(False).to_numpy(bool)
    keep = np.flatnonzero(illicit)[:30]  # 30 illicit parcels with revenue, all early
    revenue = np.full(len(features), np.nan)
    revenue[keep] = 10.0
    with caplog.at_level(logging.WARNING, logger="models.train"):
        result = train_models(features.assign(revenue_recovered=revenue), manifest, PARAMS)
    assert result.model.revenue_booster is None
    (message,) = [r.getMessage() for r in caplog.records if "revenue" in r.getMessage()]
    assert message.startswith("too little revenue data: 30 of ")
    assert "(need 50)" in message and "0 of " in message and "lanes rank on risk" in message


def test_revenue_objective_without_revenue_falls_back_to_risk(census_frames, caplog):
    features, _, manifest = census_frames
    params = TrainParams.from_dict({**TRAIN_SECTION, "objective": "revenue"})
    with caplog.at_level(logging.WARNING, logger="models.train"):
        result = train_models(features, manifest, params)
    assert result.model.thresholds.objective == "risk"
    assert result.info["objective_requested"] == "revenue"
    X = result.model.manifest.matrix(features.head(50))
    scores = result.model.score(X)
    np.testing.assert_array_equal(scores["priority"], scores["risk"])
    assert any("lanes rank on risk" in r.getMessage() for r in caplog.records)


# --- constant and empty features --------------------------------------------------------------


def test_constant_and_empty_features_are_dropped_with_one_line(
    census, census_frames, caplog_module
):
    _, _, manifest = census_frames
    assert census.model.manifest.names == [
        n for n in manifest.names if n not in CENSUS_EXTRA_FEATURES
    ]
    lines = [r.getMessage() for r in caplog_module if "constant or empty" in r.getMessage()]
    assert lines == ["dropped 2 constant or empty feature(s): offence_words, seller_revenue_180d"]
    assert census.model.metadata["dropped_features"] == list(CENSUS_EXTRA_FEATURES)
    assert census.model.metadata["feature_manifest_fingerprint"] == manifest.fingerprint
    assert census.model.manifest.fingerprint != manifest.fingerprint
    assert census.test_matrix.shape[1] == len(census.model.manifest.names)


def test_dropped_model_scores_from_the_full_feature_arrays(census, census_frames):
    features, _, manifest = census_frames
    values = {n: features[n].to_numpy(np.float64) for n in manifest.names}
    X = census.model.manifest.matrix_of(values, len(features))
    np.testing.assert_array_equal(X, census.model.manifest.matrix(features))
    assert np.isfinite(census.model.score(X)["risk"]).all()


def test_partly_missing_feature_is_kept(frames):
    features, _, manifest = frames
    one_value = features.assign(noise_a=np.where(np.arange(len(features)) % 2, 1.0, np.nan))
    result = train_models(one_value, manifest, PARAMS)
    assert "noise_a" in result.model.manifest.names  # missing vs present can carry signal


def test_every_feature_constant_is_a_clear_error(frames):
    features, _, manifest = frames
    flat = features.assign(**{n: 1.0 for n in manifest.names})
    with pytest.raises(ParcelriskError, match="every feature is constant or empty"):
        train_models(flat, manifest, PARAMS)


def test_manifest_select_keeps_order_and_params(census_frames):
    manifest = census_frames[2]
    subset = manifest.select(["channel", "value_ratio"])
    assert subset.names == ["value_ratio", "channel"]
    assert subset.params == manifest.params
    assert subset.spec("channel") == manifest.spec("channel")
    assert FeatureManifest.from_json(subset.to_json()).fingerprint == subset.fingerprint
    with pytest.raises(ParcelriskError, match="not_a_feature"):
        manifest.select(["value_ratio", "not_a_feature"])


def test_few_offence_labels_in_a_census_ask_for_history_not_exploration(census_frames, caplog):
    """Every parcel inspected: "raise serve.exploration_rate (this history's: 0.00%)" was no
    remedy at all."""
    features, _, manifest = census_frames
    with caplog.at_level(logging.WARNING, logger="models.train"):
        train_models(features, manifest, PARAMS.replace(min_offence_labels=10**6, refit=False))
    (line,) = [r.getMessage() for r in caplog.records if "few labels for" in r.getMessage()]
    assert "only a longer history brings more" in line
    assert "exploration_rate" not in line


def test_without_an_unbiased_sample_the_inspected_parcels_still_compare_scorers(frames):
    """The probe's Chinese export (results, no selection reason, not a census) trained and
    was promoted with no held-out number at all."""
    from models.cli import format_summary

    features, _, manifest = frames
    targeted = features.assign(
        selection_reason=features["selection_reason"].where(features["inspected"].isna(), "model")
    )
    result = train_models(targeted, manifest, PARAMS.replace(refit=False))
    metrics = result.metrics
    assert not any(k.startswith("test_random.model.") for k in metrics)
    assert 0.5 < metrics["test_inspected.model.roc_auc"] <= 1.0
    assert "test_inspected.random.roc_auc" in metrics and metrics["test_inspected.illicit"] > 0
    summary = format_summary(metrics, result.info)
    assert "inspected parcels of the test period" in summary and "biased" in summary
    assert any(line.strip().startswith("model") for line in summary.splitlines())
