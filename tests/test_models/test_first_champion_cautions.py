"""A first champion is held to nothing it could be compared with, but what every later
challenger is held to (the calibration bound) and what measured it (biased calibration, a
handful of unbiased results) is said when it becomes champion (probe 29)."""

from __future__ import annotations

from types import SimpleNamespace

import yaml

from features.params import PromoteParams, load_settings
from models.cli import run_promotion, run_training
from models.promotion import _first_model_cautions
from tests.test_models.conftest import registry_world, write_features_dir

GATE = PromoteParams(max_calibration_error=0.05)


def _run(**metrics: float) -> SimpleNamespace:
    return SimpleNamespace(data=SimpleNamespace(metrics=metrics))


MEASURED = {"test_random.model.ece": 0.02, "test_random.illicit": 24, "test_random.parcels": 443}


def test_a_well_measured_first_champion_gets_no_caution():
    assert _first_model_cautions({"calibration_sample": "random"}, _run(**MEASURED), GATE) == []


def test_calibration_outside_the_bound_is_said_on_the_evaluation_that_judges():
    said = _first_model_cautions({}, _run(**{**MEASURED, "test_random.model.ece": 0.0583}), GATE)
    assert len(said) == 1
    assert "(test_random) is 0.0583, above promote.max_calibration_error 0.0500" in said[0]
    # with ground truth the truth's figure judges, as the gate's
    truth = {**MEASURED, "test_random.model.ece": 0.2, "test_all.model.ece": 0.01}
    assert _first_model_cautions({}, _run(**truth), GATE) == []
    # without params (an older caller) the bound is not checked
    assert _first_model_cautions({}, _run(**{**MEASURED, "test_random.model.ece": 0.3})) == []


def test_biased_calibration_and_a_handful_of_unbiased_results_are_said():
    few = {**MEASURED, "test_random.illicit": 1, "test_random.parcels": 34}
    said = _first_model_cautions({"calibration_sample": "labelled"}, _run(**few), GATE)
    assert len(said) == 2
    assert "calibrated on all labelled validation parcels" in said[0]
    assert "holds 1 illicit parcel(s) among 34" in said[1]


def test_promote_says_the_cautions_of_a_first_champion(frames, tmp_path):
    features, truth, manifest = frames
    full_dir = write_features_dir(tmp_path / "full", features, manifest)
    world = registry_world(tmp_path, truth)
    params = yaml.safe_load(world["params_path"].read_text())
    params["promote"]["max_calibration_error"] = 0.001  # below any real model's error
    world["params_path"].write_text(yaml.safe_dump(params))
    settings = load_settings(world["params_path"], must_exist=True)
    run_training(full_dir, settings=settings, tracking_uri=world["uri"], metrics_out=None)
    result = run_promotion(settings=settings, tracking_uri=world["uri"])
    assert result["outcome"] == "first"  # the service needs a champion: said, not refused
    assert any("above promote.max_calibration_error 0.0010" in r for r in result["reasons"])
