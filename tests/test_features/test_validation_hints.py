"""The gate's console text for a file that is not in the contract at all: an export that was
never mapped is told to go through ``ingest`` rather than left with ten 'missing' faults."""

from __future__ import annotations

import pandas as pd

from features.intake.rules import Limits
from features.intake.validation import validate_file
from features.params import load_settings


def _render(tmp_path, frame: pd.DataFrame) -> str:
    path = tmp_path / "file.csv"
    frame.to_csv(path, index=False)
    limits = Limits.from_settings(load_settings(None))
    return validate_file(path, limits, cross_check=False).render()


def test_an_unmapped_export_is_pointed_to_ingest(tmp_path) -> None:
    export = pd.DataFrame({"sgd.id": ["1", "2"], "tariff.code": ["610910", "851762"]})
    text = _render(tmp_path, export)
    assert "declaration_id: required column is missing (every row)" in text
    assert "HINT" in text and "parcelrisk ingest FILE --mapping MAPPING.yaml" in text


def test_a_contract_file_missing_one_column_gets_no_hint(tmp_path) -> None:
    from tests.test_features.test_contract import make_declarations

    text = _render(tmp_path, make_declarations().drop(columns=["origin_country"]))
    assert "origin_country: required column is missing" in text and "HINT" not in text


def test_two_letters_that_are_no_country_are_warned_naming_the_code_meant(tmp_path) -> None:
    """UK, EL and XX passed the gate's pattern unsaid and became countries of their own, apart
    from GB's and GR's histories (probe). A warning (a clearance system's unknown origin is
    still scored), naming the ISO code where the mistake is a known one; XK is taken."""
    from tests.test_features.test_contract import make_declarations

    frame = make_declarations()
    frame.loc[frame.index[:4], "origin_country"] = ["UK", "EL", "XX", "XK"]
    text = _render(tmp_path, frame)
    assert "OK:" in text  # warnings pass
    assert "'UK' is no ISO 3166 country code (GB in ISO 3166?)" in text
    assert "'EL' is no ISO 3166 country code (GR in ISO 3166?)" in text
    assert "'XX' is no ISO 3166 country code:" in text
    assert "'XK'" not in text


def test_a_hijri_year_is_named_as_such(tmp_path) -> None:
    """1448/05/20 (a Saudi export) read as Gregorian was refused only as 'before 2000'."""
    from tests.test_features.test_contract import make_declarations

    frame = make_declarations()
    frame.loc[frame.index[0], "declared_at"] = "1448-05-20T07:00:00Z"
    text = _render(tmp_path, frame)
    assert "is before 2000-01-01; a year of the Hijri or Solar Hijri calendar?" in text


def test_the_era_hint_reads_a_year_of_any_width() -> None:
    """Year 287 (schema fuzzing's inspected_at) crashed the hint: /outcomes answered 500."""
    from features.intake.rules import _era_hint

    for us in (-53_000_000_000_000_000, -62_135_596_800_000_000 + 86_400_000_000):
        assert _era_hint(us) == ""
