"""The service on a real champion: generated data -> features -> train -> promote -> serve."""

import json

import pandas as pd
import pytest

from features.errors import ParcelriskError
from features.params import load_settings
from serving.scoring import load_runtime, score_file
from serving.store import open_store
from tests.test_serving.conftest import auth, fresh_declarations, service_client


def _env(pipeline, tmp_path, **extra) -> dict[str, str]:
    return {
        "PARCELRISK_TRACKING_URI": pipeline["tracking_uri"],
        "PARCELRISK_PARAMS": str(pipeline["params"]),
        "PARCELRISK_AUDIT_DB": str(tmp_path / "audit.db"),
        "PARCELRISK_MODEL_DIR": str(tmp_path / "model"),
        **extra,
    }


def _payload(frame: pd.DataFrame) -> list[dict]:
    return json.loads(frame.to_json(orient="records", date_format="iso"))


@pytest.fixture(scope="module")
def real_service_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("real-service")


@pytest.fixture(scope="module")
def real_client(real_pipeline, real_service_dir):
    with service_client(_env(real_pipeline, real_service_dir)) as client:
        yield client


def test_real_champion_scores_and_lanes_fill(real_client, real_pipeline) -> None:
    assert real_client.get("/readyz").status_code == 200
    fresh = fresh_declarations(real_pipeline["history"], 1000)
    r = real_client.post("/score", json={"declarations": _payload(fresh)}, headers=auth())
    assert r.status_code == 200, r.text
    decisions = r.json()["decisions"]
    assert {d["model"]["version"] for d in decisions} == {real_pipeline["version"]}
    lanes = pd.Series([d["lane"] for d in decisions])
    assert 0 < (lanes != "green").mean() < 0.3
    flagged = [d for d in decisions if d["lane"] != "green"]
    assert all(1 <= len(d["reasons"]) <= 5 for d in flagged)
    assert all(d["reasons"] == [] for d in decisions if d["lane"] == "green")
    # reasons read like sentences, not feature names
    assert all(" " in reason["text"] for d in flagged for reason in d["reasons"])


def test_explain_consistent_with_real_score(real_client, real_pipeline) -> None:
    fresh = fresh_declarations(real_pipeline["history"], 50, prefix="EXP")
    decisions = real_client.post(
        "/score", json={"declarations": _payload(fresh)}, headers=auth()
    ).json()["decisions"]
    for d in decisions[:5]:
        e = real_client.post(
            "/explain", json={"decision_id": d["decision_id"]}, headers=auth()
        ).json()
        total = e["base_value"] + sum(c["contribution"] for c in e["contributions"])
        assert total == pytest.approx(e["raw_score"], abs=1e-6)
        assert e["raw_score"] == pytest.approx(e["stored_raw_score"], abs=1e-12)
        assert e["risk"] == pytest.approx(d["risk"], abs=1e-12)


def test_a_description_hiding_its_words_is_read_as_it_prints_and_says_so(
    real_client, real_pipeline
) -> None:
    """Probe 20: soft hyphens, zero-width spaces or one Cyrillic letter took a steroid
    description from red to green. The features read the words it prints (the same risk as
    the plain words: the parcels differ in nothing else and share an instant, so neither sees
    the other), the decision carries `description.obscured`, the store keeps what was sent."""
    base = _payload(fresh_declarations(real_pipeline["history"], 1, prefix="HIDDEN"))[0]
    texts = {
        "plain": "anabolic steroid tablets",
        "soft hyphens": "ana\u00adbolic ste\u00adroid tab\u00adlets",
        "zero-width": "anabolic ster\u200boid tablets",
        "look-alike": "an\u0430bolic steroid t\u0430blets",  # Cyrillic а twice
        # a word changed in print: the words do move the risk, so equal risks above mean
        # the hidden ones were read
        "another word": "anabolic sterxoid tablets",
    }
    sent = [
        {**base, "declaration_id": f"HIDDEN-{i}", "seller_id": f"HIDDEN-S{i}",
         "consignee_id": f"HIDDEN-C{i}", "description": text}
        for i, text in enumerate(texts.values())
    ]  # fmt: skip
    r = real_client.post("/score", json={"declarations": sent}, headers=auth())
    assert r.status_code == 200, r.text
    plain, *hidden, other = r.json()["decisions"]
    assert other["risk"] != plain["risk"]
    assert "description.obscured" not in plain["warning_codes"]
    for decision in hidden:
        assert decision["risk"] == plain["risk"], decision["warnings"]
        code = decision["warning_codes"].index("description.obscured")
        assert "read as 'anabolic steroid tablets'" in decision["warnings"][code]
    stored = real_client.get(
        "/decision", params={"decision_id": hidden[0]["decision_id"]}, headers=auth("auditor")
    ).json()
    assert stored["declaration"]["description"] == texts["soft hyphens"]


