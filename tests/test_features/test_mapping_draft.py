"""`parcelrisk mapping draft`: a first mapping proposed from an export's names and values.

The main case is an export written here from generated contract data the way a Spanish
administration might (its names, day-first local times, weights with their units, decimal
commas with thousands dots, alpha-3 countries, S/N flags): the draft alone must read it back to
the contract values. The others pin what the draft must not guess.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from features.errors import ParcelriskError
from features.intake.contract import ContractError
from features.intake.draft import draft_mapping, read_for_draft
from features.intake.ingest import ingest_file
from features.intake.iso3166 import ALPHA3_TO_ALPHA2
from serving.main import app

ALPHA2_TO_ALPHA3 = {a2: a3 for a3, a2 in ALPHA3_TO_ALPHA2.items()}
ZONE = "Europe/Madrid"


def _spanish(value: float) -> str:
    """1234.5 -> '1.234,50'."""
    return f"{value:,.2f}".replace(",", "_").replace(".", ",").replace("_", ".")


@pytest.fixture(scope="module")
def contract_history(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    from features.synthetic import generate_to_dir

    root = tmp_path_factory.mktemp("draft")
    generate_to_dir(parcels=800, days=20, seed=5, out=root, start="2026-03-01")
    return pd.read_parquet(root / "declarations.parquet")


@pytest.fixture(scope="module")
def spanish_export(contract_history: pd.DataFrame, tmp_path_factory) -> Path:
    d = contract_history
    local = d["declared_at"].dt.tz_convert(ZONE)
    weight = d["gross_weight_kg"].round(3)
    export = pd.DataFrame(
        {
            "Numero Declaracion": d["declaration_id"],
            "Fecha": local.dt.strftime("%d/%m/%Y %H:%M"),
            "Aduana": d["arrival_office"],
            "Canal": d["channel"].str.upper(),
            "Vendedor": d["seller_id"],
            "Pais Vendedor": d["seller_country"].map(ALPHA2_TO_ALPHA3),
            "Origen": d["origin_country"].map(ALPHA2_TO_ALPHA3),
            "Codigo NC": d["hs_code"],
            "Descripcion Mercancia": d["description"],
            "Cantidad": d["quantity"].astype("Int64").astype(str).replace("<NA>", ""),
            "Peso": [
                f"{round(w * 1000)} g" if w < 1 else f"{w:.3f}".replace(".", ",") + " kg"
                for w in weight
            ],
            "Valor": [_spanish(v) for v in d["declared_value"]],
            "Moneda": d["currency"],
            "Transitario": d["seller_id"].str[-2:],  # an extra, 100 codes at most
        }
    )
    path = tmp_path_factory.mktemp("export") / "export.csv"
    export.to_csv(path, sep=";", index=False)
    return path


def _draft(path: Path, **kwargs):
    raw, reading = read_for_draft(path)
    return draft_mapping(raw, **kwargs, **reading)


def _ingested_with(
    draft, source: Path, contract: pd.DataFrame, tmp_path: Path
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``source`` ingested with the draft as written, and the contract rows it should equal,
    both by declaration id in the ingested order."""
    mapping = tmp_path / "draft.yaml"
    mapping.write_text(draft.text, encoding="utf-8")
    out = tmp_path / "out.parquet"
    ingest_file(source=source, mapping_path=mapping, out=out)
    got = pd.read_parquet(out).set_index("declaration_id")
    return got, contract.set_index("declaration_id").loc[got.index]


def test_the_draft_alone_reads_a_foreign_export_back_to_the_contract(
    spanish_export, contract_history, tmp_path
) -> None:
    draft = _draft(spanish_export, timezone=ZONE)
    assert draft.missing == []
    assert draft.mapped["declared_at"] == "Fecha" and draft.mapped["hs_code"] == "Codigo NC"
    assert draft.mapped["seller_country"] == "Pais Vendedor"
    assert draft.mapped["origin_country"] == "Origen"
    got, want = _ingested_with(draft, spanish_export, contract_history, tmp_path)
    assert len(got) == len(contract_history)
    assert (got["declared_at"] == want["declared_at"].dt.floor("min")).all()
    for name in ("arrival_office", "channel", "origin_country", "hs_code", "currency"):
        assert (got[name].astype(str) == want[name].astype(str)).all(), name
    assert (got["seller_country"].fillna("") == want["seller_country"].fillna("")).all()
    assert ((got["gross_weight_kg"] - want["gross_weight_kg"]).abs() < 6e-4).all()
    assert ((got["declared_value"] - want["declared_value"]).abs() < 6e-3).all()
    assert (got["quantity"].fillna(-1) == want["quantity"].fillna(-1)).all()
    spec = yaml.safe_load(draft.text)
    assert spec["columns"]["gross_weight_kg"]["units"] == {"g": 0.001, "kg": 1.0}
    assert spec["columns"]["declared_value"] == {
        "column": "Valor",
        "decimal": ",",
        "thousands": ".",
    }
    assert spec["columns"]["declared_at"]["timezone"] == ZONE
    assert [e["column"] for e in spec["extras"]] == ["Transitario"]


