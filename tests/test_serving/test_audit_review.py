"""The auditor's review commands: list, show, recompute, export (``serving.audit.review_cli``)
over decisions scored through the real scoring path by two workers, with inspection results
stored between their batches."""

from __future__ import annotations

import json
import shutil
import sqlite3

import numpy as np
import pandas as pd
import pytest

from features.params import load_settings
from serving.decision import pack_feature_rows
from serving.outcome_store import SqliteOutcomeStore
from serving.outcomes import store_outcomes
from serving.scoring import decision_records, load_runtime, score_frame
from serving.sqlite_store import SqliteDecisionStore
from tests.test_serving.conftest import fresh_declarations, run_cli

HOSTILE = "<script>alert('x')</script> & co"


def _serve(runtime, store, results, frame: pd.DataFrame) -> list:
    """One batch the way the service scores it: catch up, score, record, hand it back."""
    runtime.catch_up(store, results)
    batch = score_frame(frame.reset_index(drop=True), runtime)
    records = decision_records(batch, runtime)
    store.record(records)
    runtime.recorded(batch, records)
    return records


@pytest.fixture(scope="module")
def audited(real_pipeline, tmp_path_factory):
    """72 decisions in 6 batches from two workers over one store; results of earlier batches
    stored between them (same sellers and consignees, so the log and the results matter)."""
    tmp = tmp_path_factory.mktemp("audit-review")
    settings = load_settings(real_pipeline["params"])
    workers = [load_runtime(settings, real_pipeline["tracking_uri"], tmp / f"m{i}") for i in (1, 2)]
    db = tmp / "audit.db"
    store, results = SqliteDecisionStore(db), SqliteOutcomeStore(db)
    parcels = fresh_declarations(real_pipeline["history"], 72, prefix="AUD")
    parcels["seller_id"] = parcels["seller_id"].iloc[:4].tolist() * 18
    parcels["consignee_id"] = parcels["consignee_id"].iloc[:6].tolist() * 12
    t0 = pd.Timestamp("2026-03-10 08:00", tz="UTC")
    parcels["declared_at"] = t0 + pd.to_timedelta(np.arange(72) * 10, unit="min")
    parcels.loc[3, "description"] = HOSTILE
    # numbers above their plausible bounds: raised to serve.implausible_lane (yellow)
    parcels.loc[7, "declared_value"] = 5e8
    parcels.loc[8, "gross_weight_kg"] = 9e6
    parcels.loc[9, "currency"] = "GEL"  # no exchange rate: raised too (probe 14)
    records = []
    try:
        for b in range(6):
            part = parcels.iloc[b * 12 : (b + 1) * 12]
            records += _serve(workers[b % 2], store, results, part)
            inspected = part.iloc[::3]
            store_outcomes(
                results,
                pd.DataFrame(
                    {
                        "declaration_id": inspected["declaration_id"],
                        "inspected_at": (inspected["declared_at"] + pd.Timedelta(minutes=30))
                        .dt.strftime("%Y-%m-%dT%H:%M:%SZ")
                        .tolist(),
                        "illicit": ["true", "false"] * 2,
                        "offence_type": ["undervaluation", ""] * 2,
                        "revenue_recovered": ["25", ""] * 2,
                    }
                ),
                source="test",
            )
            if b == 2:  # an offence of batch 1 overturned: the later batches knew the correction
                fixed = parcels.iloc[12]
                store_outcomes(
                    results,
                    pd.DataFrame(
                        {
                            "declaration_id": [fixed["declaration_id"]],
                            "inspected_at": [
                                (fixed["declared_at"] + pd.Timedelta(minutes=30)).isoformat()
                            ],
                            "illicit": ["false"],
                            "correction": ["appeal upheld"],
                        }
                    ),
                    source="test",
                )
    finally:
        results.close()
        store.close()
    return {
        "db": db,
        "records": records,
        "params": real_pipeline["params"],
        "tracking_uri": real_pipeline["tracking_uri"],
    }


def _opts(audited, db=None) -> list[str]:
    return [
        "--db",
        str(db or audited["db"]),
        "--params",
        str(audited["params"]),
    ]


