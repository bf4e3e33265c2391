"""Consignee ids as keyed pseudonyms: the function, where data enters, the key check, the lookup."""

from __future__ import annotations

import hashlib
import hmac
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.intake.contract import (
    Contract,
    ContractError,
    Declaration,
    ExtraColumn,
    coerce_declarations,
)
from features.intake.pseudonym import (
    PSEUDONYM,
    PseudonymKeyMismatch,
    forget_process_key,
    process_key,
    process_key_id,
    pseudonym_of,
    pseudonymise,
    require_same_key,
)
from features.keys import key_id
from tests.test_features.test_contract import make_declarations

KEY = b"k" * 40
ROOT = Path(__file__).resolve().parents[2]


def _by_hand(value: str, key: bytes = KEY) -> str:
    return "psn_" + hmac.new(key, value.encode(), hashlib.sha256).hexdigest()[:24]


def test_a_known_value_is_its_hmac_sha256_truncated() -> None:
    assert pseudonym_of("C0001234", KEY) == _by_hand("C0001234")
    assert PSEUDONYM.fullmatch(pseudonym_of("C0001234", KEY))
    assert pseudonym_of("C0001234", KEY) != pseudonym_of("C0001234", b"x" * 40)  # keyed
    long_key = b"z" * 100  # beyond SHA-256's block: hashed first, as RFC 2104 says
    assert pseudonym_of("C0001234", long_key) == _by_hand("C0001234", long_key)
    assert pseudonym_of("Ünïcode ✓", KEY) == _by_hand("Ünïcode ✓")


def test_a_pseudonym_is_left_as_it_is() -> None:
    once = pseudonym_of("C0001234", KEY)
    assert pseudonym_of(once, KEY) == once
    # only the exact form: a prefix alone, upper-case hex or a longer value is hashed
    for almost in ("psn_", once.upper(), once + "0", "psn_" + "g" * 24):
        assert pseudonym_of(almost, KEY) == _by_hand(almost)


def test_a_column_keeps_nulls_and_hashes_each_value() -> None:
    raw = pd.Series(["C1", None, "C2", "C1", np.nan], dtype="str", name="consignee_id")
    out = pseudonymise(raw, KEY)
    assert out.name == "consignee_id" and out.dtype == raw.dtype
    assert out.isna().tolist() == [False, True, False, False, True]
    assert out[[0, 2, 3]].tolist() == [_by_hand("C1"), _by_hand("C2"), _by_hand("C1")]
    assert pseudonymise(out, KEY).equals(out)  # idempotent on a whole column


def test_a_column_of_many_rows_equals_the_scalar_function() -> None:
    rng = np.random.default_rng(3)
    raw = pd.Series([f"C{i:07d}" for i in rng.integers(0, 5_000, 200_000)], dtype="str")
    raw[rng.random(len(raw)) < 0.1] = None
    out = pseudonymise(raw, KEY)
    expected = {v: _by_hand(v) for v in raw.dropna().unique()}
    assert out.dropna().tolist() == raw.dropna().map(expected).tolist()
    assert out.isna().equals(raw.isna())


def test_a_file_and_a_request_get_the_same_pseudonym() -> None:
    frame = make_declarations(3, with_outcomes=False).assign(consignee_id=[" C7 ", None, "C8"])
    canonical = coerce_declarations(frame, with_outcomes=False)
    key = process_key()
    assert canonical["consignee_id"].tolist()[0] == _by_hand("C7", key)
    assert pd.isna(canonical["consignee_id"].iloc[1])
    request = Declaration.model_validate({"consignee_id": "  C7", "declaration_id": "D1"})
    assert request.consignee_id == canonical["consignee_id"].iloc[0]
    # a number (a CSV column of ids read as numbers) is read as its text, in both
    assert Declaration.model_validate({"consignee_id": 1234}).consignee_id == _by_hand("1234", key)


def test_personal_extras_are_pseudonymised_and_recorded_as_personal() -> None:
    contract = Contract((ExtraColumn("buyer_tax_id", "entity", personal=True),))
    frame = make_declarations(2, with_outcomes=False).assign(buyer_tax_id=["T1", "T1"])
    canonical = coerce_declarations(frame, with_outcomes=False, contract=contract)
    assert canonical["buyer_tax_id"].tolist() == [_by_hand("T1", process_key())] * 2
    assert contract.extras_json() == [
        {"name": "buyer_tax_id", "kind": "entity", "description": "", "personal": True}
    ]
    with pytest.raises(ContractError, match="only an entity"):
        ExtraColumn("buyer_tax_rate", "numeric", personal=True)


def test_the_key_id_recorded_must_be_this_process_key(caplog) -> None:
    require_same_key(process_key_id(), "entity state x")
    with pytest.raises(PseudonymKeyMismatch) as refused:
        require_same_key("0123456789abcdef", "entity state x")
    message = str(refused.value)
    assert message.startswith("entity state x built with pseudonym key id 0123456789abcdef, ")
    assert f"this process has {process_key_id()}" in message and "\n" not in message
    with pytest.raises(PseudonymKeyMismatch, match="entity state y was built before consignee"):
        require_same_key(None, "entity state y")  # raw ids: no request would ever match them


def test_the_process_key_is_read_once(monkeypatch) -> None:
    try:
        first = process_key()
        monkeypatch.setenv("PARCELRISK_PSEUDONYM_KEY", "another-key-" + "2" * 32)
        assert process_key() == first  # cached: not re-read per request
        forget_process_key()
        assert key_id(process_key()) != key_id(first)
    finally:
        monkeypatch.undo()
        forget_process_key()


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from serving.main import main; main()", *args],
        capture_output=True,
        text=True,
        env={**env, "PYTHONPATH": str(ROOT)},
        cwd=ROOT,
        timeout=60,
    )


def test_keys_pseudonym_prints_each_lookup() -> None:
    done = _cli("keys", "pseudonym", "C0001234", " C7 ", env=dict(os.environ))
    assert done.returncode == 0, done.stderr
    key = os.environ["PARCELRISK_PSEUDONYM_KEY"].encode()
    assert done.stdout.splitlines() == [
        f"C0001234 -> {_by_hand('C0001234', key)}",
        f" C7  -> {_by_hand('C7', key)}",  # read as a declaration reads it: stripped
    ]


def test_keys_pseudonym_without_a_key_is_one_line(tmp_path) -> None:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("PARCELRISK_PSEUDONYM_KEY") and k != "XDG_CONFIG_HOME"
    }
    done = _cli("keys", "pseudonym", "C0001234", env={**env, "HOME": str(tmp_path)})
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.startswith("error: no pseudonym key (consignee pseudonyms)")
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr


def test_a_rule_on_a_personal_field_names_the_field_not_the_value() -> None:
    from features.intake.contract import FIELDS_BY_NAME
    from features.intake.rules import _field_rules

    rules = _field_rules(FIELDS_BY_NAME["consignee_id"], lambda: 0)
    assert rules and all("SECRET" not in r.message("SECRET-PERSON") for r in rules)
    assert all(r.message("x").startswith("consignee_id: ") for r in rules)


def test_the_shared_hmac_is_rfc_2104() -> None:
    """One HMAC for the pseudonyms and the audit chain: equal to the standard library's for
    short, block-sized and long keys."""
    from features.keys import hmac_sha256

    for key in (b"k", b"k" * 64, b"k" * 65, "clé".encode()):
        for message in (b"", b"x" * 1000, "ü".encode()):
            assert hmac_sha256(key, message) == hmac.new(key, message, hashlib.sha256).digest()
