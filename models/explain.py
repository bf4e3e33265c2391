"""Global explanations and report plots of a trained model, written as files for MLflow.

Heavy imports (shap, matplotlib) happen inside the functions: this module is never imported
by the service.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from models.bundle import RiskModel
from models.metrics import calibration_table, capacity_curve

log = logging.getLogger(__name__)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def global_shap(
    model: RiskModel, X: np.ndarray, out_dir: Path, sample: int = 2000, seed: int = 0
) -> pd.DataFrame:
    """Mean |SHAP| per feature (CSV) and a beeswarm summary (PNG) on a seeded sample of rows."""
    import shap

    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rows = rng.choice(len(X), size=min(sample, len(X)), replace=False) if len(X) else []
    X_sample = pd.DataFrame(X[np.sort(rows)], columns=model.manifest.names)
    explainer = shap.TreeExplainer(model.risk_booster)
    with warnings.catch_warnings():  # shap announces its LightGBM output format on every call
        warnings.simplefilter("ignore", UserWarning)
        values = np.asarray(explainer.shap_values(X_sample))
    if values.ndim == 3:  # some shap versions return one array per class
        values = values[-1]
    table = pd.DataFrame(
        {
            "feature": model.manifest.names,
            "group": [f.group for f in model.manifest.features],
            "mean_abs_shap": np.abs(values).mean(axis=0),
        }
    ).sort_values("mean_abs_shap", ascending=False, ignore_index=True)
    table.to_csv(out_dir / "shap_mean_abs.csv", index=False)
    plt = _pyplot()
    shap.summary_plot(values, X_sample, show=False, max_display=20)
    plt.gcf().set_size_inches(9, 7)
    plt.tight_layout()
    plt.savefig(out_dir / "shap_summary.png", dpi=110)
    plt.close("all")
    return table


def calibration_plot(prob: np.ndarray, illicit: np.ndarray, path: Path, title: str) -> Path:
    """Reliability diagram: observed hit rate against mean predicted probability per bin."""
    plt = _pyplot()
    table = calibration_table(prob, illicit)
    fig, ax = plt.subplots(figsize=(5, 5))
    top = max(0.05, float(table["mean_prob"].max()), float(table["hit_rate"].max()))
    ax.plot([0, top], [0, top], ls="--", color="grey", lw=1, label="perfect")
    ax.plot(table["mean_prob"], table["hit_rate"], marker="o", label="model")
    for _, row in table.iterrows():
        ax.annotate(f"{int(row.parcels)}", (row.mean_prob, row.hit_rate), fontsize=7)
    ax.set(xlabel="predicted risk", ylabel="observed hit rate", title=title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def capacity_plot(
    curves: dict[str, tuple[np.ndarray, np.ndarray]], path: Path, title: str, ylabel: str
) -> Path:
    """Share of illicit parcels (or revenue) caught against the share of traffic inspected."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 5))
    for name, (x, y) in curves.items():
        ax.plot(x * 100, y * 100, label=name)
    ax.set(xlim=(0, 20), xlabel="% of parcels inspected", ylabel=ylabel, title=title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def report_plots(predictions: pd.DataFrame, out_dir: Path) -> list[Path]:
    """Calibration and capacity plots from the test-period predictions of ``TrainResult``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    # the unbiased test parcels: random exploration, or all of them in a census
    column = "unbiased_sample" if "unbiased_sample" in predictions else "random_exploration"
    rnd = predictions[column].to_numpy(bool)
    y_rec = predictions["illicit"].astype("boolean").fillna(False).to_numpy(float)
    if rnd.sum() > 0:
        paths.append(
            calibration_plot(
                predictions.loc[rnd, "model_risk"].to_numpy(),
                y_rec[rnd],
                out_dir / "calibration_random.png",
                "Calibration on unbiased test parcels (random exploration or census)",
            )
        )
    scorers = [c[: -len("_risk")] for c in predictions.columns if c.endswith("_risk")]
    if "truth_illicit" in predictions.columns:
        y = predictions["truth_illicit"].astype("boolean").fillna(False).to_numpy(float)
        revenue = predictions["truth_revenue_at_stake"].to_numpy(float, na_value=0.0) * y
        p = predictions["truth_p_illicit"].to_numpy(float)
        paths.append(
            calibration_plot(
                predictions["model_risk"].to_numpy(),
                y,
                out_dir / "calibration_all.png",
                "Calibration on all test parcels (ground truth)",
            )
        )
        stake = (
            "truth_revenue_if_illicit"
            if "truth_revenue_if_illicit" in predictions.columns
            else "truth_revenue_at_stake"
        )
        oracle_value = p * predictions[stake].to_numpy(float, na_value=0.0)
        illicit_curves = {s: capacity_curve(predictions[f"{s}_risk"], y) for s in scorers}
        illicit_curves["oracle"] = capacity_curve(p, y)
        revenue_curves = {s: capacity_curve(predictions[f"{s}_value"], revenue) for s in scorers}
        revenue_curves["oracle"] = capacity_curve(oracle_value, revenue)
    else:
        y_r, rev_r = y_rec[rnd], predictions["revenue_recovered"].to_numpy(float, na_value=0.0)[rnd]
        illicit_curves = {
            s: capacity_curve(predictions.loc[rnd, f"{s}_risk"], y_r) for s in scorers
        }
        revenue_curves = {
            s: capacity_curve(predictions.loc[rnd, f"{s}_value"], rev_r) for s in scorers
        }
    paths.append(
        capacity_plot(
            illicit_curves,
            out_dir / "capacity_illicit.png",
            "Capacity curve",
            "% of illicit caught",
        )
    )
    paths.append(
        capacity_plot(
            revenue_curves,
            out_dir / "capacity_revenue.png",
            "Capacity curve",
            "% of revenue caught",
        )
    )
    return paths
