"""Smoke test of ``benchmarks/loop.py``: the tiniest closed loop runs and reports every arm."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
TINY = ["--parcels", "6000", "--days", "38", "--history-days", "30", "--trees", "30"]


def _loop_benchmark() -> Any:
    spec = importlib.util.spec_from_file_location("loop_benchmark", ROOT / "benchmarks/loop.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # registered first: its dataclasses look their module up by name while they are made
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def loop() -> Any:
    return _loop_benchmark()


@pytest.fixture(scope="module")
def report(loop, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """8 days of traffic after 30 of history, one retrain (promoted, to exercise the replay)."""
    work = tmp_path_factory.mktemp("loop")
    return loop.main([*TINY, "--always-promote", "--work", str(work)])


def test_every_arm_has_every_week(loop, report):
    weeks = report["weeks"]
    assert set(weeks) == set(loop.ARMS)
    assert [w["week"] for w in weeks["oracle"]] == [1, 2]  # 7 days, then 1
    assert [w["days"] for w in weeks["oracle"]] == [7, 1]
    for rows in weeks.values():
        assert [w["week"] for w in rows] == [1, 2]
        assert sum(w["parcels"] for w in rows) == report["config"]["traffic_parcels"]
        for w in rows:
            for key in ("precision_at_5", "revenue_at_5", "roc_auc", "ece"):
                assert 0.0 <= w[key] <= 1.0, (key, w)


def test_lane_shares_of_the_scored_arms_sum_to_one(loop, report):
    for arm in loop.SCORED_ARMS:
        for w in report["weeks"][arm]:
            assert w["red_share"] + w["yellow_share"] + w["green_share"] == pytest.approx(
                1.0, abs=1e-3
            )
            assert 0.0 < w["exploration_share"] < 0.1


def test_results_come_back_and_the_loop_retrains_once(report):
    assert report["results_posted"]["live"] > 0
    assert report["results_posted"]["loop"] > 0
    (retrain,) = report["retrains"]
    assert retrain["after_day"] == 7 and retrain["promoted"]
    assert retrain["labelled_traffic"] > 0
    # the new snapshot holds every stored decision and result: its replay appends none of
    # them (appending them would count them twice)
    assert retrain["held_after_replay"] == 0
    # the promoted model scores the last day; the live arm keeps the first
    assert report["weeks"]["loop"][-1]["model_versions"] == [retrain["version"]]
    assert report["weeks"]["live"][-1]["model_versions"] == [report["initial_champion"]["version"]]


def test_the_live_state_grows_over_the_run(report):
    memory = report["memory"]
    assert memory["live.declarations_held"]["last"] > memory["live.declarations_held"]["first"]
    assert memory["live.live_event_mb"]["last"] > 0
    assert len(report["memory_by_day"]) == report["config"]["loop_days"]
    assert set(report["targets"]) >= {
        "live_calibration_error_below_0.05_every_week",
        "live_vs_fresh_auc_within_0.005_every_week",
    }


def test_bad_arguments_stop_with_one_line(loop, capsys):
    with pytest.raises(SystemExit) as stopped:
        loop.parse_args(["--history-days", "40", "--days", "30"])
    assert stopped.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "--history-days" in err[-1] and "Traceback" not in "".join(err)
