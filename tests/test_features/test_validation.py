"""The validation gate: faults fail with examples, outliers warn, reports read offline."""

from __future__ import annotations

import hashlib
import json
import socket
from collections.abc import Callable
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from features.intake.io import write_declarations
from features.intake.rules import Limits
from features.intake.validation import (
    GateError,
    check_declarations,
    require_valid,
    validate_file,
)
from features.params import FeatureParams
from tests.test_features.test_contract import EXTRAS, make_declarations

LIMITS = Limits.from_params({}, FeatureParams())


def _check(df: pd.DataFrame):
    return check_declarations(df, EXTRAS, LIMITS)[0]


def _set(column: str, row: int, value) -> Callable[[pd.DataFrame], pd.DataFrame]:
    def corrupt(df: pd.DataFrame) -> pd.DataFrame:
        df = df.copy()
        df[column] = df[column].astype(object)
        df.loc[row, column] = value
        return df

    return corrupt


def _drop(column: str) -> Callable[[pd.DataFrame], pd.DataFrame]:
    return lambda df: df.drop(columns=[column])


def _as_text_with(column: str, row: int, value: str) -> Callable[[pd.DataFrame], pd.DataFrame]:
    def corrupt(df: pd.DataFrame) -> pd.DataFrame:
        text = df.astype("str").where(df.notna())
        text.loc[row, column] = value
        return text

    return corrupt


# Rows of make_declarations(): 0, 2, 4 inspected (0 illicit with an offence), 1, 3, 5 not.
FAULTS = {
    "duplicate ids": (
        _set("declaration_id", 1, "D00000"),
        "declaration_id.unique",
        "appears 2 times",
    ),
    "null origin": (
        _set("origin_country", 3, None),
        "origin_country.required",
        "a value is required",
    ),
    "bad hs_code": (_set("hs_code", 2, "61A9"), "hs_code.format", "'61A9' is not an HS code"),
    "alpha-3 country": (
        _set("origin_country", 1, "CHN"),
        "origin_country.iso_form",
        "'CHN' is ISO 3166 alpha-3 for CN: map the column with country_codes: alpha3",
    ),
    "country name": (
        _set("origin_country", 1, "GERMANY"),
        "origin_country.iso_form",
        "'GERMANY' is a name of DE: map the column with country_codes: name",
    ),
    "bad country": (
        _set("origin_country", 1, "C N"),
        "origin_country.format",
        "'C N' is not a country code: ISO 3166 alpha-2, or the export's own",
    ),
    "bad currency": (
        _set("currency", 4, "EURO"),
        "currency.format",
        "'EURO' is not a three-letter",
    ),
    "negative value": (_set("declared_value", 1, -5.0), "declared_value.minimum", "-5 is negative"),
    "negative weight": (
        _set("gross_weight_kg", 5, -1.0),
        "gross_weight_kg.minimum",
        "-1 kg is negative",
    ),
    "quantity 0": (_set("quantity", 2, 0), "quantity.minimum", "0 is below 1"),
    "channel not allowed": (_set("channel", 1, "drone"), "channel.code", "'drone' is not one of"),
    "category not allowed": (
        _set("category", 3, "bribe"),
        "category.code",
        "'bribe' is not one of",
    ),
    "declared in the far future": (
        _set("declared_at", 1, pd.Timestamp("2100-01-01", tz="UTC")),
        "declared_at.not_future",
        "2100-01-01T00:00:00Z is in the future",
    ),
    "declared in the Buddhist era": (
        _set("declared_at", 1, pd.Timestamp("2569-10-05", tz="UTC")),
        "declared_at.not_future",
        "a year of the Buddhist era, 543 years ahead of the Gregorian? the mapping reads such "
        "dates with calendar: buddhist",
    ),
    "declared before 2000": (
        _set("declared_at", 3, pd.Timestamp("1970-01-01", tz="UTC")),
        "declared_at.not_before",
        "is before 2000-01-01",
    ),
    "illicit where not inspected": (
        _set("illicit", 1, True),
        "illicit.without_inspection",
        "recorded but the parcel was not inspected",
    ),
    "inspected without inspected_at": (
        _set("inspected_at", 2, pd.NaT),
        "inspected_at.when_inspected",
        "result time is missing",
    ),
    "inspected without result": (
        _set("illicit", 4, pd.NA),
        "illicit.when_inspected",
        "result (illicit) is missing",
    ),
    "inspected before declared": (
        _set("inspected_at", 2, pd.Timestamp("2026-02-01", tz="UTC")),
        "inspected_at.after_declaration",
        "is before declared_at",
    ),
    "offence without illicit": (
        _set("offence_type", 2, "counterfeit"),
        "offence_type.without_offence",
        "not found illicit",
    ),
    "negative revenue recovered": (
        _set("revenue_recovered", 0, -1.0),
        "revenue_recovered.minimum",
        "-1 EUR is negative",
    ),
    "unconvertible number": (
        _as_text_with("declared_value", 2, "12 EUR"),
        "declared_value.type",
        "'12 EUR' is not a number",
    ),
    "infinite value": (
        _set("declared_value", 2, float("inf")),
        "declared_value.finite",
        "inf is not a finite",
    ),
}