def test_ids_spelt_in_look_alike_letters_keep_one_history(real_client, real_pipeline) -> None:
    """Probe 20: each parcel of a split order spelt its seller and consignee differently and
    stayed green, a new entity each time. Ids wholly in Cyrillic look-alikes ("АВС") mix no
    script, so they are not refused: they are keyed as the ids they print. A parcel spelt so
    scores as the one spelt in Latin (both after the first, at one instant: neither sees the
    other); a seller truly new scores otherwise."""
    base = _payload(fresh_declarations(real_pipeline["history"], 1, prefix="LOOK"))[0]
    first = {**base, "declaration_id": "LOOK-1", "seller_id": "ABC-123", "consignee_id": "EKO-77"}
    later = (pd.Timestamp(base["declared_at"]) + pd.Timedelta(hours=1)).isoformat()
    latin = {**first, "declaration_id": "LOOK-2", "declared_at": later}
    cyrillic = {**latin, "declaration_id": "LOOK-3", "seller_id": "\u0410\u0412\u0421\u2013123",
                "consignee_id": "\u0415\u041a\u041e-77"}  # fmt: skip
    other = {**latin, "declaration_id": "LOOK-4", "seller_id": "XYZ-987", "consignee_id": "Q-1"}
    assert (
        real_client.post("/score", json={"declarations": [first]}, headers=auth()).status_code
        == 200
    )
    r = real_client.post("/score", json={"declarations": [latin, cyrillic, other]}, headers=auth())
    assert r.status_code == 200, r.text
    same, spelt, new = r.json()["decisions"]
    assert spelt["risk"] == same["risk"] and new["risk"] != same["risk"]


def test_batch_file_scoring_equals_http(
    real_client, real_pipeline, real_service_dir, tmp_path
) -> None:
    fresh = fresh_declarations(real_pipeline["history"], 300, prefix="FILE")
    source = tmp_path / "in.csv"
    fresh.to_csv(source, index=False)
    http = real_client.post("/score", json={"declarations": _payload(fresh)}, headers=auth())
    http_rows = pd.DataFrame(http.json()["decisions"])
    settings = load_settings(real_pipeline["params"])
    runtime = load_runtime(settings, real_pipeline["tracking_uri"], tmp_path / "m")
    # the service's earlier decisions are in its live entity state: read them from its log
    service_log = open_store(real_service_dir / "audit.db")
    runtime.catch_up(service_log)
    service_log.close()
    summary = score_file(source, tmp_path / "out.parquet", runtime, chunk_size=7, progress=False)
    batch = pd.read_parquet(tmp_path / "out.parquet")
    assert summary["declarations"] == 300
    assert batch["declaration_id"].tolist() == http_rows["declaration_id"].tolist()
    assert batch["risk"].to_numpy() == pytest.approx(http_rows["risk"].to_numpy(), abs=1e-12)
    assert batch["lane"].tolist() == http_rows["lane"].tolist()
    assert batch["exploration"].tolist() == http_rows["exploration"].tolist()
    assert [json.loads(r) for r in batch["reasons"]] == http_rows["reasons"].tolist()


