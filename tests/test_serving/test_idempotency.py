"""A declaration decided once is not decided again: sent again unchanged (a retry after a
timeout, the same parcel twice in one request) it gets its stored decision back."""

from __future__ import annotations

from tests.test_serving.conftest import auth, make_declarations


def _score(client, declarations: list[dict]) -> list[dict]:
    r = client.post("/score", json={"declarations": declarations}, headers=auth())
    assert r.status_code == 200, r.text
    return r.json()["decisions"]


def _stored(service_env) -> int:
    from serving.sqlite_store import SqliteDecisionStore

    store = SqliteDecisionStore(service_env / "audit.db")
    try:
        return store.count()
    finally:
        store.close()


def test_a_retry_gets_the_stored_decision_not_a_second_one(client, service_env):
    declarations = make_declarations(3, seed=41, prefix="RETRY")
    first = _score(client, declarations)
    stored = _stored(service_env)
    again = _score(client, declarations)
    assert again == first  # same decision ids, lanes, risks, reasons
    assert _stored(service_env) == stored


def test_a_request_mixing_old_and_new_declarations_scores_only_the_new(client, service_env):
    old = make_declarations(2, seed=42, prefix="MIXOLD")
    old_decisions = _score(client, old)
    new = make_declarations(2, seed=43, prefix="MIXNEW")
    stored = _stored(service_env)
    mixed = _score(client, [new[0], old[1], new[1], old[0]])
    assert [d["declaration_id"] for d in mixed] == [
        new[0]["declaration_id"],
        old[1]["declaration_id"],
        new[1]["declaration_id"],
        old[0]["declaration_id"],
    ]
    assert mixed[1] == old_decisions[1] and mixed[3] == old_decisions[0]
    assert _stored(service_env) == stored + 2


def test_the_same_parcel_twice_in_one_request_is_one_decision(client, service_env):
    (declaration,) = make_declarations(1, seed=44, prefix="TWICE")
    stored = _stored(service_env)
    twice = _score(client, [declaration, declaration])
    assert twice[0] == twice[1]
    assert _stored(service_env) == stored + 1


def test_a_changed_declaration_under_the_same_id_is_decided_anew(client, service_env):
    (declaration,) = make_declarations(1, seed=45, prefix="AMEND")
    first = _score(client, [declaration])[0]
    amended = {**declaration, "declared_value": declaration["declared_value"] * 3 + 1}
    second = _score(client, [amended])[0]
    assert second["decision_id"] != first["decision_id"]
    assert second["declaration_id"] == first["declaration_id"]
    # said on it: the histories keep the first version
    assert not any("amended" in w for w in first["warnings"])
    assert any("amended" in w and "first version" in w for w in second["warnings"])
    # and the amended content, sent again, gets its own decision back
    assert _score(client, [amended])[0] == second
    # the original delivered late (an at-least-once queue) gets its own decision, saying a
    # later one supersedes it, and which (probe 31: indistinguishable from a first answer)
    late = _score(client, [declaration])[0]
    assert late["decision_id"] == first["decision_id"] and late["lane"] == first["lane"]
    assert late["warning_codes"] == [*first["warning_codes"], "declaration.superseded"]
    assert second["decision_id"] in late["warnings"][-1]
    assert _score(client, [amended])[0] == second  # the current one says nothing of the kind


def test_an_amendment_racing_its_original_is_said_amended(client, service_env, monkeypatch):
    """Both contents found the id undecided before scoring (sent at the same moment): the
    write, in the writers' turn, makes the second one say it is amended, answer included."""
    from serving.service import _WORKER

    (declaration,) = make_declarations(1, seed=48, prefix="AMENDRACE")
    first = _score(client, [declaration])[0]
    amended = {**declaration, "declared_value": declaration["declared_value"] * 5 + 1}
    monkeypatch.setattr(_WORKER.service.store, "decided", lambda *args: {})
    second = _score(client, [amended])[0]
    monkeypatch.undo()
    assert second["decision_id"] != first["decision_id"]
    assert "declaration.amended" in second["warning_codes"]
    assert _score(client, [amended])[0] == second  # as stored, under its MAC


