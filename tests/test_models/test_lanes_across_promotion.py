"""Lane rates across a promotion (probe 13): a capacity decision taken with `lanes set` is carried
over to the new champion, fitted on its own training traffic quantiles, or said loudly to be
lost; a challenger refused while trained at other lane rates says the gate did not judge them."""

from __future__ import annotations

import json
from dataclasses import asdict, replace

import numpy as np
import pytest
import yaml

from features.params import load_settings
from models.cli import run_promotion, run_training
from models.lane_versions import (
    NOT_CARRIED_TAG,
    LanePolicy,
    apply_lane_handover,
    plan_lane_handover,
    rates_origin,
    read_lane_policy,
    thresholds_history,
    write_thresholds_version,
)
from models.registry import registry_client
from models.thresholds import (
    fit_from_quantiles,
    fit_lane_thresholds,
    lane_shares_from_quantiles,
    make_thresholds,
    traffic_quantiles,
)
from serving.lanes_cli import lane_history, set_lane_rates
from tests.test_models.conftest import REGISTRY_PARAMS, registry_world, write_features_dir
from tests.test_serving.conftest import run_cli

NAME = "parcel-risk"
SEED_PRIORITY = np.random.default_rng(0).uniform(size=5000)
QUANTILES = traffic_quantiles(SEED_PRIORITY, 1.0)
TRAINED = fit_lane_thresholds(SEED_PRIORITY, 0.01, 0.04, "risk", fitted_on="training")


# --- where the rates in force came from (pure) ------------------------------------------------


def _record(thresholds, **fields):
    return {**asdict(thresholds), "set_by": "analyst", "set_at": "2026-12-01T10:00", **fields}


TRAINING_RECORD = {**asdict(TRAINED), "set_at": "", "set_by": "training", "reason": "trained"}
SET_2 = make_thresholds("risk", 0.98, 0.93, 0.02, 0.05, fitted_on="store")
REFIT_2 = make_thresholds("risk", 0.97, 0.92, 0.02, 0.05, fitted_on="store, a week later")
SET_1 = make_thresholds("risk", 0.99, 0.95, 0.01, 0.04, fitted_on="store, later")


@pytest.mark.parametrize(
    ("history", "in_force", "kind", "reason"),
    [
        ([TRAINING_RECORD], TRAINED, "training", None),
        ([TRAINING_RECORD, _record(SET_2, reason="two more inspectors")], SET_2, "decision",
         "two more inspectors"),
        # a re-fit at the rates in force is not a decision of its own: the set that moved them is
        ([TRAINING_RECORD, _record(SET_2, reason="two more inspectors"),
          _record(REFIT_2, reason="re-fit", set_at="2026-12-08T00:00")], REFIT_2, "decision",
         "two more inspectors"),
        # set back to the trained rates: a decision still (the inspectors left again)
        ([TRAINING_RECORD, _record(SET_2, reason="two more"),
          _record(SET_1, reason="inspectors left", set_at="2026-12-09T00:00")], SET_1,
         "decision", "inspectors left"),
        # a record a promotion carried over names the decision it carries
        ([TRAINING_RECORD, _record(SET_2, reason="carried over",
                                   carried_from={"kind": "decision", "model_version": "1",
                                                 "reason": "two more inspectors"})], SET_2,
         "decision", "two more inspectors"),
    ],
)  # fmt: skip
def test_the_origin_of_the_rates_in_force_is_the_record_that_moved_them(
    history, in_force, kind, reason
):
    origin = rates_origin(history, in_force, TRAINED, "7")
    assert origin["kind"] == kind
    if reason is not None:
        assert origin["reason"] == reason


# --- what a promotion does to the lanes (pure) ------------------------------------------------


def _policy(version, in_force=TRAINED, trained=TRAINED, quantiles=QUANTILES, **origin):
    kind = "decision" if origin else "training"
    origin = {"kind": kind, "model_version": version, "thresholds_version": in_force.version,
              "set_by": "training", "set_at": "", "reason": "", **origin}  # fmt: skip
    return LanePolicy(version, in_force, trained, origin, quantiles)


DECIDED = {"set_by": "analyst", "set_at": "2026-12-01T10:00:00", "reason": "two more inspectors"}


