"""A request without a mapped extra the model uses is scored (as unknown) with a warning
saying so; `parcelrisk score` refuses a file without the column (test_foreign_export)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import pytest

from features.intake.contract import Contract, ExtraColumn
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
