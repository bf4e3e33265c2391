"""Lane thresholds set as a decision: `parcelrisk lanes set|show|plan`, applied on load, followed
by a running service's champion check without reloading the model, and recomputable after."""

from __future__ import annotations

import json
import re
import shutil
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from models.bundle import LaneThresholds
from models.thresholds import make_thresholds, thresholds_json
from serving.rollover import ChampionRef, ChampionWatcher, ThresholdsSwitch
from tests.test_serving.conftest import (
    auth,
    fresh_declarations,
    run_cli,
    score_into_store,
    stored_decision,
)

# --- the watcher follows the thresholds tag, with fakes ------------------------------------------


def _thresholds(red_cutoff: float, objective: str = "risk") -> LaneThresholds:
    return make_thresholds(objective, red_cutoff, red_cutoff / 2, 0.02, 0.05)  # type: ignore[arg-type]


@dataclass
class FakeRuntime:
    model_version: str
    thresholds: LaneThresholds


class Registry:
    """The alias's version and thresholds tag; what was loaded and installed."""

    def __init__(self) -> None:
        self.runtime = FakeRuntime("3", _thresholds(0.5))
        self.ref = ChampionRef("3", None)
        self.loads: list[str] = []

    def load(self) -> FakeRuntime:
        self.loads.append(self.ref.version)
        return FakeRuntime(self.ref.version, self.runtime.thresholds)

    def install_thresholds(self, thresholds: LaneThresholds) -> None:
        if thresholds.objective != self.runtime.thresholds.objective:
            raise ValueError("ranks on another priority")
        self.runtime.thresholds = thresholds

    def watcher(self) -> ChampionWatcher:
        return ChampionWatcher(
            current=lambda: self.runtime.model_version,
            champion=lambda: self.ref,
            load=self.load,  # type: ignore[arg-type]
            install=lambda r: setattr(self, "runtime", r),
            interval_s=0,
            current_thresholds=lambda: self.runtime.thresholds.version,
            install_thresholds=self.install_thresholds,
        )


def test_a_new_thresholds_tag_is_installed_without_reloading_the_model():
    registry = Registry()
    watcher = registry.watcher()
    before = registry.runtime
    new = _thresholds(0.3)
    registry.ref = ChampionRef("3", thresholds_json(new))
    switch = watcher.check()
    assert switch == ThresholdsSwitch("3", _thresholds(0.5).version, new.version)
    assert registry.runtime is before and registry.runtime.thresholds == new
    assert registry.loads == []
    assert watcher.check() is None  # the same tag again: nothing to do


def test_a_bad_tag_is_logged_once_and_the_current_thresholds_keep_serving(caplog):
    registry = Registry()
    watcher = registry.watcher()
    for text in ("{not json", thresholds_json(_thresholds(0.3, objective="revenue"))):
        registry.ref = ChampionRef("3", text)
        caplog.clear()
        assert watcher.check() is None and watcher.check() is None
        assert registry.runtime.thresholds == _thresholds(0.5)
        assert len([r for r in caplog.records if "ignored" in r.getMessage()]) == 1
    registry.ref = ChampionRef("3", thresholds_json(_thresholds(0.2)))  # a good one follows
    assert isinstance(watcher.check(), ThresholdsSwitch)


def test_a_moved_alias_still_loads_the_new_version():
    registry = Registry()
    registry.ref = ChampionRef("4", thresholds_json(_thresholds(0.3)))
    switch = registry.watcher().check()
    assert switch is not None and not isinstance(switch, ThresholdsSwitch)
    assert registry.loads == ["4"] and registry.runtime.model_version == "4"


# --- the registry: set, show, load ----------------------------------------------------------------


