"""Training reads only the rows it needs from the features file, and trains the same models.

The samples are made small here (``DISTIL_ROWS`` and the like) so the toy history's unlabelled
train-period parcels are really left unread; the file is written out of history order, in small
row groups."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.errors import ParcelriskError
from features.params import TrainParams
from models import training_rows
from models.train import train_models
from models.training_rows import (
    TrainingRows,
    distil_sample,
    needed_positions,
    read_training_rows,
)
from tests.test_models.conftest import TRAIN_SECTION

pytestmark = pytest.mark.xdist_group("models_train")


@pytest.fixture
def small_samples(monkeypatch):
    monkeypatch.setattr(training_rows, "DISTIL_ROWS", 1_500)
    monkeypatch.setattr(training_rows, "FIDELITY_ROWS", 300)
    monkeypatch.setattr(training_rows, "BASELINE_ROWS", 2_000)


def typed(features: pd.DataFrame) -> pd.DataFrame:
    """Two offence types, so the revenue mixture is fitted and distilled on its samples."""
    found = features["offence_type"].notna().to_numpy()
    prohibited = found & (features["channel"].to_numpy() == 0)
    return features.assign(
        offence_type=features["offence_type"].where(~prohibited, "prohibited"),
        revenue_recovered=features["revenue_recovered"] + np.where(prohibited, 150.0, 0.0),
    )


def write_shuffled(frame: pd.DataFrame, path, seed: int = 3) -> None:
    order = np.random.default_rng(seed).permutation(len(frame))
    frame.iloc[order].to_parquet(path, index=False, row_group_size=1_000)


def fingerprint(result) -> dict:
    model = result.model
    boosters = {
        "risk": model.risk_booster,
        "revenue": model.revenue_booster,
        "risk_eval": model.risk_booster_eval,
        "revenue_eval": model.revenue_booster_eval,
    }
    skip = {"trained_at", "fit_seconds", "total_seconds"}
    return {
        **{k: b.model_to_string() if b is not None else None for k, b in boosters.items()},
        "thresholds": repr(model.thresholds),
        "reference": repr(model.reference),
        "metrics": json.dumps(result.metrics, sort_keys=True),
        "info": json.dumps(
            {k: v for k, v in result.info.items() if k not in skip}, sort_keys=True, default=str
        ),
        "metadata": json.dumps(
            {k: v for k, v in model.metadata.items() if k not in skip}, sort_keys=True, default=str
        ),
    }


@pytest.mark.parametrize(
    "case",
    ["refit", "no refit", "no random labels", "crackdown"],
)
def test_the_rows_read_train_the_models_the_whole_frame_trains(
    case, frames, small_samples, tmp_path
):
    features, truth, manifest = frames
    features = typed(features)
    section = {**TRAIN_SECTION, "refit": case != "no refit"}
    if case == "no random labels":
        # the validation period's unbiased sample is then "none" for the whole period, though
        # the rows read of it may all be labelled
        features = features.assign(
            selection_reason=features["selection_reason"].replace("random", "rule:other")
        )
    if case == "crackdown":
        # days 40-47 inspected whole, in the validation period (days 36-47): census days are
        # judged on all their parcels, of which the rows read hold only the labelled ones (so
        # every validation day read would look inspected whole)
        day = (features["declared_at"] - features["declared_at"].min().floor("D")).dt.days
        crackdown = day.between(40, 47).to_numpy()
        features = features.assign(
            inspected=features["inspected"] | crackdown,
            inspected_at=features["inspected_at"].mask(
                crackdown, features["declared_at"] + pd.Timedelta(days=2)
            ),
            illicit=features["illicit"].mask(crackdown & features["illicit"].isna(), False),
            selection_reason=features["selection_reason"].mask(crackdown, "crackdown"),
        )
    params = TrainParams.from_dict(section)
    path = tmp_path / "features.parquet"
    write_shuffled(features, path)

    rows = read_training_rows(path, params.split, refit=params.refit, seed=params.seed)
    assert len(rows.frame) < 0.75 * len(features)  # the unlabelled train period stays unread
    whole = train_models(features, manifest, params, truth)
    read = train_models(rows, manifest, params, truth)

    assert fingerprint(read) == fingerprint(whole)
    pd.testing.assert_frame_equal(read.predictions, whole.predictions)
    assert read.info["parcels"] == len(features)
    if case == "no random labels":
        assert read.model.metadata["calibration_sample"] == "labelled"
    if case == "crackdown":
        assert read.model.metadata["calibration_sample"] == "random+census"
        assert read.info["census_labelled"]["validation"] == crackdown.sum()


def test_the_frame_read_is_the_whole_frame_at_the_rows_needed(frames, small_samples, tmp_path):
    features, _, _ = frames
    params = TrainParams.from_dict(TRAIN_SECTION)
    path = tmp_path / "features.parquet"
    write_shuffled(features, path)

    rows = read_training_rows(path, params.split, refit=True, seed=params.seed)
    whole = TrainingRows.whole(pd.read_parquet(path), params.split)

    expected = whole.frame.iloc[rows.position].reset_index(drop=True)
    pd.testing.assert_frame_equal(rows.frame, expected)  # values, dtypes, history order
    assert rows.boundaries == whole.boundaries
    assert rows.period_parcels == whole.period_parcels
    assert rows.random_labelled == whole.random_labelled
    assert rows.unbiased_sample == whole.unbiased_sample
    # what it holds: every labelled parcel, the whole test period, the samples
    labelled = whole.frame["inspected"].to_numpy() & whole.frame["illicit"].notna().to_numpy()
    assert set(np.flatnonzero(labelled)) <= set(rows.position)
    n_train, n_valid = whole.period_parcels["train"], whole.period_parcels["validation"]
    assert set(range(n_train + n_valid, len(features))) <= set(rows.position)
    assert not set(range(n_train, n_train + n_valid)) <= set(rows.position)


def test_without_refit_the_validation_period_is_read_whole(small_samples):
    labelled = np.zeros(10_000, dtype=bool)
    periods = {"train": 6_000, "validation": 2_000, "test": 2_000}
    needed = needed_positions(labelled, periods, refit=False, seed=7)
    assert needed[6_000:].all()
    assert not needed[:6_000].all()


def test_the_distillation_sample_is_the_permutation_of_the_candidates():
    """The rule before rows were read selectively: a seeded permutation of the candidate rows
    (the train and validation periods, a prefix of the history order)."""
    candidates = np.zeros(200_000, dtype=bool)
    candidates[:150_000] = True
    idx = np.random.default_rng(7).permutation(np.flatnonzero(candidates))
    fit, held = distil_sample(7, 150_000)
    assert np.array_equal(fit, np.sort(idx[:60_000]))
    assert np.array_equal(held, np.sort(idx[60_000:70_000]))


def test_a_features_file_without_outcome_columns_is_refused_by_name(frames, tmp_path):
    features, _, _ = frames
    path = tmp_path / "features.parquet"
    features.drop(columns=["selection_reason"]).to_parquet(path)
    with pytest.raises(ParcelriskError, match=r"lacks column\(s\): selection_reason"):
        read_training_rows(path, TRAIN_SECTION["split"], refit=True, seed=7)


def test_an_empty_features_file_is_refused(frames, tmp_path):
    features, _, _ = frames
    path = tmp_path / "features.parquet"
    features.iloc[:0].to_parquet(path)
    with pytest.raises(ParcelriskError, match="empty feature frame"):
        read_training_rows(path, TRAIN_SECTION["split"], refit=True, seed=7)


def test_asking_for_a_row_that_was_not_read_is_an_error(frames):
    features, _, _ = frames
    rows = TrainingRows.whole(features, TRAIN_SECTION["split"])
    partial = TrainingRows(
        rows.frame.iloc[::2].reset_index(drop=True),
        rows.position[::2],
        rows.boundaries,
        rows.period_parcels,
        rows.random_labelled,
        rows.census[::2],
    )
    assert np.array_equal(partial.rows_at(np.array([0, 2, 98])), [0, 1, 49])
    with pytest.raises(ParcelriskError, match=r"1 parcel\(s\) that were not read"):
        partial.rows_at(np.array([0, 1]))


def test_running_out_of_memory_is_one_line_not_a_traceback(frames, tmp_path, capsys, monkeypatch):
    """What a history too large for the machine gave before training read selectively: Arrow's
    MemoryError as a traceback."""
    import pyarrow as pa

    from models import cli
    from tests.test_models.conftest import write_features_dir
    from tests.test_serving.conftest import run_cli

    def out_of_memory(*_args, **_kwargs):
        raise pa.ArrowMemoryError("realloc of size 2115456 failed")

    monkeypatch.setattr(cli, "run_training", out_of_memory)
    features, _, manifest = frames
    features_dir = write_features_dir(tmp_path / "features", features, manifest)
    code, out, err = run_cli(capsys, "train", "--features", str(features_dir), "-q")
    assert code == 2 and out == ""
    assert err.strip().splitlines() == [
        "error: out of memory in `parcelrisk train` (realloc of size 2115456 failed): the data "
        "is larger than this process can hold; `features build --engine dask` builds a history "
        "of any size, and `train` reads only the rows it needs"
    ]


def test_a_plain_train_writes_no_metrics_file_over_the_pipelines(
    frames, tmp_path, capsys, monkeypatch
):
    """`parcelrisk train` without --metrics-out writes no metrics file: an analyst's small run
    overwrote the DVC pipeline's metrics/train.json (a README walkthrough); dvc.yaml names it."""
    from models import cli
    from tests.test_models.conftest import write_features_dir
    from tests.test_serving.conftest import run_cli

    given: list = []

    def record(*_args, **kwargs):
        given.append(kwargs["metrics_out"])
        raise ParcelriskError("stopped after reading the options")

    monkeypatch.setattr(cli, "run_training", record)
    features, _, manifest = frames
    features_dir = write_features_dir(tmp_path / "features", features, manifest)
    run_cli(capsys, "train", "--features", str(features_dir), "-q")
    run_cli(capsys, "train", "--features", str(features_dir), "-q", "--metrics-out", "m.json")
    assert given == [None, Path("m.json")]
    # the pipeline names its own
    repo = Path(__file__).resolve().parents[2]
    assert "--metrics-out metrics/train.json" in (repo / "dvc.yaml").read_text()
