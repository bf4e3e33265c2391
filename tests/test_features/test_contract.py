"""The declaration contract: canonical dtypes, Parquet round-trips, the pydantic model."""

from __future__ import annotations

import re

import pandas as pd
import pytest

from features.intake.columns import FrameColumns, RecordColumns, declarations_frame
from features.intake.contract import (
    DECLARATION_COLUMNS,
    FIELDS,
    Contract,
    ContractError,
    Declaration,
    ExtraColumn,
    coerce_declarations,
)
from features.intake.io import read_contract, read_declarations, write_declarations

EXTRAS = Contract(
    (
        ExtraColumn("broker_id", "entity", "Customs broker"),
        ExtraColumn("incoterm", "categorical"),
        ExtraColumn("insured_value", "numeric"),
    )
)


def make_declarations(n: int = 6, *, with_outcomes: bool = True) -> pd.DataFrame:
    """A small valid history in canonical dtypes: parcels 0, 2, 4 inspected, parcel 0 illicit."""
    declared = pd.date_range("2026-03-01 08:00", periods=n, freq="37min", tz="UTC")
    inspected = [i % 2 == 0 for i in range(n)]
    raw = pd.DataFrame(
        {
            "declaration_id": [f"D{i:05d}" for i in range(n)],
            "declared_at": declared,
            "arrival_office": ["FR000720"] * n,
            "channel": [("postal", "express", "courier")[i % 3] for i in range(n)],
            "operator_id": ["OP1", "OP2"] * (n // 2) + ["OP1"] * (n % 2),
            "platform_id": [None if i % 3 == 0 else "PLAT7" for i in range(n)],
            "seller_id": [f"S{i % 3}" for i in range(n)],
            "seller_country": ["CN"] * n,
            "consignee_id": [f"C{i}" for i in range(n)],
            "consignee_region": ["FR10"] * n,
            "origin_country": ["CN"] * n,
            "hs_code": ["610910", "85176200", "950300"] * (n // 3) + ["610910"] * (n % 3),
            "description": ["cotton t-shirt"] * n,
            "quantity": [1 + i % 4 for i in range(n)],
            "gross_weight_kg": [0.2 + 0.1 * i for i in range(n)],
            "declared_value": [12.5 + i for i in range(n)],
            "currency": ["EUR"] * n,
            "category": ["merchandise"] * n,
            "ioss_prepaid": [i % 2 == 1 for i in range(n)],
            "aeo_operator": [False] * n,
            "broker_id": [f"B{i % 2}" for i in range(n)],
            "incoterm": ["DAP"] * n,
            "insured_value": [15.0] * n,
        }
    )
    if with_outcomes:
        raw["inspected"] = inspected
        raw["inspected_at"] = [
            d + pd.Timedelta(hours=20) if insp else pd.NaT
            for d, insp in zip(declared, inspected, strict=True)
        ]
        raw["illicit"] = [(i == 0) if insp else None for i, insp in enumerate(inspected)]
        raw["offence_type"] = ["undervaluation" if i == 0 else None for i in range(n)]
        raw["revenue_recovered"] = [
            (8.4 if i == 0 else 0.0) if insp else None for i, insp in enumerate(inspected)
        ]
        raw["selection_reason"] = ["random" if insp else None for insp in inspected]
    return coerce_declarations(raw, with_outcomes=with_outcomes, contract=EXTRAS)


def test_coerce_keeps_canonical_dtypes() -> None:
    df = make_declarations()
    again = coerce_declarations(df, with_outcomes=True, contract=EXTRAS)
    pd.testing.assert_frame_equal(again, df)
    assert str(df["declared_at"].dtype) == "datetime64[us, UTC]"
    assert df["quantity"].dtype == "int64"
    assert df["gross_weight_kg"].dtype == "float64"
    assert str(df["ioss_prepaid"].dtype) == "boolean"  # optional fields: null = not recorded
    assert str(df["illicit"].dtype) == "boolean"
    assert pd.api.types.is_string_dtype(df["seller_id"].dtype)
    assert list(df.columns) == EXTRAS.columns(with_outcomes=True)


def test_coerce_reads_text_like_a_csv() -> None:
    df = make_declarations()
    as_text = df.astype("str").where(df.notna())
    pd.testing.assert_frame_equal(
        coerce_declarations(as_text, with_outcomes=True, contract=EXTRAS), df
    )


def test_parquet_round_trip_keeps_extras(tmp_path) -> None:
    df = make_declarations()
    path = tmp_path / "decl.parquet"
    write_declarations(df, path, EXTRAS)
    back, contract = read_declarations(path)
    assert contract == EXTRAS
    assert read_contract(path) == EXTRAS
    pd.testing.assert_frame_equal(back, df)


def test_read_without_outcomes_column_gives_declarations_only(tmp_path) -> None:
    df = make_declarations(with_outcomes=False)
    path = tmp_path / "to_score.parquet"
    write_declarations(df, path, EXTRAS)
    back, _ = read_declarations(path)
    assert list(back.columns) == EXTRAS.columns(with_outcomes=False)


def test_pydantic_model_agrees_with_frame() -> None:
    df = make_declarations(with_outcomes=False)
    records = df[list(DECLARATION_COLUMNS)].to_dict(orient="records")
    models = [
        Declaration(**{k: (None if pd.isna(v) else v) for k, v in r.items()}) for r in records
    ]
    pd.testing.assert_frame_equal(
        declarations_frame(models), df[list(DECLARATION_COLUMNS)].reset_index(drop=True)
    )


def test_pydantic_models_with_extras_match_the_coerced_frame() -> None:
    df = make_declarations(with_outcomes=False)
    columns = [*DECLARATION_COLUMNS, "broker_id", "incoterm", "insured_value"]
    records = df[columns].to_dict(orient="records")
    models = [
        Declaration(**{k: (None if pd.isna(v) else v) for k, v in r.items()}) for r in records
    ]
    fast = declarations_frame(models, contract=EXTRAS)
    slow = declarations_frame([m.model_dump() for m in models], contract=EXTRAS)  # dict path
    pd.testing.assert_frame_equal(fast, slow)
    pd.testing.assert_frame_equal(fast, df[columns].reset_index(drop=True))


def _assert_same_columns(got, expected) -> None:
    """Every contract field reads the same from two column sources (text, times, numbers, and
    where values are missing)."""
    import numpy as np

    for f in (f for f in FIELDS if f.name in DECLARATION_COLUMNS):
        if f.kind in ("str", "category"):
            assert got.text(f.name).tolist() == expected.text(f.name).tolist(), f.name
        elif f.kind == "datetime":
            np.testing.assert_array_equal(got.t_us(f.name), expected.t_us(f.name))
        else:
            np.testing.assert_array_equal(got.numbers(f.name), expected.numbers(f.name))
        np.testing.assert_array_equal(got.missing(f.name), expected.missing(f.name))


def test_record_columns_read_what_the_frame_of_the_same_models_holds() -> None:
    """The online path reads validated models column by column instead of building the frame."""
    import numpy as np

    df = make_declarations(with_outcomes=False)
    columns = [*DECLARATION_COLUMNS, "broker_id", "incoterm", "insured_value"]
    records = df[columns].to_dict(orient="records")
    records[1]["declared_at"] = "2026-03-01T10:15:30.123456+02:00"  # another UTC offset
    records[2]["platform_id"] = None
    records[3]["insured_value"] = None
    models = [
        Declaration(**{k: (None if pd.isna(v) else v) for k, v in r.items()}) for r in records
    ]
    fast, frame = RecordColumns(models, EXTRAS), FrameColumns(declarations_frame(models, EXTRAS))
    assert len(fast) == len(frame) == len(models) and "broker_id" in fast and "x" not in fast
    _assert_same_columns(fast, frame)
    assert fast.text("platform_id")[2] is None and np.isnan(fast.numbers("insured_value")[3])
    assert fast.t_us("declared_at")[1] == pd.Timestamp("2026-03-01T08:15:30.123456Z").value // 1000
    for extra in ("broker_id", "incoterm"):  # extras are read through the coerced frame
        assert fast.text(extra).tolist() == frame.text(extra).tolist()
    np.testing.assert_array_equal(fast.numbers("insured_value"), frame.numbers("insured_value"))
    pd.testing.assert_frame_equal(fast.frame(), frame.frame())


def test_stored_columns_read_the_store_json_as_the_validated_models_read() -> None:
    """The catch-up reads sibling workers' stored declarations without validating them again:
    every column must hold what the validated models hold (missing values, other UTC offsets,
    pseudonyms, contract extras), and the models are still there for what needs them."""
    import json

    import numpy as np

    from features.intake.columns import StoredColumns, models_as_json
    from serving.scoring import declarations_as_json

    df = make_declarations(n=40, with_outcomes=False)
    columns = [*DECLARATION_COLUMNS, "broker_id", "incoterm", "insured_value"]
    records = df[columns].to_dict(orient="records")
    records[1]["declared_at"] = "2026-03-01T10:15:30.123456+02:00"  # another UTC offset
    records[2]["platform_id"] = None
    records[3]["insured_value"] = None
    records[4]["description"] = "  Phone CASE  "  # stripped as validation strips it
    models = [
        Declaration(**{k: (None if pd.isna(v) else v) for k, v in r.items()}) for r in records
    ]
    for contract, texts in (
        (None, models_as_json(models)),  # the service's store text without extras
        (EXTRAS, declarations_as_json(declarations_frame(models, EXTRAS))),  # with extras
    ):
        stored = StoredColumns([json.loads(t) for t in texts], contract)
        validated = RecordColumns(models, contract)
        assert len(stored) == len(models) and ("broker_id" in stored) == (contract is not None)
        _assert_same_columns(stored, validated)
        assert stored.text("platform_id")[2] is None
        assert stored._records is None or contract is not None  # no validation for the columns
        assert stored.t_us("declared_at")[1] == validated.t_us("declared_at")[1]
        if contract is not None:
            for extra in ("broker_id", "incoterm"):
                assert stored.text(extra).tolist() == validated.text(extra).tolist()
            np.testing.assert_array_equal(
                stored.numbers("insured_value"), validated.numbers("insured_value")
            )
        fields = list(DECLARATION_COLUMNS)  # the models, validated on first use
        assert [r.model_dump(include=set(fields)) for r in stored.records] == [
            m.model_dump(include=set(fields)) for m in models
        ]
        pd.testing.assert_frame_equal(stored.frame(), validated.frame())


def test_a_stored_time_without_a_zone_is_a_contract_error() -> None:
    import json

    from features.intake.columns import StoredColumns, models_as_json

    df = make_declarations(n=2, with_outcomes=False)
    record = df[list(DECLARATION_COLUMNS)].to_dict(orient="records")[0]
    model = Declaration(**{k: (None if pd.isna(v) else v) for k, v in record.items()})
    row = json.loads(models_as_json([model])[0])
    row["declared_at"] = "2026-03-01T10:15:30"
    with pytest.raises(ContractError, match="declared_at '2026-03-01T10:15:30' carries no time"):
        StoredColumns([row]).t_us("declared_at")


def test_bad_numeric_extra_in_a_model_is_a_contract_error() -> None:
    df = make_declarations(n=3, with_outcomes=False)
    record = df[list(DECLARATION_COLUMNS)].to_dict(orient="records")[1]
    model = Declaration(
        **{k: (None if pd.isna(v) else v) for k, v in record.items()},
        broker_id="B1",
        incoterm="DAP",
        insured_value="lots",
    )
    with pytest.raises(ContractError, match="insured_value"):
        declarations_frame([model], contract=EXTRAS)


def test_extras_no_model_can_use_are_faults_in_a_file_and_in_a_request() -> None:
    """An infinite measure or a 5,000-character code passed validate and features build."""
    from features.intake.contract import EXTRA_MAX_CHARS, parse_declarations
    from features.intake.rules import Limits, check_records, rules_for
    from features.params import FeatureParams

    df = make_declarations(n=4, with_outcomes=False)
    df["broker_id"] = ["B1", "x" * (EXTRA_MAX_CHARS + 1), None, "B4"]
    df["incoterm"] = "DAP"
    df["insured_value"] = [1.0, float("inf"), -1e6, float("-inf")]
    _, bad, _ = parse_declarations(df, with_outcomes=False, contract=EXTRAS)
    found = {(b.field, b.problem): b.rows.tolist() for b in bad}
    assert found == {
        ("broker_id", f"is longer than {EXTRA_MAX_CHARS} characters"): [1],
        ("insured_value", "is not a finite number"): [1, 3],
    }
    with pytest.raises(ContractError, match=r"insured_value.*not a finite number"):
        coerce_declarations(df, with_outcomes=False, contract=EXTRAS)
    # the API path judges the same values the same way
    rules = rules_for(Limits.from_params({}, FeatureParams()), with_outcomes=False)
    record = df[list(DECLARATION_COLUMNS)].to_dict(orient="records")
    models = [
        Declaration(
            **{k: (None if pd.isna(v) else v) for k, v in record[i].items()},
            broker_id=df["broker_id"][i],
            incoterm="DAP",
            insured_value=df["insured_value"][i],
        )
        for i in range(4)
    ]
    messages = check_records(models, EXTRAS, rules).messages_by_row("fault")
    assert any("insured_value" in m and "finite" in m for m in messages[1]), messages
    assert any("broker_id" in m and "longer than" in m for m in messages[1]), messages
    assert any("insured_value" in m for m in messages[3]) and not messages.get(2)
    assert not messages.get(0)


def test_rules_reject_in_a_request_what_the_contract_forbids() -> None:
    """The pydantic model reads types; the rules (shared with the file gate) judge the domain."""
    from features.intake.rules import Limits, check_records, rules_for
    from features.params import FeatureParams

    rules = rules_for(Limits.from_params({}, FeatureParams()), with_outcomes=False)
    record = make_declarations(1, with_outcomes=False)[list(DECLARATION_COLUMNS)]
    good = {k: (None if pd.isna(v) else v) for k, v in record.iloc[0].to_dict().items()}
    assert not check_records([Declaration(**good)], None, rules).faults
    bad_values = [
        ("hs_code", "12AB", "'12AB' is not an HS code of 6 to 10 digits"),
        ("channel", "drone", "'drone' is not one of postal"),
        ("quantity", 0, "0 is below 1"),
        ("declared_value", -5, "-5 is negative"),
        ("origin_country", None, "a value is required"),
        ("declared_at", "2199-03-01T08:00:00Z", "is in the future"),
        ("declared_at", "1970-01-01T00:00:00Z", "is before 2000-01-01"),
    ]
    for key, bad, message in bad_values:
        findings = check_records([Declaration(**{**good, key: bad})], None, rules)
        messages = findings.messages_by_row("fault")[0]
        assert any(m.startswith(f"{key}: ") and message in m for m in messages), messages
    with pytest.raises(ValueError, match="declared_at must carry a time zone"):
        Declaration(**{**good, "declared_at": "2026-03-01T08:00:00"})


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("quantity", True, "quantity\n.*must be a number, not true"),
        ("declared_value", False, "declared_value\n.*must be a number, not false"),
        ("gross_weight_kg", True, "gross_weight_kg\n.*must be a number, not true"),
        ("declared_at", 1764000000, "declared_at must be ISO 8601 text with a time zone"),
        ("declared_at", 1764000000123, "not a number"),
        ("declared_at", "1764000000", "not a number"),
        ("declared_at", " 1764000000.5 ", "not a number"),
        # a NaN literal was read as missing: "a value is required" of a value that was sent
        ("declared_value", float("nan"), "declared_value\n.*must be a finite number, not nan"),
        ("gross_weight_kg", float("inf"), "must be a finite number, not inf"),
    ],
)
def test_json_values_are_not_read_loosely(key, value, message) -> None:
    """A boolean where a number belongs, a number where a time belongs: a client's bug, refused
    (pydantic would score true as 1 and guess seconds or milliseconds from a number's size)."""
    import json

    body = {
        "declaration_id": "LAX-1",
        "declared_at": "2026-03-01T08:00:00Z",
        "hs_code": "610910",
        "declared_value": 12.5,
        "quantity": 2,
    }
    assert Declaration.model_validate_json(json.dumps(body)).quantity == 2
    with pytest.raises(ValueError, match=message):
        Declaration.model_validate_json(json.dumps({**body, key: value}))


