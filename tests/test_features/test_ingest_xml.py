"""XML exports (an ICS2/H7-style message store, a postal operator's item messages): record
elements read as JSON records are, namespaces dropped, attributes beside their element's text,
goods items exploded and collapsed by the same mapping; unsafe or malformed XML refused by name."""

from __future__ import annotations

import gzip
from pathlib import Path

import pandas as pd
import pytest

from features.intake.contract import ContractError
from features.intake.xmlsrc import MAX_DEPTH, read_xml_source
from tests.test_features.test_ingest_json import MAPPING, _ingest, _ndjson

# The two declarations of test_ingest_json.RECORDS, as an XML message store writes them.
XML = """<?xml version="1.0" encoding="UTF-8"?>
<h7:Export xmlns:h7="urn:example:h7:v1" generated="2026-03-03">
  <h7:Declaration LRN="H7-0001">
    <AcceptanceDate>2026-03-02T10:15:00+01:00</AcceptanceDate>
    <CustomsOffice><Code>FR000720</Code></CustomsOffice>
    <TransportMode>postal</TransportMode>
    <Seller><ID>S-9</ID><Country>CN</Country></Seller>
    <Consignee><ID>C-1</ID><Region/></Consignee>
    <Origin>CN</Origin>
    <GrossMass unit="kg">1.25</GrossMass>
    <IOSS>true</IOSS>
    <GoodsItems><HS>610910</HS><Text>cotton t-shirt</Text><Value currency="EUR">12.5</Value><Qty>2</Qty></GoodsItems>
    <GoodsItems><HS>640399</HS><Text>sneakers</Text><Value currency="EUR">40</Value><Qty>1</Qty></GoodsItems>
  </h7:Declaration>
  <h7:Declaration LRN="H7-0002">
    <AcceptanceDate>2026-03-02T11:00:00+01:00</AcceptanceDate>
    <CustomsOffice><Code>FR000720</Code></CustomsOffice>
    <TransportMode>express</TransportMode>
    <Seller><ID>S-3</ID><Country>TR</Country></Seller>
    <Consignee><ID>C-2</ID><Region>FR10</Region></Consignee>
    <Origin>TR</Origin>
    <GrossMass unit="kg">0.4</GrossMass>
    <IOSS>false</IOSS>
    <GoodsItems><HS>950300</HS><Text>toy</Text><Value currency="EUR">20.0</Value><Qty>1</Qty></GoodsItems>
  </h7:Declaration>
</h7:Export>
"""
# the currency is an attribute of each item's value here, not a field of the declaration
XML_MAPPING = MAPPING.replace("currency: Currency", "currency: GoodsItems.Value.currency").replace(
    "items:\n", "items:\n  currency: agree\n"
)


def test_an_xml_export_reads_as_the_same_records_in_json(tmp_path) -> None:
    expected = _ingest(tmp_path, "h7.ndjson", _ndjson())
    got = _ingest(tmp_path, "h7.xml", XML.encode(), XML_MAPPING)
    pd.testing.assert_frame_equal(got, expected)
    packed = _ingest(tmp_path, "h7.xml.gz", gzip.compress(XML.encode()), XML_MAPPING)
    pd.testing.assert_frame_equal(packed, expected)


def test_records_by_path_attributes_and_one_item_alone(tmp_path) -> None:
    wrapped = XML.replace("<h7:Export", "<Envelope><Body><h7:Export").replace(
        "</h7:Export>", "</h7:Export></Body></Envelope>"
    )
    wrapped = wrapped.replace('xmlns:h7="urn:example:h7:v1"', "").replace(
        "<Envelope>", '<Envelope xmlns:h7="urn:example:h7:v1">'
    )
    (tmp_path / "env.xml").write_text(wrapped)
    frame = read_xml_source(tmp_path / "env.xml", records="Body.Export.Declaration")
    assert frame["LRN"].tolist() == ["H7-0001", "H7-0002"]
    assert frame["GrossMass"].tolist() == ["1.25", "0.4"]
    assert frame["GrossMass.unit"].tolist() == ["kg", "kg"]
    assert frame["Consignee.Region"].isna().tolist() == [True, False]  # <Region/>: no value
    # the second declaration's only item is one element: exploded like a list of one
    rows = read_xml_source(tmp_path / "env.xml", records="Body.Export.Declaration",
                           explode="GoodsItems")  # fmt: skip
    assert rows["LRN"].tolist() == ["H7-0001", "H7-0001", "H7-0002"]
    assert rows["GoodsItems.Value.currency"].tolist() == ["EUR"] * 3


