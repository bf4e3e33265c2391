"""Fixtures of the serving tests: a tiny real LightGBM model behind a stub online-feature function.

The stub features are a pure function of the declaration, so the service, lanes, reasons and
audit store are exercised exactly as in production without the features/models pipelines.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from features.intake.columns import columns_of, python_values
from features.notes import CATEGORY_UNKNOWN, RowNote
from features.pipeline.manifest import REASON_CONTEXT, FeatureManifest, FeatureSpec
from serving.scoring import ScoringRuntime

# BentoML's /metrics reads prometheus_client in multiprocess mode; the directory must exist
# before prometheus_client is first imported (as `parcelrisk serve` arranges for its workers).
os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="parcelrisk-prom-"))
# OpenMP threads that spin while waiting turn LightGBM training into a crawl when the two cores
# are shared (service threads in this process, other jobs on the machine): let them sleep.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

# The service's BentoML settings (workers, timeout, concurrency) are read from PARCELRISK_*
# variables when serving.service is first imported. Import it now, before a test sets them (the
# `parcelrisk serve` tests do, and the command imports the service).
import serving.service  # noqa: F401

ORIGINS = ("CN", "US", "TR", "GB", "IN")
SCORER_KEY = "scorer-key-0123456789abcdef"
AUDITOR_KEY = "auditor-key-0123456789abcdef"
INSPECTOR_KEY = "inspector-key-0123456789abcdef"
# Every in-process service gets every role: the ASGI app (one per process, service_app) keeps
# the key ring of its first request, so a module setting other keys would depend on test order.
API_KEYS = f"scorer:{SCORER_KEY},auditor:{AUDITOR_KEY},inspector:{INSPECTOR_KEY}"

MANIFEST = FeatureManifest(
    features=(
        FeatureSpec(
            "log_value",
            "valuation",
            "float",
            "Declared value is unusual",
            "declared value {value:.2f} (log EUR) for HS {hs6}",
        ),
        FeatureSpec(
            "unit_value",
            "valuation",
            "float",
            "Declared unit value is unusual",
            "declared unit value {value:.2f} per item from {origin_country}",
        ),
        FeatureSpec("weight", "shipment", "float", "Parcel weight", "gross weight {value:.1f} kg"),
        FeatureSpec("quantity", "shipment", "int", "Item count", "{value} items declared"),
        FeatureSpec(
            "origin",
            "route",
            "category",
            "Origin country risk",
            "goods declared as originating in {value}",
            categories=ORIGINS,
        ),
        FeatureSpec(
            "aeo", "trader", "int", "Operator AEO status", "operator AEO flag {value} ({unknown})"
        ),
    ),
    params={"stub": True},
)


@dataclass
class StubFeatures:
    """What the scoring path reads of ``features.pipeline.online.OnlineFeatures``, over a feature frame."""

    frame: pd.DataFrame

    def __len__(self) -> int:
        return len(self.frame)

    def matrix(self) -> np.ndarray:
        return MANIFEST.matrix(self.frame)

    @property
    def values(self) -> dict[str, np.ndarray]:
        return {name: self.frame[name].to_numpy(np.float64) for name in MANIFEST.names}

    @property
    def context(self) -> dict[str, np.ndarray]:
        columns = [c for c in REASON_CONTEXT if c in self.frame.columns]
        return {c: np.array(python_values(self.frame[c]), dtype=object) for c in columns}

    def context_of(self, X: np.ndarray) -> dict[str, np.ndarray]:
        return self.context  # no derived context: nothing to hold to the stored vector


def stub_features(declarations: Any) -> tuple[StubFeatures, list[RowNote]]:
    """Declaration -> features, vectorised, with warnings for unknown origins like the real one."""
    declarations = columns_of(declarations).frame()
    origin_code = pd.Categorical(declarations["origin_country"], categories=ORIGINS).codes
    frame = pd.DataFrame(
        {
            "declaration_id": declarations["declaration_id"],
            "declared_at": declarations["declared_at"],
            "hs_code": declarations["hs_code"],
            "hs6": declarations["hs_code"].str[:6],
            "hs_chapter": declarations["hs_code"].str[:2],
            "origin_country": declarations["origin_country"],
            "seller_id": declarations["seller_id"],
            "consignee_id": declarations["consignee_id"],
            "platform_id": declarations["platform_id"],
            "operator_id": declarations["operator_id"],
            "currency": declarations["currency"],
            "log_value": np.log1p(declarations["declared_value"].to_numpy(float)),
            "unit_value": declarations["declared_value"].to_numpy(float)
            / declarations["quantity"].to_numpy(float),
            "weight": declarations["gross_weight_kg"].to_numpy(float),
            "quantity": declarations["quantity"].to_numpy(float),
            "origin": origin_code.astype(float),
            "aeo": declarations["aeo_operator"].to_numpy(float),
        }
    )
    warnings = [
        RowNote(
            int(i),
            f"origin_country {declarations['origin_country'].iloc[i]!r} never seen",
            CATEGORY_UNKNOWN,
        )
        for i in np.flatnonzero(origin_code < 0)
    ]
    return StubFeatures(frame), warnings


def make_declarations(n: int, seed: int = 0, prefix: str = "D") -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        out.append(
            {
                "declaration_id": f"{prefix}{seed}-{i}",
                "declared_at": "2026-05-01T10:00:00Z",
                "arrival_office": "DE001",
                "channel": ["postal", "express", "courier"][i % 3],
                "operator_id": f"OP{i % 4}",
                "platform_id": None if i % 5 == 0 else f"PL{i % 3}",
                "seller_id": f"S{rng.integers(0, 50)}",
                "seller_country": "CN",
                "consignee_id": f"C{rng.integers(0, 500)}",
                "consignee_region": None,
                "origin_country": ORIGINS[int(rng.integers(0, len(ORIGINS)))],
                "hs_code": str(rng.choice(["610910", "851712", "950300", "33049900"])),
                "description": "cotton t-shirt",
                "quantity": int(rng.integers(1, 20)),
                "gross_weight_kg": float(np.round(rng.uniform(0.1, 10), 3)),
                "declared_value": float(np.round(rng.lognormal(3, 1), 2)),
                "currency": "EUR",
                "category": "merchandise",
                "ioss_prepaid": bool(i % 2),
                "aeo_operator": bool(i % 7 == 0),
            }
        )
    return out


def _train_model(tmp: Path):
    import lightgbm as lgb

    from features.intake.columns import declarations_frame
    from models.bundle import Calibration, LaneThresholds, RiskModel

    frame = stub_features(declarations_frame(make_declarations(3000, seed=99, prefix="T")))[0].frame
    X = MANIFEST.matrix(frame)
    rng = np.random.default_rng(1)
    logit = (
        -3 + 0.8 * (X[:, 1] < 2) + 0.6 * (X[:, 4] == 0) + 0.05 * X[:, 2] + rng.normal(0, 1, len(X))
    )
    y = (rng.uniform(size=len(X)) < 1 / (1 + np.exp(-logit))).astype(int)
    params = {"objective": "binary", "num_leaves": 7, "verbose": -1, "seed": 1}
    booster = lgb.train(
        params,
        lgb.Dataset(X, y, feature_name=MANIFEST.names, categorical_feature=[4]),
        num_boost_round=40,
    )
    revenue = lgb.train(
        {"objective": "regression", "num_leaves": 7, "verbose": -1, "seed": 1},
        lgb.Dataset(X, np.log1p(X[:, 0] * 3), feature_name=MANIFEST.names),
        num_boost_round=10,
    )
    raw = booster.predict(X, raw_score=True)
    knots = np.quantile(raw, np.linspace(0, 1, 11))
    calibration = Calibration(tuple(knots), tuple(np.linspace(0.001, 0.6, 11)))
    risk = calibration(raw)
    thresholds = LaneThresholds(
        objective="risk",
        red_cutoff=float(np.quantile(risk, 0.95)),
        yellow_cutoff=float(np.quantile(risk, 0.80)),
        red_rate=0.05,
        yellow_rate=0.15,
        version="thr-test-1",
    )
    model = RiskModel(MANIFEST, booster, revenue, calibration, thresholds, {})
    return RiskModel.load(model.save(tmp / "bundle"))


@pytest.fixture(scope="session")
def stub_runtime(tmp_path_factory: pytest.TempPathFactory) -> ScoringRuntime:
    model = _train_model(tmp_path_factory.mktemp("model"))
    from features.intake.rules import Limits, rules_for
    from features.params import FeatureParams, ServeParams

    config = ServeParams(exploration_rate=0.05, exploration_seed=7)
    limits = Limits.from_params({}, FeatureParams())
    rules = rules_for(limits, with_outcomes=False)
    return ScoringRuntime(
        model,
        stub_features,
        "parcel-risk",
        "3",
        config,
        run_id="run-test",
        fault_rules=[r for r in rules if r.severity == "fault"],
        warning_rules=[r for r in rules if r.severity == "warning"],
        limits=limits,
    )


@pytest.fixture(scope="module")
def service_env(tmp_path_factory: pytest.TempPathFactory, stub_runtime) -> Iterator[Path]:
    import serving.service as service_module

    tmp = tmp_path_factory.mktemp("svc")
    params = tmp / "params.yaml"
    params.write_text(
        "serve:\n  exploration_rate: 0.05\n  exploration_seed: 7\n  max_body_bytes: 2000000\n"
        "  champion_check_s: 0\n"
    )
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PARCELRISK_API_KEYS", API_KEYS)
        mp.delenv("PARCELRISK_API_KEYS_FILE", raising=False)
        mp.delenv("PARCELRISK_INSECURE_NO_AUTH", raising=False)
        mp.setenv("PARCELRISK_AUDIT_DB", str(tmp / "audit.db"))
        mp.setenv("PARCELRISK_PARAMS", str(params))
        mp.setenv("PARCELRISK_TRACKING_URI", f"sqlite:///{tmp / 'mlflow.db'}")
        mp.setattr(service_module, "load_runtime", lambda settings, uri, dst: stub_runtime)
        yield tmp


_APP: list[Any] = []


def service_app() -> Any:
    """One ASGI app per process: BentoML registers its own Prometheus metrics per app.

    Each ``TestClient`` context runs the lifespan again, so every client still gets a fresh
    service instance built from the environment of that moment.
    """
    if not _APP:
        from serving.service import ParcelRiskService

        _APP.append(ParcelRiskService.to_asgi())
    return _APP[0]


def check_response_shape(response: Any) -> None:
    """Hold every answer of /score, /explain and /decision to its documented pydantic model.

    The service sends plain dicts (faster than building response models), so this is where
    their shape is checked: the body must validate and re-serialise to itself, which also
    refuses undocumented keys. Errors must be ``ErrorResponse``.
    """
    from serving.schemas import ErrorResponse, Explanation, ScoreResponse, StoredDecision

    models = {"/score": ScoreResponse, "/explain": Explanation, "/decision": StoredDecision}
    path = response.request.url.path.rstrip("/")
    if path not in models:
        return
    response.read()
    model = models[path] if response.status_code == 200 else ErrorResponse
    body = response.json()
    parsed = model.model_validate(body)
    assert parsed.model_dump(mode="json", exclude_unset=True) == body, (path, body)


def checked_client(app: Any) -> Any:
    """A TestClient whose every API response is checked by ``check_response_shape``."""
    from starlette.testclient import TestClient

    client = TestClient(app)
    client.event_hooks = {"request": [], "response": [check_response_shape]}
    return client


@pytest.fixture(scope="module")
def client(service_env: Path):
    with checked_client(service_app()) as c:
        yield c


def wait_for(condition: Any, timeout: float = 10.0) -> bool:
    """Poll ``condition()`` every 50 ms until it holds or ``timeout`` seconds pass."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def auth(role: str = "scorer") -> dict[str, str]:
    keys = {"scorer": SCORER_KEY, "auditor": AUDITOR_KEY, "inspector": INSPECTOR_KEY}
    return {"X-API-Key": keys[role]}


