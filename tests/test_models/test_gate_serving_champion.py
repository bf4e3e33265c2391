"""The gate judges the challenger against the model it would replace: the champion's deployed
(refit) boosters, which serve, when every compared parcel came after the champion's history;
its first pass only when the compared parcels include ones the refit was fitted on (probe 29:
the first pass lagged the served champion by as much as the gain that promoted a challenger)."""

from __future__ import annotations

import numpy as np

from models.cli import run_promotion, run_training
from models.evaluation import evaluate_holdout, score_model
from models.promotion import compare_versions
from models.registry import load_version, registry_client
from tests.test_models.conftest import registry_world, write_features_dir


def _world(frames, tmp_path, champion_days: float | None):
    """v1 champion on the history's first ``champion_days`` days (all of it: None), v2 on all."""
    features, truth, manifest = frames
    start = features["declared_at"].min()
    early = (
        features
        if champion_days is None
        else features.loc[features["declared_at"] < start + np.timedelta64(int(champion_days), "D")]
    )
    champion_dir = write_features_dir(tmp_path / "early", early.reset_index(drop=True), manifest)
    full_dir = write_features_dir(tmp_path / "full", features, manifest)
    world = registry_world(tmp_path, truth)
    settings, uri = world["settings"], world["uri"]
    common = {"tracking_uri": uri, "metrics_out": None, "ground_truth_path": world["truth_path"]}
    run_training(champion_dir, settings=settings, **common)
    assert run_promotion(settings=settings, tracking_uri=uri)["outcome"] == "first"
    run_training(full_dir, settings=settings, **common)
    return settings, uri, full_dir


def _judged(settings, uri):
    client = registry_client(uri)
    return client, compare_versions(client, settings.promote, champion="1", version="2")


def _champion_figures(client, tmp_path, full_dir, comparison, deployed: bool):
    """The champion's figures recomputed on the compared parcels with the boosters named."""
    import pandas as pd

    from models.evaluation import attach_truth
    from models.split import SplitBoundaries

    champion, _, _ = load_version(client, "parcel-risk", "1", tmp_path / "v1")
    challenger, _, _ = load_version(client, "parcel-risk", "2", tmp_path / "v2")
    start = SplitBoundaries.from_dict(challenger.metadata["split"]).test_start
    frame = pd.read_parquet(full_dir / "features.parquet")
    frame = frame.loc[frame["declared_at"] >= start].reset_index(drop=True)
    frame = attach_truth(frame, pd.read_parquet(tmp_path / "truth.parquet"))
    assert len(frame) == comparison.parcels
    model = champion if deployed else champion.evaluation_model()
    metrics, _ = evaluate_holdout(frame, {"model": score_model(model, frame)})
    return metrics


def test_a_champion_whose_history_ended_before_the_compared_parcels_is_judged_as_it_serves(
    frames, tmp_path
):
    settings, uri, full_dir = _world(frames, tmp_path, champion_days=40)
    client, comparison = _judged(settings, uri)
    said = " ".join(comparison.notes)
    assert "scored with its deployed (refit) boosters, which serve" in said
    served = _champion_figures(client, tmp_path, full_dir, comparison, deployed=True)
    first = _champion_figures(client, tmp_path, full_dir, comparison, deployed=False)
    key = "test_all.model.roc_auc"
    assert comparison.per_model["champion"][key] == served[key]
    assert served[key] != first[key]  # the two boosters rank these parcels differently


def test_a_champion_fitted_on_compared_parcels_is_judged_by_its_first_pass(frames, tmp_path):
    settings, uri, full_dir = _world(frames, tmp_path, champion_days=None)
    client, comparison = _judged(settings, uri)
    assert "scored with its first pass" in " ".join(comparison.notes)
    first = _champion_figures(client, tmp_path, full_dir, comparison, deployed=False)
    key = "test_all.model.roc_auc"
    assert comparison.per_model["champion"][key] == first[key]
