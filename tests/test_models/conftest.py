"""A small seeded feature frame standing in for ``features build`` output, with ground truth."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from features.pipeline.manifest import FeatureManifest, FeatureSpec

# OpenMP threads that spin while waiting make LightGBM crawl when two xdist workers share the
# two cores (measured: this suite 4 min instead of 1); let them sleep, as tests/test_serving does.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

COUNTRIES = ("CN", "US", "TR", "GB")
# The ``train`` section the model tests share: small trees, fast, seeded.
TRAIN_SECTION = {
    "split": {"train": 0.6, "validation": 0.2, "test": 0.2},
    "objective": "risk",
    "lanes": {"red_rate": 0.01, "yellow_rate": 0.04},
    "lightgbm": {"num_leaves": 15, "learning_rate": 0.1, "n_estimators": 200},
    "seed": 7,
    "calibration": {"min_random": 100, "min_random_illicit": 10},
}
# params of a registry test: the train section above, a gate any better model passes
REGISTRY_PARAMS = {
    "train": TRAIN_SECTION,
    "promote": {
        "model_name": "parcel-risk",
        "min_gain_revenue_at_5": 0.0,
        "min_gain_precision_at_5": 0.0,
        "max_calibration_error": 0.1,
    },
}
CHANNELS = ("postal", "express", "courier")


def make_manifest() -> FeatureManifest:
    specs = [
        FeatureSpec(
            "value_ratio", "valuation", "float", "declared / reference value", "value {value:.0%}"
        ),
        FeatureSpec("seller_hit_rate", "history", "float", "seller hit rate", "seller {value:.0%}"),
        FeatureSpec("weight_kg", "declaration", "float", "gross weight", "weight {value}"),
        FeatureSpec("quantity", "declaration", "int", "items", "quantity {value}"),
        FeatureSpec("seller_count_30d", "history", "float", "parcels of the seller", "n {value}"),
        FeatureSpec("noise_a", "noise", "float", "noise", "noise {value}"),
        FeatureSpec("noise_b", "noise", "float", "noise", "noise {value}"),
        FeatureSpec("channel", "declaration", "category", "channel", "channel {value}", CHANNELS),
    ]
    return FeatureManifest(features=tuple(specs), params={"fixture": True})


def make_frames(
    n: int = 12_000, days: int = 60, seed: int = 0
) -> tuple[pd.DataFrame, pd.DataFrame, FeatureManifest]:
    """Features (with labels as recorded) and the ground truth of a toy parcel stream."""
    rng = np.random.default_rng(seed)
    manifest = make_manifest()
    declared = pd.Timestamp("2026-01-01", tz="UTC") + pd.to_timedelta(
        np.sort(rng.uniform(0, days * 86400, n)), unit="s"
    )
    value_ratio = rng.lognormal(0, 0.6, n)
    seller_hit = rng.beta(1, 12, n)
    weight = rng.gamma(2, 0.5, n)
    quantity = rng.integers(1, 10, n).astype(float)
    channel = rng.integers(-1, 3, n).astype(float)
    origin = rng.choice(COUNTRIES, n)
    logit = (
        -3.2
        - 1.8 * np.log(value_ratio)
        + 7.0 * seller_hit
        + 0.6 * (channel == 0)
        + 0.5 * (origin == "TR")
    )
    p = 1 / (1 + np.exp(-logit))
    illicit = rng.random(n) < p
    at_stake = rng.gamma(2.0, 10.0, n) * (1 + quantity / 5)

    random_pick = rng.random(n) < 0.08
    rule_pick = ~random_pick & (value_ratio < 0.5) & (rng.random(n) < 0.5)
    inspected = random_pick | rule_pick
    frame = pd.DataFrame(
        {
            "declaration_id": [f"D{i:06d}" for i in range(n)],
            "declared_at": declared.astype("datetime64[us, UTC]"),
            "inspected": inspected,
            "inspected_at": (declared + pd.Timedelta(days=2)).where(inspected),
            "illicit": pd.array(np.where(inspected, illicit, False), dtype="boolean"),
            "offence_type": pd.Series(
                np.where(inspected & illicit, "undervaluation", None), dtype="str"
            ),
            "revenue_recovered": np.where(inspected, np.where(illicit, at_stake, 0.0), np.nan),
            "selection_reason": pd.Series(
                np.where(random_pick, "random", np.where(rule_pick, "rule:low_value", None)),
                dtype="str",
            ),
            "hs_code": "61091000",
            "hs6": "610910",
            "hs_chapter": rng.choice(["61", "85", "95"], n),
            "origin_country": origin,
            "seller_id": [f"S{i}" for i in rng.integers(0, 300, n)],
            "value_ratio": value_ratio,
            "seller_hit_rate": seller_hit,
            "weight_kg": weight,
            "quantity": quantity,
            "seller_count_30d": rng.poisson(20, n).astype(float),
            "noise_a": rng.normal(size=n),
            "noise_b": rng.normal(size=n),
            "channel": channel,
        }
    )
    frame.loc[~inspected, "illicit"] = pd.NA
    truth = pd.DataFrame(
        {
            "declaration_id": frame["declaration_id"],
            "p_illicit": p,
            "illicit": illicit,
            "revenue_at_stake": at_stake,
        }
    )
    return frame, truth, manifest


# Features an inspect-everything export leaves constant or empty (no text, no revenue history).
CENSUS_EXTRA_FEATURES = ("offence_words", "seller_revenue_180d")


def make_census_frames(
    n: int = 6_000, days: int = 60, seed: int = 1
) -> tuple[pd.DataFrame, pd.DataFrame, FeatureManifest]:
    """An administration that inspects every parcel: labels from the truth, no selection reason,
    no revenue column filled, and two features that such an export leaves constant or empty."""
    frame, truth, manifest = make_frames(n, days, seed)
    illicit = truth["illicit"].to_numpy()
    census = frame.assign(
        inspected=True,
        inspected_at=frame["declared_at"] + pd.Timedelta(days=2),
        illicit=pd.array(illicit, dtype="boolean"),
        offence_type=pd.Series(np.where(illicit, "undervaluation", None), dtype="str"),
        revenue_recovered=np.nan,
        selection_reason=pd.Series([None] * n, dtype="str"),
        offence_words=0.0,
        seller_revenue_180d=np.nan,
    )
    extra = (
        FeatureSpec("offence_words", "text", "float", "offence words", "words {value}"),
        FeatureSpec("seller_revenue_180d", "history", "float", "seller revenue", "EUR {value}"),
    )
    return census, truth, FeatureManifest(manifest.features + extra, manifest.params)


def write_features_dir(
    directory: Path,
    frame: pd.DataFrame,
    manifest: FeatureManifest,
    state_manifest_fingerprint: str | None = None,
) -> Path:
    """What ``features build`` writes: features.parquet, the manifest and an entity-state stub.

    ``state_manifest_fingerprint``: recorded in the snapshot's meta.json, as ``features build``
    records the manifest the state was built with (left out by default).
    """
    directory.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(directory / "features.parquet", index=False)
    manifest.write(directory)
    (directory / "source.json").write_text(json.dumps({"gate": "passed", "gate_how": "inline"}))
    state = directory / "entity_state"
    state.mkdir(exist_ok=True)
    meta = {"fingerprint": "state-fp-1"}
    if state_manifest_fingerprint is not None:
        meta["manifest_fingerprint"] = state_manifest_fingerprint
    (state / "meta.json").write_text(json.dumps(meta))
    (state / "sellers.parquet").write_bytes(b"stub")
    return directory


@pytest.fixture(scope="session")
def frames() -> tuple[pd.DataFrame, pd.DataFrame, FeatureManifest]:
    return make_frames()


@pytest.fixture(scope="session")
def census_frames() -> tuple[pd.DataFrame, pd.DataFrame, FeatureManifest]:
    return make_census_frames()


def registry_world(root: Path, truth: pd.DataFrame) -> dict[str, Any]:
    """A registry test's place: the ground truth, params.yaml (``REGISTRY_PARAMS``) and a
    SQLite MLflow store under ``root``: {root, truth_path, params_path, settings, uri}."""
    import yaml

    from features.params import load_settings

    truth_path = root / "truth.parquet"
    truth.to_parquet(truth_path)
    params_path = root / "params.yaml"
    params_path.write_text(yaml.safe_dump(REGISTRY_PARAMS))
    return {
        "root": root,
        "truth_path": truth_path,
        "params_path": params_path,
        "settings": load_settings(params_path),
        "uri": f"sqlite:///{root / 'mlflow.db'}",
    }
