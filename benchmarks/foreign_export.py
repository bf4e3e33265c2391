"""A declaration export nobody on the team wrote: the project on defaults vs a plain reference model.

Per seed: generate a history, write it out as a foreign administration's CSV (Korean headers, KRW
values with thousands separators, local dates without time, census labels from the ground truth,
missing optional fields, empty ids, bulk consignments, coded transport modes, eight extra coded
columns), ingest it with ``benchmarks/foreign_export_mapping.yaml`` and run the pipeline through the
CLI as a user would (ingest, validate, features build, train, promote) in a work directory with
its own MLflow store. Beside it, a plain point-in-time LightGBM on the raw columns of the ingested
file (``reference_scores``), on the same split. Both are scored by precision@5%/@10% on all test
parcels against the census labels; the oracle (the generator's true probability) is shown beside.
Unless ``--skip-demo``, also the default demo history through the Python API, as today.

Prints one JSON object on stdout; progress goes to stderr. A failing pipeline step stops the run
with one line naming the step and the tail of its stderr.
Usage: python benchmarks/foreign_export.py [--seeds 1 2 3] [--parcels 80000] [--days 240]
       [--out DIR] [--skip-demo]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))
# run as a script, the benchmarks folder comes first on sys.path, where benchmarks/features.py
# and benchmarks/serving.py would shadow the packages they measure
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "benchmarks"]

from features.params import DEFAULT_FX_TO_BASE  # noqa: E402
from models.metrics import precision_at  # noqa: E402

log = logging.getLogger("foreign_export")

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
MAPPING = HERE / "foreign_export_mapping.yaml"
EXPORT_FILE = "customs_export.csv"
TIMEZONE = "Asia/Seoul"
SHARES = {"precision_at_5": 0.05, "precision_at_10": 0.10}

# ------------------------------------------------------------------------------------------------
# The foreign export
# ------------------------------------------------------------------------------------------------

KRW_PER_EUR = 1.0 / DEFAULT_FX_TO_BASE["KRW"]
SELLER_ID_EMPTY = 0.10  # share of rows whose overseas supplier id is missing
COURIER_ID_EMPTY = 0.70  # share of all rows without an express-courier id
BULK_SHARE = 0.003  # bulk consignments: net weight x 1,000-10,000 (capped at 10^6 kg)
SEA_EXPRESS_SHARE = 0.30  # CN/HK express parcels shipped by ferry (sea express)
HIGH_RISK_SELLER_QUANTILE = 0.90  # hidden seller risk: top 10% of sellers by mean p_illicit

# Generator office -> Korean customs office code (text: leading zeros are part of the code).
OFFICE_CODES = {
    "BEBRU01": "040",
    "DEFRA01": "020",
    "NLAMS01": "030",
    "FRCDG01": "010",
    "ITMXP01": "016",
    "ESMAD01": "041",
    "PLWAW01": "012",
    "DELEJ01": "602",
}
# Transport mode codes of the export; the mapping turns them into the contract's channel.
TRANSPORT_CODES = {
    "postal": "50",
    "express": "41",
    "courier": "43",
    "sea_express": "11",
    "sea_cargo": "10",
    "air_cargo": "40",
}
COURIER_CODES = {
    "EXP-01": "DHLK",
    "EXP-02": "FDXK",
    "EXP-03": "UPSK",
    "EXP-04": "EMSP",
    "COUR-01": "CJKX",
    "COUR-02": "HJLX",
    "COUR-03": "LTGX",
}
N_BROKERS = 40
N_COMPLICIT_BROKERS = 4
REGULATED_CHAPTERS = {"21": "MFDS", "30": "MFDS", "33": "MFDS", "93": "KNPA", "85": "KC"}

# Export header (Korean) -> what it holds. The order here is the file's column order.
HEADERS = {
    "화물관리번호": "cargo control number (not in the contract: unmapped)",
    "신고일자": "declaration date, local (Asia/Seoul), YYYY.MM.DD",
    "세관부호": "customs office code",
    "신고번호": "declaration number",
    "수입자부호": "importer (consignee) personal customs code",
    "수입자구분": "importer type: P individual, B business, A purchasing agent",
    "신고인부호": "declarant (customs broker) code",
    "운송수단": "transport mode code",
    "특송업체부호": "express-courier code (empty for postal and most other rows)",
    "세번부호": "HSK tariff code, 10 digits",
    "원산지": "origin country",
    "과세가격(원)": "customs value, KRW, thousands separators",
    "순중량": "net weight, kg",
    "해외공급자부호": "overseas supplier (seller) code",
    "공급자국가": "supplier country",
    "통관구분": "customs regime: L list clearance, G general import",
    "결제방법": "payment method code",
    "인도조건": "incoterm",
    "요건확인코드": "licence / requirement-confirmation code (empty: none needed)",
    "세율구분": "tariff rate code (A basic, C WTO, F* FTA)",
    "검사장소부호": "inspection site code",
    "적발여부": "offence found: 1/0 (every declaration inspected)",
    "처리담당자": "clerk id (unmapped)",
    "비고": "remarks (unmapped)",
}


# A throwaway consignee pseudonym key when none is configured: the benchmark makes its own
# data, so no key file is needed (a PARCELRISK_PSEUDONYM_KEY already set is used instead).
os.environ.setdefault("PARCELRISK_PSEUDONYM_KEY", "benchmark-throwaway-pseudonym-key-" + "0" * 32)


@dataclass(frozen=True)
class ForeignExport:
    """The export as text cells (header order) and the truth of each row for the oracle."""

    table: pd.DataFrame
    truth: pd.DataFrame  # declaration_id (export's), p_illicit, illicit


def _choice(rng: np.random.Generator, codes: list[str], weights: np.ndarray) -> np.ndarray:
    """Per row, one of ``codes`` drawn with that row's ``weights`` (rows x codes, rows sum to 1)."""
    cum = np.cumsum(weights, axis=1)
    pick = (rng.random(len(weights))[:, None] > cum).sum(axis=1)
    return np.asarray(codes, dtype=object)[np.minimum(pick, len(codes) - 1)]


