"""The gate when a new history lacks inputs the champion used, and a ground truth of other
parcels refused before training: end to end on a temporary MLflow store, through the CLI."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest
import yaml
from click.testing import Result
from typer.testing import CliRunner

from features.errors import ParcelriskError
from features.params import PromoteParams, load_settings
from features.pipeline.manifest import FeatureManifest
from models import train as train_module
from models.cli import run_promotion, run_training
from models.evaluation import check_truth_covers
from models.promotion import (
    comparison_of,
    decide_not_comparable,
    decide_promotion,
    lacking_features,
    lacking_reason,
    recode_categories,
)
from models.registry import registry_client
from serving.main import app
from tests.test_models.conftest import REGISTRY_PARAMS as PARAMS
from tests.test_models.conftest import (
    make_census_frames,
    registry_world,
    write_features_dir,
)
from tests.test_serving.conftest import run_cli

# Inputs a new export no longer carries: the families built on them switch off, so the feature
# frame has no column for them (as `features build` leaves out seller_revenue_recovered_eur, ...
# of a history without a revenue column).
DROPPED = ("seller_hit_rate", "seller_count_30d", "noise_a")


def _without(frame: pd.DataFrame, manifest):
    kept = [n for n in manifest.names if n not in DROPPED]
    return frame.drop(columns=list(DROPPED)), manifest.select(kept)


def _promote(store, *args: str, report: str) -> tuple[Result, dict]:
    """``parcelrisk promote ARGS --report FILE`` on the store: the CLI's result and report."""
    path = store["root"] / report
    result = CliRunner().invoke(
        app,
        [
            "promote",
            "--params",
            str(store["params_path"]),
            "--tracking-uri",
            store["uri"],
            "--report",
            str(path),
            *args,
        ],
    )
    return result, (json.loads(path.read_text()) if path.exists() else {})


@pytest.fixture(scope="module")
def store(frames, tmp_path_factory):
    """v1 on the full history (first champion); v2 on a history lacking DROPPED (refused as not
    comparable, then forced); v3 on the full history again (compared with a champion lacking
    features it has); v4 on an inspect-everything (census) history lacking DROPPED (refused as
    not comparable, then forced)."""
    features, truth, manifest = frames
    root = tmp_path_factory.mktemp("promote_lacking")
    full_dir = write_features_dir(root / "full", features, manifest)
    lacking_dir = write_features_dir(root / "lacking", *_without(features, manifest))
    census, _, census_manifest = make_census_frames(n=4000, days=60, seed=3)
    census_dir = write_features_dir(root / "census", *_without(census, census_manifest))
    world = registry_world(root, truth)
    truth_path, params_path, uri = world["truth_path"], world["params_path"], world["uri"]
    settings = world["settings"]
    common = {"settings": settings, "tracking_uri": uri, "metrics_out": None}
    state: dict = {"uri": uri, "root": root, "params_path": params_path}

    run_training(full_dir, ground_truth_path=truth_path, **common)
    state["promote1"] = run_promotion(settings=settings, tracking_uri=uri)
    run_training(lacking_dir, ground_truth_path=truth_path, **common)
    state["refused2"] = _promote(state, report="refused.json")
    state["tags2_refused"] = _tags(state, "2")
    state["champion_after_refusal"] = _champion(state)
    state["forced2"] = _promote(
        state, "--force", "--reason", "new export has no seller history", report="forced.json"
    )
    run_training(full_dir, ground_truth_path=truth_path, **common)
    state["promote3"] = run_promotion(settings=settings, tracking_uri=uri)
    run_training(census_dir, **common)
    state["refused4"] = run_promotion(settings=settings, tracking_uri=uri)
    state["forced4"] = run_promotion(
        settings=settings, tracking_uri=uri, force=True, reason="census export"
    )
    return state


def _tags(store, version: str) -> dict[str, str]:
    return registry_client(store["uri"]).get_model_version("parcel-risk", version).tags


def _champion(store) -> str:
    client = registry_client(store["uri"])
    return str(client.get_model_version_by_alias("parcel-risk", "champion").version)