def test_every_guess_is_marked_check_in_the_text(spanish_export) -> None:
    draft = _draft(spanish_export, timezone=ZONE)
    line = next(t for t in draft.text.splitlines() if t.strip().startswith("declared_at:"))
    assert "# CHECK:" in line and ZONE in line  # the zone is the administration's, said so
    assert "origin_country" not in draft.checks  # named "Origen": nothing to check


def test_a_required_field_not_found_is_a_todo_and_ingest_refuses_naming_it(tmp_path) -> None:
    source = tmp_path / "export.csv"
    source.write_text(
        "id,date,office,mode,origin,hs,weight,value\n"
        "A1,2026-03-01T10:00:00Z,FR01,postal,CN,850440,0.5,12.5\n"
        "A2,2026-03-02T10:00:00Z,FR01,postal,CN,850440,0.7,13.5\n",
        encoding="utf-8",
    )
    draft = _draft(source)
    assert draft.missing == ["currency"]
    assert "# currency: TODO (required; no column found" in draft.text
    mapping = tmp_path / "draft.yaml"
    mapping.write_text(draft.text, encoding="utf-8")
    with pytest.raises(ContractError, match="not mapped: currency"):
        ingest_file(source=source, mapping_path=mapping, out=tmp_path / "out.parquet")


def test_month_first_reading_everything_too_is_said(tmp_path) -> None:
    source = tmp_path / "export.csv"
    rows = [f"A{i},0{i}/0{i % 3 + 1}/2026 10:00" for i in range(1, 10)]
    source.write_text("id,date\n" + "\n".join(rows) + "\n", encoding="utf-8")
    draft = _draft(source)
    assert "day first guessed: every value also reads month first" in draft.checks["declared_at"]


def test_dates_and_unique_numbers_are_not_taken_for_hs_codes(tmp_path) -> None:
    source = tmp_path / "export.csv"
    rows = [f"{26000000 + i},2026.01.{i % 28 + 1:02d},61091000" for i in range(60)]
    source.write_text("ref,day,code\n" + "\n".join(rows) + "\n", encoding="utf-8")
    draft = _draft(source)
    assert draft.mapped["hs_code"] == "code"
    assert draft.mapped["declaration_id"] == "ref" and draft.mapped["declared_at"] == "day"


def test_codes_it_cannot_read_are_listed_not_guessed(tmp_path) -> None:
    source = tmp_path / "export.csv"
    rows = [f"A{i},{code}" for i, code in enumerate(["P", "E", "ZZ9", "P"])]
    source.write_text("id,canal\n" + "\n".join(rows) + "\n", encoding="utf-8")
    draft = _draft(source)
    spec = yaml.safe_load(draft.text)["columns"]["channel"]
    assert spec["values"] == {"E": "express", "P": "postal"}
    assert any("codes not read: ZZ9" in c for c in draft.checks["channel"])


def test_names_without_latin_letters_give_extras_valid_names(tmp_path) -> None:
    source = tmp_path / "export.csv"
    rows = [f"K{i},{['P', 'B', 'A'][i % 3]},{i % 7}" for i in range(30)]
    source.write_text("신고번호,화물구분,검사\n" + "\n".join(rows) + "\n", encoding="utf-8")
    draft = _draft(source)
    names = [e["name"] for e in yaml.safe_load(draft.text)["extras"]]
    assert names == ["column_2", "column_3"]


def test_a_windows_export_is_drafted_with_its_encoding(tmp_path) -> None:
    source = tmp_path / "export.csv"
    source.write_bytes("id;désignation\nA1;Écouteurs\nA2;Peluche bébé\n".encode("cp1252"))
    draft = _draft(source)
    assert draft.text.splitlines()[2].startswith("encoding: cp1252  # CHECK: not UTF-8")
    assert yaml.safe_load(draft.text)["encoding"] == "cp1252"
    assert draft.checks["encoding"] == ["not UTF-8: read as cp1252 (guessed)"]


POLISH = "id;opis;województwo\nA1;Krewetki mrożone;łódzkie\nA2;Buty skórzane;śląskie\n"


