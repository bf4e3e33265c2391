"""Every case of the hostile-request corpus (tests/corpus/hostile.py) through the in-process
service: an allowed status (a clear 4xx, or 200 where the input is legitimate), never a 5xx,
and nothing of the request in the log."""

from __future__ import annotations

import logging

import pytest

from tests.corpus.hostile import CASES, NO_ROUTE, Answer, HostileCase, Setting, judge
from tests.test_serving.conftest import (
    AUDITOR_KEY,
    INSPECTOR_KEY,
    SCORER_KEY,
    auth,
    make_declarations,
)

KEYS = {"scorer": SCORER_KEY, "auditor": AUDITOR_KEY, "inspector": INSPECTOR_KEY}
MAX_BODY_BYTES = 2_000_000  # service_env's serve.max_body_bytes


def _declarations(n: int, prefix: str) -> list[dict]:
    return [
        {**d, "declaration_id": f"{prefix}-{i}"}
        for i, d in enumerate(make_declarations(n, seed=21, prefix=prefix))
    ]


SETTING = Setting(declarations=_declarations, keys=KEYS, max_body_bytes=MAX_BODY_BYTES)

# Product bugs the corpus found, outside this module's reach: strict, so a fix turns them red.
KNOWN_BUGS: dict[str, str] = {}  # case name -> the bug, while one is open (strict xfail)


def _marked(case: HostileCase) -> object:
    if case.name in KNOWN_BUGS:
        return pytest.param(
            case, marks=pytest.mark.xfail(reason=KNOWN_BUGS[case.name], strict=True)
        )
    return case


def send(client, case: HostileCase) -> list[Answer]:
    request = case.request(SETTING)
    headers = dict(request.headers)
    if request.declared_length is not None:  # in process the rest never comes: a short body
        headers["Content-Length"] = str(request.declared_length)
    answers = []
    hooks = client.event_hooks
    if case.allowed <= NO_ROUTE:  # the router's plain-text 404/405, not an API answer
        client.event_hooks = {"request": [], "response": []}
    try:
        for _ in range(case.sends):
            r = client.request(request.method, request.path, content=request.body, headers=headers)
            answers.append(Answer(r.status_code, r.content, dict(r.headers)))
    finally:
        client.event_hooks = hooks
    return answers


def server_log(caplog, capfd) -> str:
    """What the service logged and printed (the test client's own request lines left out)."""
    records = [r for r in caplog.records if not r.name.startswith(("httpx", "httpcore"))]
    return "\n".join(caplog.handler.format(r) for r in records) + "".join(capfd.readouterr())


@pytest.mark.parametrize("case", [_marked(c) for c in CASES], ids=[c.name for c in CASES])
def test_hostile_request(client, caplog, capfd, case):
    caplog.set_level(logging.INFO)
    answers = send(client, case)
    assert not judge(case, SETTING, answers)
    logged = server_log(caplog, capfd)
    assert case.marker.lower() not in logged.lower()
    assert not any(key in logged for key in KEYS.values())
    assert "Traceback" not in logged


def test_the_corpus_is_large_and_names_its_cases():
    assert len(CASES) >= 30
    assert all(c.doc and c.allowed for c in CASES)
    # never a 5xx: a client that stops sending is answered 408 at the request timeout
    assert all(s < 500 for c in CASES for s in c.allowed)


def test_after_the_corpus_the_store_still_scores_and_reads_back(client):
    for case in CASES:  # whatever order pytest ran them in, all of them before this check
        send(client, case)
    body = {"declarations": _declarations(1, "after-corpus")}
    r = client.post("/score", json=body, headers=auth())
    assert r.status_code == 200, r.text
    decision_id = r.json()["decisions"][0]["decision_id"]
    stored = client.get("/decision", params={"decision_id": decision_id}, headers=auth("auditor"))
    assert stored.status_code == 200 and stored.json()["intact"] is True