def test_a_challenger_lacking_champion_features_is_refused_as_not_comparable(store):
    assert store["promote1"]["outcome"] == "first"
    result, report = store["refused2"]
    assert result.exit_code == 1, (result.output, result.exception)
    assert not isinstance(result.exception, ParcelriskError), result.exception
    out = result.output
    assert "not comparable" in out and "3 feature(s)" in out
    assert "seller_hit_rate" in out and "seller_count_30d" in out and "noise_a" in out
    assert "--force --reason" in out
    assert "version 2: refused (champion before: 1)" in out
    assert report["outcome"] == "refused" and report["promoted"] == 0
    assert report["comparison"].startswith("not possible: the champion (version 1) uses 3 ")
    assert store["champion_after_refusal"] == "1"


def test_a_refusal_without_comparison_records_the_challenger_alone(store):
    _, report = store["refused2"]
    assert not any(k.startswith("gate.champion.") for k in report)
    assert report["gate.challenger.test_all.model.precision_at_5"] > 0
    tags = store["tags2_refused"]
    assert tags["promotion.outcome"] == "refused"
    assert tags["promotion.comparison"] == report["comparison"]


def test_force_promotes_a_challenger_that_cannot_be_compared(store):
    result, report = store["forced2"]
    assert result.exit_code == 0, (result.output, result.exception)
    assert "version 2: forced (champion before: 1)" in result.output
    assert "--force --reason" not in result.output  # no advice to do what was just done
    assert report["outcome"] == "forced" and report["promoted"] == 1
    assert report["force_reason"] == "new export has no seller history"
    assert report["comparison"].startswith("not possible: the champion (version 1) uses 3 ")


def test_a_forced_promotion_without_comparison_is_recorded_on_the_versions(store):
    tags = _tags(store, "2")
    assert tags["promotion.outcome"] == "forced"
    assert tags["promotion.force_reason"] == "new export has no seller history"
    assert tags["promotion.champion_before"] == "1"
    assert tags["promotion.comparison"].startswith("not possible: the champion (version 1)")
    assert "seller_hit_rate" in tags["promotion.comparison"]
    assert "not comparable" in tags["promotion.reasons"]
    assert "challenger.test_all.model.precision_at_5" in json.loads(tags["promotion.metrics"])
    assert _tags(store, "1")["promotion.replaced_by"] == "2"


def test_a_champion_without_features_the_challenger_has_is_compared(store):
    # the other direction: the champion (v2) lacks DROPPED, and the full history has every
    # column it uses, so the gate compares the two on the same holdout as always
    out = store["promote3"]
    assert out["champion_before"] == "2"
    assert out["outcome"] == "promoted", out["reasons"]
    assert out["comparison"] == "test_all"
    assert "champion.test_all.model.precision_at_5" in out["metrics"]
    assert _tags(store, "3")["promotion.comparison"] == "test_all"


def test_a_census_challenger_lacking_champion_features_can_be_forced(store):
    refused, forced = store["refused4"], store["forced4"]
    assert refused["challenger"] == "4" and refused["champion_before"] == "3"
    assert refused["outcome"] == "refused"
    assert refused["comparison"].startswith("not possible: the champion (version 3) uses 3 ")
    assert any("--force --reason" in r for r in refused["reasons"])
    assert forced["outcome"] == "forced" and forced["promote"]
    assert _champion(store) == "4"
    assert _tags(store, "4")["promotion.force_reason"] == "census export"


# --- the policy's parts, pure ------------------------------------------------------------------


def test_lacking_features_keeps_manifest_order():
    assert lacking_features(["a", "b", "c", "d"], ["x", "c", "a"]) == ["b", "d"]
    assert lacking_features(["a"], ["a", "b"]) == []


def test_not_comparable_names_a_few_lacking_features_and_their_count():
    lacking = [f"f{i}" for i in range(12)]
    decision = decide_not_comparable(lacking_reason("7", lacking, "feat_norev"))
    assert not decision.promote and decision.evaluation == ""
    assert decision.not_compared.startswith(
        "the champion (version 7) uses 12 feature(s) that the history in feat_norev lacks "
        "(f0, f1, f2, f3, f4, ...)"
    )
    assert "f5" not in decision.reasons[0] and decision.reasons[0].startswith("not comparable")
    assert comparison_of(decision) == f"not possible: {decision.not_compared}"


def test_no_comparable_metric_is_recorded_as_no_comparison():
    gate = PromoteParams(max_calibration_error=0.05)
    decision = decide_promotion({}, {"test_random.model.precision_at_5": 0.3}, gate)
    assert comparison_of(decision).startswith("not possible: no finite precision_at_5")
    compared = decide_promotion(
        {"test_random.model.precision_at_5": 0.2}, {"test_random.model.precision_at_5": 0.3}, gate
    )
    assert comparison_of(compared) == "test_random"