def _rows(n: int, *probabilities: float) -> np.ndarray:
    return np.tile(np.asarray(probabilities, dtype=np.float64), (n, 1))


def _high_risk_sellers(seller_id: pd.Series, p_illicit: pd.Series) -> pd.Series:
    """Hidden per-seller risk: the top decile of sellers by their true mean p_illicit."""
    mean_p = p_illicit.groupby(seller_id.to_numpy()).mean()
    return mean_p >= mean_p.quantile(HIGH_RISK_SELLER_QUANTILE)


def _broker_ids(rng: np.random.Generator, seller_id: pd.Series, high_risk: pd.Series) -> np.ndarray:
    """Declarant per parcel: each seller's home broker (85% of its parcels), else a popular one.

    Signal: four small complicit brokers are the home broker of half the high-risk sellers and
    of 2% of the others, so their hit rate is high without being a seller id in disguise.
    """
    codes = np.array([f"{c:05d}" for c in rng.choice(99_999, N_BROKERS, replace=False)])
    popularity = 1.0 / np.arange(1, N_BROKERS + 1) ** 0.9
    complicit = np.arange(N_BROKERS - N_COMPLICIT_BROKERS, N_BROKERS)  # the least popular
    honest_p = popularity.copy()
    honest_p[complicit] = 0.0
    honest_p /= honest_p.sum()
    sellers = high_risk.index.to_numpy()
    risky = high_risk.to_numpy(dtype=bool)
    to_complicit = rng.random(len(sellers)) < np.where(risky, 0.5, 0.02)
    home = np.where(
        to_complicit,
        rng.choice(complicit, len(sellers)),
        rng.choice(N_BROKERS, len(sellers), p=honest_p),
    )
    home_of_row = pd.Series(home, index=sellers).reindex(seller_id.to_numpy()).to_numpy()
    any_broker = rng.choice(N_BROKERS, len(seller_id), p=popularity / popularity.sum())
    return codes[np.where(rng.random(len(seller_id)) < 0.85, home_of_row, any_broker)]