@pytest.fixture
def lanes_registry(real_pipeline, tmp_path, monkeypatch):
    """The real pipeline's registry copied WITH its artifacts (``lanes set`` writes to the run),
    and params whose champion check runs every 0.2 s."""
    import mlflow

    from models.registry import registry_client

    root = Path(real_pipeline["root"])
    source = sqlite3.connect(root / "mlflow.db")
    copy = sqlite3.connect(tmp_path / "mlflow.db")
    try:
        source.backup(copy)
    finally:
        source.close()
    shutil.copytree(root / "mlartifacts", tmp_path / "mlartifacts")
    old, new = (root / "mlartifacts").as_uri(), (tmp_path / "mlartifacts").as_uri()
    with copy:
        for table, column in (
            ("runs", "artifact_uri"),
            ("experiments", "artifact_location"),
            ("model_versions", "storage_location"),
            ("logged_models", "artifact_location"),
        ):
            copy.execute(f"UPDATE {table} SET {column} = replace({column}, ?, ?)", (old, new))
    copy.close()
    params = yaml.safe_load(Path(real_pipeline["params"]).read_text())
    params["serve"]["champion_check_s"] = 0.2
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    previous = mlflow.get_tracking_uri()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    mlflow.set_tracking_uri(uri)
    # MLflow caches each run's artifact location per process: the copy's run has the same id
    repos = mlflow.tracking._tracking_service.utils._artifact_repos_cache
    repos.clear()
    yield {
        "client": registry_client(uri),
        "name": params["promote"]["model_name"],
        "version": real_pipeline["version"],
        "uri": uri,
        "params": tmp_path / "params.yaml",
        "root": tmp_path,
    }
    repos.clear()
    mlflow.set_tracking_uri(previous)


def _set(capsys, reg, *args: str) -> tuple[int, str, str]:
    said = () if "--reason" in args else ("--reason", "capacity changed")  # required
    return run_cli(
        capsys, "lanes", "set", *args, *said, "--tracking-uri", reg["uri"],
        "--params", str(reg["params"]),
    )  # fmt: skip


def test_lanes_set_writes_the_tag_and_the_record_on_the_run(lanes_registry, capsys):
    reg = lanes_registry
    client = reg["client"]
    trained = client.get_model_version(reg["name"], reg["version"]).tags["thresholds_version"]
    code, out, err = _set(capsys, reg, "--red", "0.05", "--yellow", "0.1", "--reason", "more staff")
    assert code == 0, err
    assert "training traffic quantiles" in out
    mv = client.get_model_version(reg["name"], reg["version"])
    tagged = json.loads(mv.tags["lane_thresholds"])
    assert mv.tags["thresholds_version"] == tagged["version"] != trained
    assert (tagged["red_rate"], tagged["yellow_rate"], tagged["aeo_discount"]) == (0.05, 0.1, 0.5)
    local = client.download_artifacts(
        mv.run_id, f"thresholds/{tagged['version']}.json", str(reg["root"])
    )
    record = json.loads(Path(local).read_text())
    assert record["reason"] == "more staff" and record["set_by"] and record["set_at"]
    assert record["previous_version"] and record["red_cutoff"] == tagged["red_cutoff"]

    code, out, _ = run_cli(
        capsys,
        "lanes",
        "show",
        "--tracking-uri",
        reg["uri"],
        "--params",
        str(reg["params"]),
        "--json",
    )
    shown = json.loads(out)
    assert shown["in_force"] == tagged["version"]
    assert [h["version"] for h in shown["history"]] == [
        record["previous_version"],
        tagged["version"],
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--red", "0", "--yellow", "0.1"), "lane rates"),
        (("--red", "0.6", "--yellow", "0.5"), "red + yellow < 1"),
    ],
)
def test_lanes_set_refuses_impossible_rates(lanes_registry, capsys, args, message):
    code, _, err = _set(capsys, lanes_registry, *args)
    assert code == 2 and message in err and "Traceback" not in err


def test_lanes_set_without_a_champion_is_one_line(lanes_registry, capsys):
    reg = lanes_registry
    reg["client"].delete_registered_model_alias(reg["name"], "champion")
    code, _, err = _set(capsys, reg, "--red", "0.02", "--yellow", "0.05")
    assert code == 2 and "no model" in err and "champion" in err


