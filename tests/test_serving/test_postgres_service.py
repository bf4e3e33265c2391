"""The service on a PostgreSQL decision store: scoring, retries, results and the auditor's
reads through the API and the CLI, and what a scorer sees while the server is down."""

from __future__ import annotations

import json
from collections.abc import Iterator

import mlflow
import pytest
from typer.testing import CliRunner

from tests.test_serving.conftest import (
    AUDITOR_KEY,
    INSPECTOR_KEY,
    auth,
    make_declarations,
    stub_service_client,
)


@pytest.fixture(scope="module")
def server() -> Iterator:
    """A PostgreSQL server of this module's own: one test stops and restarts it."""
    from tests.postgres import remove, server_or_skip

    started = server_or_skip()
    yield started
    remove(started)


@pytest.fixture(scope="module")
def location(server) -> str:
    return server.create_database()


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory, stub_runtime, location) -> Iterator:
    tmp = tmp_path_factory.mktemp("pg-svc")
    params = "serve:\n  champion_check_s: 0\n"
    with stub_service_client(tmp, stub_runtime, params, audit_db=location) as c:
        yield c


def _score(client, declarations: list[dict]):
    return client.post("/score", json={"declarations": declarations}, headers=auth())


def _post_clean_result(client, declaration_id: str) -> dict:
    """An inspector reports the parcel clean; the counts the service answers."""
    result = {
        "declaration_id": declaration_id,
        "inspected_at": "2026-05-02T08:00:00Z",
        "illicit": False,
    }
    posted = client.post(
        "/outcomes", json={"outcomes": [result]}, headers={"X-API-Key": INSPECTOR_KEY}
    )
    return posted.json()


def _cli(*args: str):
    from serving.main import app

    return CliRunner().invoke(app, list(args))


def test_decisions_results_and_retries_go_to_postgresql(client, location) -> None:
    from serving.store import open_store

    declarations = make_declarations(4, seed=61, prefix="PG")
    store = open_store(location)
    try:
        before = store.count()
        first = _score(client, declarations)
        assert first.status_code == 200, first.text
        again = _score(client, declarations)  # a retry: the stored decisions, not new ones
        assert again.json() == first.json()
        assert store.count() == before + 4
    finally:
        store.close()
    assert _post_clean_result(client, declarations[0]["declaration_id"]) == {
        "stored": 1,
        "unchanged": 0,
    }
    decision_id = first.json()["decisions"][1]["decision_id"]
    read = client.get(
        "/decision", params={"decision_id": decision_id}, headers={"X-API-Key": AUDITOR_KEY}
    )
    assert read.status_code == 200 and read.json()["intact"] is True


def test_the_auditor_commands_read_a_postgresql_store(client, location, tmp_path) -> None:
    declarations = make_declarations(2, seed=62, prefix="PGA")
    decisions = _score(client, declarations).json()["decisions"]
    assert _post_clean_result(client, declarations[1]["declaration_id"]) == {
        "stored": 1,
        "unchanged": 0,
    }
    verified = _cli("audit", "verify", "--db", location)
    assert verified.exit_code == 0, verified.output
    assert json.loads(verified.stdout)["problem"] is None
    # a tracking store of its own: `audit show` refuses a missing one (it passed alone only
    # when another test had left one behind)
    tracking = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mlflow.MlflowClient(tracking_uri=tracking).search_experiments()  # creates the store
    shown = _cli(
        "audit", "show", decisions[0]["decision_id"], "--db", location, "--tracking-uri", tracking
    )
    assert shown.exit_code == 0, shown.output
    assert declarations[0]["declaration_id"] in shown.stdout
    from serving.auditor.disparity import read_lane_counts
    from serving.store import open_store

    counts = read_lane_counts(location, "parcel-risk", "3")  # the auditor pages' fairness view
    store = open_store(location)
    try:
        assert sum(c.decisions for c in counts) == store.count() > 0
    finally:
        store.close()
    assert sum(c.inspected for c in counts) >= 1  # the result posted above
    no_dir = _cli("audit", "archive", "--before", "2026-01-01", "--db", location)
    assert no_dir.exit_code != 0 and "name the archive directory with --to" in str(no_dir.exception)


def test_a_scorer_gets_503_while_postgresql_is_down_then_service_again(
    client, server, location
) -> None:
    """Nothing is answered that was not recorded: while the server is down every request is
    a 503 naming the store (retry later), and once it is back the same replica records again,
    with no restart."""
    declarations = make_declarations(2, seed=63, prefix="PGDOWN")
    serving = _score(client, make_declarations(1, seed=64, prefix="PGUP"))
    assert serving.status_code == 200, serving.text
    server.stop(mode="fast")  # an outage, not a crash: the store's data outlives it
    try:
        down = _score(client, declarations)
        assert down.status_code == 503, down.text
        assert down.headers.get("retry-after") == "5"
        assert "decision store postgresql://postgres@127.0.0.1" in down.json()["error"]
        assert "nothing of it was stored" in down.json()["error"]
    finally:
        server.restart()
    back = _score(client, declarations)
    assert back.status_code == 200, back.text
    assert len(back.json()["decisions"]) == 2