def test_a_declaration_another_worker_decided_meanwhile_gets_that_decision(
    client, service_env, monkeypatch
):
    """Two workers score the same new declaration at once (a client retrying on a second
    connection while its first attempt is being scored): both find it undecided before
    scoring; the second to write answers with the first's decision and stores nothing."""
    from serving.service import _WORKER

    declarations = make_declarations(2, seed=46, prefix="RACE")
    first = _score(client, declarations[:1])
    stored = _stored(service_env)
    # the window between the look-up before scoring and the write: nothing decided yet
    monkeypatch.setattr(_WORKER.service.store, "decided", lambda *args: {})
    both = _score(client, declarations)
    assert both[0] == first[0]
    assert both[1]["declaration_id"] == declarations[1]["declaration_id"]
    assert _stored(service_env) == stored + 1  # only the new one
    monkeypatch.undo()
    assert _score(client, declarations) == both


def test_one_id_with_two_contents_in_one_request_is_refused(client, service_env):
    (declaration,) = make_declarations(1, seed=47, prefix="TWOFACED")
    other = {**declaration, "declared_value": declaration["declared_value"] * 2 + 1}
    stored = _stored(service_env)
    r = client.post("/score", json={"declarations": [declaration, other]}, headers=auth())
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert declaration["declaration_id"] in error and "declarations.1.declaration_id" in error
    assert "declarations.0.declaration_id" in error
    # in the dotted syntax of every other answer, with a code (probe 14 F-06)
    assert r.json()["code"] == "declaration_id.two_contents"
    assert r.json()["field"] == "declarations.1.declaration_id"
    assert _stored(service_env) == stored


def test_every_row_a_request_is_refused_for_comes_in_one_answer(client, service_env):
    """Two ids each with two contents and a row breaking the contract: one 422 names all three
    rows (probe 31: one row per answer, the rule's fault after them, four round trips)."""
    declarations = make_declarations(10, seed=49, prefix="MANYFACED")
    declarations[3] = {**declarations[1], "declared_value": declarations[1]["declared_value"] + 7}
    declarations[8] = {**declarations[6], "declared_value": declarations[6]["declared_value"] + 7}
    declarations[9] = {**declarations[9], "gross_weight_kg": -1.0}
    stored = _stored(service_env)
    r = client.post("/score", json={"declarations": declarations}, headers=auth())
    assert r.status_code == 422, r.text
    body = r.json()
    assert body["code"] == "declaration_id.two_contents"
    assert body["field"] == "declarations.3.declaration_id"
    assert [p["loc"][1] for p in body["problems"]] == [3, 8, 9]
    assert [p["rule"] for p in body["problems"]][:2] == ["declaration_id.two_contents"] * 2
    assert body["problems"][2]["loc"] == ["declarations", 9, "gross_weight_kg"]
    assert "2 more row(s) refused" in body["error"]
    assert _stored(service_env) == stored
    # the named rows set aside, the rest goes through at once
    kept = [d for i, d in enumerate(declarations) if i not in (3, 8, 9)]
    assert len(_score(client, kept)) == 7


def test_a_declaration_sent_again_after_a_promotion_gets_its_first_decision(
    client, service_env, stub_runtime, monkeypatch
):
    """One parcel, one decision: a re-send after a new champion (an outbox replayed, a retry
    whose first answer did arrive) got a second decision from the new model, perhaps in
    another lane, unflagged, while the first had been delivered (probe 14)."""
    declarations = make_declarations(2, seed=47, prefix="PROMO")
    first = _score(client, declarations)
    stored = _stored(service_env)
    old_version = stub_runtime.model_version
    monkeypatch.setattr(stub_runtime, "model_version", f"{old_version}-next")
    again = _score(client, declarations)
    assert again == first and all(d["model"]["version"] == old_version for d in again)
    assert _stored(service_env) == stored
    # an amendment is still decided anew, by the champion of the day, and says so
    amended = {**declarations[0], "declared_value": declarations[0]["declared_value"] * 3 + 1}
    (second,) = _score(client, [amended])
    assert second["decision_id"] != first[0]["decision_id"]
    assert second["model"]["version"] == f"{old_version}-next"
    assert any("amended" in w for w in second["warnings"])
    assert _stored(service_env) == stored + 1