def test_a_central_european_export_is_drafted_in_the_code_page_its_letters_read_in(
    tmp_path,
) -> None:
    """cp1252 would read Polish as "³ódzkie", "mro¿one" (Ź, 0x8F, is no cp1252 byte at all);
    the code page whose reading gives letters, not symbols, is proposed, and marked."""
    source = tmp_path / "export.csv"
    source.write_bytes((POLISH + "A3;Źródło;opolskie\n").encode("cp1250"))
    draft = _draft(source)
    assert yaml.safe_load(draft.text)["encoding"] == "cp1250"
    assert "# CHECK: not UTF-8; read as cp1250 (Central European)" in draft.text
    assert "województwo" in draft.text  # the column's name as written


def test_the_encoding_a_user_knows_is_drafted_as_given(tmp_path) -> None:
    source = tmp_path / "export.csv"
    source.write_bytes(POLISH.encode("iso-8859-2"))
    raw, reading = read_for_draft(source, encoding="iso-8859-2")
    assert reading["encoding"] == "iso-8859-2" and "encoding_guessed" not in reading
    assert raw.iloc[0].tolist() == ["A1", "Krewetki mrożone", "łódzkie"]
    draft = draft_mapping(raw, **reading)
    assert draft.text.splitlines()[2] == "encoding: iso-8859-2" and "encoding" not in draft.checks
    source.write_bytes(POLISH.encode("utf-16"))
    with pytest.raises(ParcelriskError, match=r"\(read with --encoding cp1250\)"):
        read_for_draft(source, encoding="cp1250")


def test_the_cli_writes_the_draft_tries_it_and_never_overwrites(spanish_export, tmp_path) -> None:
    runner = CliRunner()
    out = tmp_path / "draft.yaml"
    params = tmp_path / "params.yaml"
    params.write_text(f"features:\n  timezone: {ZONE}\n", encoding="utf-8")
    args = ["mapping", "draft", str(spanish_export), "--out", str(out), "--params", str(params)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stderr[: result.stderr.rindex("}") + 1])
    assert summary["tried"] == f"the draft reads all 800 rows of {spanish_export}"
    assert summary["required_not_found"] == []
    assert yaml.safe_load(out.read_text(encoding="utf-8"))["columns"]["hs_code"] == "Codigo NC"
    again = runner.invoke(app, args)
    # the console script prints a ParcelriskError as one line (serving.main.main)
    assert isinstance(again.exception, ParcelriskError) and "exists" in str(again.exception)
    to_stdout = runner.invoke(app, args[:3])
    assert to_stdout.exit_code == 0 and to_stdout.stdout.startswith("# Drafted by")


def test_binary_data_is_refused_and_odd_names_stay_inside_their_yaml(tmp_path) -> None:
    binary = tmp_path / "export.csv"
    binary.write_bytes(b"\x00\x01\x02,id\n1,2\n")
    with pytest.raises(ParcelriskError, match=r"control bytes.*not a text export"):
        _draft(binary)
    odd = tmp_path / "odd.csv"
    odd.write_text('id,"two\nlines",day\nA1,x,2026-01-01\nA2,y,2026-01-02\n', encoding="utf-8")
    text = _draft(odd).text
    assert yaml.safe_load(text)["columns"]["declaration_id"] == "id"
    assert '# not mapped: "two\\nlines"' in text


def test_a_json_export_is_drafted_by_its_dotted_names(tmp_path) -> None:
    source = tmp_path / "export.jsonl"
    records = [
        {
            "declarationId": f"D{i}",
            "lodgedAt": f"2026-03-0{i % 3 + 1}T10:00:00+01:00",
            "office": "FR01",
            "transportMode": ["POST", "EXPRESS"][i % 2],
            "goods": {"hsCode": ["850440", "610910"][i % 2], "description": "toy", "origin": "CN"},
            "weightKg": 0.5 + i / 100,
            "value": {"amount": 12.5 + i, "currency": ["EUR", "USD"][i % 2]},
        }
        for i in range(12)
    ]
    source.write_text("\n".join(json.dumps(r) for r in records) + "\n", encoding="utf-8")
    draft = _draft(source)
    assert draft.missing == [] and draft.mapped["declared_value"] == "value.amount"
    columns = yaml.safe_load(draft.text)["columns"]
    assert columns["declared_at"] == "lodgedAt"  # offsets in the values: no zone to add
    assert columns["channel"]["values"] == {"EXPRESS": "express", "POST": "postal"}
    assert columns["description"] == "goods.description"