def test_a_decided_rate_is_carried_over_fitted_on_the_new_models_quantiles():
    handover = plan_lane_handover(_policy("1", SET_2, **DECIDED), _policy("2"), promoted=True)
    carried = handover.thresholds
    assert carried is not None and (carried.red_rate, carried.yellow_rate) == (0.02, 0.05)
    assert carried == fit_from_quantiles(QUANTILES, 0.02, 0.05, "risk", carried.fitted_on)
    shares = lane_shares_from_quantiles(QUANTILES, carried)
    assert shares["red"] == pytest.approx(0.02, abs=0.002)
    assert shares["yellow"] == pytest.approx(0.05, abs=0.002)
    assert handover.carried_from["reason"] == "two more inspectors"
    assert handover.carried_from["model_version"] == "1"
    (said,) = handover.reasons
    assert "lane rates in force red 2% / yellow 5%" in said and "two more inspectors" in said
    assert "carried over" in said and "not its trained red 1% / yellow 4%" in said
    assert handover.record["action"] == "carried"


def test_a_new_model_without_quantiles_is_promoted_saying_the_rates_are_lost():
    handover = plan_lane_handover(
        _policy("1", SET_2, **DECIDED), _policy("2", quantiles=None), promoted=True
    )
    assert handover.thresholds is None
    said = handover.reasons[0]
    assert said.startswith("LANE RATES NOT CARRIED OVER: lane rates in force red 2% / yellow 5%")
    assert "version 2 serves red 1% / yellow 4%" in said and "two more inspectors" in said
    assert "parcelrisk lanes set --red 0.02 --yellow 0.05 --db STORE --reason TEXT" in said
    assert handover.not_carried["thresholds_version"] == TRAINED.version
    assert handover.record["action"] == "not carried"


def test_trained_rates_are_not_a_decision_a_new_champion_serves_its_own_and_says_so():
    own = fit_from_quantiles(QUANTILES, 0.02, 0.04, "risk", "training")
    handover = plan_lane_handover(
        _policy("1"), _policy("2", in_force=own, trained=own), promoted=True
    )
    assert handover.thresholds is None and handover.carried_from is None
    assert handover.reasons == [
        "lane rates change with this promotion: red 1% / yellow 4% (train.lanes of version 1) "
        "-> red 2% / yellow 4% (train.lanes of version 2)"
    ]
    same = plan_lane_handover(_policy("1"), _policy("2"), promoted=True)
    assert same.reasons == [] and same.thresholds is None


def test_a_decision_outranks_new_train_lanes_and_says_how_to_take_them():
    own = fit_from_quantiles(QUANTILES, 0.03, 0.04, "risk", "training")
    handover = plan_lane_handover(
        _policy("1", SET_2, **DECIDED), _policy("2", in_force=own, trained=own), promoted=True
    )
    assert (handover.thresholds.red_rate, handover.thresholds.yellow_rate) == (0.02, 0.05)
    assert any(
        "version 2 was trained for red 3% / yellow 4% (train.lanes): not served" in line
        and "lanes set --red 0.03 --yellow 0.04" in line
        for line in handover.reasons
    )


def test_a_rollback_to_the_version_the_decision_was_taken_on_keeps_it():
    champion = _policy("3", SET_2, **{**DECIDED, "model_version": "1",
                                      "thresholds_version": SET_2.version})  # fmt: skip
    rolled_back = _policy("1", SET_2, **DECIDED)
    handover = plan_lane_handover(champion, rolled_back, promoted=True)
    assert handover.thresholds is None and handover.carried_from is None
    assert "kept: version 1 serves them already" in handover.reasons[0]


def test_a_refusal_says_when_the_challenger_was_trained_at_other_lane_rates():
    own = fit_from_quantiles(QUANTILES, 0.02, 0.04, "risk", "training")
    refused = plan_lane_handover(
        _policy("1"), _policy("4", in_force=own, trained=own), promoted=False
    )
    assert refused.thresholds is None
    (said,) = refused.reasons
    assert said.startswith("lane rates differ: version 4 fills red 2% / yellow 4%")
    assert "not the shares it sends to each lane" in said
    assert "`parcelrisk lanes set --red 0.02 --yellow 0.04 --reason TEXT`" in said
    # a stale train.lanes default beside a decided rate is not news: nothing said
    quiet = plan_lane_handover(_policy("1", SET_2, **DECIDED), _policy("4"), promoted=False)
    assert quiet.reasons == [] and quiet.record == {}


# --- on a registry: records, tags, `lanes show` -----------------------------------------------


