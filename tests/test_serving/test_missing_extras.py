"""A request without a mapped extra the model uses is scored (as unknown) with a warning
saying so; `parcelrisk score` refuses a file without the column (test_foreign_export)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator

import pytest

from features.intake.contract import Contract, ExtraColumn
from features.intake.rules import rules_for
from tests.test_serving.conftest import auth, make_declarations, stub_service_client


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory, stub_runtime) -> Iterator:
    runtime = dataclasses.replace(
        stub_runtime, contract=Contract((ExtraColumn("broker_id", "entity"),))
    )
    tmp = tmp_path_factory.mktemp("missing-extras")
    with stub_service_client(tmp, runtime, "serve:\n  champion_check_s: 0\n") as c:
        yield c


def test_a_declaration_without_the_models_extra_is_warned(client) -> None:
    with_it, without = make_declarations(2, seed=12, prefix="MX")
    with_it["broker_id"] = "B1"
    r = client.post("/score", json={"declarations": [with_it, without]}, headers=auth())
    assert r.status_code == 200, r.text
    first, second = r.json()["decisions"]
    assert not any("broker_id" in w for w in first["warnings"]), first["warnings"]
    assert (
        "mapped extra field(s) 'broker_id' the model uses not sent: scored as unknown"
        in (second["warnings"])
    )


def test_an_extra_the_model_does_not_read_is_not_asked_for(tmp_path, stub_runtime) -> None:
    """An extra whose features the model dropped in training (an inspection flag, constant on
    the inspected parcels: probe 33) is no warning when left out: nothing reads it."""
    runtime = dataclasses.replace(
        stub_runtime,
        contract=Contract((ExtraColumn("broker_id", "entity"), ExtraColumn("ctrl", "categorical"))),
        extras_read=frozenset({"broker_id"}),
    )
    with stub_service_client(tmp_path, runtime, "serve:\n  champion_check_s: 0\n") as c:
        (declaration,) = make_declarations(1, seed=13, prefix="MR")
        r = c.post("/score", json={"declarations": [declaration]}, headers=auth())
    assert r.status_code == 200, r.text
    (decision,) = r.json()["decisions"]
    said = [w for w in decision["warnings"] if "mapped extra" in w]
    assert said == ["mapped extra field(s) 'broker_id' the model uses not sent: scored as unknown"]


@pytest.fixture(scope="module")
def typed_client(tmp_path_factory: pytest.TempPathFactory, stub_runtime) -> Iterator:
    contract = Contract(
        (
            ExtraColumn("broker_id", "entity"),
            ExtraColumn("total_taxes", "numeric", amount=True),
            ExtraColumn("insured_value", "numeric"),
        )
    )
    # the rules as load_runtime builds them: with the contract's amount extras
    rules = rules_for(stub_runtime.limits, with_outcomes=False, contract=contract)
    runtime = dataclasses.replace(
        stub_runtime,
        contract=contract,
        fault_rules=[r for r in rules if r.severity == "fault"],
        warning_rules=[r for r in rules if r.severity == "warning"],
    )
    tmp = tmp_path_factory.mktemp("typed-extras")
    with stub_service_client(tmp, runtime, "serve:\n  champion_check_s: 0\n") as c:
        yield c


def test_an_extra_sent_as_null_is_warned_as_not_sent(typed_client) -> None:
    """Left out, an extra was warned as scored unknown; sent as null or "", the same score
    came back unsaid (probe 9)."""
    (declaration,) = make_declarations(1, seed=41, prefix="XN")
    declaration |= {"broker_id": "", "total_taxes": None, "insured_value": 3.0}
    r = typed_client.post("/score", json={"declarations": [declaration]}, headers=auth())
    assert r.status_code == 200, r.text
    (decision,) = r.json()["decisions"]
    assert (
        "mapped extra field(s) 'broker_id', 'total_taxes' the model uses not sent: scored as "
        "unknown" in decision["warnings"]
    )


@pytest.mark.parametrize(
    ("field", "value", "said"),
    [
        ("broker_id", {"a": 1}, "broker_id: {'a': 1} is not an identifier (text or a number)"),
        ("broker_id", ["B1"], "broker_id: ['B1'] is not an identifier (text or a number)"),
        ("insured_value", True, "insured_value: true is not a number"),
        ("total_taxes", -163.8, "total_taxes: -163.8 is negative"),
    ],
)
def test_an_extra_of_the_wrong_type_or_sign_is_refused(typed_client, field, value, said) -> None:
    """An object stored as the text of its Python repr (a new broker with no history), true
    read as 1.0, taxes of -163.8 cutting the revenue at stake: each was scored unsaid, where
    the same mistakes in the contract's own fields are refused (probe 9). A plain numeric
    extra may be negative (it is no amount)."""
    (declaration,) = make_declarations(1, seed=42, prefix=f"XW{len(str(value))}")
    declaration |= {"broker_id": "B1", "total_taxes": 5.0, "insured_value": -2.0, field: value}
    r = typed_client.post("/score", json={"declarations": [declaration]}, headers=auth())
    assert r.status_code == 400, r.text
    assert [p["msg"] for p in r.json()["problems"]] == [said]


def test_a_nan_extra_is_refused_as_the_contracts_numbers_are(typed_client) -> None:
    (declaration,) = make_declarations(1, seed=43, prefix="XNAN")
    declaration |= {"broker_id": "B1", "total_taxes": 5.0}
    body = json.dumps({"declarations": [declaration]}).replace(
        '"total_taxes": 5.0', '"total_taxes": NaN'
    )
    r = typed_client.post(
        "/score", content=body, headers={**auth(), "Content-Type": "application/json"}
    )
    assert r.status_code == 400, r.text
    assert [p["msg"] for p in r.json()["problems"]] == ["total_taxes: 'NaN' is not a number"], (
        r.text
    )


@pytest.mark.parametrize(("value", "warned"), [(1e300, True), (40.0, False)])
def test_an_implausible_amount_extra_is_warned(typed_client, value, warned) -> None:
    """Taxes of 1e300 on a 512 USD parcel moved its revenue at stake from 1 to 393 EUR with
    no word, where a declared value so high is warned (probe 9); a plain numeric extra is no
    amount and has no bound."""
    (declaration,) = make_declarations(1, seed=44, prefix=f"XA{int(warned)}")
    declaration |= {
        "broker_id": "B1",
        "total_taxes": value,
        "insured_value": 1e300,
        "currency": "USD",
    }
    r = typed_client.post("/score", json={"declarations": [declaration]}, headers=auth())
    assert r.status_code == 200, r.text
    (decision,) = r.json()["decisions"]
    said = [w for w in decision["warnings"] if w.startswith("total_taxes:")]
    if warned:
        assert said and "1e+300 USD" in said[0] and "is above the plausible 100,000 EUR" in said[0]
    else:
        assert not said, said
    assert not any(w.startswith("insured_value:") for w in decision["warnings"])


def test_the_served_document_names_the_models_extras(typed_client) -> None:
    """/docs.json listed the contract's 20 fields only: a client generated from it had no
    name or type for the extras the model reads (probe 35)."""
    r = typed_client.get("/docs.json")
    assert r.status_code == 200
    declaration = r.json()["components"]["schemas"]["Declaration"]
    properties = declaration["properties"]
    assert properties["total_taxes"]["type"] == ["number", "null"]
    assert "an amount in the declaration's currency" in properties["total_taxes"]["description"]
    assert properties["broker_id"]["x-parcelrisk-extra"] == {
        "kind": "entity", "read_by_model": True
    }  # fmt: skip
    assert "extras.missing" in properties["broker_id"]["description"]
    assert not set(declaration.get("required", [])) & {"broker_id", "total_taxes"}