def _recompute_opts(audited, db=None) -> list[str]:
    return [*_opts(audited, db), "--tracking-uri", audited["tracking_uri"], "--json"]


def test_the_decisions_know_what_the_state_held(audited) -> None:
    records = audited["records"]
    known = [(r.known_seq, r.known_results_seq) for r in records[::12]]
    assert known == [(0, 0), (12, 4), (24, 8), (36, 13), (48, 17), (60, 21)]


def test_list_filters_by_lane_declaration_and_period(audited, capsys) -> None:
    records = audited["records"]
    code, out, _ = run_cli(capsys, "audit", "list", "--from", "2000-01-01", "--to", "2100-01-01",
                        "--format", "json", "--limit", "1000", *_opts(audited))  # fmt: skip
    rows = json.loads(out)
    assert code == 0 and [r["seq"] for r in rows] == list(range(1, 73))
    lane = records[0].lane
    code, out, _ = run_cli(capsys, "audit", "list", "--from", "2000-01-01", "--to", "2100-01-01",
                        "--lane", lane, "--format", "csv", "--limit", "1000", *_opts(audited))  # fmt: skip
    listed = pd.read_csv(pd.io.common.StringIO(out))
    assert code == 0 and set(listed["lane"]) == {lane}
    assert len(listed) == sum(r.lane == lane for r in records)
    wanted = records[5].declaration_id
    code, out, _ = run_cli(capsys, "audit", "list", "--from", "2000-01-01", "--to", "2100-01-01",
                        "--declaration-id", wanted, *_opts(audited))  # fmt: skip
    assert code == 0 and wanted in out and records[6].declaration_id not in out
    # a period before everything: nothing; --to a bare date takes that whole day
    code, out, err = run_cli(capsys, "audit", "list", "--from", "2000-01-01", "--to", "2000-01-02",
                          *_opts(audited))  # fmt: skip
    assert code == 0 and out == "" and "no decisions" in err


def test_list_finds_a_persons_decisions_by_their_raw_id_or_pseudonym(audited, capsys) -> None:
    """The store holds pseudonyms only: "all decisions about person X" had to export and grep
    declaration_json (probe)."""
    records = audited["records"]
    person = records[0].declaration["consignee_id"]
    theirs = [r.declaration_id for r in records if r.declaration.get("consignee_id") == person]
    period = ["--from", "2000-01-01", "--to", "2100-01-01", "--format", "json"]
    code, out, err = run_cli(
        capsys, "audit", "list", *period, "--consignee", person, *_opts(audited)
    )
    assert code == 0, err
    assert [r["declaration_id"] for r in json.loads(out)] == theirs
    assert "pseudonym key id" not in err  # a pseudonym given is matched as it is
    code, out, err = run_cli(
        capsys, "audit", "list", *period, "--consignee", "nobody-at-all", *_opts(audited)
    )
    assert code == 0 and json.loads(out) == []
    # a raw id is keyed with this machine's key: which one is said, since decisions made under
    # another key name the person otherwise ("nothing about them" would be false; probe 12)
    from features.keys import key_id, load_key

    assert f"pseudonym key id {key_id(load_key('pseudonym'))}" in err
    # every decision of the period was keyed with this key: nothing is left unsearched
    assert {r.pseudonym_key_id for r in records} == {key_id(load_key("pseudonym"))}
    assert "another pseudonym key" not in err and "recorded before" not in err


