"""The HTTP service in-process (BentoML ASGI app, stub features, tiny real LightGBM model)."""

import json

import numpy as np
import pytest

from features.params import ServeParams
from tests.test_serving.conftest import AUDITOR_KEY, SCORER_KEY, auth, make_declarations


def _score(client, declarations, headers=None):
    return client.post("/score", json={"declarations": declarations}, headers=headers or auth())


def test_probes_are_open(client) -> None:
    assert client.get("/livez").status_code == 200
    assert client.get("/readyz").status_code == 200


def test_readyz_names_the_model_the_worker_decides_with(client) -> None:
    """Behind a balancer a promotion reaches each replica within serve.champion_check_s: an
    operator waiting for them could not tell which model answered ready."""
    from serving.schemas import Ready
    from serving.service import _WORKER

    r = client.get("/readyz")
    assert r.status_code == 200
    runtime = _WORKER.service.runtime
    assert r.json() == {
        "ready": True,
        "model": {
            "name": runtime.model_name,
            "version": runtime.model_version,
            "run_id": runtime.run_id,
            "thresholds_version": runtime.thresholds.version,
        },
    }
    Ready.model_validate(r.json())  # the document's schema
    assert client.get("/metrics").status_code == 401  # lane volumes are not public
    assert client.get("/metrics", headers=auth()).status_code == 200


def test_score_returns_a_decision_per_declaration(client) -> None:
    declarations = make_declarations(50, seed=1)
    r = _score(client, declarations)
    assert r.status_code == 200, r.text
    decisions = r.json()["decisions"]
    assert [d["declaration_id"] for d in decisions] == [d["declaration_id"] for d in declarations]
    for d in decisions:
        assert 0.0 <= d["risk"] <= 1.0 and d["expected_revenue"] >= 0
        assert d["lane"] in ("red", "yellow", "green")
        assert d["model"] == {"name": "parcel-risk", "version": "3"}
        assert d["thresholds_version"] == "thr-test-1"
        assert len(d["reasons"]) <= 5
        assert bool(d["reasons"]) == (d["lane"] != "green") or d["lane"] == "green"
        if d["lane"] == "green":
            assert d["reasons"] == []
    assert len({d["decision_id"] for d in decisions}) == 50
    assert any(d["lane"] != "green" and d["reasons"] for d in decisions)


@pytest.mark.parametrize(
    ("headers", "path", "status"),
    [
        ({}, "/score", 401),
        ({"X-API-Key": "wrong-key-0123456789"}, "/score", 401),
        ({"X-API-Key": AUDITOR_KEY}, "/score", 403),
        ({"X-API-Key": SCORER_KEY}, "/score", 200),
        ({"Authorization": f"Bearer {SCORER_KEY}"}, "/score", 200),
        ({"Authorization": f"Bearer {AUDITOR_KEY}"}, "/score", 403),
        ({"X-API-Key": SCORER_KEY}, "/decision", 403),
        ({"Authorization": f"Bearer {AUDITOR_KEY}"}, "/decision", 200),
        ({}, "/decision", 401),
        ({"X-API-Key": SCORER_KEY}, "/explain", 200),
        ({"X-API-Key": AUDITOR_KEY}, "/explain", 200),
        ({}, "/docs.json", 200),  # the document and the docs page open in a browser
        ({}, "/", 200),
        ({}, "/schema.json", 401),  # BentoML's own document is not the docs page's
        ({"X-API-Key": "wrong-key-0123456789"}, "/metrics", 401),
    ],
)
def test_auth_matrix(client, headers, path, status) -> None:
    decision_id = _score(client, make_declarations(1, seed=2)).json()["decisions"][0]["decision_id"]
    body = {
        "/score": {"declarations": make_declarations(1, seed=3)},
        "/decision": {"decision_id": decision_id},
        "/explain": {"decision_id": decision_id},
    }.get(path)
    r = client.post(path, json=body, headers=headers) if body else client.get(path, headers=headers)
    assert r.status_code == status, r.text
    assert SCORER_KEY not in r.text and AUDITOR_KEY not in r.text


