"""XML and JSON exports read record by record: a field the mapping reads is one value per
record (a list of one is its value, several are refused naming the record), attribute-only
elements are objects, and a declaration sent in two records is one document, not two summed."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pandas as pd
import pytest

from features.intake.contract import ContractError
from features.intake.ingest import ingest_file
from features.intake.jsonsrc import read_json_source
from features.intake.xmlsrc import read_xml_source

FLAT_MAPPING = """\
columns:
  declaration_id: Number
  declared_at: Date
  arrival_office: Office
  channel: {value: postal}
  seller_id: Seller
  origin_country: {value: CN}
  hs_code: HS
  gross_weight_kg: Mass
  declared_value: Value
  currency: {value: KES}
"""


def _declarations(seed: int, n: int = 3) -> list[dict[str, str]]:
    rng = random.Random(seed)
    return [
        {
            "Number": f"KE{i + 1}",
            "Date": f"2026-10-01 1{i}:00",
            "Seller": f"S{rng.randint(1, 9)}",
            "Office": rng.choice(["JKIA", "MSA"]),
            "HS": rng.choice(["61091000", "64041900"]),
            "Value": f"{rng.randint(10, 900)}.00",
            "Mass": f"{rng.randint(1, 9) / 10}",
        }
        for i in range(n)
    ]


def _xml(records: list[dict], extra: dict[int, str] | None = None) -> str:
    """Records as <Decl> elements of leaf children; ``extra``: more XML inside record i."""
    body = []
    for i, record in enumerate(records):
        leaves = "".join(f"<{k}>{v}</{k}>" for k, v in record.items())
        body.append(f"<Decl>{leaves}{(extra or {}).get(i, '')}</Decl>")
    return '<?xml version="1.0" encoding="UTF-8"?>\n<Export>' + "".join(body) + "</Export>"


def _ingest(tmp_path: Path, name: str, content: str, mapping: str) -> pd.DataFrame:
    source = tmp_path / name
    source.write_text(content, encoding="utf-8")
    spec = tmp_path / "mapping.yaml"
    spec.write_text(mapping, encoding="utf-8")
    out = tmp_path / f"{name}.parquet"
    ingest_file(source=source, mapping_path=spec, out=out)
    return pd.read_parquet(out).set_index("declaration_id")


# --- a field read from a tag repeated in some record -------------------------------------------


def test_a_tag_repeated_in_one_record_leaves_the_others_plain(tmp_path: Path) -> None:
    records = _declarations(seed=3)
    source = tmp_path / "export.xml"
    source.write_text(_xml(records, extra={0: "<Seller>S0</Seller>"}))
    frame = read_xml_source(source)
    # a list of the file's structure in every record: one value reads as that value
    assert frame["Seller"].tolist()[1:] == [r["Seller"] for r in records[1:]]
    assert json.loads(frame["Seller"].iloc[0]) == [records[0]["Seller"], "S0"]


def test_a_record_holding_two_values_for_a_mapped_field_is_refused(tmp_path: Path) -> None:
    records = _declarations(seed=4)
    seller = records[1].pop("Seller")
    twice = {1: f"<Seller>{seller}</Seller><Seller>S0</Seller>"}
    with pytest.raises(ContractError, match=r"record 2: Seller holds 2 values \('S\d', 'S0'\)"):
        _ingest(tmp_path, "export.xml", _xml(records, extra=twice), FLAT_MAPPING)


def test_an_unmapped_or_empty_repeat_does_not_stop_the_ingest(tmp_path: Path) -> None:
    records = _declarations(seed=5)
    extra = {2: "<Note>a</Note><Note>b</Note>", 1: "<Seller/>"}  # an empty tag is no value
    out = _ingest(tmp_path, "export.xml", _xml(records, extra=extra), FLAT_MAPPING)
    assert out["seller_id"].tolist() == [r["Seller"] for r in records]


def test_an_attribute_and_a_child_of_one_name_are_two_values(tmp_path: Path) -> None:
    records = _declarations(seed=6)
    text = _xml(records).replace("<Decl>", '<Decl Value="999">', 1)
    with pytest.raises(ContractError, match=r"record 1: Value holds 2 values \('999', "):
        _ingest(tmp_path, "export.xml", text, FLAT_MAPPING)


def test_a_json_array_of_one_value_reads_as_that_value(tmp_path: Path) -> None:
    records = _declarations(seed=7)
    for record in records:
        record["Seller"] = [record["Seller"]]
    records[2]["Office"] = []  # an empty array: no value
    lines = "\n".join(json.dumps(r) for r in records)
    frame = read_json_source(_written(tmp_path / "export.ndjson", lines))
    assert frame["Seller"].tolist() == [r["Seller"][0] for r in records]
    assert frame["Office"].iloc[2] is None


def test_a_json_array_of_several_values_for_a_mapped_field_is_refused(tmp_path: Path) -> None:
    records = _declarations(seed=8)
    records[2]["Office"] = ["JKIA", "MSA"]
    lines = "\n".join(json.dumps(r) for r in records)
    with pytest.raises(ContractError, match=r"record 3: Office holds 2 values \('JKIA', 'MSA'\)"):
        _ingest(tmp_path, "export.ndjson", lines, FLAT_MAPPING)


def _written(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# --- goods items written as attribute-only elements --------------------------------------------

ITEM_MAPPING = """\
explode: Item
columns:
  declaration_id: Number
  declared_at: Date
  arrival_office: {value: JKIA}
  channel: {value: postal}
  origin_country: {value: CN}
  hs_code: Item.HS
  gross_weight_kg: Item.Mass
  declared_value: Item.Value
  currency: {value: KES}
