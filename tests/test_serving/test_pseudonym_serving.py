"""No raw consignee id anywhere: generate -> features -> train -> score (file and API) -> store.

The real pipeline (``real_pipeline``: seed 5, 20k parcels) is generated again here with the
pseudonymisation switched off: that is the administration's raw data, row for row. Its
consignee ids are then sent in as they are (a file to ``parcelrisk score``, JSON to /score and
/explain) and looked for in every byte the product wrote and every log line it said.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import features.intake.contract as contract_module
from features.intake.contract import Declaration
from features.intake.pseudonym import (
    PseudonymKeyMismatch,
    forget_process_key,
    process_key,
    pseudonymise,
)
from features.params import load_settings
from features.synthetic.history import generate
from features.synthetic.params import SyntheticParams
from serving.scoring import load_runtime, score_frame
from tests.test_serving.conftest import auth, fresh_declarations, service_client
from tests.test_serving.test_pipeline import _env, _payload

RAW_ID = re.compile(rb"C\d{7}")  # the generator's consignee ids (features.synthetic.world)
HISTORY_FEATURE = "consignee_days_since_first"  # NaN for a consignee never seen before


@pytest.fixture(scope="module")
def raw_history(real_pipeline) -> pd.DataFrame:
    """The real pipeline's declarations as generated, before any pseudonymisation."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(contract_module, "pseudonymise", lambda values, key: values)
        declarations, _ = generate(
            SyntheticParams(seed=5, parcels=20_000, days=60, start="2026-01-01")
        )
    return declarations.drop(columns=[c for c in declarations if c not in real_pipeline["history"]])


def _raw_ids_in(data: bytes, raw: set[str]) -> set[str]:
    return {m.decode() for m in RAW_ID.findall(data)} & raw


def _text_values(path: Path) -> set[str]:
    """Every text value of a Parquet file (compressed pages hide them from a byte search)."""
    frame = pd.read_parquet(path)
    out: set[str] = set()
    for name in frame.columns:
        if frame[name].dtype == object or pd.api.types.is_string_dtype(frame[name].dtype):
            out.update(str(v) for v in frame[name].dropna().unique())
    return out


def test_the_history_holds_the_keyed_pseudonym_of_each_raw_id(raw_history, real_pipeline):
    history = real_pipeline["history"]
    assert raw_history["declaration_id"].tolist() == history["declaration_id"].tolist()
    expected = pseudonymise(raw_history["consignee_id"], process_key())
    assert history["consignee_id"].equals(expected)
    assert raw_history["consignee_id"].str.fullmatch(r"C\d{7}").all()


def test_no_raw_consignee_id_in_store_snapshot_features_or_logs(
    raw_history, real_pipeline, tmp_path, caplog
):
    from typer.testing import CliRunner

    from serving.main import app

    caplog.set_level(logging.DEBUG)
    raw = set(raw_history["consignee_id"].dropna())
    fresh = fresh_declarations(raw_history, 60, prefix="PSN")  # repeat customers, raw ids
    assert fresh["consignee_id"].notna().all() and set(fresh["consignee_id"]) <= raw
    audit_db = tmp_path / "store" / "audit.db"
    audit_db.parent.mkdir()
    runner = CliRunner()

    # a file of raw ids, scored offline into the store
    source = tmp_path / "in.csv"
    fresh.head(30).to_csv(source, index=False)
    scored = runner.invoke(
        app,
        ["score", str(source), "--out", str(tmp_path / "out.csv"), "--params",
         str(real_pipeline["params"]), "--tracking-uri", real_pipeline["tracking_uri"],
         "--audit-db", str(audit_db)],
    )  # fmt: skip
    assert scored.exit_code == 0, scored.output
    # raw ids as JSON to /score and /explain; results back for them by /outcomes
    answers = []
    with service_client(_env(real_pipeline, tmp_path, PARCELRISK_AUDIT_DB=str(audit_db))) as client:
        payload = _payload(fresh.tail(30))
        r = client.post("/score", json={"declarations": payload}, headers=auth())
        assert r.status_code == 200, r.text
        answers.append(r.text)
        r = client.post("/explain", json={"declaration": payload[0]}, headers=auth("auditor"))
        assert r.status_code == 200, r.text
        answers.append(r.text)
        results = [
            {"declaration_id": d["declaration_id"], "inspected_at": "2026-03-20T08:00:00Z",
             "illicit": i == 0, "offence_type": "undervaluation" if i == 0 else None,
             "revenue_recovered": 12.0 if i == 0 else 0.0}
            for i, d in enumerate(payload[:5])
        ]  # fmt: skip
        r = client.post("/outcomes", json={"outcomes": results}, headers=auth("inspector"))
        assert r.status_code == 200, r.text
        decision = r.json()
        r = client.get(
            "/decision",
            params={"decision_id": json.loads(answers[0])["decisions"][0]["decision_id"]},
            headers=auth("auditor"),
        )
        assert r.status_code == 200, r.text
        answers.append(r.text)
    assert decision["stored"] == 5
    exported = tmp_path / "history.parquet"
    done = runner.invoke(app, ["history", "export", "--db", str(audit_db), "--out", str(exported)])
    assert done.exit_code == 0, done.output

    # every byte the store holds (decisions, results, its log), the snapshot, the features,
    # the generated files, the outputs: no raw id, in bytes or as a Parquet text value
    processed = real_pipeline["root"] / "processed"
    files = [p for p in audit_db.parent.iterdir() if p.is_file()]
    files += [p for p in (processed / "entity_state").iterdir() if p.is_file()]
    files += [p for p in processed.iterdir() if p.is_file()]
    files += [p for p in (real_pipeline["root"] / "raw").iterdir() if p.is_file()]
    files += [tmp_path / "out.csv", exported]
    assert audit_db in files and len(files) > 10
    for path in files:
        assert not _raw_ids_in(path.read_bytes(), raw), path
        if path.suffix == ".parquet":
            assert not _text_values(path) & raw, path
    stored = pd.read_parquet(exported)
    assert len(stored) == 60 and stored["consignee_id"].str.startswith("psn_").all()
    assert not _raw_ids_in("\n".join(answers).encode(), raw)
    assert not _raw_ids_in(caplog.text.encode(), raw)
    assert not _raw_ids_in(scored.output.encode() + done.output.encode(), raw)