def test_a_lookup_by_raw_id_names_the_decisions_keyed_with_another_key(
    audited, capsys, tmp_path
) -> None:
    """After a pseudonym-key rotation a raw id finds only the decisions keyed as it is keyed
    now: the lookup says how many of the period's were keyed otherwise, and with which key id
    (probe 30: 4 of a person's 12 decisions listed, exit 0, under a note every lookup printed).
    Each decision records its key id under its MAC."""
    import dataclasses

    from features.keys import key_id, load_key
    from serving.audit.verify import verify_store

    db = tmp_path / "audit.db"
    with sqlite3.connect(audited["db"]) as source, sqlite3.connect(db) as copy:
        source.backup(copy)
    from features.intake.pseudonym import pseudonym_of

    old_key = "0123456789abcdef"
    # the person as the old key named them (the raw id looked up below, keyed otherwise)
    old_pseudonym = pseudonym_of("nobody-at-all", b"a rotated key" * 3)
    first = audited["records"][0]
    before_rotation = [
        dataclasses.replace(
            first,
            decision_id=f"ROT-{i}",
            declaration_id=f"ROT-{i}",
            declaration_json=json.dumps(
                {**first.declaration, "declaration_id": f"ROT-{i}", "consignee_id": old_pseudonym}
            ),
            pseudonym_key_id=key,
        )
        for i, key in enumerate([old_key, old_key, ""])
    ]
    store = SqliteDecisionStore(db)
    try:
        store.record(before_rotation)
        assert verify_store(store).intact
    finally:
        store.close()
    period = ["--from", "2000-01-01", "--to", "2100-01-01", "--format", "json"]
    code, out, err = run_cli(
        capsys, "audit", "list", *period, "--consignee", "nobody-at-all", *_opts(audited, db)
    )
    assert code == 0 and json.loads(out) == []
    assert f"pseudonym key id {key_id(load_key('pseudonym'))}" in err
    assert (
        f"2 of the period's 75 decisions were keyed with another pseudonym key "
        f"(key id {old_key}: 2)" in err
    )
    assert "1 of the period's 75 decisions were recorded before decisions named" in err
    # a pseudonym given is matched as it is: no key read it
    code, out, err = run_cli(capsys, "audit", "list", *period, "--consignee", old_pseudonym,
                             *_opts(audited, db))  # fmt: skip
    assert code == 0 and len(json.loads(out)) == 3 and "another pseudonym key" not in err
    # the key id is under the decision's MAC
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE decisions SET pseudonym_key_id = 'fedcba9876543210' "
                     "WHERE decision_id = 'ROT-0'")  # fmt: skip
    store = SqliteDecisionStore(db)
    try:
        problem = verify_store(store).problem
    finally:
        store.close()
    assert problem is not None and problem.kind == "altered"


def test_list_selects_a_sellers_decisions_and_carries_what_an_inspector_selects_by(
    audited, capsys
) -> None:
    """ "All decisions of seller S" and "which thresholds were live at T" were one `show` per
    decision (probe 30): list selects by seller, and its rows (and export's) carry the
    declaration time, seller, consignee pseudonym and thresholds version."""
    records = audited["records"]
    seller = records[1].declaration["seller_id"]
    theirs = [r for r in records if r.declaration.get("seller_id") == seller]
    assert 0 < len(theirs) < len(records)
    period = ["--from", "2000-01-01", "--to", "2100-01-01", "--format", "json"]
    code, out, err = run_cli(capsys, "audit", "list", *period, "--seller", seller, *_opts(audited))
    assert code == 0, err
    rows = json.loads(out)
    assert [r["declaration_id"] for r in rows] == [r.declaration_id for r in theirs]
    first = rows[0]
    assert first["seller_id"] == seller
    assert first["consignee_id"] == theirs[0].declaration["consignee_id"]
    assert first["declared_at"] == theirs[0].declaration["declared_at"]
    assert first["thresholds_version"] == theirs[0].thresholds_version
    both = [r for r in theirs if r.declaration.get("consignee_id") == first["consignee_id"]]
    code, out, _ = run_cli(capsys, "audit", "list", *period, "--seller", seller,
                           "--consignee", first["consignee_id"], *_opts(audited))  # fmt: skip
    assert [r["declaration_id"] for r in json.loads(out)] == [r.declaration_id for r in both]
    code, _, err = run_cli(capsys, "audit", "list", *period, "--seller", " ", *_opts(audited))
    assert code == 2 and "--seller: give the seller's id" in err


