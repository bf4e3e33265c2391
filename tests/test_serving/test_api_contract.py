"""The HTTP API's contract as a client generated from its document relies on it (probe 14):
a refused batch names every refused row (F-03), every error carries a stable ``code`` and one
path syntax (F-06), and a /score body holds no key but ``declarations`` (F-07)."""

from __future__ import annotations

import json
import sqlite3

import pytest

from features.errors import ParcelriskError
from serving.errors import MAX_PROBLEMS, listed_problems, validation_response
from tests.test_serving.conftest import auth, make_declarations


def _score(client, body):
    return client.post("/score", json=body, headers=auth())


def _stored(service_env, declaration_id: str) -> int:
    with sqlite3.connect(f"file:{service_env / 'audit.db'}?mode=ro", uri=True) as db:
        query = "select count(*) from decisions where declaration_id = ?"
        return db.execute(query, (declaration_id,)).fetchone()[0]


# --- F-03: one answer names every refused row ------------------------------------------------


def test_a_refused_batch_names_every_refused_row_and_the_rest_then_scores(client) -> None:
    """30 of 60 declarations break a rule: all 30 are named (20 were, with only an English
    "(+27 more)" to say so), and the 30 others, sent again alone, are scored."""
    batch = make_declarations(60, seed=41, prefix="ROWS")
    for row in range(1, 60, 2):
        batch[row]["declared_value"] = -1
    r = _score(client, {"declarations": batch})
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["code"] == "contract.rules"
    named = {p["loc"][1] for p in body["problems"]}
    assert named == set(range(1, 60, 2))
    assert body["problems_total"] == len(body["problems"]) and body["truncated"] is False
    assert all(p["loc"][0] == "declarations" and p["rule"] for p in body["problems"])
    rest = [d for row, d in enumerate(batch) if row not in named]
    assert _score(client, {"declarations": rest}).status_code == 200


def test_a_body_refused_by_validation_names_every_refused_row(client) -> None:
    """80 rows with a type error: every one is in ``detail`` (50 errors were, then the cut)."""
    batch = make_declarations(160, seed=42, prefix="TYPE")
    for row in range(0, 160, 2):
        batch[row]["quantity"] = "many"
    r = _score(client, {"declarations": batch})
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["code"] == "validation" and body["field"] == "declarations.0.quantity"
    assert {d["loc"][1] for d in body["detail"]} == set(range(0, 160, 2))
    assert body["detail_total"] == 80 and body["truncated"] is False


def _problems(rows: int, per_row: int) -> list[dict]:
    return [
        {"loc": ["declarations", row, f"field{k}"], "msg": "bad"}
        for row in range(rows)
        for k in range(per_row)
    ]


def test_listed_problems_keeps_every_row_past_the_cap_and_says_it_cut() -> None:
    listed = listed_problems(_problems(rows=6, per_row=3), limit=8)
    assert {p["loc"][1] for p in listed["problems"]} == set(range(6))
    assert len(listed["problems"]) == 8
    assert listed["problems_total"] == 18 and listed["truncated"] is True
    # in their order: a row's problems stay together
    rows = [p["loc"][1] for p in listed["problems"]]
    assert rows == sorted(rows)


def test_listed_problems_lists_all_under_the_cap() -> None:
    problems = _problems(rows=3, per_row=2)
    assert listed_problems(problems) == {
        "problems": problems,
        "problems_total": 6,
        "truncated": False,
    }


def test_a_validation_answer_is_bounded_for_a_body_of_any_length() -> None:
    """pydantic validates the list before the batch size is checked: a body of 100,000 bad
    items must not become an answer of 100,000 errors."""
    errors = [
        {"type": "model_type", "loc": ("declarations", i), "msg": "Input should be an object"}
        for i in range(100_000)
    ]
    import json

    body = json.loads(validation_response(errors).body)
    assert len(body["detail"]) == MAX_PROBLEMS and body["truncated"] is True
    assert body["detail_total"] == 100_000 and body["code"] == "validation"


# --- F-06: a code on every error, one path syntax ----------------------------------------------


