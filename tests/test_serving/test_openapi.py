"""The OpenAPI document at /docs.json: valid, honest, local, and what the server really answers.

The last test is a schemathesis run over every documented operation, with each role's key and
without a key: no 5xx, and every answer's status, content type, headers and body as documented.
It is derandomized (hypothesis ``derandomize=True``, no example database), so it cannot flake.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from serving.auth import DOCS_PATHS, OPEN_PATHS, ROUTE_ROLES
from serving.openapi import OPENAPI_VERSION, document_bytes
from tests.test_serving.conftest import (
    AUDITOR_KEY,
    INSPECTOR_KEY,
    SCORER_KEY,
    auth,
    make_declarations,
    service_app,
)

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
KEYS: dict[str, str | None] = {
    "scorer": SCORER_KEY,
    "auditor": AUDITOR_KEY,
    "inspector": INSPECTOR_KEY,
    "no-key": None,
}
SERVED = {
    ("post", "/score"),
    ("post", "/explain"),
    ("post", "/decision"),
    ("get", "/decision"),
    ("post", "/outcomes"),
    ("get", "/livez"),
    ("get", "/readyz"),
    ("get", "/healthz"),
    ("get", "/metrics"),
    ("get", "/docs.json"),
}


@pytest.fixture(scope="module")
def asgi_app(service_env) -> Any:
    """The service app; schemathesis runs its lifespan once for this module, then ends it."""
    from schemathesis.python import asgi

    yield service_app()
    asgi.shutdown_lifespans()


@pytest.fixture(scope="module")
def api_schema(asgi_app) -> Any:
    return schemathesis.openapi.from_asgi("/docs.json", asgi_app, headers=auth())


@pytest.fixture(scope="module")
def document(api_schema) -> dict[str, Any]:
    return api_schema.raw_schema


def _headers(role: str) -> dict[str, str]:
    key = KEYS[role]
    return {"X-API-Key": key} if key else {}


# --- the document itself ----------------------------------------------------------------------


def test_the_document_is_valid_openapi_3_1(document) -> None:
    from openapi_spec_validator import validate

    assert document["openapi"] == OPENAPI_VERSION == "3.1.0"
    validate(document)


def test_the_document_names_no_other_site(document) -> None:
    urls = re.findall(r"https?://[^\s\"')]+", json.dumps(document))
    assert [u for u in urls if not re.match(r"https?://(localhost|127\.0\.0\.1)\b", u)] == []
    assert "shields.io" not in json.dumps(document) and "badgen" not in json.dumps(document)


def test_every_served_path_is_documented_and_nothing_else(document) -> None:
    documented = {(m, p) for p, item in document["paths"].items() for m in item}
    assert documented == SERVED


def test_security_the_probes_are_open_the_api_paths_need_their_roles(document) -> None:
    schemes = document["components"]["securitySchemes"]
    assert schemes["apiKey"] == {"type": "apiKey", "in": "header", "name": "X-API-Key"}
    assert schemes["bearer"]["scheme"] == "bearer"
    assert document["security"] == [{"apiKey": []}, {"bearer": []}]
    for method, path in SERVED:
        operation = document["paths"][path][method]
        assert (operation.get("security") == []) == (path in OPEN_PATHS | DOCS_PATHS), path
        if path in ROUTE_ROLES:
            assert operation["x-roles"] == sorted(ROUTE_ROLES[path])


def test_429_and_503_promise_retry_after(document) -> None:
    seen = 0
    for item in document["paths"].values():
        for operation in item.values():
            for status in ("429", "503"):
                if status in operation["responses"]:
                    assert operation["responses"][status]["headers"]["Retry-After"]["required"]
                    seen += 1
    assert seen >= 5


def test_the_request_model_is_the_contract_s_and_the_null_explain_id_is_allowed(document) -> None:
    from features.intake.contract import DECLARATION_FIELDS

    schemas = document["components"]["schemas"]
    assert set(schemas["Declaration"]["properties"]) == {f.name for f in DECLARATION_FIELDS}
    decision_id = schemas["Explanation"]["properties"]["decision_id"]
    assert {"type": "null"} in decision_id["anyOf"]


def test_the_document_is_built_once_per_process() -> None:
    assert document_bytes() is document_bytes()


def test_docs_json_opens_without_a_key_and_bentoml_s_schema_json_is_left_alone(asgi_app) -> None:
    """A browser opening the docs page sends no key (probe 14 F-05): the page, its Swagger UI
    and this document open without one; writing to them, and BentoML's own document, do not."""
    from schemathesis.python import asgi

    with asgi.get_client(asgi_app) as client:
        r = client.get("/docs.json")
        assert r.status_code == 200 and r.json()["openapi"] == OPENAPI_VERSION
        assert r.content == document_bytes()
        page = client.get("/")
        assets = re.findall(r"(?:src|href)=\"\./(static_content/[^\"]+)\"", page.text)
        assert page.status_code == 200 and "static_content/swagger-initializer.js" in assets
        for asset in assets:
            assert client.get("/" + asset).status_code == 200, asset
        assert "docs.json" in client.get("/static_content/swagger-initializer.js").text
        assert client.post("/docs.json", json={}).status_code == 401
        assert client.get("/schema.json").status_code == 401
        assert client.get("/schema.json", headers=auth()).json()["type"] == "service"