def test_get_decision_for_auditors(client) -> None:
    d = _score(client, make_declarations(3, seed=4)).json()["decisions"][1]
    r = client.get("/decision", params={"decision_id": d["decision_id"]}, headers=auth("auditor"))
    assert r.status_code == 200, r.text
    stored = r.json()
    assert stored["declaration_id"] == d["declaration_id"] and stored["intact"]
    assert stored["lane"] == d["lane"] and stored["risk"] == pytest.approx(d["risk"])
    assert stored["reasons"] == d["reasons"]
    assert set(stored["features"]) >= {"log_value", "origin"}
    # which seed drew the quota, not the seed: it would predict which parcels escape it
    assert "exploration_seed" not in stored["lane_policy"]
    assert (
        stored["lane_policy"]["exploration_seed_version"]
        == ServeParams(exploration_seed=7).exploration_seed_version
    )
    assert (
        ServeParams(exploration_seed=8).exploration_seed_version
        != ServeParams(exploration_seed=7).exploration_seed_version
    )
    assert (
        client.get("/decision", params={"decision_id": "nope"}, headers=auth("auditor")).status_code
        == 404
    )
    assert (
        client.get(
            "/decision", params={"decision_id": d["decision_id"]}, headers=auth()
        ).status_code
        == 403
    )


def test_explain_sums_to_the_raw_score_and_matches_reasons(client, stub_runtime) -> None:
    decisions = _score(client, make_declarations(200, seed=5)).json()["decisions"]
    flagged = next(d for d in decisions if d["lane"] != "green")
    r = client.post(
        "/explain", json={"decision_id": flagged["decision_id"]}, headers=auth("auditor")
    )
    assert r.status_code == 200, r.text
    e = r.json()
    total = e["base_value"] + sum(c["contribution"] for c in e["contributions"])
    assert total == pytest.approx(e["raw_score"], abs=1e-9)
    assert e["raw_score"] == pytest.approx(e["stored_raw_score"], abs=1e-12)
    assert e["risk"] == pytest.approx(flagged["risk"])
    by_feature = {c["feature"]: c["contribution"] for c in e["contributions"]}
    for reason in flagged["reasons"]:
        assert reason["contribution"] == pytest.approx(by_feature[reason["feature"]])
    positive = sorted((c for c in by_feature.values() if c > 0), reverse=True)[:5]
    assert [r["contribution"] for r in flagged["reasons"]] == pytest.approx(positive)


def test_explain_green_decision_and_raw_declaration(client) -> None:
    decisions = _score(client, make_declarations(30, seed=6)).json()["decisions"]
    green = next(d for d in decisions if d["lane"] == "green")
    r = client.post("/explain", json={"decision_id": green["decision_id"]}, headers=auth())
    assert r.status_code == 200 and len(r.json()["contributions"]) == 6
    declaration = make_declarations(1, seed=7)[0]
    r = client.post("/explain", json={"declaration": declaration}, headers=auth("auditor"))
    e = r.json()
    assert r.status_code == 200 and e["decision_id"] is None
    total = e["base_value"] + sum(c["contribution"] for c in e["contributions"])
    assert total == pytest.approx(e["raw_score"], abs=1e-9)
    assert client.post("/explain", json={}, headers=auth()).status_code == 422
    assert client.post("/explain", json={"decision_id": "nope"}, headers=auth()).status_code == 404


def test_explain_refuses_a_decision_of_another_run_under_the_same_version(
    client, stub_runtime, monkeypatch
) -> None:
    """The same name and version given to another run (a rebuilt registry): the decision's
    record names the run that made it, so this server does not explain it with its own."""
    monkeypatch.setattr(stub_runtime, "run_id", "run-that-decided")
    monkeypatch.setattr(stub_runtime, "bundle_sha256", "ab" * 32)
    decided = _score(client, make_declarations(5, seed=9)).json()["decisions"][0]
    stored = client.get(
        "/decision", params={"decision_id": decided["decision_id"]}, headers=auth("auditor")
    ).json()
    assert stored["model"]["run_id"] == "run-that-decided"
    assert stored["model"]["bundle_sha256"] == "ab" * 32
    ok = client.post("/explain", json={"decision_id": decided["decision_id"]}, headers=auth())
    assert ok.status_code == 200, ok.text
    monkeypatch.setattr(stub_runtime, "run_id", "run-of-a-rebuilt-registry")
    r = client.post("/explain", json={"decision_id": decided["decision_id"]}, headers=auth())
    assert r.status_code == 409
    assert "made by run run-that-decided" in r.json()["error"]
    assert "not the model that decided" in r.json()["error"]


def _bad(field: str, value):
    d = make_declarations(1, seed=8)[0]
    if value is ...:
        del d[field]
    else:
        d[field] = value
    return d


