"""A personal value (a consignee id, an extra marked ``personal: true``) never appears in an
error message: messages reach terminals, cron mail, `dvc repro` logs and 400 bodies, so a row
is named by its declaration id alone (probe 18: ingest quoted an over-long consignee id and a
phone holding a NUL byte; the API quoted a personal extra of the wrong type)."""

from __future__ import annotations

import pandas as pd
import pytest

from features.intake.contract import (
    PERSONAL_NOT_SHOWN,
    Contract,
    ContractError,
    ExtraColumn,
    coerce_declarations,
)
from features.intake.mapping import apply_mapping
from features.intake.mapping import parse_mapping_text as load_mapping_text
from tests.test_features.test_mapping import MAPPING, _raw
from tests.test_serving.conftest import make_declarations

PHONE = "+32 470 998877"
PERSON_MAPPING = MAPPING + "  - {column: CLERK, name: telephone, kind: entity, personal: true}\n"


def test_a_mapped_personal_extra_that_does_not_convert_is_named_by_row_not_value() -> None:
    raw = _raw()
    raw.loc[1, "CLERK"] = PHONE + "\x00x"
    with pytest.raises(ContractError) as refused:
        apply_mapping(raw, load_mapping_text(PERSON_MAPPING))
    message = str(refused.value)
    assert "telephone" in message and "X2" in message and PERSONAL_NOT_SHOWN in message
    assert "470" not in message


def test_an_over_long_consignee_id_is_refused_without_its_text() -> None:
    rows = pd.DataFrame(make_declarations(3, seed=81, prefix="PII"))
    rows.loc[1, "consignee_id"] = "ZQX7731MARK" * 8
    with pytest.raises(ContractError) as refused:
        coerce_declarations(rows, with_outcomes=False)
    message = str(refused.value)
    assert "consignee_id" in message and f"{rows.loc[1, 'declaration_id']}=" in message
    assert "ZQX7731MARK" not in message and PERSONAL_NOT_SHOWN in message


def test_a_personal_extra_holding_a_nul_byte_is_refused_without_its_text() -> None:
    contract = Contract((ExtraColumn("telephone", "entity", personal=True),))
    rows = pd.DataFrame(make_declarations(2, seed=82, prefix="PIN"))
    rows["telephone"] = [PHONE, PHONE + "\x00x"]
    with pytest.raises(ContractError) as refused:
        coerce_declarations(rows, with_outcomes=False, contract=contract)
    assert "telephone" in str(refused.value) and "470" not in str(refused.value)


@pytest.mark.parametrize("sent", [[PHONE, "17 Zebrastraat"], {"number": PHONE}])
def test_a_request_s_personal_extra_of_the_wrong_type_is_not_echoed(sent) -> None:
    from features.intake.contract import Declaration
    from features.intake.rules import check_records

    contract = Contract((ExtraColumn("telephone", "entity", personal=True),))
    declaration = make_declarations(1, seed=83, prefix="PIA")[0]
    record = Declaration.model_validate({**declaration, "telephone": sent})
    findings = check_records([record], contract, [])
    messages = [m for f in findings.items for m in f.messages()]
    assert messages and all("470" not in m and "Zebrastraat" not in m for m in messages)
    assert any(PERSONAL_NOT_SHOWN in m for m in messages)
    # an extra that is not personal still shows what was sent (it helps the sender)
    plain = Contract((ExtraColumn("telephone", "entity"),))
    shown = [m for f in check_records([record], plain, []).items for m in f.messages()]
    assert any("470" in m for m in shown)


# --- one person, one pseudonym, whichever path their name came by ------------------------------

NAME_MAPPING = MAPPING + (
    "  - {column: CLERK, name: consignee_name, kind: entity, personal: true, fold: true}\n"
)


def test_a_folded_name_is_one_pseudonym_in_a_file_and_in_a_request() -> None:
    from features.intake.columns import extra_column

    raw = _raw()
    raw["CLERK"] = ["Wilhelmina Quarkfeather", "WILHELMINA  QUARKFEATHER", None]
    frame, contract = apply_mapping(raw, load_mapping_text(NAME_MAPPING))
    (extra,) = [e for e in contract.extras if e.name == "consignee_name"]
    assert extra.fold and extra.personal
    # the fold travels with the contract files and snapshots record (extras_json)
    assert tuple(ExtraColumn(**e) for e in contract.extras_json()) == contract.extras
    from_file = frame["consignee_name"].tolist()
    assert from_file[0] == from_file[1] and from_file[0].startswith("psn_")
    # the API reads the extra as the file was read: folded, then keyed
    sent = extra_column(["wilhelmina quarkfeather ", "Wilhelmina Quarkfeather"], extra)
    assert sent.tolist() == [from_file[0], from_file[0]]