def test_show_gives_every_feature_and_the_inspection(audited, capsys) -> None:
    record = audited["records"][0]  # inspected (every third of a batch)
    code, out, _ = run_cli(capsys, "audit", "show", record.decision_id, "--json",
                        "--tracking-uri", audited["tracking_uri"], *_opts(audited))  # fmt: skip
    body = json.loads(out)
    assert code == 0 and body["intact"] is True and body["delivery"] is None
    explanation = body["explanation"]
    names = [c["feature"] for c in explanation["contributions"]]
    assert len(names) == len(record.feature_vector) and len(set(names)) == len(names)
    total = explanation["base_value"] + sum(c["contribution"] for c in explanation["contributions"])
    assert total == pytest.approx(record.raw_score, abs=1e-9)
    assert explanation["raw_score"] == record.raw_score
    assert body["model"]["run_id"] and body["model"]["run_url"].startswith("runs:/")
    assert body["inspection"]["illicit"] is True
    # the cut-offs the lane was assigned with, not only their version (probe 12)
    cutoffs = body["model"]["cutoffs"]
    assert cutoffs is not None and cutoffs["red_cutoff"] >= cutoffs["yellow_cutoff"]
    code, text, _ = run_cli(capsys, "audit", "show", record.decision_id,
                         "--tracking-uri", audited["tracking_uri"], *_opts(audited))  # fmt: skip
    assert code == 0 and all(name in text for name in names)
    assert "chain         intact" in text and "inspection    illicit" in text
    assert f"cut-offs      {record.thresholds_version}: red if priority >= " in text


def test_recompute_matches_a_sample_scored_by_two_workers(audited, capsys) -> None:
    code, out, _ = run_cli(capsys, "audit", "recompute", "--sample", "40", "--seed", "3",
                          *_recompute_opts(audited))  # fmt: skip
    body = json.loads(out)
    assert body["summary"] == {"n": 40, "matches": 40, "mismatches": 0, "unverifiable": 0}, [
        d for d in body["decisions"] if d["status"] != "match"
    ]
    assert code == 0
    assert all(d["from_declaration"]["raw_diff"] == 0.0 for d in body["decisions"])
    assert all(d["differing_features"] == [] for d in body["decisions"])


def test_recompute_gives_a_lane_raised_by_an_implausible_number(audited, capsys) -> None:
    """The lane serve.implausible_lane raised is recomputed from the bounds its decision
    recorded (without them the model's priority alone gives another lane: said in the
    decision's note)."""
    raised = [
        r for r in audited["records"][7:10] if any("implausible_lane" in w for w in r.warnings)
    ]
    assert raised, [r.warnings for r in audited["records"][7:10]]
    # the parcel in lari, unless the model put it in a lane at least as strict by itself
    gel = audited["records"][9]
    assert gel.lane != "green" and json.loads(gel.lane_policy)["unvalued_currency"] is True
    for record in raised:
        assert record.lane == "yellow"
        assert json.loads(record.lane_policy)["plausible_bounds"]["max_value"] == 100_000.0
        code, out, _ = run_cli(capsys, "audit", "recompute", record.decision_id,
                              *_recompute_opts(audited))  # fmt: skip
        (body,) = json.loads(out)["decisions"]
        assert code == 0 and body["status"] == "match", body
        assert body["from_declaration"]["lane"] == body["from_vector"]["lane"] == "yellow"


def test_recompute_needs_the_log_and_the_results_it_knew(audited) -> None:
    """Without the log and the results, the later decisions' features differ: recompute's
    match above is not vacuous."""
    from serving.audit.models import RecordedModels
    from serving.audit.recompute import recompute_decisions
    from serving.outcome_store import SqliteOutcomeStore as Results

    store, results = SqliteDecisionStore(audited["db"]), Results(audited["db"])
    try:
        # as stored (its seq and answer time: recompute finds the batch it was scored in,
        # whose earlier rows its features counted); the record as scored knows neither, and
        # its "match" rested on the model ignoring the counts it lacked
        last, _ = store.get(audited["records"][-1].decision_id)
        seed = load_settings(audited["params"]).serve.exploration_seed
        with RecordedModels(audited["tracking_uri"]) as models:
            (honest,) = recompute_decisions([last], store, results, models, seed)
            forgetful = [type(last)(**{**_fields(last), "known_seq": 0, "known_results_seq": 0})]
            forgetful[0] = forgetful[0].stored_as(last.seq, last.answered_at)
            (wrong,) = recompute_decisions(forgetful, store, results, models, seed)
    finally:
        results.close()
        store.close()
    assert honest.status == "match" and honest.differing_features == []
    assert wrong.status == "mismatch" and wrong.from_vector.match
    assert wrong.differing_features  # the entity histories the log and results fed


