"""Hostile and malformed requests: a clear 4xx, never a 500, and nothing of the body in the log."""

from __future__ import annotations

import logging

import pytest

from tests.test_serving.conftest import auth, make_declarations

PERSONAL = "PERSON-4711-SECRET"  # a value that must never reach a log line


@pytest.mark.parametrize("path", ["/score", "/explain", "/decision", "/outcomes"])
@pytest.mark.parametrize(
    "content_type",
    [
        "multipart/form-data",  # no boundary: BentoML's form parser raised -> 500
        "multipart/form-data; boundary=x",
        "application/x-www-form-urlencoded",
        "text/plain",
    ],
)
def test_a_body_that_is_not_json_is_415(client, path, content_type):
    role = {"/decision": "auditor", "/outcomes": "inspector"}.get(path, "scorer")
    r = client.post(
        path, content=b"--x\r\nfield\r\n", headers={**auth(role), "Content-Type": content_type}
    )
    assert r.status_code == 415, r.text
    assert "application/json" in r.json()["error"]


@pytest.mark.parametrize("encoding", ["gzip", "br", "deflate"])
def test_a_compressed_body_is_415_not_parsed_as_text(client, encoding):
    import gzip
    import json

    body = json.dumps({"declarations": make_declarations(1, seed=4, prefix="GZ")}).encode()
    headers = {**auth(), "Content-Type": "application/json", "Content-Encoding": encoding}
    r = client.post("/score", content=gzip.compress(body), headers=headers)
    assert r.status_code == 415, r.text
    assert f"Content-Encoding '{encoding}'" in r.json()["error"]
    headers["Content-Encoding"] = "identity"
    assert client.post("/score", content=body, headers=headers).status_code == 200


@pytest.mark.parametrize(
    "content_type", [None, "application/json", "application/json; charset=utf-8"]
)
def test_json_with_or_without_a_declared_type_is_read(client, content_type):
    import json

    headers = auth() if content_type is None else {**auth(), "Content-Type": content_type}
    body = json.dumps({"declarations": make_declarations(1, seed=3, prefix="CT")}).encode()
    r = client.post("/score", content=body, headers=headers)
    assert r.status_code == 200, r.text


@pytest.mark.parametrize(
    "body",
    [
        f'{{"declarations": "{PERSONAL}"}}',
        f'{{"declarations": [{{"declaration_id": "{PERSONAL}", "declared_value": "{PERSONAL}"}}]}}',
        f'{{"declaration": {{"consignee_id": "{PERSONAL}", "gross_weight_kg": "{PERSONAL}"}}}}',
    ],
)
def test_a_refused_request_is_one_log_line_without_its_values(client, caplog, body):
    caplog.set_level(logging.INFO)
    path = "/explain" if body.startswith('{"declaration"') else "/score"
    r = client.post(
        path, content=body.encode(), headers={**auth(), "Content-Type": "application/json"}
    )
    assert r.status_code == 400, r.text
    assert PERSONAL not in caplog.text
    refused = [rec for rec in caplog.records if "refused" in rec.getMessage()]
    assert len(refused) == 1
    line = refused[0].getMessage()
    assert "\n" not in line and "400" in line and path in line
    assert "declarations" in line or "declaration" in line  # the field, named
    assert refused[0].levelno == logging.INFO and refused[0].exc_info is None
    assert "Traceback" not in caplog.text


def test_the_docs_page_calls_no_other_site(client):
    import re

    r = client.get("/")  # without a key: a browser opening it sends none (probe 14 F-05)
    assert r.status_code == 200
    assert "googletagmanager" not in r.text
    # scripts, styles and frames load from this service only
    assert not re.search(r"<(script|iframe|link)[^>]+(src|href)=[\"']https?://", r.text)
    assert "swagger" in r.text.lower() or "docs.json" in r.text


@pytest.mark.parametrize(
    "path",
    [
        "/static_content/%2e%2e/decision",
        "/static_content/..%2fdecision",
        "/static_content/../decision",
        "/docs.json/../decision",
    ],
)
def test_the_open_docs_paths_open_nothing_else(client, path):
    """The docs page's files and document are read without a key; a path that only starts
    like them reaches no decision."""
    scored = client.post(
        "/score",
        json={"declarations": make_declarations(1, seed=8, prefix="DOCS")},
        headers=auth(),
    )
    decision_id = scored.json()["decisions"][0]["decision_id"]
    r = client.get(path, params={"decision_id": decision_id})
    assert r.status_code in (401, 404), (path, r.status_code)
    assert decision_id not in r.text and "declaration" not in r.text
    assert client.post("/docs.json", json={}).status_code == 401


