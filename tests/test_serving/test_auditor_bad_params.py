"""The auditor pages refuse parameters that do not parse, and ones a page does not read, with a
400 that names them; a model version no registry could hold is a 404, not a registry outage."""

from __future__ import annotations

import pytest

from serving.auditor.pages import DECISIONS_QUERY
from serving.auditor.query import QueryProblem, parse_query
from tests.test_serving.conftest import AUDITOR_KEY, auth, make_declarations

# --- parsing (pure) ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("items", "parsed"),
    [
        ([("from", "2026-05-01")], {"from": "2026-05-01T00:00:00.000000Z"}),
        # the stored form: a trailing Z no longer sorts after every time of that day
        ([("to", "2026-05-01T10:00Z")], {"to": "2026-05-01T10:00:00.000000Z"}),
        ([("from", " 2026-05-01T10:00:30.5 ")], {"from": "2026-05-01T10:00:30.500000Z"}),
        ([("model_version", "03")], {"model_version": "3"}),
        ([("after_seq", "120"), ("lane", "red")], {"after_seq": 120, "lane": "red"}),
        ([("lane", ""), ("from", "  ")], {}),  # empty form fields: no filter
        ([], {}),
    ],
)
def test_parameters_parse_to_what_the_store_compares(items, parsed) -> None:
    assert parse_query(items, DECISIONS_QUERY) == parsed


@pytest.mark.parametrize(
    ("items", "named", "expected"),
    [
        ([("since", "notadate")], "'since'", "it reads from, to, lane"),
        ([("page", "abc")], "'page'", "after_seq"),
        ([("from", "yesterday")], "from:", "like 2026-05-01"),
        ([("to", "2026-02-30")], "to:", "a real day and time"),
        ([("from", "2026-05-01T25:00")], "from:", "a real day and time"),
        ([("lane", "purple")], "lane:", "one of"),
        ([("after_seq", "abc")], "after_seq:", "a whole number"),
        ([("after_seq", "²")], "after_seq:", "a whole number"),  # str.isdigit() takes it
        ([("after_seq", "-1")], "after_seq:", "a whole number"),
        ([("after_seq", "9" * 30)], "after_seq:", "a whole number"),  # beyond 64 bits
        ([("model_version", "v3")], "model_version:", "a whole number like 3"),
        ([("model_version", "３")], "model_version:", "a whole number like 3"),
        ([("lane", "red"), ("lane", "green")], "lane:", "give it once"),
        ([("declaration_id", "x" * 201)], "declaration_id:", "at most 200 characters"),
    ],
)
def test_a_parameter_that_does_not_parse_is_refused_by_name(items, named, expected) -> None:
    with pytest.raises(QueryProblem) as refused:
        parse_query(items, DECISIONS_QUERY)
    assert str(refused.value).startswith(named) and expected in str(refused.value)


def test_a_page_that_reads_no_parameter_refuses_any() -> None:
    assert parse_query([], {}) == {}
    with pytest.raises(QueryProblem) as refused:
        parse_query([("since", "2026-05-01")], {})
    assert str(refused.value) == "'since': not a parameter of this page (it reads none)"


# --- the pages on the service ---------------------------------------------------------------


def _sign_in(client) -> None:
    client.cookies.clear()
    r = client.post("/auditor/login", data={"key": AUDITOR_KEY}, follow_redirects=False)
    assert r.status_code == 303


def _scored(client, n: int, seed: int) -> list[dict]:
    declarations = make_declarations(n, seed=seed, prefix="BAD")
    r = client.post("/score", json={"declarations": declarations}, headers=auth())
    assert r.status_code == 200, r.text
    return r.json()["decisions"]


def _refused(r, status: int, *phrases: str) -> None:
    """An HTML page like the pages' other errors, whose message says ``phrases``."""
    assert r.status_code == status, r.text[-800:]
    assert r.headers["content-type"].startswith("text/html")
    assert r.headers["content-security-policy"].startswith("default-src 'none'")
    assert "retry-after" not in r.headers
    for phrase in phrases:
        assert phrase in r.text, r.text[-800:]