def _fields(record) -> dict:
    from dataclasses import fields

    return {f.name: getattr(record, f.name) for f in fields(record) if f.init}


def test_recompute_finds_an_altered_vector_and_an_unknown_model(audited, capsys, tmp_path) -> None:
    db = tmp_path / "edited.db"
    shutil.copy(audited["db"], db)
    target, other = audited["records"][13], audited["records"][20]
    vector = target.feature_vector.copy()
    # every present value moved: a model may not split on the first few (the description
    # shape features are NaN without a description, so which come first changes)
    vector[~np.isnan(vector)] += 1.0
    with sqlite3.connect(db) as conn:
        conn.execute(
            "UPDATE decisions SET features = ? WHERE decision_id = ?",
            (pack_feature_rows([vector.tobytes()])[0], target.decision_id),
        )
        conn.execute(  # a model neither the registry nor the record's run holds
            "UPDATE decisions SET model_version = '999', model_run_id = ? WHERE decision_id = ?",
            ("f" * 32, other.decision_id),
        )
    code, out, _ = run_cli(capsys, "audit", "recompute", target.decision_id,
                        *_recompute_opts(audited, db))  # fmt: skip
    (found,) = json.loads(out)["decisions"]
    assert code == 1 and found["status"] == "mismatch"
    assert not found["from_vector"]["match"] and found["from_declaration"]["match"]
    assert found["differing_features"]
    code, out, _ = run_cli(capsys, "audit", "recompute", other.decision_id,
                        *_recompute_opts(audited, db))  # fmt: skip
    (found,) = json.loads(out)["decisions"]
    assert code == 1 and found["status"].startswith("unverifiable: model")
    assert "999" in found["status"]


def test_a_decision_names_the_run_and_bundle_that_made_it(audited, capsys) -> None:
    from models.registry import BUNDLE_DIGEST_TAG, registry_client

    record = audited["records"][0]
    # registry_client names the registry too: a bare MlflowClient(uri) takes a registry URI
    # another test set process-wide, and read another registry's v1
    version = registry_client(audited["tracking_uri"]).get_model_version(
        record.model_name, record.model_version
    )
    assert record.model_run_id == version.run_id
    assert record.model_bundle_sha256 == version.tags[BUNDLE_DIGEST_TAG]
    code, out, _ = run_cli(capsys, "audit", "show", record.decision_id, "--json",
                        "--tracking-uri", audited["tracking_uri"], *_opts(audited))  # fmt: skip
    model = json.loads(out)["model"]
    assert code == 0 and model["run_recorded"] is True
    assert model["run_id"] == model["registry_run_id"] == version.run_id
    assert model["bundle_sha256"] == record.model_bundle_sha256


def test_a_registry_that_names_another_run_for_the_version_is_not_used(
    audited, capsys, tmp_path
) -> None:
    """A rebuilt registry gives "v1" to another run (probe 12): the decision's own record
    names the run that made it, so show and recompute say the registry's is not that model
    instead of explaining the decision with it."""
    import dataclasses

    first_batch = [dataclasses.replace(r, model_run_id="0" * 32) for r in audited["records"][:12]]
    db = tmp_path / "rebuilt.db"
    store = SqliteDecisionStore(db)
    store.record(first_batch)
    store.close()
    target = first_batch[0]
    code, out, _ = run_cli(capsys, "audit", "show", target.decision_id, "--json",
                        "--tracking-uri", audited["tracking_uri"], *_opts(audited, db))  # fmt: skip
    body = json.loads(out)
    assert code == 0 and body["intact"] and body["explanation"] is None
    assert f"made by run {'0' * 32}" in body["explanation_unavailable"]
    assert body["model"]["run_id"] == "0" * 32 != body["model"]["registry_run_id"]
    code, text, _ = run_cli(capsys, "audit", "show", target.decision_id,
                         "--tracking-uri", audited["tracking_uri"], *_opts(audited, db))  # fmt: skip
    assert "registry      NOT the model that decided" in text
    code, out, _ = run_cli(capsys, "audit", "recompute", target.decision_id,
                        *_recompute_opts(audited, db))  # fmt: skip
    (found,) = json.loads(out)["decisions"]
    assert code == 1 and found["status"].startswith("unverifiable")
    assert "the registry was rebuilt or the version registered again" in found["status"]


