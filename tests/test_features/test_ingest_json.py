"""JSON exports (an H7-style message store): records as an array, one per line, or under a key;
nested objects as dotted names; goods items exploded to rows and collapsed by ``items:``."""

from __future__ import annotations

import copy
import gzip
import json
from pathlib import Path

import pandas as pd
import pytest

from features.intake.contract import ContractError
from features.intake.ingest import ingest_file
from features.intake.mapping import parse_mapping_text

RECORDS = [
    {
        "LRN": "H7-0001",
        "AcceptanceDate": "2026-03-02T10:15:00+01:00",
        "CustomsOffice": {"Code": "FR000720"},
        "TransportMode": "postal",
        "Seller": {"ID": "S-9", "Country": "CN"},
        "Consignee": {"ID": "C-1", "Region": None},
        "Origin": "CN",
        "Currency": "EUR",
        "GrossMass": 1.25,
        "IOSS": True,
        "GoodsItems": [
            {"HS": "610910", "Text": "cotton t-shirt", "Value": 12.5, "Qty": 2},
            {"HS": "640399", "Text": "sneakers", "Value": 40, "Qty": 1},
        ],
    },
    {
        "LRN": "H7-0002",
        "AcceptanceDate": "2026-03-02T11:00:00+01:00",
        "CustomsOffice": {"Code": "FR000720"},
        "TransportMode": "express",
        "Seller": {"ID": "S-3", "Country": "TR"},
        "Consignee": {"ID": "C-2", "Region": "FR10"},
        "Origin": "TR",
        "Currency": "EUR",
        "GrossMass": 0.4,
        "IOSS": False,
        "GoodsItems": [{"HS": "950300", "Text": "toy", "Value": 20.0, "Qty": 1}],
    },
]
MAPPING = """\
explode: GoodsItems
columns:
  declaration_id: LRN
  declared_at: AcceptanceDate
  arrival_office: CustomsOffice.Code
  channel: TransportMode
  seller_id: Seller.ID
  seller_country: Seller.Country
  consignee_id: Consignee.ID
  consignee_region: Consignee.Region
  origin_country: Origin
  currency: Currency
  gross_weight_kg: GrossMass
  ioss_prepaid: {column: IOSS, true_values: ["true"], false_values: ["false"]}
  hs_code: GoodsItems.HS
  description: GoodsItems.Text
  declared_value: GoodsItems.Value
  quantity: GoodsItems.Qty
items:
  declared_value: sum
  quantity: sum
  gross_weight_kg: agree
"""


def _ingest(tmp_path: Path, name: str, content: bytes, mapping: str = MAPPING) -> pd.DataFrame:
    source = tmp_path / name
    source.write_bytes(content)
    spec = tmp_path / "mapping.yaml"
    spec.write_text(mapping, encoding="utf-8")
    out = tmp_path / f"{name}.parquet"
    ingest_file(source=source, mapping_path=spec, out=out)
    return pd.read_parquet(out).set_index("declaration_id")


def _ndjson(records=RECORDS) -> bytes:
    return "\n".join(json.dumps(r) for r in records).encode() + b"\n"


def test_an_h7_style_export_becomes_one_row_per_declaration(tmp_path) -> None:
    out = _ingest(tmp_path, "h7.ndjson", _ndjson())
    assert out.index.tolist() == ["H7-0001", "H7-0002"]
    first = out.loc["H7-0001"]
    assert first["declared_value"] == pytest.approx(52.5) and first["quantity"] == 3
    assert first["hs_code"] == "640399"  # the item of the largest value
    assert first["description"] == "cotton t-shirt | sneakers"
    assert first["gross_weight_kg"] == pytest.approx(1.25)
    assert first["seller_id"] == "S-9" and first["arrival_office"] == "FR000720"
    assert bool(first["ioss_prepaid"]) and not bool(out.loc["H7-0002", "ioss_prepaid"])
    assert pd.isna(first["consignee_region"]) and out.loc["H7-0002", "consignee_region"] == "FR10"
    assert str(first["declared_at"]) == "2026-03-02 09:15:00+00:00"


