"""A results file giving the currency of its recovered amounts in a column of its own
(``Direitos_Recuperados; Moeda``): ``revenue_recovered: {currency: row}`` with ``currency``
mapped to that column puts each amount in EUR by its row's currency, and the currency is not
kept (a result carries none). A results mapping could only give one code for the whole file
(probe 27: the draft could only ask "in which currency?")."""

from __future__ import annotations

import pandas as pd
import pytest

from features.intake.contract import ContractError
from features.intake.mapping import apply_outcome_mapping, parse_mapping_text
from features.params import FeatureParams
from tests.test_serving.conftest import decided_store, ingest_results_csv

MAPPING = """\
delimiter: ";"
columns:
  declaration_id: ID
  inspected: {value: true}
  inspected_at: {column: DATA, format: "%d/%m/%Y %H:%M", timezone: UTC}
  illicit: {column: RESULTADO, values: {Irregular: true, Conforme: false}}
  revenue_recovered: {column: DIREITOS, decimal: ",", currency: row}
  currency: {column: MOEDA, values: {"€": EUR, usd: USD}, unlisted: keep}
"""


def _raw(currencies: list[str]) -> pd.DataFrame:
    n = len(currencies)
    return pd.DataFrame(
        {
            "ID": [f"A{i}" for i in range(n)],
            "DATA": ["02/08/2026 10:00"] * n,
            "RESULTADO": ["Irregular"] * n,
            "DIREITOS": ["10,00"] * n,
            "MOEDA": currencies,
        }
    )


def test_each_amount_is_put_in_eur_by_its_rows_currency() -> None:
    fx = FeatureParams().fx
    out = apply_outcome_mapping(_raw(["€", "usd", "EUR"]), parse_mapping_text(MAPPING), fx)
    assert "currency" not in out.columns
    usd_in_eur = fx["USD"] / fx["EUR"]
    assert out["revenue_recovered"].tolist() == pytest.approx([10.0, 10.0 * usd_in_eur, 10.0])


def test_a_currency_without_a_rate_is_refused_naming_the_rows() -> None:
    with pytest.raises(ContractError, match=r"revenue_recovered .*without a rate.*XAU"):
        apply_outcome_mapping(_raw(["EUR", "XAU"]), parse_mapping_text(MAPPING), FeatureParams().fx)


def test_a_currency_column_serves_the_revenue_only() -> None:
    """Mapped without `currency: row` it is no result field: refused, saying what it is for."""
    fixed = MAPPING.replace("currency: row}", "currency: EUR}")
    with pytest.raises(ContractError, match=r"currency: row.*not: currency"):
        apply_outcome_mapping(_raw(["EUR"]), parse_mapping_text(fixed), FeatureParams().fx)


def test_outcomes_ingest_stores_the_amounts_in_eur(tmp_path) -> None:
    import sqlite3

    location = decided_store(tmp_path, {"A0": "2026-08-01T10:00:00.000000Z"})
    text = "ID;DATA;RESULTADO;DIREITOS;MOEDA\nA0;02/08/2026 10:00;Irregular;10,00;usd\n"
    run = ingest_results_csv(tmp_path, location, text, MAPPING)
    assert run.exit_code == 0, run.output
    conn = sqlite3.connect(location)
    try:
        (stored,) = conn.execute("SELECT revenue_recovered FROM outcomes").fetchone()
    finally:
        conn.close()
    fx = FeatureParams().fx
    assert stored == pytest.approx(10.0 * fx["USD"] / fx["EUR"])
