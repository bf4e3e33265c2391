"""Probe 39, findings 6 and 8: `outcomes ingest --skip-unknown` refuses a result whose id lost
the leading zeros of a declaration the store decided (it left the found offence out as "never
decided"), and `score --out` writes non-Latin reasons as text, not \\u escapes."""

from __future__ import annotations

import dataclasses
import json

import pandas as pd
import pytest
from typer.testing import CliRunner

from serving.main import app
from serving.outcomes import OutcomesRefused, store_outcomes
from serving.scoring import results_frame
from serving.store import open_outcome_store, open_store
from tests.test_serving.test_store import _record

KEY = b"d" * 40
NOW = pd.Timestamp("2026-09-01", tz="UTC")
DECIDED = ["0000072354", "0000072355", "0000072356"]  # ids a spreadsheet strips


@pytest.fixture(autouse=True)
def _audit_key(monkeypatch) -> None:
    monkeypatch.setenv("PARCELRISK_AUDIT_KEY", KEY.decode())


def _decided(location: str, ids: list[str] = DECIDED) -> None:
    store = open_store(location)
    store.record(
        [
            dataclasses.replace(
                _record(i),
                declaration_id=one,
                declaration_json=json.dumps(
                    {"declaration_id": one, "declared_at": "2026-08-20T10:00:00Z"}
                ),
            )
            for i, one in enumerate(ids)
        ]
    )
    store.close()


def _results(ids: list[str]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "declaration_id": ids,
            "inspected_at": "2026-08-29T09:00:00Z",
            "illicit": [i % 2 == 1 for i in range(len(ids))],
            "revenue_recovered": [30.0 if i % 2 == 1 else None for i in range(len(ids))],
        }
    )


def _ingest(location: str, results: pd.DataFrame) -> dict:
    outcomes = open_outcome_store(location)
    try:
        return store_outcomes(
            outcomes, results, source="t", now=NOW, skip_unknown=True, name_skipped=True
        )
    finally:
        outcomes.close()


def _stored(location: str) -> dict:
    outcomes = open_outcome_store(location)
    try:
        with outcomes.write() as tx:
            return tx.stored(DECIDED)
    finally:
        outcomes.close()


def test_skip_unknown_refuses_a_found_offence_whose_id_lost_its_zeros(location) -> None:
    """The probe's file: one id as stored, one without its zeros (a DUTY_ADJ): refused naming
    the row, the id the store holds and the mapping's zero_pad; nothing stored."""
    _decided(location)
    with pytest.raises(OutcomesRefused) as refused:
        _ingest(location, _results(["0000072354", "72355"]))
    said = str(refused.value)
    assert "row 2 (72355)" in said and "'0000072355'" in said, said
    assert "zero_pad: 10" in said
    assert [p.rule for p in refused.value.problems] == ["declaration_id.leading_zeros"]
    assert _stored(location) == {}


def test_skip_unknown_still_leaves_out_ids_no_padding_finds(location) -> None:
    """A national file's other parcels (digits of another series, ids with letters) are left
    out and named as before; the decided ones are stored."""
    _decided(location)
    counts = _ingest(location, _results(["0000072354", "0000072355", "81234567", "EXT-7"]))
    assert counts["stored"] == 2 and counts["skipped_unknown"] == 2
    assert counts["skipped_unknown_ids"] == ["81234567", "EXT-7"]


def test_a_file_none_of_whose_digit_ids_the_store_decided_is_left_out_as_before(location) -> None:
    """No id of the file decided here, and none found padded: nothing lost its zeros, so the
    file is left out and said, as a national file of other hubs' parcels is (this raised
    "No objects to concatenate" when the padding had no width to try)."""
    _decided(location)
    counts = _ingest(location, _results(["81234567", "81234568"]))
    assert counts["stored"] == 0 and counts["skipped_unknown"] == 2


def test_skip_unknown_refuses_ids_that_kept_only_some_zeros(location) -> None:
    """'0072355' is the store's '0000072355' too: both sides compared without their zeros."""
    _decided(location)
    with pytest.raises(OutcomesRefused, match=r"'0072355' is the store's '0000072355'"):
        _ingest(location, _results(["0000072354", "0072355"]))


