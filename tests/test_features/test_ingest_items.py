"""Exports with one row per goods item (ASYCUDA item tables, H7 goods items): the mapping's
``items:`` block collapses them to one row per declaration, each field by its rule; amounts
must be stated; a declaration is set aside whole."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from features.intake.contract import ContractError
from features.intake.ingest import ingest_file
from features.intake.items import collapse_items
from features.intake.mapping import (
    REJECTED_REASONS,
    REJECTED_ROW,
    apply_mapping,
    parse_mapping_text,
)
from features.intake.rules import Limits
from features.intake.validation import validate_file
from features.params import load_settings

COLUMNS = """\
columns:
  declaration_id: DECL
  declared_at: {column: DATE, format: "%d/%m/%Y %H:%M", timezone: Europe/Paris}
  arrival_office: {value: FR01}
  channel: {value: postal}
  seller_id: SELLER
  consignee_id: CONSIGNEE
  origin_country: ORIGIN
  hs_code: HS
  description: GOODS
  quantity: QTY
  declared_value: {column: VALUE, decimal: ","}
  currency: {value: EUR}
  gross_weight_kg: {column: KG, decimal: ","}
  inspected: {column: CTRL, true_values: ["Y"], false_values: ["N"]}
  illicit: {column: FOUND, true_values: ["Y"], false_values: ["N"]}
  revenue_recovered: {column: DUTY, decimal: ",", currency: EUR}
  inspected_at: {column: CTRL_DATE, format: "%d/%m/%Y %H:%M", timezone: Europe/Paris}
"""
ITEMS = """\
items:
  declared_value: sum
  gross_weight_kg: agree
  quantity: sum
  illicit: any
  revenue_recovered: sum_given