def test_valid_history_passes() -> None:
    result = _check(make_declarations())
    assert result.success, result.render()
    assert result.findings.items == []
    assert result.render().startswith("OK: 6 rows, ")


@pytest.mark.parametrize("case", sorted(FAULTS))
def test_gate_faults_name_field_value_and_row(case: str) -> None:
    corrupt, rule, message = FAULTS[case]
    result = _check(corrupt(make_declarations()))
    assert not result.success
    found = [f for f in result.findings.faults if f.rule.name == rule]
    assert found, result.render()
    assert any(message in m for m in found[0].messages()), found[0].messages()
    assert message in result.render()  # the console shows the example


@pytest.mark.parametrize(
    ("corrupt", "column"),
    [(_drop("origin_country"), "origin_country"), (_drop("broker_id"), "broker_id")],
)
def test_missing_required_column_is_one_fault(corrupt, column) -> None:
    result = _check(corrupt(make_declarations()))
    assert not result.success
    assert result.missing_columns == [column]
    assert f"{column}: required column is missing" in result.render()
    assert not [f for f in result.findings.items if f.rule.field == column]  # not per row


def test_outliers_warn_and_keep_the_data() -> None:
    df = make_declarations()
    df.loc[1, "gross_weight_kg"] = 250_000.0  # a bulk consignment
    df.loc[3, "gross_weight_kg"] = 0.0
    df.loc[2, "currency"] = "KRW"
    df.loc[2, "declared_value"] = 200_000_000.0  # KRW 200M = EUR 136,000 > 100,000
    df.loc[4, "currency"] = "MNT"  # no exchange rate in the table
    result = _check(df)
    assert result.success, result.render()
    rules = {f.rule.name: f for f in result.findings.warnings}
    assert set(rules) == {
        "gross_weight_kg.plausible",
        "gross_weight_kg.zero",
        "declared_value.plausible",
        "currency.rate",
    }
    assert rules["declared_value.plausible"].messages() == [
        "declared_value: 200000000 KRW (136,000 EUR) is above the plausible 100,000 EUR"
    ]
    assert "WARNING gross_weight_kg" in result.render()


def test_plausibility_limits_are_in_the_base_currency() -> None:
    df = make_declarations()
    df.loc[2, "currency"] = "KRW"
    df.loc[2, "declared_value"] = 9_000_000.0  # raw units far above 100,000, only EUR 6,120
    assert not _check(df).findings.warnings
    strict = Limits.from_params({"max_value": 5_000}, FeatureParams())
    result = check_declarations(df, EXTRAS, strict)[0]
    assert [f.rule.name for f in result.findings.warnings] == ["declared_value.plausible"]


def test_missing_optional_identifiers_are_not_faults() -> None:
    df = make_declarations()
    for column in ("seller_id", "operator_id", "consignee_id", "broker_id"):
        df[column] = df[column].astype(object)
        df.loc[[1, 3], column] = None
    assert _check(df).success


