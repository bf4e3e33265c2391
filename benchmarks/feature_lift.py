"""How much the engineered features add over raw declaration fields (quick LightGBM, same split).

Trains the same LightGBM on (a) raw declaration fields only (declaration + calendar groups and the
declared value in EUR) and (b) the full manifest, on inspected parcels of the first 70% of the
period, and reports precision@5% on the inspected test parcels and against the generator's ground
truth on all test parcels (oracle beside). Prints JSON.
Usage: python benchmarks/feature_lift.py [--parcels 300000] [--days 180]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))
# run as a script, the benchmarks folder comes first on sys.path, where benchmarks/features.py
# and benchmarks/serving.py would shadow the packages they measure
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "benchmarks"]

# A throwaway consignee pseudonym key when none is configured: the benchmark makes its own
# data, so no key file is needed (a PARCELRISK_PSEUDONYM_KEY already set is used instead).
os.environ.setdefault("PARCELRISK_PSEUDONYM_KEY", "benchmark-throwaway-pseudonym-key-" + "0" * 32)


def main() -> None:
    import lightgbm as lgb

    from features.intake.contract import Contract
    from features.params import FeatureParams
    from features.pipeline.build import build_features
    from features.synthetic import SyntheticParams, generate
    from models.metrics import precision_at

    parser = argparse.ArgumentParser()
    parser.add_argument("--parcels", type=int, default=300_000)
    parser.add_argument("--days", type=int, default=180)
    args = parser.parse_args()
    started = time.perf_counter()
    declarations, truth = generate(SyntheticParams(seed=42, parcels=args.parcels, days=args.days))
    built = build_features(declarations, Contract(), FeatureParams())
    frame = built.frame.merge(truth, on="declaration_id", how="left", suffixes=("", "_truth"))
    manifest = built.manifest
    raw = [s.name for s in manifest.features if s.group in ("declaration", "calendar")] + [
        "value_eur"
    ]
    cut = frame["declared_at"].quantile(0.7)
    train = frame[(frame["declared_at"] < cut) & frame["inspected"]]
    test = frame[frame["declared_at"] >= cut]
    test_inspected = test[test["inspected"]]
    out = {"parcels": args.parcels, "train_labelled": len(train), "test_parcels": len(test)}
    for label, names in (("raw_fields", raw), ("full_features", manifest.names)):
        cats = [n for n in names if n in manifest.categorical_names]
        model = lgb.LGBMClassifier(
            n_estimators=300,
            learning_rate=0.05,
            num_leaves=31,
            min_child_samples=30,
            subsample=0.8,
            subsample_freq=1,
            colsample_bytree=0.8,
            verbose=-1,
            random_state=1,
        )
        model.fit(train[names], train["illicit"].astype(int), categorical_feature=cats or "auto")
        s_insp = model.predict_proba(test_inspected[names])[:, 1]
        s_all = model.predict_proba(test[names])[:, 1]
        out[label] = {
            "features": len(names),
            "precision_at_5_inspected": round(
                precision_at(s_insp, test_inspected["illicit"].astype(int).to_numpy(), 0.05), 4
            ),
            "precision_at_5_truth": round(
                precision_at(s_all, test["illicit_truth"].astype(int).to_numpy(), 0.05), 4
            ),
        }
    out["oracle_precision_at_5_truth"] = round(
        precision_at(
            test["p_illicit"].to_numpy(), test["illicit_truth"].astype(int).to_numpy(), 0.05
        ),
        4,
    )
    out["seconds"] = round(time.perf_counter() - started, 1)
    print(json.dumps({"benchmark": "feature_lift", **out}, indent=1))


if __name__ == "__main__":
    main()
