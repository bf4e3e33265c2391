"""A NUL byte is not text: refused in a request (400 naming the field, personal values not
shown) and in a file at the gate, as ingest refuses it. PostgreSQL cannot store one in a text
column, SQLite and Parquet would keep it."""

from __future__ import annotations

import pandas as pd
import pytest

from features.intake.contract import NUL_PROBLEM, parse_declarations
from tests.test_serving.conftest import auth, make_declarations


@pytest.mark.parametrize("field", ["declaration_id", "description", "seller_id", "hs_code"])
def test_a_request_with_a_nul_byte_is_400_naming_the_field(client, field) -> None:
    declaration = make_declarations(1, seed=71, prefix="NUL")[0]
    declaration[field] = "ab\x00cd"
    r = client.post("/score", json={"declarations": [declaration]}, headers=auth())
    assert r.status_code == 400, r.text
    assert field in r.text and "NUL byte" in r.text
    if field == "seller_id":  # personal: the value is never echoed
        assert "ab\\u0000cd" not in r.text and "ab\\x00cd" not in r.text


def test_a_file_with_a_nul_byte_is_a_fault_at_the_gate() -> None:
    rows = pd.DataFrame(make_declarations(3, seed=72, prefix="NULF"))
    rows.loc[1, "description"] = "toy\x00car"
    rows.loc[2, "consignee_id"] = "C\x0042"
    frame, bad, missing = parse_declarations(rows, with_outcomes=False)
    assert not missing
    found = {(b.field, tuple(b.rows)): b for b in bad}
    assert set(found) == {("description", (1,)), ("consignee_id", (2,))}
    assert all(b.problem == NUL_PROBLEM for b in bad)
    assert found[("consignee_id", (2,))].values == ["(personal: not shown)"]
    assert frame["description"].isna().tolist() == [False, True, False]
