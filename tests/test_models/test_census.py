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
from models.evaluation import evaluate_holdout
from models.labels import CENSUS_DAY_MIN_PARCELS, census_mask, local_days, unbiased_mask
from models.promotion import Decision, _without_unbiased_labels
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
        ([1, 1, 0], [1, 0, None], ["random", "rule:x", None], [1, 0, 0], "random"),
        # everything inspected with a result: a census, all of it unbiased, the quota's too
        ([1, 1, 1], [1, 0, 0], [None, None, None], [1, 1, 1], "census"),
        ([1, 1, 1], [1, 0, 0], ["random", None, None], [1, 1, 1], "random+census"),
        # a census the administration declares, beside the quota; without a result it is no label
        (
            [1, 1, 1, 0],
            [1, 0, None, None],
            ["random", "census", "census", None],
            [1, 1, 0, 0],
            "random+census",
        ),
        ([1, 1, 0], [0, 1, None], ["census", "rule:x", None], [1, 0, 0], "census"),
        # inspected but one result missing: not a census
        ([1, 1, 1], [1, 0, None], [None, None, None], [0, 0, 0], "none"),
        ([1, 1, 0], [1, 0, None], ["rule:x", "rule:y", None], [0, 0, 0], "none"),
        ([], [], [], [], "none"),
    ],
)
def test_unbiased_mask(inspected, illicit, reason, mask, kind):
    got, got_kind = unbiased_mask(_outcomes(np.array(inspected, bool), illicit, reason))
    assert got.tolist() == [bool(m) for m in mask] and got_kind == kind


# --- census days ------------------------------------------------------------------------------


def _days(*days: tuple[int, int, str | None]) -> pd.DataFrame:
    """Parcels of consecutive days, each ``(parcels, inspected with a result, their reason)``,
    beside an ordinary day of 200 parcels, 5 of them the quota's."""
    rows = [(0, i < 5, "random" if i < 5 else None) for i in range(200)]
    for day, (n, inspected, reason) in enumerate(days, start=1):
        rows += [(day, i < inspected, reason if i < inspected else None) for i in range(n)]
    day, inspected, reason = (np.array(c, dtype=object) for c in zip(*rows, strict=True))
    frame = _outcomes(inspected.astype(bool), np.where(inspected.astype(bool), False, None), reason)
    frame["declared_at"] = pd.Timestamp("2026-09-01 03:00", tz="UTC") + pd.to_timedelta(
        day.astype(int) * 24 + np.linspace(0, 20, len(frame)) % 20, unit="h"
    )
    return frame


@pytest.mark.parametrize(
    ("day", "census"),
    [
        # a crackdown day, whatever its reason reads: every parcel inspected with a result
        ((80, 80, "crackdown"), 80),
        ((CENSUS_DAY_MIN_PARCELS, CENSUS_DAY_MIN_PARCELS, "rule:R07"), CENSUS_DAY_MIN_PARCELS),
        # too few parcels to tell a census from rules that picked them all
        ((CENSUS_DAY_MIN_PARCELS - 1, CENSUS_DAY_MIN_PARCELS - 1, "crackdown"), 0),
        # one parcel not inspected: the day was selected, not inspected whole
        ((80, 79, "crackdown"), 0),
    ],
)
def test_a_day_every_parcel_of_which_was_inspected_is_a_census(day, census):
    frame = _days(day)
    mask, kind = unbiased_mask(frame)
    assert int(census_mask(frame).sum()) == census
    assert int(mask.sum()) == 5 + census  # the ordinary day's quota, and the census day
    assert kind == ("random+census" if census else "random")


def test_a_census_day_without_every_result_is_not_one():
    frame = _days((80, 80, "crackdown"))
    frame.loc[len(frame) - 1, "illicit"] = pd.NA  # a result pending: it may not be random
    assert not census_mask(frame).any()