def _transport(
    rng: np.random.Generator, channel: pd.Series, seller_country: pd.Series, bulk: np.ndarray
) -> np.ndarray:
    """Transport mode code: the channel's code, sea express for some CN/HK express, bulk by sea/air."""
    code = channel.map(TRANSPORT_CODES).to_numpy(dtype=object)
    ferry = (
        (channel == "express").to_numpy()
        & seller_country.isin(["CN", "HK"]).to_numpy()
        & (rng.random(len(code)) < SEA_EXPRESS_SHARE)
    )
    code[ferry] = TRANSPORT_CODES["sea_express"]
    by_sea = rng.random(len(code)) < 0.7
    code[bulk & by_sea] = TRANSPORT_CODES["sea_cargo"]
    code[bulk & ~by_sea] = TRANSPORT_CODES["air_cargo"]
    return code


def _courier_ids(
    rng: np.random.Generator, operator_id: pd.Series, channel: pd.Series
) -> np.ndarray:
    """The express/courier operator's code on ~30% of all rows (express and courier rows only)."""
    ids = operator_id.map(COURIER_CODES).to_numpy(dtype=object)
    eligible = channel.isin(["express", "courier"]).to_numpy()
    keep = min(1.0, (1.0 - COURIER_ID_EMPTY) / max(eligible.mean(), 1e-9))
    ids[~eligible | (rng.random(len(ids)) >= keep)] = None
    return ids


def _extra_codes(
    rng: np.random.Generator,
    declarations: pd.DataFrame,
    p_illicit: np.ndarray,
    risky_seller: np.ndarray,
    value_eur: np.ndarray,
) -> dict[str, np.ndarray]:
    """The coded categoricals. Which carry hidden signal (beyond the declared fields) and which not:

    - 수입자구분 importer type: SIGNAL (per parcel): purchasing agents (A) are 5% of clean parcels
      and up to ~24% of the most likely illicit ones (P(A) = 0.05 + 0.2 x p_illicit).
    - 결제방법 payment method: SIGNAL (per seller): gift vouchers / virtual accounts (14) are 15% of
      the high-risk sellers' parcels, 4% of the others'.
    - 통관구분 customs regime: NO hidden signal: list clearance when the value is under 150 EUR,
      general import above, 5% recorded the other way at random.
    - 인도조건 incoterm: pure noise.
    - 요건확인코드 licence code: NO hidden signal: a code for regulated HS chapters on some parcels,
      empty otherwise (the mapping's ``default`` fills the empties).
    - 세율구분 tariff rate code: NO hidden signal: FTA codes by declared origin at random.
    - 검사장소부호 inspection site: pure noise (a site near the arrival office).
    (신고인부호, the broker, is an entity with per-seller signal: see ``_broker_ids``.)
    """
    n = len(declarations)
    p_agent = 0.05 + 0.2 * p_illicit
    importer = _choice(
        rng, ["A", "B", "P"], np.column_stack([p_agent, np.full(n, 0.12), 0.88 - p_agent])
    )
    p_voucher = np.where(risky_seller, 0.15, 0.04)
    rest = 1.0 - p_voucher
    payment = _choice(
        rng,
        ["14", "11", "12", "13"],
        np.column_stack([p_voucher, 0.55 * rest, 0.15 * rest, 0.30 * rest]),
    )
    regime = np.where(value_eur <= 150.0, "L", "G")
    flip = rng.random(n) < 0.05
    regime = np.where(flip, np.where(regime == "L", "G", "L"), regime).astype(object)
    incoterm = _choice(
        rng, ["FOB", "CIF", "EXW", "DAP", "DDP"], _rows(n, 0.3, 0.25, 0.1, 0.2, 0.15)
    )
    chapter = declarations["hs_code"].str[:2]
    authority = chapter.map(REGULATED_CHAPTERS).to_numpy(dtype=object)
    licensed = pd.notna(authority) & (rng.random(n) < 0.5)
    licence = np.where(
        licensed, authority.astype(str) + rng.integers(1, 4, n).astype(str), None
    ).astype(object)
    origin = declarations["origin_country"].to_numpy(dtype=object)
    fta = np.select(
        [
            origin == "CN",
            np.isin(origin, ["VN", "MY", "TH", "KH", "ID", "PH", "SG"]),
            origin == "US",
        ],
        ["FCN1", "FAS1", "FUS1"],
        "A",
    ).astype(object)
    tax = np.where(rng.random(n) < 0.6, fta, _choice(rng, ["A", "C"], _rows(n, 0.9, 0.1)))
    office = declarations["arrival_office"].map(OFFICE_CODES).to_numpy(dtype=object)
    site = office.astype(str) + np.char.mod("%02d", rng.integers(1, 6, n)).astype(object)
    return {
        "수입자구분": importer,
        "결제방법": payment,
        "통관구분": regime,
        "인도조건": incoterm,
        "요건확인코드": licence,
        "세율구분": tax.astype(object),
        "검사장소부호": site,
    }


