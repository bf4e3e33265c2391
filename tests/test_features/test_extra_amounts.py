"""A numeric extra marked ``amount: true`` is an amount in the row's currency: the features
convert it to the base currency as they convert the declared value (probe, 2026-12: an FOB
value in NGN beside USD went into the model as one scale)."""

from __future__ import annotations

import numpy as np
import pytest

from features.intake.contract import Contract, ContractError, ExtraColumn
from features.intake.mapping import parse_mapping_text
from features.params import load_settings
from features.pipeline.prepare import prepare
from tests.test_features.test_contract import make_declarations

PARAMS = load_settings(None).features


def _prepared(amount: bool) -> tuple[np.ndarray, list[str]]:
    frame = make_declarations(n=4, with_outcomes=False)
    frame["currency"] = ["EUR", "USD", "CNY", "MNT"]  # MNT: ISO, no rate in the table
    frame["fob_value"] = [100.0, 100.0, 100.0, 100.0]
    contract = Contract((ExtraColumn("fob_value", "numeric", amount=amount),))
    from features.intake.contract import parse_declarations

    canonical, bad, _ = parse_declarations(frame, with_outcomes=False, contract=contract)
    assert not bad
    return prepare(canonical, contract, PARAMS)["fob_value"], list(frame["currency"])


def test_an_amount_is_converted_with_the_rows_currency() -> None:
    values, currencies = _prepared(amount=True)
    expected = [100.0 * PARAMS.fx[c] for c in currencies[:3]]
    assert values[:3].tolist() == pytest.approx(expected)
    assert np.isnan(values[3])  # no rate: unknown, as the value features


def test_a_plain_numeric_extra_goes_in_as_written() -> None:
    values, _ = _prepared(amount=False)
    assert values.tolist() == [100.0] * 4


def test_the_mapping_marks_it_and_the_contract_records_it() -> None:
    mapping = parse_mapping_text(
        "columns:\n  declaration_id: ID\nextras:\n"
        "  - {column: FOB, name: fob_value, kind: numeric, amount: true}\n"
    )
    (extra,) = mapping.contract.extras
    assert extra.amount
    assert mapping.contract.extras_json() == [
        {"name": "fob_value", "kind": "numeric", "description": "", "amount": True}
    ]


def test_only_a_numeric_extra_can_be_an_amount() -> None:
    with pytest.raises(ContractError, match="only a numeric extra can be an amount"):
        ExtraColumn("incoterm", "categorical", amount=True)