def test_one_id_with_two_contents_is_named_in_the_dotted_syntax(client) -> None:
    first, second = make_declarations(2, seed=43, prefix="TWO")
    second = {**first, "declared_value": first["declared_value"] + 1}
    r = _score(client, {"declarations": [first, second]})
    assert r.status_code == 422, r.text
    body = r.json()
    assert body["code"] == "declaration_id.two_contents"
    assert body["field"] == "declarations.1.declaration_id"
    assert body["loc"] == ["declarations", 1, "declaration_id"]
    assert "[" not in body["error"].split(":")[0]


@pytest.mark.parametrize(
    ("body", "code", "field"),
    [
        ({"declarations": []}, "batch.size", "declarations"),
        (
            {"declarations": [{**make_declarations(1, seed=44)[0], "illicit": True}]},
            "outcome_field",
            "declarations.0.illicit",
        ),
    ],
    ids=["batch.size", "outcome_field"],
)
def test_each_422_of_score_has_its_code_and_a_dotted_field(client, body, code, field) -> None:
    r = _score(client, body)
    assert r.status_code == 422, r.text
    assert r.json()["code"] == code and r.json()["field"] == field
    assert r.json()["loc"] == [int(p) if p.isdigit() else p for p in field.split(".")]


def test_features_that_cannot_be_computed_are_a_500_with_its_code(
    client, monkeypatch, service_env
) -> None:
    import serving.service as service_module

    def fail(*args, **kwargs):
        raise ParcelriskError("online features returned 0 rows for 1")

    declaration = make_declarations(1, seed=45, prefix="FEAT")[0]
    monkeypatch.setattr(service_module, "score_frame", fail)
    r = _score(client, {"declarations": [declaration]})
    # the declaration passed every check: the service's failure, which a client retries
    assert r.status_code == 500, r.text
    assert r.json()["code"] == "features.failed" and r.json()["field"] == "declarations"
    assert _stored(service_env, declaration["declaration_id"]) == 0


@pytest.mark.parametrize(
    ("method", "path", "headers", "content", "status", "code"),
    [
        ("POST", "/score", {}, b"{}", 401, "auth.missing_key"),
        ("POST", "/score", {"X-API-Key": "nobody-0123456789abc"}, b"{}", 401, "auth.invalid_key"),
        ("POST", "/score", auth("auditor"), b"{}", 403, "auth.role"),
        ("POST", "/score", {**auth(), "Content-Type": "text/plain"}, b"x", 415, "body.media_type"),
        ("POST", "/score", auth(), b"{", 400, "validation"),
        ("POST", "/score", auth(), b"x" * 2_000_001, 413, "body.too_large"),
        (
            "POST",
            "/outcomes",
            auth("inspector"),
            b'{"outcomes": [], "outcomes": []}',
            400,
            "body.duplicate_key",
        ),
        ("GET", "/score", auth(), None, 405, "route.method"),
        ("GET", "/nowhere", auth(), None, 404, "route.not_found"),
        ("GET", "/decision", auth("auditor"), None, 422, "decision_id.missing"),
        ("POST", "/decision", auth("auditor"), b'{"decision_id": "0"}', 404, "decision.not_found"),
        ("POST", "/explain", auth(), b"{}", 422, "explain.one_of"),
    ],
)
def test_every_error_answer_has_its_code(
    client, method, path, headers, content, status, code
) -> None:
    r = client.request(method, path, headers=headers, content=content)
    assert r.status_code == status, r.text
    assert r.json()["code"] == code and r.json()["error"]


@pytest.mark.parametrize("spelled", ["declared_value", "declared\\u005fvalue"])
def test_a_key_given_twice_is_refused_naming_it_and_nothing_is_stored(
    client, service_env, spelled
) -> None:
    """Probe 20: `"declared_value": 9.5, "declared_value": 99999` was decided and stored at
    99999 unsaid, while a gateway keeping the first value saw another declaration."""
    declaration = make_declarations(1, seed=46, prefix="TWICE")[0]
    declaration["declared_value"] = 9.5
    body = json.dumps({"declarations": [declaration]}).replace(
        '"declared_value": 9.5', f'"declared_value": 9.5, "{spelled}": 99999'
    )
    r = client.post("/score", content=body, headers={**auth(), "Content-Type": "application/json"})
    assert r.status_code == 400, r.text
    assert r.json()["code"] == "body.duplicate_key"
    assert "the key 'declared_value' twice in one object" in r.json()["error"]
    assert _stored(service_env, declaration["declaration_id"]) == 0
    # the same key in two objects is two declarations, each with its own value
    two = make_declarations(2, seed=46, prefix="ONCE")
    assert _score(client, {"declarations": two}).status_code == 200