def _thousands(values: np.ndarray) -> list[str]:
    return [f"{v:,}" for v in values.tolist()]


def export_foreign(declarations: pd.DataFrame, truth: pd.DataFrame, seed: int) -> ForeignExport:
    """Rewrite a generated history as the foreign administration's export (all cells as text).

    Every declaration is in it, labelled 0/1 from the TRUE label (a census), not the generator's
    legacy inspections; the date is the local (Asia/Seoul) date of the declaration.
    """
    rng = np.random.default_rng([seed, 82, 87])  # "KR", independent of the generator's stream
    truth = truth.set_index("declaration_id").reindex(declarations["declaration_id"])
    p_illicit = truth["p_illicit"].to_numpy(np.float64)
    illicit = truth["illicit"].to_numpy(dtype=bool)
    n = len(declarations)

    high_risk = _high_risk_sellers(declarations["seller_id"], truth["p_illicit"])
    risky_seller = high_risk.reindex(declarations["seller_id"].to_numpy()).to_numpy(dtype=bool)
    fx = declarations["currency"].map(DEFAULT_FX_TO_BASE).to_numpy(np.float64)
    value_eur = declarations["declared_value"].to_numpy(np.float64) * fx
    value_krw = np.maximum(np.rint(value_eur * KRW_PER_EUR), 1).astype(np.int64)
    bulk = rng.random(n) < BULK_SHARE
    weight = declarations["gross_weight_kg"].to_numpy(np.float64)
    weight = np.where(bulk, np.minimum(weight * rng.uniform(1_000, 10_000, n), 1e6), weight)

    seller_number = declarations["seller_id"].str[1:].astype(np.int64).to_numpy()
    seller = declarations["seller_country"].to_numpy(dtype=object) + np.char.mod(
        "%07d", seller_number
    ).astype(object)
    seller[rng.random(n) < SELLER_ID_EMPTY] = None
    # consignee ids are keyed pseudonyms by now (never the generator's numbers): one personal
    # customs code per distinct consignee, in order of first appearance
    consignee_code, _ = pd.factorize(declarations["consignee_id"])
    consignee = np.char.mod("P%012d", consignee_code + 1).astype(object)
    consignee[consignee_code < 0] = None
    local_date = declarations["declared_at"].dt.tz_convert(TIMEZONE).dt.strftime("%Y.%m.%d")
    ids = np.char.mod(f"KR{seed % 100:02d}-%08d", np.arange(1, n + 1)).astype(object)
    remarks = np.where(
        rng.random(n) < 0.03,
        rng.choice(np.array(["보완", "정정", "재신고"], dtype=object), n),
        None,
    )
    cells = {
        "화물관리번호": np.char.mod("26KRCC%010d", rng.integers(0, 10**10, n)).astype(object),
        "신고일자": local_date.to_numpy(dtype=object),
        "세관부호": declarations["arrival_office"].map(OFFICE_CODES).to_numpy(dtype=object),
        "신고번호": ids,
        "수입자부호": consignee,
        "신고인부호": _broker_ids(rng, declarations["seller_id"], high_risk),
        "운송수단": _transport(rng, declarations["channel"], declarations["seller_country"], bulk),
        "특송업체부호": _courier_ids(rng, declarations["operator_id"], declarations["channel"]),
        "세번부호": declarations["hs_code"].str.ljust(10, "0").to_numpy(dtype=object),
        "원산지": declarations["origin_country"].to_numpy(dtype=object),
        "과세가격(원)": np.asarray(_thousands(value_krw), dtype=object),
        "순중량": np.char.mod("%.3f", weight).astype(object),
        "해외공급자부호": seller,
        "공급자국가": declarations["seller_country"].to_numpy(dtype=object),
        **_extra_codes(rng, declarations, p_illicit, risky_seller, value_eur),
        "적발여부": np.where(illicit, "1", "0").astype(object),
        "처리담당자": np.char.mod("K%03d", rng.integers(1, 250, n)).astype(object),
        "비고": remarks,
    }
    table = pd.DataFrame({name: cells[name] for name in HEADERS}, dtype="object")
    return ForeignExport(
        table=table,
        truth=pd.DataFrame({"declaration_id": ids, "p_illicit": p_illicit, "illicit": illicit}),
    )


