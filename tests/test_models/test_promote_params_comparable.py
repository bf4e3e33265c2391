"""The gate compares two models only on a holdout built with the feature params both were
trained with. Probe (2026-12): a challenger trained on features built with another prior and
de minimis was judged on its own features, where the champion's columns of the same names held
other quantities; the champion scored 0.22 instead of 0.67 and the worse model was promoted."""

from __future__ import annotations

import dataclasses

import pytest

from models.cli import run_promotion, run_training
from models.promotion import params_differences
from models.registry import alias_version, registry_client
from tests.test_models.conftest import registry_world, write_features_dir

PARAMS = {
    "prior_strength": 20.0,
    "de_minimis_eur": 150.0,
    "windows_days": [7, 30],
    "watchlist": "/srv/a/list.csv",
    "watchlist_sha256": "aa",
}


def test_a_param_that_changes_column_values_is_a_difference():
    other = {**PARAMS, "prior_strength": 0.0001, "de_minimis_eur": 1.0}
    assert params_differences(PARAMS, other) == [
        "de_minimis_eur 150.0 (model) vs 1.0 (history)",
        "prior_strength 20.0 (model) vs 0.0001 (history)",
    ]


def test_growing_a_list_that_only_adds_columns_is_no_difference():
    assert params_differences(PARAMS, {**PARAMS, "windows_days": [7, 30, 180]}) == []
    assert params_differences(PARAMS, {**PARAMS, "windows_days": [30]}) == [
        "windows_days [7, 30] (model) vs [30] (history)"
    ]


def test_a_list_file_compares_by_its_digest_not_its_place():
    moved = {**PARAMS, "watchlist": "/elsewhere/list.csv"}
    assert params_differences(PARAMS, moved) == []
    edited = {**PARAMS, "watchlist_sha256": "bb"}
    assert params_differences(PARAMS, edited) == ['watchlist_sha256 "aa" (model) vs "bb" (history)']


def test_a_new_param_unset_in_the_model_is_a_difference_and_old_models_compare_by_name():
    assert params_differences(PARAMS, {**PARAMS, "text_alpha": 0.5}) == [
        "text_alpha unset (model) vs 0.5 (history)"
    ]
    assert params_differences({}, PARAMS) == []  # a model from before params were recorded


def _two_versions(frames, root) -> dict:
    """v1 trained on features built with PARAMS (promoted first), v2 on the same parcels built
    with another prior (not judged yet): {settings, uri, ours, first}."""
    features, truth, manifest = frames
    ours = dataclasses.replace(manifest, params=PARAMS)
    theirs = dataclasses.replace(manifest, params={**PARAMS, "prior_strength": 0.0001})
    ours_dir = write_features_dir(root / "ours", features, ours)
    theirs_dir = write_features_dir(root / "theirs", features, theirs)
    world = registry_world(root, truth)
    settings, uri = world["settings"], world["uri"]
    common = {"settings": settings, "tracking_uri": uri, "metrics_out": None}
    run_training(ours_dir, ground_truth_path=world["truth_path"], **common)
    first = run_promotion(settings=settings, tracking_uri=uri)
    run_training(theirs_dir, ground_truth_path=world["truth_path"], **common)
    return {"settings": settings, "uri": uri, "ours": ours_dir, "first": first}


@pytest.fixture(scope="module")
def store(frames, tmp_path_factory):
    two = _two_versions(frames, tmp_path_factory.mktemp("promote_params"))
    settings, uri, ours_dir, first = two["settings"], two["uri"], two["ours"], two["first"]
    refused = run_promotion(settings=settings, tracking_uri=uri)
    # the same challenger judged on a holdout built with the champion's params compares
    compared = run_promotion(settings=settings, tracking_uri=uri, features_dir=ours_dir)
    champion = registry_client(uri).get_model_version_by_alias("parcel-risk", "champion")
    return {"first": first, "refused": refused, "compared": compared, "champion": champion}


def test_a_holdout_built_with_other_params_is_not_comparable(store):
    assert store["first"]["outcome"] == "first"
    refused = store["refused"]
    assert refused["outcome"] == "refused", refused
    reason = refused["reasons"][0]
    assert reason.startswith("not comparable: the features in ")
    assert "the champion (version 1)" in reason
    assert "prior_strength 20.0 (model) vs 0.0001 (history)" in reason
    assert "champion" not in {k.split(".")[0] for k in refused["metrics"]}  # not scored
    assert str(store["champion"].version) == "1"


def test_the_challenger_on_a_foreign_holdout_is_not_comparable_either(store):
    compared = store["compared"]
    assert compared["outcome"] == "refused", compared
    assert "the challenger (version 2)" in compared["reasons"][0]