items:
  declared_value: sum
  gross_weight_kg: sum
"""


def _attribute_items(seed: int) -> tuple[str, dict[str, list[tuple[str, float, float]]]]:
    """An export whose items are <Item HS=".." Value=".." Mass=".."/>, and the items written."""
    rng = random.Random(seed)
    written: dict[str, list[tuple[str, float, float]]] = {}
    body = []
    for i, count in enumerate((2, 1, 3)):
        number = f"KE{i + 1}"
        written[number] = [
            (
                rng.choice(["61091000", "64041900"]),
                rng.randint(10, 900) * 1.0,
                rng.randint(1, 9) / 10,
            )
            for _ in range(count)
        ]
        items = "".join(
            f'<Item HS="{hs}" Value="{value:.2f}" Mass="{mass}"/>'
            for hs, value, mass in written[number]
        )
        body.append(f'<Decl Number="{number}" Date="2026-10-01 1{i}:00">{items}</Decl>')
    return "<Export>" + "".join(body) + "</Export>", written


def test_attribute_only_items_are_each_an_item(tmp_path: Path) -> None:
    text, written = _attribute_items(seed=11)
    out = _ingest(tmp_path, "export.xml", text, ITEM_MAPPING)
    for number, items in written.items():
        assert out.loc[number, "declared_value"] == pytest.approx(sum(v for _, v, _ in items))
        assert out.loc[number, "gross_weight_kg"] == pytest.approx(sum(m for _, _, m in items))
        assert out.loc[number, "hs_code"] == max(items, key=lambda item: item[1])[0]


def test_attribute_only_items_read_without_explode_are_refused(tmp_path: Path) -> None:
    text, _ = _attribute_items(seed=12)
    flat = ITEM_MAPPING.replace("explode: Item\n", "").split("items:")[0]
    with pytest.raises(ContractError, match=r"record 1: Item\.\w+: the record holds 2 Item "):
        _ingest(tmp_path, "export.xml", text, flat)


def test_a_repeated_element_with_text_and_attributes_keeps_both(tmp_path: Path) -> None:
    source = tmp_path / "export.xml"
    source.write_text(
        '<Export><Decl><N>KE1</N><Item HS="61091000">12.5</Item><Item HS="64041900">40</Item>'
        '</Decl><Decl><N>KE2</N><Item HS="95030000">20</Item></Decl></Export>'
    )
    frame = read_xml_source(source, explode="Item")
    assert frame["Item"].tolist() == ["12.5", "40", "20"]
    assert frame["Item.HS"].tolist() == ["61091000", "64041900", "95030000"]
    assert frame["N"].tolist() == ["KE1", "KE1", "KE2"]


def test_the_draft_of_attribute_only_items_explodes_them(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from serving.main import app

    source = tmp_path / "export.xml"
    source.write_text(_attribute_items(seed=13)[0])
    result = CliRunner().invoke(app, ["mapping", "draft", str(source)])
    assert result.exit_code == 0, result.output
    assert "explode: Item" in result.output
    assert "declared_value: sum" in result.output


# --- a declaration's document sent twice in one export -----------------------------------------

RESENT_MAPPING = ITEM_MAPPING.replace("explode: Item\n", "explode: Items\n").replace(
    "Item.", "Items."
)


def _messages(seed: int) -> list[dict]:
    """H7-style messages, each with its own MessageId (an envelope field nobody maps)."""
    rng = random.Random(seed)
    return [
        {
            "MessageId": f"m{i + 1}",
            "Number": f"KE{i + 1}",
            "Date": f"2026-10-01 1{i}:00",
            "Items": [
                {
                    "HS": rng.choice(["61091000", "64041900"]),
                    "Value": f"{rng.randint(10, 900)}.00",
                    "Mass": f"{rng.randint(1, 9) / 10}",
                }
                for _ in range(count)
            ],
        }
        for i, count in enumerate((2, 1, 3))
    ]


def _as_xml(messages: list[dict]) -> str:
    body = "".join(
        f'<Msg id="{m["MessageId"]}"><Number>{m["Number"]}</Number><Date>{m["Date"]}</Date>'
        + "".join(
            f'<Items HS="{i["HS"]}" Value="{i["Value"]}" Mass="{i["Mass"]}"/>' for i in m["Items"]
        )
        + "</Msg>"
        for m in messages
    )
    return f"<Export>{body}</Export>"


@pytest.mark.parametrize("name", ["export.ndjson", "export.xml"])
def test_a_document_sent_twice_is_read_once(tmp_path: Path, caplog, name: str) -> None:
    messages = _messages(seed=21)
    again = {**json.loads(json.dumps(messages[0])), "MessageId": "m9"}
    sent = [*messages, again]
    text = "\n".join(map(json.dumps, sent)) if name.endswith("ndjson") else _as_xml(sent)
    out = _ingest(tmp_path, name, text, RESENT_MAPPING)
    assert out.index.tolist() == ["KE1", "KE2", "KE3"]
    for message in messages:
        total = sum(float(i["Value"]) for i in message["Items"])
        assert out.loc[message["Number"], "declared_value"] == pytest.approx(total)
    assert "KE1 (records 1, 4)" in caplog.text


def test_two_documents_of_one_declaration_that_differ_are_refused(tmp_path: Path) -> None:
    messages = _messages(seed=22)
    amended = json.loads(json.dumps(messages[0]))
    amended["MessageId"] = "m9"
    amended["Items"][1]["Value"] = "1.00"
    lines = "\n".join(map(json.dumps, [*messages, amended]))
    with pytest.raises(
        ContractError,
        match=r"declaration KE1 is in records 1 and 4 with other values of Items\.Value",
    ):
        _ingest(tmp_path, "export.ndjson", lines, RESENT_MAPPING)


def test_a_document_sent_again_with_another_item_is_refused(tmp_path: Path) -> None:
    messages = _messages(seed=23)
    longer = json.loads(json.dumps(messages[1]))
    longer["Items"].append(longer["Items"][0])
    with pytest.raises(
        ContractError, match=r"declaration KE2 is in records 2 and 4 with other items \(1 and 2\)"
    ):
        _ingest(tmp_path, "export.xml", _as_xml([*messages, longer]), RESENT_MAPPING)


# --- one declaration per file ------------------------------------------------------------------


def test_a_series_of_one_document_files_is_read_with_the_root_as_the_record(tmp_path):
    """ASYCUDA World writes one XML file per declaration (root <ASYCUDA>): `records:` could
    not name the root, and the refusal's advice (records: Identification) made a child the
    declaration without its items (probe 5f)."""
    paths = []
    for i in (1, 2, 3):
        path = tmp_path / f"doc{i}.xml"
        path.write_text(
            f"<ASYCUDA><Identification><Number>KE{i}</Number>"
            f"<Date>2026-10-0{i} 10:00</Date></Identification>"
            "<Item><HS>61091000</HS><Value>100.00</Value><Mass>1.0</Mass></Item>"
            "<Item><HS>64041900</HS><Value>50.00</Value><Mass>0.5</Mass></Item></ASYCUDA>",
            encoding="utf-8",
        )
        paths.append(path)
    # the item mapping, its declaration fields read from the document's Identification
    columns = ITEM_MAPPING.replace(": Number", ": Identification.Number").replace(
        ": Date", ": Identification.Date"
    )
    spec = tmp_path / "mapping.yaml"
    spec.write_text(columns, encoding="utf-8")
    with pytest.raises(ContractError, match=r"the root \(records: ASYCUDA\)"):
        ingest_file(source=paths, mapping_path=spec, out=tmp_path / "o.parquet")
    spec.write_text("records: ASYCUDA\n" + columns, encoding="utf-8")
    ingest_file(source=paths, mapping_path=spec, out=tmp_path / "o.parquet")
    read = pd.read_parquet(tmp_path / "o.parquet").set_index("declaration_id")
    assert read["declared_value"].to_dict() == {"KE1": 150.0, "KE2": 150.0, "KE3": 150.0}
    assert read["gross_weight_kg"].to_dict() == {"KE1": 1.5, "KE2": 1.5, "KE3": 1.5}


def test_an_xml_token_of_megabytes_is_fed_to_the_parser_in_growing_pieces(tmp_path, monkeypatch):
    """expat 2.5 scans an unfinished token again at every feed: fed 16 KB at a time, a 32 MB
    attribute took 47 s, 100 MB minutes (probe 34). A read that gave the parser no event is
    followed by one twice its size, so a long token takes a few dozen feeds, not thousands,
    and the records read the same; while events come, reads stay at 16 KB."""
    import io

    from features.intake import xmlsrc

    reads = xmlsrc._GrowingReads(io.BytesIO(b"x" * (1 << 20)))
    sizes = [len(reads.read(16 * 1024)) for _ in range(3)]  # no events in between: doubling
    reads.events += 1
    assert sizes == [16 * 1024, 32 * 1024, 64 * 1024] and len(reads.read(16 * 1024)) == 16 * 1024
    fed = []
    real = xmlsrc._GrowingReads.read

    def counted(self, size=-1):
        data = real(self, size)
        fed.append(len(data))
        return data

    monkeypatch.setattr(xmlsrc._GrowingReads, "read", counted)
    note = "A" * (6 << 20)
    path = tmp_path / "long.xml"
    path.write_text(
        f'<Declarations><Declaration note="{note}"><ID>D1</ID></Declaration>'
        "<Declaration><ID>D2</ID></Declaration></Declarations>"
    )
    frame = read_xml_source(path)
    assert frame["ID"].tolist() == ["D1", "D2"] and frame["note"].iloc[0] == note
    assert len(fed) <= 12  # 16 KB reads would be ~400
