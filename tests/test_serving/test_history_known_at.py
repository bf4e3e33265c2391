"""``history export`` places a result the store received late (``result_known_at``) where the
service could first count it, so the next model's entity features are the ones served.

Probe 23: a parcel decided between a result's ``inspected_at`` and its arrival was served
without it, while the exported history counted it from ``inspected_at``: training rows a
little better informed than the service was."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from typer.testing import CliRunner

from features.intake.io import read_declarations
from features.params import load_settings
from features.pipeline.build import build_features
from serving.decision import iso_utc, parse_iso_us
from serving.outcomes import ScoredRow, StoredResult, results_known_at, store_outcomes
from serving.scoring import decision_records, load_runtime, score_frame
from serving.store import open_outcome_store, open_store
from tests.test_serving.conftest import fresh_declarations

COUNTS = ("seller_n_inspected", "seller_n_illicit")


def _serve(runtime, store, results, frame: pd.DataFrame):
    """One batch as a worker scores it: catch up (decisions and results), score, record."""
    runtime.catch_up(store, results)
    batch = score_frame(frame.reset_index(drop=True), runtime)
    records = decision_records(batch, runtime)
    store.record(records)
    runtime.recorded(batch, records)
    return {name: float(batch.features.values[name][0]) for name in COUNTS}


def test_a_late_result_is_placed_for_features_where_the_service_counted_it(
    real_pipeline, tmp_path
) -> None:
    from serving.main import app

    settings = load_settings(real_pipeline["params"])
    runtime = load_runtime(settings, real_pipeline["tracking_uri"], tmp_path / "model")
    db = str(tmp_path / "audit.db")
    store = open_store(db)
    results = open_outcome_store(db, store)
    parcels = fresh_declarations(real_pipeline["history"], 3, prefix="K")
    parcels["seller_id"] = parcels["seller_id"].iloc[0]
    t0 = pd.Timestamp("2026-03-10 10:00", tz="UTC")
    parcels["declared_at"] = [t0, t0 + pd.Timedelta(hours=5), t0 + pd.Timedelta(hours=6)]
    try:
        served = [_serve(runtime, store, results, parcels.iloc[[0]])]
        served.append(_serve(runtime, store, results, parcels.iloc[[1]]))  # before the result
        inspected = t0 + pd.Timedelta(hours=2)
        result = {
            "declaration_id": "K000000",
            "inspected_at": inspected.isoformat(),
            "illicit": "true",
            "offence_type": "undervaluation",
            "revenue_recovered": "40",
        }
        assert store_outcomes(results, pd.DataFrame([result]), source="lab")["stored"] == 1
        served.append(_serve(runtime, store, results, parcels.iloc[[2]]))  # after it
    finally:
        results.close()
        store.close()
    assert served[2]["seller_n_illicit"] == served[1]["seller_n_illicit"] + 1

    out = tmp_path / "history.parquet"
    base = real_pipeline["root"] / "raw" / "declarations.parquet"
    run = CliRunner().invoke(
        app, ["history", "export", "--db", db, "--out", str(out), "--base", str(base)]
    )
    assert run.exit_code == 0, run.output
    history, contract = read_declarations(out)
    row = history.set_index("declaration_id").loc["K000000"]
    # known from K000001's declaration, the newest scored before the result was received;
    # its label stays at the inspection
    assert row["result_known_at"] == t0 + pd.Timedelta(hours=5)
    assert row["inspected_at"] == inspected and bool(row["illicit"])
    assert history["result_known_at"].notna().sum() == 1  # the base's results: as they were

    def batch(frame: pd.DataFrame) -> list[dict[str, float]]:
        built = build_features(frame, contract, settings.features).frame.set_index("declaration_id")
        return [
            {name: float(built.loc[i, name]) for name in COUNTS}
            for i in ("K000000", "K000001", "K000002")
        ]

    assert batch(history) == served  # the features the service served, parcel by parcel
    # placed at inspected_at, K000001 counted a result the service did not have
    skewed = batch(history.assign(result_known_at=pd.NaT))
    assert skewed[1]["seller_n_illicit"] == served[1]["seller_n_illicit"] + 1
    summary = json.loads(run.stdout)
    assert "results_stored_late" not in summary  # received within the hour


def _row(declared: str, scored_us: int, result: StoredResult | None = None) -> ScoredRow:
    text = json.dumps({"declared_at": declared})
    return ScoredRow(text, False, "green", result, iso_utc(scored_us))


HOUR = 3_600 * 1_000_000


@pytest.mark.parametrize("clock_offset_days", [0, 240])
def test_the_store_clock_is_mapped_through_the_decisions(clock_offset_days: int) -> None:
    """A replay scoring last year's declarations today: the time a result is known is read in
    the declarations' clock, from the decisions scored before it was received."""
    offset = clock_offset_days * 24 * HOUR
    t0 = parse_iso_us("2026-03-10T10:00:00Z")

    def at(hours: float) -> str:
        return iso_utc(t0 + int(hours * HOUR))

    s0 = t0 + 10 * HOUR + offset  # scoring after declaring: in the same clock, or a replay's
    late = StoredResult(t0 + HOUR, True, None, None, known_at_us=s0 + 150)
    prompt = StoredResult(t0 + HOUR, False, None, None, known_at_us=s0 + 110)
    rows = [
        _row(at(0), s0 + 100, late),  # received after the next decision
        _row(at(2), s0 + 120),
        _row(at(0), s0 + 105, prompt),  # received before any later declaration
        _row(at(5), s0 + 200),
        _row(at(1), s0 + 210),  # declared earlier, scored later: not the frontier
    ]
    assert results_known_at(rows) == [t0 + 2 * HOUR, None, None, None, None]
    unread = [ScoredRow(r.declaration_json, r.exploration, r.lane, r.result) for r in rows]
    assert results_known_at(unread) == [None] * 5  # decisions read without their times: as was