def write_export(export: ForeignExport, path: Path) -> None:
    """CSV, UTF-8, comma-separated; cells holding commas (KRW values) are quoted, empties empty."""
    export.table.to_csv(path, index=False, encoding="utf-8", na_rep="")


# ------------------------------------------------------------------------------------------------
# The reference: a plain point-in-time LightGBM on the raw columns of the ingested file
# ------------------------------------------------------------------------------------------------

RATE_KEYS = ("consignee_id", "seller_id", "broker_id", "hs6")  # smoothed past fraud rates
BASE_CATEGORICALS = ("hs6", "hs4", "origin_country", "channel", "arrival_office")
NUMERIC = ("declared_value", "gross_weight_kg")
PRIOR_STRENGTH = 20.0
REFERENCE_LGB = {
    "objective": "binary",
    "metric": "auc",
    "learning_rate": 0.05,
    "num_leaves": 15,
    "min_data_in_leaf": 50,
    "feature_fraction": 0.8,
    "bagging_fraction": 0.8,
    "bagging_freq": 1,
    "lambda_l2": 1.0,
    "num_threads": 2,
    "verbose": -1,
}


def past_rate(
    keys: pd.Series, at: np.ndarray, known_at: np.ndarray, hit: np.ndarray, prior: float
) -> np.ndarray:
    """Prior-shrunk hit rate of each row's key from results known strictly before the row's ``at``.

    ``known_at`` is NaN/NaT-free int64 microseconds for labelled rows and -1 for others; an
    empty key is unknown (the prior), never one pooled entity.
    """
    code = pd.factorize(keys)[0]
    event = (known_at >= 0) & (code >= 0)
    query = code >= 0
    n_ev = int(event.sum())
    entity = np.r_[code[event], code[query]]
    when = np.r_[known_at[event], at[query]]
    is_event = np.r_[np.ones(n_ev), np.zeros(int(query.sum()))]
    hits = np.r_[hit[event], np.zeros(int(query.sum()))]
    order = np.lexsort((is_event, when, entity))  # at a tie the query first: strictly before
    n_cum, h_cum, ent = np.cumsum(is_event[order]), np.cumsum(hits[order]), entity[order]
    first = np.r_[True, ent[1:] != ent[:-1]]
    block = np.cumsum(first) - 1
    n_before = n_cum - (n_cum - is_event[order])[first][block]
    h_before = h_cum - (h_cum - hits[order])[first][block]
    out = np.full(len(keys), prior)
    at_query = np.flatnonzero(is_event[order] == 0)
    rows = np.flatnonzero(query)[order[at_query] - n_ev]
    out[rows] = (h_before[at_query] + PRIOR_STRENGTH * prior) / (
        n_before[at_query] + PRIOR_STRENGTH
    )
    return out


