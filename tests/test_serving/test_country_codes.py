"""An export's own country codes at the scoring endpoint: a clearance system of an
administration whose history coded countries its own way (CNTRY376) sends the same codes, and
each is scored with the gate's warning on its decision; an ISO alpha-3 code or a country name
is refused naming the conversion, as the gate refuses it in a file."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.test_serving.conftest import auth, make_declarations, stub_service_client


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory, stub_runtime) -> Iterator:
    tmp = tmp_path_factory.mktemp("country-codes")
    with stub_service_client(tmp, stub_runtime, "serve:\n  champion_check_s: 0\n") as c:
        yield c


def test_an_own_country_code_is_scored_with_a_warning(client) -> None:
    own, iso = make_declarations(2, seed=31, prefix="CC")
    own["origin_country"] = "cntry376"  # read upper-cased, as in a file
    r = client.post("/score", json={"declarations": [own, iso]}, headers=auth())
    assert r.status_code == 200, r.text
    first, second = r.json()["decisions"]
    assert any(
        "origin_country: 'CNTRY376' is no ISO 3166 country code: read as the export's own code" in w
        for w in first["warnings"]
    ), first["warnings"]
    assert not any("origin_country" in w for w in second["warnings"]), second["warnings"]
    assert first["lane"] in ("red", "yellow", "green")


@pytest.mark.parametrize(
    ("code", "said"),
    [
        ("CHN", "'CHN' is ISO 3166 alpha-3 for CN: map the column with country_codes: alpha3"),
        ("Germany", "'GERMANY' is a name of DE: map the column with country_codes: name"),
        ("C N", "'C N' is not a country code"),
    ],
)
def test_a_known_country_written_another_way_is_refused(client, code: str, said: str) -> None:
    (declaration,) = make_declarations(1, seed=32, prefix=f"CX{len(code)}")
    declaration["origin_country"] = code
    r = client.post("/score", json={"declarations": [declaration]}, headers=auth())
    assert r.status_code == 400, r.text
    (problem,) = r.json()["problems"]
    assert problem["loc"] == ["declarations", 0, "origin_country"]
    assert said in problem["msg"], problem["msg"]