def test_load_version_applies_the_tag_and_falls_back_on_a_bad_one(
    lanes_registry, capsys, tmp_path, caplog
):
    from models.registry import load_version

    reg = lanes_registry
    assert _set(capsys, reg, "--red", "0.03", "--yellow", "0.07")[0] == 0
    model, _, _ = load_version(reg["client"], reg["name"], reg["version"], tmp_path / "a")
    assert (model.thresholds.red_rate, model.thresholds.yellow_rate) == (0.03, 0.07)
    bundle, _, _ = load_version(
        reg["client"], reg["name"], reg["version"], tmp_path / "b", lane_tag=False
    )
    assert bundle.thresholds.red_rate != 0.03
    in_force = model.thresholds.version
    # a tag edited by hand: the last version recorded on the run goes in force, loudly, so a
    # worker (re)started meanwhile serves what the running ones serve instead of staying down
    reg["client"].set_model_version_tag(reg["name"], reg["version"], "lane_thresholds", "{oops")
    with caplog.at_level("ERROR", logger="models.registry"):
        model, _, _ = load_version(reg["client"], reg["name"], reg["version"], tmp_path / "c")
    assert model.thresholds.version == in_force
    assert "lane_thresholds unreadable" in caplog.text and "last thresholds recorded" in caplog.text
    # lanes set repairs it
    code, _, err = _set(capsys, reg, "--red", "0.02", "--yellow", "0.05")
    assert code == 0 and "unreadable" in err
    model, _, _ = load_version(reg["client"], reg["name"], reg["version"], tmp_path / "d")
    assert model.thresholds.red_rate == 0.02


def test_the_trained_bundle_keeps_its_lane_traffic_quantiles(lanes_registry, tmp_path):
    from models.registry import load_version

    reg = lanes_registry
    model, _, _ = load_version(reg["client"], reg["name"], reg["version"], tmp_path / "m")
    quantiles = model.metadata["lane_traffic"]
    assert quantiles["aeo_discount"] == model.thresholds.aeo_discount == 0.5
    assert len(quantiles["cutoffs"]) == len(quantiles["shares"]) < 450
    assert model.thresholds.fitted_on.startswith("training")


# --- a running service follows `lanes set` ---------------------------------------------------------


def _expected_lanes(decisions: list[dict], frame: pd.DataFrame, th: dict) -> list[str]:
    """The lane each decision must have under ``th`` (objective risk): AEO x 0.5, the quota
    at least yellow."""
    aeo = frame.set_index("declaration_id")["aeo_operator"].astype(bool)
    out = []
    for d in decisions:
        p = d["risk"] * (0.5 if aeo[d["declaration_id"]] else 1.0)
        lane = "red" if p >= th["red_cutoff"] else "yellow" if p >= th["yellow_cutoff"] else "green"
        if d["exploration"] and lane == "green":
            lane = "yellow"
        out.append(lane)
    return out