def reference_scores(
    declarations: pd.DataFrame,
    categorical_extras: list[str],
    boundaries: Any,
    seed: int,
) -> dict[str, Any]:
    """Fit on the train period, early-stop on validation, score all test parcels.

    ``boundaries`` is the project's ``models.split.SplitBoundaries`` of the same history.
    """
    import lightgbm as lgb

    d = declarations.sort_values(["declared_at", "declaration_id"], ignore_index=True)
    labelled = d["inspected"].to_numpy(dtype=bool) & d["illicit"].notna().to_numpy()
    y = d["illicit"].astype("boolean").fillna(False).to_numpy(np.float64)
    at = d["declared_at"].to_numpy("datetime64[us]").astype(np.int64)
    known_at = d["inspected_at"].to_numpy("datetime64[us]")
    known_at = np.where(labelled & ~np.isnat(known_at), known_at.astype(np.int64), -1)
    parts = boundaries.masks(d["declared_at"])
    train, valid, test = (parts[k] & labelled for k in ("train", "validation", "test"))
    # The prior is the train period's rate: the only look-ahead inside the train period is this
    # one constant, never a parcel's own or a later label.
    prior = float(y[train].mean())

    columns = d.assign(hs6=d["hs_code"].str[:6], hs4=d["hs_code"].str[:4])
    X = pd.DataFrame(index=d.index)
    for name in (*BASE_CATEGORICALS, *categorical_extras):
        X[name] = pd.Categorical(columns[name].astype("str").where(columns[name].notna()))
    for name in NUMERIC:
        X[name] = d[name].to_numpy(np.float64)
    for key in RATE_KEYS:
        X[f"rate_{key}"] = past_rate(columns[key], at, known_at, y, prior)

    params = {**REFERENCE_LGB, "seed": seed}
    booster = lgb.train(
        params,
        lgb.Dataset(X[train], y[train]),
        num_boost_round=2000,
        valid_sets=[lgb.Dataset(X[valid], y[valid])],
        callbacks=[lgb.early_stopping(100, verbose=False)],
    )
    score = booster.predict(X[test], num_iteration=booster.best_iteration)
    gain = booster.feature_importance("gain")
    top = sorted(zip(X.columns, gain / gain.sum(), strict=True), key=lambda kv: -kv[1])[:8]
    return {
        **{k: round(precision_at(score, y[test], s), 4) for k, s in SHARES.items()},
        "best_iteration": booster.best_iteration,
        "train_parcels": int(train.sum()),
        "test_parcels": int(test.sum()),
        "gain_share": {k: round(float(v), 3) for k, v in top},
    }


# ------------------------------------------------------------------------------------------------
# The project's pipeline, through its CLI
# ------------------------------------------------------------------------------------------------


class StepFailed(RuntimeError):
    """A pipeline step failed; the message is the one line the benchmark prints."""


def _parcelrisk() -> str:
    """The ``parcelrisk`` console script beside this interpreter (how a user runs it)."""
    found = shutil.which("parcelrisk", path=str(Path(sys.executable).parent))
    if found is None:
        raise StepFailed(f"setup: no `parcelrisk` console script beside {sys.executable}")
    return found


def _tail(text: str, lines: int = 6) -> str:
    kept = [line.strip() for line in text.strip().splitlines() if line.strip()][-lines:]
    return " | ".join(kept)[-1200:]


def run_step(
    name: str, args: list[str], *, cwd: Path, env: dict[str, str], ok_codes: tuple[int, ...] = (0,)
) -> tuple[subprocess.CompletedProcess[str], float]:
    """Run one CLI step; stdout and stderr are kept in ``cwd/logs``."""
    log.info("  %s: parcelrisk %s", name, " ".join(args[:2]))
    began = time.perf_counter()
    done = subprocess.run(
        [_parcelrisk(), *args], cwd=cwd, env=env, capture_output=True, text=True, check=False
    )
    seconds = time.perf_counter() - began
    logs = cwd / "logs"
    logs.mkdir(exist_ok=True)
    (logs / f"{name}.stdout").write_text(done.stdout, encoding="utf-8")
    (logs / f"{name}.stderr").write_text(done.stderr, encoding="utf-8")
    if done.returncode not in ok_codes:
        raise StepFailed(
            f"step {name!r} failed (exit {done.returncode}): "
            f"{_tail(done.stderr) or _tail(done.stdout)}"
        )
    return done, seconds


