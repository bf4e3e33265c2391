"""Error text shown to an auditor or written to the log names URIs without credentials."""

from __future__ import annotations

import pytest

from serving.audit.safe_text import scrub_uris


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        (
            "cannot load models:/parcel-risk/3 from http://alice:S3cret@mlflow:5000/api (503)",
            "cannot load models:/parcel-risk/3 from http://mlflow:5000/api (503)",
        ),
        (
            "connection to 'postgresql://risk:pw@db:5432/audit?sslpassword=x' failed",
            "connection to 'postgresql://db:5432/audit' failed",
        ),
        ("two: s3://k:v@bucket/a and https://u:p@h/b", "two: s3://bucket/a and https://h/b"),
        ("no URI here: models:/x/1, C:\\path", "no URI here: models:/x/1, C:\\path"),
    ],
)
def test_credentials_in_error_text_are_dropped(text: str, shown: str) -> None:
    assert scrub_uris(text) == shown


def test_audit_show_prints_a_loading_error_without_the_password(
    tmp_path, capsys, monkeypatch
) -> None:
    from features.errors import ParcelriskError
    from serving.audit import models
    from serving.store import open_store
    from tests.test_serving.conftest import run_cli, stored_decision

    db = tmp_path / "audit.db"
    store = open_store(str(db))
    store.record([stored_decision({"declaration_id": "D1"}, decision_id="dec-1")])
    store.close()

    def unreachable(self, name, version, *recorded):
        raise ParcelriskError(f"{name} v{version}: http://alice:S3cret@mlflow:5000/ refused")

    monkeypatch.setattr(models.RecordedModels, "get", unreachable)
    code, out, err = run_cli(
        capsys, "audit", "show", "dec-1", "--db", str(db), "--tracking-uri",
        "http://alice:S3cret@mlflow:5000",
    )  # fmt: skip
    assert code == 0, err
    assert "http://mlflow:5000/ refused" in out and "S3cret" not in out + err