def test_an_array_a_keyed_document_and_gzip_read_alike(tmp_path) -> None:
    lines = _ingest(tmp_path, "h7.ndjson", _ndjson())
    array = _ingest(tmp_path, "h7.json", json.dumps(RECORDS).encode())
    pd.testing.assert_frame_equal(lines, array)
    keyed = json.dumps({"export": {"declarations": RECORDS}}).encode()
    document = _ingest(tmp_path, "doc.json", keyed, "records: export.declarations\n" + MAPPING)
    pd.testing.assert_frame_equal(lines, document)
    packed = _ingest(tmp_path, "h7.ndjson.gz", gzip.compress(_ndjson()))
    pd.testing.assert_frame_equal(lines, packed)


def test_json_that_cannot_be_read_is_named(tmp_path) -> None:
    broken = _ndjson() + b'{"LRN": "H7-0003", \n'
    with pytest.raises(ContractError, match="line 3 is not valid JSON"):
        _ingest(tmp_path, "broken.ndjson", broken)
    keyed = json.dumps({"declarations": RECORDS}).encode()
    with pytest.raises(ContractError, match=r"name the key holding them \(records: declarations"):
        _ingest(tmp_path, "doc.json", keyed)
    with pytest.raises(ContractError, match="records: nowhere: no such key"):
        _ingest(tmp_path, "doc.json", keyed, "records: nowhere\n" + MAPPING)
    not_items = [{**RECORDS[0], "GoodsItems": "none"}]
    with pytest.raises(ContractError, match="explode: GoodsItems is not an array of items"):
        _ingest(tmp_path, "odd.ndjson", _ndjson(not_items))


def test_explode_needs_items_and_json(tmp_path) -> None:
    without_items = MAPPING.split("items:")[0]
    with pytest.raises(ContractError, match="say how the items combine"):
        parse_mapping_text(without_items)
    source = tmp_path / "flat.csv"
    source.write_text("LRN\nH7-1\n")
    spec = tmp_path / "mapping.yaml"
    spec.write_text(MAPPING)
    with pytest.raises(ContractError, match="records and explode read a JSON or XML export"):
        ingest_file(source=source, mapping_path=spec, out=tmp_path / "o.parquet")


def test_a_flat_json_export_needs_no_explode(tmp_path) -> None:
    flat = [
        {k: v for k, v in r.items() if k != "GoodsItems"} | {"Goods": r["GoodsItems"][0]}
        for r in RECORDS
    ]
    mapping = MAPPING.replace("explode: GoodsItems\n", "").replace("GoodsItems.", "Goods.")
    mapping = mapping.split("items:")[0]
    out = _ingest(tmp_path, "flat.json", json.dumps(flat).encode(), mapping)
    assert out.loc["H7-0001", "declared_value"] == pytest.approx(12.5)
    assert out.loc["H7-0001", "hs_code"] == "610910"


def test_hostile_json_shapes_get_a_clear_refusal(tmp_path) -> None:
    from features.intake.jsonsrc import MAX_FIELDS, read_json_source

    # nested hundreds deep: read, and a thousand or more refused in a line, no recursion error
    deep = '[{"LRN": "X", ' + '"a": {' * 500 + '"b": 1' + "}" * 500 + "}]"
    (tmp_path / "deep.json").write_text(deep)
    frame = read_json_source(tmp_path / "deep.json")
    assert frame.shape == (1, 2) and frame.columns[1].count(".") == 500
    for name, text in [
        ("deeper.json", '[{"LRN": "X", ' + '"a": {' * 1010 + '"b": 1' + "}" * 1010 + "}]"),
        ("deeper.ndjson", '{"LRN": "X", ' + '"a": {' * 1010 + '"b": 1' + "}" * 1010 + "}\n"),
        ("brackets.json", "[" * 100_000 + "]" * 100_000),
    ]:
        (tmp_path / name).write_text(text)
        with pytest.raises(ContractError, match="nested deeper than about 1,000 levels"):
            read_json_source(tmp_path / name)
    # values used as keys: a frame of rows x keys cells, refused before it is made
    wide = [{"LRN": f"X{i}", f"field{i}": 1, f"other{i}": 2} for i in range(MAX_FIELDS)]
    (tmp_path / "wide.ndjson").write_bytes(_ndjson(wide))
    with pytest.raises(ContractError, match="more than 2,000 distinct fields"):
        read_json_source(tmp_path / "wide.ndjson")


