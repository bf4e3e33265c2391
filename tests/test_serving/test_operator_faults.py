"""What an operator meets at the edges of `serve`, `audit archive` and `lanes`: a broken
environment or an impossible request is one line naming the problem, never a traceback, never
a file changed or lost on the way."""

from __future__ import annotations

import errno
import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from tests.test_serving.conftest import run_cli, stored_decision
from tests.test_serving.test_lane_thresholds import (  # noqa: F401 (a fixture, used by name)
    _traffic_store,
    lanes_registry,
)

# --- lanes show|set|refit: the tracking store must already be one --------------------------------


def _tables(path: Path) -> set[str]:
    with sqlite3.connect(path) as db:
        return {r[0] for r in db.execute("SELECT name FROM sqlite_master")}


def test_a_tracking_store_that_is_not_sqlite_is_one_line(capsys, tmp_path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("not a database\n")
    code, _, err = run_cli(capsys, "lanes", "show", "--tracking-uri", f"sqlite:///{text}")
    assert code == 2 and "Traceback" not in err
    assert err.strip().splitlines() == [
        f"error: the MLflow tracking store sqlite:///{text}: {text}: file is not a database"
    ]
    assert text.read_text() == "not a database\n"


def test_a_missing_tracking_store_is_named_not_created(capsys, tmp_path) -> None:
    """A read-only command created an empty MLflow database there, then said "no champion"."""
    missing = tmp_path / "typo.db"
    code, _, err = run_cli(capsys, "lanes", "show", "--tracking-uri", f"sqlite:///{missing}")
    assert code == 2 and f"sqlite:///{missing} does not exist" in err
    assert len(err.strip().splitlines()) == 1
    assert not missing.exists()


def test_a_decision_store_given_as_tracking_store_is_left_untouched(capsys, tmp_path) -> None:
    """MLflow migrated it: its forty-odd tables were added to the decision store."""
    from serving.sqlite_store import SqliteDecisionStore

    db = tmp_path / "audit.db"
    SqliteDecisionStore(db).close()
    before = _tables(db)
    code, _, err = run_cli(capsys, "lanes", "show", "--tracking-uri", f"sqlite:///{db}")
    assert code == 2 and "without MLflow's tables, not a tracking store" in err
    assert _tables(db) == before


# --- audit archive: a write that fails leaves the store whole ------------------------------------


def test_an_archive_that_cannot_be_written_is_one_line_and_cuts_nothing(
    capsys, tmp_path, monkeypatch
) -> None:
    import pyarrow.parquet as pq

    from serving.audit.verify import verify_store
    from tests.test_serving.test_audit_archive import KEY, _days_store

    store = _days_store(tmp_path)
    head = verify_store(store).head
    store.close()
    calls: list[Path] = []
    real_write = pq.write_table

    def full_disk(table, where, **kwargs) -> None:
        calls.append(Path(where))
        if len(calls) == 2:  # the first day is written, the second finds the disk full
            Path(where).write_bytes(b"PAR1 half")
            raise OSError(errno.ENOSPC, "No space left on device")
        real_write(table, where, **kwargs)

    monkeypatch.setattr(pq, "write_table", full_disk)
    monkeypatch.setenv("PARCELRISK_AUDIT_KEY", KEY.decode())
    archive = tmp_path / "archive"
    code, _, err = run_cli(
        capsys, "audit", "archive", "--db", str(tmp_path / "audit.db"), "--before", "2026-05-03",
        "--to", str(archive),
    )  # fmt: skip
    assert code == 2 and "Traceback" not in err
    assert err.strip().splitlines() == [
        f"error: cannot write the archive {archive}: No space left on device; nothing was "
        "archived, the store is unchanged"
    ]
    from serving.sqlite_store import SqliteDecisionStore

    store = SqliteDecisionStore(tmp_path / "audit.db", key=KEY)
    report = verify_store(store)
    assert report.intact and report.checked == 15 and report.head == head
    assert store.count() == 15 and store.chain_start()[2] is None  # no cut recorded
    store.close()
    assert len(calls) == 2 and not [p for p in archive.rglob("*") if p.is_file()]


# --- serve --model-dir: checked before any worker starts -----------------------------------------


@pytest.fixture
def serve_env(monkeypatch, tmp_path) -> list[bool]:
    """`serve`'s environment for a test (every variable it sets restored after); the list
    records whether the server was started."""
    import _bentoml_impl.server

    started: list[bool] = []
    monkeypatch.setattr(_bentoml_impl.server, "serve_http", lambda *a, **k: started.append(True))
    monkeypatch.setenv("PARCELRISK_API_KEYS", "scorer:a-long-enough-test-key")
    monkeypatch.setenv("PARCELRISK_AUDIT_DB", str(tmp_path / "audit.db"))
    for name in ("SERVE_PID", "MODEL_DIR", "PARAMS", "WORKERS", "TRACKING_URI"):
        monkeypatch.setenv(f"PARCELRISK_{name}", "")
    return started


@pytest.mark.parametrize(
    ("model_dir", "says"),
    [
        ("/proc/parcelrisk-model", "cannot create or write the directory: No such file or "),
        ("{tmp}/a-file", "is a file, not a directory"),
    ],
)
def test_serve_refuses_a_model_dir_it_cannot_write_before_any_worker_starts(
    capsys, tmp_path, serve_env, model_dir: str, says: str
) -> None:
    """The server started NOT READY, each worker logging a traceback per attempt."""
    (tmp_path / "a-file").write_text("x")
    model_dir = model_dir.format(tmp=tmp_path)
    code, _, err = run_cli(
        capsys, "serve", "--port", "3999", "--model-dir", model_dir,
        "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}",
    )  # fmt: skip
    assert code == 2 and not serve_env
    assert len(err.strip().splitlines()) == 1
    assert f"error: --model-dir {model_dir}: {says}" in err


def test_serve_makes_a_missing_model_dir_and_hands_it_to_the_workers(
    capsys, tmp_path, serve_env
) -> None:
    import os

    model_dir = tmp_path / "new" / "models"
    code, _, err = run_cli(
        capsys, "serve", "--port", "3999", "--model-dir", str(model_dir),
        "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}",
    )  # fmt: skip
    assert code == 0, err
    assert serve_env == [True] and model_dir.is_dir() and not any(model_dir.iterdir())
    assert os.environ["PARCELRISK_MODEL_DIR"] == str(model_dir.resolve())


# --- lanes plan: the period asked and the span the store covers ----------------------------------


@pytest.fixture
def defaults(tmp_path) -> Path:
    """A params file of the built-in defaults (model parcel-risk, objective risk)."""
    path = tmp_path / "params.yaml"
    path.write_text("")
    return path


def test_lanes_plan_refuses_an_inverted_period(capsys, tmp_path, defaults) -> None:
    """It said "no decisions in the store for that period"."""
    db = tmp_path / "audit.db"
    _traffic_store(db, "1", days=2, per_day=10)
    code, _, err = run_cli(
        capsys, "lanes", "plan", "--db", str(db), "--params", str(defaults),
        "--since", "2026-05-10", "--until", "2026-05-01",
    )  # fmt: skip
    assert code == 2
    assert err.strip() == "error: --until 2026-05-01 is not after --since 2026-05-10"


def test_lanes_plan_counts_traffic_per_day_over_the_span_the_store_covers(
    capsys, tmp_path, defaults
) -> None:
    """A year asked of a store holding 30 days: 400 parcels a day, not 12,000 / 365 = 33."""
    db = tmp_path / "audit.db"
    _traffic_store(db, "1", days=30, per_day=400)
    args = ["lanes", "plan", "--db", str(db), "--params", str(defaults)]
    year = ["--since", "2026-01-01", "--until", "2026-12-31"]
    code, out, err = run_cli(capsys, *args, *year, "--json")
    assert code == 0, err
    plan = json.loads(out)
    assert plan["parcels"] == 12_000
    assert plan["period"]["days"] == pytest.approx(30, abs=0.05)
    assert plan["parcels_per_day"] == pytest.approx(400, rel=0.01)
    assert plan["period"]["window"] == {"since": "2026-01-01", "until": "2026-12-31", "days": 365}
    top = plan["plan"][-1]  # 20% of the traffic
    assert top["per_day"] == pytest.approx(0.2 * 400, rel=0.01)
    code, out, _ = run_cli(capsys, *args, *year)
    assert code == 0
    assert (
        "period asked --since 2026-01-01 --until 2026-12-31 (365.0 days); the figures per day "
        "are over the 30.0 days it holds decisions in"
    ) in out


# --- lanes set: the share a cut-off achieves, not only the one asked -----------------------------


def _saturated_store(db: Path, version: str, n: int = 3000) -> float:
    """``n`` decisions of ``version`` whose risk saturates: the top ~6% all at 0.97 (no AEO);
    returns that share."""
    from serving.sqlite_store import SqliteDecisionStore

    risk = np.minimum(np.random.default_rng(0).uniform(0, 1, n) / 0.94 * 0.97, 0.97)
    store = SqliteDecisionStore(db)
    store.record(
        [
            stored_decision(
                {
                    "declaration_id": f"S{i}",
                    "declared_at": f"2026-05-{1 + i % 20:02d}T10:00:00.000000Z",
                    "aeo_operator": False,
                },
                decision_id=f"dec-S{i}",
                model_version=version,
                risk=float(r),
            )
            for i, r in enumerate(risk)
        ]
    )
    store.close()
    return float((risk >= 0.97).mean())


@pytest.fixture
def registry(request) -> dict:
    """The real pipeline's registry, a copy this test may change (``lanes_registry``)."""
    return request.getfixturevalue("lanes_registry")


def _set(capsys, reg: dict, *args: str) -> tuple[int, str, str]:
    said = () if "--reason" in args else ("--reason", "capacity changed")  # required
    return run_cli(
        capsys, "lanes", "set", *args, *said, "--tracking-uri", reg["uri"],
        "--params", str(reg["params"]),
    )  # fmt: skip


def test_lanes_set_reports_the_share_a_saturated_cut_off_sends_and_warns(registry, capsys) -> None:
    """It said "(2% of traffic)" while the cut-off at the tied top score sent 5.7% to red."""
    reg = registry
    db = reg["root"] / "audit.db"
    tied = _saturated_store(db, reg["version"])
    assert tied > 0.05
    code, out, err = _set(capsys, reg, "--red", "0.02", "--yellow", "0.05", "--db", str(db))
    assert code == 0, err
    share = f"{100 * tied:.3g}%"
    assert f"red >= 0.97 ({share} of the traffic fitted on, 2% asked)" in out
    assert (
        f"warning: the red cut-off sends {share} of the traffic it was fitted on to red, not "
        "the 2% asked: parcels tied on one priority (a saturated score)"
    ) in err
    # yellow takes its 5% below the tied parcels, not what red left of 7%
    assert "yellow >= 0.919071 (next 5%, 5% asked)" in out
    assert "the yellow cut-off sends" not in err


def test_lanes_set_on_untied_traffic_reports_the_share_asked_without_warning(
    registry, capsys
) -> None:
    reg = registry
    db = reg["root"] / "audit.db"
    _traffic_store(db, reg["version"], days=10, per_day=400)
    code, out, err = _set(capsys, reg, "--red", "0.02", "--yellow", "0.05", "--db", str(db))
    assert code == 0, err
    assert "(2% of the traffic fitted on, 2% asked)" in out and "(next 5%, 5% asked)" in out
    assert "warning" not in err