# --- the statuses the fuzzer rarely reaches, each checked against the document ----------------

_ONE = make_declarations(1, seed=31, prefix="OA")
_CASES: list[tuple[str, str, str, dict[str, Any], int]] = [
    # (method, path, role, request, expected status)
    ("POST", "/score", "scorer", {"body": {"declarations": _ONE}}, 200),
    ("POST", "/score", "no-key", {"body": {"declarations": _ONE}}, 401),
    ("POST", "/score", "auditor", {"body": {"declarations": _ONE}}, 403),
    ("POST", "/score", "scorer", {"body": {"declarations": [{"quantity": "many"}]}}, 400),
    ("POST", "/score", "scorer", {"body": {"declarations": [{}]}}, 400),
    ("POST", "/score", "scorer", {"body": {"declarations": []}}, 422),
    # no key but declarations (probe 14 F-07): a dry run would have been scored and stored
    ("POST", "/score", "scorer", {"body": {"declarations": _ONE, "dry_run": True}}, 400),
    (
        "POST",
        "/score",
        "scorer",
        {"body": {"declarations": [{**_ONE[0], "illicit": True}]}},
        422,
    ),
    ("POST", "/score", "scorer", {"body": "x" * 2_000_001}, 413),
    ("POST", "/score", "scorer", {"body": "a,b", "media_type": "text/plain"}, 415),
    ("POST", "/explain", "auditor", {"body": {"declaration": _ONE[0]}}, 200),
    ("POST", "/explain", "scorer", {"body": {"declaration": _ONE[0]}}, 403),
    ("POST", "/explain", "auditor", {"body": {"decision_id": "nope"}}, 404),
    ("POST", "/explain", "scorer", {"body": {}}, 422),
    ("POST", "/decision", "auditor", {"body": {}}, 400),
    ("POST", "/decision", "auditor", {"body": {"decision_id": "nope"}}, 404),
    ("GET", "/decision", "auditor", {"query": {"decision_id": "nope"}}, 404),
    ("GET", "/decision", "auditor", {}, 422),
    ("POST", "/outcomes", "inspector", {"body": {"outcomes": [{}]}}, 400),
    ("POST", "/outcomes", "inspector", {"body": {"outcomes": [{"zz": 1}]}}, 400),
    ("POST", "/outcomes", "inspector", {"body": {"outcomes": []}}, 422),
    ("GET", "/metrics", "no-key", {}, 401),
    ("GET", "/metrics", "scorer", {}, 200),
    ("GET", "/readyz", "no-key", {}, 200),
]