def test_skip_unknown_refuses_ids_with_zeros_the_store_has_not(location) -> None:
    """Zeros stripped from both sides: a file that pads ids the store holds bare is refused too,
    without a zero_pad that could not help."""
    _decided(location, ["72354", "72355"])
    with pytest.raises(OutcomesRefused, match=r"'0072355' is the store's '72355' with") as refused:
        _ingest(location, _results(["72354", "0072355"]))
    assert "zero_pad" not in str(refused.value)


def test_skip_unknown_refuses_a_file_none_of_whose_ids_kept_their_zeros(location) -> None:
    """No id of the file is found as written, so the store's width comes from a sample: the
    file was left out whole, only warned."""
    _decided(location)
    with pytest.raises(OutcomesRefused) as refused:
        _ingest(location, _results(["72354", "72355", "72356"]))
    assert len(refused.value.problems) == 3 and "zero_pad: 10" in str(refused.value)
    assert _stored(location) == {}


def test_the_lookup_asks_the_store_once_whatever_the_number_of_ids() -> None:
    """A national file of 50,000 other parcels: one query with the widths of the ids found,
    two when none is (a bounded sample first), never one per id."""
    from serving.outcomes import ids_with_lost_zeros

    decided = {"0000072355": 1}
    asked: list[int] = []

    def declared_at(ids: list[str]) -> dict:
        asked.append(len(ids))
        return {i: decided[i] for i in ids if i in decided}

    unknown = [str(10_000_000 + i) for i in range(50_000)] + ["72355"]
    found = ids_with_lost_zeros(unknown, ["0000072354"], declared_at)
    assert found == {"72355": "0000072355"} and len(asked) == 1
    asked.clear()
    assert ids_with_lost_zeros(["72355", *unknown[:500]], [], declared_at) == found
    assert len(asked) == 2 and asked[0] <= 20 * 8


def test_outcomes_ingest_skip_unknown_refuses_then_stores_with_zero_pad(tmp_path) -> None:
    """The command as the probe ran it: exit non-zero naming zero_pad; the mapping it names
    stores the file whole."""
    location = str(tmp_path / "audit.db")
    _decided(location)
    source = tmp_path / "res.csv"
    source.write_text(
        "DECL;DATE;HIT\n0000072354;2026-08-29T09:00:00Z;N\n72355;2026-08-29T09:00:00Z;Y\n"
    )
    mapping = tmp_path / "map.yaml"
    mapping.write_text(
        "columns:\n"
        "  declaration_id: DECL\n"
        "  inspected_at: DATE\n"
        "  illicit: {column: HIT, values: {Y: true, N: false}}\n"
    )
    args = ["outcomes", "ingest", str(source), "--mapping", str(mapping), "--db", location]
    run = CliRunner().invoke(app, [*args, "--skip-unknown"])
    assert run.exit_code != 0
    said = run.output + str(run.exception)
    assert "72355" in said and "zero_pad: 10" in said, said
    mapping.write_text(mapping.read_text().replace("DECL\n", "{column: DECL, zero_pad: 10}\n"))
    run = CliRunner().invoke(app, [*args, "--skip-unknown"])
    assert run.exit_code == 0, run.output
    summary = json.loads(run.output[run.output.index("{") :])
    assert summary["stored"] == 2 and summary["skipped_unknown"] == 0


def test_the_score_file_writes_non_latin_reasons_as_text(tmp_path) -> None:
    """`score --out` (CSV and Parquet alike come from this frame): '子烟' as written, as /score
    gives it, not '\\u5b50\\u70df'."""
    text = "the description's word '子烟' was found in offences at rate 66%"
    record = dataclasses.replace(
        _record(0),
        reasons=[{"feature": "text_word_hit_rate_max", "text": text, "contribution": 1.3}],
        warnings=["описание: слово 'табак'"],
    )
    frame = results_frame([record], pd.Series([0.8]).to_numpy())
    frame.to_csv(tmp_path / "out.csv", index=False)
    written = (tmp_path / "out.csv").read_text(encoding="utf-8")
    assert "子烟" in written and "табак" in written and "\\u" not in written
    frame.to_parquet(tmp_path / "out.parquet", index=False)
    back = pd.read_parquet(tmp_path / "out.parquet")
    assert "子烟" in back["reasons"].iat[0]
    assert json.loads(back["reasons"].iat[0])[0]["text"] == text
