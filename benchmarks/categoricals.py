"""Ablation: how to give the model the tariff line (HS6, 4-digit heading) on two kinds of data.

Variants, each trained with the project's own ``train_models`` on the same features:
- ``no_hs_categories``: HS only through entity histories (HS chapter and HS6 hit rates,
  point-in-time) and reference prices: the project before native HS categoricals;
- ``native_default``: + HS6 and heading as native LightGBM categoricals, LightGBM's default
  categorical regularisation;
- ``native_smoothed``: the same with stronger smoothing (params.yaml ``train.lightgbm``
  ``cat_smooth`` / ``min_data_per_group``): rare codes pool instead of getting their own split;
- ``heading_history``: no native HS categoricals, a point-in-time history of the heading and of
  HS6 x origin instead (a smoothed, leak-free target encoding);
on the demo data (about 8,000 labels, metrics against the generator's truth) and on foreign
census exports (every parcel labelled, metrics on all test parcels), over seeds.

    python benchmarks/categoricals.py [--foreign-seeds 1 2 3] [--skip-demo]

Prints one JSON object: per dataset and variant precision@5%/@10% (and model/oracle on the
demo), then means.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
# run as a script, the benchmarks folder comes first on sys.path, where benchmarks/features.py
# and benchmarks/serving.py would shadow the packages they measure
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
HS_CATEGORIES = ("cat_hs6", "cat_hs_heading")
SMOOTHED = {"cat_smooth": 50, "min_data_per_group": 200}
log = logging.getLogger("categoricals")


# A throwaway consignee pseudonym key when none is configured: the benchmark makes its own
# data, so no key file is needed (a PARCELRISK_PSEUDONYM_KEY already set is used instead).
os.environ.setdefault("PARCELRISK_PSEUDONYM_KEY", "benchmark-throwaway-pseudonym-key-" + "0" * 32)


def _params() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "params.yaml").read_text())


def _train(frame, manifest, train_section: dict[str, Any], truth) -> dict[str, float]:
    from features.params import TrainParams
    from models.train import train_models

    result = train_models(frame, manifest, TrainParams.from_dict(train_section), truth)
    evaluation = "test_all" if truth is not None else "test_random"
    out = {
        k: round(result.metrics[f"{evaluation}.model.{k}"], 4)
        for k in ("precision_at_5", "precision_at_10", "roc_auc")
    }
    if truth is not None:
        out["ratio_precision_at_5"] = round(result.metrics["test_all.ratio.precision_at_5"], 4)
        out["ratio_revenue_at_5"] = round(result.metrics["test_all.ratio.revenue_at_5"], 4)
    return out


def _variants(features_params, declarations, contract, truth, train_section) -> dict[str, Any]:
    from features.pipeline.build import build_features

    lightgbm = {k: v for k, v in train_section["lightgbm"].items() if k not in SMOOTHED}
    plain = {**train_section, "lightgbm": lightgbm}
    smoothed = {**train_section, "lightgbm": {**lightgbm, **SMOOTHED}}
    categorical = features_params.replace(
        categoricals=tuple(dict.fromkeys((*features_params.categoricals, "hs6", "hs_heading"))),
    )
    built = build_features(declarations, contract, categorical)
    frame, manifest = built.frame, built.manifest
    without = manifest.select([n for n in manifest.names if n not in HS_CATEGORIES])
    history = features_params.replace(
        categoricals=tuple(
            c for c in features_params.categoricals if c not in ("hs6", "hs_heading")
        ),
        entities=(*features_params.entities, "hs_heading", "hs6*origin_country"),
    )
    built_history = build_features(declarations, contract, history)
    out = {}
    for name, (f, m, section) in {
        "no_hs_categories": (frame, without, plain),
        "native_default": (frame, manifest, plain),
        "native_smoothed": (frame, manifest, smoothed),
        "heading_history": (built_history.frame, built_history.manifest, plain),
    }.items():
        started = time.perf_counter()
        out[name] = {
            **_train(f, m, section, truth),
            "seconds": round(time.perf_counter() - started, 1),
        }
        log.info("%s: %s", name, out[name])
    return out


def demo(params: dict[str, Any]) -> dict[str, Any]:
    from features.params import FeatureParams
    from features.synthetic import SyntheticParams, generate

    declarations, truth = generate(SyntheticParams(seed=42, parcels=300_000, days=180))
    from features.intake.contract import Contract

    return _variants(
        FeatureParams.from_dict(params["features"]),
        declarations,
        Contract(),
        truth,
        params["train"],
    )


def foreign(params: dict[str, Any], seed: int, work: Path) -> dict[str, Any]:
    import importlib.util
    import subprocess

    spec = importlib.util.spec_from_file_location("foreign_export", HERE / "foreign_export.py")
    fx = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fx)

    from features.intake.io import read_declarations
    from features.params import FeatureParams
    from features.synthetic import SyntheticParams, generate

    declarations, truth = generate(SyntheticParams(seed=seed, parcels=80_000, days=240))
    csv = work / f"export_{seed}.csv"
    fx.write_export(fx.export_foreign(declarations, truth, seed), csv)
    ingested = work / f"declarations_{seed}.parquet"
    subprocess.run(
        [
            fx._parcelrisk(),
            "ingest",
            str(csv),
            "--mapping",
            str(ROOT / "benchmarks" / "foreign_export_mapping.yaml"),
            "--out",
            str(ingested),
        ],
        check=True,
        capture_output=True,
    )
    canonical, contract = read_declarations(ingested)
    features_params = FeatureParams.from_dict({**params["features"], "timezone": "Asia/Seoul"})
    return _variants(features_params, canonical, contract, None, params["train"])


def _means(runs: list[dict[str, Any]]) -> dict[str, Any]:
    out = {}
    for variant in runs[0]:
        out[variant] = {
            k: round(float(np.mean([r[variant][k] for r in runs])), 4)
            for k in runs[0][variant]
            if k != "seconds"
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--foreign-seeds", type=int, nargs="*", default=[1, 2, 3])
    parser.add_argument("--skip-demo", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(message)s")
    logging.getLogger("models").setLevel(logging.ERROR)
    params = _params()
    report: dict[str, Any] = {"benchmark": "categoricals", "smoothed": SMOOTHED}
    if not args.skip_demo:
        report["demo"] = demo(params)
    with tempfile.TemporaryDirectory(prefix="parcelrisk-cat-") as tmp:
        runs = [foreign(params, seed, Path(tmp)) for seed in args.foreign_seeds]
    report["foreign"] = {
        "seeds": args.foreign_seeds,
        "runs": runs,
        "mean": _means(runs) if runs else {},
    }
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
