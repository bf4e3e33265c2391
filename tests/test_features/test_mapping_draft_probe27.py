"""`mapping draft` on a Portuguese export (probe 27): a weight's unit in a column of its own is
read with the weight whatever the column is called, and is never the arrival office; a
currency's codes are never an office either; recovered duties, revenue or value are
``revenue_recovered`` in every language of the table, never the declared value, and a results
draft that leaves a result out says so."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml

from features.intake.draft import draft_mapping
from features.intake.mapping import apply_mapping, apply_outcome_mapping, parse_mapping_text
from features.params import FeatureParams

N = 120


def _comma(value: float, places: int) -> str:
    return f"{value:.{places}f}".replace(".", ",")


def _portuguese(unit_column: str = "Unidade", seed: int = 27, **more: list[str]) -> pd.DataFrame:
    """A Portugal-style export: weights in grams for the post, in kilograms otherwise, the unit
    of each in ``unit_column`` (g, kg, KG, Kg)."""
    rng = np.random.default_rng(seed)
    post = np.arange(N) % 2 == 0
    kg = rng.uniform(0.1, 3.0, N)
    return pd.DataFrame(
        {
            "N_Declaracao": [f"PT26{i:08d}" for i in range(N)],
            "Data_Registo": [f"{1 + i % 28:02d}/09/2026" for i in range(N)],
            "Estancia": rng.choice(["PT-LIS-AER", "PT-OPO-AER", "PT-LIS-CTT"], N),
            "Via": np.where(post, "Correio", "Expresso"),
            "Pais_Origem": rng.choice(["CHN", "TUR", "USA"], N),
            "Codigo_Pautal": rng.choice(["61091000", "85044000", "64039900"], N),
            "Peso": [
                str(round(w * 1000)) if p else _comma(w, 3) for w, p in zip(kg, post, strict=True)
            ],
            unit_column: np.where(post, "g", rng.choice(["kg", "KG", "Kg"], N)),
            "Valor": [_comma(v, 2) for v in rng.uniform(5, 80, N)],
            "Moeda": rng.choice(["EUR", "USD"], N),
            **more,
        }
    ).astype("string")


def _columns(raw: pd.DataFrame, **kwargs) -> dict:
    return yaml.safe_load(draft_mapping(raw, **kwargs).text)["columns"]


def _line(text: str, field: str) -> str:
    return next(line for line in text.splitlines() if line.startswith(f"  {field}:"))


# --- finding 1: a weight's unit column ---------------------------------------------------------


@pytest.mark.parametrize("unit_column", ["Unidade", "Unidade_Peso", "Unid", "UoM", "Medida"])
def test_a_weights_unit_column_is_read_with_it_whatever_its_name(unit_column: str) -> None:
    """Named "Unidade", the unit column was drafted as the arrival office and every gram read
    as a kilogram, no CHECK on either line; named "Unid" it was paired (probe 27)."""
    draft = draft_mapping(_portuguese(unit_column))
    columns = yaml.safe_load(draft.text)["columns"]
    assert columns["gross_weight_kg"] == {
        "columns": ["Peso", unit_column],
        "decimal": ",",
        "units": {"g": 0.001, "kg": 1.0},
    }
    assert f"CHECK: the unit of each weight read from {unit_column}" in _line(
        draft.text, "gross_weight_kg"
    )
    assert columns["arrival_office"] == "Estancia"  # the Portuguese office, not the unit
    assert unit_column not in draft.extras


def test_the_drafted_weights_are_kilograms_row_by_row() -> None:
    raw = _portuguese()
    mapping = parse_mapping_text(draft_mapping(raw).text)
    declarations, _ = apply_mapping(raw, mapping)
    grams = raw["Unidade"] == "g"
    expected = raw["Peso"].str.replace(",", ".").astype(float)
    expected[grams] = expected[grams] / 1000
    assert declarations["gross_weight_kg"].to_numpy() == pytest.approx(expected.to_numpy())
    assert declarations["gross_weight_kg"].max() < 3.01


def test_a_unit_column_is_never_the_arrival_office_even_with_none_other() -> None:
    """A column of units named for an office leaves the office a TODO (ingest refuses the
    draft naming it), never the units."""
    raw = _portuguese().drop(columns="Estancia")
    draft = draft_mapping(raw)
    assert "arrival_office" not in draft.mapped
    assert "arrival_office" in draft.missing
    assert "# arrival_office: TODO" in draft.text


def test_a_unit_column_wins_over_grams_guessed_from_the_numbers() -> None:
    """Mostly grams in whole numbers were read as grams on every row (scale 0.001), the few
    kilogram rows too, and the unit column left an extra."""
    raw = _portuguese()
    kilos = np.arange(N) % 10 == 1
    raw["Unidade"] = np.where(kilos, "kg", "g")
    raw["Peso"] = np.where(kilos, "2", raw["Peso"].where(~kilos, "0"))
    raw.loc[~kilos, "Peso"] = [str(300 + i) for i in range(int((~kilos).sum()))]
    spec = _columns(raw)["gross_weight_kg"]
    assert spec == {"columns": ["Peso", "Unidade"], "units": {"g": 0.001, "kg": 1.0}}


def test_the_unit_column_named_like_the_weight_is_taken_over_a_nearer_one() -> None:
    raw = _portuguese("Unidade_Peso")
    raw.insert(raw.columns.get_loc("Peso") + 1, "Unidade_Volume", "kg")
    columns = _columns(raw)
    assert columns["gross_weight_kg"]["columns"] == ["Peso", "Unidade_Peso"]


def test_a_single_code_that_is_also_a_unit_stays_its_fields_code() -> None:
    """One value alone, under a name that says no unit, may be a code: "G" (gift) under
    "Tipo" is the category, not the weight's unit."""
    raw = _portuguese().drop(columns="Unidade")
    raw["Peso"] = [_comma(w, 3) for w in np.linspace(0.2, 2.5, N)]
    raw["Tipo"] = "G"
    columns = _columns(raw)
    assert columns["category"] == {"column": "Tipo", "values": {"G": "gift"}}
    assert columns["gross_weight_kg"] == {"column": "Peso", "decimal": ","}