def test_missing_required_column_is_named() -> None:
    df = make_declarations().drop(columns=["origin_country", "broker_id"])
    with pytest.raises(ContractError, match=r"origin_country.*broker_id"):
        coerce_declarations(df, with_outcomes=True, contract=EXTRAS)


def test_optional_fields_may_be_absent_and_empty() -> None:
    optional = ["platform_id", "seller_id", "description", "quantity", "category", "aeo_operator"]
    df = make_declarations().drop(columns=optional)
    df["operator_id"] = "  "  # an empty identifier is unknown, not an id made of spaces
    out = coerce_declarations(df, with_outcomes=True, contract=EXTRAS)
    assert out[optional].isna().all().all()
    assert out["operator_id"].isna().all()


@pytest.mark.parametrize(
    ("column", "bad_value", "problem"),
    [
        ("aeo_operator", "maybe", "not a boolean"),
        ("inspected", "perhaps", "not a boolean"),
        ("declared_value", "12,50 EUR", "not a number"),
        ("quantity", "1.5", "not a whole number"),
        ("declared_at", "31/02/2026", "not a timestamp"),
        ("inspected_at", "yesterday", "not a timestamp"),
    ],
)
def test_unconvertible_values_name_the_column(column: str, bad_value: str, problem: str) -> None:
    df = make_declarations().astype("str")
    df.loc[2, column] = bad_value  # messages name rows by declaration id
    with pytest.raises(ContractError, match=rf"{column}.*{problem}.*D00002="):
        coerce_declarations(df, with_outcomes=True, contract=EXTRAS)