def test_a_file_lacking_evidence_the_model_relied_on_is_said(
    real_pipeline, tmp_path, caplog
) -> None:
    """A feed without the seller (or a mapping reading a column only the history fills) is
    scored on priors for every parcel: said in the summary and the log, naming the field."""
    settings = load_settings(real_pipeline["params"])
    runtime = load_runtime(settings, real_pipeline["tracking_uri"], tmp_path / "m")
    assert runtime.model.metadata["input_fill"]["seller_id"] > 0.5
    fresh = fresh_declarations(real_pipeline["history"], 40, prefix="NOSELLER")
    fresh.to_parquet(tmp_path / "full.parquet")
    summary = score_file(tmp_path / "full.parquet", tmp_path / "a.parquet", runtime, progress=False)
    assert "missing_on_every_declaration" not in summary
    fresh.assign(seller_id=None).to_parquet(tmp_path / "blank.parquet")
    with caplog.at_level("WARNING", logger="serving.scoring"):
        summary = score_file(
            tmp_path / "blank.parquet", tmp_path / "b.parquet", runtime, progress=False
        )
    assert "seller_id" in summary["missing_on_every_declaration"]
    assert "seller_id" in caplog.text and "on every one of the 40 declarations" in caplog.text
    # a few parcels without a seller are not remarkable
    small = fresh.head(5).assign(
        seller_id=None, declaration_id=lambda f: f["declaration_id"].astype(str) + "-5"
    )
    small.to_parquet(tmp_path / "small.parquet")
    summary = score_file(
        tmp_path / "small.parquet", tmp_path / "c.parquet", runtime, progress=False
    )
    assert "missing_on_every_declaration" not in summary


def test_readiness_fails_without_a_champion(tmp_path) -> None:
    env = {
        "PARCELRISK_TRACKING_URI": f"sqlite:///{tmp_path / 'empty.db'}",
        "PARCELRISK_AUDIT_DB": str(tmp_path / "audit.db"),
    }
    with service_client(env) as client:
        assert client.get("/livez").status_code == 200
        r = client.get("/readyz")
        assert r.status_code == 503 and "champion" in r.json()["reason"]
        r = client.post("/score", json={"declarations": []}, headers=auth())
        assert r.status_code == 503 and "no model 'parcel-risk'@champion" in r.json()["error"]


def test_inconsistent_entity_state_is_refused(real_pipeline, tmp_path, monkeypatch) -> None:
    import models.registry

    real = models.registry.load_champion

    def tampered(*args, **kwargs):
        model, state_dir, info = real(*args, **kwargs)
        model.metadata["entity_state_fingerprint"] = "not-the-snapshot"
        return model, state_dir, info

    monkeypatch.setattr(models.registry, "load_champion", tampered)
    with pytest.raises(ParcelriskError, match="does not match the model"):
        load_runtime(
            load_settings(real_pipeline["params"]), real_pipeline["tracking_uri"], tmp_path
        )


def test_a_corrupt_snapshot_is_named_as_the_registry_holds_it(
    real_pipeline, tmp_path, monkeypatch
) -> None:
    """Probe 21: readiness said "entity state in /tmp/parcelrisk-model-.../load-1/entity_state
    is corrupt", this worker's copy, gone at the next load: the version, the run's artifact
    and what to do."""
    import models.registry

    real = models.registry.load_champion

    def corrupted(*args, **kwargs):
        model, state_dir, info = real(*args, **kwargs)
        victim = next(p for p in sorted(state_dir.rglob("*")) if p.suffix == ".npz")
        victim.write_bytes(victim.read_bytes() + b"edited")
        return model, state_dir, info

    monkeypatch.setattr(models.registry, "load_champion", corrupted)
    with pytest.raises(ParcelriskError) as refused:
        load_runtime(
            load_settings(real_pipeline["params"]), real_pipeline["tracking_uri"], tmp_path
        )
    said = str(refused.value)
    assert "model 'parcel-risk' version 1: entity state in artifact entity_state/ of run " in said
    assert "is corrupt" in said and "promote another version, or retrain" in said
    assert str(tmp_path) not in said


