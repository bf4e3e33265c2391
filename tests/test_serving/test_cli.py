"""Operational edges: config loading, refusing to start without keys, request merging."""

import asyncio

import pytest

from features.errors import ParcelriskError
from serving.auth import AuthConfigError
from serving.scoring import load_serve_config
from serving.service import MicroBatcher


def test_serve_refuses_to_start_without_keys(monkeypatch) -> None:
    from typer.testing import CliRunner

    from serving.main import app

    for var in ("PARCELRISK_API_KEYS", "PARCELRISK_API_KEYS_FILE", "PARCELRISK_INSECURE_NO_AUTH"):
        monkeypatch.delenv(var, raising=False)
    result = CliRunner().invoke(app, ["serve", "--port", "3999"])
    assert isinstance(result.exception, AuthConfigError)
    assert "no API keys configured" in str(result.exception)


def test_serve_config_from_params(tmp_path) -> None:
    path = tmp_path / "params.yaml"
    path.write_text(
        "promote:\n  model_name: other\nserve:\n  exploration_rate: 0.2\n  max_batch: 10\n"
    )
    config = load_serve_config(path)
    assert config.lanes.exploration_rate == 0.2 and config.max_batch == 10
    assert config.model_name == "other"
    assert load_serve_config(tmp_path / "absent.yaml").max_batch == 1000


@pytest.mark.parametrize(
    ("section", "access_log", "tracing"),
    [("", "0", "0"), ("serve:\n  access_log: true\n  tracing: true\n", "1", "1")],
)
def test_serve_passes_logging_and_tracing_to_the_workers(
    monkeypatch, tmp_path, section: str, access_log: str, tracing: str
) -> None:
    """Per-request access logs and spans are off unless params turn them on."""
    import _bentoml_impl.server
    from typer.testing import CliRunner

    from serving.main import app

    params = tmp_path / "params.yaml"
    params.write_text(section)
    seen: dict[str, str | None] = {}

    def fake_serve_http(*args, **kwargs) -> None:
        import os

        seen.update({k: os.environ.get(k) for k in ("PARCELRISK_ACCESS_LOG", "PARCELRISK_TRACING")})

    monkeypatch.setattr(_bentoml_impl.server, "serve_http", fake_serve_http)
    for var in ("PARCELRISK_ACCESS_LOG", "PARCELRISK_TRACING", "PARCELRISK_WORKERS"):
        monkeypatch.setenv(var, "unset")  # restored after the test; serve overwrites them
    monkeypatch.setenv("PARCELRISK_API_KEYS", "scorer:a-long-enough-test-key")
    for var in ("PARCELRISK_PARAMS", "PARCELRISK_MODEL_DIR"):
        monkeypatch.setenv(var, "unset")
    result = CliRunner().invoke(app, ["serve", "--params", str(params), "--port", "3999"])
    assert result.exit_code == 0, result.output
    assert seen == {"PARCELRISK_ACCESS_LOG": access_log, "PARCELRISK_TRACING": tracing}


@pytest.mark.parametrize("section", ["serve:\n  nope: 1\n", "serve:\n  exploration_rate: 2\n"])
def test_bad_serve_params_are_refused(tmp_path, section: str) -> None:
    path = tmp_path / "params.yaml"
    path.write_text(section)
    with pytest.raises(ParcelriskError, match="params 'serve'"):
        load_serve_config(path)


def test_micro_batcher_merges_and_isolates_failures() -> None:
    calls: list[list[int]] = []

    def fn(items: list[int]) -> list[int]:
        calls.append(items)
        if -1 in items:
            raise ValueError("bad item")
        return [i * 10 for i in items]

    async def run() -> list:
        batcher = MicroBatcher(fn, max_rows=100)
        tasks = [asyncio.ensure_future(batcher.submit(x)) for x in ([1], [2, 3], [-1], [4])]
        return await asyncio.gather(*tasks, return_exceptions=True)

    results = asyncio.run(run())
    assert results[0] == [10] and results[1] == [20, 30] and results[3] == [40]
    assert isinstance(results[2], ValueError)
    assert any(len(c) > 1 for c in calls)  # concurrent submissions were merged
