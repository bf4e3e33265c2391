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


def test_an_exports_own_country_codes_pass_with_a_warning(tmp_path) -> None:
    """A file in the layout of DATE's (KDD 2020) public synthetic declarations codes countries
    its own way (CNTRY376): every row was refused, and no values table could name countries
    the export never disclosed. Read as written, each code a country of its own, said once; a
    three-digit code is said to read as ISO numeric too (the mapping converts it if it is)."""
    from tests.test_features.test_contract import make_declarations

    frame = make_declarations()
    frame["origin_country"] = ["CNTRY376", "156", "CNTRY376", "CNTRY12", "CNTRY_9", "CN"]
    frame["seller_country"] = "SELLER-CTY.1"
    text = _render(tmp_path, frame)
    assert text.startswith("OK:"), text
    assert "'CNTRY376' is no ISO 3166 country code: read as the export's own code" in text
    assert "'156' is no ISO 3166 alpha-2 code: read as the export's own code" in text
    assert "as ISO 3166 numeric it is CN: then map the column with country_codes: numeric" in text
    assert "seller_country: 6 row(s)" in text and "[seller_country.iso3166]" in text
    assert "'CN'" not in text


def test_a_known_country_written_another_way_stays_a_fault(tmp_path) -> None:
    """Alpha-3 codes and country names have a known fix (country_codes), and kept as written
    would split a country's history from its alpha-2 code's: faults, not own codes. Text that
    is no code at all (a space, 17 characters) is refused by the pattern."""
    from tests.test_features.test_contract import make_declarations

    frame = make_declarations()
    frame["origin_country"] = ["CHN", "DEU", "germany", "C N", "A" * 17, "CN"]
    text = _render(tmp_path, frame)
    assert text.startswith("INVALID:"), text
    assert "'CHN' is ISO 3166 alpha-3 for CN: map the column with country_codes: alpha3" in text
    assert "'GERMANY' is a name of DE: map the column with country_codes: name" in text
    assert "origin_country: 3 row(s) (50.00%) break 'an ISO 3166 alpha-2 code" in text
    assert "origin_country: 2 row(s) (33.33%) break 'a country code" in text
    assert "'C N' is not a country code" in text and "[origin_country.format]" in text


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


def test_a_few_bad_rows_are_pointed_to_the_quarantine(tmp_path) -> None:
    """DATE's file has 170 declarations without a value in 100,000: the whole file refused,
    and nothing said that `ingest --quarantine` sets such rows aside. Said when the faults sit
    on at most --max-rejected (1%) of the rows; not when more, nor for a file that is no
    contract file at all."""
    from tests.test_features.test_contract import make_declarations

    frame = make_declarations(n=300)
    frame.loc[frame.index[:3], "declared_value"] = None  # 1%
    text = _render(tmp_path, frame)
    assert text.startswith("INVALID:")
    assert "HINT    the faults are on 3 of 300 rows: `parcelrisk ingest SOURCE" in text
    assert "--quarantine rejected.csv` sets such rows aside" in text
    frame.loc[frame.index[:4], "declared_value"] = None  # 1.33%
    assert "--quarantine" not in _render(tmp_path, frame)
    assert "--quarantine" not in _render(tmp_path, frame.drop(columns=["declared_value"]))


def test_an_hs_code_of_chapter_00_is_warned(tmp_path) -> None:
    """No HS chapter is 00: '0012345678' (a zero-padded id, a placeholder) was scored as a
    code the model never saw, unsaid (probe 9). Warned, kept: a placeholder is still scored."""
    from tests.test_features.test_contract import make_declarations

    frame = make_declarations()
    frame.loc[frame.index[:2], "hs_code"] = ["0012345678", "0000000000"]
    text = _render(tmp_path, frame)
    assert text.startswith("OK:"), text
    assert "'0012345678' is in no HS chapter (00): a placeholder, or an id?" in text
    assert "hs_code: 2 row(s)" in text and "[hs_code.chapter]" in text