def test_an_export_of_goods_items_gets_an_items_block_that_reads_it_back(
    contract_history, tmp_path
) -> None:
    d = contract_history.head(300)
    rows = []
    for k, (_, parcel) in enumerate(d.iterrows()):
        n_items = k % 3 + 1
        share = n_items * (n_items + 1) / 2
        for item in range(n_items):
            rows.append(
                {
                    "Declaration Number": parcel["declaration_id"],
                    "Date": parcel["declared_at"].strftime("%Y-%m-%dT%H:%M:%SZ"),
                    "Office": parcel["arrival_office"],
                    "Channel": parcel["channel"],
                    "Origin": parcel["origin_country"],
                    "HS Code": parcel["hs_code"],
                    "Gross Weight": f"{parcel['gross_weight_kg']:.3f}",  # the parcel's, repeated
                    # split over the items unequally (1, 2, 3 parts)
                    "Value": f"{parcel['declared_value'] * (item + 1) / share:.6f}",
                    "Currency": parcel["currency"],
                }
            )
    source = tmp_path / "items.csv"
    pd.DataFrame(rows).to_csv(source, index=False)
    draft = _draft(source)
    items = yaml.safe_load(draft.text)["items"]
    assert items == {"declared_value": "sum", "gross_weight_kg": "agree"}
    assert "ids repeat" in draft.text
    got, want = _ingested_with(draft, source, d, tmp_path)
    assert len(got) == 300
    assert ((got["declared_value"] - want["declared_value"]).abs() < 1e-3).all()
    assert ((got["gross_weight_kg"] - want["gross_weight_kg"]).abs() < 6e-4).all()


def test_results_given_for_some_rows_say_which_were_inspected_and_the_gate_is_tried(
    tmp_path,
) -> None:
    source = tmp_path / "export.csv"
    results = ["FOUND", "NIL", "", "", "NIL", ""]
    lines = [
        f"A{i},2026-03-0{i + 1}T10:00:00Z,KEMBA,5,CN,85044000,0.5,12.50,USD,{results[i]}"
        for i in range(6)
    ]
    header = "Declaration Reference,Registration Date,Office,Mode of Transport,Origin,"
    header += "Commodity Code,Gross Mass,Value,Currency,Inspection Result\n"
    source.write_text(header + "\n".join(lines) + "\n", encoding="utf-8")
    draft = _draft(source)
    columns = yaml.safe_load(draft.text)["columns"]
    assert columns["illicit"] == {
        "column": "Inspection Result",
        "true_values": ["FOUND"],
        "false_values": ["NIL"],
    }
    assert columns["inspected"] == {"column": "Inspection Result", "given": True}
    assert columns["channel"]["values"] == {"5": "postal"}  # UN/ECE Rec. 19
    assert "inspected_at" in draft.missing and "# inspected_at: TODO" in draft.text
    result = CliRunner().invoke(app, ["mapping", "draft", str(source)])
    tried = json.loads(result.stderr[: result.stderr.rindex("}") + 1])["tried"]
    assert "reads all 6 rows" in tried and "the gate refuses them" in tried
    assert "inspected_at" in tried


def test_a_header_without_rows_drafts_an_empty_mapping_that_parses(tmp_path) -> None:
    from features.intake.mapping import parse_mapping_text

    source = tmp_path / "export.csv"
    source.write_text("id,date,hs\n", encoding="utf-8")
    draft = _draft(source)
    assert parse_mapping_text(draft.text).columns == {}
    assert "declaration_id" in draft.missing and "# declaration_id: TODO" in draft.text


def test_spreadsheet_serial_days_in_a_date_column_are_read_as_such(tmp_path) -> None:
    source = tmp_path / "export.csv"
    rows = [f"A{i},{46023 + i / 4:.2f}" for i in range(20)]
    source.write_text("id,declaration date\n" + "\n".join(rows) + "\n", encoding="utf-8")
    draft = _draft(source, timezone=ZONE)
    spec = yaml.safe_load(draft.text)["columns"]["declared_at"]
    assert spec == {"column": "declaration date", "format": "excel", "timezone": ZONE}
    assert any("serial days" in c for c in draft.checks["declared_at"])


def test_a_german_export_is_drafted_whole(tmp_path) -> None:
    source = tmp_path / "zoll.csv"
    header = (
        "Registriernummer;Annahmedatum;Zollstelle;Verkehrszweig;Ursprungsland;Warennummer;"
        "Rohmasse;Rechnungsbetrag;Währung;Warenbezeichnung;Empfänger;Versender\n"
    )
    rows = [
        f"26DE{100000 + i};{i % 28 + 1:02d}.03.2026 {i % 24:02d}:15;DE00485{i % 2};{3 + i % 3};"
        f"{['CN', 'US', 'TR'][i % 3]};{['8504 40 00', '6109 10 00'][i % 2]};{i % 9},{i % 7}5;"
        f"{i % 3}.{100 + i:03d},{i % 10}0;{['USD', 'EUR'][i % 2]};Spielzeug {i % 4};E{i % 17:04d};"
        f"V{i % 5:03d}"
        for i in range(40)
    ]
    source.write_text(header + "\n".join(rows) + "\n", encoding="utf-8")
    draft = _draft(source)
    assert draft.missing == []
    columns = yaml.safe_load(draft.text)["columns"]
    assert columns["declared_value"] == {
        "column": "Rechnungsbetrag",
        "decimal": ",",
        "thousands": ".",
    }
    assert columns["channel"]["values"] == {"3": "road", "4": "air", "5": "postal"}
    assert draft.mapped["seller_id"] == "Versender" and draft.mapped["hs_code"] == "Warennummer"


