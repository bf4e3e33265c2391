"""A bundle's files are checked against the SHA-256 digests recorded when it was saved, before
LightGBM reads them: a truncated booster aborted the whole process, an edited one was served."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pytest

from features.errors import ParcelriskError
from features.pipeline.manifest import MANIFEST_FILE, FeatureManifest, FeatureSpec
from models.bundle import (
    BUNDLE_FILE,
    REVENUE_MODEL_FILE,
    RISK_MODEL_FILE,
    Calibration,
    LaneThresholds,
    RiskModel,
)

REPO = Path(__file__).resolve().parents[2]
# spelled out, not imported from models.bundle: it is part of the stored format (bundles
# already written carry it), so renaming it must fail here
DIGESTS_KEY = "file_sha256"


def _manifest() -> FeatureManifest:
    return FeatureManifest(
        (
            FeatureSpec("value", "g", "float", "d", "r"),
            FeatureSpec("flag", "g", "int", "d", "r"),
        )
    )


def _matrix(rows: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.column_stack([rng.normal(size=rows), rng.integers(0, 2, rows)]).astype(float)


@pytest.fixture(scope="module")
def model() -> RiskModel:
    """A tiny risk booster and a revenue booster: seconds, not a training run."""
    import lightgbm as lgb

    X = _matrix(400, seed=5)
    rng = np.random.default_rng(6)
    illicit = (X[:, 0] + rng.normal(size=len(X)) > 1).astype(int)
    revenue = rng.gamma(2.0, 10.0, len(X))
    quiet = {"verbose": -1, "num_leaves": 4, "seed": 1}
    risk = lgb.train({"objective": "binary", **quiet}, lgb.Dataset(X, illicit), 8)
    gamma = lgb.train({"objective": "gamma", **quiet}, lgb.Dataset(X, revenue), 8)
    thresholds = LaneThresholds("risk", 0.5, 0.3, 0.05, 0.1, "v1")
    calibration = Calibration((-5.0, 5.0), (0.0, 1.0))
    return RiskModel(_manifest(), risk, gamma, calibration, thresholds)


def _edit_first_leaf_value(path: Path) -> None:
    """Change one digit of the first leaf value: same length, a model LightGBM still loads."""
    lines = path.read_text().splitlines(keepends=True)
    at = next(i for i, line in enumerate(lines) if line.startswith("leaf_value="))
    head, values = lines[at].split("=", 1)
    first, rest = values.split(" ", 1)
    digit = next(i for i in range(len(first) - 1, -1, -1) if first[i].isdigit())
    changed = first[:digit] + str((int(first[digit]) + 1) % 10) + first[digit + 1 :]
    lines[at] = f"{head}={changed} {rest}"
    path.write_text("".join(lines))


def test_the_digests_of_every_file_load_reads_are_recorded(model, tmp_path) -> None:
    directory = model.save(tmp_path / "bundle")
    recorded = json.loads((directory / BUNDLE_FILE).read_text())[DIGESTS_KEY]
    assert set(recorded) == {RISK_MODEL_FILE, REVENUE_MODEL_FILE, MANIFEST_FILE}
    assert all(len(digest) == 64 for digest in recorded.values())


def test_an_untouched_bundle_loads_and_scores_as_saved(model, tmp_path) -> None:
    loaded = RiskModel.load(model.save(tmp_path / "bundle"))
    X = _matrix(50, seed=7)
    for key, values in model.score(X).items():
        np.testing.assert_array_equal(values, loaded.score(X)[key])


def test_a_truncated_booster_is_refused_in_one_line_without_crashing(model, tmp_path) -> None:
    directory = model.save(tmp_path / "bundle")
    booster = directory / RISK_MODEL_FILE
    booster.write_bytes(booster.read_bytes()[: booster.stat().st_size // 2])
    # in a child process: unchecked, LightGBM aborts the process reading it (SIGABRT/SIGSEGV)
    script = (
        "import sys\n"
        "from features.errors import ParcelriskError\n"
        "from models.bundle import RiskModel\n"
        "try:\n"
        "    RiskModel.load(sys.argv[1])\n"
        "except ParcelriskError as exc:\n"
        "    print(exc)\n"
        "    sys.exit(3)\n"
    )
    child = subprocess.run(
        [sys.executable, "-c", script, str(directory)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert child.returncode == 3, (child.returncode, child.stderr[-2000:])
    message = child.stdout.strip()
    assert "\n" not in message
    assert f"{RISK_MODEL_FILE} does not match the SHA-256 digest recorded at training" in message


def test_an_edited_leaf_value_is_refused(model, tmp_path) -> None:
    directory = model.save(tmp_path / "bundle")
    _edit_first_leaf_value(directory / REVENUE_MODEL_FILE)
    with pytest.raises(ParcelriskError, match=f"{REVENUE_MODEL_FILE} does not match") as caught:
        RiskModel.load(directory)
    assert "\n" not in str(caught.value)


def test_a_booster_removed_after_training_is_refused(model, tmp_path) -> None:
    # unchecked, the bundle would load as a model without its revenue booster
    directory = model.save(tmp_path / "bundle")
    (directory / REVENUE_MODEL_FILE).unlink()
    with pytest.raises(ParcelriskError, match=f"{REVENUE_MODEL_FILE} is missing"):
        RiskModel.load(directory)


def test_a_bundle_saved_before_digests_still_loads(model, tmp_path, caplog) -> None:
    directory = model.save(tmp_path / "bundle")
    bundle_json = directory / BUNDLE_FILE
    payload = json.loads(bundle_json.read_text())
    del payload[DIGESTS_KEY]
    bundle_json.write_text(json.dumps(payload))
    with caplog.at_level(logging.WARNING, logger="models.bundle"):
        loaded = RiskModel.load(directory)
    assert loaded.revenue_booster is not None
    assert "records no file digests" in caplog.text


# --- through the registry: the error names the version, an untouched version loads ----------


@pytest.fixture(scope="module")
def registered(tmp_path_factory) -> dict:
    """One version logged to a temporary store: {client, version, artifacts (its run's dir)}."""
    from features.params import TrainParams
    from models.registry import log_training, registry_client
    from models.train import train_models
    from tests.test_models.conftest import REGISTRY_PARAMS, make_frames, write_features_dir

    root = tmp_path_factory.mktemp("integrity")
    features, _, manifest = make_frames(n=4000, seed=2)
    result = train_models(features, manifest, TrainParams.from_dict(REGISTRY_PARAMS["train"]))
    result.model.metadata["entity_state_fingerprint"] = "state-fp-1"
    uri = f"sqlite:///{root / 'mlflow.db'}"
    logged = log_training(
        result,
        features_dir=write_features_dir(root / "features", features, manifest),
        params=REGISTRY_PARAMS,
        tracking_uri=uri,
        shap_sample=100,
    )
    client = registry_client(uri)
    artifacts = Path(urlparse(client.get_run(logged.run_id).info.artifact_uri).path)
    return {"client": client, "version": logged.version, "artifacts": artifacts}


def test_a_registered_version_with_a_corrupted_booster_is_refused_naming_it(
    registered, tmp_path
) -> None:
    from models.registry import BUNDLE_ARTIFACT, load_version

    client, version = registered["client"], registered["version"]
    model, _, _ = load_version(client, "parcel-risk", version, tmp_path / "before")
    assert model.risk_booster is not None
    booster = registered["artifacts"] / BUNDLE_ARTIFACT / RISK_MODEL_FILE
    original = booster.read_bytes()
    _edit_first_leaf_value(booster)
    try:
        with pytest.raises(ParcelriskError) as caught:
            load_version(client, "parcel-risk", version, tmp_path / "after")
    finally:
        booster.write_bytes(original)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"model 'parcel-risk' version {version} (run ")
    assert f"{RISK_MODEL_FILE} does not match the SHA-256 digest recorded at training" in message


def _rewrite_bundle_consistently(bundle: Path) -> None:
    """What a write to the artifact store alone can do: edit a booster and recompute the
    digests in bundle.json, so every check inside the bundle passes."""
    from models.bundle import digest_bundle_files

    _edit_first_leaf_value(bundle / RISK_MODEL_FILE)
    payload = json.loads((bundle / BUNDLE_FILE).read_text())
    payload[DIGESTS_KEY] = digest_bundle_files(bundle)
    (bundle / BUNDLE_FILE).write_text(json.dumps(payload, indent=1))


def test_a_version_carries_the_digest_of_its_bundle_json(registered) -> None:
    import hashlib

    from models.registry import BUNDLE_ARTIFACT, BUNDLE_DIGEST_TAG

    mv = registered["client"].get_model_version("parcel-risk", registered["version"])
    bundle_json = registered["artifacts"] / BUNDLE_ARTIFACT / BUNDLE_FILE
    assert mv.tags[BUNDLE_DIGEST_TAG] == hashlib.sha256(bundle_json.read_bytes()).hexdigest()


def test_a_bundle_rewritten_with_fresh_digests_is_refused_by_the_registry_tag(
    registered, tmp_path
) -> None:
    from models.registry import BUNDLE_ARTIFACT, load_version

    client, version = registered["client"], registered["version"]
    bundle = registered["artifacts"] / BUNDLE_ARTIFACT
    saved = {p.name: p.read_bytes() for p in bundle.iterdir()}
    _rewrite_bundle_consistently(bundle)
    try:
        RiskModel.load(bundle)  # the bundle alone cannot tell: its digests were recomputed
        with pytest.raises(ParcelriskError) as caught:
            load_version(client, "parcel-risk", version, tmp_path / "after")
    finally:
        for name, data in saved.items():
            (bundle / name).write_bytes(data)
    message = str(caught.value)
    assert "\n" not in message
    assert f"version {version}" in message
    assert "is not the one registered with the version" in message
    load_version(client, "parcel-risk", version, tmp_path / "restored")  # untouched: loads


def test_a_version_registered_before_the_tag_loads_as_before(registered, tmp_path) -> None:
    from models.registry import BUNDLE_DIGEST_TAG, load_version

    client, version = registered["client"], registered["version"]
    digest = client.get_model_version("parcel-risk", version).tags[BUNDLE_DIGEST_TAG]
    client.delete_model_version_tag("parcel-risk", version, BUNDLE_DIGEST_TAG)
    try:
        model, _, _ = load_version(client, "parcel-risk", version, tmp_path / "old")
    finally:
        client.set_model_version_tag("parcel-risk", version, BUNDLE_DIGEST_TAG, digest)
    assert model.risk_booster is not None