def test_a_draft_of_a_json_export_explodes_its_goods_items(tmp_path) -> None:
    from typer.testing import CliRunner

    from serving.main import app

    source = tmp_path / "h7.ndjson"
    source.write_bytes(_ndjson())
    result = CliRunner().invoke(app, ["mapping", "draft", str(source)])
    assert result.exit_code == 0, result.output
    assert "explode: GoodsItems" in result.output and "items:" in result.output
    assert "GoodsItems.Value" in result.output  # an item's field, not the list's JSON text


def _varied_records(n: int) -> list[dict]:
    """Records whose fields differ along the file: a field only late ones have, one only early
    ones have, numbers as ints, floats and null, items of one or several goods."""
    records = []
    for i in range(n):
        record = {
            **RECORDS[i % 2],
            "LRN": f"R{i:05d}",
            "GrossMass": [1, 2.5, None][i % 3],
            "GoodsItems": RECORDS[0]["GoodsItems"][: 1 + i % 2],
        }
        if i < n // 3:
            record["EarlyOnly"] = f"e{i}"
        if i > 2 * n // 3:
            record["Late"] = {"Only": i}
        records.append(record)
    return records


@pytest.mark.parametrize("explode", [None, "GoodsItems"])
def test_records_convert_in_chunks_as_they_would_whole(monkeypatch, tmp_path, explode) -> None:
    """A big export is converted a chunk of records at a time (memory): the frame equals the
    one made of all the records at once, fields only some chunks hold included, and a list
    of records is emptied as it is converted."""
    from features.intake import jsonsrc

    records = _varied_records(50)
    whole = jsonsrc.records_frame(tmp_path, json.loads(json.dumps(records)), explode)
    monkeypatch.setattr(jsonsrc, "CHUNK_RECORDS", 7)
    listed = json.loads(json.dumps(records))
    chunked = jsonsrc.records_frame(tmp_path, listed, explode)
    assert listed == []
    streamed = jsonsrc.records_frame(tmp_path, iter(json.loads(json.dumps(records))), explode)
    pd.testing.assert_frame_equal(chunked, whole)
    pd.testing.assert_frame_equal(streamed, whole)
    assert {"EarlyOnly", "Late.Only"} <= set(whole.columns)
    assert whole["Late.Only"].iloc[-1] == "49" and pd.isna(whole["Late.Only"].iloc[0])
    assert len(whole) == (75 if explode else 50)