@pytest.fixture
def registry(tmp_path):
    """Two versions of a throwaway registry (bundle.json with trained thresholds and training
    traffic quantiles, training's thresholds.json; no model), version 1 champion."""
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    experiment = client.create_experiment(
        "lanes", artifact_location=(tmp_path / "artifacts").as_uri()
    )
    client.create_registered_model(NAME)
    params = tmp_path / "params.yaml"
    params.write_text("{}\n")
    world = {"client": client, "uri": uri, "params": params, "experiment": experiment}
    add_version(world)
    client.set_registered_model_alias(NAME, "champion", "1")
    add_version(world)
    return world


def add_version(world, quantiles=QUANTILES) -> str:
    client = world["client"]
    run = client.create_run(world["experiment"])
    metadata = {"lane_traffic": quantiles} if quantiles else {}
    bundle = {"thresholds": asdict(TRAINED), "metadata": metadata}
    client.log_dict(run.info.run_id, bundle, "bundle/bundle.json")
    client.log_dict(run.info.run_id, asdict(TRAINED), "thresholds.json")
    mv = client.create_model_version(
        NAME, f"{run.info.artifact_uri}/bundle", run_id=run.info.run_id
    )
    return str(mv.version)


def _set_on(world, version, thresholds, reason):
    return write_thresholds_version(
        world["client"], NAME, version, thresholds, previous="", reason=reason, set_by="analyst"
    )


def _promote(world, version, *, promoted=True):
    """What ``promote_version`` does to the lanes of ``version`` against the champion, then
    the alias moved as a promotion moves it."""
    client = world["client"]
    champion = str(client.get_model_version_by_alias(NAME, "champion").version)
    handover = plan_lane_handover(
        read_lane_policy(client, NAME, champion),
        read_lane_policy(client, NAME, version),
        promoted=promoted,
    )
    if promoted:
        apply_lane_handover(client, NAME, version, handover, set_by="promoter")
        client.set_registered_model_alias(NAME, "champion", version)
    return handover


def _show(capsys, world, *args):
    code, out, err = run_cli(
        capsys, "lanes", "show", *args, "--tracking-uri", world["uri"],
        "--params", str(world["params"]),
    )  # fmt: skip
    assert code == 0, err
    return out


def test_the_carried_rates_are_a_recorded_version_of_the_new_champion(registry, capsys):
    _set_on(registry, "1", SET_2, "two more inspectors")
    _promote(registry, "2")

    policy = read_lane_policy(registry["client"], NAME, "2")
    assert (policy.in_force.red_rate, policy.in_force.yellow_rate) == (0.02, 0.05)
    assert policy.origin["reason"] == "two more inspectors"  # the decision, not the carry
    record = thresholds_history(registry["client"], policy_run(registry, "2"))[-1]
    assert record["set_by"] == "promoter"
    assert record["carried_from"]["model_version"] == "1"
    assert record["carried_from"]["set_by"] == "analyst"
    assert record["reason"].startswith("carried over at the promotion of v2: two more inspectors")
    shown = _show(capsys, registry)
    assert "reason: carried over at the promotion of v2: two more inspectors" in shown
    assert "NOT CARRIED" not in shown
    # promoted again (v3): the decision goes on, named as taken on v1
    add_version(registry)
    again = _promote(registry, "3")
    assert again.carried_from["model_version"] == "1"
    assert again.carried_from["reason"] == "two more inspectors"


def policy_run(world, version):
    return world["client"].get_model_version(NAME, version).run_id


def test_rates_lost_at_a_promotion_stay_said_in_lanes_show_until_set_again(registry, capsys):
    _set_on(registry, "1", SET_2, "two more inspectors")
    bare = add_version(registry, quantiles=None)  # a model trained before quantiles were kept
    handover = _promote(registry, bare)
    assert handover.reasons[0].startswith("LANE RATES NOT CARRIED OVER")
    tags = registry["client"].get_model_version(NAME, bare).tags
    assert json.loads(tags[NOT_CARRIED_TAG])["rates"] == "red 2% / yellow 5%"

    shown = _show(capsys, registry)
    notice = shown.splitlines()[1]
    assert notice.startswith("! LANE RATES NOT CARRIED OVER at its promotion: red 2% / yellow 5%")
    assert "two more inspectors" in notice and "serves red 1% / yellow 4%" in notice
    assert "parcelrisk lanes set --red 0.02 --yellow 0.05 --db STORE" in notice
    body = json.loads(_show(capsys, registry, "--json"))
    assert body["not_carried"]["from_version"] == "1"

    # the decision taken again on the new champion: the notice is history
    _set_on(registry, bare, replace(SET_2, fitted_on="store"), "two more inspectors, again")
    settings = load_settings(registry["params"])
    assert lane_history(registry["client"], settings)["not_carried"] is None
    assert "NOT CARRIED" not in _show(capsys, registry)


