"""`lanes set` records are append-only: a set that repeats earlier cut-offs (the same version id,
a hash of them) is a record of its own, and the earlier record keeps who, when and why."""

from __future__ import annotations

import json
from dataclasses import asdict

import numpy as np
import pytest

from models.lane_versions import resolve_thresholds, thresholds_history
from models.thresholds import make_thresholds, traffic_quantiles
from tests.test_serving.conftest import run_cli

NAME = "parcel-risk"  # serve.model_name's default: the params file below is empty


@pytest.fixture
def champion(tmp_path):
    """A throwaway registry whose champion's bundle.json holds trained thresholds and the
    training traffic quantiles (what `lanes set` fits on without --db), and the run training's
    thresholds.json; no model."""
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    experiment = client.create_experiment(
        "lanes", artifact_location=(tmp_path / "artifacts").as_uri()
    )
    run = client.create_run(experiment)
    priority = np.random.default_rng(0).uniform(size=2000)
    trained = make_thresholds("risk", 0.9, 0.8, 0.01, 0.1, aeo_discount=0.5, fitted_on="training")
    bundle = {
        "thresholds": asdict(trained),
        "metadata": {"lane_traffic": traffic_quantiles(priority, 0.5)},
    }
    client.log_dict(run.info.run_id, bundle, "bundle/bundle.json")
    client.log_dict(run.info.run_id, asdict(trained), "thresholds.json")  # as training logs it
    client.create_registered_model(NAME)
    mv = client.create_model_version(
        NAME, f"{run.info.artifact_uri}/bundle", run_id=run.info.run_id
    )
    client.set_registered_model_alias(NAME, "champion", mv.version)
    params = tmp_path / "params.yaml"
    params.write_text("{}\n")
    return {"client": client, "uri": uri, "params": params, "run_id": run.info.run_id}


def _lanes(capsys, champion, *args: str) -> str:
    if args[0] == "set" and "--reason" not in args:
        args = (*args, "--reason", "capacity changed")  # required
    code, out, err = run_cli(
        capsys,
        "lanes",
        *args,
        "--tracking-uri",
        champion["uri"],
        "--params",
        str(champion["params"]),
    )
    assert code == 0, err
    return out


def _set_records(champion) -> list[dict]:
    return [r for r in thresholds_history(champion["client"], champion["run_id"]) if r["set_at"]]


def _in_force(champion) -> str:
    return champion["client"].get_model_version(NAME, "1").tags["thresholds_version"]


def test_a_set_repeating_earlier_cut_offs_keeps_the_earlier_record(champion, capsys):
    _lanes(capsys, champion, "set", "--red", "0.02", "--yellow", "0.05", "--reason", "two more")
    (first,) = _set_records(champion)
    _lanes(capsys, champion, "set", "--red", "0.03", "--yellow", "0.05", "--reason", "in between")
    _lanes(capsys, champion, "set", "--red", "0.02", "--yellow", "0.05", "--reason", "back again")

    records = _set_records(champion)
    assert _in_force(champion) == first["version"]
    assert len(records) == 3
    repeats = [r for r in records if r["version"] == first["version"]]
    assert [r["reason"] for r in repeats] == ["two more", "back again"]
    assert repeats[0] == first  # set_at, set_by, reason and replaces as first written
    assert records[-1]["reason"] == "back again"  # the newest set is last in the history
    assert repeats[1]["previous_version"] == records[1]["version"] != first["version"]
    # a decision laned under the version resolves the same cut-offs as before the repeat
    resolved = resolve_thresholds(champion["client"], champion["run_id"], first["version"])
    assert resolved is not None and resolved.red_cutoff == first["red_cutoff"]