def test_chunked_records_keep_their_numbers_and_the_field_limit(monkeypatch, tmp_path) -> None:
    from features.intake import jsonsrc

    monkeypatch.setattr(jsonsrc, "CHUNK_RECORDS", 3)
    records = _varied_records(10)
    records[7]["GoodsItems"] = "none"
    with pytest.raises(ContractError, match="record 8: explode: GoodsItems is not an array"):
        jsonsrc.records_frame(tmp_path, records, "GoodsItems")
    with pytest.raises(ContractError, match="record 5 is not a JSON object"):
        jsonsrc.records_frame(tmp_path, [{"a": 1}] * 4 + [[1]], None)
    # the limit counts the fields of every chunk, not of one
    wide = [{f"field{i}": 1, f"other{i}": 2} for i in range(jsonsrc.MAX_FIELDS // 2 + 1)]
    with pytest.raises(ContractError, match="more than 2,000 distinct fields"):
        jsonsrc.records_frame(tmp_path, wide, None)


def test_ndjson_is_read_a_line_at_a_time_in_its_encoding(tmp_path) -> None:
    """Streamed lines keep what the whole-file read did: a byte-order mark, another encoding
    named by the mapping, and an undecodable line named by its number."""
    lines = _ingest(tmp_path, "h7.ndjson", _ndjson())
    bom = _ingest(tmp_path, "bom.ndjson", b"\xef\xbb\xbf" + _ndjson())
    pd.testing.assert_frame_equal(lines, bom)
    accented = [RECORDS[0], {**RECORDS[1], "Seller": {"ID": "Société-9", "Country": "TR"}}]
    text = "\n".join(json.dumps(r, ensure_ascii=False) for r in accented) + "\n"
    latin = _ingest(tmp_path, "latin.ndjson", text.encode("cp1252"), "encoding: cp1252\n" + MAPPING)
    assert latin.loc["H7-0002", "seller_id"] == "Société-9"
    utf16 = _ingest(tmp_path, "u16.ndjson", text.encode("utf-16"), "encoding: utf-16\n" + MAPPING)
    pd.testing.assert_frame_equal(latin, utf16)
    with pytest.raises(ContractError, match=r"line 2, byte \d+ is not utf-8"):
        _ingest(tmp_path, "bad.ndjson", text.encode("cp1252"))


@pytest.mark.parametrize(("name", "content"), [("empty.json", b"[]"), ("blank.ndjson", b"\n\n")])
def test_an_export_of_no_records_is_a_frame_of_no_rows(tmp_path, name, content) -> None:
    from features.intake.jsonsrc import read_json_source

    (tmp_path / name).write_bytes(content)
    assert read_json_source(tmp_path / name).shape == (0, 0)
    with pytest.raises(ContractError):  # refused by the mapping, naming what it lacks
        _ingest(tmp_path, name, content)


def test_an_array_document_is_read_a_record_at_a_time_as_orjson_reads_it_whole(tmp_path) -> None:
    import orjson

    from features.intake.jsonsrc import _records, read_json_source

    records = RECORDS * 3 + [{"LRN": "H7-9", "GoodsItems": [], "Deep": {"a": [1, {"b": None}]}}]
    text = "\n [\n" + ",\n  ".join(json.dumps(r) for r in records) + " ]\n\n"
    streamed = _records(tmp_path / "a.json", text, None, False)
    assert iter(streamed) is streamed  # values parsed as they are converted, never all at once
    assert list(streamed) == orjson.loads(text)
    (tmp_path / "a.json").write_text(text)
    (tmp_path / "b.json").write_bytes(orjson.dumps(records))
    pd.testing.assert_frame_equal(
        read_json_source(tmp_path / "a.json"), read_json_source(tmp_path / "b.json")
    )
    # 3 x 3 items, and the record without any on a row of its own
    assert read_json_source(tmp_path / "a.json", explode="GoodsItems").shape[0] == 10
    (tmp_path / "spaced.json").write_text("[ \n ]")
    assert read_json_source(tmp_path / "spaced.json").shape == (0, 0)


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (
            '[{"LRN": "A"} {"LRN": "B"}]',
            r"',' or '\]' expected after a value of the array \(line 1",
        ),
        ('[{"LRN": "A"}]\n{"LRN": "B"}', r"more after the document's end \(line 2\)"),
        ('[{"LRN": "A", "GrossMass": NaN}]', "NaN is not JSON"),
        ('[{"LRN": "A"},\n{"LRN": ', "not valid JSON: Expecting value: line 2"),
        ('[{"LRN": "A"},]', "not valid JSON"),
        ('[{"LRN": "A"}', r"',' or '\]' expected"),
    ],
)
def test_a_broken_array_document_is_refused_naming_where(tmp_path, content, says) -> None:
    from features.intake.jsonsrc import read_json_source

    (tmp_path / "broken.json").write_text(content)
    with pytest.raises(ContractError, match=says):
        read_json_source(tmp_path / "broken.json")


