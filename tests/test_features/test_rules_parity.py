"""One set of rules: the API and the file gate accept or refuse the same rows, saying the same.

Hypothesis generates declarations, valid and invalid (wrong codes, bounds, missing or empty
values, wrong types, future dates, odd case and spacing), and feeds the same rows to both paths:
- the API: the pydantic ``Declaration`` (types) then ``check_records`` (the rules), as /score;
- a file: a frame of the same values through ``check_declarations``, as validate/build/score.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from features.intake.contract import CATEGORIES, CHANNELS, DECLARATION_FIELDS, Declaration
from features.intake.rules import Findings, Limits, check_records, rules_for
from features.intake.validation import check_declarations
from features.params import FeatureParams

LIMITS = Limits.from_params({}, FeatureParams())
# One clock for both paths: a "later than <now>" message read a second apart differs (seen on CI)
NOW = datetime.now(UTC)
RULES = rules_for(LIMITS, with_outcomes=False, now=NOW)

blank = st.sampled_from([None, "", "   "])
ident = st.text("ABCXYZ0123456789-_", min_size=1, max_size=12)


def _spaced(values: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """The value with odd case and surrounding spaces, as exports have them."""
    return st.tuples(values, st.sampled_from(["", " ", "  "]), st.booleans()).map(
        lambda t: f"{t[1]}{t[0].upper() if t[2] else t[0].lower()}{t[1]}"
    )


def _stamp(year_from: int, year_to: int) -> st.SearchStrategy[str]:
    return st.builds(
        lambda d, offset: d.strftime("%Y-%m-%dT%H:%M:%S") + offset,
        st.datetimes(
            min_value=pd.Timestamp(f"{year_from}-01-01").to_pydatetime(),
            max_value=pd.Timestamp(f"{year_to}-12-31").to_pydatetime(),
        ),
        st.sampled_from(["Z", "+02:00", "-05:00", "+09:00"]),
    )


optional_id = st.one_of(ident, blank)
# Valid values of every field (optional ones may be missing), in the forms exports use.
VALID: dict[str, st.SearchStrategy[Any]] = {
    "declaration_id": st.one_of(ident, st.integers(1, 10**6)),
    "declared_at": _stamp(2020, 2025),
    "arrival_office": ident,
    "channel": _spaced(st.sampled_from(CHANNELS)),
    "operator_id": optional_id,
    "platform_id": optional_id,
    "seller_id": optional_id,
    "seller_country": st.one_of(_spaced(st.sampled_from(["CN", "US", "TR"])), blank),
    "consignee_id": optional_id,
    "consignee_region": optional_id,
    "origin_country": _spaced(st.sampled_from(["CN", "VN", "DE"])),
    "hs_code": st.one_of(st.from_regex(r"\A[0-9]{6,10}\Z"), st.just(610910)),
    "description": st.one_of(st.text(max_size=30), blank),
    "quantity": st.one_of(st.integers(1, 20_000), st.none(), st.just("3")),
    "gross_weight_kg": st.one_of(st.floats(0, 5000, allow_nan=False), st.just(0.0)),
    "declared_value": st.floats(0, 1e9, allow_nan=False),
    "currency": _spaced(st.sampled_from(["EUR", "KRW", "USD", "XOF"])),
    "category": st.one_of(_spaced(st.sampled_from(CATEGORIES)), blank),
    "ioss_prepaid": st.one_of(st.booleans(), st.none(), st.sampled_from(["yes", "N"])),
    "aeo_operator": st.one_of(st.booleans(), st.none(), st.sampled_from(["true", "0"])),
}
# What breaks each field: out-of-domain codes, bounds, missing required values, wrong types.
INVALID: dict[str, st.SearchStrategy[Any]] = {
    "declaration_id": st.one_of(blank, st.text("D", min_size=65, max_size=70)),
    "declared_at": st.one_of(
        _stamp(2027, 2100), _stamp(1990, 1999), st.just("not a date"), st.none()
    ),
    "arrival_office": st.one_of(blank, st.text("O", min_size=33, max_size=40)),
    "channel": st.one_of(st.sampled_from(["drone", "ship"]), blank),
    "operator_id": st.text("X", min_size=65, max_size=66),
    "seller_country": st.sampled_from(["CHN", "C1"]),
    "origin_country": st.one_of(st.sampled_from(["C1", "XYZ"]), blank),
    "hs_code": st.one_of(st.sampled_from(["12AB", "12345", "61091000000"]), blank),
    "description": st.text("x", min_size=1025, max_size=1030),
    "quantity": st.one_of(st.integers(-2, 0), st.just(2.5), st.just("many")),
    "gross_weight_kg": st.one_of(st.floats(-10, -0.01), st.none(), st.just("abc")),
    "declared_value": st.one_of(st.floats(-100, -0.01), st.none(), st.just(float("inf"))),
    "currency": st.one_of(st.sampled_from(["EURO", "E1"]), blank),
    "category": st.just("bribe"),
    "ioss_prepaid": st.sampled_from(["maybe", "2"]),
    "aeo_operator": st.just("perhaps"),
}
assert set(VALID) == {f.name for f in DECLARATION_FIELDS} and set(INVALID) <= set(VALID)


@st.composite
def declaration(draw: st.DrawFn) -> dict[str, Any]:
    """A valid declaration with up to three fields broken."""
    row = {name: draw(values) for name, values in VALID.items()}
    for name in draw(st.lists(st.sampled_from(sorted(INVALID)), max_size=3, unique=True)):
        row[name] = draw(INVALID[name])
    return row


rows = st.lists(declaration(), min_size=1, max_size=4)


def _api(row: dict[str, Any]) -> tuple[bool, set[str], set[str]]:
    """(accepted, fault messages, warning messages) of one declaration sent to /score."""
    try:
        model = Declaration.model_validate(row)
    except ValidationError as exc:
        return False, {f"{e['loc'][0]}: <type>" for e in exc.errors()}, set()
    findings = check_records([model], None, RULES)
    faults = set(findings.messages_by_row("fault").get(0, []))
    warnings = set(findings.messages_by_row("warning").get(0, []))
    return not faults, faults, warnings


def _file(batch: list[dict[str, Any]]) -> list[tuple[bool, set[str], set[str]]]:
    """The same rows as a file (object columns, as a Parquet or JSON export gives them)."""
    frame = pd.DataFrame(batch, dtype=object)
    result, _ = check_declarations(frame, None, LIMITS, with_outcomes=False, now=NOW)
    # a file's own findings (a declaration years from the others) have no request's twin
    findings = Findings(
        result.findings.n_rows, [f for f in result.findings.items if f.rule.scope != "file"]
    )
    faults = findings.messages_by_row("fault")
    warnings = findings.messages_by_row("warning")
    return [
        (i not in faults, set(faults.get(i, [])), set(warnings.get(i, [])))
        for i in range(len(batch))
    ]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows)
def test_api_and_file_gate_agree_row_by_row(batch: list[dict[str, Any]]) -> None:
    # a duplicated id is a fault of a file, not of one declaration: keep ids distinct
    for i, row in enumerate(batch):
        if isinstance(row["declaration_id"], int):
            row["declaration_id"] = row["declaration_id"] * 10 + i
        elif isinstance(row["declaration_id"], str) and row["declaration_id"].strip():
            row["declaration_id"] = f"{row['declaration_id']}-{i}"
    for row, (file_ok, file_faults, file_warnings) in zip(batch, _file(batch), strict=True):
        api_ok, api_faults, api_warnings = _api(row)
        assert api_ok == file_ok, (row, api_faults, file_faults)
        typed = {m for m in api_faults if m.endswith("<type>")}
        if typed:  # pydantic refused a type: the file names the same field
            fields = {m.split(":")[0] for m in typed}
            assert fields <= {m.split(":")[0] for m in file_faults}, (row, typed, file_faults)
        else:  # the rules decided both: the very same messages
            assert api_faults == file_faults, row
            assert api_warnings == file_warnings, row


def test_a_known_bad_row_gets_the_same_message_on_both_paths() -> None:
    row = {name: None for name in VALID} | {
        "declaration_id": "D1",
        "declared_at": "2026-05-01T10:00:00Z",
        "arrival_office": "OFF1",
        "channel": "postal",
        "origin_country": "CN",
        "hs_code": "12AB",
        "gross_weight_kg": 0.0,
        "declared_value": -5.0,
        "currency": "EUR",
    }
    expected_faults = {
        "hs_code: '12AB' is not an HS code of 6 to 10 digits",
        "declared_value: -5 is negative",
    }
    expected_warnings = {
        "gross_weight_kg: 0 kg: no weight (a light item rounded down, or not declared)"
    }
    assert _api(row) == (False, expected_faults, expected_warnings)
    assert _file([row]) == [(False, expected_faults, expected_warnings)]