def test_units_without_a_weight_are_no_field() -> None:
    raw = _portuguese().drop(columns="Peso")
    draft = draft_mapping(raw)
    assert "Unidade" not in draft.mapped.values()
    assert "gross_weight_kg" not in draft.mapped


# --- the same for a currency in a column of its own ---------------------------------------------


@pytest.mark.parametrize("currency_column", ["Unidade_Monetaria", "Unidade"])
def test_currency_codes_under_an_offices_name_are_the_currency(currency_column: str) -> None:
    """ "Unidade_Monetaria" (EUR, USD, €) was drafted as the arrival office, without a CHECK,
    and the currency left a TODO."""
    raw = _portuguese().drop(columns=["Moeda", "Unidade"])
    raw[currency_column] = np.random.default_rng(1).choice(["EUR", "USD", "€"], N)
    draft = draft_mapping(raw)
    columns = yaml.safe_load(draft.text)["columns"]
    assert columns["arrival_office"] == "Estancia"
    assert columns["currency"]["column"] == currency_column
    assert "chosen by its values alone" in _line(draft.text, "currency")
    without_office = draft_mapping(raw.drop(columns="Estancia"))
    assert "arrival_office" in without_office.missing
    assert without_office.mapped["currency"] == currency_column


def test_a_currency_column_named_for_it_stays_the_currency() -> None:
    columns = _columns(_portuguese())
    assert columns["currency"] == "Moeda"
    assert columns["arrival_office"] == "Estancia"


# --- finding 3: recovered duties, revenue, value ------------------------------------------------