@pytest.mark.parametrize(
    ("content", "records", "message"),
    [
        (b"", None, "holds no XML"),
        (b"<Export><Declaration>", None, "not well-formed XML"),
        (
            b"<Export><A/><B/></Export>",
            None,
            r"which elements are the declarations\? <Export> holds A, B",
        ),
        (
            XML.encode(),
            "Export.Nowhere",
            "records: Export.Nowhere: no such elements below <Export>",
        ),
        (
            b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaaaaaaaa">'
            b'<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]><Export><D><X>&b;</X></D></Export>',
            None,
            "refused: the XML declares a document type",
        ),
        (
            b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
            b"<Export><D><X>&e;</X></D></Export>",
            None,
            "refused: the XML declares a document type",
        ),
        (
            b"<Export><D>"
            + b"<n>" * (MAX_DEPTH + 5)
            + b"1"
            + b"</n>" * (MAX_DEPTH + 5)
            + b"</D></Export>",
            None,
            f"nested more than {MAX_DEPTH} levels",
        ),
    ],
)
def test_xml_that_cannot_be_read_safely_is_refused_by_name(
    tmp_path, content, records, message
) -> None:
    path = tmp_path / "bad.xml"
    path.write_bytes(content)
    with pytest.raises(ContractError, match=message) as refused:
        read_xml_source(path, records=records)
    assert str(refused.value).startswith(str(path))


def test_a_mapping_draft_reads_an_xml_export(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from serving.main import app

    source = tmp_path / "h7.xml"
    source.write_text(XML)
    result = CliRunner().invoke(app, ["mapping", "draft", str(source)])
    assert result.exit_code == 0, result.output
    assert "declaration_id: LRN" in result.output
    assert "declared_at: AcceptanceDate" in result.output


def _message_store(declarations: pd.DataFrame) -> str:
    """Declarations as an XML message store writes them: nested parties, the goods as items
    (every fifth declaration's value split over two items), the currency an attribute."""
    from xml.sax.saxutils import escape

    out = ['<?xml version="1.0" encoding="UTF-8"?>', '<Messages xmlns="urn:example:h7">']
    for i, d in enumerate(declarations.itertuples(index=False)):
        value = float(d.declared_value)
        parts = (
            [round(value * 0.4, 2), round(value - round(value * 0.4, 2), 2)]
            if i % 5 == 0
            else [value]
        )
        items = "".join(
            f"<GoodsItem><CommodityCode>{d.hs_code}</CommodityCode>"
            f"<DescriptionOfGoods>{escape(str(d.description))}</DescriptionOfGoods>"
            f'<ItemAmount currency="{d.currency}">{part}</ItemAmount></GoodsItem>'
            for part in parts
        )
        out.append(
            f"<Declaration><LRN>{d.declaration_id}</LRN>"
            f"<AcceptanceDate>{d.declared_at.isoformat()}</AcceptanceDate>"
            f"<CustomsOffice>{d.arrival_office}</CustomsOffice>"
            f"<TransportMode>{d.channel}</TransportMode>"
            f"<Seller><Id>{d.seller_id}</Id><Country>{d.seller_country}</Country></Seller>"
            f"<Consignee><Id>{d.consignee_id}</Id></Consignee>"
            f"<CountryOfOrigin>{d.origin_country}</CountryOfOrigin>"
            f"<GrossMass>{d.gross_weight_kg}</GrossMass>{items}</Declaration>"
        )
    out.append("</Messages>")
    return "\n".join(out)


def test_an_xml_message_store_is_drafted_and_ingested_end_to_end(tmp_path: Path) -> None:
    """Nobody wrote a mapping for it: the draft finds the items (explode), their rules and the
    fields, reads every declaration, and ingest gives the declarations' own values back."""
    from typer.testing import CliRunner

    from features.synthetic import SyntheticParams, generate
    from serving.main import app

    declarations, _ = generate(SyntheticParams(seed=8, parcels=300, days=10))
    declarations = declarations[declarations["description"].notna()].reset_index(drop=True)
    source = tmp_path / "messages.xml"
    source.write_text(_message_store(declarations), encoding="utf-8")
    mapping = tmp_path / "mapping.yaml"
    drafted = CliRunner().invoke(app, ["mapping", "draft", str(source), "--out", str(mapping)])
    assert drafted.exit_code == 0, drafted.output
    text = mapping.read_text()
    assert "explode: GoodsItem" in text and "declared_value: sum" in text, text
    assert "hs_code: GoodsItem.CommodityCode" in text, text
    out = tmp_path / "declarations.parquet"
    ingested = CliRunner().invoke(
        app, ["ingest", str(source), "--mapping", str(mapping), "--out", str(out)]
    )
    assert ingested.exit_code == 0, ingested.output
    read = pd.read_parquet(out).set_index("declaration_id")
    expected = declarations.set_index("declaration_id")
    assert len(read) == len(expected)
    np_value = read.loc[expected.index, "declared_value"].to_numpy()
    assert np_value == pytest.approx(expected["declared_value"].to_numpy(), abs=0.011)
    assert (read.loc[expected.index, "hs_code"] == expected["hs_code"]).all()
    assert (read.loc[expected.index, "seller_id"] == expected["seller_id"]).all()
