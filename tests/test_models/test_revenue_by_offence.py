"""Revenue given illicit as a mixture over offence types: fitted when the history records types,
pooled (and saying why) when it does not; serving gets one booster that reproduces the mixture."""

from __future__ import annotations

import numpy as np
import pytest

from features.params import TrainParams
from models.labels import illicit_labels, labelled_mask
from models.split import split_boundaries
from models.train import (
    _fit_revenue,
    mixture_revenue,
    offence_kind_codes,
    train_models,
)
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


def test_history_with_offence_types_gets_the_mixture_distilled_for_serving(by_offence):
    model = by_offence.model
    info = model.metadata["revenue_by_offence"]
    assert info["kinds"] == ["prohibited", "undervaluation"] and info["kind_model_rounds"] > 0
    assert model.metadata["revenue_model"].startswith("fitted by offence type")
    for stage in ("first_pass", "deployed"):
        assert info["distilled"][stage]["fidelity_r2_log"] > 0.9
    # one booster per pass, reading the manifest's columns only: serving cost as pooled
    for booster in (model.revenue_booster, model.revenue_booster_eval):
        assert booster.num_model_per_iteration() == 1
        assert booster.num_feature() == len(model.manifest.names)


def test_each_kind_is_worth_what_its_offences_recovered(by_offence, typed):
    """Illicit postal parcels are worth the fine more, and the served revenue says so."""
    features = typed[0]
    model = by_offence.model
    found = features["revenue_recovered"].notna().to_numpy() & features["offence_type"].notna()
    postal = features["channel"].to_numpy() == 0
    predicted = model.revenue_if_illicit(model.manifest.matrix(features))
    recovered = features["revenue_recovered"].to_numpy()
    for group in (found & postal, found & ~postal):
        assert predicted[group].mean() == pytest.approx(recovered[group].mean(), rel=0.15)


def test_the_mixture_is_kind_probabilities_times_each_kinds_revenue(typed, monkeypatch):
    features, _, manifest = typed
    frame = features.sort_values("declared_at", ignore_index=True)
    parts = split_boundaries(frame["declared_at"], PARAMS.split).masks(frame["declared_at"])
    labelled, y = labelled_mask(frame), illicit_labels(frame)
    kinds, codes = offence_kind_codes(frame, labelled & (y == 1) & parts["train"])
    assert kinds == ("prohibited", "undervaluation")
    X = manifest.matrix(frame)
    revenue = frame["revenue_recovered"].to_numpy(np.float64, na_value=np.nan)
    fit, _ = _fit_revenue(PARAMS, X, y, revenue, labelled, parts, manifest, kinds, codes)
    rows = X[:40]
    p_kind = fit.offence.booster.predict(rows)
    np.testing.assert_allclose(p_kind.sum(axis=1), 1.0)
    by_kind = np.column_stack(
        [fit.revenue.booster.predict(np.column_stack([rows, np.full(40, k)])) for k in (0.0, 1.0)]
    )
    np.testing.assert_allclose(
        mixture_revenue(fit.revenue.booster, fit.offence.booster, rows),
        (p_kind * by_kind).sum(axis=1),
    )
    assert mixture_revenue(fit.revenue.booster, fit.offence.booster, rows[:0]).shape == (0,)
    whole = mixture_revenue(fit.revenue.booster, fit.offence.booster, rows)
    monkeypatch.setattr("models.train.MIXTURE_CHUNK_ROWS", 7)  # 40 rows: 6 chunks, one short
    np.testing.assert_array_equal(
        mixture_revenue(fit.revenue.booster, fit.offence.booster, rows), whole
    )
    postal = rows[:, manifest.names.index("channel")] == 0
    assert p_kind[postal, 0].min() > 0.5 > p_kind[~postal, 0].max()


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
    assert model.metadata["revenue_by_offence"] is None and model.revenue_booster is not None
    status = model.metadata["revenue_model"]
    assert status.startswith("fitted") and "by offence type" not in status
    if why:
        assert why in status
    X = model.manifest.matrix(features.head(20))
    assert (model.score(X)["expected_revenue"] >= 0).all()