def _results(column: str, seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    illicit = rng.random(N) < 0.3
    return pd.DataFrame(
        {
            "N_Declaracao": [f"PT26{i:08d}" for i in range(N)],
            "Data_Controlo": [f"{1 + i % 28:02d}/10/2026" for i in range(N)],
            "Resultado": np.where(illicit, "Irregular", "Conforme"),
            column: [
                _comma(v, 2) if i else "0,00"
                for v, i in zip(rng.uniform(1, 90, N), illicit, strict=True)
            ],
        }
    ).astype("string")


@pytest.mark.parametrize(
    "column",
    [
        "Direitos_Recuperados",  # pt
        "Valor_Recuperado",
        "Receita_Recuperada",
        "Tributo_Recuperado",
        "Impostos_Recuperados",
        "Droits_Recuperes",  # fr
        "Montant_Recupere",
        "Derechos_Recuperados",  # es
        "Importe_Recuperado",
        "Diritti_Recuperati",  # it
        "Importo_Recuperato",
        "Nachgeforderte_Abgaben",  # de
        "Recovered_Value",  # en
    ],
)
def test_recovered_revenue_is_drafted_in_a_results_mapping(column: str) -> None:
    """ "# not mapped: Direitos_Recuperados (a results mapping keeps none)": the recovered
    duties, an outcome, were left out of the results mapping (probe 27)."""
    draft = draft_mapping(_results(column), results=True)
    assert yaml.safe_load(draft.text)["columns"]["revenue_recovered"] == {
        "column": column,
        "decimal": ",",
    }
    assert "keeps none" not in draft.text


def test_recovered_duties_are_revenue_in_a_history_draft_too() -> None:
    raw = _portuguese(Direitos_Recuperados=[_comma(v, 2) for v in np.linspace(0, 40, N)])
    assert _columns(raw)["revenue_recovered"]["column"] == "Direitos_Recuperados"


def test_the_declared_value_and_the_recovered_value_are_told_apart() -> None:
    """ "Valor" is the declared value, "Valor_Recuperado" the result: whichever comes first."""
    recovered = [_comma(v, 2) for v in np.linspace(0, 40, N)]
    for raw in (
        _portuguese(Valor_Recuperado=recovered),
        _portuguese(Valor_Recuperado=recovered)[["Valor_Recuperado", *_portuguese().columns]],
    ):
        columns = _columns(raw)
        assert columns["declared_value"] == {"column": "Valor", "decimal": ","}
        assert columns["revenue_recovered"]["column"] == "Valor_Recuperado"


def test_a_recovered_value_alone_is_never_the_declared_value() -> None:
    raw = _portuguese(Valor_Recuperado=[_comma(v, 2) for v in np.linspace(0, 40, N)])
    draft = draft_mapping(raw.drop(columns="Valor"))
    assert draft.mapped.get("declared_value") != "Valor_Recuperado"
    assert "declared_value" in draft.missing
    assert draft.mapped["revenue_recovered"] == "Valor_Recuperado"


def test_a_results_draft_says_which_column_it_left_out_looks_like_a_result() -> None:
    raw = _results("Direitos_Recuperados")
    raw["Valor_Recuperado"] = raw["Direitos_Recuperados"]
    raw["Observacoes"] = [f"nota {i % 7}" for i in range(N)]
    draft = draft_mapping(raw, results=True)
    assert draft.mapped["revenue_recovered"] == "Direitos_Recuperados"
    left = draft.text.split("# not mapped: ", 1)[1]
    assert (
        "Valor_Recuperado (named like revenue_recovered, a result this draft did not map: map "
        "it as revenue_recovered if it is one" in left
    )
    assert "Observacoes (a results mapping keeps no extras)" in left
    assert "keeps none" not in draft.text


def test_european_portuguese_codes_and_names_are_read() -> None:
    """The rest of probe 27's export: CTT (Portugal's post) and ESTAFETA (a courier), the
    category as Natureza (Venda, Oferta), the result's date as Data_Controlo (Portugal's
    spelling) and its offence codes: each was a TODO or a refusal to fill in by hand."""
    n = 40
    more = {
        "Via": (["CTT", "ESTAFETA", "Expresso", "CTT"] * n)[:N],
        "Natureza": (["Venda", "Oferta", "Amostra", "Venda"] * n)[:N],
        "Controlado": (["S", "N", "N", "N"] * n)[:N],
        "Data_Controlo": (["03/09/2026", "", "", ""] * n)[:N],
        "Resultado": (["Irregular", "", "", ""] * n)[:N],
        "Infracao": (["SUBFATURACAO", "", "", ""] * (n // 2) + ["PROIBIDO", "", "", ""] * n)[:N],
    }
    columns = _columns(_portuguese(**more))
    assert columns["channel"]["values"] == {
        "CTT": "postal",
        "ESTAFETA": "courier",
        "Expresso": "express",
    }
    assert columns["category"]["values"] == {
        "Amostra": "sample",
        "Oferta": "gift",
        "Venda": "merchandise",
    }
    assert columns["inspected_at"]["column"] == "Data_Controlo"
    assert columns["offence_type"]["values"] == {
        "PROIBIDO": "prohibited",
        "SUBFATURACAO": "undervaluation",
    }


def test_a_results_draft_reads_the_revenue_currency_from_its_own_column() -> None:
    """`Direitos; Moeda` in a results file: each amount in its row's currency (the draft asked
    "in which currency?", and a results mapping could give one code only)."""
    raw = pd.DataFrame(
        {
            "N_Declaracao": ["PT1", "PT2", "PT3", "PT4"],
            "Data_Controlo": [
                "03/09/2026 10:00",
                "04/09/2026 11:00",
                "05/09/2026 09:30",
                "05/09/2026 12:00",
            ],
            "Resultado": ["Irregular", "Conforme", "Irregular", "Irregular"],
            "Direitos_Recuperados": ["10,50", None, "7,00", "3,00"],  # blank: read as missing
            "Moeda": ["EUR", None, "usd", "€"],
        }
    ).astype("string")
    draft = draft_mapping(raw, results=True)
    columns = yaml.safe_load(draft.text)["columns"]
    assert columns["revenue_recovered"]["currency"] == "row"
    assert columns["currency"]["column"] == "Moeda"
    assert "each amount in its row's currency, read from Moeda" in _line(
        draft.text, "revenue_recovered"
    )
    mapped = apply_outcome_mapping(raw, parse_mapping_text(draft.text), FeatureParams().fx)
    assert "currency" not in mapped.columns and mapped["revenue_recovered"].notna().sum() == 3
    # two columns of currencies: which is the revenue's is for a person to say
    two = raw.assign(Moeda_Fatura=["USD", None, "USD", "USD"])
    columns = yaml.safe_load(draft_mapping(two, results=True).text)["columns"]
    assert "currency" not in columns and "currency" not in columns["revenue_recovered"]


@pytest.mark.parametrize(("grams", "kilos"), [("GRM", "KGM"), ("gramas", "quilos")])
def test_un_ece_unit_codes_and_words_are_a_weight_s_units(grams: str, kilos: str) -> None:
    """GRM/KGM, the codes customs declarations write (UN/ECE Recommendation 20), were read as an
    extra and the grams as kilograms (probe 28)."""
    raw = _portuguese("Unidade")
    raw["Unidade"] = raw["Unidade"].map(lambda u: grams if u == "g" else kilos)
    columns = _columns(raw)
    assert columns["gross_weight_kg"]["columns"] == ["Peso", "Unidade"]
    assert columns["gross_weight_kg"]["units"] == {grams: 0.001, kilos: 1.0}


@pytest.mark.parametrize(
    "name",
    ["Navordering", "Odzyskane_cła", "Kwota_Odzyskana", "Взысканные_пошлины",
     "Сумма_доначисления", "追缴金额", "追缴税款", "追徴税額", "追徴金額"],
)  # fmt: skip
def test_recovered_duties_are_read_in_the_customs_terms_of_more_languages(name: str) -> None:
    raw = pd.DataFrame(
        {
            "ID": ["A1", "A2", "A3"],
            "Controle": ["2026-09-03T10:00:00Z", "2026-09-04T10:00:00Z", "2026-09-05T10:00:00Z"],
            "Resultado": ["Irregular", "Conforme", "Irregular"],
            name: ["10.5", None, "7.25"],
        }
    ).astype("string")
    columns = _columns(raw, results=True)
    assert _source(columns.get("revenue_recovered")) == name, columns


def test_a_column_of_result_entry_times_is_result_known_at_not_illicit() -> None:
    """Named result_known_at (or Result_Entered), it was offered as illicit, for its
    "result" (probe 28)."""
    for name in ("result_known_at", "Result_Entered", "Data_Registo_Resultado"):
        raw = pd.DataFrame(
            {
                "ID": ["A1", "A2", "A3"],
                "Controle": ["2026-09-03T10:00:00Z"] * 3,
                "Resultado": ["Irregular", "Conforme", "Irregular"],
                name: ["2026-09-06T10:00:00Z", "2026-09-04T12:00:00Z", "2026-09-08T09:00:00Z"],
            }
        ).astype("string")
        columns = _columns(raw, results=True)
        assert _source(columns.get("result_known_at")) == name, columns
        assert _source(columns["illicit"]) == "Resultado"


def _source(spec) -> str | None:
    """The source column a drafted spec reads (a name alone, or a dict's ``column``)."""
    return spec if isinstance(spec, str) or spec is None else spec.get("column")


@pytest.mark.parametrize("column", ["MONTANT", "Amount", "Valor"])
def test_an_amount_named_as_such_in_a_results_file_is_proposed_as_revenue_with_a_check(
    column: str,
) -> None:
    """A results file's one amount is what the inspection recovered: "MONTANT" was left out
    as "a results mapping keeps no extras", and with it the revenue labels (probe 32)."""
    draft = draft_mapping(_results(column), results=True)
    assert yaml.safe_load(draft.text)["columns"]["revenue_recovered"]["column"] == column
    assert "read as the duty recovered by the inspection" in draft.text
    assert "keeps no extras" not in draft.text