def test_a_refused_challenger_leaves_the_lanes_and_records_nothing(registry):
    _set_on(registry, "1", SET_2, "two more inspectors")
    _promote(registry, "2", promoted=False)
    tags = registry["client"].get_model_version(NAME, "2").tags
    assert "lane_thresholds" not in tags and NOT_CARRIED_TAG not in tags


# --- end to end: train, set, promote through the gate, refuse -----------------------------------


@pytest.fixture(scope="module")
def promoted(frames, tmp_path_factory):
    """v1 on a history lacking the seller features (first champion), `lanes set` 2% / 5% on it;
    v2 on the full history (better: promoted by the gate); v3 the same history trained with
    train.lanes 3% / 4% (the same model: refused, through the CLI with --report)."""
    from typer.testing import CliRunner

    from serving.main import app

    features, truth, manifest = frames
    root = tmp_path_factory.mktemp("lanes_across_promotion")
    weak = features.drop(columns=["seller_hit_rate", "seller_count_30d"])
    weak_dir = write_features_dir(
        root / "weak", weak, manifest.select(
            [n for n in manifest.names if n not in ("seller_hit_rate", "seller_count_30d")]
        ),
    )  # fmt: skip
    full_dir = write_features_dir(root / "full", features, manifest)
    world = registry_world(root, truth)
    settings, uri = world["settings"], world["uri"]
    common = {"ground_truth_path": world["truth_path"], "tracking_uri": uri, "metrics_out": None}
    client = registry_client(uri)

    run_training(weak_dir, settings=settings, **common)
    assert run_promotion(settings=settings, tracking_uri=uri)["outcome"] == "first"
    set_lane_rates(client, settings, 0.02, 0.05, reason="two more inspectors", set_by="analyst")
    run_training(full_dir, settings=settings, **common)
    out = {"v2": run_promotion(settings=settings, tracking_uri=uri)}

    wider = {**REGISTRY_PARAMS, "train": {**REGISTRY_PARAMS["train"],
                                          "lanes": {"red_rate": 0.03, "yellow_rate": 0.04}}}  # fmt: skip
    wider_params = root / "wider.yaml"
    wider_params.write_text(yaml.safe_dump(wider))
    run_training(full_dir, settings=load_settings(wider_params), **common)
    report = root / "refused.json"
    result = CliRunner().invoke(
        app,
        ["promote", "--params", str(world["params_path"]), "--tracking-uri", uri,
         "--report", str(report)],
    )  # fmt: skip
    out.update(client=client, refused=result, report=json.loads(report.read_text()))
    return out


def test_a_gate_passed_promotion_carries_the_decided_rates(promoted):
    v2, client = promoted["v2"], promoted["client"]
    assert v2["outcome"] == "promoted", v2["reasons"]
    policy = read_lane_policy(client, NAME, "2")
    assert (policy.in_force.red_rate, policy.in_force.yellow_rate) == (0.02, 0.05)
    assert policy.trained.red_rate == 0.01  # its train.lanes, not served
    # fitted on its own training traffic: at those rates, the shares asked
    shares = lane_shares_from_quantiles(policy.quantiles, policy.in_force)
    assert shares["red"] == pytest.approx(0.02, abs=0.003)
    assert any("carried over" in r and "two more inspectors" in r for r in v2["reasons"])
    # with the decision: the version's tags and its history record
    tags = client.get_model_version(NAME, "2").tags
    assert "two more inspectors" in tags["promotion.reasons"]
    assert json.loads(tags["promotion.lanes"])["action"] == "carried"
    assert tags["thresholds_version"] == policy.in_force.version


def test_a_challenger_trained_at_other_lane_rates_is_refused_saying_so(promoted):
    result, report = promoted["refused"], promoted["report"]
    assert result.exit_code == 1, result.output
    assert report["outcome"] == "refused"
    said = [r for r in report["reasons"] if r.startswith("lane rates differ")]
    assert len(said) == 1 and "version 3 fills red 3% / yellow 4%" in said[0]
    assert "`parcelrisk lanes set --red 0.03 --yellow 0.04 --reason TEXT`" in said[0]
    assert "lane rates differ" in result.output
    assert report["lanes"]  # the structured record, beside the sentences
    # the champion keeps the decided rates
    policy = read_lane_policy(promoted["client"], NAME, "2")
    assert policy.in_force.red_rate == 0.02