"""
HEADER = "DECL;DATE;SELLER;CONSIGNEE;ORIGIN;HS;GOODS;QTY;VALUE;KG;CTRL;FOUND;DUTY;CTRL_DATE"
# D1: three items, the declaration's fields on each row; D2: one item; D3: two items, the
# declaration's fields on its first row only
ROWS = [
    "D1;02/01/2026 10:00;S1;C1;CN;610910;t-shirt;2;10,00;1,5;Y;N;;03/01/2026 09:00",
    "D1;02/01/2026 10:00;S1;C1;CN;640399;sneakers;1;45,50;1,5;Y;Y;12,00;03/01/2026 09:00",
    "D1;02/01/2026 10:00;S1;C1;CN;610910;t-shirt;1;5,00;1,5;Y;N;;03/01/2026 09:00",
    "D2;02/01/2026 11:00;S2;C2;TR;950300;toy;1;20,00;0,4;N;;;",
    "D3;02/01/2026 12:00;S3;C3;US;330499;cream;3;9,00;0,9;N;;;",
    "D3;;;;;847130;laptop;1;300,00;;;;;",
]


def _files(tmp_path: Path, rows: list[str], items: str = ITEMS) -> tuple[Path, Path]:
    source = tmp_path / "items.csv"
    source.write_text("\n".join([HEADER, *rows]) + "\n", encoding="utf-8")
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text("delimiter: ';'\n" + COLUMNS + items, encoding="utf-8")
    return source, mapping


def _ingest(tmp_path: Path, rows: list[str] = ROWS, items: str = ITEMS, **options):
    source, mapping = _files(tmp_path, rows, items)
    out = tmp_path / "out.parquet"
    summary = ingest_file(source=source, mapping_path=mapping, out=out, **options)
    return summary, pd.read_parquet(out).set_index("declaration_id")


def test_item_rows_become_one_declaration_each_by_their_rules(tmp_path) -> None:
    summary, out = _ingest(tmp_path)
    assert out.index.tolist() == ["D1", "D2", "D3"]  # in the order they first appear
    assert summary["rows"] == 3
    assert summary["items_collapsed"] == {"item_rows": 6, "declarations": 3, "most_items_in_one": 3}
    d1 = out.loc["D1"]
    assert d1["declared_value"] == pytest.approx(60.5)  # summed
    assert d1["gross_weight_kg"] == pytest.approx(1.5)  # the declaration's, not x3
    assert d1["quantity"] == 4
    assert d1["hs_code"] == "640399"  # the item of the largest value
    assert d1["description"] == "t-shirt | sneakers"  # distinct texts, in row order
    assert bool(d1["illicit"]) and d1["revenue_recovered"] == pytest.approx(12.0)
    # D3's declaration fields written on its first row only
    d3 = out.loc["D3"]
    assert (d3["seller_id"], d3["origin_country"]) == ("S3", "US")
    assert d3["declared_value"] == pytest.approx(309.0) and d3["hs_code"] == "847130"
    assert d3["gross_weight_kg"] == pytest.approx(0.9)
    limits = Limits.from_settings(load_settings(None))
    assert validate_file(tmp_path / "out.parquet", limits, cross_check=False).success


def test_a_file_of_single_items_equals_the_plain_ingest(tmp_path) -> None:
    singles = [ROWS[0], ROWS[3], ROWS[4]]
    _, with_items = _ingest(tmp_path, singles)
    plain_dir = tmp_path / "plain"
    plain_dir.mkdir()
    _, plain = _ingest(plain_dir, singles, items="")
    pd.testing.assert_frame_equal(with_items, plain)


def test_items_that_disagree_on_a_declaration_field_stop_the_ingest(tmp_path) -> None:
    rows = [*ROWS]
    rows[1] = rows[1].replace("02/01/2026 10:00;S1", "05/01/2026 10:00;S1")
    with pytest.raises(ContractError) as caught:
        _ingest(tmp_path, rows)
    message = str(caught.value)
    assert "declared_at differs between the items of 1 declaration(s)" in message
    assert "D1: " in message and not (tmp_path / "out.parquet").exists()


def test_a_sum_with_an_item_without_its_amount_is_empty_not_understated(tmp_path) -> None:
    rows = [*ROWS]
    rows[2] = rows[2].replace("t-shirt;1;", "t-shirt;;")
    _, out = _ingest(tmp_path, rows)
    assert pd.isna(out.loc["D1", "quantity"]) and out.loc["D3", "quantity"] == 4


@pytest.mark.parametrize(
    ("items", "named"),
    [
        ("items:\n  declared_value: sum\n", "say how quantity, gross_weight_kg, revenue_recovered"),
        (ITEMS + "  description: sum\n", "description: sum reads numbers; description is not"),
        (ITEMS + "  seller_id: average\n", "seller_id: unknown rule 'average'"),
        (ITEMS + "  declaration_id: agree\n", "declaration_id is what the items are grouped by"),
        (ITEMS + "  broker: agree\n", "broker is neither a mapped field nor an extra"),
        ("items: {}\n", "say how quantity, declared_value, gross_weight_kg, revenue_recovered"),
        (ITEMS.replace("quantity: sum", "quantity: any"), "quantity: any reads true/false"),
        (ITEMS + "  fob_value: sum\n", "fob_value is neither a mapped field nor an extra"),
    ],
)
def test_an_items_block_that_cannot_be_right_is_refused(tmp_path, items, named) -> None:
    with pytest.raises(ContractError, match="invalid mapping") as caught:
        parse_mapping_text("delimiter: ';'\n" + COLUMNS + items)
    assert named in str(caught.value)


def test_the_quarantine_sets_a_declaration_aside_whole(tmp_path) -> None:
    rows = [*ROWS]
    rows[1] = rows[1].replace("45,50", "quarante")  # one bad item of D1
    rows.append("D4;02/01/2026 13:00;S4;C4;CN;610910;shirt;1;5,00;0,2;N;;;")
    rows.append("D4;02/01/2026 14:00;S4;C4;CN;610910;shirt;1;5,00;0,2;N;;;")  # disagrees
    summary, out = _ingest(tmp_path, rows, quarantine=tmp_path / "rejected.csv", max_rejected=1.0)
    assert out.index.tolist() == ["D2", "D3"]
    rejected = pd.read_csv(tmp_path / "rejected.csv", dtype=str, keep_default_na=False)
    assert rejected["DECL"].tolist() == ["D1", "D1", "D1", "D4", "D4"]
    assert rejected[REJECTED_ROW].tolist() == ["1", "2", "3", "7", "8"]
    reasons = rejected[REJECTED_REASONS].tolist()
    assert "'quarante'" in reasons[1]
    assert reasons[0].startswith("another item of declaration D1 was set aside: declared_value")
    assert "declared_at differ(s) between the items of declaration D4" in reasons[3]
    assert summary["rows_rejected"] == 5


def test_collapse_is_vectorised_over_many_declarations() -> None:
    """The pure function on 200,000 item rows: one groupby per column."""
    import numpy as np

    n = 200_000
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "declaration_id": [f"D{i // 4}" for i in range(n)],
            "declared_value": rng.uniform(1, 100, n),
            "hs_code": rng.choice(["610910", "640399"], n),
            "description": rng.choice(["a", "b", "c"], n),
            "seller_id": [f"S{i // 4}" for i in range(n)],
        }
    )
    collapsed = collapse_items(frame, {"declared_value": "sum"})
    assert len(collapsed.frame) == n // 4 and not collapsed.disagreements
    assert collapsed.frame["declared_value"].sum() == pytest.approx(frame["declared_value"].sum())
    first = frame.iloc[:4]
    assert (
        collapsed.frame["hs_code"].iloc[0]
        == first["hs_code"].iloc[first["declared_value"].argmax()]
    )


def test_an_item_row_without_its_declaration_id_is_named_or_set_aside(tmp_path) -> None:
    rows = [*ROWS]
    rows[4] = rows[4].replace("D3;", ";", 1)  # D3's first item row: no id
    with pytest.raises(
        ContractError, match=r"declaration_id is empty on 1 item row\(s\) \(rows 5\)"
    ):
        _ingest(tmp_path, rows)
    quarantined = tmp_path / "q"
    quarantined.mkdir()
    _, out = _ingest(quarantined, rows, quarantine=quarantined / "rejected.csv", max_rejected=1.0)
    rejected = pd.read_csv(quarantined / "rejected.csv", dtype=str, keep_default_na=False)
    # D3's other item row holds no declaration fields of its own (they were on the row without
    # an id): the gate refuses what is left of D3, which goes to the quarantine too, not lost
    assert rejected[REJECTED_ROW].tolist() == ["5", "6"]
    assert "grouped into declarations by it" in rejected[REJECTED_REASONS].iloc[0]
    assert out.index.tolist() == ["D1", "D2"]


def test_items_need_the_declaration_id_they_are_grouped_by(tmp_path) -> None:
    without_id = COLUMNS.replace("  declaration_id: DECL\n", "")
    with pytest.raises(ContractError, match="groups rows by declaration_id, which is not mapped"):
        parse_mapping_text("delimiter: ';'\n" + without_id + ITEMS)


def test_the_principal_item_is_the_largest_value_and_the_first_on_a_tie() -> None:
    frame = pd.DataFrame(
        {
            "declaration_id": ["A", "B", "A", "A", "B"],
            "declared_value": [5.0, 1.0, 7.0, 7.0, None],
            "hs_code": ["610910", "950300", "640399", "330499", "847130"],
        }
    )
    collapsed = collapse_items(frame, {"declared_value": "sum"})
    assert collapsed.frame["hs_code"].tolist() == ["640399", "950300"]
    assert collapsed.group.tolist() == [0, 1, 0, 0, 1]  # each item row's declaration
    assert collapsed.summary() == {
        "item_rows": 5,
        "declarations": 2,
        "most_items_in_one_declaration": 3,
    }


def test_the_collapsed_frame_keeps_the_contract_dtypes() -> None:
    raw = pd.DataFrame([r.split(";") for r in ROWS], columns=HEADER.split(";")).replace("", None)
    raw["DECL"] = [f"X{i}" for i in range(len(raw))]  # one item each: no collapse yet
    items, _ = apply_mapping(raw, parse_mapping_text("delimiter: ';'\n" + COLUMNS), {"EUR": 1.0})
    ids = [r.split(";")[0] for r in ROWS]
    items["declaration_id"] = pd.Series(ids, dtype=items["declaration_id"].dtype)
    collapsed = collapse_items(
        items, parse_mapping_text("delimiter: ';'\n" + COLUMNS + ITEMS).items
    )
    assert collapsed.frame.dtypes.to_dict() == items.dtypes.to_dict()
    assert collapsed.frame["illicit"].iloc[0]  # D1: one item of three found illicit
    assert collapsed.frame["illicit"].iloc[1:].isna().all()  # D2, D3: not inspected


def test_revenue_summed_over_every_item_is_empty_when_one_item_gives_none(tmp_path) -> None:
    _, given = _ingest(tmp_path)
    other = tmp_path / "sum"
    other.mkdir()
    _, summed = _ingest(other, items=ITEMS.replace("sum_given", "sum"))
    # D1: 12.00 recovered on its second item, nothing written on the two others
    assert given.loc["D1", "revenue_recovered"] == pytest.approx(12.0)
    assert pd.isna(summed.loc["D1", "revenue_recovered"])
    assert bool(summed.loc["D1", "illicit"])  # any item found illicit
    assert pd.isna(summed.loc["D2", "illicit"])  # not inspected: no result


def test_an_amount_extra_must_be_stated_and_is_summed(tmp_path) -> None:
    extra = (
        "extras:\n  - {column: FOB, name: fob_value, kind: numeric, amount: true, decimal: ','}\n"
    )
    with pytest.raises(ContractError, match="say how fob_value combine"):
        parse_mapping_text("delimiter: ';'\n" + COLUMNS + extra + ITEMS)
    fob = ["8,00", "40,00", "4,00", "18,00", "8,00", "280,00"]
    source = tmp_path / "items.csv"
    rows = [f"{row};{value}" for row, value in zip(ROWS, fob, strict=True)]
    source.write_text("\n".join([HEADER + ";FOB", *rows]) + "\n", encoding="utf-8")
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text(
        "delimiter: ';'\n" + COLUMNS + extra + ITEMS + "  fob_value: sum\n", encoding="utf-8"
    )
    out = tmp_path / "out.parquet"
    ingest_file(source=source, mapping_path=mapping, out=out)
    written = pd.read_parquet(out).set_index("declaration_id")
    assert written["fob_value"].tolist() == pytest.approx([52.0, 18.0, 288.0])
    limits = Limits.from_settings(load_settings(None))
    assert validate_file(out, limits, cross_check=False).success


def test_outcomes_only_if_inspected_blanks_every_item_of_a_declaration_not_inspected(
    tmp_path,
) -> None:
    rows = [*ROWS]
    # D3 not inspected, said on its first row only; the filler (illicit N, revenue 0) on both
    rows[4] = "D3;02/01/2026 12:00;S3;C3;US;330499;cream;3;9,00;0,9;N;N;0,00;"
    rows[5] = "D3;;;;;847130;laptop;1;300,00;;;N;0,00;"
    source, mapping = _files(tmp_path, rows)
    mapping.write_text("outcomes_only_if_inspected: true\n" + mapping.read_text())
    out = tmp_path / "out.parquet"
    summary = ingest_file(source=source, mapping_path=mapping, out=out)
    d3 = pd.read_parquet(out).set_index("declaration_id").loc["D3"]
    assert not d3["inspected"] and pd.isna(d3["illicit"]) and pd.isna(d3["revenue_recovered"])
    assert summary["outcomes_blanked_not_inspected"] == 3  # item rows: D2's, both of D3's
    limits = Limits.from_settings(load_settings(None))
    assert validate_file(out, limits, cross_check=False).success


def test_an_item_without_its_value_sets_its_declaration_aside_whole(tmp_path) -> None:
    rows = [*ROWS]
    rows[2] = rows[2].replace(";5,00;", ";;")  # converts (empty), but D1's total is not known
    _, out = _ingest(tmp_path, rows)
    assert pd.isna(out.loc["D1", "declared_value"])  # never 55.50, as a plain empty value
    quarantined = tmp_path / "q"
    quarantined.mkdir()
    _, out = _ingest(quarantined, rows, quarantine=quarantined / "rejected.csv", max_rejected=1.0)
    assert out.index.tolist() == ["D2", "D3"]
    rejected = pd.read_csv(quarantined / "rejected.csv", dtype=str, keep_default_na=False)
    assert rejected[REJECTED_ROW].tolist() == ["1", "2", "3"]
    assert rejected[REJECTED_REASONS].str.contains("declared_value: a value is required").all()


def test_an_item_row_repeated_cell_for_cell_is_read_once_and_said(tmp_path, caplog) -> None:
    """A 1:n join or a message sent twice repeats an item row whole: summed, it would add its
    value to the declaration's unsaid. Read once, warned, counted; a row differing in any
    cell is another item."""
    rows = [*ROWS[:2], ROWS[1], ROWS[1], *ROWS[2:]]  # D1's sneakers three times
    with caplog.at_level("WARNING"):
        summary, out = _ingest(tmp_path, rows)
    assert summary["item_rows_repeated_dropped"] == 2
    assert "2 item row(s) repeat an earlier row" in caplog.text and "rows 3, 4" in caplog.text
    assert out.loc["D1", "declared_value"] == pytest.approx(60.5)  # 10 + 45.50 + 5, once each
    assert out.loc["D1", "quantity"] == 4
    (tmp_path / "plain").mkdir()
    plain, _ = _ingest(tmp_path / "plain", ROWS)
    assert "item_rows_repeated_dropped" not in plain


def test_an_item_amount_below_zero_stops_the_ingest_or_sets_its_declaration_aside(
    tmp_path,
) -> None:
    """A discount line netted into the sum would lower the declared value, which the gate
    then sees as plausible: each item is held to the gate's rule."""
    rows = [*ROWS[:2], ROWS[2].replace(";5,00;", ";-30,00;"), *ROWS[3:]]
    with pytest.raises(ContractError, match=r"declared_value is below zero on an item .* D1"):
        _ingest(tmp_path, rows)
    # an empty row before it (not read): the quarantine and its message name the file's rows
    rows = [";" * HEADER.count(";"), *rows]
    summary, out = _ingest(tmp_path, rows, quarantine=tmp_path / "rej.csv", max_rejected=0.9)
    assert "D1" not in out.index and {"D2", "D3"} <= set(out.index)
    rejected = pd.read_csv(tmp_path / "rej.csv", sep=None, engine="python")
    assert rejected[REJECTED_ROW].tolist() == [2, 3, 4]
    assert rejected[REJECTED_REASONS].str.contains("below zero on an item of declaration D1").all()
    assert summary["rejected_reasons"] == {"item amount below zero (items: ... sum)": 3}
    with pytest.raises(ContractError, match=r"item .* D1 \(row 2, first of them\)"):
        _ingest(tmp_path, rows, quarantine=tmp_path / "rej.csv", max_rejected=0.1)


