import pytest

from serving.auth import AuthConfigError, load_keyring, presented_key, required_roles

S = "s" * 20
A = "a" * 20


def test_keys_from_env_pairs() -> None:
    ring = load_keyring({"PARCELRISK_API_KEYS": f"scorer:{S}, auditor:{A}"})
    assert ring.role_of(S) == "scorer" and ring.role_of(A) == "auditor"
    assert ring.role_of("x" * 20) is None and ring.role_of(None) is None


def test_keys_from_file(tmp_path) -> None:
    f = tmp_path / "keys"
    f.write_text(f"# ops keys\nauditor:{A}\n\n")
    assert load_keyring({"PARCELRISK_API_KEYS_FILE": str(f)}).role_of(A) == "auditor"


def test_no_keys_refuses_unless_insecure() -> None:
    with pytest.raises(AuthConfigError, match="no API keys"):
        load_keyring({})
    assert load_keyring({}, insecure_no_auth=True).insecure
    assert load_keyring({"PARCELRISK_INSECURE_NO_AUTH": "1"}).insecure


@pytest.mark.parametrize("value", ["admin:" + S, "scorer" + S, "scorer:short"])
def test_bad_entries_are_rejected_without_echoing_the_key(value: str) -> None:
    with pytest.raises(AuthConfigError) as err:
        load_keyring({"PARCELRISK_API_KEYS": value})
    assert S not in str(err.value) and "short" not in str(err.value).replace("shorter", "")


def test_missing_keys_file() -> None:
    with pytest.raises(AuthConfigError, match="not found"):
        load_keyring({"PARCELRISK_API_KEYS_FILE": "/nonexistent/keys"})


def test_presented_key_header_or_bearer() -> None:
    assert presented_key({"x-api-key": " k1 "}) == "k1"
    assert presented_key({"authorization": "Bearer k2"}) == "k2"
    assert presented_key({"authorization": "Basic k2"}) is None
    assert presented_key({}) is None


def test_route_roles_deny_by_default() -> None:
    assert required_roles("/livez") is None and required_roles("/readyz") is None
    assert required_roles("/metrics") == frozenset()  # any valid key: lane volumes are not public
    assert required_roles("/score") == {"scorer"}
    assert required_roles("/decision") == {"auditor"}
    assert required_roles("/docs.json") == frozenset()
