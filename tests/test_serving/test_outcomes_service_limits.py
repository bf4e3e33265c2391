"""POST /outcomes holds a recovered revenue to the served params' validate.max_value (the
gate's plausibility limit in the base currency), not to the default."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.test_serving.conftest import (
    API_KEYS,
    INSPECTOR_KEY,
    SCORER_KEY,
    checked_client,
    make_declarations,
    service_app,
)


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory, stub_runtime) -> Iterator:
    import serving.service as service_module

    tmp = tmp_path_factory.mktemp("outcomes-limits")
    (tmp / "params.yaml").write_text("validate:\n  max_value: 500\n")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PARCELRISK_API_KEYS", API_KEYS)
        mp.delenv("PARCELRISK_API_KEYS_FILE", raising=False)
        mp.delenv("PARCELRISK_INSECURE_NO_AUTH", raising=False)
        mp.setenv("PARCELRISK_AUDIT_DB", str(tmp / "audit.db"))
        mp.setenv("PARCELRISK_PARAMS", str(tmp / "params.yaml"))
        mp.setattr(service_module, "load_runtime", lambda settings, uri, dst: stub_runtime)
        with checked_client(service_app()) as c:
            yield c


def _result(declaration_id: str, revenue: float) -> dict:
    return {
        "declaration_id": declaration_id,
        "inspected_at": "2026-05-02T08:00:00Z",
        "illicit": True,
        "offence_type": "undervaluation",
        "revenue_recovered": revenue,
    }


def test_a_revenue_above_the_served_max_value_is_refused(client) -> None:
    declarations = make_declarations(2, seed=5, prefix="LIM")
    r = client.post(
        "/score", json={"declarations": declarations}, headers={"X-API-Key": SCORER_KEY}
    )
    assert r.status_code == 200, r.text
    first, second = (d["declaration_id"] for d in declarations)
    headers = {"X-API-Key": INSPECTOR_KEY}
    refused = client.post("/outcomes", json={"outcomes": [_result(first, 600.0)]}, headers=headers)
    assert refused.status_code == 400, refused.text
    assert "revenue_recovered" in refused.text and "validate.max_value" in refused.text
    stored = client.post("/outcomes", json={"outcomes": [_result(second, 400.0)]}, headers=headers)
    assert stored.status_code == 200 and stored.json() == {"stored": 1, "unchanged": 0}