def test_a_disagreement_gives_the_count_then_examples_then_how_many_more() -> None:
    """ "874 declaration(s) (and 871 more): ..." read as 874 + 871 (probe 33)."""
    import numpy as np
    import pandas as pd

    from features.intake.items import _differs, _negative

    codes = np.repeat(np.arange(5), 2)
    uniques = np.array([f"D{i}" for i in range(5)])
    currency = pd.Series(["EUR", "USD"] * 5)
    said = _differs("currency", currency, codes, uniques, np.arange(5))
    assert said.startswith(
        "currency differs between the items of 5 declaration(s), e.g. D0: EUR, USD; "
        "D1: EUR, USD; D2: EUR, USD (and 2 more) ("
    )
    value = pd.Series([-1.0, 2.0] * 5)
    said = _negative("declared_value", value, codes, uniques, np.arange(4))
    assert said.startswith(
        "declared_value is below zero on an item of 4 declaration(s), e.g. D0: -1, 2; "
        "D1: -1, 2; D2: -1, 2 (and 1 more) ("
    )


def test_an_item_export_read_without_items_is_said_and_points_to_the_block(
    tmp_path, caplog
) -> None:
    """Ingested without `items:`, every item line was a parcel, exit 0 and no word; the gate
    then refused "duplicate ids" without a word of items (probe 33 LOW-3)."""
    import logging

    rows = [r for r in ROWS if not r.startswith("D3")]  # D3's second row has no date
    source, mapping = _files(tmp_path, rows, items="")
    with caplog.at_level(logging.WARNING):
        summary = ingest_file(source=source, mapping_path=mapping, out=tmp_path / "out.parquet")
    assert summary["rows"] == 4 and summary["declaration_ids_repeated"] == {"rows": 3, "ids": 1}
    said = " ".join(r.getMessage() for r in caplog.records)
    assert "3 of 4 rows share their declaration_id with another row (1 ids, e.g. D1)" in said
    assert "give the mapping an items: block" in said
    # with the block: nothing repeated, nothing said
    caplog.clear()
    source, mapping = _files(tmp_path, rows)
    with caplog.at_level(logging.WARNING):
        summary = ingest_file(source=source, mapping_path=mapping, out=tmp_path / "out.parquet")
    assert "declaration_ids_repeated" not in summary and summary["rows"] == 2
    assert "share their declaration_id" not in " ".join(r.getMessage() for r in caplog.records)
