"""One decision record, three views: the API item, the stored body and the offline row agree."""

import json

import numpy as np
import pytest

from features.intake.columns import RecordColumns, models_as_json
from features.intake.contract import Declaration
from serving.schemas import Decision, StoredDecision
from serving.scoring import decision_records, results_frame, score_frame
from tests.test_serving.conftest import make_declarations


def _records(stub_runtime, n: int = 40):
    models = [Declaration.model_validate(d) for d in make_declarations(n, seed=21)]
    batch = score_frame(RecordColumns(models, None), stub_runtime)
    return batch, decision_records(batch, stub_runtime, models_as_json(models))


def test_every_view_reads_the_same_decision(stub_runtime) -> None:
    batch, records = _records(stub_runtime)
    frame = results_frame(records, batch.scores["priority"])
    names = stub_runtime.model.manifest.names
    for i, record in enumerate(records):
        item = Decision.model_validate(record.api_item())
        stored = StoredDecision.model_validate(record.stored_item(names, intact=True))
        row = frame.iloc[i]
        assert item.decision_id == stored.decision_id == row["decision_id"] == batch.decision_ids[i]
        assert item.risk == stored.risk == row["risk"] == batch.scores["risk"][i]
        assert item.lane == stored.lane == row["lane"] == batch.lanes[i]
        assert item.exploration == stored.exploration == row["exploration"]
        assert [r.model_dump() for r in item.reasons] == json.loads(row["reasons"])
        assert item.model.version == stored.model.version == row["model_version"] == "3"
    assert np.array_equal(frame["priority"].to_numpy(), batch.scores["priority"])


def test_the_stored_values_give_back_the_record(stub_runtime) -> None:
    from serving.decision import DecisionRecord

    _, records = _records(stub_runtime, n=5)
    for record in records:
        assert DecisionRecord.from_stored_values(record.stored_values()) == record


def test_a_missing_feature_is_stored_as_nan_and_shown_as_null(stub_runtime) -> None:
    import dataclasses

    _, records = _records(stub_runtime, n=1)
    vector = records[0].feature_vector.copy()
    vector[2] = np.nan
    record = dataclasses.replace(records[0], features=vector.astype("<f8").tobytes())
    names = stub_runtime.model.manifest.names
    assert record.stored_item(names, intact=True)["features"][names[2]] is None


def test_feature_vectors_are_packed_losslessly_bit_for_bit() -> None:
    """Counts as float16, exact values as float32, the rest float64; every bit comes back
    (signed zero, infinities, NaN payloads, subnormals), whatever the batch mixes."""
    import struct

    from serving.decision import features_for_storage, pack_feature_rows, unpack_features

    rng = np.random.default_rng(3)
    X = rng.normal(size=(9, 40))
    X[:, :20] = np.round(np.abs(X[:, :20]) * 10)  # counts: float16
    X[:, 20:25] = X[:, 20:25].astype(np.float32)  # exact in float32
    X[0, :8] = [np.nan, -0.0, np.inf, -np.inf, 65504.0, 65505.0, 5e-324, 1e300]
    rows = features_for_storage(X)
    rows[1] = rows[1][:8] + struct.pack("<Q", 0x7FF8000000000001) + rows[1][16:]  # NaN payload
    for batch in (rows, rows[:1], rows[1:2]):
        packed = pack_feature_rows(batch)
        assert [unpack_features(p) for p in packed] == batch
    assert sum(map(len, pack_feature_rows(rows[2:]))) < 0.75 * sum(map(len, rows[2:]))
    with pytest.raises(ValueError, match="unknown format"):
        unpack_features(b"\x07\x01\x00")


def test_an_aeo_parcel_kept_out_of_red_by_facilitation_says_so(stub_runtime) -> None:
    models = [Declaration.model_validate(d) for d in make_declarations(200, seed=21)]
    plain = score_frame(RecordColumns(models, None), stub_runtime)
    red = int(np.flatnonzero(plain.lanes == "red")[0])
    as_aeo = Declaration.model_validate({**models[red].model_dump(), "aeo_operator": True})
    batch = score_frame(RecordColumns([as_aeo], None), stub_runtime)
    priority, discount = plain.scores["priority"][red], stub_runtime.config.aeo_risk_discount
    if priority * discount >= stub_runtime.thresholds.red_cutoff:
        pytest.skip("this parcel stays red with the discount")
    assert batch.lanes[0] != "red"
    assert any(w.startswith("AEO facilitation: priority") for w in batch.warnings[0])
    assert not any(w.startswith("AEO facilitation") for w in plain.warnings[red])


def test_a_lane_the_exploration_draw_raised_says_so(stub_runtime) -> None:
    """A parcel drawn at random was answered and recorded with the model's SHAP terms as its
    reasons ("IOSS prepaid: 0"), none saying why it was selected (probe 12): a lane the draw
    raised carries a note naming the quota and the lane the model alone gives; a drawn parcel
    the model had put there anyway carries none."""
    from serving.lanes import assign_lanes

    models = [Declaration.model_validate(d) for d in make_declarations(400, seed=5)]
    batch = score_frame(RecordColumns(models, None), stub_runtime)
    undrawn = stub_runtime.config.model_copy(update={"exploration_rate": 0.0})
    without, _ = assign_lanes(
        batch.scores["priority"],
        np.array([bool(m.aeo_operator) for m in models]),
        batch.declaration_ids,
        stub_runtime.thresholds,
        undrawn,
    )
    raised = batch.exploration & (without != batch.lanes)
    assert raised.any()
    for i in range(len(models)):
        notes = [w for w in batch.warnings[i] if "exploration quota" in w]
        if raised[i]:
            assert notes == [
                f"{batch.lanes[i]} by the random exploration quota (serve.exploration_rate "
                f"5.0%), not by the model: its risk alone gives {without[i]}; drawn at random "
                "to measure what the model misses, and the reasons are the model's view of the "
                "parcel, not why it was selected"
            ]
        else:
            assert notes == []