def test_an_unreadable_snapshot_meta_names_the_version_not_the_copy(
    real_pipeline, tmp_path, monkeypatch
) -> None:
    """Probe 21: a truncated meta.json was named as the worker's temporary copy."""
    import models.registry

    def no_fingerprint(directory):
        raise ParcelriskError(f"entity state {directory}/meta.json has no fingerprint: truncated")

    monkeypatch.setattr(models.registry, "entity_state_fingerprint", no_fingerprint)
    with pytest.raises(ParcelriskError) as refused:
        models.registry.load_champion(real_pipeline["tracking_uri"], dst=tmp_path / "m")
    said = str(refused.value)
    assert said.startswith("model 'parcel-risk' version 1: entity state artifact entity_state/")
    assert "has no fingerprint" in said and str(tmp_path) not in said


def test_a_damaged_tracking_store_is_one_line_naming_it(real_pipeline, tmp_path) -> None:
    """Probe 21: a tracking database with damaged pages gave SQLAlchemy's text (its SQL, a web
    link) as the readiness reason, with tracebacks in the log."""
    import shutil

    from models.registry import load_champion

    copy = tmp_path / "mlflow.db"
    shutil.copy(real_pipeline["tracking_uri"].removeprefix("sqlite:///"), copy)
    data = bytearray(copy.read_bytes())
    for offset in range(4096, len(data) - 256, 8192):  # every other page after the header's
        data[offset : offset + 256] = b"\xde\xad\xbe\xef" * 64
    copy.write_bytes(bytes(data))
    with pytest.raises(ParcelriskError) as refused:
        load_champion(f"sqlite:///{copy}", dst=tmp_path / "m")
    said = str(refused.value)
    assert said.startswith(f"the MLflow tracking store sqlite:///{copy} cannot be read: ")
    assert "[SQL:" not in said and "sqlalche.me" not in said and "\n" not in said