def test_lanes_set_is_picked_up_by_a_running_service_and_recomputes(
    lanes_registry, real_pipeline, capsys, tmp_path
):
    import httpx

    from tests.test_serving.test_live_workers import serve_two_workers

    reg = lanes_registry
    pipeline = {**real_pipeline, "params": reg["params"], "tracking_uri": reg["uri"]}
    fresh = fresh_declarations(real_pipeline["history"], 600, prefix="LANES")
    payloads = json.loads(fresh.to_json(orient="records", date_format="iso"))

    def score(rows: list[dict]) -> list[dict]:
        r = httpx.post(
            f"{server.url}/score", json={"declarations": rows}, headers=auth(), timeout=60
        )
        assert r.status_code == 200, r.text
        return r.json()["decisions"]

    with serve_two_workers(pipeline, tmp_path) as server:
        before = score(payloads[:100])
        old_version = {d["thresholds_version"] for d in before}
        assert len(old_version) == 1
        code, out, err = _set(capsys, reg, "--red", "0.2", "--yellow", "0.1", "--reason", "test")
        assert code == 0, err
        tagged = json.loads(
            reg["client"].get_model_version(reg["name"], reg["version"]).tags["lane_thresholds"]
        )
        assert {tagged["version"]} != old_version
        # both workers pick it up at their next check: answers until 20 in a row carry it
        import time

        deadline, in_a_row, start = time.monotonic() + 60, 0, 100
        while in_a_row < 20 and time.monotonic() < deadline:
            d = score(payloads[start : start + 1])[0]
            in_a_row = in_a_row + 1 if d["thresholds_version"] == tagged["version"] else 0
            start += 1
        assert in_a_row == 20, "the new thresholds were not picked up"
        after = score(payloads[400:600])
        assert {d["thresholds_version"] for d in after} == {tagged["version"]}
        assert [d["lane"] for d in after] == _expected_lanes(after, fresh, tagged)
        red = np.mean([d["lane"] == "red" for d in after])
        assert red > 0.1  # the 20% red lane, not the trained 1%

        # the auditor recomputes a decision made under the set version
        decision = after[0]["decision_id"]
        code, out, err = run_cli(
            capsys,
            "audit",
            "recompute",
            decision,
            "--db",
            str(server.audit_db),
            "--tracking-uri",
            reg["uri"],
            "--params",
            str(reg["params"]),
            "--json",
        )
        assert code == 0, out + err
        result = json.loads(out)
        assert result["summary"]["matches"] == 1


def _decision(i: int, risk: float, *, aeo: bool, exploration: bool):
    declaration = {
        "declaration_id": f"P{i}",
        "declared_at": f"2026-05-0{1 + i % 2}T{10 + i:02d}:00:00.000000Z",
        "aeo_operator": aeo,
    }
    return stored_decision(
        declaration,
        decision_id=f"dec{i}",
        risk=risk,
        lane="red" if risk >= 0.45 else "green",
        exploration=exploration,
    )


@pytest.fixture
def planned_store(tmp_path):
    """The models test's tiny period as a decision store (effective priority p/20, parcel 6 an
    AEO one at twice that raw), with results for the random and one targeted inspection."""
    from serving.outcome_store import SqliteOutcomeStore
    from serving.outcomes import store_outcomes
    from serving.sqlite_store import SqliteDecisionStore

    db = tmp_path / "audit.db"
    explored = {10: (True, 100.0), 8: (False, None), 7: (True, 50.0), 2: (False, None), 1: None}
    decisions = SqliteDecisionStore(db)
    decisions.record(
        [
            _decision(p, (2 * p if p == 6 else p) / 20, aeo=p == 6, exploration=p in explored)
            for p in range(10, 0, -1)
        ]
    )
    decisions.close()
    results = [
        {
            "declaration_id": f"P{p}",
            "inspected_at": "2026-05-03T09:00:00Z",
            "illicit": found[0],
            "offence_type": "undervaluation" if found[0] else None,
            "revenue_recovered": found[1],
        }
        for p, found in [*explored.items(), (9, (True, 999.0))]
        if found is not None
    ]
    outcomes = SqliteOutcomeStore(db)
    store_outcomes(outcomes, pd.DataFrame(results), source="test")
    outcomes.close()
    return db


def test_lanes_plan_estimates_from_the_store_s_exploration_results(
    planned_store, real_pipeline, capsys, tmp_path
):
    args = ["lanes", "plan", "--db", str(planned_store), "--params", str(real_pipeline["params"])]
    period = ["--since", "2026-05-01", "--until", "2026-05-02"]  # two whole days
    code, out, err = run_cli(capsys, *args, *period, "--json", "--chart", str(tmp_path / "c.png"))
    assert code == 0, err
    body = json.loads(out)
    # per day of the span the store holds decisions in (05-01 12:00 to 05-02 19:00), not of
    # the two days asked
    assert body["parcels"] == 10 and body["period"]["days"] == pytest.approx(31 / 24, abs=1e-3)
    assert body["period"]["window"]["days"] == 2.0
    assert body["exploration_parcels_with_results"] == 4
    rows = {round(r["rate"], 3): r for r in body["plan"]}
    top = rows[0.1]  # 1 parcel: 10 (explored, a hit)
    assert (top["parcels"], top["explored"], top["explored_hits"]) == (1, 1, 1)
    half = rows[0.05]
    assert half["parcels"] == 1
    # the top 20% of 10: cut-off 9/20; the AEO parcel (raw 12/20) is at 6/20, below it
    assert rows[0.2]["cutoff"] == pytest.approx(9 / 20) and rows[0.2]["parcels"] == 2
    assert (tmp_path / "c.png").stat().st_size > 1000
    code, out, _ = run_cli(capsys, *args, *period)
    assert code == 0 and "estimates from 4 exploration parcels" in out