def test_a_results_file_is_drafted_for_outcomes_ingest(tmp_path) -> None:
    source = tmp_path / "resultats.csv"
    source.write_text(
        "NUM_DECL;DATE_CONTROLE;RESULTAT;INFRACTION;DROITS_RECUP;AGENT\n"
        "FR1;29/03/2026 10:47;POS;SOUS_EVAL;9,27;a1\n"
        "FR2;29/03/2026 11:00;NEG;;;a2\n"
        "FR3;30/03/2026 09:12;POS;CONTREFACON;41,50;a1\n",
        encoding="utf-8",
    )
    result = CliRunner().invoke(app, ["mapping", "draft", str(source), "--results"])
    assert result.exit_code == 0, result.output
    text = result.stdout
    assert "then run `parcelrisk outcomes ingest FILE --mapping`" in text
    columns = yaml.safe_load(text)["columns"]
    assert set(columns) == {
        "declaration_id",
        "inspected_at",
        "illicit",
        "offence_type",
        "revenue_recovered",
    }
    assert "extras" not in yaml.safe_load(text)
    summary = json.loads(result.stderr[: result.stderr.rindex("}") + 1])
    assert summary["tried"] == f"the draft reads all 3 results of {source}"
    assert summary["required_not_found"] == []


def test_a_results_draft_missing_a_required_field_does_not_say_it_reads_them(tmp_path) -> None:
    source = tmp_path / "resultados.csv"
    source.write_text(
        "Guia;Fecha;Agente\nMX1;29/03/2026 10:47;a1\nMX2;29/03/2026 11:00;a2\n", encoding="utf-8"
    )
    result = CliRunner().invoke(app, ["mapping", "draft", str(source), "--results"])
    summary = json.loads(result.stderr[: result.stderr.rindex("}") + 1])
    assert "illicit" in summary["required_not_found"]
    assert summary["tried"].startswith(f"the draft does not read {source} yet: results need ")
    assert "illicit" in summary["tried"]


def test_results_written_on_every_row_are_read_only_where_inspected(tmp_path) -> None:
    source = tmp_path / "export.csv"
    rows = [
        f"A{i},2026-03-0{i % 9 + 1}T10:00:00Z,KEMBA,postal,CN,85044000,0.5,12.5,USD,"
        f"{'Y' if i % 3 == 0 else 'N'},2026-03-1{i % 9}T10:00:00Z,{1 if i % 6 == 0 else 0}"
        for i in range(30)
    ]
    header = "id,date,office,channel,origin,hs code,weight,value,currency,inspected,"
    header += "inspection date,illicit\n"
    source.write_text(header + "\n".join(rows) + "\n", encoding="utf-8")
    draft = _draft(source)
    assert yaml.safe_load(draft.text)["outcomes_only_if_inspected"] is True
    ids = pd.DataFrame({"declaration_id": [f"A{i}" for i in range(30)]})
    got, _ = _ingested_with(draft, source, ids, tmp_path)
    assert got["illicit"].isna().sum() == 20  # the 20 parcels not inspected hold no result


def test_an_extra_named_for_a_party_is_an_entity_however_few_its_values(tmp_path) -> None:
    source = tmp_path / "export.csv"
    rows = [f"A{i},{['B1', 'B2', 'B3'][i % 3]},{['DDP', 'DAP'][i % 2]}" for i in range(30)]
    source.write_text("id,broker,incoterm\n" + "\n".join(rows) + "\n", encoding="utf-8")
    kinds = {e["column"]: e["kind"] for e in yaml.safe_load(_draft(source).text)["extras"]}
    assert kinds == {"broker": "entity", "incoterm": "categorical"}