def test_records_under_a_key_are_read_a_record_at_a_time_the_rest_checked(tmp_path) -> None:
    import orjson

    from features.intake.jsonsrc import _records

    document = {
        "meta": {"exported": "2026-03-03", "items": [1, 2], "declarations": "not these"},
        "data": {"page": 1, "declarations": RECORDS * 2, "next": None},
        "tail": [{"x": "}"}],
    }
    text = json.dumps(document, indent=1)
    streamed = _records(tmp_path / "d.json", text, "data.declarations", False)
    assert iter(streamed) is streamed
    assert list(streamed) == RECORDS * 2
    assert list(_records(tmp_path / "d.json", text, "tail", False)) == [{"x": "}"}]
    assert list(_records(tmp_path / "d.json", '{"d": []}', "d", False)) == []
    assert (
        list(
            _records(
                tmp_path / "d.json", orjson.dumps(document).decode(), "data.declarations", False
            )
        )
        == RECORDS * 2
    )
    for key, says in (
        ("data.nowhere", "records: data.nowhere: no such key"),
        ("data.page.x", "records: data.page.x: no such key"),
        ("meta.declarations", "records: meta.declarations is not an array of records"),
    ):
        with pytest.raises(ContractError, match=says):
            list(_records(tmp_path / "d.json", text, key, False))
    broken = text[: text.rindex("}")]  # the document's closing brace lost
    with pytest.raises(ContractError, match="not valid JSON"):
        list(_records(tmp_path / "d.json", broken, "data.declarations", False))
    with pytest.raises(ContractError, match=r"more after the document's end"):
        list(_records(tmp_path / "d.json", text + "{}", "data.declarations", False))


@pytest.mark.parametrize("name", ["export.jsonl", "export.json"])
def test_integers_beyond_64_bits_keep_every_digit(tmp_path, name) -> None:
    """orjson reads an integer past 64 bits as a float (four 23-digit sellers became one),
    and pandas made a column of integer ids with a null float64 (9007199254740993 ->
    9007199254740992.0): every digit is kept, as text."""
    records = copy.deepcopy(RECORDS) * 2
    for i, (lrn, seller) in enumerate(
        [
            ("H7-0001", 9007199254740993),
            (94001118992234567890121, 9007199254740995),
            (94001118992234567890453, None),
            (26100000000000000004, 9007199254740997),
        ]
    ):
        records[i] = {**records[i], "LRN": lrn, "Seller": {"ID": seller, "Country": "CN"}}
    content = _ndjson(records) if name.endswith(".jsonl") else json.dumps(records).encode()
    out = _ingest(tmp_path, name, content)
    assert out.index.tolist() == [
        "H7-0001",
        "94001118992234567890121",
        "94001118992234567890453",
        "26100000000000000004",
    ]
    sellers = out["seller_id"].tolist()
    assert sellers[:2] == ["9007199254740993", "9007199254740995"] and pd.isna(sellers[2])
    assert sellers[3] == "9007199254740997"


def test_one_item_written_as_an_object_is_an_item(tmp_path) -> None:
    """XML converters (xmltodict-style) write a single goods item as the object itself."""
    records = copy.deepcopy(RECORDS)
    records[1]["GoodsItems"] = records[1]["GoodsItems"][0]
    out = _ingest(tmp_path, "one.jsonl", _ndjson(records))
    plain = _ingest(tmp_path, "plain.jsonl", _ndjson())
    pd.testing.assert_frame_equal(out, plain)


