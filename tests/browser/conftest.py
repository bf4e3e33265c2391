"""The browser tests run a real service on the session's trained pipeline (tests/test_serving)."""

from tests.test_serving.conftest import real_pipeline  # noqa: F401 (a fixture, used by name)