@pytest.mark.parametrize(
    ("method", "path", "role", "request_", "status"),
    _CASES,
    ids=[f"{m} {p} {r} {s}" for m, p, r, _, s in _CASES],
)
def test_each_status_is_answered_as_documented(
    api_schema, method: str, path: str, role: str, request_: dict[str, Any], status: int
) -> None:
    case = api_schema[path][method].Case(**request_)
    response = case.call_and_validate(headers=_headers(role), checks=CHECKS)
    assert response.status_code == status, response.text
    if status == 400 and "detail" in response.json():  # BentoML's validation, in our shape
        body = response.json()
        assert body["error"].startswith(body.get("field", "request body"))
        assert "url" not in json.dumps(body["detail"])


def test_every_answer_documents_x_request_id_and_every_operation_takes_one(document) -> None:
    """The id to quote to the operator is in the contract (probe 14 F-04): an optional request
    header of the form the service keeps, and a header of every answer but the 431 (sent
    before the request has an id)."""
    from serving.patches import REQUEST_ID_FORM

    for path, item in document["paths"].items():
        for method, operation in item.items():
            (param,) = [p for p in operation["parameters"] if p["name"] == "X-Request-ID"]
            assert param["in"] == "header" and param["required"] is False
            assert param["schema"]["pattern"] == f"^{REQUEST_ID_FORM.pattern}$"
            for status, response in operation["responses"].items():
                header = response.get("headers", {}).get("X-Request-ID")
                assert (header is not None) == (status != "431"), (method, path, status)
                assert header is None or header["required"]


def test_the_numbers_and_ids_of_a_decision_have_their_bounds(document) -> None:
    schemas = document["components"]["schemas"]
    decision = schemas["Decision"]["properties"]
    assert (decision["risk"]["minimum"], decision["risk"]["maximum"]) == (0, 1)
    assert decision["expected_revenue"]["minimum"] == 0
    assert decision["decision_id"]["pattern"] == "^[0-9a-f]{32}$"
    stored = schemas["StoredDecision"]["properties"]
    assert (stored["risk"]["minimum"], stored["risk"]["maximum"]) == (0, 1)
    assert stored["expected_revenue"]["minimum"] == 0
    assert schemas["ScoreRequest"]["additionalProperties"] is False
    assert schemas["ErrorResponse"]["required"] == ["error", "code"]
    for name in ("problems_total", "truncated", "detail_total", "loc"):
        assert name in schemas["ErrorResponse"]["properties"], name


def test_the_decision_ids_made_are_of_the_documented_form(document) -> None:
    from serving.scoring import new_decision_ids

    pattern = document["components"]["schemas"]["Decision"]["properties"]["decision_id"]
    assert all(re.fullmatch(pattern["pattern"], i) for i in new_decision_ids(50))


def test_a_request_id_sent_comes_back_as_documented(api_schema) -> None:
    case = api_schema["/score"]["post"].Case(
        body={"declarations": make_declarations(1, seed=34, prefix="RID")},
        headers={"X-Request-ID": "clearance-42"},
    )
    response = case.call_and_validate(headers=_headers("scorer"), checks=CHECKS)
    assert response.status_code == 200 and response.headers["x-request-id"] == ["clearance-42"]


def _call(api_schema, method: str, path: str, role: str, **request: Any) -> Any:
    """One request, validated against the document like the fuzzer's (a 503 is expected
    here: it is held to the document, not counted as a server error)."""
    case = api_schema[path][method].Case(**request)
    checks = [c for c in CHECKS if c is not not_a_server_error]
    return case.call_and_validate(headers=_headers(role), checks=checks)


def test_409_for_another_model_s_decision_and_for_a_contradicting_result(
    api_schema, monkeypatch
) -> None:
    import serving.service as service_module

    declarations = make_declarations(1, seed=32, prefix="OB")
    r = _call(api_schema, "POST", "/score", "scorer", body={"declarations": declarations})
    decision_id = r.json()["decisions"][0]["decision_id"]
    runtime = service_module._WORKER.service.runtime
    with monkeypatch.context() as m:
        m.setattr(runtime, "model_version", "999")
        r = _call(api_schema, "POST", "/explain", "auditor", body={"decision_id": decision_id})
        assert r.status_code == 409, r.text
    result = {
        "declaration_id": declarations[0]["declaration_id"],
        "inspected_at": "2026-05-02T08:00:00Z",
        "illicit": False,
    }
    r = _call(api_schema, "POST", "/outcomes", "inspector", body={"outcomes": [result]})
    assert r.status_code == 200, r.text
    result["illicit"] = True
    r = _call(api_schema, "POST", "/outcomes", "inspector", body={"outcomes": [result]})
    assert r.status_code == 409, r.text


