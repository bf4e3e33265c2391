"""The deployed (refit) revenue booster serves on the first pass's level, the one measured on
held-out parcels (probe 29: refit with the first pass's rounds on more rows, it served revenue
at stake 19% under the truth on the next days, the first pass level)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from features.params import TrainParams
from models.bundle import RiskModel
from models.train import revenue_level, train_models
from tests.test_models.conftest import TRAIN_SECTION

pytestmark = pytest.mark.xdist_group("models_train")
PARAMS = TrainParams.from_dict(TRAIN_SECTION)


@pytest.fixture(scope="module")
def trained(frames):
    features, truth, manifest = frames
    return features, train_models(features, manifest, PARAMS.replace(refit=True), truth)


def _weighted_levels(model: RiskModel, X: np.ndarray) -> tuple[float, float]:
    weight = model.risk(X)
    first = model.evaluation_model()
    return (
        float(np.dot(weight, model.revenue_if_illicit(X))),
        float(np.dot(weight, first.revenue_if_illicit(X) * 1.0)),
    )


def test_the_served_revenue_is_on_the_first_pass_level(trained):
    features, result = trained
    model = result.model
    scale = model.metadata["revenue_level"]
    assert model.revenue_scale == pytest.approx(scale, abs=1e-6) and scale != 1.0
    assert model.evaluation_model().revenue_scale == 1.0  # the level its metrics measured
    X = model.manifest.matrix(features)
    served, first = _weighted_levels(model, X)
    unscaled = served / scale
    # on the whole history (the level is fitted on a sample of it): within 3%, where the
    # refit booster alone was further off
    assert abs(served / first - 1) < 0.03
    assert abs(served / first - 1) < abs(unscaled / first - 1)
    # scored through the bundle as the service does: expected revenue = risk x the scaled one
    scores = model.score(X[:50])
    np.testing.assert_allclose(
        scores["expected_revenue"], scores["risk"] * model.revenue_if_illicit(X[:50])
    )


def test_the_level_survives_the_bundle_and_an_old_bundle_reads_as_one(trained, tmp_path):
    _, result = trained
    model = result.model
    saved = model.save(tmp_path / "bundle")
    again = RiskModel.load(saved)
    assert again.revenue_scale == model.revenue_scale
    assert again.evaluation_model().revenue_scale == 1.0
    payload = json.loads((saved / "bundle.json").read_text())
    del payload["revenue_scale"]  # a bundle written before the level was kept
    (saved / "bundle.json").write_text(json.dumps(payload))
    old = RiskModel.load(saved)
    assert old.revenue_scale == 1.0 and old.evaluation_model().revenue_scale == 1.0


def test_the_level_is_bounded_and_neutral_without_two_boosters(trained, caplog):
    features, result = trained
    model = result.model
    X = model.manifest.matrix(features)[:200]
    weight = np.ones(len(X))
    assert revenue_level(None, model.revenue_booster, X, weight) == 1.0
    booster = model.revenue_booster
    assert revenue_level(booster, booster, X, weight) == 1.0
    caplog.set_level("WARNING", logger="models.train")

    class Tenfold:  # a first pass ten times the refit's level: corrected by at most 2x
        def predict(self, rows):
            return 10 * booster.predict(rows)

    assert revenue_level(booster, Tenfold(), X, weight) == 2.0
    assert "corrected by at most 2.0x" in caplog.text