def test_every_field_has_a_known_kind() -> None:
    assert {f.kind for f in FIELDS} <= {"str", "category", "datetime", "int", "float", "bool"}


def test_python_values_turn_every_missing_kind_into_none() -> None:
    import pandas as pd

    from features.intake.columns import python_values

    assert python_values(pd.Series(["a", None, "c"], dtype="str")) == ["a", None, "c"]
    assert python_values(pd.Series([1.5, float("nan")])) == [1.5, None]
    assert python_values(pd.Series([1, 2])) == [1, 2]
    assert python_values(pd.Series([True, False])) == [True, False]
    assert python_values(pd.Series(["x", None], dtype=object)) == ["x", None]


def test_api_schema_documents_the_domain_the_rules_enforce() -> None:
    schema = Declaration.model_json_schema()
    assert {"declared_at", "origin_country"} <= set(schema["required"])
    # postal items often have no HS code (probe 11): optional, as the seller
    assert not {"seller_id", "platform_id", "quantity", "hs_code"} & set(schema["required"])
    hs = schema["properties"]["hs_code"]
    assert {"type": "string"} in hs["anyOf"] and hs["pattern"] == "^[0-9]{6,10}$"
    assert schema["properties"]["channel"]["enum"][:3] == ["postal", "express", "courier"]
    assert {"type": "null"} in schema["properties"]["seller_id"]["anyOf"]