def test_score_cli_writes_the_file(real_pipeline, tmp_path) -> None:
    from typer.testing import CliRunner

    from serving.main import app

    fresh = fresh_declarations(real_pipeline["history"], 20, prefix="CLI")
    source = tmp_path / "in.parquet"
    fresh.to_parquet(source)
    audit_db = tmp_path / "audit.db"

    def score(out: str) -> pd.DataFrame:
        result = CliRunner().invoke(
            app,
            [
                "score", str(source), "--out", str(tmp_path / out),
                "--params", str(real_pipeline["params"]),
                "--tracking-uri", real_pipeline["tracking_uri"],
                "--audit-db", str(audit_db),
            ],
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        return pd.read_csv(tmp_path / out)

    first = score("out.csv")
    assert len(first) == 20
    wal = audit_db.with_name(audit_db.name + "-wal")  # the store was closed: log truncated
    assert not wal.exists() or wal.stat().st_size == 0
    assert open_store(audit_db).count() == 20
    # who asked: this run of `score` and the account that ran it, as a request and its key
    # (probe 12: offline decisions recorded nobody)
    stored = open_store(audit_db).find(limit=100)
    assert {r.api_key_id for r in stored} == {f"offline:{__import__('getpass').getuser()}"}
    assert len({r.request_id for r in stored}) == 1
    assert stored[0].request_id.startswith("score-") and stored[0].request_id.endswith(
        ":in.parquet"
    )
    # scored again (a re-run after a failure half-way): the stored decisions, none added
    again = score("again.csv")
    assert open_store(audit_db).count() == 20
    columns = ["declaration_id", "decision_id", "risk", "lane"]
    assert again[columns].equals(first[columns])
    assert again["priority"].isna().all()  # not stored: unknown for a decision taken back


def test_service_import_stays_light() -> None:
    import subprocess
    import sys

    code = "import sys, serving.service; print(sorted(m for m in ('shap', 'great_expectations') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_score_refuses_a_file_the_api_would_refuse_unless_told(real_pipeline, tmp_path) -> None:
    from typer.testing import CliRunner

    from features.intake.validation import GateError
    from serving.main import app
    from serving.scoring import UNVALIDATED_WARNING

    fresh = fresh_declarations(real_pipeline["history"], 20, prefix="GATE")
    fresh.loc[3, "hs_code"] = "12AB"
    source, out = tmp_path / "in.csv", tmp_path / "out.csv"
    fresh.to_csv(source, index=False)
    common = [
        "--params",
        str(real_pipeline["params"]),
        "--tracking-uri",
        real_pipeline["tracking_uri"],
    ]
    refused = CliRunner().invoke(app, ["score", str(source), "--out", str(out), *common])
    assert isinstance(refused.exception, GateError)
    assert "hs_code: '12AB' is not an HS code of 6 to 10 digits" in str(refused.exception)
    assert not out.exists()  # nothing half-written

    forced = CliRunner().invoke(
        app, ["score", str(source), "--out", str(out), "--no-validate", *common]
    )
    assert forced.exit_code == 0, forced.output
    scored = pd.read_csv(out)
    assert len(scored) == 20
    assert all(UNVALIDATED_WARNING in json.loads(w) for w in scored["warnings"])


def test_score_with_a_quarantine_sets_bad_declarations_aside_and_scores_the_others(
    real_pipeline, tmp_path
) -> None:
    from typer.testing import CliRunner

    from serving.main import app

    fresh = fresh_declarations(real_pipeline["history"], 30, prefix="QUA")
    fresh.loc[3, "hs_code"] = "12AB"
    fresh.loc[7, "declared_value"] = -4.0
    fresh.loc[11, "declaration_id"] = fresh.loc[12, "declaration_id"]  # the same id twice
    source, out, rejected = tmp_path / "in.csv", tmp_path / "out.csv", tmp_path / "rej.csv"
    fresh.to_csv(source, index=False)
    common = ["--params", str(real_pipeline["params"]), "--tracking-uri"]
    common.append(real_pipeline["tracking_uri"])
    quarantine = ["--quarantine", str(rejected), "--max-rejected", "0.2"]
    result = CliRunner().invoke(
        app, ["score", str(source), "--out", str(out), *quarantine, *common]
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout[result.stdout.index("{") :])
    assert summary["declarations"] == 26
    assert summary["set_aside"]["rows_rejected"] == 4
    scored = pd.read_csv(out)
    aside = pd.read_csv(rejected, dtype=str)
    assert set(scored["declaration_id"]) | set(aside["declaration_id"]) == set(
        fresh["declaration_id"]
    )
    assert aside["parcelrisk_source_row"].tolist() == ["4", "8", "12", "13"]
    reasons = aside["parcelrisk_reasons"].tolist()
    assert "'12AB' is not an HS code" in reasons[0] and "negative" in reasons[1]
    assert (
        reasons[2:] == [f"declaration_id: '{fresh.loc[12, 'declaration_id']}' appears 2 times"] * 2
    )
    assert summary["set_aside"]["rejected_reasons"] == {
        "declaration_id.unique (unique declaration ids)": 2,
        "hs_code.format (an HS code of 6 to 10 digits)": 1,
        "declared_value.minimum (at least 0)": 1,
    }

    # a quarantine that would overwrite an input is refused before anything is read
    clash = CliRunner().invoke(
        app, ["score", str(source), "--out", str(out), "--quarantine", str(source), *common]
    )
    assert clash.exit_code != 0 and "is the declarations file" in str(clash.exception)
    # most rows bad: the export is wrong, not a few declarations; nothing is scored
    fresh["hs_code"] = "12AB"
    fresh.to_csv(source, index=False)
    out.unlink()
    refused = CliRunner().invoke(
        app, ["score", str(source), "--out", str(out), *quarantine, *common]
    )
    assert "30 of 30 rows (100.00%) break the gate's fault rules" in str(refused.exception)
    assert not out.exists()


def test_an_absurd_weight_or_value_scores_without_overflow(real_pipeline, tmp_path) -> None:
    """1e308 kg overflowed the valuation ratios to inf, with a RuntimeWarning in the log."""
    import warnings

    import numpy as np

    from serving.scoring import score_frame

    runtime = load_runtime(
        load_settings(real_pipeline["params"]), real_pipeline["tracking_uri"], tmp_path / "m"
    )
    fresh = fresh_declarations(real_pipeline["history"], 3, prefix="ABS")
    fresh.loc[0, "gross_weight_kg"] = 1e308
    fresh.loc[1, "declared_value"] = 1e308
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        batch = score_frame(fresh, runtime)
    assert np.isfinite(batch.scores["risk"]).all() and np.isfinite(batch.scores["priority"]).all()


def test_a_feature_always_given_in_training_and_never_in_a_file_is_named() -> None:
    """A numeric extra the history filled (a delay written after the control) that arrivals
    leave empty: every parcel scored as if it had no value, AUC 0.50 in the probe."""
    from types import SimpleNamespace

    from models.reference import ValueReference
    from serving.scoring import evidence_missing_throughout

    def ref(name: str, missing: float) -> ValueReference:
        return ValueReference(name, "numeric", 100, missing, (), (), ())

    model = SimpleNamespace(
        metadata={"input_fill": {"seller_id": 0.9, "platform_id": 0.1}},
        reference=SimpleNamespace(
            features=(ref("extra_delay_h", 0.0), ref("extra_rare", 0.8), ref("weight", 0.0))
        ),
    )
    runtime = SimpleNamespace(model=model)
    frame = pd.DataFrame({"seller_id": ["S1"] * 25, "platform_id": [None] * 25})
    filled = {"extra_delay_h": 0, "extra_rare": 0, "weight": 25}
    assert evidence_missing_throughout(frame, filled, runtime) == ["extra_delay_h"]
    assert evidence_missing_throughout(frame.assign(seller_id=None), filled, runtime) == [
        "seller_id",
        "extra_delay_h",
    ]
    assert evidence_missing_throughout(frame.head(19), filled, runtime) == []


def test_score_checks_its_output_folder_before_scoring(
    real_pipeline, tmp_path, monkeypatch
) -> None:
    """A folder that could not take the file (a read-only mount) failed only after every
    decision was computed and recorded (probe)."""
    import os

    from typer.testing import CliRunner

    from serving.main import app

    fresh = fresh_declarations(real_pipeline["history"], 5, prefix="OUTDIR")
    source = tmp_path / "in.parquet"
    fresh.to_parquet(source)
    (tmp_path / "ro").mkdir()
    audit_db = tmp_path / "audit.db"
    real_access = os.access
    monkeypatch.setattr(
        os,
        "access",
        lambda p, mode: False if str(p) == str(tmp_path / "ro") else real_access(p, mode),
    )
    result = CliRunner().invoke(
        app,
        [
            "score", str(source), "--out", str(tmp_path / "ro" / "out.csv"),
            "--params", str(real_pipeline["params"]),
            "--tracking-uri", real_pipeline["tracking_uri"], "--audit-db", str(audit_db),
        ],
    )  # fmt: skip
    assert result.exit_code != 0
    assert "ro cannot be written" in str(result.exception), result.exception
    assert not audit_db.exists() or open_store(audit_db).count() == 0


def test_promote_refuses_a_reason_without_force() -> None:
    """Given alone, --reason was dropped unsaid (probe)."""
    from typer.testing import CliRunner

    from serving.main import app

    result = CliRunner().invoke(app, ["promote", "--reason", "because"])
    assert result.exit_code == 2 and "--reason is recorded with --force" in result.output
