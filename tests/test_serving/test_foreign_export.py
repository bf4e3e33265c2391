"""A foreign administration's export through the whole pipeline, on defaults, as a user runs it.

The export has what real ones have: Hangul headers, values in KRW with thousands separators,
local dates without time, results known the next day, every parcel inspected, no revenue, no
item text or quantity, empty seller ids, a courier id empty on most rows, bulk weights, extra
coded columns. ingest -> validate (warnings, no faults) -> features build -> train -> promote
(no --force, twice) -> score: every step must work without a single override.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from features.synthetic import SyntheticParams, generate
from serving.main import app

ROOT = Path(__file__).resolve().parents[2]
KRW_PER_EUR = 1 / 0.00068

MAPPING = """\
columns:
  declaration_id: 신고번호
  declared_at: {column: 신고일자, format: "%Y.%m.%d", timezone: Asia/Seoul}
  arrival_office: 세관부호
  channel: {column: 운송수단, values: {"50": postal, "41": express, "43": courier, "10": sea}}
  seller_id: 해외공급자부호
  seller_country: 공급자국가
  consignee_id: 수입자부호
  origin_country: 원산지
  hs_code: 세번부호
  gross_weight_kg: 순중량
  declared_value: {column: "과세가격(원)", thousands: ","}
  currency: {value: KRW}
  inspected: {value: true}
  inspected_at: {column: 신고일자, format: "%Y.%m.%d", timezone: Asia/Seoul, offset: "1 day"}
  illicit: {column: 적발여부, true_values: ["1"], false_values: ["0"]}
extras:
  - {column: 신고인부호, name: broker_id, kind: entity}
  - {column: 특송업체부호, name: courier_id, kind: entity}
  - {column: 결제방법, name: payment_method, kind: categorical, default: "00"}