def test_recode_categories_reads_codes_in_the_models_levels():
    frame = pd.DataFrame({"channel": [0.0, 1.0, 2.0, -1.0, np.nan], "other": 1.0})
    built = {"channel": ("courier", "express", "postal")}
    model = {"channel": ("postal", "courier"), "absent": ("a",)}
    out = recode_categories(frame, built, model)
    assert out["channel"].tolist()[:4] == [1.0, -1.0, 0.0, -1.0]  # express: unknown to it
    assert np.isnan(out["channel"].iloc[4]) and out["other"].tolist() == [1.0] * 5
    assert frame["channel"].tolist()[:3] == [0.0, 1.0, 2.0]  # the frame is left as it was
    assert recode_categories(frame, built, built) is frame


# --- category codes of another export ---------------------------------------------------------


@pytest.fixture(scope="module")
def recoded_store(frames, tmp_path_factory):
    """v1 on the history as built; v2 on the same history from an export whose channels came
    in another order, so its features code every channel differently."""
    features, truth, manifest = frames
    root = tmp_path_factory.mktemp("promote_recoded")
    reordered = tuple(reversed(manifest.categories["channel"]))
    specs = tuple(
        dataclasses.replace(f, categories=reordered) if f.name == "channel" else f
        for f in manifest.features
    )
    channel = features["channel"].to_numpy()
    other_export = features.assign(channel=np.where(channel >= 0, 2 - channel, channel))
    write_features_dir(root / "v1", features, manifest)
    write_features_dir(root / "v2", other_export, FeatureManifest(specs, manifest.params))
    truth_path = root / "truth.parquet"
    truth.to_parquet(truth_path)
    params_path = root / "params.yaml"
    params_path.write_text(yaml.safe_dump(PARAMS))
    uri = f"sqlite:///{root / 'mlflow.db'}"
    common = {
        "settings": load_settings(params_path),
        "tracking_uri": uri,
        "metrics_out": None,
        "ground_truth_path": truth_path,
    }
    first = run_training(root / "v1", **common)
    run_promotion(settings=common["settings"], tracking_uri=uri)
    run_training(root / "v2", **common)
    return first, run_promotion(settings=common["settings"], tracking_uri=uri)


def test_the_champion_is_judged_on_its_own_category_codes(recoded_store):
    # the same parcels, coded apart: the champion's figures on the challenger's history are the
    # ones its training run measured, not those of channels read as other channels
    first, promoted = recoded_store
    for metric in ("roc_auc", "precision_at_5"):
        gated = promoted["metrics"][f"champion.test_all.model.{metric}"]
        assert gated == pytest.approx(first["all_metrics"][f"test_all.model.{metric}"])


# --- train --ground-truth of another history ---------------------------------------------------


def test_ground_truth_of_other_parcels_is_refused_before_any_fit(
    frames, tmp_path, capsys, monkeypatch
):
    features, truth, manifest = frames
    features_dir = write_features_dir(tmp_path / "f", features, manifest)
    other = truth.assign(declaration_id="X" + truth["declaration_id"])
    other.to_parquet(tmp_path / "truth.parquet")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(PARAMS))

    def no_fit(*_args, **_kwargs):
        raise AssertionError("a booster was fitted before the ground truth was checked")

    monkeypatch.setattr(train_module, "_fit_booster", no_fit)
    code, out, err = run_cli(
        capsys,
        "train",
        "--features",
        str(features_dir),
        "--ground-truth",
        str(tmp_path / "truth.parquet"),
        "--params",
        str(tmp_path / "params.yaml"),
        "--tracking-uri",
        f"sqlite:///{tmp_path / 'mlflow.db'}",
        "--metrics-out",
        str(tmp_path / "m.json"),
        "-q",
    )
    assert code == 2 and out == ""
    # what the evaluation said after the whole fit, now before it
    assert err.startswith("error: ground truth lacks 2214 test parcel(s), e.g. ['D009786'"), err
    assert not (tmp_path / "m.json").exists()


