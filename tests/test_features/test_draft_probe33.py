"""`mapping draft` reads two columns by their values where their names say nothing (probe 33):
a yes/no flag (CTRL: Y/N) saying yes on exactly the rows a result is written on is which
parcels were inspected, never a feature; and weights written with their unit (``250 g``,
``1,79 kg``) under an unknown name (MASA) are the weight, never an entity extra."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml

from features.intake.draft import draft_mapping
from features.intake.mapping import apply_mapping, parse_mapping_text

N = 200


def _line(text: str, field: str) -> str:
    return next(line for line in text.splitlines() if line.startswith(f"  {field}:"))


def _read_back(raw: pd.DataFrame, text: str, **columns: object) -> pd.DataFrame:
    """The declarations a drafted mapping reads, its TODOs a person would fill given."""
    mapping = yaml.safe_load(text)
    mapping["columns"] = {
        "channel": {"value": "postal"},
        "arrival_office": {"value": "PL01"},
        **mapping["columns"],
        **columns,
    }
    declarations, _ = apply_mapping(raw, parse_mapping_text(yaml.safe_dump(mapping)))
    return declarations


def _controls(seed: int = 33, yes: str = "Y", no: str = "N") -> pd.DataFrame:
    """A declarations export whose flag CTRL says which parcels were inspected: CTRL_DATE and
    FINDING (NIL, SEIZED, DUTY ADJ, REFERRED) are filled on those rows only."""
    rng = np.random.default_rng(seed)
    inspected = rng.random(N) < 0.2
    day = [f"{1 + i % 28:02d}.10.2026" for i in range(N)]
    return (
        pd.DataFrame(
            {
                "DECL_REF": [f"PL26{i:08d}" for i in range(N)],
                "LODGED": [f"{d} 10:{i % 60:02d}" for i, d in enumerate(day)],
                "OFFICE": rng.choice(["PL01", "PL02"], N),
                "SHIPPER": [f"SHP{i % 17:03d}" for i in range(N)],
                "ORIGIN": rng.choice(["CN", "TR"], N),
                "TARIFF_CODE": rng.choice(["847130", "330499", "610910"], N),
                "GROSS_KG": [f"{w:.3f}" for w in rng.uniform(0.1, 4.0, N)],
                "ITEM_VALUE": [f"{v:.2f}" for v in rng.uniform(3, 140, N)],
                "CCY": "EUR",
                "CTRL": np.where(inspected, yes, no),
                "CTRL_DATE": np.where(inspected, [f"{d} 15:30" for d in day], ""),
                "FINDING": np.where(
                    inspected, rng.choice(["NIL", "NIL", "SEIZED", "DUTY ADJ", "REFERRED"], N), ""
                ),
            }
        )
        .astype("string")
        .replace("", pd.NA)
    )  # blank cells as a CSV reads them


def _weights(seed: int = 6) -> list[str]:
    """Weights as a Polish export writes them: grams below a kilogram, kilograms with a comma."""
    kilos = np.random.default_rng(seed).lognormal(-0.5, 0.8, N)
    return [
        f"{round(kg * 1000)} g" if kg < 1 else f"{kg:.2f}".replace(".", ",") + " kg" for kg in kilos
    ]


def _masa(**more: list[str]) -> pd.DataFrame:
    """An export whose only weight is MASA, its cells carrying their unit."""
    rng = np.random.default_rng(60)
    return pd.DataFrame(
        {
            "NR": [f"PL{i:08d}" for i in range(N)],
            "DATA": [f"2026-09-{1 + i % 28:02d} 10:{i % 60:02d}" for i in range(N)],
            "URZAD": "PL01",
            "NADAWCA": [f"S{i % 90:03d}" for i in range(N)],
            "KRAJ": "CN",
            "KOD_CN": rng.choice(["610910", "851762", "950300"], N),
            "MASA": _weights(),
            "WARTOSC": [f"{v:.2f}".replace(".", ",") for v in rng.uniform(3, 140, N)],
            "WALUTA": "EUR",
            **more,
        }
    ).astype("string")


# --- LOW-1: an inspection flag by its values ---------------------------------------------------


@pytest.mark.parametrize(
    ("yes", "no"),
    [("Y", "N"), ("1", "0"), ("TRUE", "FALSE"), ("YES", "NO"), ("T", "F"), ("TAK", "NIE")],
)
def test_a_flag_saying_yes_where_results_are_written_is_read_as_inspected(
    yes: str, no: str
) -> None:
    """CTRL was drafted as a categorical extra, and every parcel as inspected."""
    draft = draft_mapping(_controls(yes=yes, no=no))
    columns = yaml.safe_load(draft.text)["columns"]
    assert columns["inspected"] == {"column": "CTRL", "true_values": [yes], "false_values": [no]}
    assert "by its values, not its name" in _line(draft.text, "inspected")


def test_an_inspection_flag_read_by_its_values_is_no_extra() -> None:
    draft = draft_mapping(_controls())
    assert "CTRL" not in draft.extras
    extras = yaml.safe_load(draft.text).get("extras") or []
    assert all(entry["column"] != "CTRL" for entry in extras)


def test_the_date_filled_on_the_flagged_rows_is_when_they_were_inspected() -> None:
    draft = draft_mapping(_controls())
    spec = yaml.safe_load(draft.text)["columns"]["inspected_at"]
    assert spec["column"] == "CTRL_DATE"
    assert "inspection date by its values" in _line(draft.text, "inspected_at")
    assert "inspected_at" not in draft.missing


def test_the_flag_read_by_its_values_reads_back_row_by_row() -> None:
    raw = _controls()
    finding = {"NIL": False, "SEIZED": True, "DUTY ADJ": True, "REFERRED": True}
    declarations = _read_back(
        raw, draft_mapping(raw).text, illicit={"column": "FINDING", "values": finding}
    )
    want = (raw["CTRL"] == "Y").to_numpy()
    assert (declarations["inspected"].to_numpy(dtype=bool) == want).all()
    assert declarations.loc[want, "inspected_at"].notna().all()


@pytest.mark.parametrize("overlap", ["independent", "twice the rows"])
def test_a_two_valued_column_not_on_the_result_rows_stays_an_extra(overlap: str) -> None:
    """A fragile-goods flag is no inspection's record: Y on rows of its own, or on the
    inspected rows and as many others."""
    raw = _controls()
    inspected = raw["CTRL"] == "Y"
    if overlap == "independent":
        others = pd.Series(np.random.default_rng(1).random(N) < 0.3, index=raw.index)
    else:
        others = inspected | inspected.shift(1, fill_value=False)
    raw = raw.drop(columns="CTRL").assign(FRAGILE=np.where(others, "Y", "N")).astype("string")
    draft = draft_mapping(raw)
    assert draft.mapped.get("inspected") != "FRAGILE"
    assert "FRAGILE" in draft.extras


def test_a_flag_and_a_date_that_agree_say_nothing_without_results() -> None:
    """No result in the export: a gift-wrap flag and the date it was wrapped are no control."""
    raw = _controls().drop(columns="FINDING")
    raw = raw.rename(columns={"CTRL": "GIFT_WRAP", "CTRL_DATE": "WRAPPED"})
    draft = draft_mapping(raw)
    assert "inspected" not in draft.mapped and "inspected_at" not in draft.mapped
    assert "GIFT_WRAP" in draft.extras


def test_a_flag_named_for_the_control_is_read_by_its_name_with_its_date() -> None:
    """The name path as before (no value check); the date it marks is its inspection date."""
    draft = draft_mapping(_controls().rename(columns={"CTRL": "CONTROL"}))
    columns = yaml.safe_load(draft.text)["columns"]
    assert columns["inspected"] == {
        "column": "CONTROL",
        "true_values": ["Y"],
        "false_values": ["N"],
    }
    assert "by its values" not in _line(draft.text, "inspected")
    assert columns["inspected_at"]["column"] == "CTRL_DATE"


# --- LOW-4: a weight by the units in its cells -------------------------------------------------


def test_weights_with_their_units_under_an_unknown_name_are_the_weight() -> None:
    """MASA (Polish: mass) was drafted as an entity extra and the weight left a TODO."""
    draft = draft_mapping(_masa())
    columns = yaml.safe_load(draft.text)["columns"]
    assert columns["gross_weight_kg"] == {
        "column": "MASA",
        "decimal": ",",
        "units": {"g": 0.001, "kg": 1.0},
    }
    assert "by the units in its cells, not by its name" in _line(draft.text, "gross_weight_kg")
    assert "MASA" not in draft.extras
    assert "gross_weight_kg" not in draft.missing


def test_weights_read_by_their_units_are_kilograms_row_by_row() -> None:
    raw = _masa()
    declarations = _read_back(raw, draft_mapping(raw).text)
    number = raw["MASA"].str.extract(r"([\d,]+)")[0].str.replace(",", ".").astype(float)
    want = np.where(raw["MASA"].str.endswith(" kg"), number, number / 1000)
    assert declarations["gross_weight_kg"].to_numpy() == pytest.approx(want)


def test_a_weight_matched_by_its_name_wins_over_one_with_units() -> None:
    """WEIGHT is the weight; MASA beside it is not mapped twice, and is read as weights."""
    draft = draft_mapping(_masa(WEIGHT=_weights(seed=7)))
    columns = yaml.safe_load(draft.text)["columns"]
    assert draft.mapped["gross_weight_kg"] == "WEIGHT"
    assert "by the units in its cells" not in _line(draft.text, "gross_weight_kg")
    assert list(draft.mapped.values()).count("MASA") == 0
    extra = next(e for e in yaml.safe_load(draft.text)["extras"] if e["column"] == "MASA")
    assert extra["kind"] == "numeric" and extra["units"] == {"g": 0.001, "kg": 1.0}
    assert columns["gross_weight_kg"]["units"] == {"g": 0.001, "kg": 1.0}


@pytest.mark.parametrize(
    "cells",
    [
        [f"{i % 40 + 1}" for i in range(N)],  # bare numbers: no unit says weight
        [f"{i % 40 + 1} pcs" for i in range(N)],  # a count with its unit
    ],
    ids=["bare numbers", "pieces"],
)
def test_numbers_without_a_unit_of_weight_are_not_the_weight(cells: list[str]) -> None:
    draft = draft_mapping(_masa().assign(MASA=cells).astype("string"))
    assert "gross_weight_kg" not in draft.mapped
    assert "gross_weight_kg" in draft.missing
