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


def _amount_history():
    import pandas as pd

    from features.intake.contract import coerce_declarations
    from tests.test_features.family_frames import T0, declarations

    contract = Contract(
        (
            ExtraColumn("total_taxes", "numeric", amount=True),
            ExtraColumn("insured_value", "numeric"),
        )
    )
    frame = declarations(
        *(
            {"declared_at": T0 + pd.Timedelta(hours=i), "declared_value": v, "currency": c}
            for i, (v, c) in enumerate(
                [(200.0, "EUR"), (0.0, "EUR"), (100.0, "MNT"), (50.0, "USD")]
            )
        )
    )
    frame["total_taxes"] = [20.0, 5.0, 10.0, None]
    frame["insured_value"] = [1.0, 2.0, 3.0, 4.0]
    return coerce_declarations(frame, with_outcomes=True, contract=contract), contract


def test_an_amount_is_also_read_as_its_share_of_the_declared_value(tmp_path) -> None:
    """Duties a tenth of the value, a CIF far above the FOB: an amount carries its risk beside
    the value declared with it (DATE's TaxRatio, FOBCIFRatio), a ratio trees cannot form from
    the two columns. Both in the base currency; unknown where either is; a value of 0 is read
    as 0.01, as the unit values read it. The live path computes the same."""
    from features.intake.contract import DECLARATION_COLUMNS
    from features.params import FeatureParams
    from features.pipeline.build import build_features
    from features.pipeline.online import compute_online_features
    from features.pipeline.snapshot import EntityState, build_entity_state
    from tests.test_features.family_frames import T0

    history, contract = _amount_history()
    built = build_features(history, contract, FeatureParams())
    share = built.frame["extra_total_taxes_share_of_value"]
    assert share.iloc[0] == pytest.approx(0.1)
    assert share.iloc[1] == pytest.approx(5.0 / 0.01)
    assert np.isnan(share.iloc[2]) and np.isnan(share.iloc[3])  # no rate / no amount
    assert "extra_insured_value_share_of_value" not in built.manifest.names  # no amount
    spec = built.manifest.spec("extra_total_taxes_share_of_value")
    assert spec.reason.format(value=0.1) == "total taxes is 10% of the declared value"
    # an amount is said in the base currency its number is in (probe 35: "freight 6.51" for a
    # parcel declaring USD 7.08); a plain number as it is
    amount = built.manifest.spec("extra_total_taxes").reason.format(value=6.5136)
    assert amount == "total taxes EUR 6.51"
    assert (
        built.manifest.spec("extra_insured_value").reason.format(value=3.0) == "insured value 3.00"
    )
    in_xof = build_features(
        history,
        contract,
        FeatureParams(
            base_currency="XOF", fx_to_base={**FeatureParams().fx_to_base, "XOF": 655.957}
        ),
    )
    assert in_xof.manifest.spec("extra_total_taxes").reason.startswith("total taxes XOF ")

    state = build_entity_state(
        history.iloc[:2], contract, FeatureParams(), cutoff=T0, manifest=built.manifest
    )
    state.save(tmp_path / "state")
    columns = [*DECLARATION_COLUMNS, "total_taxes", "insured_value"]
    online = compute_online_features(
        history.iloc[:2][columns], EntityState.load(tmp_path / "state")
    )
    assert online["extra_total_taxes_share_of_value"].tolist() == pytest.approx(
        share.iloc[:2].tolist()
    )


def test_a_negative_amount_is_a_fault_in_a_file_a_plain_number_is_not() -> None:
    """Taxes of -500 in a scored file cut the revenue at stake unsaid (probe 9): an amount
    below 0 is refused as a declared value below 0 is; a plain numeric extra may be negative."""
    from features.intake.rules import Limits
    from features.intake.validation import check_declarations
    from features.params import FeatureParams

    history, contract = _amount_history()
    history["total_taxes"] = [20.0, -500.0, 10.0, None]
    history["insured_value"] = [-1.0, 2.0, 3.0, 4.0]
    result = check_declarations(history, contract, Limits.from_params({}, FeatureParams()))[0]
    assert [m for f in result.findings.faults for m in f.messages()] == [
        "total_taxes: -500 is negative"
    ]


def test_an_amount_above_the_plausible_value_is_warned_in_a_file() -> None:
    """The declared value's bound (validate.max_value, in the base currency) holds for an
    amount extra too: 1e300 of taxes moved a parcel's revenue at stake unsaid (probe 9). A
    warning, as for the declared value; no rate (MNT): judged at the table's weakest rate; a
    plain number: no bound."""
    from features.intake.rules import Limits
    from features.intake.validation import check_declarations
    from features.params import FeatureParams

    history, contract = _amount_history()
    history["total_taxes"] = [1e300, 150_000.0, 1e300, 99_000.0]  # EUR, EUR, MNT, USD
    history["insured_value"] = [1e300, 2.0, 3.0, 4.0]
    limits = Limits.from_params({}, FeatureParams())
    result = check_declarations(history, contract, limits)[0]
    assert not result.findings.faults
    (finding,) = [f for f in result.findings.warnings if f.rule.field == "total_taxes"]
    assert finding.rows.tolist() == [0, 1, 2]
    assert finding.messages() == [
        "total_taxes: 1e+300 EUR (1e+300 EUR) is above the plausible 100,000 EUR: a unit or "
        "decimal error?",
        "total_taxes: 150000 EUR (150,000 EUR) is above the plausible 100,000 EUR: a unit or "
        "decimal error?",
        f"total_taxes: 1e+300 MNT (no exchange rate to EUR; at least {1e300 * limits.weakest_rate:.3g}"
        " EUR at any rate) is above the plausible 100,000 EUR: a unit or decimal error?",
    ]
    assert not [f for f in result.findings.warnings if f.rule.field == "insured_value"]