def test_lanes_plan_without_results_says_so_and_keeps_the_traffic_columns(
    planned_store, real_pipeline, capsys
):
    conn = sqlite3.connect(planned_store)
    with conn:
        conn.execute("DELETE FROM outcomes")
    conn.close()
    code, out, err = run_cli(
        capsys,
        "lanes",
        "plan",
        "--db",
        str(planned_store),
        "--params",
        str(real_pipeline["params"]),
    )
    assert code == 0, err
    assert "no exploration parcel has an inspection result" in out
    assert "0.5%" in out and "20.0%" in out


def test_lanes_plan_refuses_a_missing_store(capsys, real_pipeline, tmp_path):
    code, _, err = run_cli(
        capsys,
        "lanes",
        "plan",
        "--db",
        str(tmp_path / "none.db"),
        "--params",
        str(real_pipeline["params"]),
    )
    assert code == 2 and "no such file" in err


def test_lanes_plan_adds_the_truth_and_refuses_one_without_its_columns(
    planned_store, real_pipeline, capsys, tmp_path
):
    args = ["lanes", "plan", "--db", str(planned_store), "--params", str(real_pipeline["params"])]
    truth = pd.DataFrame(
        {
            "declaration_id": [f"P{p}" for p in range(1, 11)],
            "illicit": [p in (10, 9, 7, 5) for p in range(1, 11)],
            "revenue_at_stake": [10.0] * 10,
        }
    )
    truth.to_parquet(tmp_path / "truth.parquet")
    code, out, err = run_cli(capsys, *args, "--truth", str(tmp_path / "truth.parquet"), "--json")
    assert code == 0, err
    top = json.loads(out)["plan"][-1]  # 20%: parcels 10 and 9, both illicit
    assert top["true_hit_rate"] == 1.0
    truth.drop(columns="illicit").to_csv(tmp_path / "bad.csv", index=False)
    code, _, err = run_cli(capsys, *args, "--truth", str(tmp_path / "bad.csv"))
    assert code == 2 and "lacks illicit" in err


def _traffic_store(
    db: Path, version: str, days: int, per_day: int, seed: int = 3, prefix: str = "P"
) -> pd.DataFrame:
    """``days`` days of the champion's decisions (risk uniform, one in five AEO) in a store."""
    from serving.sqlite_store import SqliteDecisionStore

    rng = np.random.default_rng(seed)
    n = days * per_day
    traffic = pd.DataFrame(
        {
            "declared_at": pd.Timestamp("2026-05-01", tz="UTC")
            + pd.to_timedelta(np.sort(rng.uniform(0, days * 86_400, n)), unit="s"),
            "risk": rng.uniform(0, 1, n),
            "aeo": rng.uniform(0, 1, n) < 0.2,
        }
    )
    store = SqliteDecisionStore(db)
    store.record(
        [
            stored_decision(
                {
                    "declaration_id": f"{prefix}{i}",
                    "declared_at": row.declared_at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                    "aeo_operator": bool(row.aeo),
                },
                decision_id=f"dec-{prefix}{i}",
                scored_at="2026-05-20T12:00:00.000000+00:00",
                model_version=version,
                risk=float(row.risk),
            )
            for i, row in enumerate(traffic.itertuples())
        ]
    )
    store.close()
    return traffic


