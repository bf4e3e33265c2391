"""An export in the layout of DATE's (KDD 2020) public synthetic import declarations, from its
first draft to scored arrivals, as an administration holding such a file would run it.

The layout has what research and national exports have and our own files do not: dates as
`13-01-02` (two-digit years, no time), countries in codes of the export's own (`CNTRY376`),
10-digit tariff codes written as integers (chapters 01-09 lose their leading zero), bulk
weights and values in USD, no item text, seller, platform or channel, and an `illicit` and a
`revenue` on every row (every declaration inspected). The draft must need only the two things
no column holds (channel and currency); every later step runs on the project's defaults but
for the plausibility bound a bulk history needs, a property of the data.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from features.synthetic import SyntheticParams, generate
from tests.test_serving.test_foreign_export import _run  # the CLI as a user runs it

ROOT = Path(__file__).resolve().parents[2]
USD_PER_EUR = 1 / 0.92


def date_layout(declarations: pd.DataFrame, truth: pd.DataFrame, seed: int) -> pd.DataFrame:
    """``declarations`` (contract, EUR values) and their census labels in DATE's 14 columns."""
    rng = np.random.default_rng(seed)
    n = len(declarations)
    origins = sorted(declarations["origin_country"].unique())
    own_code = {c: f"CNTRY{100 + 7 * i}" for i, c in enumerate(origins)}
    cif = declarations["declared_value"].to_numpy() * USD_PER_EUR * 40  # a consignment's worth
    duty = rng.choice([0.0, 0.05, 0.1, 0.2], 100)[declarations["hs_code"].str[:2].astype(int)]
    revenue = np.where(truth["illicit"], truth["revenue_if_illicit"] * USD_PER_EUR * 40, 0)
    return pd.DataFrame(
        {
            "sgd.id": [f"SGD{i}" for i in range(1, n + 1)],
            "sgd.date": declarations["declared_at"].dt.strftime("%y-%m-%d"),
            "importer.id": "IMP" + declarations["consignee_id"].str[-5:],
            "declarant.id": "DEC" + declarations["seller_id"].str[-2:],
            "country": declarations["origin_country"].map(own_code),
            "office.id": "OFFICE" + declarations["arrival_office"].str[-2:],
            "tariff.code": declarations["hs_code"].str.ljust(10, "0").astype(np.int64),
            "quantity": declarations["quantity"] * 40,
            "gross.weight": declarations["gross_weight_kg"] * 40,
            "fob.value": cif * np.minimum(rng.normal(0.8, 0.1, n), 1),
            "cif.value": cif,
            "total.taxes": cif * duty,
            "illicit": truth["illicit"].astype(int),
            "revenue": np.round(revenue).astype(int),
        }
    )


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("date-layout")
    declarations, truth = generate(SyntheticParams(seed=29, parcels=6_000, days=70))
    export = date_layout(declarations, truth, 29)
    assert (export["tariff.code"] < 10**9).any()  # some codes lost their leading zero
    export.to_csv(tmp / "export.csv", index=False, encoding="iso-8859-1")
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["validate"]["max_value"] = 10_000_000  # consignments, not parcels: the data's
    params["features"]["watchlist"] = str(ROOT / params["features"]["watchlist"])
    (tmp / "params.yaml").write_text(yaml.safe_dump(params))
    return tmp


def test_the_draft_needs_only_channel_and_currency(work: Path) -> None:
    code, out = _run("mapping", "draft", str(work / "export.csv"), "--out", str(work / "d.yaml"))
    assert code == 0, out
    draft = (work / "d.yaml").read_text()
    todo = [line.split(":")[0].strip("# ") for line in draft.splitlines() if ": TODO" in line]
    assert sorted(todo) == ["channel", "currency"], draft
    columns = yaml.safe_load(draft)["columns"]
    assert columns["declared_at"]["column"] == "sgd.date"
    assert columns["declared_at"]["format"] == "%y-%m-%d"
    assert columns["inspected_at"]["offset"] == "1 day"
    assert columns["origin_country"] in ("country", {"column": "country"})
    assert columns["hs_code"] == {"column": "tariff.code", "lost_leading_zero": True}
    assert "scale" not in str(columns["gross_weight_kg"])  # kilograms with decimals
    # the person's two answers
    mapping = draft.replace("  # channel: TODO", "  channel: {value: courier}  #").replace(
        "  # currency: TODO", "  currency: {value: USD}  #"
    )
    (work / "mapping.yaml").write_text(mapping)


def test_a_date_layout_export_runs_end_to_end(work: Path) -> None:
    if not (work / "mapping.yaml").exists():
        test_the_draft_needs_only_channel_and_currency(work)
    uri = f"sqlite:///{work / 'mlflow.db'}"
    params = str(work / "params.yaml")
    code, out = _run(
        "ingest", str(work / "export.csv"), "--mapping", str(work / "mapping.yaml"),
        "--out", str(work / "declarations.parquet"),
    )  # fmt: skip
    assert code == 0, out
    ingested = pd.read_parquet(work / "declarations.parquet")
    assert ingested["hs_code"].str.len().eq(10).all()  # leading zeros restored
    assert ingested["origin_country"].str.startswith("CNTRY").all()
    assert ingested["declared_at"].dt.year.eq(2026).all()  # 26-.. read as 2026, not 1926

    code, out = _run(
        "validate", str(work / "declarations.parquet"), "--report", str(work / "gate"),
        "--params", params, "--no-cross-check",
    )  # fmt: skip
    assert code == 0, out
    assert "FAULT" not in out and "[origin_country.iso3166]" in out

    code, out = _run(
        "features", "build", "--declarations", str(work / "declarations.parquet"),
        "--out", str(work / "features"), "--params", params,
        "--validated-by", str(work / "gate"),
    )  # fmt: skip
    assert code == 0, out
    summary = json.loads(out[out.index("{") :])
    assert "text" not in summary["groups"]

    code, out = _run(
        "train", "--features", str(work / "features"), "--params", params,
        "--tracking-uri", uri, "--metrics-out", str(work / "train.json"),
    )  # fmt: skip
    assert code == 0, out
    metrics = json.loads((work / "train.json").read_text())
    assert all(np.isfinite(v) for v in metrics.values())
    assert (
        metrics["test_random.model.precision_at_5"]
        > 2 * metrics["test_random.random.precision_at_5"]
    )
    code, out = _run("promote", "--params", params, "--tracking-uri", uri)
    assert code == 0, out

    # the export's last rows arriving today, through the same mapping, results not yet known
    export = pd.read_csv(
        work / "export.csv", dtype=str, keep_default_na=False, encoding="iso-8859-1"
    )
    arrivals = export.tail(150).copy()
    arrivals["sgd.date"] = pd.Timestamp.now(tz="UTC").strftime("%y-%m-%d")
    arrivals[["illicit", "revenue"]] = ""
    arrivals.to_csv(work / "arrivals.csv", index=False, encoding="iso-8859-1")
    code, out = _run(
        "score", str(work / "arrivals.csv"), "--mapping", str(work / "mapping.yaml"),
        "--out", str(work / "scored.csv"), "--params", params, "--tracking-uri", uri,
    )  # fmt: skip
    assert code == 0, out
    scored = pd.read_csv(work / "scored.csv")
    assert list(scored["declaration_id"]) == list(arrivals["sgd.id"])
    assert scored["risk"].between(0, 1).all()
    assert scored["warnings"].str.contains("read as the export's own code").all()