def test_lanes_show_lists_every_set_and_marks_the_newest_in_force(champion, capsys):
    _lanes(capsys, champion, "set", "--red", "0.02", "--yellow", "0.05", "--reason", "two more")
    _lanes(capsys, champion, "set", "--red", "0.03", "--yellow", "0.05", "--reason", "in between")
    _lanes(capsys, champion, "set", "--red", "0.02", "--yellow", "0.05", "--reason", "back again")

    shown = json.loads(_lanes(capsys, champion, "show", "--json"))
    assert [h["reason"] for h in shown["history"][1:]].count("two more") == 1
    assert {h["reason"] for h in shown["history"]} == {
        "trained",
        "two more",
        "in between",
        "back again",
    }
    lines = _lanes(capsys, champion, "show").splitlines()[1:]
    assert len(lines) == 4  # training's and one per set
    starred = [line for line in lines if line.startswith("*")]
    assert len(starred) == 1 and "reason: back again" in starred[0]
    assert any("reason: two more" in line for line in lines)


def test_a_set_on_a_period_without_decisions_says_so_when_nothing_changes(
    champion, capsys, tmp_path
):
    from serving.sqlite_store import SqliteDecisionStore

    db = tmp_path / "audit.db"
    SqliteDecisionStore(str(db)).close()
    _lanes(capsys, champion, "set", "--red", "0.02", "--yellow", "0.05")
    out = _lanes(
        capsys,
        champion,
        "set",
        "--red",
        "0.02",
        "--yellow",
        "0.05",
        "--db",
        str(db),
        "--since",
        "2030-01-01",
    )
    assert "already in force" in out
    assert "no decisions of v1" in out and "since 2030-01-01" in out
    assert "training traffic quantiles" in out  # what the cut-offs were fitted on instead
    assert len(_set_records(champion)) == 1  # nothing written


def test_lanes_set_needs_a_reason(champion, capsys) -> None:
    """A lane policy changed is a decision an auditor reads back: an empty reason was taken
    (probe)."""
    code, _, err = run_cli(
        capsys, "lanes", "set", "--red", "0.02", "--yellow", "0.05", "--reason", "  ",
        "--tracking-uri", champion["uri"], "--params", str(champion["params"]),
    )  # fmt: skip
    assert code == 2 and "say why the lane capacity changes" in err


def test_a_thresholds_record_edited_after_it_was_written_is_refused(champion, capsys):
    """The version id is the hash of the cut-offs: a record edited in the registry (red at
    0.999 beside a decision laned red at 0.75) is said to be altered, never shown as the
    cut-offs the decisions were laned with (probe 30)."""
    from pathlib import Path

    from models.lane_versions import ThresholdsAltered
    from models.thresholds import content_version

    _lanes(capsys, champion, "set", "--red", "0.02", "--yellow", "0.05", "--reason", "two more")
    (record,) = _set_records(champion)
    assert content_version(record) == record["version"]  # set records hash as written
    client, run_id = champion["client"], champion["run_id"]
    root = Path(client.get_run(run_id).info.artifact_uri.removeprefix("file://"))
    path = root / "thresholds" / f"{record['version']}.json"
    stored = json.loads(path.read_text())
    path.write_text(json.dumps({**stored, "red_cutoff": 0.999}))
    with pytest.raises(ThresholdsAltered, match="altered after it was written"):
        resolve_thresholds(client, run_id, record["version"])
    path.write_text(json.dumps(stored))  # restored: resolves again
    assert resolve_thresholds(client, run_id, record["version"]).red_cutoff == stored["red_cutoff"]


def test_a_record_written_before_the_later_fields_hashes_as_it_was_written():
    """Records from before ``aeo_discount``, ``fitted_on`` and ``parcels`` hashed the fields
    they had: still intact."""
    import hashlib

    from models.thresholds import content_version

    old = {"objective": "risk", "red_cutoff": 0.7, "yellow_cutoff": 0.3, "red_rate": 0.01}
    old["yellow_rate"] = 0.04
    version = hashlib.sha256(json.dumps(old, sort_keys=True).encode()).hexdigest()[:12]
    assert content_version({**old, "version": version, "set_by": "x"}) == version
    made = make_thresholds("risk", 0.7, 0.3, 0.01, 0.04, aeo_discount=0.5, parcels=10)
    assert content_version(asdict(made)) == made.version