def test_a_time_of_day_in_its_own_column_is_joined_to_its_date(tmp_path) -> None:
    source = tmp_path / "export.csv"
    source.write_text(
        "NUM;DATE;HEURE;BUREAU;MODE;ORIGINE;CODE_SH;POIDS;VALEUR;DEVISE;"
        "DATE_CONTROLE;HEURE_CONTROLE;RESULTAT\n"
        "A1;01/03/2026;10:47;FR01;P;CN;850440;0,5;12,50;EUR;02/03/2026;09:00;POS\n"
        "A2;13/03/2026;11:05;FR01;P;CN;610910;0,7;13,50;EUR;;;\n"
        "A3;14/03/2026;;FR02;E;TR;850440;1,1;22,00;USD;15/03/2026;14:30;NEG\n",
        encoding="utf-8",
    )
    draft = _draft(source)
    columns = yaml.safe_load(draft.text)["columns"]
    assert columns["declared_at"]["columns"] == ["DATE", "HEURE"]
    assert columns["declared_at"]["format"] == ["%d/%m/%Y %H:%M", "%d/%m/%Y"]
    assert columns["inspected_at"]["columns"] == ["DATE_CONTROLE", "HEURE_CONTROLE"]
    got, _ = _ingested_with(
        draft, source, pd.DataFrame({"declaration_id": ["A1", "A2", "A3"]}), tmp_path
    )
    assert got["declared_at"].dt.strftime("%d %H:%M").tolist() == [
        "01 10:47",
        "13 11:05",
        "14 00:00",
    ]
    assert got.loc["A3", "inspected_at"] == pd.Timestamp("2026-03-15 14:30", tz="UTC")


def test_a_file_of_thousands_of_columns_is_refused_not_profiled_for_minutes(tmp_path) -> None:
    from features.intake.draft import MAX_COLUMNS

    source = tmp_path / "wide.csv"
    n = MAX_COLUMNS + 1
    source.write_text(",".join(f"c{i}" for i in range(n)) + "\n" + ",".join("1" * n) + "\n")
    with pytest.raises(ParcelriskError, match=f"{n:,} columns"):
        _draft(source)


def test_a_workbook_sheet_and_a_json_key_are_named_by_options(tmp_path) -> None:
    book = tmp_path / "two.xlsx"
    with pd.ExcelWriter(book) as writer:
        pd.DataFrame({"a": [1]}).to_excel(writer, sheet_name="Notes", index=False)
        pd.DataFrame({"id": ["A1", "A2"], "origin": ["CN", "TR"]}).to_excel(
            writer, sheet_name="Data", index=False
        )
    with pytest.raises(ParcelriskError, match=r"2 sheets.*to draft: --sheet NAME"):
        _draft(book)
    raw, reading = read_for_draft(book, sheet="Data")
    assert draft_mapping(raw, **reading).text.splitlines()[2] == "sheet: Data"
    document = tmp_path / "doc.json"
    document.write_text(json.dumps({"export": {"declarations": [{"id": "A1"}, {"id": "A2"}]}}))
    with pytest.raises(ParcelriskError, match="to draft: --records KEY"):
        _draft(document)
    raw, reading = read_for_draft(document, records="export.declarations")
    assert "records: export.declarations" in draft_mapping(raw, **reading).text


def test_ingest_without_a_mapping_file_points_to_the_draft(tmp_path, spanish_export) -> None:
    missing = tmp_path / "mapping.yaml"
    with pytest.raises(ContractError, match=r"mapping draft EXPORT --out .*mapping\.yaml"):
        ingest_file(source=spanish_export, mapping_path=missing, out=tmp_path / "out.parquet")


def test_a_portuguese_census_reads_its_result_and_keeps_result_columns_out_of_the_extras(
    tmp_path,
) -> None:
    """Every parcel inspected, the result written Regular/Irregular beside a second column
    named for the result that no reading fits: the first is the result, the second is left
    out of the extras (a result kept as a feature would leak the label)."""
    source = tmp_path / "remessas.csv"
    rows = [
        f"BR{i};0{i % 9 + 1}/03/2026;{['Correios', 'Expresso'][i % 2]};T{i % 4};{i % 5 + 1};"
        f"{['Regular', 'Irregular'][i % 7 == 0]};{['apreensao', 'multa', 'ok'][i % 3]};"
        f"{['VERDE', 'VERMELHO'][i % 3 == 0]}"
        for i in range(40)
    ]
    header = "Nº Declaração;Data Registro;Modal;Transportador;Qtde;Resultado Verificação;"
    header += "Resultado Fiscal;Canal\n"
    source.write_text(header + "\n".join(rows) + "\n", encoding="utf-8")
    draft = _draft(source)
    columns = yaml.safe_load(draft.text)["columns"]
    assert columns["illicit"] == {
        "column": "Resultado Verificação",
        "true_values": ["Irregular"],
        "false_values": ["Regular"],
    }
    assert columns["channel"]["values"] == {"Correios": "postal", "Expresso": "express"}
    assert draft.mapped["operator_id"] == "Transportador" and draft.mapped["quantity"] == "Qtde"
    # the lane colours are the old selection, made when the declaration was assessed: not
    # on an arrival this service lanes itself, so no feature (probe 4e)
    assert draft.extras == []
    assert any(i.startswith("Canal (the lane each declaration was sent to") for i in draft.ignored)
    (left_out,) = [i for i in draft.ignored if i.startswith("Resultado Fiscal")]
    assert "named like illicit, an inspection result, never a feature" in left_out