"""


def _export(
    declarations: pd.DataFrame, truth: pd.DataFrame, rng: np.random.Generator
) -> pd.DataFrame:
    n = len(declarations)
    local = declarations["declared_at"].dt.tz_convert("Asia/Seoul")
    seller = declarations["seller_id"].where(rng.random(n) > 0.10)
    weight = declarations["gross_weight_kg"] * np.where(rng.random(n) < 0.005, 5_000, 1)
    value = np.round(
        declarations["declared_value"]
        * declarations["currency"]
        .map({"EUR": 1.0, "USD": 0.92, "CNY": 0.127, "GBP": 1.17, "HKD": 0.118, "TRY": 0.027})
        .fillna(1.0)
        * KRW_PER_EUR
    )
    mode = declarations["channel"].map({"postal": "50", "express": "41", "courier": "43"})
    mode = mode.where(weight < 1000, "10")
    return pd.DataFrame(
        {
            "적발여부": truth["illicit"].astype(int).astype(str),
            "신고번호": "KR-" + declarations["declaration_id"],
            "신고일자": local.dt.strftime("%Y.%m.%d"),
            "세관부호": declarations["arrival_office"],
            "운송수단": mode,
            "해외공급자부호": seller,
            "공급자국가": declarations["seller_country"],
            "수입자부호": declarations["consignee_id"],
            "원산지": declarations["origin_country"],
            "세번부호": declarations["hs_code"].str.ljust(10, "0"),
            "순중량": weight.round(3),
            "과세가격(원)": [f"{v:,.0f}" for v in value],
            "신고인부호": "BR" + (declarations["seller_id"].str[-2:]),
            "특송업체부호": declarations["operator_id"].where(rng.random(n) < 0.3),
            "결제방법": pd.Series(rng.choice(["11", "12", "14"], n)).where(rng.random(n) > 0.2),
            "비고": "",  # a column the mapping ignores
        }
    )


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("foreign")
    declarations, truth = generate(SyntheticParams(seed=23, parcels=9_000, days=75))
    export = _export(declarations, truth, np.random.default_rng(23))
    export.to_csv(tmp / "export.csv", index=False, encoding="utf-8")
    (tmp / "mapping.yaml").write_text(MAPPING, encoding="utf-8")
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["features"]["timezone"] = "Asia/Seoul"  # a property of the data, not a tuning
    (tmp / "params.yaml").write_text(yaml.safe_dump(params))
    return tmp


def test_a_foreign_census_export_runs_end_to_end_on_defaults(work: Path) -> None:
    uri = f"sqlite:///{work / 'mlflow.db'}"
    params = str(work / "params.yaml")
    code, out = _run(
        "ingest",
        str(work / "export.csv"),
        "--mapping",
        str(work / "mapping.yaml"),
        "--out",
        str(work / "declarations.parquet"),
    )
    assert code == 0, out
    assert "비고" in out  # ignored columns are listed as they are named

    code, out = _run(
        "validate",
        str(work / "declarations.parquet"),
        "--report",
        str(work / "gate"),
        "--params",
        params,
        "--no-cross-check",
    )
    assert code == 0, out
    assert "WARNING gross_weight_kg" in out and "FAULT" not in out

    code, out = _run(
        "features",
        "build",
        "--declarations",
        str(work / "declarations.parquet"),
        "--out",
        str(work / "features"),
        "--params",
        params,
        "--validated-by",
        str(work / "gate"),
    )
    assert code == 0, out
    summary = json.loads(out[out.index("{") :])
    assert "text" not in summary["groups"] and "quantity" in summary["inputs_absent"]

    outcomes = []
    for attempt in (1, 2):
        code, out = _run(
            "train",
            "--features",
            str(work / "features"),
            "--params",
            params,
            "--tracking-uri",
            uri,
            "--metrics-out",
            str(work / f"train{attempt}.json"),
        )
        assert code == 0, out
        metrics = json.loads((work / f"train{attempt}.json").read_text())
        assert all(np.isfinite(v) for v in metrics.values())
        assert metrics["test_random.model.precision_at_5"] > 0.15  # census: all test parcels
        code, out = _run("promote", "--params", params, "--tracking-uri", uri)
        assert code in (0, 1), out  # promoted or refused on the metrics, never an error
        assert "nan" not in out.lower()
        outcomes.append(out.strip().splitlines()[-1])
    assert ": first (champion before: none)" in outcomes[0]
    assert any(word in outcomes[1] for word in (": promoted", ": refused")), outcomes[1]

    to_score = pd.read_parquet(work / "declarations.parquet").tail(200)
    to_score = to_score.drop(
        columns=[
            "inspected",
            "inspected_at",
            "illicit",
            "offence_type",
            "revenue_recovered",
            "selection_reason",
        ]
    )
    to_score["declared_at"] = pd.Timestamp.now(tz="UTC").floor("D")
    from features.intake.io import read_contract, write_declarations

    write_declarations(
        to_score, work / "to_score.parquet", read_contract(work / "declarations.parquet")
    )
    code, out = _run(
        "score",
        str(work / "to_score.parquet"),
        "--out",
        str(work / "scored.csv"),
        "--params",
        params,
        "--tracking-uri",
        uri,
    )
    assert code == 0, out
    scored = pd.read_csv(work / "scored.csv")
    assert len(scored) == 200 and scored["risk"].between(0, 1).all()
    # the same rows as a plain CSV: its extras are columns of no contract, and the model
    # needs them; the answer says how to bring them in
    to_score.to_csv(work / "to_score.csv", index=False)
    from features.errors import ParcelriskError

    with pytest.raises(ParcelriskError) as refused:
        _run(
            "score", str(work / "to_score.csv"), "--out", str(work / "plain.csv"),
            "--params", params, "--tracking-uri", uri,
        )  # fmt: skip
    assert "lack the mapped extra field(s) the model uses: broker_id" in str(refused.value)
    assert "parcelrisk ingest FILE --mapping MAPPING" in str(refused.value)
    assert not (work / "plain.csv").exists()
    assert not scored["exploration"].any()  # every parcel is inspected anyway: no quota

    # the export itself, in its own columns, through the mapping: its result column (적발여부)
    # is not read, the extras are, and the last rows are scored as arriving today
    export = pd.read_csv(work / "export.csv", dtype=str, keep_default_na=False).tail(200)
    export["신고일자"] = pd.Timestamp.now(tz="Asia/Seoul").strftime("%Y.%m.%d")
    export["적발여부"] = ""  # unknown before the control: read as nothing, not refused
    export.to_csv(work / "arrivals.csv", index=False, encoding="utf-8")
    code, out = _run(
        "score", str(work / "arrivals.csv"), "--mapping", str(work / "mapping.yaml"),
        "--out", str(work / "arrivals_scored.csv"), "--params", params, "--tracking-uri", uri,
    )  # fmt: skip
    assert code == 0, out
    arrivals = pd.read_csv(work / "arrivals_scored.csv")
    assert list(arrivals["declaration_id"]) == list(export["신고번호"])
    assert arrivals["risk"].between(0, 1).all()
    assert not arrivals["warnings"].str.contains("broker_id").any()  # the extras were read

    # two bad declarations: refused naming the export's own rows (not a temporary file's),
    # then, with --quarantine, set aside there and the other 198 scored
    export.iloc[[5, 40], export.columns.get_loc("세번부호")] = ["12AB", "8517"]
    export.to_csv(work / "arrivals_bad.csv", index=False, encoding="utf-8")
    common = ["--mapping", str(work / "mapping.yaml"), "--params", params, "--tracking-uri", uri]
    refused = CliRunner().invoke(
        app, ["score", str(work / "arrivals_bad.csv"), "--out", str(work / "bad.csv"), *common]
    )
    message = str(refused.exception)
    assert refused.exit_code != 0 and "2 of 200 row(s) cannot be scored" in message
    assert "row 6: hs_code: '12AB' is not an HS code" in message and "row 41:" in message
    assert "parcelrisk-score-" not in message and not (work / "bad.csv").exists()
    code, out = _run(
        "score", str(work / "arrivals_bad.csv"), "--out", str(work / "bad.csv"), *common,
        "--quarantine", str(work / "set_aside.csv"), "--max-rejected", "0.05",
    )  # fmt: skip
    assert code == 0, out
    assert len(pd.read_csv(work / "bad.csv")) == 198
    aside = pd.read_csv(work / "set_aside.csv", dtype=str)
    assert aside["parcelrisk_source_row"].tolist() == ["6", "41"]
    assert aside["신고번호"].tolist() == export["신고번호"].iloc[[5, 40]].tolist()