def test_lanes_refit_keeps_the_rates_in_force_and_fits_the_last_days(lanes_registry, capsys):
    from models.thresholds import fit_lane_thresholds

    reg = lanes_registry
    db = reg["root"] / "audit.db"
    traffic = _traffic_store(db, reg["version"], days=10, per_day=400)
    common = ("--tracking-uri", reg["uri"], "--params", str(reg["params"]))
    code, out, err = run_cli(capsys, "lanes", "refit", "--db", str(db), "--days", "7", *common)
    assert "in force on" in out
    assert code == 0, err
    tagged = json.loads(
        reg["client"].get_model_version(reg["name"], reg["version"]).tags["lane_thresholds"]
    )
    assert (tagged["red_rate"], tagged["yellow_rate"]) == (0.01, 0.04)  # params' train.lanes
    recent = traffic[traffic["declared_at"] >= traffic["declared_at"].max() - pd.Timedelta(days=7)]
    expected = fit_lane_thresholds(
        recent["risk"].to_numpy(),
        0.01,
        0.04,
        "risk",
        aeo=recent["aeo"].to_numpy(),
        aeo_discount=0.5,
    )
    assert tagged["red_cutoff"] == pytest.approx(expected.red_cutoff)
    assert tagged["parcels"] == len(recent) and "decision store audit.db" in tagged["fitted_on"]

    # one day is fewer than MIN_SET_PARCELS decisions: refused, nothing written
    code, _, err = run_cli(capsys, "lanes", "refit", "--db", str(db), "--days", "1", *common)
    assert code == 2 and "too few to re-fit" in err and "Traceback" not in err
    after = reg["client"].get_model_version(reg["name"], reg["version"]).tags["lane_thresholds"]
    assert json.loads(after)["version"] == tagged["version"]


def test_lanes_refit_refuses_a_store_without_the_champion_s_decisions(
    lanes_registry, capsys, tmp_path
):
    reg = lanes_registry
    db = tmp_path / "other.db"
    _traffic_store(db, "999", days=1, per_day=10)
    code, _, err = run_cli(
        capsys,
        "lanes",
        "refit",
        "--db",
        str(db),
        "--tracking-uri",
        reg["uri"],
        "--params",
        str(reg["params"]),
    )
    assert code == 2 and "holds no decision of" in err
    code, _, err = run_cli(
        capsys,
        "lanes",
        "refit",
        "--db",
        str(tmp_path / "missing.db"),
        "--tracking-uri",
        reg["uri"],
        "--params",
        str(reg["params"]),
    )
    assert code == 2 and "no such file" in err


def test_lanes_plan_keeps_to_one_model_version(real_pipeline, capsys, tmp_path):
    """After a promotion a period holds two models' scores: the plan takes the version that
    decided last (or the one asked for) and says how many decisions it left out."""
    db = tmp_path / "audit.db"
    _traffic_store(db, "1", days=2, per_day=50, prefix="OLD")
    _traffic_store(db, "2", days=2, per_day=30, seed=4, prefix="NEW")
    params = ("--params", str(real_pipeline["params"]), "--json")
    code, out, err = run_cli(capsys, "lanes", "plan", "--db", str(db), *params)
    assert code == 0, err
    plan = json.loads(out)
    assert plan["model"]["version"] == "2" and plan["parcels"] == 60
    assert plan["other_versions_left_out"] == 100
    code, out, err = run_cli(
        capsys, "lanes", "plan", "--db", str(db), "--model-version", "1", *params
    )
    assert code == 0, err
    assert json.loads(out)["parcels"] == 100
    code, _, err = run_cli(
        capsys, "lanes", "plan", "--db", str(db), "--model-version", "9", *params
    )
    assert code == 2 and "no decisions of parcel-risk v9" in err


def test_lanes_plan_chart_it_cannot_write_is_one_line(
    planned_store, real_pipeline, capsys, tmp_path
):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    code, _, err = run_cli(
        capsys, "lanes", "plan", "--db", str(planned_store), "--chart", str(blocker / "plan.png"),
        "--params", str(real_pipeline["params"]),
    )  # fmt: skip
    assert code == 2 and "--chart" in err and "cannot write it" in err and "Traceback" not in err