def test_a_corrected_result_is_known_from_when_the_correction_came() -> None:
    """The parcels served between a result and its correction had the original (clean): from
    the first's arrival, the export counted the corrected offence for them (probe 28)."""
    from serving.outcomes import current_results

    rows = [
        ("D1", "2026-03-10T12:00:00Z", 0, None, None, None, None, "2026-03-10T13:00:00Z"),
        ("D1", "2026-03-10T12:00:00Z", 1, "prohibited", 9.0, None, "lab", "2026-03-14T08:00:00Z"),
    ]
    (result,) = current_results(rows).values()
    assert result.illicit and result.known_at_us == parse_iso_us("2026-03-14T08:00:00Z")


def test_a_declaration_dated_ahead_of_its_scoring_leaves_the_frontier_where_it_was() -> None:
    """One parcel dated 20 hours ahead (a trader's clock; /score allows two days) held back
    every result received while it led, for every entity, even for parcels declared hours
    before they are scored (pre-arrival; probe 28)."""
    t0 = parse_iso_us("2026-03-10T10:00:00Z")
    late = StoredResult(t0 - 18 * HOUR, True, None, None, known_at_us=t0 + HOUR)
    rows = [
        _row(iso_utc(t0 + 20 * HOUR), t0),  # dated 20 h after it was scored
        _row(iso_utc(t0 - 20 * HOUR), t0 - 19 * HOUR, late),
        _row(iso_utc(t0 - 10 * HOUR), t0 - 9 * HOUR),  # the newest scored before the result
        _row(iso_utc(t0 - 2 * HOUR), t0 + 2 * HOUR),  # declared 2 h ago, scored after it
    ]
    # known from the newest rightly dated declaration: the last parcel counts it, as served
    assert results_known_at(rows) == [None, t0 - 10 * HOUR, None, None]


def test_outcomes_ingest_says_a_file_s_entry_times_are_not_stored(tmp_path) -> None:
    """The store's receipt is when the service had a result: a results file's mapped
    result_known_at is not stored, and said so (it was dropped unsaid)."""
    from tests.test_serving.conftest import decided_store, ingest_results_csv

    location = decided_store(tmp_path, {"A0": "2026-08-01T10:00:00.000000Z"})
    mapping = (
        "columns:\n  declaration_id: ID\n  inspected_at: DATE\n  result_known_at: ENTERED\n"
        "  illicit: {column: ILLICIT, values: {'1': true, '0': false}}\n"
    )
    text = "ID,DATE,ENTERED,ILLICIT\nA0,2026-08-02T10:00:00Z,2026-08-05T09:00:00Z,1\n"
    run = ingest_results_csv(tmp_path, location, text, mapping)
    assert run.exit_code == 0, run.output
    assert '"result_known_at_not_stored": 1' in run.output