def test_ground_truth_covering_the_test_parcels_passes_the_check(frames):
    _, truth, _ = frames
    check_truth_covers(truth["declaration_id"].tail(10), truth)
    with pytest.raises(ParcelriskError, match=r"lacks 1 test parcel\(s\), e.g. \['nope'\]"):
        check_truth_covers(pd.Series(["D000001", "nope"]), truth)


def test_a_first_champion_that_learnt_nothing_or_was_never_measured_is_said_to_be_one() -> None:
    """Nothing compares a first model: promote still makes it champion (the service needs
    one), and says when its risk model stopped at a round or two, or no random-exploration
    parcel measured it (a probe's one-tree model became champion without a word)."""
    from types import SimpleNamespace

    from models.promotion import _first_model_cautions
    from models.train import WEAK_ROUNDS

    def run(*metrics: str) -> SimpleNamespace:
        return SimpleNamespace(data=SimpleNamespace(metrics=dict.fromkeys(metrics, 0.5)))

    measured = run("test_random.precision_at_5pct", "test_all.auc")
    assert _first_model_cautions({"risk_best_iteration": 120}, measured) == []
    weak = _first_model_cautions({"risk_best_iteration": WEAK_ROUNDS}, measured)
    assert len(weak) == 1 and "stopped after 2 round(s)" in weak[0]
    unmeasured = _first_model_cautions({"risk_best_iteration": 1}, run("test_all.auc"))
    assert len(unmeasured) == 2 and "no unbiased metric measured it" in unmeasured[1]
    assert _first_model_cautions({}, run()) == [unmeasured[1]]


def _champion_then(frames, tmp_path, challenger: pd.DataFrame | None = None):
    """A registry with version 1 (the full history) champion and version 2 trained on
    ``challenger`` (default: the full history again); its settings and URI."""
    features, truth, manifest = frames
    full_dir = write_features_dir(tmp_path / "full", features, manifest)
    second_dir = (
        full_dir
        if challenger is None
        else write_features_dir(tmp_path / "second", challenger, manifest)
    )
    world = registry_world(tmp_path, truth)
    settings, uri = world["settings"], world["uri"]
    common = {"settings": settings, "tracking_uri": uri, "metrics_out": None}
    run_training(full_dir, ground_truth_path=world["truth_path"], **common)
    assert run_promotion(settings=settings, tracking_uri=uri)["outcome"] == "first"
    run_training(second_dir, ground_truth_path=world["truth_path"], **common)
    return settings, uri


def test_a_challenger_built_under_another_pseudonym_key_needs_force(frames, tmp_path, monkeypatch):
    """An analyst's shell with another key made an untested challenger champion "whatever
    the metrics", which the service (holding the deployment's key) then refused to load
    (probe): two keys are not compared, and promoted only with --force --reason."""
    import models.promotion as promotion_module

    settings, uri = _champion_then(frames, tmp_path)
    built_under = {"champion": "0123456789abcdef", "challenger": "fedcba9876543210"}
    monkeypatch.setattr(
        promotion_module,
        "_pseudonym_key_id",
        lambda state_dir: built_under["champion" if "champion" in str(state_dir) else "challenger"],
    )
    refused = run_promotion(settings=settings, tracking_uri=uri)
    assert refused["outcome"] == "refused" and not refused["promote"]
    said = " ".join(refused["reasons"])
    assert "not comparable" in said and "under key id 0123456789abcdef" in said
    assert "--force --reason" in said
    client = registry_client(uri)
    assert str(client.get_model_version_by_alias("parcel-risk", "champion").version) == "1"
    forced = run_promotion(
        settings=settings, tracking_uri=uri, force=True, reason="the deployment's key rotated"
    )
    assert forced["outcome"] == "forced" and forced["promote"]
    assert str(client.get_model_version_by_alias("parcel-risk", "champion").version) == "2"
    tags = client.get_model_version("parcel-risk", "2").tags
    assert tags["promotion.force_reason"] == "the deployment's key rotated"


