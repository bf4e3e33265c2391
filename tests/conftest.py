"""Keys for every test: the audit chain and pseudonym keys come from the environment, so no test
ever reads (or needs) the developer's keys: neither those in ~/.config/parcelrisk nor the files
their shell names by PARCELRISK_*_KEY_FILE (as the README suggests exporting)."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

import pytest

# Set at import, before any test module is collected, and inherited by every process a test
# starts (service workers, CLI subprocesses).
os.environ["PARCELRISK_AUDIT_KEY"] = "test-audit-key-" + "0" * 32
os.environ["PARCELRISK_PSEUDONYM_KEY"] = "test-pseudonym-key-" + "1" * 32
# A test that removes the variable to see the service without a key must find none: not the
# file the developer's shell names, not their default file.
for _kind in ("AUDIT", "PSEUDONYM"):
    os.environ.pop(f"PARCELRISK_{_kind}_KEY_FILE", None)
_CONFIG_HOME = tempfile.mkdtemp(prefix="parcelrisk-test-config-")
atexit.register(shutil.rmtree, _CONFIG_HOME, ignore_errors=True)
os.environ["XDG_CONFIG_HOME"] = _CONFIG_HOME


# pytest-xdist 3.8's `--dist loadgroup` tags a grouped test by rewriting `item._nodeid`, which
# pytest 9 no longer reads (the id lives in `item._id`): the marks were silently ignored and a
# group's tests split across workers. Carry the tag over after xdist's hook has run.
# Remove when pytest-xdist handles pytest 9 (test_architecture.py checks the tag arrives).
@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    from _pytest.nodeid import coerce_node_id

    for item in items:
        tagged = item.__dict__.get("_nodeid")
        if isinstance(tagged, str) and tagged != item.nodeid:
            item._id = coerce_node_id(tagged)


@pytest.fixture(scope="session")
def postgres_server():
    """One throwaway PostgreSQL server per test process (``tests/postgres.py``); skipped, saying
    why, where Debian's postgresql is not installed (failed instead under
    PARCELRISK_REQUIRE_POSTGRES=1, as CI runs)."""
    from tests.postgres import remove, server_or_skip

    server = server_or_skip()
    yield server
    remove(server)


@pytest.fixture
def postgres_url(postgres_server) -> str:
    """A new empty database on the throwaway server: its ``postgresql://`` URL."""
    return postgres_server.create_database()