def test_a_version_deleted_from_the_registry_still_explains_its_decisions(
    audited, capsys, tmp_path
) -> None:
    """A registry clean-up deletes the version; the run that made the decisions (recorded
    under their MAC, with its bundle digest) is intact: show and recompute load it from there
    (probe 30: every decision of the version became unexplainable)."""
    import shutil

    from models.registry import registry_client

    copy = tmp_path / "mlflow.db"  # the run's artifacts stay where the original points
    shutil.copy(audited["tracking_uri"].removeprefix("sqlite:///"), copy)
    uri = f"sqlite:///{copy}"
    record = audited["records"][0]
    registry_client(uri).delete_model_version(record.model_name, record.model_version)
    code, out, err = run_cli(capsys, "audit", "show", record.decision_id, "--json",
                             "--tracking-uri", uri, *_opts(audited))  # fmt: skip
    body = json.loads(out)
    assert code == 0, err
    assert body["explanation"] is not None and body["explanation_unavailable"] is None
    assert body["model"]["cutoffs"] is not None
    assert body["model"]["run_id"] == record.model_run_id
    assert body["model"]["registry_run_id"] is None  # said: the registry holds it no more
    code, out, _ = run_cli(capsys, "audit", "recompute", record.decision_id,
                           *_opts(audited), "--tracking-uri", uri, "--json")  # fmt: skip
    (found,) = json.loads(out)["decisions"]
    assert code == 0 and found["status"] == "match", found


def test_a_recorded_run_is_loaded_only_with_the_digest_the_decision_recorded(
    audited, capsys, tmp_path
) -> None:
    """The recorded run stands in for a deleted version only as the very bundle the decision
    names: a record whose digest differs (edited, or another bundle put in the run) is not
    explained with it."""
    import dataclasses
    import shutil

    from models.registry import registry_client

    copy = tmp_path / "mlflow.db"
    shutil.copy(audited["tracking_uri"].removeprefix("sqlite:///"), copy)
    uri = f"sqlite:///{copy}"
    record = dataclasses.replace(audited["records"][0], model_bundle_sha256="0" * 64)
    registry_client(uri).delete_model_version(record.model_name, record.model_version)
    db = tmp_path / "other-digest.db"
    store = SqliteDecisionStore(db)
    store.record([record])
    store.close()
    code, out, _ = run_cli(capsys, "audit", "show", record.decision_id, "--json",
                           "--tracking-uri", uri, *_opts(audited, db))  # fmt: skip
    body = json.loads(out)
    assert code == 0 and body["explanation"] is None
    assert "does not load either" in body["explanation_unavailable"]
    assert "is not the one registered" in body["explanation_unavailable"]


def test_cut_offs_from_an_altered_record_are_not_shown(audited, capsys, monkeypatch) -> None:
    """`show` says the cut-offs' record was altered instead of printing them, and `recompute`
    calls the decision unverifiable for that reason, not a mismatch (probe 30)."""
    from models.lane_versions import ThresholdsAltered
    from serving.audit.models import RecordedModels

    def altered(self, loaded, version):
        raise ThresholdsAltered(f"the record of lane thresholds {version} ... was altered")

    monkeypatch.setattr(RecordedModels, "thresholds", altered)
    record = audited["records"][0]
    code, text, _ = run_cli(capsys, "audit", "show", record.decision_id,
                            "--tracking-uri", audited["tracking_uri"], *_opts(audited))  # fmt: skip
    assert code == 0
    assert f"cut-offs      {record.thresholds_version}: NOT AVAILABLE: the record" in text
    assert "red if priority" not in text
    code, out, _ = run_cli(capsys, "audit", "recompute", record.decision_id,
                           *_recompute_opts(audited))  # fmt: skip
    (found,) = json.loads(out)["decisions"]
    assert code == 1 and found["status"].startswith("unverifiable: the record of lane")