def test_the_champion_moves_only_from_the_version_judged_against(frames, tmp_path):
    """Two promotes at once both said "promoted", the alias on whichever wrote last; a kill
    between the records and the alias left a version recorded promoted that was not champion;
    a version champion again kept its "replaced_by" (probe)."""
    import threading

    from models.promotion import Decision, promotion_lock, record_decision

    features, truth, manifest = frames
    full_dir = write_features_dir(tmp_path / "full", features, manifest)
    world = registry_world(tmp_path, truth)
    settings, uri = world["settings"], world["uri"]
    common = {"settings": settings, "tracking_uri": uri, "metrics_out": None}
    for _ in range(2):
        run_training(full_dir, ground_truth_path=world["truth_path"], **common)
    client = registry_client(uri)
    decision = Decision(True, ["better"])
    record_decision(client, "parcel-risk", "1", decision, champion_before=None, outcome="first")
    with pytest.raises(ParcelriskError, match="the champion moved to version 1 while version 2"):
        record_decision(client, "parcel-risk", "2", decision, champion_before="7", outcome="forced")
    assert str(client.get_model_version_by_alias("parcel-risk", "champion").version) == "1"
    assert "promotion.outcome" not in client.get_model_version("parcel-risk", "2").tags
    record_decision(client, "parcel-risk", "2", decision, champion_before="1", outcome="forced")
    assert client.get_model_version("parcel-risk", "1").tags["promotion.replaced_by"] == "2"
    record_decision(client, "parcel-risk", "1", decision, champion_before="2", outcome="forced")
    assert "promotion.replaced_by" not in client.get_model_version("parcel-risk", "1").tags
    assert client.get_model_version("parcel-risk", "2").tags["promotion.replaced_by"] == "1"
    # one promote at a time on a registry: the second waits for the first
    order: list[str] = []
    with promotion_lock(uri):
        waiting = threading.Thread(
            target=lambda: (promotion_lock(uri).__enter__(), order.append("second"))
        )
        waiting.start()
        waiting.join(timeout=0.5)
        order.append("first done")
    waiting.join(timeout=5)
    assert order == ["first done", "second"]


def test_a_champion_is_never_scored_on_parcels_it_was_fitted_on(frames, tmp_path):
    """A challenger trained on a shorter history has its test period inside the champion's
    fit period: the champion scored ROC AUC 1.0 in-sample against the challenger's honest
    figures (probe). Not comparable then, said."""
    features = frames[0]
    cut = features["declared_at"].quantile(0.6)
    short = features.loc[features["declared_at"] < cut].reset_index(drop=True)
    settings, uri = _champion_then(frames, tmp_path, short)
    result = run_promotion(settings=settings, tracking_uri=uri)
    assert result["outcome"] == "refused"
    said = " ".join(result["reasons"])
    assert "not comparable: the champion (version 1) was fitted and calibrated on parcels" in said
    assert "covers the challenger's whole test period" in said
    assert not any(k.startswith("champion.") for k in result.get("metrics", {}))


def test_a_test_period_partly_inside_the_champions_fit_is_compared_after_it(frames, tmp_path):
    """A challenger whose test period starts before the champion's is compared only on the
    parcels after the champion's fit and calibration, said in the reasons."""
    features, truth, manifest = frames
    full_dir = write_features_dir(tmp_path / "full", features, manifest)
    world = registry_world(tmp_path, truth)
    settings, uri = world["settings"], world["uri"]
    common = {"tracking_uri": uri, "metrics_out": None, "ground_truth_path": world["truth_path"]}
    run_training(full_dir, settings=settings, **common)
    assert run_promotion(settings=settings, tracking_uri=uri)["outcome"] == "first"
    wider = {"train": 0.5, "validation": 0.2, "test": 0.3}  # its test starts earlier
    earlier = settings.model_copy(
        update={"train": settings.train.model_copy(update={"split": wider})}
    )
    run_training(full_dir, settings=earlier, **common)
    result = run_promotion(settings=settings, tracking_uri=uri)
    said = " ".join(result["reasons"])
    assert "not comparable" not in said
    assert "after the champion's fit and calibration periods" in said
    assert (
        result["holdout_parcels"]
        < (features["declared_at"] >= features["declared_at"].quantile(0.7)).sum()
    )