def test_requests_with_raw_ids_find_the_history_of_their_consignee(
    raw_history, real_pipeline, tmp_path
):
    runtime = load_runtime(
        load_settings(real_pipeline["params"]), real_pipeline["tracking_uri"], tmp_path / "m"
    )
    fresh = fresh_declarations(raw_history, 40, prefix="HIST")
    records = [Declaration.model_validate(row) for row in _payload(fresh)]  # the API path
    from_raw = score_frame(_columns(records, runtime), runtime).features.values[HISTORY_FEATURE]
    # the same parcels as the history holds them (pseudonyms already): the same features
    known = fresh_declarations(real_pipeline["history"], 40, prefix="HIST")
    from_psn = score_frame(known, runtime).features.values[HISTORY_FEATURE]
    assert np.isfinite(from_raw).mean() > 0.9  # repeat customers: their history is found
    np.testing.assert_array_equal(from_raw, from_psn)


def _columns(records, runtime):
    from features.intake.columns import RecordColumns

    return RecordColumns(records, runtime.contract)


def test_a_champion_built_under_another_key_is_refused(real_pipeline, tmp_path) -> None:
    settings = load_settings(real_pipeline["params"])
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("PARCELRISK_PSEUDONYM_KEY", "a-different-pseudonym-key-" + "3" * 32)
            forget_process_key()
            with pytest.raises(PseudonymKeyMismatch) as refused:
                load_runtime(settings, real_pipeline["tracking_uri"], tmp_path / "m")
    finally:
        forget_process_key()
    message = str(refused.value)
    assert "built with pseudonym key id" in message and "this process has" in message
    assert "every consignee would lose its history" in message and "\n" not in message


def test_an_entity_state_without_a_key_id_is_refused(real_pipeline, tmp_path, monkeypatch) -> None:
    """A snapshot from before consignee ids were keyed holds raw ids no request will match:
    refused by name (``parcelrisk promote`` replaces such a champion)."""
    from features.pipeline.snapshot import META_FILE, EntityState

    load = EntityState.load.__func__

    def without_key_id(cls, directory):
        old = tmp_path / "old_state"
        if not old.exists():
            shutil.copytree(directory, old)
            meta = json.loads((old / META_FILE).read_text())
            del meta["pseudonym_key_id"]
            (old / META_FILE).write_text(json.dumps(meta))
        return load(cls, old)

    monkeypatch.setattr(EntityState, "load", classmethod(without_key_id))
    with pytest.raises(PseudonymKeyMismatch, match="built before consignee ids were keyed"):
        load_runtime(
            load_settings(real_pipeline["params"]), real_pipeline["tracking_uri"], tmp_path / "m"
        )