@pytest.mark.parametrize(
    ("declaration", "field"),
    [
        (_bad("origin_country", ...), "origin_country"),
        (_bad("hs_code", "61A9"), "hs_code"),
        (_bad("channel", "drone"), "channel"),
        (_bad("quantity", 0), "quantity"),
        (_bad("declared_at", "2026-05-01T10:00:00"), "declared_at"),
    ],
)
def test_out_of_contract_input_names_the_field(client, declaration, field) -> None:
    r = _score(client, [declaration])
    assert r.status_code in (400, 422)
    assert field in json.dumps(r.json())


def test_rule_faults_answer_400_with_the_gate_message_and_nothing_is_scored(
    client, service_env
) -> None:
    good = make_declarations(2, seed=11)
    bad = {**good[1], "hs_code": "12AB", "declared_value": -5}
    r = _score(client, [good[0], bad])
    assert r.status_code == 400
    body = r.json()
    assert [p["msg"] for p in body["problems"]] == [
        "hs_code: '12AB' is not an HS code of 6 to 10 digits",
        "declared_value: -5 is negative",
    ]
    assert body["problems"][0]["loc"] == ["declarations", 1, "hs_code"]
    assert body["problems"][0]["declaration_id"] == bad["declaration_id"]
    assert "1 declaration(s) break the contract" in body["error"]


def test_plausibility_warnings_travel_with_the_decision(client) -> None:
    d = make_declarations(2, seed=12)
    d[0]["gross_weight_kg"] = 2500.0
    d[1]["currency"] = "MNT"
    decisions = _score(client, d).json()["decisions"]
    assert any("2500 kg is above the plausible 1000 kg" in w for w in decisions[0]["warnings"])
    assert any("'MNT' has no exchange rate" in w for w in decisions[1]["warnings"])


def test_an_implausible_value_is_kept_out_of_green_and_says_why(client) -> None:
    """A declared value of 1e300 cleared green at risk 0.0003 (probe 9): a number above its
    plausible bound goes at least to serve.implausible_lane (yellow), said on the decision;
    the bounds that judged it are recorded with the lane policy, for an auditor's recompute."""
    d = make_declarations(3, seed=13)
    d[0]["declared_value"] = 1e300
    d[1]["gross_weight_kg"] = 5e6
    decisions = _score(client, d).json()["decisions"]
    note = (
        "yellow at least (serve.implausible_lane): a number above its plausible bound, which "
        "the model never saw and cannot judge"
    )
    # the stub model scores the first low (its lane raised, said) and the second yellow itself
    assert decisions[0]["risk"] < 0.2 and decisions[0]["lane"] == "yellow"
    assert decisions[0]["warnings"][-1] == note
    assert decisions[1]["lane"] in ("yellow", "red") and note not in decisions[1]["warnings"]
    assert decisions[2]["lane"] == "green" and not decisions[2]["warnings"]
    # a currency without a rate (BTN) is no way around the bound (probe 10)
    (btn,) = _score(client, [{**d[2], "declared_value": 1e300, "currency": "BTN"}]).json()[
        "decisions"
    ]
    assert btn["lane"] != "green", btn
    assert any("1e+300 BTN (no exchange rate to EUR" in w for w in btn["warnings"]), btn
    r = client.get(
        "/decision", params={"decision_id": decisions[0]["decision_id"]}, headers=auth("auditor")
    )
    policy = r.json()["lane_policy"]
    assert policy["implausible_lane"] == "yellow"
    assert policy["plausible_bounds"] == {
        "max_value": 100_000.0,
        "max_weight_kg": 1_000.0,
        "max_quantity": 10_000,
    }


def test_a_currency_without_a_rate_is_kept_out_of_green_and_says_why(client) -> None:
    """A value the model cannot convert leaves its value features empty: the README's
    undervalued parcel went red -> green declared in lari (probe 14). At least
    serve.implausible_lane, said on the decision and recorded in its lane policy."""
    d = make_declarations(2, seed=13)
    low = _score(client, [d[1]]).json()["decisions"][0]
    assert low["lane"] == "green"
    for currency in ("GEL", "UZS", "MNT"):
        sent = {**d[1], "declaration_id": f"{d[1]['declaration_id']}-{currency}",
                "currency": currency}  # fmt: skip
        (decision,) = _score(client, [sent]).json()["decisions"]
        assert decision["lane"] == "yellow", decision
        assert any(f"'{currency}' has no exchange rate" in w for w in decision["warnings"])
        assert decision["warnings"][-1] == (
            "yellow at least (serve.implausible_lane): its currency has no exchange rate, so "
            "the model could not value the parcel (its value features are empty)"
        )
    r = client.get("/decision", params={"decision_id": decision["decision_id"]},
                   headers=auth("auditor"))  # fmt: skip
    assert r.json()["lane_policy"]["unvalued_currency"] is True