def params_with_timezone(out: Path) -> Path:
    """The repo's params.yaml with only ``features.timezone`` set."""
    import yaml

    from features.params import params_for_copy

    params = params_for_copy(REPO / "params.yaml")  # run from ``work``: files made absolute
    params.setdefault("features", {})["timezone"] = TIMEZONE
    out.write_text(yaml.safe_dump(params, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return out


def _require(mapping: dict[str, Any], key: str, where: str) -> Any:
    if key not in mapping:
        raise StepFailed(f"step 'mlflow': {where} has no {key!r}")
    return mapping[key]


def registered_run(tracking_uri: str, model_name: str) -> tuple[dict[str, float], Any]:
    """Held-out metrics and split boundaries of the champion version's MLflow run."""
    from mlflow import MlflowClient

    from models.split import SplitBoundaries

    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    try:
        version = client.get_model_version_by_alias(model_name, "champion")
    except Exception as exc:  # MLflow raises its own RestException for an unknown alias
        raise StepFailed(f"step 'mlflow': no champion version of {model_name!r}: {exc}") from exc
    run = client.get_run(version.run_id)
    where = f"run {version.run_id} (version {version.version})"
    split = json.loads(_require(run.data.tags, "split", where) or "{}")
    for key in ("start", "validation_start", "test_start", "end"):
        _require(split, key, f"the split tag of {where}")
    metrics = {
        k: float(_require(run.data.metrics, f"test_random.model.{k}", where)) for k in SHARES
    }
    return metrics, SplitBoundaries.from_dict(split)


def _validate_report(done: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    lines = [line.rstrip() for line in done.stdout.splitlines() if line.strip()]
    return {
        "exit_code": done.returncode,
        "warnings": [line.strip() for line in lines if re.match(r"\s*WARN", line, re.IGNORECASE)],
        "console": lines[:60],  # as printed, in case the warning lines look different
    }


def run_seed(seed: int, parcels: int, days: int, work: Path) -> dict[str, Any]:
    """Generate, export, run the project's pipeline and the reference on one seed."""
    import yaml

    from features.intake.io import read_declarations
    from features.synthetic import SyntheticParams, generate

    began = time.perf_counter()
    seconds: dict[str, float] = {}
    if work.exists() and any(work.iterdir()):
        # a previous run's MLflow store would hold a champion: promote would compare against it
        raise StepFailed(f"setup: {work} is not empty: remove it or give another --out")
    work.mkdir(parents=True, exist_ok=True)

    t = time.perf_counter()
    declarations, truth = generate(SyntheticParams(seed=seed, parcels=parcels, days=days))
    seconds["generate"] = time.perf_counter() - t
    t = time.perf_counter()
    export = export_foreign(declarations, truth, seed)
    write_export(export, work / EXPORT_FILE)
    seconds["export"] = time.perf_counter() - t
    del declarations

    tracking_uri = f"sqlite:///{(work / 'mlflow.db').resolve()}"
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri, "PYTHONPATH": str(REPO)}
    params = params_with_timezone(work / "params.yaml")
    ingested = work / "declarations.parquet"
    features_dir = work / "features"
    steps: list[tuple[str, list[str], tuple[int, ...]]] = [
        ("ingest", ["ingest", str(work / EXPORT_FILE), "--mapping", str(MAPPING), "--out", str(ingested)], (0,)),
        ("validate", ["validate", str(ingested), "--report", str(work / "gate")], (0, 1)),
        ("features", ["features", "build", "--declarations", str(ingested), "--out", str(features_dir), "--params", str(params)], (0,)),
        ("train", ["train", "--features", str(features_dir), "--params", str(params)], (0,)),
        ("promote", ["promote", "--params", str(params)], (0,)),
    ]  # fmt: skip
    outputs: dict[str, subprocess.CompletedProcess[str]] = {}
    for name, args, ok in steps:
        outputs[name], seconds[name] = run_step(name, args, cwd=work, env=env, ok_codes=ok)
        if name == "validate" and outputs[name].returncode != 0:
            raise StepFailed(
                f"step 'validate' found faults (exit 1): {_tail(outputs[name].stdout)}"
            )
    promoted = re.search(r"version \S+: (\w+)", outputs["promote"].stdout)
    model_name = yaml.safe_load(params.read_text(encoding="utf-8"))["promote"]["model_name"]
    project, boundaries = registered_run(tracking_uri, model_name)

    t = time.perf_counter()
    try:
        frame, contract = read_declarations(ingested)
        categorical_extras = [e.name for e in contract.extras if e.kind == "categorical"]
        reference = reference_scores(frame, categorical_extras, boundaries, seed)
    except Exception as exc:  # one line naming the step, like the CLI steps
        raise StepFailed(f"step 'reference' failed: {type(exc).__name__}: {exc}") from exc
    seconds["reference"] = time.perf_counter() - t
    oracle = oracle_scores(frame, export.truth, boundaries)

    seconds["total"] = time.perf_counter() - began
    return {
        "seed": seed,
        "parcels": parcels,
        "days": days,
        "reference": reference,
        "project": project,
        "oracle": oracle,
        "project_beats_reference": {
            k.removeprefix("precision_"): project[k] > reference[k] for k in SHARES
        },
        "split": boundaries.to_dict(),
        "validate": _validate_report(outputs["validate"]),
        "promote_outcome": promoted.group(1) if promoted else outputs["promote"].stdout.strip(),
        "seconds": {k: round(v, 1) for k, v in seconds.items()},
    }


def oracle_scores(frame: pd.DataFrame, truth: pd.DataFrame, boundaries: Any) -> dict[str, float]:
    """Precision of ranking the test parcels by the generator's true probability."""
    test = frame.loc[boundaries.masks(frame["declared_at"])["test"], ["declaration_id", "illicit"]]
    p = truth.set_index("declaration_id")["p_illicit"].reindex(test["declaration_id"]).to_numpy()
    y = test["illicit"].astype("boolean").fillna(False).to_numpy(np.float64)
    return {k: round(precision_at(p, y, s), 4) for k, s in SHARES.items()}


# ------------------------------------------------------------------------------------------------
# The default demo, through the Python API
# ------------------------------------------------------------------------------------------------


def run_demo() -> dict[str, Any]:
    """Default demo history (300k parcels, 180 days, seed 42): features and training on defaults."""
    from features.intake.contract import Contract
    from features.params import load_settings
    from features.pipeline.build import build_features
    from features.synthetic import SyntheticParams, generate
    from models.train import train_models

    settings = load_settings(REPO / "params.yaml", must_exist=True)
    seconds: dict[str, float] = {}
    t = time.perf_counter()
    declarations, truth = generate(SyntheticParams(parcels=300_000, days=180, seed=42))
    seconds["generate"] = time.perf_counter() - t
    t = time.perf_counter()
    built = build_features(declarations, Contract(), settings.features)
    seconds["features"] = time.perf_counter() - t
    t = time.perf_counter()
    result = train_models(built.frame, built.manifest, settings.train, truth)
    seconds["train"] = time.perf_counter() - t
    keys = ("test_all.ratio.precision_at_5", "test_all.ratio.revenue_at_5")
    missing = [k for k in keys if k not in result.metrics]
    if missing:
        raise StepFailed(f"step 'demo': train_models reported no {', '.join(missing)}")
    return {
        **{k: round(float(result.metrics[k]), 4) for k in keys},
        "test_all.model.precision_at_5": round(
            float(result.metrics.get("test_all.model.precision_at_5", np.nan)), 4
        ),
        "seconds": {k: round(v, 1) for k, v in seconds.items()},
    }


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    def mean(side: str, key: str) -> float:
        return round(float(np.mean([r[side][key] for r in runs])), 4)

    return {
        "seeds": [r["seed"] for r in runs],
        **{side: {k: mean(side, k) for k in SHARES} for side in ("reference", "project", "oracle")},
        "project_beats_reference": {
            k.removeprefix("precision_"): sum(r["project"][k] > r["reference"][k] for r in runs)
            for k in SHARES
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--parcels", type=int, default=80_000)
    parser.add_argument("--days", type=int, default=240)
    parser.add_argument("--out", type=Path, default=None, help="keep the work files here")
    parser.add_argument("--skip-demo", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(message)s")

    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="parcelrisk-foreign-") as tmp:
        root = Path(args.out) if args.out is not None else Path(tmp)
        runs = []
        try:
            for seed in args.seeds:
                log.info(
                    "seed %d: %d parcels over %d days in %s", seed, args.parcels, args.days, root
                )
                runs.append(run_seed(seed, args.parcels, args.days, root / f"seed_{seed}"))
            demo = None
            if not args.skip_demo:
                log.info("demo: default history through the Python API")
                demo = run_demo()
        except StepFailed as exc:
            where = f"seed {seed}" if len(runs) < len(args.seeds) else "demo"
            print(f"foreign_export: {where}: {exc}", file=sys.stderr)
            sys.exit(1)
    result = {
        "benchmark": "foreign_export",
        "seeds": runs,
        "demo": demo,
        "summary": summarize(runs),
        "seconds": round(time.perf_counter() - began, 1),
    }
    print(json.dumps(result, indent=1, ensure_ascii=False))


if __name__ == "__main__":
    main()