@pytest.fixture(scope="module")
def two_builds(frames, tmp_path_factory):
    """An analyst changed the params: the champion is judged on the same parcels built with
    its own params (``--champion-features``), the challenger on its own."""
    features, _, manifest = frames
    root = tmp_path_factory.mktemp("promote_two_builds")
    two = _two_versions(frames, root)
    settings, uri, ours_dir = two["settings"], two["uri"], two["ours"]
    ours = dataclasses.replace(manifest, params=PARAMS)
    fewer_dir = write_features_dir(root / "fewer", features.iloc[:-50], ours)
    judged = run_promotion(
        settings=settings, tracking_uri=uri, champion_features_dir=ours_dir, force=False
    )
    return {"judged": judged, "uri": uri, "settings": settings, "fewer": fewer_dir}


def test_each_model_is_scored_on_its_own_build_of_the_same_parcels(two_builds):
    judged = two_builds["judged"]
    assert judged["comparison"] in ("test_all", "test_random"), judged
    assert not any(r.startswith("not comparable") for r in judged["reasons"]), judged
    # the same model on the same parcels scores the same on both builds: the figures compare
    metrics = judged["metrics"]
    key = f"{judged['comparison']}.model.precision_at_5"
    assert metrics[f"champion.{key}"] == pytest.approx(metrics[f"challenger.{key}"], abs=0.05)


def test_a_champion_build_of_other_parcels_is_refused_in_one_line(two_builds):
    from features.errors import ParcelriskError

    with pytest.raises(ParcelriskError, match="holds other parcels of the test period"):
        run_promotion(
            settings=two_builds["settings"],
            tracking_uri=two_builds["uri"],
            version="2",
            champion_features_dir=two_builds["fewer"],
        )


def test_a_family_added_since_the_model_was_trained_is_no_difference():
    older = {k: v for k, v in PARAMS.items() if not k.startswith("watchlist")}
    assert params_differences(older, {**PARAMS, "order_windows_hours": [24, 72]}) == []


@pytest.fixture(scope="module")
def rollback(frames, tmp_path_factory):
    """v1 first, v2 promoted or forced over it, then rolled back to v1 by force; then the
    scheduled plain `promote` runs again."""
    features, truth, manifest = frames
    root = tmp_path_factory.mktemp("promote_rollback")
    features_dir = write_features_dir(root / "f", features, manifest)
    world = registry_world(root, truth)
    settings, uri = world["settings"], world["uri"]
    common = {"settings": settings, "tracking_uri": uri, "metrics_out": None}
    run_training(features_dir, ground_truth_path=world["truth_path"], **common)
    run_promotion(settings=settings, tracking_uri=uri)
    run_training(features_dir, ground_truth_path=world["truth_path"], **common)
    run_promotion(settings=settings, tracking_uri=uri, force=True, reason="try v2")
    run_promotion(settings=settings, tracking_uri=uri, version="1", force=True, reason="drill")
    again = run_promotion(settings=settings, tracking_uri=uri)
    client = registry_client(uri)
    champion = str(client.get_model_version_by_alias("parcel-risk", "champion").version)
    return {"again": again, "champion": champion, "client": client}


def test_a_plain_promote_does_not_undo_a_rollback(rollback):
    again = rollback["again"]
    assert again["outcome"] == "unchanged", again
    assert "replaced by version 1" in again["reasons"][0]
    assert "--version 2" in again["reasons"][0]
    assert rollback["champion"] == "1"


def test_every_decision_is_kept_in_the_versions_history(rollback):
    from models.promotion import promotion_history

    client = rollback["client"]
    v1 = [
        (r["outcome"], r.get("force_reason")) for r in promotion_history(client, "parcel-risk", "1")
    ]
    assert v1 == [("first", None), ("replaced", None), ("forced", "drill")]
    v2 = [r["outcome"] for r in promotion_history(client, "parcel-risk", "2")]
    assert v2 == ["forced", "replaced"]
    assert all(
        r.get("by")
        for r in promotion_history(client, "parcel-risk", "1")
        if r["outcome"] != "replaced"
    )


def test_a_first_version_that_does_not_load_never_becomes_champion(frames, tmp_path):
    """A train killed after registering leaves a version without its bundle (probe,
    2026-12): the first-champion path loads it before crowning it."""
    import shutil
    from urllib.parse import urlparse

    from features.errors import ParcelriskError

    features, truth, manifest = frames
    features_dir = write_features_dir(tmp_path / "f", features, manifest)
    world = registry_world(tmp_path, truth)
    settings, uri = world["settings"], world["uri"]
    run_training(features_dir, settings=settings, tracking_uri=uri, metrics_out=None)
    client = registry_client(uri)
    run = client.get_run(client.get_model_version("parcel-risk", "1").run_id)
    shutil.rmtree(urlparse(run.info.artifact_uri).path + "/bundle")
    with pytest.raises(ParcelriskError, match="bundle"):
        run_promotion(settings=settings, tracking_uri=uri)
    assert alias_version(client, "parcel-risk", "champion") is None
