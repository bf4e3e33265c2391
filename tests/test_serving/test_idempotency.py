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
    # and the amended content, sent again, gets its own decision back
    assert _score(client, [amended])[0] == second