def test_a_registry_error_reading_the_champion_stops_promote_moving_nothing(
    frames, tmp_path, monkeypatch
):
    """Any failure reading the alias (a 500, a refused connection) read as "no champion":
    the challenger became champion without the gate, recorded as the first model (probe)."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    settings, uri = _champion_then(frames, tmp_path)

    def unavailable(self, name, alias):
        raise MlflowException("API request failed: 500 Internal Server Error", error_code="INTERNAL_ERROR")  # fmt: skip

    with monkeypatch.context() as patched:
        patched.setattr(MlflowClient, "get_model_version_by_alias", unavailable)
        with pytest.raises(ParcelriskError, match="cannot read parcel-risk@champion from the"):
            run_promotion(settings=settings, tracking_uri=uri)
    client = registry_client(uri)
    assert str(client.get_model_version_by_alias("parcel-risk", "champion").version) == "1"
    assert "promotion.outcome" not in client.get_model_version("parcel-risk", "2").tags


def test_a_promote_killed_after_moving_the_alias_is_recorded_by_the_next(
    frames, tmp_path, monkeypatch
):
    """Killed between the alias and the records, a forced promotion left the new champion
    with no record of why (its force reason lost), and a rerun said "unchanged" (probe)."""
    import models.promotion as promotion_module

    settings, uri = _champion_then(frames, tmp_path)

    def killed(*args, **kwargs):
        raise KeyboardInterrupt  # the process dies here: nothing after the alias runs

    with monkeypatch.context() as patched:
        patched.setattr(promotion_module, "_write_records", killed)
        with pytest.raises(KeyboardInterrupt):
            run_promotion(settings=settings, tracking_uri=uri, force=True, reason="lab report")
    client = registry_client(uri)
    assert str(client.get_model_version_by_alias("parcel-risk", "champion").version) == "2"
    assert "promotion.outcome" not in client.get_model_version("parcel-risk", "2").tags
    again = run_promotion(settings=settings, tracking_uri=uri, force=True, reason="lab report")
    assert again["outcome"] == "unchanged"
    tags = client.get_model_version("parcel-risk", "2").tags
    assert tags["promotion.outcome"] == "forced" and tags["promotion.force_reason"] == "lab report"
    assert promotion_module.PENDING_TAG not in tags
    assert client.get_model_version("parcel-risk", "1").tags["promotion.replaced_by"] == "2"


def test_the_gate_says_how_many_parcels_it_compared_on() -> None:
    """On 168 random parcels the top 5% is 8 and two versions each beat the other, the sample
    size never shown (probe): the verdict names it, and a small one the margins."""
    metrics = {
        "test_random.model.precision_at_5": 0.875,
        "test_random.model.revenue_at_5": 0.73,
        "test_random.model.ece": 0.01,
        "test_random.parcels": 168.0,
        "test_random.illicit": 22.0,
    }
    champion = {**metrics, "test_random.model.revenue_at_5": 0.72}
    decision = decide_promotion(metrics, champion, PromoteParams())
    said = " | ".join(decision.reasons)
    assert "compared on 168 parcels (22 illicit): the top 5% is 8" in said
    assert "by 0.125 (a small sample: consider promote.min_gain_* margins)" in said


def test_a_pending_decision_fits_one_tag_and_reads_back() -> None:
    """A decision with long reasons is cut to fit MLflow's tag limit, never cut mid-JSON."""
    from models.promotion import _pending_text

    tags = {
        "promotion.outcome": "forced",
        "promotion.reasons": "r" * 4900,
        "promotion.comparison": "c" * 4900,
        "promotion.force_reason": "f" * 4900,
        "promotion.at": "2026-12-05T10:00:00+00:00",
    }
    record = {"version": "2", **{k.removeprefix("promotion."): v for k, v in tags.items()}}
    text = _pending_text(tags, record, "1")
    assert len(text) <= 5000
    intent = json.loads(text)
    assert intent["tags"]["promotion.outcome"] == "forced" and intent["champion_before"] == "1"
    assert intent["tags"]["promotion.force_reason"].startswith("fff")


def test_an_unreadable_pending_decision_is_dropped_not_applied() -> None:
    """A pending tag edited into something that does not read is removed (and logged), never
    written as a decision; a champion without one is left alone."""
    from types import SimpleNamespace

    from models.promotion import PENDING_TAG, complete_interrupted_promotion

    class Client:
        def __init__(self, tags):
            self.tags, self.deleted = tags, []

        def get_model_version_by_alias(self, name, alias):
            return SimpleNamespace(version="2", tags=self.tags)

        def delete_model_version_tag(self, name, version, key):
            self.deleted.append((version, key))

    broken = Client({PENDING_TAG: "{not json"})
    assert complete_interrupted_promotion(broken, "parcel-risk") is None
    assert broken.deleted == [("2", PENDING_TAG)]
    plain = Client({"promotion.outcome": "promoted"})
    assert complete_interrupted_promotion(plain, "parcel-risk") is None and plain.deleted == []