def test_a_us_style_export_reads_amounts_with_their_signs_12_hour_times_and_seizures(
    contract_history, tmp_path
) -> None:
    """Amounts written with their currency sign (``US$ 4.15``, ``€ 12.00``), times on a
    12-hour clock, weights in pounds, results as Seizure Y/N for the parcels examined and an
    exam date without a time: the draft alone reads the export back to the contract. The exam
    date (blank where not examined) is never the declaration's date, and a result dated
    without a time counts from the next day on."""
    d = contract_history
    local = d["declared_at"].dt.tz_convert(ZONE)
    signs = {"USD": "US$ ", "EUR": "€ ", "GBP": "£", "CNY": "CN¥ "}
    inspected = d["inspected"].fillna(False).astype(bool)
    export = pd.DataFrame(
        {
            "Entry No.": d["declaration_id"],
            "Exam Date": d["inspected_at"].dt.tz_convert(ZONE).dt.strftime("%m/%d/%Y"),
            "Filed": local.dt.strftime("%m/%d/%Y %I:%M:%S %p"),
            "Port of Entry": d["arrival_office"],
            "Mode": d["channel"].str.upper(),
            "Country of Origin": d["origin_country"],
            "HTS": d["hs_code"],
            "Weight": [f"{w / 0.45359237:.6f} lb" for w in d["gross_weight_kg"]],
            "Value": [
                f"{signs.get(c, c + ' ')}{v:,.2f}"
                for c, v in zip(d["currency"], d["declared_value"], strict=True)
            ],
            "Seizure": [
                ("Y" if bool(i) else "N") if s else ""
                for s, i in zip(inspected, d["illicit"].fillna(False), strict=True)
            ],
        }
    )
    source = tmp_path / "entries.csv"
    export.to_csv(source, index=False)
    draft = _draft(source, timezone=ZONE)
    assert draft.missing == []
    columns = yaml.safe_load(draft.text)["columns"]
    assert columns["declared_at"]["column"] == "Filed"
    assert columns["declared_value"] == {"column": "Value", "part": "number", "thousands": ","}
    assert columns["currency"]["part"] == "unit" and columns["currency"]["values"]["US$"] == "USD"
    assert columns["inspected_at"]["offset"] == "1 day"
    assert columns["illicit"] == {"column": "Seizure", "true_values": ["Y"], "false_values": ["N"]}
    got, want = _ingested_with(draft, source, contract_history, tmp_path)
    assert (got["declared_at"] == want["declared_at"]).all()
    assert (got["currency"] == want["currency"]).all()
    assert np.allclose(got["declared_value"], want["declared_value"].round(2))
    assert np.allclose(got["gross_weight_kg"], want["gross_weight_kg"], atol=1e-6)
    assert (got["inspected"] == want["inspected"].fillna(False)).all()
    examined = want["inspected"].fillna(False).astype(bool)
    day = want.loc[examined, "inspected_at"].dt.tz_convert(ZONE).dt.normalize()
    next_day = (day + pd.Timedelta(days=1)).dt.tz_convert("UTC")
    assert (got.loc[examined, "inspected_at"] == next_day).all()
    assert (got.loc[examined, "illicit"] == want.loc[examined, "illicit"]).all()


def test_a_sign_several_currencies_write_is_listed_not_guessed(tmp_path) -> None:
    source = tmp_path / "export.csv"
    rows = [
        f"A{i},2026-03-0{i % 9 + 1}T10:00:00Z,{['$', 'US$'][i % 2]}{i + 1}.50" for i in range(30)
    ]
    source.write_text("id,date,value\n" + "\n".join(rows) + "\n", encoding="utf-8")
    draft = _draft(source)
    columns = yaml.safe_load(draft.text)["columns"]
    assert columns["currency"]["values"] == {"US$": "USD"}
    assert any("signs not read: $" in c for c in draft.checks["currency"])


@pytest.mark.parametrize(
    ("written", "fmt"),
    [
        ("0{d}-Mar-2026 10:1{d}", "%d-%b-%Y %H:%M"),
        ("Mar {d}, 2026", "%b %d, %Y"),
        ("1{d} March 2026", "%d %B %Y"),
    ],
)
def test_dates_with_english_month_names_are_read(tmp_path, written, fmt) -> None:
    source = tmp_path / "export.csv"
    rows = [f'E{d},"{written.format(d=d)}",61091000,12.5' for d in range(1, 8)]
    source.write_text("id,date,hs,value\n" + "\n".join(rows) + "\n", encoding="utf-8")
    columns = yaml.safe_load(_draft(source).text)["columns"]
    assert columns["declared_at"]["format"] == fmt


