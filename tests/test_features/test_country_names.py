"""Countries written as names (``China``, ``Allemagne``, ``中国``): ``country_codes: name``."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml

from features.intake.contract import ContractError
from features.intake.draft import draft_mapping, read_for_draft
from features.intake.ingest import ingest_file
from features.intake.iso3166 import name_to_alpha2, plain_name
from tests.test_features.test_title_above_header import MAPPING as TITLE_MAPPING

# the Portuguese export's mapping (tests/test_features/test_title_above_header.py), its
# countries written as names
MAPPING = TITLE_MAPPING.replace(
    "  origin_country: ORIGEM\n",
    "  origin_country: {column: ORIGEM, country_codes: name}\n"
    "  seller_country: {column: PAIS VENDEDOR, country_codes: name, values: {Formosa: TW}}\n",
)
ROWS = [
    ("China", "Hong Kong", "CN", "HK"),
    ("Estados Unidos", "EUA", "US", "US"),
    ("Coreia, República da", "Republic of Korea", "KR", "KR"),
    ("Alemanha", "DEU", "DE", "DE"),
    ("中国", "CN", "CN", "CN"),
    ("Vereinigte Staaten", "Formosa", "US", "TW"),
]


def _export(path: Path, rows: list[tuple[str, str, str, str]]) -> Path:
    lines = ["NUM;DATA;NCM;VALOR;ORIGEM;PAIS VENDEDOR"]
    lines += [
        f"PT{i};0{i + 1}/03/2026;61091000;1,50;{o};{s}" for i, (o, s, _, _) in enumerate(rows)
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("name", "code"),
    [
        ("Chine", "CN"),
        ("ALLEMAGNE", "DE"),
        ("Países Bajos", "NL"),
        ("Royaume-Uni", "GB"),
        ("대한민국", "KR"),
        ("Türkiye", "TR"),
        ("Niger", "NE"),
        ("Nigeria", "NG"),
    ],
)
def test_names_in_several_languages_read_to_their_code(name, code) -> None:
    assert name_to_alpha2()[plain_name(name)] == code


def test_a_column_of_names_is_read_to_codes_with_the_values_table_first(tmp_path) -> None:
    source = _export(tmp_path / "export.csv", ROWS)
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text(MAPPING, encoding="utf-8")
    ingest_file(source=source, mapping_path=mapping, out=tmp_path / "out.parquet")
    got = pd.read_parquet(tmp_path / "out.parquet")
    assert list(got["origin_country"]) == [r[2] for r in ROWS]
    assert list(got["seller_country"]) == [r[3] for r in ROWS]


def test_a_name_no_table_holds_is_refused_naming_the_row(tmp_path) -> None:
    source = _export(tmp_path / "export.csv", [*ROWS, ("Narnia", "CN", "", "")])
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text(MAPPING, encoding="utf-8")
    with pytest.raises(ContractError, match=r"not country names.*row 7 \(PT6\): 'Narnia'"):
        ingest_file(source=source, mapping_path=mapping, out=tmp_path / "out.parquet")


def test_the_draft_reads_a_column_of_names_as_countries(tmp_path) -> None:
    source = _export(tmp_path / "export.csv", ROWS[:5])  # Formosa: no table holds it
    raw, reading = read_for_draft(source)
    columns = yaml.safe_load(draft_mapping(raw, **reading).text)["columns"]
    assert columns["origin_country"] == {"column": "ORIGEM", "country_codes": "name"}
    assert columns["seller_country"]["country_codes"] == "name"