def test_empty_file_fails() -> None:
    result = _check(make_declarations().head(0))
    assert not result.success
    assert "the file has no rows" in result.render()


def test_faults_show_offending_declaration_ids_and_rows() -> None:
    result = _check(_set("hs_code", 2, "61A9")(make_declarations()))
    (finding,) = result.findings.faults
    assert result.examples(finding) == [
        {
            "row": 3,
            "declaration_id": "D00002",
            "message": "hs_code: '61A9' is not an HS code of 6 to 10 digits",
        }
    ]
    assert "row 3 (D00002): hs_code: '61A9'" in result.render()


def test_file_without_outcomes_skips_outcome_checks() -> None:
    result = _check(make_declarations(with_outcomes=False))
    assert result.success, result.render()
    assert result.with_outcomes is False


def test_unreadable_csv_is_reported_as_faults(tmp_path) -> None:
    text = make_declarations().drop(columns=["origin_country"]).astype("str")
    text.loc[1, "quantity"] = "many"
    path = tmp_path / "broken.csv"
    text.to_csv(path, index=False)
    result = validate_file(path, LIMITS, cross_check=False)
    assert not result.success
    report = result.render()
    assert "origin_country: required column is missing" in report
    assert "quantity: 'many' is not a number" in report


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class _References(HTMLParser):
    """Every attribute or style that could make a browser fetch something."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []
        self.tags: set[str] = set()

    def handle_starttag(self, tag, attrs):
        self.tags.add(tag)
        for name, value in attrs:
            if name in ("src", "href", "srcset", "action", "data", "poster") and value:
                self.found.append(f"{tag}.{name}={value}")

    def handle_data(self, data):
        if "url(" in data or "@import" in data:
            self.found.append(data.strip()[:80])


def test_report_is_written_and_reads_offline(tmp_path, monkeypatch) -> None:
    """With the network off, the report is written and nothing in it points outside."""

    def refuse(*args, **kwargs):
        raise OSError("network is off in this test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    path = tmp_path / "declarations.parquet"
    df = _set("illicit", 1, True)(make_declarations())
    df.loc[5, "gross_weight_kg"] = 5000.0
    write_declarations(df, path, EXTRAS)
    before = _sha256(path)
    result = validate_file(path, LIMITS, report_dir=tmp_path / "report")
    assert not result.success
    assert _sha256(path) == before  # the data is never modified
    html = (tmp_path / "report" / "index.html").read_text(encoding="utf-8")
    parser = _References()
    parser.feed(html)
    assert parser.found == []
    assert not parser.tags & {"script", "link", "img", "iframe", "object", "embed"}
    assert "illicit.without_inspection" in html and "gross_weight_kg.plausible" in html
    assert "D00001" in html  # examples name the declarations
    record = json.loads((tmp_path / "report" / "validation.json").read_text())
    assert record["fingerprint"] == before and record["success"] is False
    assert [f["rule"] for f in record["faults"]] == ["illicit.without_inspection"]
    assert [w["rule"] for w in record["warnings"]] == ["gross_weight_kg.plausible"]


def test_great_expectations_counts_agree_with_the_gate(tmp_path) -> None:
    df = make_declarations(n=30)
    # a result known before it was recorded (a warning) and one known days later (none)
    df["result_known_at"] = pd.Series(pd.NaT, index=df.index, dtype="datetime64[us, UTC]")
    df.loc[10, "result_known_at"] = df.loc[10, "inspected_at"] - pd.Timedelta(hours=1)
    df.loc[12, "result_known_at"] = df.loc[12, "inspected_at"] + pd.Timedelta(days=3)
    for corrupt in (
        _set("hs_code", 2, "61A9"),
        _set("channel", 4, "drone"),
        _set("declared_value", 6, -3.0),
        _set("illicit", 7, True),
        _set("inspected_at", 8, pd.Timestamp("2026-02-01", tz="UTC")),
        _set("declaration_id", 9, "D00000"),
        _set("gross_weight_kg", 11, 4000.0),
        _set("currency", 13, "MNT"),
        _set("currency", 14, "<svg onload=alert(1)>"),  # no code: currency.format's, not .rate's
        _set("quantity", 15, 0),
    ):
        df = corrupt(df)
    path = tmp_path / "d.parquet"
    write_declarations(df, path, EXTRAS)
    result = validate_file(path, LIMITS)
    cross = result.cross_check
    assert cross is not None and not cross.get("error"), cross
    assert cross["disagreements"] == [], cross["disagreements"]
    assert cross["compared"] > 40
    assert cross["nonzero_counts"] >= 10
    assert "Great Expectations agrees" in result.render()
    assert cross["counts"]["result_known_at.after_result"] == 1  # GX checks it too
    warned = [w for w in result.findings.warnings if w.rule.name == "result_known_at.after_result"]
    assert [f.rows.tolist() for f in warned] == [[10]], result.render()


def test_require_valid_refuses_faults_and_accepts_a_matching_record(tmp_path) -> None:
    good, bad = tmp_path / "good.parquet", tmp_path / "bad.parquet"
    write_declarations(make_declarations(), good, EXTRAS)
    write_declarations(_set("hs_code", 2, "61A9")(make_declarations()), bad, EXTRAS)
    with pytest.raises(GateError, match=r"(?s)features build refuses it.*'61A9'"):
        require_valid(bad, LIMITS, what="features build")
    assert require_valid(good, LIMITS).status == "passed"
    skipped = require_valid(bad, LIMITS, no_validate=True)
    assert (skipped.status, skipped.how) == ("skipped", "--no-validate")

    validate_file(good, LIMITS, report_dir=tmp_path / "report", cross_check=False)
    assert require_valid(good, LIMITS, validated_by=tmp_path / "report").how == "record"
    with pytest.raises(Exception, match="is for another file"):
        require_valid(bad, LIMITS, validated_by=tmp_path / "report")


def test_cli_validate_exit_codes(tmp_path) -> None:
    from serving.main import app

    good, bad, odd = tmp_path / "good.parquet", tmp_path / "bad.parquet", tmp_path / "odd.parquet"
    write_declarations(make_declarations(), good, EXTRAS)
    write_declarations(_set("channel", 1, "drone")(make_declarations()), bad, EXTRAS)
    write_declarations(_set("gross_weight_kg", 1, 3000.0)(make_declarations()), odd, EXTRAS)
    runner = CliRunner()

    ok = runner.invoke(app, ["validate", str(good), "--no-cross-check"])
    assert ok.exit_code == 0, ok.output
    assert "OK: 6 rows" in ok.output

    warned = runner.invoke(app, ["validate", str(odd), "--no-cross-check"])
    assert warned.exit_code == 0, warned.output
    assert "1 warning(s)" in warned.output and "3000 kg is above the plausible" in warned.output

    failed = runner.invoke(app, ["validate", str(bad), "--no-cross-check"])
    assert failed.exit_code == 1, failed.output
    assert "channel: 'drone' is not one of postal" in failed.output


def test_gate_is_vectorised_over_large_frames() -> None:
    df = pd.concat([make_declarations(n=300)] * 20, ignore_index=True)
    df["declaration_id"] = [f"D{i:07d}" for i in range(len(df))]
    df.loc[np.arange(0, len(df), 97), "hs_code"] = "XX"
    result = _check(df)
    (finding,) = result.findings.faults
    assert finding.count == len(np.arange(0, len(df), 97))


def test_validate_file_announces_its_steps_in_order(tmp_path: Path) -> None:
    path = tmp_path / "d.parquet"
    write_declarations(make_declarations(50), path)
    seen: list[str] = []
    validate_file(path, LIMITS, report_dir=tmp_path / "r", cross_check=False, progress=seen.append)
    assert seen == ["read", "rules", "report"]  # no cross-check asked for: not announced


def test_an_over_long_consignee_id_is_a_fault_shown_without_its_value(tmp_path) -> None:
    """Consignee ids are pseudonymised as they are read, so the length rule would only see the
    28-character pseudonym: the raw length is checked there, and the value never shown."""
    raw = "PERSON-" + "9" * 70
    frame = make_declarations()
    frame["consignee_id"] = frame["consignee_id"].astype(object)
    frame.loc[2, "consignee_id"] = raw
    path = tmp_path / "long.csv"
    frame.to_csv(path, index=False)
    result = validate_file(path, LIMITS, cross_check=False)
    report = result.render()
    assert not result.success and "consignee_id" in report
    assert "longer than 64 characters" in report and raw not in report


def test_extras_that_lost_their_metadata_are_named_as_such(tmp_path) -> None:
    """A contract file rewritten by pandas (months concatenated) keeps the extras' columns but
    not the metadata that declares them: the note says what happened and what to do."""
    from features.intake.contract import Contract
    from features.intake.io import read_raw_declarations

    df = make_declarations()
    path = tmp_path / "declarations.parquet"
    write_declarations(df, path, EXTRAS)
    with_metadata = check_declarations(*read_raw_declarations(path), LIMITS)[0]
    assert not with_metadata.ignored_columns
    pd.concat([pd.read_parquet(path)]).to_parquet(tmp_path / "concatenated.parquet")
    raw, contract = read_raw_declarations(tmp_path / "concatenated.parquet")
    assert contract == Contract()
    result = check_declarations(raw, contract, LIMITS)[0]
    assert "broker_id" in result.ignored_columns
    assert "lost the metadata `ingest` writes" in result.ignored_note()
    assert "lost the metadata" not in check_declarations(df, EXTRAS, LIMITS)[0].ignored_note()


def test_a_file_id_holding_an_invisible_character_is_a_fault_naming_it(tmp_path):
    """The gate refuses in a file what the API refuses in a request: a declaration id holds
    no hidden mark at all, another id no control or bidi control."""
    from features.intake.contract import (
        DECLARATION_ID_INVISIBLE_PROBLEM,
        INVISIBLE_PROBLEM,
        Contract,
        parse_declarations,
    )

    frame = pd.DataFrame(
        {
            "declaration_id": ["A1", "A1\u200b", "A\u202e2", "A4"],
            "seller_id": ["S1", "S\x072", "S3", "S\u202e4"],
        }
    )
    _, bad, _ = parse_declarations(frame, with_outcomes=False, contract=Contract())
    found = {(b.field, tuple(b.rows.tolist()), b.problem) for b in bad}
    assert found == {
        ("declaration_id", (1, 2), DECLARATION_ID_INVISIBLE_PROBLEM),
        ("seller_id", (1, 3), INVISIBLE_PROBLEM),
    }


def test_full_width_identifiers_read_as_their_ascii_on_files_and_requests() -> None:
    """A CJK input method types ０１２３ where another export writes 0123: one consignee was two
    entities (probe). Files and the API fold identifiers alike; text keeps its forms."""
    from features.intake.contract import Contract, Declaration, parse_declarations

    frame = pd.DataFrame(
        {
            "declaration_id": ["Ａ１", "A2"],
            "seller_id": ["Ｓ\u3000１２", "S 12"],
            "consignee_id": ["０１２３", "0123"],
            "description": ["Ｔシャツ", "T-shirt"],
        }
    )
    out, bad, _ = parse_declarations(frame, with_outcomes=False, contract=Contract())
    assert not bad
    assert out["declaration_id"].tolist() == ["A1", "A2"]
    assert out["seller_id"].tolist() == ["S 12", "S 12"]
    assert out["consignee_id"].iloc[0] == out["consignee_id"].iloc[1]  # one pseudonym
    assert out["description"].iloc[0] == "Ｔシャツ"
    body = {
        "declaration_id": "Ａ１", "declared_at": "2026-07-01T08:00:00Z", "arrival_office": "O1",
        "channel": "express", "operator_id": "E1", "seller_id": "Ｓ\u3000１２",
        "seller_country": "CN", "consignee_id": "０１２３", "origin_country": "CN",
        "hs_code": "610910", "description": "Ｔシャツ", "quantity": 1, "gross_weight_kg": 1.0,
        "declared_value": 9.5, "currency": "EUR", "category": "merchandise",
        "ioss_prepaid": False, "aeo_operator": False,
    }  # fmt: skip
    sent = Declaration.model_validate(body)
    assert (sent.declaration_id, sent.seller_id) == ("A1", "S 12")
    assert sent.consignee_id == out["consignee_id"].iloc[0]
    assert sent.description == "Ｔシャツ"


def test_a_declaration_years_from_the_rest_is_named(tmp_path) -> None:
    """A year typed 2006 for 2026 passed the gate unsaid, then stretched the period the next
    retrain divided until no labels were left to train on (probe 10): a warning names it,
    by row and id, in a whole file and in one read in chunks alike."""
    from features.intake.validation import check_parquet_in_chunks

    frame = make_declarations(n=50)
    frame.loc[7, "declared_at"] = pd.Timestamp("2006-11-20T08:00:00Z")
    limits = LIMITS
    whole = check_declarations(frame, None, limits)[0]
    (isolated,) = [f for f in whole.findings.warnings if f.rule.name == "declared_at.isolated"]
    assert isolated.rows.tolist() == [7]
    (message,) = isolated.messages()
    assert message.startswith("declared_at: 2006-11-20T08:00:00Z lies ")
    assert "days before the rest of the file" in message and "mistyped year" in message
    assert whole.success
    path = tmp_path / "d.parquet"
    write_declarations(frame, path)
    chunked = check_parquet_in_chunks(path, limits, chunk_rows=16)
    assert [
        f.rows.tolist() for f in chunked.findings.warnings if f.rule.name == "declared_at.isolated"
    ] == [[7]]
    plain = check_declarations(make_declarations(n=50), None, limits)[0]
    assert not [f for f in plain.findings.warnings if f.rule.name == "declared_at.isolated"]


def test_a_declaration_hours_ahead_of_the_clock_is_warned_within_the_skew() -> None:
    """A local time sent as UTC puts a declaration hours ahead of the clock: warned (it was
    answered without a word, probe 31); minutes of clock difference are not; beyond the skew
    the fault says so, alone."""
    from datetime import UTC, datetime

    from features.intake.validation import check_declarations

    now = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
    df = make_declarations()
    df.loc[1, "declared_at"] = pd.Timestamp("2026-12-07 20:00", tz="UTC")  # UTC+8 read as Z
    df.loc[2, "declared_at"] = pd.Timestamp("2026-12-07 12:10", tz="UTC")  # clocks 10 min apart
    df.loc[3, "declared_at"] = pd.Timestamp("2026-12-12 12:00", tz="UTC")  # beyond the skew
    result, _ = check_declarations(df, None, Limits.from_params({}, FeatureParams()), now=now)
    found = {f.rule.name: f for f in result.findings.items}
    assert found["declared_at.ahead"].rows.tolist() == [1]
    assert found["declared_at.ahead"].rule.severity == "warning"
    assert found["declared_at.ahead"].messages() == [
        "declared_at: 2026-12-07T20:00:00Z is 8.0 h ahead of this system's clock "
        "(2026-12-07T12:00:00Z): a local time sent as UTC? Its history windows count from it"
    ]
    assert found["declared_at.not_future"].rows.tolist() == [3]


def test_a_huge_declaration_id_is_cut_in_the_findings_and_the_saved_reports(tmp_path) -> None:
    """A value that breaks its length rule was cut in its message, but the row's id beside it
    was printed whole, and GX's saved result quoted it whole, twice: a 200 MB id ran
    `validate` out of memory and left a 400 MB report (probe 34)."""
    path = tmp_path / "declarations.parquet"
    df = make_declarations()
    huge = "X" * 2_000_000
    df.loc[3, "declaration_id"] = huge
    write_declarations(df, path, EXTRAS)
    result = validate_file(path, LIMITS, report_dir=tmp_path / "report")
    assert not result.success
    text = result.render()
    (finding,) = [f for f in result.findings.faults if f.rule.name == "declaration_id.length"]
    (example,) = result.examples(finding)
    assert example["declaration_id"] == "X" * 77 + "..."
    assert len(text) < 20_000 and "X" * 77 + "..." in text
    sizes = {p.name: p.stat().st_size for p in (tmp_path / "report").rglob("*") if p.is_file()}
    assert sizes and max(sizes.values()) < 500_000, sizes