def test_the_duplicate_key_check_reads_json_as_the_parser_does() -> None:
    from serving.limits import duplicated_key

    assert duplicated_key(b'{"a": 1, "b": {"c": 1, "c": 2}}') == "c"
    assert duplicated_key(b'[{"a": 1}, {"a": 2}]') is None  # two objects
    assert duplicated_key(b'{"a": "\\"a\\": 1"}') is None  # a key's text inside a value
    assert duplicated_key(b"{") is None  # no JSON: the parser's own 400 says so
    assert duplicated_key(b"[" * 100_000) is None  # nested past the stack: the parser's 400
    assert duplicated_key(b"") is None


def test_the_concurrency_429_of_bentoml_carries_a_code_and_retry_after() -> None:
    """BentoML's own 429 past serve.max_concurrency ({"error": "Too many requests"}) is
    answered in the API's shape."""
    import asyncio
    import json

    from starlette.responses import JSONResponse

    from serving.patches import RequestTimeoutMiddleware

    async def bentoml_429(scope, receive, send):
        await JSONResponse({"error": "Too many requests"}, status_code=429)(scope, receive, send)

    async def run():
        sent = []

        async def receive():
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message):
            sent.append(message)

        scope = {"type": "http", "method": "GET", "path": "/metrics", "headers": []}
        await RequestTimeoutMiddleware(bentoml_429, timeout=5)(scope, receive, send)
        return sent

    start, body = asyncio.run(run())
    headers = dict(start["headers"])
    assert start["status"] == 429 and headers[b"retry-after"] == b"1"
    payload = json.loads(body["body"])
    assert payload["code"] == "busy.concurrency"
    assert int(headers[b"content-length"]) == len(body["body"])


# --- F-07: no key but declarations -------------------------------------------------------------


def test_an_unknown_top_level_key_is_refused_and_nothing_scored(client, service_env) -> None:
    declaration = make_declarations(1, seed=46, prefix="DRY")[0]
    r = _score(client, {"declarations": [declaration], "dry_run": True})
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["code"] == "validation" and body["field"] == "dry_run"
    assert [(d["type"], d["loc"]) for d in body["detail"]] == [("extra_forbidden", ["dry_run"])]
    assert _stored(service_env, declaration["declaration_id"]) == 0
    assert _score(client, {"declarations": [declaration]}).status_code == 200
    assert _stored(service_env, declaration["declaration_id"]) == 1


def test_an_unknown_key_inside_a_declaration_is_still_warned_not_refused(client) -> None:
    declaration = {**make_declarations(1, seed=47, prefix="IN")[0], "x_note": "n"}
    r = _score(client, {"declarations": [declaration]})
    assert r.status_code == 200, r.text
    assert any("x_note" in w for w in r.json()["decisions"][0]["warnings"])


def test_explain_and_decision_refuse_an_unknown_key(client) -> None:
    """A misspelt key of /explain or POST /decision (``decisionId``) was read as none given,
    and the answer blamed the caller for sending nothing; now it is named (probe 14 F-07)."""
    decided = _score(client, {"declarations": make_declarations(1, seed=48, prefix="EXK")})
    decision_id = decided.json()["decisions"][0]["decision_id"]
    for path, body, role in (
        ("/explain", {"decision_id": decision_id, "decisionId": decision_id}, "scorer"),
        ("/decision", {"decision_id": decision_id, "verbose": True}, "auditor"),
    ):
        r = client.post(path, json=body, headers=auth(role))
        assert r.status_code == 400, (path, r.text)
        (extra,) = [k for k in body if k != "decision_id"]
        assert r.json()["code"] == "validation" and r.json()["field"] == extra
    ok = client.post("/explain", json={"decision_id": decision_id}, headers=auth())
    assert ok.status_code == 200, ok.text
    stored = client.post("/decision", json={"decision_id": decision_id}, headers=auth("auditor"))
    assert stored.status_code == 200, stored.text
