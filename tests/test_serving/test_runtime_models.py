"""The runtime serves what training now deploys: feature subsets and census models."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pytest

from features.errors import ParcelriskError
from features.intake.columns import declarations_frame
from features.intake.pseudonym import process_key_id
from features.params import FeatureParams, ServeParams, Settings
from features.pipeline.manifest import FeatureManifest
from serving.scoring import ScoringRuntime, load_runtime, score_frame
from tests.test_serving.conftest import MANIFEST, make_declarations, stub_features

# what a training run keeps when "weight" and "aeo" were constant on its training rows
USED = ("log_value", "unit_value", "quantity", "origin")


@pytest.fixture(scope="module")
def subset_model(tmp_path_factory):
    """A model on a subset of MANIFEST, saved and loaded as a bundle."""
    import lightgbm as lgb

    from models.bundle import Calibration, LaneThresholds, RiskModel

    manifest = MANIFEST.select(USED)
    frame = stub_features(declarations_frame(make_declarations(2000, seed=5, prefix="T")))[0].frame
    X = manifest.matrix(frame)
    y = (np.random.default_rng(2).random(len(X)) < 0.2 + 0.3 * (X[:, 0] > 3)).astype(int)
    booster = lgb.train(
        {"objective": "binary", "num_leaves": 7, "verbose": -1, "seed": 1},
        lgb.Dataset(X, y, feature_name=manifest.names, categorical_feature=[3]),
        num_boost_round=20,
    )
    raw = booster.predict(X, raw_score=True)
    calibration = Calibration((raw.min() - 20, raw.max() + 20), (0.01, 0.99))
    thresholds = LaneThresholds("risk", 0.9, 0.5, 0.01, 0.04, "thr-subset")
    metadata = {
        "entity_state_fingerprint": "state-fp",
        "feature_manifest_fingerprint": MANIFEST.fingerprint,
        "inspection_census": True,
    }
    model = RiskModel(manifest, booster, None, calibration, thresholds, metadata)
    return RiskModel.load(model.save(tmp_path_factory.mktemp("subset") / "bundle"))


@dataclass
class StubState:
    """What load_runtime reads of an entity-state snapshot."""

    fingerprint: str
    manifest: FeatureManifest
    contract: None = None
    params: FeatureParams = field(default_factory=FeatureParams)
    cutoff_us: int = 0  # the live state (features.pipeline.live) starts from these
    held_before_us: int = 0
    last_declared_ids: tuple[str, ...] = ()
    late_entry_from_us: int = 0
    pending_results: tuple = ()  # the history's results recorded after the cutoff
    parts: dict = field(default_factory=dict)
    families: list = field(default_factory=list)
    # built under this process's key, as features build records it
    pseudonym_key_id: str | None = field(default_factory=process_key_id)
    extras_read: tuple[str, ...] | None = None  # set by load_runtime (no contract: none)
    features_inputs: dict = field(default_factory=dict)  # set by load_runtime

    def read_by(self, features) -> tuple[str, ...]:
        return ()

    def inputs_of(self, features) -> dict[str, tuple[str, ...]]:
        return {}


def _load(monkeypatch, model, state: StubState, config: ServeParams) -> ScoringRuntime:
    import features.pipeline.snapshot
    import models.registry

    info = {"name": "parcel-risk", "version": "7", "run_id": "r"}
    monkeypatch.setattr(
        models.registry, "load_champion", lambda *a, **k: (model, Path("state"), info)
    )
    monkeypatch.setattr(
        features.pipeline.snapshot.EntityState, "load", staticmethod(lambda d: state)
    )
    return load_runtime(Settings(serve=config), None, Path("unused"))


def test_census_model_turns_exploration_off(monkeypatch, subset_model, caplog):
    config = ServeParams(exploration_rate=0.05, exploration_seed=7)
    with caplog.at_level(logging.INFO, logger="serving.scoring"):
        runtime = _load(monkeypatch, subset_model, StubState("state-fp", MANIFEST), config)
    assert runtime.config.exploration_rate == 0.0
    assert runtime.config.exploration_seed == 7  # the rest of the policy is kept
    assert any("census" in r.getMessage() for r in caplog.records)


def test_selected_history_model_keeps_exploration(monkeypatch, subset_model):
    model = replace(subset_model, metadata={**subset_model.metadata, "inspection_census": False})
    config = ServeParams(exploration_rate=0.05)
    runtime = _load(monkeypatch, model, StubState("state-fp", MANIFEST), config)
    assert runtime.config.exploration_rate == 0.05


@pytest.mark.parametrize(
    ("rate", "warned"), [(0.01, True), (0.022, True), (0.024, False), (0.025, False), (0.05, False)]
)
def test_an_exploration_rate_below_the_historys_is_warned_about(
    monkeypatch, subset_model, caplog, rate, warned
):
    metadata = {
        **subset_model.metadata,
        "inspection_census": False,
        "history_exploration_rate": 0.025,
    }
    model = replace(subset_model, metadata=metadata)
    with caplog.at_level(logging.WARNING, logger="serving.scoring"):
        runtime = _load(
            monkeypatch, model, StubState("state-fp", MANIFEST), ServeParams(exploration_rate=rate)
        )
    assert runtime.config.exploration_rate == rate  # a warning, not a change of policy
    assert any("below the 0.025 random quota" in r.getMessage() for r in caplog.records) == warned


def test_snapshot_must_match_the_manifest_the_features_were_built_with(monkeypatch, subset_model):
    config = ServeParams()
    with pytest.raises(ParcelriskError, match="feature manifest of the entity state"):
        # the model's own (subset) manifest is not what the snapshot computes
        _load(monkeypatch, subset_model, StubState("state-fp", subset_model.manifest), config)


def test_subset_model_scores_from_the_full_feature_arrays(subset_model):
    config = ServeParams(exploration_rate=0.0)
    runtime = ScoringRuntime(subset_model, stub_features, "parcel-risk", "7", config)
    declarations = declarations_frame(make_declarations(40, seed=3))
    batch = score_frame(declarations, runtime, reasons_for_all=True)
    assert batch.X.shape == (40, len(USED))
    features, _ = stub_features(declarations)
    expected = subset_model.score(subset_model.manifest.matrix(features.frame))
    np.testing.assert_array_equal(batch.scores["risk"], expected["risk"])
    assert all(r.feature in USED for reasons in batch.reasons for r in reasons)