def test_409_for_a_damaged_record_on_both_decision_operations(api_schema, service_env) -> None:
    """A stored record edited into bytes that are not text: 409 on GET and POST /decision,
    as documented (probe 14 F-04: the status was answered but not in the document)."""
    import sqlite3

    r = _call(
        api_schema,
        "POST",
        "/score",
        "scorer",
        body={"declarations": make_declarations(1, seed=35, prefix="DMG")},
    )
    decision_id = r.json()["decisions"][0]["decision_id"]
    db = sqlite3.connect(service_env / "audit.db", timeout=30)
    where = "WHERE decision_id = ?"
    (kept,) = db.execute(
        f"SELECT declaration_json FROM decisions {where}", (decision_id,)
    ).fetchone()
    db.execute(
        f"UPDATE decisions SET declaration_json = CAST(x'ff00fe' AS TEXT) {where}", (decision_id,)
    )
    db.commit()
    try:
        got = _call(api_schema, "GET", "/decision", "auditor", query={"decision_id": decision_id})
        posted = _call(
            api_schema, "POST", "/decision", "auditor", body={"decision_id": decision_id}
        )
    finally:
        db.execute(f"UPDATE decisions SET declaration_json = ? {where}", (kept, decision_id))
        db.commit()
        db.close()
    for response in (got, posted):
        assert response.status_code == 409, response.text
        assert response.json()["code"] == "decision.damaged"


def test_429_and_503_answers_carry_retry_after(api_schema, monkeypatch) -> None:
    # Patched on the classes: whichever service instance this module's lifespan runs answers.
    import serving.service as service_module
    from serving.batching import MicroBatcher
    from serving.sqlite_store import SqliteDecisionStore, StoreUnavailable

    body = {"declarations": make_declarations(1, seed=33, prefix="OC")}
    with monkeypatch.context() as m:  # the queue is full
        m.setattr(MicroBatcher, "expected_wait_s", lambda self, rows: 1e3)
        r = _call(api_schema, "POST", "/score", "scorer", body=body)
        assert r.status_code == 429 and int(r.headers["retry-after"][0]) >= 1, r.text

    def full(*args: Any, **kwargs: Any) -> None:
        raise StoreUnavailable("decision store audit.db: database or disk is full (SQLITE_FULL)")

    with monkeypatch.context() as m:  # the store cannot write
        m.setattr(SqliteDecisionStore, "record", full)
        r = _call(api_schema, "POST", "/score", "scorer", body=body)
        assert r.status_code == 503 and int(r.headers["retry-after"][0]) >= 1, r.text
    with monkeypatch.context() as m:  # the worker has no model (yet)
        m.setattr(service_module._WORKER, "not_ready", "champion model not loaded: test")
        r = _call(api_schema, "GET", "/readyz", "no-key")
        assert r.status_code == 503 and r.json()["ready"] is False, r.text
        assert int(r.headers["retry-after"][0]) >= 1


def test_a_503_says_when_to_retry() -> None:
    from serving.errors import error_response, not_ready_response

    assert error_response(503, "store locked").headers["retry-after"] == "5"
    assert error_response(429, "busy", headers={"Retry-After": "3"}).headers["retry-after"] == "3"
    assert not_ready_response("loading").headers["retry-after"] == "5"


def test_an_error_detail_that_is_nan_is_sent_as_null() -> None:
    from serving.errors import error_response

    response = error_response(400, "refused", problems=[{"declaration_id": float("nan")}])
    assert json.loads(response.body) == {
        "error": "refused",
        "code": "bad_request",
        "problems": [{"declaration_id": None}],
    }