def test_a_declaration_without_an_hs_code_is_scored(client) -> None:
    """Postal items often carry no HS code: 55% of a postal export's were refused (probe 11)."""
    no_code, null_code = make_declarations(2, seed=14)
    del no_code["hs_code"]
    null_code["hs_code"] = None
    r = _score(client, [no_code, null_code])
    assert r.status_code == 200, r.text
    assert len(r.json()["decisions"]) == 2


def test_batch_size_limits(client) -> None:
    r = _score(client, [])
    assert r.status_code == 422 and "1 to 1000" in r.json()["error"]
    r = _score(client, make_declarations(1001, seed=9))
    assert r.status_code == 422 and "got 1001" in r.json()["error"]


def test_huge_body_and_not_json(client) -> None:
    r = client.post(
        "/score", content=b"x" * 2_000_001, headers={**auth(), "Content-Type": "application/json"}
    )
    assert r.status_code == 413
    r = client.post(
        "/score", content=b"{not json", headers={**auth(), "Content-Type": "application/json"}
    )
    assert r.status_code == 400 and "json" in r.text.lower()


def test_unknown_codes_are_scored_with_a_warning(client) -> None:
    d = make_declarations(2, seed=10)
    d[1]["origin_country"] = "ZZ"
    decisions = _score(client, d).json()["decisions"]
    assert decisions[0]["warnings"] == []
    assert "ZZ" in decisions[1]["warnings"][0] and 0 <= decisions[1]["risk"] <= 1


def test_concurrent_requests_are_batched_and_answered_separately(client) -> None:
    from concurrent.futures import ThreadPoolExecutor

    batches = [make_declarations(3, seed=100 + i, prefix=f"C{i}-") for i in range(12)]
    with ThreadPoolExecutor(6) as pool:
        responses = list(pool.map(lambda b: _score(client, b), batches))
    for batch, r in zip(batches, responses, strict=True):
        assert r.status_code == 200
        assert [d["declaration_id"] for d in r.json()["decisions"]] == [
            d["declaration_id"] for d in batch
        ]


def test_lane_counter_in_metrics(client) -> None:
    _score(client, make_declarations(20, seed=11))
    text = client.get("/metrics", headers=auth()).text
    assert "parcelrisk_decisions_total" in text and 'lane="green"' in text
    assert "parcelrisk_scoring_seconds" in text
    assert "parcelrisk_live_declarations" in text  # 0 here: the stub runtime has no live state
    assert "parcelrisk_live_refits" in text


def test_exploration_is_reproducible_across_requests(client) -> None:
    declarations = make_declarations(400, seed=12)
    a = [d["exploration"] for d in _score(client, declarations).json()["decisions"]]
    b = [d["exploration"] for d in _score(client, declarations).json()["decisions"]]
    assert a == b and 0 < np.mean(a) < 0.15


def test_the_response_check_refuses_what_the_models_do_not_document() -> None:
    import httpx
    import pydantic

    from tests.test_serving.conftest import check_response_shape

    def answer(path: str, status: int, body: dict) -> httpx.Response:
        request = httpx.Request("POST", f"http://testserver{path}")
        return httpx.Response(status, json=body, request=request)

    check_response_shape(answer("/score", 200, {"decisions": []}))
    check_response_shape(
        answer("/score", 422, {"error": "bad", "code": "batch.size", "field": "declarations"})
    )
    with pytest.raises(pydantic.ValidationError):  # every error body carries its code
        check_response_shape(answer("/score", 422, {"error": "bad", "field": "declarations"}))
    with pytest.raises(AssertionError):
        check_response_shape(answer("/score", 200, {"decisions": [], "extra": 1}))
    with pytest.raises(pydantic.ValidationError):
        check_response_shape(answer("/decision", 200, {"decision_id": "x"}))
    with pytest.raises(pydantic.ValidationError):
        check_response_shape(answer("/explain", 404, {"message": "not found"}))


def test_explain_refuses_a_decision_of_another_model_version(client, service_env) -> None:
    import dataclasses

    from serving.store import open_store

    d = _score(client, make_declarations(1, seed=13)).json()["decisions"][0]
    store = open_store(service_env / "audit.db")
    record, _ = store.get(d["decision_id"])
    store.record([dataclasses.replace(record, decision_id="old-1", model_version="1")])
    r = client.post("/explain", json={"decision_id": "old-1"}, headers=auth("auditor"))
    assert r.status_code == 409 and "v1" in r.json()["error"]