@pytest.mark.parametrize("chunk", [None, 1])
def test_hs_codes_written_as_json_numbers_get_their_zero_back(
    monkeypatch, tmp_path, caplog, chunk
) -> None:
    """0713200000 written as the number 713200000 was read as chapter 71, where the same code
    in a workbook's numeric cell gets its zero back (probe 33 LOW-2): a JSON number is as
    typed as a workbook's, so it is read alike, in one chunk of records or several."""
    import logging

    from features.intake import jsonsrc

    if chunk:
        monkeypatch.setattr(jsonsrc, "CHUNK_RECORDS", chunk)
    records = copy.deepcopy(RECORDS)
    records[0]["GoodsItems"][0]["HS"] = 713200000  # chickpeas, chapter 07, as a number
    records[0]["GoodsItems"][1]["HS"] = 6403990000
    records[1]["GoodsItems"][0]["HS"] = 90111  # coffee 090111, 6 digits less its zero
    with caplog.at_level(logging.WARNING):
        out = _ingest(tmp_path, "numbers.ndjson", _ndjson(records))
    assert out.loc["H7-0001", "hs_code"] == "6403990000"  # the item of the largest value
    assert out.loc["H7-0002", "hs_code"] == "090111"
    said = " ".join(r.getMessage() for r in caplog.records)
    assert "was written as numbers: 2 code(s) of 5, 7 or 9 digits had lost the leading zero" in said
    # codes written as text are read as written (nothing restored)
    out = _ingest(tmp_path, "text.ndjson", _ndjson())
    assert out.loc["H7-0002", "hs_code"] == "950300"


def _records_file(path: Path, records: list[str]) -> Path:
    """``records`` (JSON texts) as an array, one a line (``.json``), or as NDJSON lines."""
    joined = ",\n".join(records)
    path.write_text(f"[{joined}]" if path.suffix == ".json" else "\n".join(records))
    return path


@pytest.mark.parametrize("name", ["twice.json", "twice.ndjson"])
def test_a_key_given_twice_in_a_record_is_refused_naming_it(tmp_path, name) -> None:
    """ "VALEUR" twice in one record was read as its last value, without a word (probe 34)."""
    from features.intake.jsonsrc import read_json_source

    records = ['{"LRN": "A", "Value": "20,14"}', '{"LRN": "B", "Value": "20,14", "Value": "2014"}']
    with pytest.raises(ContractError) as refused:
        read_json_source(_records_file(tmp_path / name, records))
    said = str(refused.value)
    assert "the key 'Value' is given twice in one object" in said and "line 2" in said
    # the same key in two objects of one record is two fields (Seller.ID, Consignee.ID)
    two = _records_file(tmp_path / name, ['{"Seller": {"ID": "S"}, "Consignee": {"ID": "C"}}'])
    assert read_json_source(two).iloc[0].tolist() == ["S", "C"]


@pytest.mark.parametrize("name", ["lone.json", "lone.ndjson"])
def test_half_a_surrogate_pair_is_refused_naming_its_line(tmp_path, name) -> None:
    """A lone \\ud800 (valid JSON syntax, no character) ended ingest in a traceback from
    Arrow (probe 34); a whole pair, an emoji escaped, reads as its character."""
    from features.intake.jsonsrc import read_json_source

    lines = ['{"LRN": "A", "Text": "ok"}', '{"LRN": "B", "Text": "Jouet \\ud800 peluche"}']
    text = _records_file(tmp_path / name, lines).read_text()
    with pytest.raises(ContractError) as refused:
        read_json_source(tmp_path / name)
    said = str(refused.value)
    assert "\\ud800 is half of a UTF-16 surrogate pair" in said or (
        "\\ud800 on line 2 is half of a UTF-16 surrogate pair" in said
    )
    assert "line 2" in said
    (tmp_path / name).write_text(text.replace("\\ud800", "\\ud83d\\ude00"))
    assert read_json_source(tmp_path / name)["Text"].tolist() == ["ok", "Jouet \U0001f600 peluche"]