def test_a_currency_column_of_signs_gets_a_values_table_keeping_the_codes(tmp_path) -> None:
    source = tmp_path / "export.csv"
    signs = ["R$", "US$", "EUR", "€"]
    rows = [f"E{i},2026-03-0{i % 9 + 1}T10:00:00Z,{i + 1}.50,{signs[i % 4]}" for i in range(40)]
    source.write_text("id,date,value,moeda\n" + "\n".join(rows) + "\n", encoding="utf-8")
    draft = _draft(source)
    assert yaml.safe_load(draft.text)["columns"]["currency"] == {
        "column": "moeda",
        "values": {"R$": "BRL", "US$": "USD", "€": "EUR"},
        "unlisted": "keep",
    }


def test_a_date_column_with_blanks_is_never_the_declaration_date(tmp_path) -> None:
    """Named as well as the filled one and first in the file, the date with blanks (a
    result's) is not taken for declared_at: every declaration was lodged."""
    source = tmp_path / "export.csv"
    rows = [
        f"E{i},{'2026-03-02' if i % 3 == 0 else ''},2026-03-0{i % 9 + 1}T10:00:00Z,12.5"
        for i in range(30)
    ]
    header = "id,declaration date,datum,value\n"
    source.write_text(header + "\n".join(rows) + "\n", encoding="utf-8")
    assert _draft(source).mapped["declared_at"] == "datum"


def test_polish_and_turkish_exports_are_drafted_by_their_names_and_flags(tmp_path) -> None:
    """Names in Polish and Turkish (ł and ı read as l and i), their yes/no words, and a
    currency column holding signs beside its codes (TL, M.N.) or one no table knows."""
    rng = np.random.default_rng(3)
    n = 40
    polish = pd.DataFrame(
        {
            "Nr_zgłoszenia": [f"{i:09d}" for i in range(n)],
            "Nadawca": [f"S{i % 7}" for i in range(n)],
            "Odbiorca": [f"ODB{i:04d}" for i in range(n)],
            "Kod_CN": rng.choice(["6403990000", "8517620000", "9503007000"], n),
            "Wartość": [f"{v:.2f}".replace(".", ",") for v in rng.uniform(5, 300, n)],
            "Waluta": rng.choice(["PLN", "EUR", "zł"], n),
            "Kontrola": ["TAK" if i % 4 == 0 else "NIE" for i in range(n)],
            "Wynik": ["NIEPRAWIDŁOWOŚĆ" if i % 8 == 0 else "BEZ UWAG" for i in range(n)],
        }
    )
    source = tmp_path / "historia.csv"
    polish.to_csv(source, sep=";", index=False)
    draft = _draft(source)
    columns = yaml.safe_load(draft.text)["columns"]
    assert draft.mapped["seller_id"] == "Nadawca" and draft.mapped["consignee_id"] == "Odbiorca"
    assert draft.mapped["hs_code"] == "Kod_CN" and draft.mapped["declared_value"] == "Wartość"
    assert columns["currency"] == {"column": "Waluta", "values": {"zł": "PLN"}, "unlisted": "keep"}
    assert columns["inspected"]["true_values"] == ["TAK"]
    assert columns["illicit"] == {
        "column": "Wynik",
        "true_values": ["NIEPRAWIDŁOWOŚĆ"],
        "false_values": ["BEZ UWAG"],
    }
    turkish = pd.DataFrame(
        {
            "Beyanname No": [f"TR{i}" for i in range(n)],
            "Gönderici": [f"G{i % 5}" for i in range(n)],
            "Alıcı": [f"A{i}" for i in range(n)],
            "Döviz": rng.choice(["TRY", "USD", "TL", "₺", "Lira"], n, p=[0.4, 0.3, 0.1, 0.1, 0.1]),
            "Muayene": ["Evet" if i % 3 == 0 else "Hayır" for i in range(n)],
        }
    )
    source = tmp_path / "beyan.csv"
    turkish.to_csv(source, index=False)
    draft = _draft(source)
    columns = yaml.safe_load(draft.text)["columns"]
    assert draft.mapped["seller_id"] == "Gönderici" and draft.mapped["consignee_id"] == "Alıcı"
    assert columns["currency"]["values"] == {"TL": "TRY", "₺": "TRY"}
    assert any("currency signs not read: Lira" in c for c in draft.checks["currency"])
    assert columns["inspected"] == {
        "column": "Muayene",
        "true_values": ["Evet"],
        "false_values": ["Hayır"],
    }