def test_outcome_fields_are_refused_and_unknown_fields_warned(client) -> None:
    d = make_declarations(2, seed=14)
    d[1]["illicit"] = True
    r = _score(client, d)
    assert r.status_code == 422 and r.json()["field"] == "declarations.1.illicit"
    d = make_declarations(1, seed=15)
    d[0]["shoe_size"] = 44
    r = _score(client, d)
    assert r.status_code == 200
    assert "'shoe_size' is not in the contract" in r.json()["decisions"][0]["warnings"][0]


def test_explain_refuses_outcome_fields_as_score_does(client) -> None:
    d = make_declarations(1, seed=18)[0]
    r = client.post(
        "/explain", json={"declaration": {**d, "illicit": True}}, headers=auth("auditor")
    )
    assert r.status_code == 422 and r.json()["field"] == "declaration.illicit", r.text
    r = client.post("/explain", json={"declaration": d}, headers=auth("auditor"))
    assert r.status_code == 200


def test_a_what_if_is_the_auditor_s_and_is_logged(client, caplog) -> None:
    """Probe 20: a scorer key asked /explain for one declaration at eight declared values and
    learnt where it turns green, leaving no trace. A scorer explains its stored decisions; a
    declaration nobody scored is the auditor's, and each is a log line."""
    import logging

    (d,) = make_declarations(1, seed=19, prefix="WHATIF")
    r = client.post("/explain", json={"declaration": d}, headers=auth())
    assert r.status_code == 403 and r.json()["code"] == "auth.role", r.text
    assert "decision_id" in r.json()["error"]
    caplog.set_level(logging.INFO, logger="serving.service")
    r = client.post("/explain", json={"declaration": d}, headers=auth("auditor"))
    assert r.status_code == 200
    (line,) = [m for m in caplog.messages if m.startswith("what-if explanation")]
    assert "(auditor)" in line and "'WHATIF19-0'" in line and "content sha256 " in line
    assert f"risk {r.json()['risk']:.6f}" in line
    # its own stored decision a scorer still explains
    (decision,) = _score(client, [d]).json()["decisions"]
    r = client.post("/explain", json={"decision_id": decision["decision_id"]}, headers=auth())
    assert r.status_code == 200


def test_a_what_if_the_store_cannot_catch_up_is_a_503_not_a_stale_answer(
    client, stub_runtime, monkeypatch
) -> None:
    """A what-if catches the live state up first, as /score does (probe 27): a store it
    cannot read now is a 503 to ask again, never an answer from what it held before."""
    from serving.sqlite_store import StoreUnavailable

    def unavailable(*_args, **_kwargs):
        raise StoreUnavailable("decision store audit.db cannot take a read now: disk I/O error")

    monkeypatch.setattr(stub_runtime, "catch_up", unavailable)
    (d,) = make_declarations(1, seed=21, prefix="WHATIF")
    r = client.post("/explain", json={"declaration": d}, headers=auth("auditor"))
    assert r.status_code == 503 and r.json()["code"] == "store.unavailable", r.text
    assert "ask again" in r.json()["error"] and r.headers["Retry-After"] == "5"


def test_many_unknown_fields_are_one_short_warning(client, service_env) -> None:
    """100,000 made-up keys do not become megabytes of warnings, answered and stored."""
    from serving.store import open_store

    d = make_declarations(1, seed=16)[0]
    d["aeo_operator"] = False  # an AEO note on its lane would be a second warning
    d.update({f"k{i:06d}": 1 for i in range(100_000)})
    d["x" * 5000] = 1
    r = _score(client, [d])
    assert r.status_code == 200, r.text
    (warning,) = r.json()["decisions"][0]["warnings"]
    assert warning == (
        "fields 'k000000', 'k000001', 'k000002', 'k000003', 'k000004' and 99,996 more are "
        "not in the contract: ignored"
    )
    store = open_store(service_env / "audit.db")
    try:
        record, _ = store.get(r.json()["decisions"][0]["decision_id"])
    finally:
        store.close()
    assert record.warnings == [warning]
    d = make_declarations(1, seed=17)[0]
    d["aeo_operator"] = False  # an AEO note on its lane would be a second warning
    d["y" * 5000] = 1
    (warning,) = _score(client, [d]).json()["decisions"][0]["warnings"]
    assert warning == f"field '{'y' * 40}...' is not in the contract: ignored"