# --- the real pipeline, once per session ------------------------------------------------------


def fresh_declarations(history: pd.DataFrame, n: int, prefix: str = "NEW") -> pd.DataFrame:
    """The last ``n`` declarations of a history, re-issued one day after it ends (new ids)."""
    out = history.tail(n).reset_index(drop=True).copy()
    start = history["declared_at"].max() + pd.Timedelta(days=1)
    out["declared_at"] = start + pd.to_timedelta(np.arange(n), unit="s")
    out["declaration_id"] = [f"{prefix}{i:06d}" for i in range(n)]
    return out


def score_into_store(runtime: Any, db: Path, parcels: pd.DataFrame) -> list[Any]:
    """Score declarations through the real path, 100 at a time, into the store at ``db`` (the
    live state caught up before each batch, as a worker does); the records written."""
    from serving.outcome_store import SqliteOutcomeStore
    from serving.scoring import decision_records, score_frame
    from serving.sqlite_store import SqliteDecisionStore

    store, results = SqliteDecisionStore(db), SqliteOutcomeStore(db)
    records: list[Any] = []
    try:
        for lo in range(0, len(parcels), 100):
            runtime.catch_up(store, results)
            batch = score_frame(parcels.iloc[lo : lo + 100].reset_index(drop=True), runtime)
            part = decision_records(batch, runtime)
            store.record(part)
            runtime.recorded(batch, part)
            records += part
    finally:
        results.close()
        store.close()
    return records