def test_a_folded_name_already_a_pseudonym_is_kept_not_keyed_again() -> None:
    from features.intake.columns import extra_column
    from features.intake.contract import fold_name

    contract = Contract((ExtraColumn("consignee_name", "entity", personal=True, fold=True),))
    rows = pd.DataFrame(make_declarations(2, seed=84, prefix="PIF"))
    rows["consignee_name"] = ["Wilhelmina Quarkfeather", None]
    first = coerce_declarations(rows, with_outcomes=False, contract=contract)
    stored = first["consignee_name"].iloc[0]
    # an exported history read back: its pseudonym reads as itself, on both paths
    again = coerce_declarations(first, with_outcomes=False, contract=contract)
    assert again["consignee_name"].iloc[0] == stored
    assert extra_column([stored], contract.extras[0]).tolist() == [stored]
    assert fold_name(pd.Series([stored, "psn_short"], dtype=object)).tolist() == [
        stored,
        "PSN_SHORT",
    ]


def test_keys_pseudonym_fold_finds_a_folded_name(monkeypatch) -> None:
    from typer.testing import CliRunner

    from features.intake.pseudonym import process_key, pseudonym_of
    from serving.main import app

    stored = pseudonym_of("WILHELMINA QUARKFEATHER", process_key())
    result = CliRunner().invoke(app, ["keys", "pseudonym", "--fold", "Wilhelmina  Quarkfeather"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"Wilhelmina  Quarkfeather -> {stored}"
    plain = CliRunner().invoke(app, ["keys", "pseudonym", "Wilhelmina Quarkfeather"])
    assert stored not in plain.output  # as typed: the unfolded value's pseudonym


def test_fold_is_refused_on_a_numeric_extra() -> None:
    with pytest.raises(ContractError, match="'fold' reads names; a number is none"):
        ExtraColumn("weight_g", "numeric", fold=True)


def test_a_contract_field_read_with_fold_is_folded_by_the_api_too(tmp_path) -> None:
    """`seller_id: {column: SELLER, fold: true}` folded the file's sellers, but only extras
    recorded their fold: the API keyed "Star Goods Inc" as sent, the seller lost its history
    and the API and `score --mapping` gave 100 risks of 150 apart (probe 35). The contract
    records folded fields; files and snapshots carry them; the API folds them."""
    from features.intake.contract import (
        Contract,
        Declaration,
        coerce_declarations,
        fold_name,
        fold_online,
        fold_text,
    )
    from features.intake.io import read_contract, write_declarations

    # the one-value fold is the column fold
    names = [
        "Star  Goods Inc",
        " star goods inc",
        "Yiwu Co.,Ltd",
        "YIWU CO. , LTD.",
        "psn_" + "a" * 24,
    ]
    assert [fold_text(n) for n in names] == fold_name(pd.Series(names, dtype="string")).tolist()

    mapping = load_mapping_text(
        MAPPING.replace("  seller_id: SELLER", "  seller_id: {column: SELLER, fold: true}")
    )
    raw = _raw()
    frame, contract = apply_mapping(raw, mapping)
    assert contract.folded == ("seller_id",)
    path = tmp_path / "declarations.parquet"
    write_declarations(frame, path, contract)
    assert read_contract(path).folded == ("seller_id",)
    # a contract Parquet scored without its mapping is folded by the contract
    loose = frame.assign(seller_id=frame["seller_id"].str.lower())
    coerced = coerce_declarations(loose, with_outcomes=True, contract=contract)
    assert coerced["seller_id"].tolist() == frame["seller_id"].tolist()
    # a request: folded once the served model's contract says so, as sent before
    (declaration,) = make_declarations(1, seed=3, prefix="FO")
    declaration["seller_id"] = "Star  goods inc "
    try:
        fold_online(contract.folded)
        assert Declaration.model_validate(declaration).seller_id == "STAR GOODS INC"
    finally:
        fold_online(())
    assert Declaration.model_validate(declaration).seller_id == "Star  goods inc"
    assert Contract().folded == ()


def test_an_extra_id_sent_as_a_json_number_is_the_id_a_file_reads() -> None:
    """1234567890.0 was keyed as another tax number than 1234567890, and a folded broker 39.0
    became "39. 0" (probe 35); a file's float-written cells read as the whole numbers."""
    from features.intake.columns import extra_column

    broker = ExtraColumn("broker_id", "entity", fold=True)
    assert extra_column([39, 39.0, "39"], broker).tolist() == ["39", "39", "39"]
    plain = ExtraColumn("broker_id", "entity")
    assert extra_column([39.5], plain).tolist() == ["39.5"]  # a fraction as written
    tax = ExtraColumn("tax_no", "entity", personal=True)
    keyed = extra_column([1234567890, 1234567890.0, "1234567890"], tax).tolist()
    assert keyed[0] == keyed[1] == keyed[2] and keyed[0].startswith("psn_")


def test_a_personal_extra_is_judged_as_an_identifier_before_it_is_keyed() -> None:
    """A control or bidi character in a personal tax number went in with 200: the rules saw
    only its pseudonym (probe 35). Refused as a broker's id is, its value never shown."""
    from features.intake.columns import extra_column

    tax = ExtraColumn("tax_no", "entity", personal=True)
    for hostile in ("12\u202e34", "12\x0734"):
        with pytest.raises(ContractError) as refused:
            extra_column(["123", hostile], tax)
        said = str(refused.value)
        assert said.startswith("tax_no: ") and "(personal: value not shown)" in said
        assert hostile not in said