def test_one_request_may_mix_utc_offsets(client) -> None:
    """Declarations from different offices carry different offsets; all are stored in UTC."""
    declarations = make_declarations(3, seed=11, prefix="TZ")
    declarations[0]["declared_at"] = "2026-05-01T12:00:00+02:00"
    declarations[1]["declared_at"] = "2026-05-01T05:30:00-04:30"
    r = _score(client, declarations)
    assert r.status_code == 200, r.text
    stored = client.get(
        "/decision",
        params={"decision_id": r.json()["decisions"][1]["decision_id"]},
        headers=auth("auditor"),
    ).json()
    assert stored["declaration"]["declared_at"] == "2026-05-01T10:00:00.000000Z"
    assert stored["intact"]


def test_a_locked_audit_store_holds_up_scoring_not_the_probes(client, service_env) -> None:
    """Another process holding the store's write lock: /score waits for it, /livez answers."""
    import sqlite3
    import time
    from concurrent.futures import ThreadPoolExecutor

    blocker = sqlite3.connect(service_env / "audit.db", isolation_level=None)
    try:
        blocker.execute("BEGIN IMMEDIATE")  # e.g. an auditor's tool in a write transaction
        with ThreadPoolExecutor(1) as pool:
            pending = pool.submit(_score, client, make_declarations(1, seed=301, prefix="LOCK"))
            time.sleep(0.5)
            assert not pending.done()  # a decision is answered only once it is recorded
            started = time.perf_counter()
            assert client.get("/livez").status_code == 200
            assert time.perf_counter() - started < 2.0  # the lock would hold it 30 s
            blocker.execute("COMMIT")
            r = pending.result(timeout=30)
        assert r.status_code == 200, r.text
        decision_id = r.json()["decisions"][0]["decision_id"]
        got = client.get("/decision", params={"decision_id": decision_id}, headers=auth("auditor"))
        assert got.status_code == 200 and got.json()["intact"] is True
    finally:
        blocker.close()


def test_the_workers_own_info_lines_reach_the_log(client) -> None:
    """BentoML passes other packages' records at WARNING and above only: the model and
    thresholds each worker serves, roll-overs and new cut-offs are INFO and must be seen."""
    import logging

    assert logging.getLogger("serving").getEffectiveLevel() <= logging.INFO
    assert logging.getLogger("serving.rollover").isEnabledFor(logging.INFO)
    # and each refit of reference prices and description models (probe 7: only the metric
    # showed them under serve)
    assert logging.getLogger("features.pipeline.refit").isEnabledFor(logging.INFO)


def test_recompute_raises_a_currency_without_a_rate_only_where_the_policy_did() -> None:
    """Decisions recorded before a currency without a rate raised the lane keep their lane:
    recompute reads the rule from the recorded policy's ``unvalued_currency`` (probe 14)."""
    import json
    from types import SimpleNamespace

    from features.intake.contract import Declaration
    from features.params import FeatureParams
    from serving.audit.recompute import implausible_of

    sent = make_declarations(2, seed=13)
    sent[1] = {**sent[1], "currency": "GEL"}
    models = [Declaration.model_validate(d) for d in sent]
    live = SimpleNamespace(snapshot=SimpleNamespace(params=FeatureParams(), contract=None))
    policy = {
        "implausible_lane": "yellow",
        "plausible_bounds": {"max_value": 100_000.0, "max_weight_kg": 1_000.0,
                             "max_quantity": 10_000},
    }  # fmt: skip
    before = implausible_of(json.dumps(policy), models, live)
    now = implausible_of(json.dumps({**policy, "unvalued_currency": True}), models, live)
    assert before.tolist() == [False, False] and now.tolist() == [False, True]


def test_two_credentials_are_401_whichever_way_round(client) -> None:
    """Probe 20: a scorer's X-API-Key with an inspector's Bearer token on /outcomes was a 403
    (the role of the first judged), the other way round a 401. Two credentials are a 401."""
    from tests.test_serving.conftest import INSPECTOR_KEY, SCORER_KEY

    body = {"outcomes": [{"declaration_id": "nope", "illicit": False}]}
    for api_key, bearer in ((SCORER_KEY, INSPECTOR_KEY), (INSPECTOR_KEY, SCORER_KEY)):
        headers = {"X-API-Key": api_key, "Authorization": f"Bearer {bearer}"}
        r = client.post("/outcomes", json=body, headers=headers)
        assert r.status_code == 401 and r.json()["code"] == "auth.several_credentials", r.text