def test_export_csv_and_html(audited, capsys, tmp_path) -> None:
    out_csv, out_html = tmp_path / "report.csv", tmp_path / "report.html"
    period = ["--from", "2000-01-01", "--to", "2100-01-01"]
    code, _, _ = run_cli(capsys, "audit", "export", *period, "--format", "csv", "--out",
                      str(out_csv), *_opts(audited))  # fmt: skip
    rows = pd.read_csv(out_csv, keep_default_na=False)
    assert code == 0 and len(rows) == 72
    assert (rows["outcome"] != "").sum() == 24 and set(rows["outcome"]) == {"", "illicit", "clean"}
    code, _, _ = run_cli(capsys, "audit", "export", *period, "--format", "html", "--out",
                      str(out_html), *_opts(audited))  # fmt: skip
    page = out_html.read_text()
    assert code == 0 and "passed (72 decisions)" in page and "72:" in page
    assert "<script" not in page and "http" not in page  # no script, nothing fetched
    assert "Hit rate by lane" in page and "0.5" in page


def test_export_never_writes_over_the_store_or_a_file_of_another_kind(
    audited, capsys, tmp_path
) -> None:
    """Probe 20: `audit export --out audit.db` replaced the store it read with a CSV (exit 0),
    `--out mlflow.db` a registry with HTML. Refused before any work, nothing written."""
    import hashlib
    import shutil

    db = tmp_path / "audit.db"
    shutil.copy(audited["db"], db)
    registry = tmp_path / "mlflow.db"
    registry.write_bytes(b"SQLite format 3\x00 a registry")
    before = hashlib.sha256(db.read_bytes()).hexdigest()
    period = ["--from", "2000-01-01", "--to", "2100-01-01"]
    for fmt, out, said in (
        ("csv", db, "is written to a .csv file"),
        ("html", registry, "is written to a .html or .htm file"),
        ("csv", tmp_path / "report.html", "is written to a .csv file"),
        ("html", tmp_path / "report", "is written to a .html or .htm file"),
    ):
        code, _, err = run_cli(capsys, "audit", "export", *period, "--format", fmt,
                               "--out", str(out), *_opts(audited, db))  # fmt: skip
        assert code == 2 and said in err and "nothing written" in err, err
    assert hashlib.sha256(db.read_bytes()).hexdigest() == before
    assert registry.read_bytes() == b"SQLite format 3\x00 a registry"
    assert not (tmp_path / "report.html").exists() and not (tmp_path / "report").exists()
    # a store named like an export is still the store
    named = tmp_path / "decisions.csv"
    shutil.copy(audited["db"], named)
    code, _, err = run_cli(capsys, "audit", "export", *period, "--format", "csv",
                           "--out", str(named), *_opts(audited, named))  # fmt: skip
    assert code == 2 and "is the decision store being exported" in err
    # an earlier export of the same kind is written over: a scheduler re-exports a period
    again = tmp_path / "daily.csv"
    again.write_text("yesterday's\n")
    code, _, err = run_cli(capsys, "audit", "export", *period, "--format", "csv",
                           "--out", str(again), *_opts(audited, db))  # fmt: skip
    assert code == 0, err
    assert again.read_text().startswith("seq,")