@pytest.mark.parametrize(
    ("params", "phrases"),
    [
        ({"since": "notadate"}, ("&#39;since&#39;: not a parameter", "from, to, lane")),
        ({"page": "abc"}, ("&#39;page&#39;: not a parameter", "after_seq")),
        ({"from": "2026-02-30"}, ("from: a UTC date or date-time like 2026-05-01",)),
        ({"model_version": "abc"}, ("model_version: a whole number like 3",)),
        ({"after_seq": "²"}, ("after_seq: a whole number",)),
        ({"after_seq": "9" * 30}, ("after_seq: a whole number",)),
        ({"<script>": "1"}, ("&#39;&lt;script&gt;&#39;: not a parameter",)),
    ],
)
def test_the_list_refuses_a_parameter_it_cannot_apply(client, params, phrases) -> None:
    _scored(client, 3, seed=51)
    _sign_in(client)
    r = client.get("/auditor/decisions", params=params)
    _refused(r, 400, *phrases)
    assert '<table id="decisions">' in r.text and "no decision matches" in r.text
    assert "<script>" not in r.text


def test_the_list_refuses_a_filter_given_twice(client) -> None:
    _sign_in(client)
    r = client.get("/auditor/decisions?lane=red&lane=green")
    _refused(r, 400, "lane: give it once")


def test_a_time_filter_with_a_z_keeps_that_days_decisions(client) -> None:
    from serving.service import _WORKER

    decision = _scored(client, 1, seed=52)[0]
    record, _ = _WORKER.service.store.get(decision["decision_id"])
    _sign_in(client)
    day = record.answered_at[:10]
    r = client.get(
        "/auditor/decisions",
        params={"from": f"{day}Z", "declaration_id": record.declaration_id},
    )
    assert r.status_code == 200 and decision["decision_id"] in r.text


def test_a_model_version_filter_with_a_leading_zero_finds_that_version(client) -> None:
    decision = _scored(client, 1, seed=53)[0]
    _sign_in(client)
    r = client.get(
        "/auditor/decisions",
        params={"model_version": "03", "declaration_id": decision["declaration_id"]},
    )
    assert r.status_code == 200 and decision["decision_id"] in r.text


def test_the_start_page_passes_the_query_on_to_the_list(client) -> None:
    _sign_in(client)
    r = client.get("/auditor?lane=red", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/auditor/decisions?lane=red"
    assert client.get("/auditor/?since=x").status_code == 400


@pytest.mark.parametrize(
    "path", ["/auditor/decisions/anything?since=2026-05-01", "/auditor/models/parcel-risk/3?x=1"]
)
def test_a_page_that_reads_no_parameter_refuses_one(client, path) -> None:
    _sign_in(client)
    _refused(client.get(path), 400, "not a parameter of this page (it reads none)")


@pytest.mark.parametrize(
    ("version", "shown"),
    [
        ("abc", "&#39;abc&#39;"),
        ("1.0", "&#39;1.0&#39;"),
        ("-1", "&#39;-1&#39;"),
        ("９", "&#39;９&#39;"),
    ],
)
def test_a_version_that_is_not_a_number_is_not_found(client, version, shown) -> None:
    _sign_in(client)
    r = client.get(f"/auditor/models/parcel-risk/{version}")
    _refused(
        r, 404, f"no version {shown}", "of model parcel-risk", "a version is a whole number like 3"
    )
    assert "Registry unavailable" not in r.text


def test_a_version_too_long_for_the_registry_is_not_found(client) -> None:
    _sign_in(client)
    r = client.get(f"/auditor/models/parcel-risk/{'9' * 30}")
    _refused(r, 404, "of model parcel-risk")


def test_an_unknown_model_name_or_version_number_is_not_found(client, service_env) -> None:
    from models.registry import create_sqlite_store

    # as test_auditor_pages: a new store's tables take longer than the request timeout here
    create_sqlite_store(f"sqlite:///{service_env / 'mlflow.db'}")
    _sign_in(client)
    for path in ("/auditor/models/no-such-model/1", "/auditor/models/parcel-risk/999"):
        _refused(client.get(path), 404, "is not in the registry")


@pytest.mark.parametrize(
    ("error_code", "status", "heading"),
    [
        ("INVALID_PARAMETER_VALUE", 404, "Not found"),
        ("INTERNAL_ERROR", 503, "Registry unavailable"),
        ("PERMISSION_DENIED", 503, "Registry unavailable"),
    ],
)
def test_only_a_registry_that_fails_is_a_503_with_retry_after(
    client, monkeypatch, error_code, status, heading
) -> None:
    from mlflow.exceptions import MlflowException
    from mlflow.protos import databricks_pb2

    from serving.auditor.pages import AuditorPages

    def fail(self, service, name, version):
        code = getattr(databricks_pb2, error_code)
        raise MlflowException("the registry says no", error_code=code)

    monkeypatch.setattr(AuditorPages, "_model_view", fail)
    _sign_in(client)
    r = client.get("/auditor/models/parcel-risk/4")
    assert r.status_code == status and heading in r.text
    assert ("retry-after" in r.headers) == (status == 503)
