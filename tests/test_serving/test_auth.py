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
    assert required_roles("/livez", "GET") is None and required_roles("/readyz", "GET") is None
    # any valid key: lane volumes are not public
    assert required_roles("/metrics", "GET") == frozenset()
    assert required_roles("/score", "POST") == {"scorer"}
    assert required_roles("/decision", "GET") == {"auditor"}
    assert required_roles("/schema.json", "GET") == frozenset()  # BentoML's, for its clients


@pytest.mark.parametrize(
    "path", ["/", "/docs.json", "/static_content/swagger-ui.css", "/static_content/index.js"]
)
def test_the_docs_page_and_its_document_are_open_to_read_only(path: str) -> None:
    """A browser cannot send X-API-Key: the page, its files and the document it shows are
    read without one (probe 14 F-05); any other method on them still needs a key."""
    assert required_roles(path, "GET") is None and required_roles(path, "HEAD") is None
    for method in ("POST", "PUT", "DELETE", "PATCH"):
        assert required_roles(path, method) == frozenset(), method


@pytest.mark.parametrize(
    "path", ["/docs.json/", "/docs.jsonx", "/static_content", "/static", "/index.html", "//"]
)
def test_only_those_exact_docs_paths_are_open(path: str) -> None:
    assert required_roles(path, "GET") == frozenset()