def test_a_refused_request_is_logged_under_the_request_id_it_was_answered_with(client, caplog):
    caplog.set_level(logging.INFO)
    r = client.post(
        "/score",
        content=b'{"declarations": "not a list"}',
        headers={**auth(), "Content-Type": "application/json", "X-Request-ID": "cs-4711.a"},
    )
    assert r.status_code == 400 and r.headers["X-Request-ID"] == "cs-4711.a"
    assert "request cs-4711.a refused: POST /score 400" in caplog.text


def test_an_unfit_request_id_is_replaced_not_logged(client, caplog):
    caplog.set_level(logging.INFO)
    sneaky = "x\nFAKE LOG LINE " + PERSONAL
    r = client.post(
        "/score",
        content=b'{"declarations": 1}',
        headers={
            **auth(),
            "Content-Type": "application/json",
            "X-Request-ID": sneaky.replace("\n", " "),
        },
    )
    assert r.status_code == 400
    given = r.headers["X-Request-ID"]
    assert len(given) == 16 and PERSONAL not in caplog.text
    assert f"request {given} refused" in caplog.text
    assert client.get("/livez").headers["X-Request-ID"]  # every answer carries one


@pytest.mark.parametrize("moment", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-05:00"])
def test_a_time_that_does_not_exist_in_utc_is_refused_by_name(client, moment):
    """Year 1 at +01:00 is year 0 in UTC: converting it overflowed into a 500 (schemathesis)."""
    declaration = {**make_declarations(1, seed=9, prefix="YEAR")[0], "declared_at": moment}
    result = {"declaration_id": "YEAR-0", "illicit": True, "inspected_at": moment}
    for path, body, role, field in [
        ("/score", {"declarations": [declaration]}, "scorer", "declarations.0.declared_at"),
        ("/explain", {"declaration": declaration}, "scorer", "declaration.declared_at"),
        ("/outcomes", {"outcomes": [result]}, "inspector", "outcomes.0.inspected_at"),
    ]:
        r = client.post(path, json=body, headers=auth(role))
        assert r.status_code == 400, (path, r.text)
        assert r.json()["field"] == field and "out of the range of dates" in r.json()["error"]


@pytest.mark.parametrize(
    ("method", "path", "status", "error", "allow"),
    [
        ("GET", "/score", 405, "GET not allowed on /score; use POST", "POST"),
        ("PUT", "/livez", 405, "PUT not allowed on /livez", None),
        ("GET", "/no-such-path", 404, "no such path: /no-such-path", None),
    ],
)
def test_no_route_is_answered_in_the_error_shape(client, method, path, status, error, allow):
    hooks = client.event_hooks
    client.event_hooks = {"request": [], "response": []}  # not a documented operation
    try:
        r = client.request(method, path, headers=auth())
    finally:
        client.event_hooks = hooks
    assert r.status_code == status and r.headers["content-type"] == "application/json"
    assert r.json()["error"].startswith(error)
    if allow:
        assert r.headers["allow"] == allow


def test_an_over_long_consignee_id_is_refused_without_showing_it(client, caplog):
    """The length rule sees only the 28-character pseudonym, so the raw id's length is checked
    where it is pseudonymised; the refusal names the field, never the (personal) value."""
    caplog.set_level(logging.INFO)
    declaration = {**make_declarations(1, seed=4, prefix="LONG")[0], "consignee_id": PERSONAL * 5}
    r = client.post("/score", json={"declarations": [declaration]}, headers=auth())
    assert r.status_code == 400, r.text
    assert "declarations.0.consignee_id" in r.text and "longer than 64 characters" in r.text
    assert PERSONAL not in r.text and PERSONAL not in caplog.text


def test_a_nan_revenue_sent_in_a_result_is_refused_not_stored_as_none(client):
    """It was stored as "not recorded" with a 200: the amount sent was lost."""
    result = (
        '{"outcomes": [{"declaration_id": "D1", "inspected_at": "2026-05-03T09:00:00Z", '
        '"illicit": true, "revenue_recovered": NaN}]}'
    )
    headers = {**auth("inspector"), "Content-Type": "application/json"}
    r = client.post("/outcomes", content=result.encode(), headers=headers)
    assert r.status_code == 400, r.text
    assert "revenue_recovered" in r.text and "not NaN" in r.text


def test_a_revenue_sent_as_true_is_refused_not_stored_as_one_euro(client):
    """``true`` was read as 1.0 EUR recovered (pydantic's lax float) and chained as the next
    model's revenue label; /score refuses a boolean number in the same words (probe)."""
    result = {
        "declaration_id": "D1",
        "inspected_at": "2026-05-03T09:00:00Z",
        "illicit": True,
        "revenue_recovered": True,
    }
    r = client.post("/outcomes", json={"outcomes": [result]}, headers=auth("inspector"))
    assert r.status_code == 400, r.text
    assert "revenue_recovered" in r.text and "not true" in r.text


@pytest.mark.parametrize(("path", "role"), [("/explain", "scorer"), ("/decision", "auditor")])
def test_an_unknown_decision_id_of_a_megabyte_is_not_echoed_whole(client, path, role):
    long_id = "x" * 1_000_000
    r = client.post(path, json={"decision_id": long_id}, headers=auth(role))
    assert r.status_code in (400, 404), r.text[:300]
    assert len(r.content) < 1_000
    if r.status_code == 404:
        assert "(1,000,000 characters) not found" in r.json()["error"]


def test_a_client_that_stalls_while_sending_its_body_is_answered_408_not_504():
    """The probe's client declared more than it sent: 504 (the service's fault, by the
    README's advice a cue to fall back to the default lane) after the request timeout."""
    import asyncio

    from serving.patches import RequestTimeoutMiddleware

    async def app(scope, receive, send):
        while (await receive()).get("more_body", False):
            pass
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    async def run(messages):
        sent = []
        queue = list(messages)

        async def receive():
            if queue:
                return queue.pop(0)
            await asyncio.sleep(3600)  # the client stalls

        async def send(message):
            sent.append(message)

        scope = {"type": "http", "method": "POST", "path": "/score", "headers": []}
        await RequestTimeoutMiddleware(app, timeout=0.2)(scope, receive, send)
        return sent[0]["status"]

    partial = [{"type": "http.request", "body": b'{"decl', "more_body": True}]
    assert asyncio.run(run(partial)) == 408
    whole = [{"type": "http.request", "body": b"{}", "more_body": False}]
    assert asyncio.run(run(whole)) == 200


def test_two_credentials_are_refused_whichever_comes_last(client):
    """The last X-API-Key won: a bad key then a good one was answered 200, and a scorer key
    beside an auditor's bearer token was taken without a word."""
    from tests.test_serving.conftest import AUDITOR_KEY, SCORER_KEY

    body = {"declarations": make_declarations(1, seed=5, prefix="TWO")}
    for headers in (
        [("X-API-Key", "wrong-key-0123456789abcdef"), ("X-API-Key", SCORER_KEY)],
        [("X-API-Key", SCORER_KEY), ("X-API-Key", SCORER_KEY)],
        [("X-API-Key", SCORER_KEY), ("Authorization", f"Bearer {AUDITOR_KEY}")],
    ):
        r = client.post("/score", json=body, headers=headers)
        assert r.status_code == 401, (headers, r.text)
        assert "more than one credential" in r.json()["error"], r.text
    assert client.post("/score", json=body, headers=[("X-API-Key", SCORER_KEY)]).status_code == 200
    assert client.get("/livez", headers=[("X-API-Key", "a"), ("X-API-Key", "b")]).status_code == 200


@pytest.mark.parametrize("mark", ["\u202e", "\u200b", "\x07", "\ufeff"])
def test_an_id_holding_a_control_or_invisible_character_is_refused(client, mark):
    """'A1<U+200B>' prints as 'A1' and would be another parcel: a declaration id holds no
    hidden mark. An override reads backwards in the auditors' pages, a control is no text:
    no id holds those. Another id's other hidden marks are folded in its key (probe 22:
    refusing them refused real names), so the seller is accepted."""
    declaration = make_declarations(1, seed=6, prefix="INV")[0]
    sent = {**declaration, "declaration_id": f"X{mark}1"}
    r = client.post("/score", json={"declarations": [sent]}, headers=auth())
    assert r.status_code == 400, r.text
    assert "declaration_id" in r.text and "control or invisible character" in r.text
    sent = {**declaration, "declaration_id": f"INV-S-{ord(mark)}", "seller_id": f"X{mark}1"}
    r = client.post("/score", json={"declarations": [sent]}, headers=auth())
    if mark in ("\u202e", "\x07"):
        assert r.status_code == 400, r.text
        assert "seller_id" in r.text and "control or bidi control character" in r.text
    else:
        assert r.status_code == 200, r.text


def test_a_slow_service_with_the_body_read_or_not_yet_asked_for_is_still_504():
    """408 only while the app waits on the client for the body: a handler that has not read
    it yet, or waits for a disconnect after reading it, is the service's wait."""
    import asyncio

    from serving.patches import RequestTimeoutMiddleware

    async def slow_after_body(scope, receive, send):
        await receive()  # the whole body
        await receive()  # then waits for a disconnect, as a streaming response does

    async def slow_before_body(scope, receive, send):
        await asyncio.sleep(3600)

    async def run(app):
        sent = []

        async def receive():
            if not sent and not getattr(receive, "given", False):
                receive.given = True
                return {"type": "http.request", "body": b"{}", "more_body": False}
            await asyncio.sleep(3600)

        async def send(message):
            sent.append(message)

        scope = {"type": "http", "method": "POST", "path": "/score", "headers": []}
        await RequestTimeoutMiddleware(app, timeout=0.2)(scope, receive, send)
        return sent[0]["status"]

    assert asyncio.run(run(slow_after_body)) == 504
    assert asyncio.run(run(slow_before_body)) == 504