def test_the_refusal_answers_patch_is_for_this_bentoml() -> None:
    import bentoml

    from serving.patches import REFUSAL_ANSWERS_WRITTEN_FOR, install_refusal_answers

    assert install_refusal_answers() and install_refusal_answers()  # idempotent
    assert bentoml.__version__ == REFUSAL_ANSWERS_WRITTEN_FOR, (
        "BentoML changed: check that install_refusal_answers still catches its request "
        "validation, then update REFUSAL_ANSWERS_WRITTEN_FOR"
    )


# --- schemathesis over every operation -------------------------------------------------------
# Hypothesis drives schemathesis' strategies directly: its pytest plugin (lazy schemas) does
# not run under pytest 9 (it reads the removed ``Function._nodeid``).

EXAMPLES_PER_OPERATION = 5  # per generation mode; each example is sent with every key: ~220 calls


def test_schemathesis_every_answer_matches_the_document(api_schema, document) -> None:
    """Valid and invalid requests for every operation, each sent once per role's key and once
    without a key: no 5xx, every answer as documented."""
    from collections import Counter

    from hypothesis import given
    from schemathesis import GenerationMode

    statuses: Counter[int] = Counter()
    operations = [result.ok() for result in api_schema.get_all_operations()]
    # schemathesis leaves out the document it was loaded from (checked on its own above)
    assert {(op.method, op.path) for op in operations} == SERVED - {("get", "/docs.json")}
    for operation in operations:
        spec = document["paths"][operation.path][operation.method]
        takes_input = "requestBody" in spec or "parameters" in spec
        for mode in [GenerationMode.POSITIVE] + [GenerationMode.NEGATIVE] * takes_input:

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(
                max_examples=EXAMPLES_PER_OPERATION,
                derandomize=True,
                database=None,
                deadline=None,
                phases=[Phase.explicit, Phase.generate],  # no shrinking: report the first case
                suppress_health_check=list(HealthCheck),
            )
            def run(case: Any) -> None:
                for role in KEYS:
                    response = case.call_and_validate(headers=_headers(role), checks=CHECKS)
                    statuses[response.status_code] += 1

            run()
    assert sum(statuses.values()) >= 200, statuses
    assert statuses[200] and statuses[401] and statuses[403] and statuses[400], statuses


def test_the_body_limit_and_the_retry_safe_statuses_are_stated(document) -> None:
    """A generated client must know where to split a batch (a batch within ``maxItems`` and
    ``maxLength`` passed the byte limit and got a 413 the document gave no number for), and
    which statuses are safe to send again (probe 31)."""
    from serving.config import worker_settings

    limit = worker_settings().serve.max_body_bytes
    for path in ("/score", "/outcomes", "/explain"):
        operation = document["paths"][path]["post"]
        assert operation["requestBody"]["x-max-body-bytes"] == limit
        assert f"{limit:,} bytes" in operation["responses"]["413"]["description"]
        assert "retrying is safe" in operation["responses"]["408"]["description"]
    failed = document["paths"]["/score"]["post"]["responses"]["500"]["description"]
    assert "`features.failed`" in failed and "retrying is safe" in failed


def test_every_code_the_server_answers_or_warns_is_listed_in_the_document(document) -> None:
    """A client generated from the document must know every code it can meet (probe 31: the
    rules' warning codes were three examples, and decision.archive_unavailable was missing)."""
    import re
    from pathlib import Path

    from serving.schemas import rule_warning_codes

    schemas = document["components"]["schemas"]
    errors = schemas["ErrorResponse"]["properties"]["code"]["description"]
    sources = "".join(
        path.read_text() for path in (Path(__file__).resolve().parents[2] / "serving").rglob("*.py")
    )
    answered = set(re.findall(r'code="([a-z_.]+)"', sources))
    assert answered and {c for c in answered if f"`{c}`" not in errors} == set()
    warnings = schemas["Decision"]["properties"]["warning_codes"]["description"]
    assert "declared_at.ahead" in rule_warning_codes()
    assert {c for c in rule_warning_codes() if f"`{c}`" not in warnings} == set()