def test_export_escapes_hostile_text() -> None:
    from serving.audit.report import report_html

    rows = pd.DataFrame({"lane": ["red"], "top_reasons": [HOSTILE]})
    empty = pd.DataFrame()
    page = report_html(
        {"store": HOSTILE},
        {"counts": empty, "hit_rate_by_lane": empty, "hit_rate_by_model": empty},
        rows,
    )
    assert (
        "<script>" not in page
        and "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; co" in page
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["show", "no-such-id"], "decision 'no-such-id': not in"),
        (["recompute", "no-such-id"], "decision 'no-such-id': not in"),
        (["list", "--from", "yesterday", "--to", "2026-01-01"], "--from 'yesterday': not a date"),
        (["export", "--from", "2026-02-01", "--to", "2026-01-01"], "is not after --from"),
        (["recompute"], "give one DECISION_ID or --sample N"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(audited, capsys, args, message) -> None:
    code, out, err = run_cli(capsys, "audit", *args, *_opts(audited))
    assert code == 2 and out == ""
    assert err.startswith("error: ") and message in err and len(err.strip().splitlines()) == 1


def test_a_missing_store_is_one_line_and_exit_2(capsys, tmp_path) -> None:
    missing = tmp_path / "nope.db"
    code, _, err = run_cli(capsys, "audit", "list", "--from", "2026-01-01", "--to", "2026-01-02",
                        "--db", str(missing))  # fmt: skip
    assert code == 2 and err.strip() == f"error: decision store {missing}: no such file"
    assert not missing.exists()


def test_recompute_on_a_postgresql_store_shared_by_two_replicas(
    real_pipeline, tmp_path, postgres_url, capsys
) -> None:
    """Two replicas' decisions and results in one PostgreSQL store recompute as they do from a
    SQLite file: from the stored vector and from the declaration on the state as it was."""
    from serving.store import open_outcome_store, open_store

    settings = load_settings(real_pipeline["params"])
    workers = [load_runtime(settings, real_pipeline["tracking_uri"], tmp_path / f"m{i}") for i in (1, 2)]  # fmt: skip
    store = open_store(postgres_url)
    results = open_outcome_store(postgres_url, store)
    parcels = fresh_declarations(real_pipeline["history"], 24, prefix="PGR")
    parcels["seller_id"] = parcels["seller_id"].iloc[:3].tolist() * 8
    parcels["declared_at"] = pd.Timestamp("2026-03-11 08:00", tz="UTC") + pd.to_timedelta(
        np.arange(24) * 10, unit="min"
    )
    try:
        for b in range(2):
            part = parcels.iloc[b * 12 : (b + 1) * 12]
            _serve(workers[b], store, results, part)
            first = part.iloc[:1]
            store_outcomes(
                results,
                pd.DataFrame(
                    {
                        "declaration_id": first["declaration_id"],
                        "inspected_at": (first["declared_at"] + pd.Timedelta(minutes=30))
                        .dt.strftime("%Y-%m-%dT%H:%M:%SZ")
                        .tolist(),
                        "illicit": ["true"],
                        "offence_type": ["undervaluation"],
                        "revenue_recovered": ["25"],
                    }
                ),
                source="test",
            )
    finally:
        results.close()
        store.close()
    code, out, _ = run_cli(capsys, "audit", "recompute", "--sample", "24", "--db", postgres_url,
                        "--params", str(real_pipeline["params"]),
                        "--tracking-uri", real_pipeline["tracking_uri"], "--json")  # fmt: skip
    summary = json.loads(out)["summary"]
    assert code == 0 and summary["n"] == 24 and summary["matches"] == 24, summary


def test_recompute_reproduces_decisions_after_their_days_are_archived(
    audited, capsys, tmp_path
) -> None:
    """`audit archive` is the store's normal lifecycle: an archived decision recomputes as it
    did in the hot store (probe 12: its batch was read from the hot store alone, so it was
    rebuilt without its batch-mates and mismatched; a sample drew from the hot store alone and
    checked nothing once every day was archived)."""
    import sqlite3

    from serving.audit.archive import archive_before

    db = tmp_path / "audit.db"
    with sqlite3.connect(audited["db"]) as source, sqlite3.connect(db) as copy:
        source.backup(copy)
    store = SqliteDecisionStore(db)
    try:
        summary = archive_before(store, "2100-01-01T00:00:00.000000Z")
    finally:
        store.close()
    assert summary["archived"] == len(audited["records"]) == 72
    code, out, _ = run_cli(capsys, "audit", "recompute", "--sample", "40", "--seed", "3",
                          *_recompute_opts(audited, db))  # fmt: skip
    body = json.loads(out)
    assert body["summary"] == {"n": 40, "matches": 40, "mismatches": 0, "unverifiable": 0}
    assert code == 0
    assert all(d["differing_features"] == [] for d in body["decisions"])
    one = audited["records"][30]  # a batch of 12 scored together
    code, out, _ = run_cli(capsys, "audit", "recompute", one.decision_id,
                          *_recompute_opts(audited, db))  # fmt: skip
    assert code == 0 and json.loads(out)["decisions"][0]["differing_features"] == []
