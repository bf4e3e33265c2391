"""Secret keys: where they are found, how a new one is made, what is said without them."""

from __future__ import annotations

import stat

import pytest
from typer.testing import CliRunner

from features.keys import KeyUnavailable, key_id, key_source, load_key, write_new_key


def test_keys_are_found_in_order_variable_file_default(tmp_path) -> None:
    default = write_new_key("audit", tmp_path / "config" / "parcelrisk" / "audit.key")
    named = tmp_path / "named.key"
    named.write_text("n" * 40 + "\n")
    env = {"XDG_CONFIG_HOME": str(tmp_path / "config")}
    assert load_key("audit", env) == default.read_text().strip().encode()
    assert key_source("audit", env) == str(default)
    env["PARCELRISK_AUDIT_KEY_FILE"] = str(named)
    assert load_key("audit", env) == b"n" * 40 and key_source("audit", env) == str(named)
    env["PARCELRISK_AUDIT_KEY"] = "v" * 40
    assert (
        load_key("audit", env) == b"v" * 40 and key_source("audit", env) == "$PARCELRISK_AUDIT_KEY"
    )
    assert key_id(b"v" * 40) != key_id(b"n" * 40) and "v" not in key_id(b"v" * 40)


def test_a_new_key_is_private_and_never_replaced(tmp_path) -> None:
    path = write_new_key("pseudonym", tmp_path / "p.key")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and len(path.read_text().strip()) == 64
    with pytest.raises(KeyUnavailable, match="exists: keep it"):
        write_new_key("pseudonym", path)


def test_missing_short_and_unknown_keys_are_refused_by_name(tmp_path) -> None:
    env = {"XDG_CONFIG_HOME": str(tmp_path)}
    with pytest.raises(KeyUnavailable, match=r"no audit key .*`parcelrisk keys new audit`"):
        load_key("audit", env)
    with pytest.raises(KeyUnavailable, match="PARCELRISK_AUDIT_KEY_FILE: file not found"):
        load_key("audit", {**env, "PARCELRISK_AUDIT_KEY_FILE": str(tmp_path / "nope")})
    with pytest.raises(KeyUnavailable, match="shorter than 32"):
        load_key("audit", {"PARCELRISK_AUDIT_KEY": "short"})
    with pytest.raises(KeyUnavailable, match="unknown key kind"):
        load_key("api", env)


def test_the_cli_makes_and_shows_keys_never_printing_one(tmp_path, monkeypatch) -> None:
    from serving.main import app

    monkeypatch.delenv("PARCELRISK_AUDIT_KEY")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    runner = CliRunner()
    shown = runner.invoke(app, ["keys", "show"])
    assert shown.exit_code == 0 and "audit: missing" in shown.output
    made = runner.invoke(app, ["keys", "new", "audit"])
    path = tmp_path / "parcelrisk" / "audit.key"
    assert made.exit_code == 0 and str(path) in made.output
    shown = runner.invoke(app, ["keys", "show"])
    assert f"audit: id {key_id(path.read_text().strip().encode())} from {path}" in shown.output
    assert path.read_text().strip() not in shown.output + made.output


def test_a_new_key_goes_where_the_key_file_variable_points(tmp_path, monkeypatch) -> None:
    """`keys new` without --out writes the file PARCELRISK_<KIND>_KEY_FILE names, the one
    load_key reads: not a default file nothing would read (probe 16 F1)."""
    from serving.main import app

    named = tmp_path / "keys" / "pseudonym.key"
    monkeypatch.delenv("PARCELRISK_PSEUDONYM_KEY")
    monkeypatch.setenv("PARCELRISK_PSEUDONYM_KEY_FILE", str(named))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    runner = CliRunner()
    assert "pseudonym: missing" in runner.invoke(app, ["keys", "show"]).output
    made = runner.invoke(app, ["keys", "new", "pseudonym"])
    assert made.exit_code == 0 and str(named) in made.output, made.output
    assert "use it with" not in made.output  # it is already where the variable points
    assert not (tmp_path / "config").exists()  # nothing written where nothing reads
    shown = runner.invoke(app, ["keys", "show"]).output
    assert f"pseudonym: id {key_id(load_key('pseudonym'))} from {named}" in shown
    again = runner.invoke(app, ["keys", "new", "pseudonym"])
    assert isinstance(again.exception, KeyUnavailable) and "exists: keep it" in str(again.exception)


def test_a_new_key_shadowed_by_the_key_variable_says_so(tmp_path) -> None:
    """With PARCELRISK_AUDIT_KEY set (conftest sets it), a new key file is never read: said."""
    from serving.main import app

    made = CliRunner().invoke(app, ["keys", "new", "audit", "--out", str(tmp_path / "a.key")])
    assert made.exit_code == 0
    assert "PARCELRISK_AUDIT_KEY is set and is used instead of any key file" in made.output


def test_a_directory_is_not_a_key_file(tmp_path) -> None:
    with pytest.raises(KeyUnavailable, match="is a directory"):
        write_new_key("audit", tmp_path)


def test_a_key_file_other_accounts_can_read_is_warned_once_and_still_used(tmp_path, caplog) -> None:
    import logging

    from features import keys

    path = write_new_key("pseudonym", tmp_path / "pseudonym.key")
    env = {"PARCELRISK_PSEUDONYM_KEY_FILE": str(path)}
    with caplog.at_level(logging.WARNING, logger="features.keys"):
        load_key("pseudonym", env)
    assert caplog.records == []  # 0600 as made: nothing to say
    path.chmod(0o644)  # as a secret volume mounts it
    keys._warn_once.cache_clear()
    with caplog.at_level(logging.WARNING, logger="features.keys"):
        key = load_key("pseudonym", env)
        load_key("pseudonym", env)
    assert key == path.read_text().strip().encode()  # warned, not refused
    (record,) = caplog.records
    assert "open to other accounts (mode 0644)" in record.getMessage()
    assert "re-identify every consignee" in record.getMessage()
    assert f"chmod 600 {path}" in record.getMessage()