def test_days_are_local_days_as_the_features_read_them():
    """Bangkok (UTC+7): a parcel at 18:00 UTC was declared the next day there; the frame's
    ``day_of_week`` (built in features.timezone) says so, and a census day there is one day
    although it spans two UTC days."""
    at = pd.Timestamp("2026-09-24 17:00", tz="UTC") + pd.to_timedelta(
        np.linspace(0, 23.9, 120), unit="h"
    )  # 2026-09-25 00:00 to 23:54 in Bangkok, a Friday
    frame = _outcomes(np.ones(120, bool), [False] * 120, ["crackdown"] * 120)
    frame["declared_at"] = at
    neighbours = _outcomes(np.zeros(2, bool), [None, None], [None, None])
    neighbours["declared_at"] = [at[0] - pd.Timedelta("1h"), at[-1] + pd.Timedelta("1h")]
    frame = pd.concat([frame, neighbours], ignore_index=True)
    local = frame.assign(day_of_week=[4.0] * 120 + [3.0, 5.0])
    assert len(set(local_days(local)[:120])) == 1 and len(set(local_days(frame)[:120])) == 2
    assert census_mask(local).sum() == 120
    assert census_mask(frame).sum() == 0  # UTC days: each half has an uninspected neighbour


def test_the_holdout_is_measured_on_the_census_and_says_how_many():
    frame = _days((80, 80, "crackdown"), (100, 100, "census"), (120, 6, "rule:R07"))
    frame["revenue_recovered"] = np.nan
    scores = np.linspace(0, 1, len(frame))
    metrics, _ = evaluate_holdout(frame, {"model": {"risk": scores, "value": scores}})
    assert metrics["test_random.parcels"] == 5 + 80 + 100
    assert metrics["test_random.census_parcels"] == 180


def test_a_holdout_with_a_census_is_not_said_to_lack_unbiased_labels():
    decision = Decision(False, ["no comparable metric"], not_compared="no finite precision_at_5")
    frame = _days((80, 80, "crackdown")).assign(
        selection_reason=lambda f: f["selection_reason"].replace("random", "rule:x")
    )
    assert _without_unbiased_labels(decision, frame) == decision
    frame.loc[frame["selection_reason"] == "crackdown", "inspected"] = False
    frame.loc[frame["selection_reason"] == "crackdown", "illicit"] = pd.NA
    assert "no census" in _without_unbiased_labels(decision, frame).reasons[-1]


# --- a crackdown beside the quota -------------------------------------------------------------


@pytest.fixture(scope="module")
def crackdown(frames):
    """The quota's history with days 40-51 of its 60 inspected whole (a crackdown month: the
    end of validation and the start of the test period), results from the truth."""
    features, truth, manifest = frames
    day = (features["declared_at"] - pd.Timestamp("2026-01-01", tz="UTC")).dt.days.to_numpy()
    whole = (day >= 40) & (day < 52)
    illicit = truth["illicit"].to_numpy()
    features = features.assign(
        inspected=features["inspected"] | whole,
        inspected_at=features["inspected_at"].where(
            ~whole, features["declared_at"] + pd.Timedelta(days=2)
        ),
        illicit=features["illicit"].mask(whole, pd.array(illicit, dtype="boolean")),
        selection_reason=features["selection_reason"].mask(whole, "crackdown"),
    )
    return features, train_models(features, manifest, PARAMS.replace(refit=False)), whole


def test_a_crackdown_is_calibrated_on_and_evaluated_on(crackdown):
    features, result, whole = crackdown
    test = (features["declared_at"] >= result.boundaries.test_start).to_numpy()
    quota = (features["selection_reason"] == "random").to_numpy()
    assert result.model.metadata["calibration_sample"] == "random+census"
    assert result.model.metadata["calibration_census_parcels"] > 0
    assert result.metrics["test_random.census_parcels"] == (whole & test).sum()
    assert result.metrics["test_random.parcels"] == ((whole | quota) & test).sum()
    assert result.info["unbiased_sample"] == "random+census"
    assert result.info["census_labelled"]["history"] == whole.sum()
    assert result.info["census_labelled"]["train"] == 0


def test_a_crackdown_is_not_the_quota_nor_a_census_history(crackdown):
    features, result, whole = crackdown
    quota = (features["selection_reason"] == "random").to_numpy()
    assert result.model.metadata["history_exploration_rate"] == pytest.approx(
        (quota & ~whole).sum() / (~whole).sum(), abs=1e-6
    )
    assert result.model.metadata["inspection_census"] is False  # exploration stays on


def test_train_says_how_many_unbiased_labels_a_census_gave(crackdown):
    from models.cli import format_summary

    _, result, _ = crackdown
    text = format_summary(result.metrics, result.info)
    census = int(result.metrics["test_random.census_parcels"])
    assert f"random exploration, {census:,} census" in text
    (line,) = [line for line in text.splitlines() if line.startswith("census labels")]
    assert "train 0, validation" in line and "not the random quota" in line


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