@pytest.fixture(scope="session")
def real_pipeline(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """generate (20k parcels, 60 days) -> features build -> train -> promote, temp SQLite MLflow."""
    import yaml

    from features.intake.io import read_declarations
    from features.params import load_settings, params_for_copy
    from features.pipeline.build import build_to_dir
    from features.synthetic import generate_to_dir
    from models.cli import run_promotion, run_training

    root = tmp_path_factory.mktemp("pipeline")
    params = params_for_copy(Path("params.yaml"))  # files it names made absolute
    params["train"]["lightgbm"]["n_estimators"] = 150  # enough trees for a test, fast to fit
    params["serve"] = {**params.get("serve", {}), "exploration_rate": 0.02}
    params_path = root / "params.yaml"
    params_path.write_text(yaml.safe_dump(params))
    tracking_uri = f"sqlite:///{root / 'mlflow.db'}"
    generate_to_dir(parcels=20_000, days=60, seed=5, out=root / "raw", start="2026-01-01")
    build_to_dir(
        declarations_path=root / "raw" / "declarations.parquet",
        out=root / "processed",
        settings=load_settings(params_path),
    )
    trained = run_training(
        root / "processed",
        settings=load_settings(params_path),
        tracking_uri=tracking_uri,
        metrics_out=None,
    )
    run_promotion(settings=load_settings(params_path), tracking_uri=tracking_uri)
    history, _ = read_declarations(root / "raw" / "declarations.parquet", with_outcomes=False)
    return {
        "root": root,
        "params": params_path,
        "tracking_uri": tracking_uri,
        "version": str(trained["version"]),
        "history": history,
    }


@contextlib.contextmanager
def service_client(env: dict[str, str]) -> Iterator[Any]:
    """A TestClient on the real service (real ``load_runtime``) with ``env`` set."""
    base = {
        "PARCELRISK_API_KEYS": API_KEYS,
        "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    }
    with pytest.MonkeyPatch.context() as mp:
        for k, v in {**base, **env}.items():
            mp.setenv(k, v)
        with checked_client(service_app()) as c:
            yield c


@contextlib.contextmanager
def stub_service_client(
    tmp: Path, stub_runtime: ScoringRuntime, params_yaml: str, audit_db: str | None = None
) -> Iterator[Any]:
    """A TestClient on the service scoring with ``stub_runtime``: its params (``params_yaml``)
    in ``tmp``, its decisions in ``audit_db`` (default: a SQLite file in ``tmp``)."""
    import serving.service as service_module

    (tmp / "params.yaml").write_text(params_yaml)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PARCELRISK_API_KEYS", API_KEYS)
        mp.delenv("PARCELRISK_API_KEYS_FILE", raising=False)
        mp.delenv("PARCELRISK_INSECURE_NO_AUTH", raising=False)
        mp.setenv("PARCELRISK_AUDIT_DB", audit_db or str(tmp / "audit.db"))
        mp.setenv("PARCELRISK_PARAMS", str(tmp / "params.yaml"))
        mp.setattr(service_module, "load_runtime", lambda settings, uri, dst: stub_runtime)
        with checked_client(service_app()) as c:
            yield c


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """``parcelrisk ARGS`` in process through ``serving.main.main``: (exit code, stdout, stderr)."""
    import sys

    from serving.main import main

    argv = sys.argv
    sys.argv = ["parcelrisk", *args]
    umask = os.umask(0o077)  # main() tightens the process's umask: the test session keeps its own
    os.umask(umask)
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    finally:
        sys.argv = argv
        os.umask(umask)
    out, err = capsys.readouterr()
    return code, out, err


def stored_decision(declaration: dict[str, Any], **fields: Any) -> Any:
    """A minimal stored decision: ``declaration`` (an id at least) as its JSON, placeholders
    for the rest (green, not explored, model parcel-risk v1), ``fields`` overriding them."""
    import json

    from serving.decision import DecisionRecord

    declaration_id = declaration["declaration_id"]
    defaults: dict[str, Any] = {
        "decision_id": f"dec-{declaration_id}",
        "scored_at": "2026-05-03T12:00:00.000000+00:00",
        "declaration_id": declaration_id,
        "declaration_json": json.dumps(declaration),
        "features": b"\x00" * 8,
        "manifest_fingerprint": "fp",
        "model_name": "parcel-risk",
        "model_version": "1",
        "thresholds_version": "thr",
        "lane_policy": "{}",
        "raw_score": 0.0,
        "risk": 0.1,
        "expected_revenue": 0.0,
        "lane": "green",
        "exploration": False,
        "reasons": [],
        "warnings": [],
    }
    return DecisionRecord(**{**defaults, **fields})


def wait_until_serving(
    url: str,
    process: subprocess.Popen,
    log: Path,
    ready: Callable[[], bool] = lambda: True,
    timeout: float = 120,
) -> None:
    """Until a server started as ``process`` answers ``/readyz`` and ``ready()`` holds; the
    test fails with the tail of its ``log`` if it exits or does not get there in time."""
    import httpx

    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200 and ready():
                return
        except httpx.HTTPError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"service did not start: {log.read_text()[-2000:]}")
        time.sleep(0.5)


def decided_store(tmp_path: Path, declared: dict[str, str], scored_at: str | None = None) -> str:
    """A SQLite decision store under ``tmp_path`` holding one decision per declaration
    (``declared``: id -> declared_at, as stored); its location."""
    from serving.store import open_store

    location = str(tmp_path / "audit.db")
    store = open_store(location)
    when = {"scored_at": scored_at} if scored_at else {}
    store.record(
        [
            stored_decision(
                {"declaration_id": d, "declared_at": at}, decision_id=f"dec-{d}", **when
            )
            for d, at in declared.items()
        ]
    )
    store.close()
    return location


def ingest_results_csv(tmp_path: Path, location: str, text: str, mapping: str) -> Any:
    """``parcelrisk outcomes ingest`` of the CSV ``text`` through the mapping YAML ``mapping``
    into the store at ``location``: the CLI's result."""
    from typer.testing import CliRunner

    from serving.main import app

    source, mapping_path = tmp_path / "results.csv", tmp_path / "results.yaml"
    source.write_text(text)
    mapping_path.write_text(mapping)
    args = ["outcomes", "ingest", str(source), "--mapping", str(mapping_path), "--db", location]
    return CliRunner().invoke(app, args)


def execute_sql(location: str, statement: str) -> None:
    """What someone with write access to the database does, behind the service's back."""
    if location.startswith("postgresql"):
        import sqlalchemy as sa

        engine = sa.create_engine(location.replace("postgresql://", "postgresql+psycopg://"))
        with engine.begin() as conn:
            conn.exec_driver_sql(statement)
        engine.dispose()
        return
    import sqlite3

    conn = sqlite3.connect(location)
    with conn:
        conn.execute(statement)
    conn.close()


def query_sql(location: str, statement: str) -> list[tuple]:
    """Rows of ``statement`` read straight from the database (SQLite path or PostgreSQL URL)."""
    if location.startswith("postgresql"):
        import sqlalchemy as sa

        engine = sa.create_engine(location.replace("postgresql://", "postgresql+psycopg://"))
        with engine.connect() as conn:
            rows = [tuple(r) for r in conn.exec_driver_sql(statement)]
        engine.dispose()
        return rows
    import sqlite3

    conn = sqlite3.connect(location)
    rows = conn.execute(statement).fetchall()
    conn.close()
    return rows


@pytest.fixture(params=["sqlite", "postgresql"])
def location(request, tmp_path) -> str:
    """A fresh decision store's location, once per store: a SQLite file, then a PostgreSQL
    database (``postgres_url``: skipped, saying why, where no server starts). A test file
    needing another lifetime defines its own ``location``."""
    if request.param == "postgresql":
        return request.getfixturevalue("postgres_url")
    return str(tmp_path / "audit.db")
