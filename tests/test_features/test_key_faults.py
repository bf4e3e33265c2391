"""Keys and identifiers an operator gets wrong: said for what they are, in one line."""

from __future__ import annotations

import pytest

from features.keys import KeyUnavailable, load_key
from tests.test_serving.conftest import run_cli


@pytest.mark.parametrize("kind", ["audit", "pseudonym"])
def test_a_key_file_that_is_a_directory_is_called_one(tmp_path, kind: str) -> None:
    """It said "file not found" of a path that is there."""
    variable = f"PARCELRISK_{kind.upper()}_KEY_FILE"
    with pytest.raises(KeyUnavailable) as caught:
        load_key(kind, {variable: str(tmp_path)})
    assert str(caught.value) == f"{variable}: {tmp_path} is a directory, not a key file"


def test_a_default_key_path_that_is_a_directory_is_called_one(tmp_path) -> None:
    """It said "no audit key: make one with `keys new audit`", which then fails on it."""
    (tmp_path / "parcelrisk" / "audit.key").mkdir(parents=True)
    with pytest.raises(KeyUnavailable, match=r"the default key file: .* is a directory"):
        load_key("audit", {"XDG_CONFIG_HOME": str(tmp_path)})


def test_the_cli_names_a_key_directory_in_one_line(capsys, tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("PARCELRISK_PSEUDONYM_KEY")
    monkeypatch.setenv("PARCELRISK_PSEUDONYM_KEY_FILE", str(tmp_path))
    code, _, err = run_cli(capsys, "keys", "pseudonym", "C1")
    assert code == 2
    assert err.strip() == (
        f"error: PARCELRISK_PSEUDONYM_KEY_FILE: {tmp_path} is a directory, not a key file"
    )


@pytest.mark.parametrize("blank", ["", "   ", "\t"])
def test_keys_pseudonym_refuses_an_empty_identifier(capsys, blank: str) -> None:
    """It answered with the pseudonym of "", which no stored value has: empty means unknown."""
    code, out, err = run_cli(capsys, "keys", "pseudonym", "C0001234", blank)
    assert code == 2 and out == ""
    assert err.strip() == (
        "error: identifier 2 of 2 is empty: an empty identifier means unknown and has no "
        "pseudonym; give the raw identifiers"
    )


def test_keys_pseudonym_still_answers_for_real_identifiers(capsys) -> None:
    code, out, _ = run_cli(capsys, "keys", "pseudonym", "C0001234", " C7 ")
    assert code == 0 and len(out.strip().splitlines()) == 2
