"""Revenue given illicit as a mixture over offence types: fitted when the history records types,
pooled (and saying why) when it does not, and the mixture is what scoring returns."""

from __future__ import annotations

import numpy as np
import pytest

from features.params import TrainParams
from models.bundle import OFFENCE_MODEL_FILE, RiskModel, revenue_if_illicit
from models.train import train_models
from tests.test_models.conftest import TRAIN_SECTION

pytestmark = pytest.mark.xdist_group("models_train")
PARAMS = TrainParams.from_dict(TRAIN_SECTION)


FINE = 150.0


@pytest.fixture(scope="module")
def typed(frames):
    """The toy stream with two offence types: illicit postal parcels (channel 0) are prohibited
    goods and carry a fine on top of the duty, the others undervaluation."""
    features, truth, manifest = frames
    found = features["offence_type"].notna().to_numpy()
    prohibited = found & (features["channel"].to_numpy() == 0)
    features = features.assign(
        offence_type=features["offence_type"].where(~prohibited, "prohibited"),
        revenue_recovered=features["revenue_recovered"] + np.where(prohibited, FINE, 0.0),
    )
    return features, truth, manifest


@pytest.fixture(scope="module")
def by_offence(typed):
    features, truth, manifest = typed
    return train_models(features, manifest, PARAMS, truth)


def test_history_with_offence_types_gets_a_kind_model(by_offence):
    model = by_offence.model
    assert model.offence_booster is not None and model.offence_booster_eval is not None
    assert model.offence_kinds == ("prohibited", "undervaluation")
    assert model.offence_booster.num_model_per_iteration() == len(model.offence_kinds)
    assert model.metadata["revenue_model"].startswith("fitted by offence type")
    assert model.metadata["offence_kinds"] == list(model.offence_kinds)
    # the deployed kind model is the first pass's refit with the same rounds
    rounds = model.metadata["offence_best_iteration"]
    assert model.offence_booster.current_iteration() == rounds
    assert model.evaluation_model().offence_booster is model.offence_booster_eval


def test_expected_revenue_is_the_kind_probabilities_times_each_kinds_revenue(by_offence, typed):
    model = by_offence.model
    X = model.manifest.matrix(typed[0].head(50))
    p_kind = model.offence_booster.predict(X)
    assert p_kind.shape == (50, len(model.offence_kinds))
    np.testing.assert_allclose(p_kind.sum(axis=1), 1.0)
    by_kind = np.column_stack(
        [
            model.revenue_booster.predict(np.column_stack([X, np.full(len(X), float(k))]))
            for k in range(len(model.offence_kinds))
        ]
    )
    np.testing.assert_allclose(model.revenue_if_illicit(X), (p_kind * by_kind).sum(axis=1))
    scores = model.score(X)
    np.testing.assert_allclose(
        scores["expected_revenue"], scores["risk"] * (p_kind * by_kind).sum(1)
    )
    assert revenue_if_illicit(model.revenue_booster, X[:0], model.offence_booster).shape == (0,)


def test_the_kind_model_travels_with_the_bundle(by_offence, typed, tmp_path):
    X = by_offence.model.manifest.matrix(typed[0].head(300))
    directory = by_offence.model.save(tmp_path / "bundle")
    assert (directory / OFFENCE_MODEL_FILE).exists()
    loaded = RiskModel.load(directory)
    assert loaded.offence_kinds == by_offence.model.offence_kinds
    np.testing.assert_array_equal(
        loaded.score(X)["expected_revenue"], by_offence.model.score(X)["expected_revenue"]
    )
    # a pooled model saved into the same directory leaves no kind model behind
    pooled = by_offence.model.__class__(
        **{**by_offence.model.__dict__, "offence_booster": None, "offence_booster_eval": None}
    )
    pooled.save(directory)
    assert not (directory / OFFENCE_MODEL_FILE).exists()
    assert RiskModel.load(directory).offence_booster is None


def test_each_kind_is_worth_what_its_offences_recovered(by_offence, typed):
    """Illicit postal parcels are worth the fine more: the mixture puts them there, and the
    kind model knows which parcels would be prohibited goods."""
    features = typed[0]
    model = by_offence.model
    found = features["revenue_recovered"].notna().to_numpy() & features["offence_type"].notna()
    postal = features["channel"].to_numpy() == 0
    X = model.manifest.matrix(features)
    predicted = model.revenue_if_illicit(X)
    recovered = features["revenue_recovered"].to_numpy()
    for group in (found & postal, found & ~postal):
        assert predicted[group].mean() == pytest.approx(recovered[group].mean(), rel=0.15)
    p_prohibited = model.offence_booster.predict(X)[:, 0]
    assert p_prohibited[postal].mean() > 0.9 > 0.1 > p_prohibited[~postal].mean()


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"params": {"revenue_by_offence": False}}, None),
        ({"drop_types": True}, "the history records no offence types"),
        ({"one_type": True}, "one offence type only"),
    ],
)
def test_pooled_revenue_model_when_types_are_off_absent_or_single(typed, change, why):
    features, truth, manifest = typed
    if change.get("drop_types"):
        features = features.drop(columns=["offence_type"])
    if change.get("one_type"):
        features = features.assign(
            offence_type=features["offence_type"].where(features["offence_type"].isna(), "x")
        )
    params = PARAMS.replace(**change.get("params", {}))
    model = train_models(features, manifest, params, truth).model
    assert model.offence_booster is None and model.offence_kinds == ()
    assert model.revenue_booster is not None
    status = model.metadata["revenue_model"]
    assert status.startswith("fitted") and "by offence type" not in status
    if why:
        assert why in status
    X = model.manifest.matrix(features.head(20))
    assert (model.score(X)["expected_revenue"] >= 0).all()
