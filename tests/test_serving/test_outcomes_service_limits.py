"""POST /outcomes holds a recovered revenue to the served params' validate.max_value (the
gate's plausibility limit in the base currency), not to the default."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests.test_serving.conftest import (
    INSPECTOR_KEY,
    SCORER_KEY,
    make_declarations,
    run_cli,
    stub_service_client,
)


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory, stub_runtime) -> Iterator:
    tmp = tmp_path_factory.mktemp("outcomes-limits")
    with stub_service_client(tmp, stub_runtime, "validate:\n  max_value: 500\n") as c:
        yield c


def _result(declaration_id: str, revenue: float) -> dict:
    return {
        "declaration_id": declaration_id,
        "inspected_at": "2026-05-02T08:00:00Z",
        "illicit": True,
        "offence_type": "undervaluation",
        "revenue_recovered": revenue,
    }


def test_a_revenue_above_the_served_max_value_is_refused(client) -> None:
    declarations = make_declarations(2, seed=5, prefix="LIM")
    r = client.post(
        "/score", json={"declarations": declarations}, headers={"X-API-Key": SCORER_KEY}
    )
    assert r.status_code == 200, r.text
    first, second = (d["declaration_id"] for d in declarations)
    headers = {"X-API-Key": INSPECTOR_KEY}
    refused = client.post("/outcomes", json={"outcomes": [_result(first, 600.0)]}, headers=headers)
    assert refused.status_code == 400, refused.text
    assert "revenue_recovered" in refused.text and "validate.max_value" in refused.text
    stored = client.post("/outcomes", json={"outcomes": [_result(second, 400.0)]}, headers=headers)
    assert stored.status_code == 200 and stored.json() == {"stored": 1, "unchanged": 0}


def test_outcomes_ingest_holds_results_to_its_params_max_value(tmp_path, capsys) -> None:
    from tests.test_serving.test_history_export_extras import _store_with_extras

    location = _store_with_extras(tmp_path)  # EXT3-0 has a result; EXT3-1 has none
    params = tmp_path / "params.yaml"
    params.write_text("validate:\n  max_value: 500\n")
    results = tmp_path / "results.csv"
    results.write_text(
        "declaration_id,inspected_at,inspected,illicit,offence_type,revenue_recovered\n"
        "EXT3-1,2026-05-02T09:00:00Z,true,true,undervaluation,600\n"
    )
    args = ("outcomes", "ingest", str(results), "--db", location, "--params", str(params))
    code, _, err = run_cli(capsys, *args)
    assert code != 0 and "validate.max_value" in err and "600" in err


def test_outcomes_ingest_can_skip_results_of_declarations_never_decided(tmp_path, capsys):
    """A national results file covers every inspected parcel, not only those scored here."""
    from tests.test_serving.test_history_export_extras import _store_with_extras

    location = _store_with_extras(tmp_path)
    results = tmp_path / "results.csv"
    results.write_text(
        "declaration_id,inspected_at,inspected,illicit,offence_type,revenue_recovered\n"
        "EXT3-1,2026-05-02T09:00:00Z,true,false,,\n"
        "ELSEWHERE-1,2026-05-02T09:00:00Z,true,true,undervaluation,20\n"
        "ELSEWHERE-2,2026-05-02T09:00:00Z,true,false,,\n"
    )
    code, _, err = run_cli(capsys, "outcomes", "ingest", str(results), "--db", location)
    assert code != 0 and "ELSEWHERE-1" in err and "has no decision in the store" in err
    code, out, err = run_cli(
        capsys, "outcomes", "ingest", str(results), "--db", location, "--skip-unknown"
    )
    assert code == 0, err
    body = json.loads(out)
    assert (body["stored"], body["skipped_unknown"]) == (1, 2)
    results.write_text(  # other problems still refuse the whole file
        "declaration_id,inspected_at,inspected,illicit,offence_type,revenue_recovered\n"
        "ELSEWHERE-3,2026-05-02T09:00:00Z,true,false,,\n"
        "EXT3-2,2026-04-01T09:00:00Z,true,false,,\n"
    )
    code, _, err = run_cli(
        capsys, "outcomes", "ingest", str(results), "--db", location, "--skip-unknown"
    )
    assert code != 0 and "EXT3-2" in err and "before" in err
    assert "row 2 (EXT3-2)" in err, err  # the file's row, not its place after the skip


def test_a_results_file_none_of_which_was_decided_here_is_said(tmp_path, capsys, caplog):
    """Not refused (a national file may hold none of a hub's parcels), but said: ids a
    spreadsheet wrote as numbers would otherwise be skipped unsaid every time."""
    from tests.test_serving.test_history_export_extras import _store_with_extras

    location = _store_with_extras(tmp_path)
    results = tmp_path / "results.csv"
    results.write_text(
        "declaration_id,inspected_at,inspected,illicit,offence_type,revenue_recovered\n"
        "ELSEWHERE-1,2026-05-02T09:00:00Z,true,false,,\n"
        "ELSEWHERE-2,2026-05-02T09:00:00Z,true,false,,\n"
    )
    with caplog.at_level("WARNING", logger="serving.outcomes"):
        code, out, err = run_cli(
            capsys, "outcomes", "ingest", str(results), "--db", location, "--skip-unknown"
        )
    assert code == 0, err
    assert json.loads(out)["skipped_unknown"] == 2
    assert "none of the 2 results names a declaration this store decided" in caplog.text
