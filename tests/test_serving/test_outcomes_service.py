"""POST /outcomes in-process: the inspector role, all-or-nothing refusals, the documented shapes."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from serving.schemas import ErrorResponse, OutcomesResponse
from tests.test_serving.conftest import (
    AUDITOR_KEY,
    INSPECTOR_KEY,
    SCORER_KEY,
    make_declarations,
    stub_service_client,
)


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory, stub_runtime) -> Iterator:
    tmp = tmp_path_factory.mktemp("outcomes-svc")
    with stub_service_client(tmp, stub_runtime, "serve:\n  max_batch: 50\n") as c:
        yield c


def _scored_ids(client, n: int, seed: int) -> list[str]:
    declarations = make_declarations(n, seed=seed, prefix="OUT")  # declared 2026-05-01T10:00Z
    r = client.post(
        "/score", json={"declarations": declarations}, headers={"X-API-Key": SCORER_KEY}
    )
    assert r.status_code == 200, r.text
    return [d["declaration_id"] for d in declarations]


def _result(declaration_id: str, **changes) -> dict:
    return {
        "declaration_id": declaration_id,
        "inspected_at": "2026-05-02T08:00:00Z",
        "illicit": True,
        "offence_type": "misclassification",
        "revenue_recovered": 30.0,
        **changes,
    }


def _post(client, results, key=INSPECTOR_KEY):
    r = client.post("/outcomes", json={"outcomes": results}, headers={"X-API-Key": key})
    model = OutcomesResponse if r.status_code == 200 else ErrorResponse
    body = r.json()
    assert model.model_validate(body).model_dump(mode="json", exclude_unset=True) == body
    return r


@pytest.mark.parametrize(
    ("key", "status", "seed"), [(SCORER_KEY, 403, 30), (AUDITOR_KEY, 403, 31), ("", 401, 32)]
)
def test_only_inspectors_post_results(client, key, status, seed) -> None:
    (declaration_id,) = _scored_ids(client, 1, seed=seed)
    r = _post(client, [_result(declaration_id)], key=key)
    assert r.status_code == status, r.text
    assert _post(client, [_result(declaration_id)]).json() == {"stored": 1, "unchanged": 0}


def test_store_then_identical_repost_then_conflict(client) -> None:
    first, second = _scored_ids(client, 2, seed=41)
    cleared = _result(second, illicit=False, offence_type=None, revenue_recovered=0.0)
    assert _post(client, [_result(first), cleared]).json() == {"stored": 2, "unchanged": 0}
    assert _post(client, [_result(first), cleared]).json() == {"stored": 0, "unchanged": 2}
    r = _post(client, [_result(first, illicit=False, offence_type=None, revenue_recovered=None)])
    assert r.status_code == 409, r.text
    assert r.json()["problems"][0]["rule"] == "result.conflict"


def test_a_row_repeated_value_for_value_is_read_once_and_said(client) -> None:
    first, second = _scored_ids(client, 2, seed=43)
    r = _post(client, [_result(first), _result(second), _result(first)])
    assert r.json() == {"stored": 2, "unchanged": 0, "repeated_results_read_once": 1}
    # the same id with a result that differs is still refused, naming both rows
    r = _post(client, [_result(first), _result(first, revenue_recovered=31.0)])
    assert r.status_code == 400, r.text
    problems = r.json()["problems"]
    assert [p["loc"][1] for p in problems] == [0, 1]
    assert {p["rule"] for p in problems} == {"declaration_id.unique"}


def test_refusals_name_each_row_and_store_nothing(client) -> None:
    import sqlite3

    good, early, cleared = _scored_ids(client, 3, seed=42)
    results = [
        _result(good),
        _result(early, inspected_at="2026-04-30T08:00:00Z"),
        _result(cleared, illicit=False, offence_type="prohibited"),
        _result("never-scored"),
    ]
    r = _post(client, results)
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["error"].startswith("3 result(s) refused, nothing stored: outcomes.1")
    rules = {(p["loc"][1], p["rule"]) for p in body["problems"]}
    assert rules == {
        (1, "inspected_at.after_declaration"),
        (2, "offence_type.without_offence"),
        (2, "revenue_recovered.without_offence"),
        (3, "declaration_id.known"),
    }
    import os

    with sqlite3.connect(os.environ["PARCELRISK_AUDIT_DB"]) as conn:
        stored = conn.execute("SELECT COUNT(*) FROM outcomes WHERE declaration_id = ?", (good,))
        assert stored.fetchone()[0] == 0


def test_a_hostile_id_is_refused_in_one_short_line(client) -> None:
    """An id with a bidi override is named once (not also as missing, which contradicted it);
    a 10,000-character id is echoed cut short, in the message and in the problems."""
    r = _post(client, [_result("HO\u202e-000000")])
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert "control or invisible character" in error and "a value is required" not in error
    r = _post(client, [_result("X" * 10_000)])
    assert r.status_code == 400 and len(r.text) < 2_000, len(r.text)
    assert "(10,000 characters)" in r.json()["error"]


def test_type_errors_and_unknown_keys_answer_400(client) -> None:
    (declaration_id,) = _scored_ids(client, 1, seed=43)
    assert (
        _post(client, [_result(declaration_id, inspected_at="2026-05-02T08:00:00")]).status_code
        == 400
    )
    assert _post(client, [_result(declaration_id, inspected=True)]).status_code == 400
    assert _post(client, []).status_code == 422


def test_the_route_is_documented(client) -> None:
    schema = client.get("/docs.json", headers={"X-API-Key": INSPECTOR_KEY}).json()
    assert "/outcomes" in schema["paths"]
    text = str(schema)
    assert "undervaluation" in text and "declaration_id" in text
