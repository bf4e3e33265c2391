"""DATE's layout (KDD 2020): the project on defaults vs DATE's tree stage, on a census export.

DATE ("Dual-Attentive Tree-aware Embedding for customs fraud detection", Kim, Tsai et al.,
KDD 2020) ships synthetic import declarations in 14 columns: ``sgd.id``, ``sgd.date``
(``13-01-02``), ``importer.id``, ``declarant.id``, ``country`` (its own codes, ``CNTRY376``),
``office.id``, ``tariff.code`` (10 digits written as an integer: chapters 01-09 lose their
leading zero), ``quantity``, ``gross.weight``, ``fob.value``, ``cif.value``, ``total.taxes`` (USD),
``illicit`` and ``revenue`` on every row. Per seed: generate a history, write it in that layout
(ISO-8859-1, as DATE's file), draft a mapping with ``parcelrisk mapping draft`` (how far it is
from ``benchmarks/date_layout_mapping.yaml``, informative only), then run the project through
the CLI as a user would (ingest with the hand-written mapping, validate, features build, train,
promote) in a work directory with its own MLflow store. Beside it, DATE's tree stage computed
from the CSV itself (their ``preprocess_data.py``: unit prices, tax and FOB/CIF ratios, HS6/4/2,
day/week/month of year, raw amounts, and ``RiskH.*`` flags for the top 10% of keys by smoothed
illicit rate on the train period), fitted with LightGBM standing in for their XGBoost, on the
project's split; and the same with point-in-time flags (from results known before each day).
All are scored on all test parcels against the census labels: precision@5%/@10% and revenue@5%
(share of the test period's revenue in the top 5%), with the oracle (the generator's truth).

Prints one JSON object on stdout; progress goes to stderr. A failing pipeline step stops the run
with one line naming the step and the tail of its stderr.
Usage: python benchmarks/date_layout.py [--seeds 1 2 3] [--parcels 80000] [--days 240] [--out DIR]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


def _load_foreign_export() -> ModuleType:
    """``benchmarks/foreign_export.py`` as a module: its CLI-step runner, the MLflow read-back,
    the broker derivation and the reference's LightGBM settings are shared, not copied (it also
    puts the repo on sys.path and sets the throwaway pseudonym key this benchmark needs too)."""
    spec = importlib.util.spec_from_file_location("foreign_export", HERE / "foreign_export.py")
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {HERE / 'foreign_export.py'}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while it executes
    spec.loader.exec_module(module)
    return module


fe = _load_foreign_export()

from features.params import DEFAULT_FX_TO_BASE  # noqa: E402
from models.metrics import precision_at, revenue_at  # noqa: E402

log = logging.getLogger("date_layout")

MAPPING = HERE / "date_layout_mapping.yaml"
EXPORT_FILE = "date_declarations.csv"
ENCODING = "ISO-8859-1"  # DATE's preprocess_data.py reads its file so
TIMEZONE = "UTC"  # the mapping's; features.timezone is set to it in the work dir's params
SHARES = {"precision_at_5": 0.05, "precision_at_10": 0.10}
REVENUE_SHARES = {"revenue_at_5": 0.05}
METRICS = (*SHARES, *REVENUE_SHARES)
# validate.max_revenue when the gate finds revenues above the repo's bound (none expected: the
# generator's values are parcels', and DATE's real files hold consignments)
BULK_MAX_REVENUE = 10_000_000.0

# ------------------------------------------------------------------------------------------------
# The export in DATE's layout
# ------------------------------------------------------------------------------------------------

COLUMNS = (
    "sgd.id",
    "sgd.date",
    "importer.id",
    "declarant.id",
    "country",
    "office.id",
    "tariff.code",
    "quantity",
    "gross.weight",
    "fob.value",
    "cif.value",
    "total.taxes",
    "illicit",
    "revenue",
)
USD_PER_BASE = 1.0 / DEFAULT_FX_TO_BASE["USD"]
FOB_CIF_MEAN, FOB_CIF_SD = 0.8, 0.1  # fob = cif x min(N(0.8, 0.1), 1), as DATE's generator
DUTY_RATES = (0.0, 0.025, 0.05, 0.1, 0.15, 0.2, 0.35)  # one drawn per HS chapter and seed
# The export's own country numbers: one fixed draw for every ISO code, so CNTRY codes are the
# same in every seed (a country keeps its code across an administration's exports).
COUNTRY_NUMBER_SEED = 376


@dataclass(frozen=True)
class DateExport:
    """The export (DATE's 14 columns) and the truth of each row for the oracle."""

    table: pd.DataFrame
    truth: pd.DataFrame  # sgd.id, p_illicit, revenue_if_illicit (USD)


def country_codes() -> dict[str, str]:
    """ISO 3166 alpha-2 -> the export's own code (``CNTRY`` + a 3-digit number), fixed."""
    from features.intake.iso3166 import ALPHA2

    iso = sorted({*ALPHA2, "XK"})
    numbers = np.random.default_rng(COUNTRY_NUMBER_SEED).choice(
        np.arange(100, 1000), len(iso), replace=False
    )
    return {code: f"CNTRY{number}" for code, number in zip(iso, numbers, strict=True)}


def _office_codes(offices: pd.Series) -> np.ndarray:
    """``OFFICE`` + a number per arrival office: the generator's offices in its own order first,
    so an office keeps its number across seeds."""
    from features.synthetic.world import OFFICES

    known = list(OFFICES) + sorted(set(offices.dropna()) - set(OFFICES))
    number = {office: 11 + 5 * i for i, office in enumerate(known)}
    return ("OFFICE" + offices.map(number).astype("Int64").astype(str)).to_numpy(dtype=object)


def export_date_layout(declarations: pd.DataFrame, truth: pd.DataFrame, seed: int) -> DateExport:
    """Rewrite a generated history in DATE's layout: one row per declaration, USD amounts.

    Every declaration is labelled from the TRUE label (a census), not the generator's legacy
    inspections; ``revenue`` is the revenue at stake of the illicit ones, 0 on the others.
    """
    rng = np.random.default_rng([seed, 68, 65])  # "DA", independent of the generator's stream
    truth = truth.set_index("declaration_id").reindex(declarations["declaration_id"])
    n = len(declarations)

    to_usd = declarations["currency"].map(DEFAULT_FX_TO_BASE).to_numpy(np.float64) * USD_PER_BASE
    cif = np.round(declarations["declared_value"].to_numpy(np.float64) * to_usd, 2)
    fob = np.round(cif * np.minimum(rng.normal(FOB_CIF_MEAN, FOB_CIF_SD, n), 1.0), 2)
    chapter = declarations["hs_code"].str[:2].astype(int).to_numpy()
    taxes = np.round(cif * rng.choice(DUTY_RATES, 100)[chapter], 2)
    revenue = np.round(truth["revenue_at_stake"].to_numpy(np.float64) * USD_PER_BASE, 2)

    importer, _ = pd.factorize(declarations["consignee_id"])
    high_risk = fe._high_risk_sellers(declarations["seller_id"], truth["p_illicit"])
    broker = fe._broker_ids(rng, declarations["seller_id"], high_risk)
    ids = np.char.mod("SGD%d", np.arange(1, n + 1)).astype(object)
    table = pd.DataFrame(
        {
            "sgd.id": ids,
            "sgd.date": declarations["declared_at"].dt.tz_convert(TIMEZONE).dt.strftime("%y-%m-%d"),
            "importer.id": np.where(
                importer >= 0, np.char.mod("IMP%d", importer + 10_001).astype(object), None
            ),
            "declarant.id": ("DEC" + pd.Series(broker, dtype=object)).to_numpy(dtype=object),
            "country": declarations["origin_country"].map(country_codes()).to_numpy(dtype=object),
            "office.id": _office_codes(declarations["arrival_office"]),
            "tariff.code": declarations["hs_code"].str.ljust(10, "0").astype(np.int64).to_numpy(),
            "quantity": declarations["quantity"].to_numpy(),
            "gross.weight": np.round(declarations["gross_weight_kg"].to_numpy(np.float64), 3),
            "fob.value": fob,
            "cif.value": cif,
            "total.taxes": taxes,
            "illicit": truth["illicit"].to_numpy(dtype=bool).astype(np.int64),
            "revenue": revenue,
        },
        columns=list(COLUMNS),
    )
    return DateExport(
        table=table,
        truth=pd.DataFrame(
            {
                "sgd.id": ids,
                "p_illicit": truth["p_illicit"].to_numpy(np.float64),
                "revenue_if_illicit": truth["revenue_if_illicit"].to_numpy(np.float64)
                * USD_PER_BASE,
            }
        ),
    )


def write_export(export: DateExport, path: Path) -> None:
    """CSV, ISO-8859-1, comma-separated, as DATE's ``synthetic-imports-declarations.csv``."""
    export.table.to_csv(path, index=False, encoding=ENCODING, na_rep="")


# ------------------------------------------------------------------------------------------------
# DATE's tree stage, from the CSV itself
# ------------------------------------------------------------------------------------------------

# DATE's preprocess_data.py: the numeric columns its XGBoost is given (beside the RiskH flags).
TREE_FEATURES = (
    "fob.value",
    "cif.value",
    "total.taxes",
    "gross.weight",
    "quantity",
    "Unitprice",
    "WUnitprice",
    "TaxRatio",
    "FOBCIFRatio",
    "TaxUnitquantity",
    "tariff.code",
    "HS6",
    "HS4",
    "HS2",
    "SGD.DayofYear",
    "SGD.WeekofYear",
    "SGD.MonthofYear",
)
# The keys of its risk profiles; the ``&`` ones are concatenations without a separator, as its
# merge_attributes writes them.
PROFILE_KEYS = (
    "importer.id",
    "declarant.id",
    "HS6.Origin",
    "tariff.code",
    "quantity",
    "HS6",
    "HS4",
    "HS2",
    "office.id",
    "office.id&importer.id",
    "office.id&HS6",
    "office.id&country",
)
PROFILE_TOP_SHARE = 0.1  # flag the top int(0.1 x keys) + 1 keys
PROFILE_SMOOTHING = 10.0  # illicit rate = sum / (count + 10)
# DATE fits XGBClassifier(n_estimators=100, max_depth=4): the reference's LightGBM settings with
# its depth, early-stopped on the validation period instead of a fixed 100 trees.
TREE_STAGE_LGB = {**fe.REFERENCE_LGB, "max_depth": 4}
MAX_ROUNDS = 2000
EARLY_STOPPING_ROUNDS = 100


def tree_stage_columns(table: pd.DataFrame) -> pd.DataFrame:
    """DATE's engineered numeric columns (``TREE_FEATURES``) of the export, as it computes them:
    ratios over a zero are NaN or inf, left to ``np.nan_to_num`` at fitting."""
    cif, qty = table["cif.value"].astype(float), table["quantity"].astype(float)
    taxes = table["total.taxes"].astype(float)
    date = pd.to_datetime(table["sgd.date"], format="%y-%m-%d")
    day = date.dt.day_of_year - 1  # days since 1 January of the date's year
    hs6 = table["tariff.code"] // 10_000
    with np.errstate(divide="ignore", invalid="ignore"):
        columns = {
            "fob.value": table["fob.value"].astype(float),
            "cif.value": cif,
            "total.taxes": taxes,
            "gross.weight": table["gross.weight"].astype(float),
            "quantity": qty,
            "Unitprice": cif / qty,
            "WUnitprice": cif / table["gross.weight"].astype(float),
            "TaxRatio": taxes / cif,
            "FOBCIFRatio": table["fob.value"].astype(float) / cif,
            "TaxUnitquantity": taxes / qty,
            "tariff.code": table["tariff.code"].astype(float),
            "HS6": hs6.astype(float),
            "HS4": (hs6 // 100).astype(float),
            "HS2": (hs6 // 10_000).astype(float),
            "SGD.DayofYear": day.astype(float),
            "SGD.WeekofYear": (day // 7).astype(float),
            "SGD.MonthofYear": (day // 30).astype(float),
        }
    return pd.DataFrame(columns, index=table.index)[list(TREE_FEATURES)]


def profile_keys(table: pd.DataFrame) -> pd.DataFrame:
    """The text key of each risk profile (``PROFILE_KEYS``) per row."""
    hs6 = (table["tariff.code"] // 10_000).astype(str)
    text = {c: table[c].astype(str) for c in ("importer.id", "declarant.id", "office.id")}
    keys = {
        **text,
        "HS6.Origin": hs6 + "&" + table["country"].astype(str),
        "tariff.code": table["tariff.code"].astype(str),
        "quantity": table["quantity"].astype(str),
        "HS6": hs6,
        "HS4": (table["tariff.code"] // 1_000_000).astype(str),
        "HS2": (table["tariff.code"] // 100_000_000).astype(str),
        "office.id&importer.id": text["office.id"] + text["importer.id"],
        "office.id&HS6": text["office.id"] + hs6,
        "office.id&country": text["office.id"] + table["country"].astype(str),
    }
    return pd.DataFrame(keys, index=table.index)[list(PROFILE_KEYS)]


def _top_keys(hits: np.ndarray, count: np.ndarray) -> np.ndarray:
    """Indices of the top ``int(0.1 x keys) + 1`` keys (those with ``count > 0``) by smoothed
    illicit rate; ties in DATE's order (a stable sort of the keys)."""
    seen = np.flatnonzero(count > 0)
    rate = hits[seen] / (count[seen] + PROFILE_SMOOTHING)
    n_top = int(PROFILE_TOP_SHARE * len(seen)) + 1
    return seen[np.argsort(-rate, kind="stable")[:n_top]]


def train_period_flags(keys: pd.DataFrame, y: np.ndarray, train: np.ndarray) -> pd.DataFrame:
    """DATE's ``RiskH.<key>``: 1 where the key is among the train period's riskiest keys.

    The flags of train rows come from their own labels, as in DATE (its tree stage learns how
    far to trust them on the rows that made them).
    """
    flags = {}
    for name in keys.columns:
        code, _ = pd.factorize(keys[name])
        n_keys = int(code.max()) + 1
        hits = np.bincount(code[train], weights=y[train], minlength=n_keys)
        count = np.bincount(code[train], minlength=n_keys).astype(np.float64)
        risky = np.zeros(n_keys, dtype=bool)
        risky[_top_keys(hits, count)] = True
        flags[f"RiskH.{name}"] = risky[code].astype(np.float64)
    return pd.DataFrame(flags, index=keys.index)


def point_in_time_flags(keys: pd.DataFrame, y: np.ndarray, day: np.ndarray) -> pd.DataFrame:
    """``RiskH.<key>`` of each row from the results of earlier days only (a result of a date-only
    declaration counts from the next day), every period alike, as the project's features."""
    _, day_index = np.unique(day, return_inverse=True)
    by_day = np.split(np.argsort(day_index, kind="stable"), np.cumsum(np.bincount(day_index))[:-1])
    flags = {}
    for name in keys.columns:
        code, _ = pd.factorize(keys[name])
        n_keys = int(code.max()) + 1
        hits, count = np.zeros(n_keys), np.zeros(n_keys)
        out = np.zeros(len(code))
        for rows in by_day:
            if count.any():
                risky = np.zeros(n_keys, dtype=bool)
                risky[_top_keys(hits, count)] = True
                out[rows] = risky[code[rows]]
            np.add.at(count, code[rows], 1.0)
            np.add.at(hits, code[rows], y[rows])
        flags[f"RiskH.{name}"] = out
    return pd.DataFrame(flags, index=keys.index)


def tree_stage_scores(
    X: pd.DataFrame, y: np.ndarray, revenue: np.ndarray, parts: dict[str, np.ndarray], seed: int
) -> dict[str, Any]:
    """Fit on the train period, early-stop on validation, rank all test parcels by probability
    (precision and revenue from one ranking, as DATE evaluates its XGBoost stage)."""
    import lightgbm as lgb

    matrix = np.nan_to_num(X.to_numpy(np.float64), nan=0.0)  # DATE's np.nan_to_num(X, 0)
    train, valid, test = (parts[k] for k in ("train", "validation", "test"))
    booster = lgb.train(
        {**TREE_STAGE_LGB, "seed": seed},
        lgb.Dataset(matrix[train], y[train], feature_name=list(X.columns)),
        num_boost_round=MAX_ROUNDS,
        valid_sets=[lgb.Dataset(matrix[valid], y[valid], feature_name=list(X.columns))],
        callbacks=[lgb.early_stopping(EARLY_STOPPING_ROUNDS, verbose=False)],
    )
    score = booster.predict(matrix[test], num_iteration=booster.best_iteration)
    gain = booster.feature_importance("gain")
    top = sorted(zip(X.columns, gain / gain.sum(), strict=True), key=lambda kv: -kv[1])[:8]
    return {
        **{k: round(precision_at(score, y[test], s), 4) for k, s in SHARES.items()},
        **{k: round(revenue_at(score, revenue[test], s), 4) for k, s in REVENUE_SHARES.items()},
        "best_iteration": booster.best_iteration,
        "gain_share": {k: round(float(v), 3) for k, v in top},
    }


def date_references(
    export_path: Path, parts: dict[str, np.ndarray], seed: int
) -> dict[str, dict[str, Any]]:
    """DATE's tree stage from the CSV as written, with train-period and point-in-time flags.

    ``parts`` are the project's train/validation/test masks in the CSV's row order.
    """
    table = pd.read_csv(export_path, encoding=ENCODING)  # as DATE's preprocess_data.py reads it
    y = table["illicit"].to_numpy(np.float64)
    revenue = table["revenue"].to_numpy(np.float64)
    base = tree_stage_columns(table)
    keys = profile_keys(table)
    day = pd.to_datetime(table["sgd.date"], format="%y-%m-%d").to_numpy("datetime64[D]")
    arms = {
        "date_tree_stage": lambda: train_period_flags(keys, y, parts["train"]),
        "date_tree_stage_point_in_time": lambda: point_in_time_flags(keys, y, day.astype(int)),
    }
    out = {}
    for name, flags in arms.items():
        began = time.perf_counter()
        X = pd.concat([base, flags()], axis=1)
        out[name] = {
            **tree_stage_scores(X, y, revenue, parts, seed),
            "seconds": round(time.perf_counter() - began, 1),
        }
    sizes = {k: int(v.sum()) for k, v in parts.items()}
    out["date_tree_stage"].update({f"{k}_parcels": n for k, n in sizes.items()})
    # How much a train-period profile can know of a test parcel: its key seen in training.
    out["date_tree_stage"]["test_keys_seen_in_train"] = {
        name: round(
            float(keys.loc[parts["test"], name].isin(keys.loc[parts["train"], name]).mean()), 3
        )
        for name in ("importer.id", "declarant.id", "HS6.Origin")
    }
    return out


def oracle_scores(truth: pd.DataFrame, table: pd.DataFrame, test: np.ndarray) -> dict[str, float]:
    """The generator's truth on the test parcels: precision ranked by the true probability,
    revenue by probability x revenue if illicit (the project's fair revenue oracle)."""
    y = table["illicit"].to_numpy(np.float64)[test]
    revenue = table["revenue"].to_numpy(np.float64)[test]
    p = truth["p_illicit"].to_numpy(np.float64)[test]
    value = p * truth["revenue_if_illicit"].to_numpy(np.float64)[test]
    return {
        **{k: round(precision_at(p, y, s), 4) for k, s in SHARES.items()},
        **{k: round(revenue_at(value, revenue, s), 4) for k, s in REVENUE_SHARES.items()},
    }


# ------------------------------------------------------------------------------------------------
# The project's pipeline, through its CLI
# ------------------------------------------------------------------------------------------------


def write_params(out: Path, max_revenue: float | None = None) -> Path:
    """The repo's params.yaml with ``features.timezone`` set (and ``validate.max_revenue`` when
    given), its files made absolute for a run from ``out``'s directory."""
    import yaml

    from features.params import params_for_copy

    params = params_for_copy(REPO / "params.yaml")
    params.setdefault("features", {})["timezone"] = TIMEZONE
    if max_revenue is not None:
        params.setdefault("validate", {})["max_revenue"] = max_revenue
    out.write_text(yaml.safe_dump(params, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return out


def _spec(value: Any) -> Any:
    return value if isinstance(value, dict) else {"column": value}


def draft_distance(draft_text: str, mapping_text: str) -> dict[str, Any]:
    """How far a drafted mapping is from the hand-written one: each contract field the draft
    maps otherwise (or not at all) is a line to change, and each extra whose kind or amount
    differs (the names of extras are free)."""
    import yaml

    draft, mine = yaml.safe_load(draft_text) or {}, yaml.safe_load(mapping_text)
    theirs_cols, mine_cols = draft.get("columns") or {}, mine["columns"]
    fields = {
        f: {"draft": theirs_cols.get(f), "mapping": mine_cols.get(f)}
        for f in sorted(set(theirs_cols) | set(mine_cols))
        if f not in theirs_cols
        or f not in mine_cols
        or _spec(theirs_cols[f]) != _spec(mine_cols[f])
    }
    theirs_ex = {e["column"]: e for e in draft.get("extras") or []}
    extras = {}
    for extra in mine.get("extras") or []:
        got = theirs_ex.get(extra["column"])
        same = got is not None and all(
            got.get(k, False) == extra.get(k, False) for k in ("kind", "amount")
        )
        if not same:
            extras[extra["column"]] = {"draft": got, "mapping": extra}
    surplus = sorted(set(theirs_ex) - {e["column"] for e in mine.get("extras") or []})
    return {
        "lines_changed": len(fields) + len(extras) + len(surplus),
        "fields": fields,
        "extras": extras,
        "extras_not_kept": surplus,
    }


def draft_report(export_path: Path, work: Path, env: dict[str, str]) -> dict[str, Any]:
    """``parcelrisk mapping draft`` on the export: informative, never a failure of the run."""
    out = work / "draft_mapping.yaml"
    args = ["mapping", "draft", str(export_path), "--out", str(out), "--params", "params.yaml"]
    done, seconds = fe.run_step("draft", args, cwd=work, env=env, ok_codes=(0, 1, 2))
    report: dict[str, Any] = {"exit_code": done.returncode, "seconds": round(seconds, 1)}
    try:
        summary = json.loads(done.stderr[done.stderr.index("{") : done.stderr.rindex("}") + 1])
    except ValueError:
        summary = {}
        report["stderr_tail"] = fe._tail(done.stderr)
    report["required_not_found"] = summary.get("required_not_found")
    report["to_check"] = summary.get("to_check")
    report["tried"] = summary.get("tried")
    if out.exists():
        distance = draft_distance(out.read_text(encoding="utf-8"), MAPPING.read_text("utf-8"))
        report.update(distance)
    return report


def _warning_lines(text: str, limit: int = 12) -> list[str]:
    """The lines of a step's output that say WARNING (as the CLI logs them), first ``limit``."""
    lines = [ln.strip() for ln in text.splitlines() if re.search(r"\bwarn", ln, re.IGNORECASE)]
    return [ln[:400] for ln in lines[:limit]]


def _refused_for_revenue(done: subprocess.CompletedProcess[str]) -> bool:
    """The gate found faults, among them revenues above its bound (``validate.max_value``
    while ``validate.max_revenue`` is unset)."""
    fault = re.compile(r"^FAULT .*\(validate\.max_value\)", re.MULTILINE)
    return done.returncode == 1 and fault.search(done.stdout) is not None


def run_seed(seed: int, parcels: int, days: int, work: Path) -> dict[str, Any]:
    """Generate, export, run the project's pipeline and DATE's tree stage on one seed."""
    import yaml

    from features.intake.io import read_declarations
    from features.synthetic import SyntheticParams, generate

    began = time.perf_counter()
    seconds: dict[str, float] = {}
    if work.exists() and any(work.iterdir()):
        # a previous run's MLflow store would hold a champion: promote would compare against it
        raise fe.StepFailed(f"setup: {work} is not empty: remove it or give another --out")
    work.mkdir(parents=True, exist_ok=True)

    t = time.perf_counter()
    declarations, truth = generate(SyntheticParams(seed=seed, parcels=parcels, days=days))
    seconds["generate"] = time.perf_counter() - t
    t = time.perf_counter()
    export = export_date_layout(declarations, truth, seed)
    export_path = work / EXPORT_FILE
    write_export(export, export_path)
    seconds["export"] = time.perf_counter() - t
    del declarations, truth

    tracking_uri = f"sqlite:///{(work / 'mlflow.db').resolve()}"
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri, "PYTHONPATH": str(REPO)}
    params = write_params(work / "params.yaml")
    draft = draft_report(export_path, work, env)

    ingested = work / "declarations.parquet"
    features_dir = work / "features"
    train_metrics = work / "train_metrics.json"
    outputs: dict[str, subprocess.CompletedProcess[str]] = {}

    def step(name: str, args: list[str], ok: tuple[int, ...] = (0,)) -> None:
        outputs[name], seconds[name] = fe.run_step(name, args, cwd=work, env=env, ok_codes=ok)

    step("ingest", ["ingest", str(export_path), "--mapping", str(MAPPING), "--out", str(ingested), "--params", str(params)])  # fmt: skip
    validate_args = ["validate", str(ingested), "--report", str(work / "gate"), "--params", str(params)]  # fmt: skip
    step("validate", validate_args, (0, 1))
    max_revenue_set = None
    if _refused_for_revenue(outputs["validate"]):
        # revenues above the repo's plausibility bound: a property of the data, said in the JSON
        first_verdict = fe._tail(outputs["validate"].stdout)
        write_params(params, max_revenue=BULK_MAX_REVENUE)
        max_revenue_set = {"to": BULK_MAX_REVENUE, "first_verdict": first_verdict}
        step("validate", validate_args, (0, 1))
    if outputs["validate"].returncode != 0:
        raise fe.StepFailed(
            f"step 'validate' found faults (exit 1): {fe._tail(outputs['validate'].stdout)}"
        )
    step("features", ["features", "build", "--declarations", str(ingested), "--out", str(features_dir), "--params", str(params)])  # fmt: skip
    step("train", ["train", "--features", str(features_dir), "--params", str(params), "--metrics-out", str(train_metrics)])  # fmt: skip
    step("promote", ["promote", "--params", str(params)])
    promoted = re.search(r"version \S+: (\w+)", outputs["promote"].stdout)
    model_name = yaml.safe_load(params.read_text(encoding="utf-8"))["promote"]["model_name"]
    champion, boundaries = fe.registered_run(tracking_uri, model_name)
    project = project_metrics(champion, json.loads(train_metrics.read_text(encoding="utf-8")))

    t = time.perf_counter()
    try:
        frame, _ = read_declarations(ingested)
        parts = aligned_parts(frame, boundaries, export.table["sgd.id"])
        references = date_references(export_path, parts, seed)
    except fe.StepFailed:
        raise
    except Exception as exc:  # one line naming the step, like the CLI steps
        raise fe.StepFailed(f"step 'reference' failed: {type(exc).__name__}: {exc}") from exc
    seconds["references"] = time.perf_counter() - t
    oracle = oracle_scores(export.truth, export.table, parts["test"])

    seconds["total"] = time.perf_counter() - began
    reference = references["date_tree_stage"]
    return {
        "seed": seed,
        "parcels": parcels,
        "days": days,
        "project": project,
        **references,
        "oracle": oracle,
        "project_beats_date_tree_stage": {
            k.removeprefix("precision_"): project[k] > reference[k] for k in METRICS
        },
        "split": boundaries.to_dict(),
        "draft": draft,
        "warnings": {
            name: _warning_lines(outputs[name].stderr)
            for name in ("ingest", "features", "train", "promote")
        },
        "ingest_summary": _json_tail(outputs["ingest"].stdout),
        "validate": fe._validate_report(outputs["validate"]),
        "validate_max_revenue_set": max_revenue_set,
        "promote_outcome": promoted.group(1) if promoted else outputs["promote"].stdout.strip(),
        "seconds": {k: round(v, 1) for k, v in seconds.items()},
    }


def _json_tail(text: str) -> Any:
    """The JSON object a CLI step printed last on stdout (None when there is none)."""
    try:
        return json.loads(text[text.index("{") : text.rindex("}") + 1])
    except ValueError:
        return None


def project_metrics(champion: dict[str, float], reported: dict[str, float]) -> dict[str, float]:
    """The champion run's test metrics (census: ``test_random`` is every test parcel), revenue@5%
    from what ``train --metrics-out`` reported of the same run (checked by its precision)."""
    key = "test_random.model.{}"
    if not np.isclose(
        reported.get(key.format("precision_at_5"), np.nan), champion["precision_at_5"]
    ):
        raise fe.StepFailed("step 'mlflow': the champion is not the run train reported")
    missing = [k for k in REVENUE_SHARES if key.format(k) not in reported]
    if missing:
        raise fe.StepFailed(f"step 'train': --metrics-out has no {', '.join(missing)}")
    return {
        **{k: round(champion[k], 4) for k in SHARES},
        **{k: round(float(reported[key.format(k)]), 4) for k in REVENUE_SHARES},
        "test_parcels": int(reported.get("info.test_parcels", -1)),
    }


def aligned_parts(frame: pd.DataFrame, boundaries: Any, sgd_id: pd.Series) -> dict[str, np.ndarray]:
    """The project's train/validation/test parcels (its split of the ingested declarations) in
    the export's row order; ``sgd.id`` is the ingested ``declaration_id``.

    As ``train``'s first pass, the train and validation parcels exclude those whose result was
    recorded in the test period (the last validation day's: results count from the next day).
    """
    masks = boundaries.masks(frame["declared_at"])
    known_before_test = (frame["inspected_at"] < boundaries.test_start).to_numpy(dtype=bool)
    masks = {
        "train": masks["train"] & known_before_test,
        "validation": masks["validation"] & known_before_test,
        "test": masks["test"],
    }
    index = pd.Index(frame["declaration_id"].astype(str))
    position = index.get_indexer(sgd_id.astype(str))
    if (position < 0).any():
        raise fe.StepFailed(
            f"step 'reference': {int((position < 0).sum()):,} rows of the export are not in the "
            "ingested declarations"
        )
    return {k: np.asarray(m, dtype=bool)[position] for k, m in masks.items()}


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    sides = ("project", "date_tree_stage", "date_tree_stage_point_in_time", "oracle")

    def mean(side: str, key: str) -> float:
        return round(float(np.mean([r[side][key] for r in runs])), 4)

    return {
        "seeds": [r["seed"] for r in runs],
        **{side: {k: mean(side, k) for k in METRICS} for side in sides},
        "project_beats_date_tree_stage": {
            k.removeprefix("precision_"): sum(
                r["project"][k] > r["date_tree_stage"][k] for r in runs
            )
            for k in METRICS
        },
        "project_beats_point_in_time_arm": {
            k.removeprefix("precision_"): sum(
                r["project"][k] > r["date_tree_stage_point_in_time"][k] for r in runs
            )
            for k in METRICS
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--parcels", type=int, default=80_000)
    parser.add_argument("--days", type=int, default=240)
    parser.add_argument("--out", type=Path, default=None, help="keep the work files here")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(message)s")

    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="parcelrisk-date-") as tmp:
        root = Path(args.out) if args.out is not None else Path(tmp)
        runs = []
        try:
            for seed in args.seeds:
                log.info(
                    "seed %d: %d parcels over %d days in %s", seed, args.parcels, args.days, root
                )
                runs.append(run_seed(seed, args.parcels, args.days, root / f"seed_{seed}"))
        except fe.StepFailed as exc:
            print(f"date_layout: seed {seed}: {exc}", file=sys.stderr)
            sys.exit(1)
    result = {
        "benchmark": "date_layout",
        "seeds": runs,
        "summary": summarize(runs),
        "seconds": round(time.perf_counter() - began, 1),
    }
    print(json.dumps(result, indent=1, ensure_ascii=False))


if __name__ == "__main__":
    main()