def test_lanes_set_waits_for_a_promote_running_on_the_registry(lanes_registry, capsys):
    """A `lanes set` between a promote's read of the champion's lane rates and its move of the
    alias was lost to the rates the promote carried over (probe 13's helper): set and refit
    take the promote's lock, so they run before or after a promotion, never inside one."""
    import threading

    from models.promotion import promotion_lock

    reg = lanes_registry
    held, release = threading.Event(), threading.Event()

    def promote_running() -> None:
        with promotion_lock(reg["uri"]):
            held.set()
            release.wait(timeout=60)

    holder = threading.Thread(target=promote_running)
    holder.start()
    assert held.wait(timeout=30)
    done: list[int] = []
    setter = threading.Thread(
        target=lambda: done.append(_set(capsys, reg, "--red", "0.03", "--yellow", "0.06")[0])
    )
    setter.start()
    setter.join(timeout=3)
    assert setter.is_alive() and not done  # waiting for the promote's lock
    release.set()
    holder.join(timeout=30)
    setter.join(timeout=120)
    assert done == [0]


def test_lanes_refit_refuses_a_broken_feed_unless_a_person_says_why(
    lanes_registry, real_pipeline, capsys, tmp_path, monkeypatch
):
    """A daily re-fit must not fill the red lane on a broken feed: it checks the window's
    decisions against the champion's training reference first (the copied registry holds
    the real champion, so decisions scored by the real path compare with it)."""
    from features.params import load_settings
    from serving.scoring import load_runtime

    reg = lanes_registry
    settings = load_settings(reg["params"])
    runtime = load_runtime(settings, reg["uri"], tmp_path / "model")
    healthy, broken = tmp_path / "healthy.db", tmp_path / "broken.db"
    score_into_store(runtime, healthy, fresh_declarations(real_pipeline["history"], 600, "OK"))
    runtime = load_runtime(settings, reg["uri"], tmp_path / "model2")
    parcels = fresh_declarations(real_pipeline["history"], 600, prefix="BRK")
    parcels["description"] = None  # the export lost its item text
    score_into_store(runtime, broken, parcels)
    common = ("--tracking-uri", reg["uri"], "--params", str(reg["params"]))

    code, out, err = run_cli(capsys, "lanes", "refit", "--db", str(broken), *common)
    assert code == 2 and out == "" and "Traceback" not in err
    assert "the declarations' feed looks broken in the last 7 days" in err
    # the features read from the description: four named, the count of the rest
    assert re.search(r"\d+ feature\(s\) went missing or off the reference's categories", err)
    assert "(missing in 100% of decisions (reference 0%))" in err
    assert "--despite-feed REASON" in err
    before = reg["client"].get_model_version(reg["name"], reg["version"]).tags
    # the healthy store passes the check (and is refused for too few decisions)
    code, _, err = run_cli(capsys, "lanes", "refit", "--db", str(healthy), *common)
    assert code == 2 and "too few to re-fit" in err and "looks broken" not in err
    assert reg["client"].get_model_version(reg["name"], reg["version"]).tags == before

    # a person's reason lets it through, kept with the version (600 decisions enough here)
    monkeypatch.setattr("models.lane_versions.MIN_SET_PARCELS", 500)
    code, out, err = run_cli(capsys, "lanes", "refit", "--db", str(broken), *common,
                             "--despite-feed", "the broker re-sends tomorrow")  # fmt: skip
    assert code == 0, err
    assert "warning: re-fitted despite the feed check" in err and "feed checked" not in out
    code, out, _ = run_cli(capsys, "lanes", "show", "--json", *common)
    reason = json.loads(out)["history"][-1]["reason"]
    assert "despite the feed check (" in reason and "description_vague" in reason
    assert reason.endswith(": the broker re-sends tomorrow")
    code, out, err = run_cli(capsys, "lanes", "refit", "--db", str(healthy), *common)
    assert code == 0, err
    assert "feed checked on 600 decisions: no feature gone missing" in out