def test_an_integer_beyond_64_bits_is_refused_by_name_in_a_file_and_in_a_request():
    """A count of 10^30 wrapped around int64 in the columns (a 500 through the API)."""
    import warnings

    from pydantic import ValidationError

    from features.intake.contract import parse_number

    _, problems = parse_number(pd.Series(["3", "1e30", None]), "int")
    assert [(mask.tolist(), why) for mask, why in problems] == [
        ([False, True, False], "is out of range")
    ]
    with pytest.raises(ValidationError, match="out of range"):
        Declaration.model_validate({"quantity": 10**30})
    assert Declaration.model_validate({"quantity": 2**62}).quantity == 2**62
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow warning either
        assert Declaration.model_validate({"quantity": None}).quantity is None


def test_an_absurd_declared_value_keeps_its_cents_in_range():
    import warnings

    import numpy as np

    from features.params import FeatureParams
    from features.pipeline.prepare import MAX_CENTS, prepare
    from tests.test_serving.conftest import make_declarations

    frame = declarations_frame(
        [Declaration.model_validate({**make_declarations(1)[0], "declared_value": 1e300})]
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # the int64 cast overflowed with one
        prepared = prepare(frame, Contract(), FeatureParams())
    assert prepared["value_cents"][0] == np.int64(MAX_CENTS)


def test_parse_bool_keeps_nullable_booleans_as_they_are():
    from features.intake.contract import parse_bool

    series = pd.Series([True, None, False, True], dtype="boolean")
    out, bad = parse_bool(series)
    pd.testing.assert_series_equal(out, series)
    assert not bad.any()
    words, bad = parse_bool(pd.Series(["yes", None, "0", "maybe"], dtype=object))
    assert words.tolist()[:3] == [True, pd.NA, False] and bad.tolist() == [0, 0, 0, 1]


@pytest.mark.parametrize(
    "values",
    [
        ["b", None, "a", "b", "c", None, "a"] * 200,  # few distinct: shared strings
        [f"id{i}" if i % 5 else None for i in range(1400)],  # mostly distinct: a str per row
        [None] * 1400,
    ],
)
def test_frame_text_codes_are_what_factorize_gives_of_the_text(values) -> None:
    import numpy as np

    frame = pd.DataFrame({"seller_id": pd.array(values, dtype="str")})
    text, coding = FrameColumns(frame).text_codes("seller_id")
    assert text.tolist() == values
    expected_codes, expected_values = pd.factorize(text)
    codes, distinct = coding
    assert codes.dtype == np.int64
    np.testing.assert_array_equal(codes, expected_codes)
    assert distinct.dtype == object and list(distinct) == list(expected_values)


def test_frame_text_codes_numbered_otherwise_are_not_handed_over() -> None:
    import pyarrow as pa

    # a dictionary-typed column: Arrow numbers its values by the dictionary ("b" first),
    # not in order of first appearance as the families' codes are
    array = pa.DictionaryArray.from_arrays(pa.array([1, 0, 1] * 400, pa.int32()), ["b", "a"])
    frame = pd.DataFrame({"seller_id": pd.array(array, dtype=pd.ArrowDtype(array.type))})
    assert pd.factorize(frame["seller_id"])[0][:2].tolist() == [1, 0]
    text, coding = FrameColumns(frame).text_codes("seller_id")
    assert text.tolist() == ["a", "b", "a"] * 400
    assert coding is None  # the families factorise the text themselves


def test_a_refused_boolean_lists_every_word_read() -> None:
    """ "T" and "on" were read as true, but the refusal listed only true/false, yes/no, 1/0
    (probe 10): it lists every word the contract reads."""
    from features.intake.contract import FALSE_WORDS, TRUE_WORDS, parse_bool_value

    with pytest.raises(ValueError) as refused:
        parse_bool_value("maybe")
    listed = str(refused.value).split("(", 1)[1].rstrip(")")
    said = set(re.split(r"[/, ]+", listed))
    assert (TRUE_WORDS | FALSE_WORDS) - {"1.0", "0.0"} <= said, said
