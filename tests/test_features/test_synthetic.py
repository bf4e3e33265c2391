"""Behaviour of the synthetic history generator on small seeded runs."""

from __future__ import annotations

import io
import json
import sys

import numpy as np
import pandas as pd
import pytest

from features.intake.contract import (
    OFFENCE_TYPES,
    RANDOM_SELECTION,
    coerce_declarations,
    read_declarations,
)
from features.synthetic import (
    GROUND_TRUTH_COLUMNS,
    SyntheticParams,
    SyntheticParamsError,
    generate,
    generate_to_dir,
)
from features.synthetic.catalogue import CATALOGUE
from features.synthetic.history import GENERATION_STAGES
from features.synthetic.summary import oracle_roc_auc

SMALL = SyntheticParams(seed=11, parcels=20_000, days=90)
OUTCOME_COLUMNS = (
    "inspected_at",
    "illicit",
    "offence_type",
    "revenue_recovered",
    "selection_reason",
)


@pytest.fixture(scope="module")
def history() -> tuple[pd.DataFrame, pd.DataFrame]:
    return generate(SMALL)


@pytest.fixture(scope="module")
def declarations(history) -> pd.DataFrame:
    return history[0]


@pytest.fixture(scope="module")
def truth(history) -> pd.DataFrame:
    return history[1]


def _thirds(declarations: pd.DataFrame) -> pd.Series:
    return pd.cut(
        declarations["declared_at"].rank(pct=True, method="first"),
        [0, 1 / 3, 2 / 3, 1],
        labels=False,
    )


def test_row_count_ids_and_order(declarations, truth):
    assert len(declarations) == len(truth) == SMALL.parcels
    assert declarations["declaration_id"].is_unique
    assert declarations["declared_at"].is_monotonic_increasing
    assert (truth["declaration_id"] == declarations["declaration_id"]).all()


def test_output_is_canonical_contract(declarations):
    again = coerce_declarations(declarations, with_outcomes=True)
    pd.testing.assert_frame_equal(again, declarations)
    assert str(declarations["declared_at"].dtype) == "datetime64[us, UTC]"


def test_declared_at_within_period(declarations):
    start = pd.Timestamp(SMALL.start, tz="UTC")
    assert declarations["declared_at"].min() >= start
    assert declarations["declared_at"].max() < start + pd.Timedelta(days=SMALL.days)


def test_prevalence_in_plausible_band(truth):
    assert 0.04 <= truth["illicit"].mean() <= 0.11


def test_random_quota_at_least_one_percent(declarations):
    assert (declarations["selection_reason"] == RANDOM_SELECTION).mean() >= 0.01


def test_rule_selection_names_a_rule(declarations):
    reasons = declarations.loc[declarations["inspected"], "selection_reason"]
    assert reasons.notna().all()
    assert reasons[reasons != RANDOM_SELECTION].str.startswith("rule:").all()
    assert 0.03 <= declarations["inspected"].mean() <= 0.06


def test_outcomes_only_where_inspected(declarations):
    idle = declarations[~declarations["inspected"]]
    for column in OUTCOME_COLUMNS:
        assert idle[column].isna().all(), column
    done = declarations[declarations["inspected"]]
    for column in ("inspected_at", "illicit", "revenue_recovered", "selection_reason"):
        assert done[column].notna().all(), column
    assert (done["offence_type"].notna() == done["illicit"].astype(bool)).all()


def test_inspected_after_declared(declarations):
    done = declarations[declarations["inspected"]]
    delay = done["inspected_at"] - done["declared_at"]
    assert (delay > pd.Timedelta(0)).all()
    assert (delay <= pd.Timedelta(days=10)).all()


def test_ground_truth_consistent_with_outcomes(declarations, truth):
    assert tuple(truth.columns) == GROUND_TRUTH_COLUMNS
    done = declarations["inspected"].to_numpy()
    assert (declarations.loc[done, "illicit"].astype(bool) == truth.loc[done, "illicit"]).all()
    np.testing.assert_allclose(
        declarations.loc[done, "revenue_recovered"], truth.loc[done, "revenue_at_stake"]
    )
    assert (
        declarations.loc[done, "offence_type"].fillna("")
        == truth.loc[done, "offence_type"].fillna("")
    ).all()
    assert (truth.loc[~truth["illicit"], "revenue_at_stake"] == 0).all()
    assert (truth.loc[truth["illicit"], "revenue_at_stake"] > 0).all()
    assert truth["p_illicit"].between(0.001, 0.99).all()


def test_revenue_if_illicit_is_known_for_every_parcel(truth):
    # the oracle ranks on p x revenue_if_illicit; it must not depend on the drawn label
    assert (truth["revenue_if_illicit"] > 0).all()
    clean = ~truth["illicit"]
    assert truth.loc[clean, "revenue_if_illicit"].gt(0).all()
    assert (truth.loc[clean, "revenue_at_stake"] == 0).all()


def test_restricted_keyword_rule_selects_restricted_goods(declarations, truth):
    picked = declarations["selection_reason"] == "rule:restricted_keyword"
    assert picked.sum() > 0
    assert (
        declarations.loc[picked, "description"]
        .str.contains("knife|steroid|cigarette|tobacco|tramadol|dagger|ammunition", case=False)
        .all()
    )


def test_same_seed_same_data_and_other_seed_differs(history):
    declarations, truth = generate(SMALL)
    pd.testing.assert_frame_equal(declarations, history[0])
    pd.testing.assert_frame_equal(truth, history[1])
    other, _ = generate(SyntheticParams(seed=12, parcels=20_000, days=90))
    assert not other["declared_value"].equals(history[0]["declared_value"])


def test_catalogue_has_150_hs6_codes_across_chapters():
    codes = {item.hs6 for item in CATALOGUE}
    assert len(codes) >= 150
    chapters = {item.chapter for item in CATALOGUE}
    assert {
        "61",
        "62",
        "64",
        "84",
        "85",
        "95",
        "33",
        "71",
        "91",
        "42",
        "49",
        "21",
        "30",
        "24",
        "93",
        "87",
    } <= chapters


def test_hs_codes_have_6_to_10_digits(declarations):
    lengths = declarations["hs_code"].str.len().value_counts()
    assert declarations["hs_code"].str.fullmatch(r"\d{6,10}").all()
    assert lengths.idxmax() == 6 and {8, 10} <= set(lengths.index)


def test_every_offence_type_occurs(truth):
    assert set(truth["offence_type"].dropna()) == set(OFFENCE_TYPES)


def test_offence_signatures(declarations, truth):
    fake = truth["offence_type"] == "counterfeit"
    assert (
        declarations.loc[fake, "description"]
        .str.contains("Luxora|Vantex|Kairo|Zentra|Orvani|Belmonte")
        .all()
    )
    vague = truth["offence_type"] == "vague_description"
    assert (
        declarations.loc[vague, "description"]
        .isin(["gift", "parts", "goods", "accessories", "sample"])
        .all()
    )
    moved = truth["offence_type"] == "origin_misdeclared"
    assert (
        declarations.loc[moved, "origin_country"] != declarations.loc[moved, "seller_country"]
    ).all()


def test_split_orders_stay_under_de_minimis(declarations, truth):
    from features.intake.contract import DEFAULT_FX_TO_BASE

    split = declarations[truth["offence_type"] == "split_shipment"]
    eur = split["declared_value"] * split["currency"].map(DEFAULT_FX_TO_BASE)
    assert (eur < SMALL.de_minimis_eur * 1.01).all()
    # splitting consignees receive several parcels
    assert split["consignee_id"].value_counts().max() >= 2


def test_drift_undervaluation_moves_to_electronics(declarations, truth):
    under = truth["offence_type"] == "undervaluation"
    electronics = declarations["hs_code"].str[:2].isin(["84", "85"])
    share = electronics[under].groupby(_thirds(declarations)[under]).mean()
    assert share.iloc[2] > share.iloc[0] + 0.1


def test_drift_tr_sellers_turn_riskier():
    declarations, truth = generate(SyntheticParams(seed=5, parcels=60_000, days=90))
    tr = declarations["seller_country"] == "TR"
    rate = truth.loc[tr, "illicit"].groupby(_thirds(declarations)[tr]).mean()
    assert rate.iloc[2] > rate.iloc[0] * 1.3


def test_oracle_auc_is_high_but_not_perfect(truth):
    auc = oracle_roc_auc(truth["p_illicit"].to_numpy(), truth["illicit"].to_numpy())
    assert 0.85 < auc < 0.97


def test_oracle_auc_perfect_and_random_cases():
    y = np.array([0, 0, 1, 1], dtype=bool)
    assert oracle_roc_auc(np.array([0.1, 0.2, 0.8, 0.9]), y) == 1.0
    assert oracle_roc_auc(np.array([0.5, 0.5, 0.5, 0.5]), y) == 0.5


@pytest.mark.parametrize(
    "kwargs", [{"parcels": 0}, {"days": 0}, {"random_rate": 1.5}, {"start": "not a date"}]
)
def test_bad_params_raise_clear_error(kwargs):
    with pytest.raises(SyntheticParamsError):
        SyntheticParams(**kwargs)


def test_tiny_run_works():
    declarations, truth = generate(SyntheticParams(seed=1, parcels=50, days=3))
    assert len(declarations) == len(truth) == 50


def test_generate_to_dir_writes_files_and_summary(tmp_path):
    summary = generate_to_dir(parcels=5_000, days=30, seed=3, out=tmp_path, start="2026-03-01")
    json.dumps(summary)
    for key in (
        "parcels",
        "days",
        "seconds",
        "prevalence",
        "inspection_rate",
        "random_share",
        "hit_rate_by_selection_reason",
        "offence_mix",
        "oracle_roc_auc",
        "oracle_precision_at_5pct",
        "revenue_at_stake_total_eur",
        "revenue_recovered_total_eur",
    ):
        assert key in summary, key
    assert summary["parcels"] == 5_000
    declarations, _ = read_declarations(tmp_path / "declarations.parquet")
    assert len(declarations) == 5_000
    assert declarations["declared_at"].min() >= pd.Timestamp("2026-03-01", tz="UTC")
    truth = pd.read_parquet(tmp_path / "ground_truth.parquet")
    assert tuple(truth.columns) == GROUND_TRUTH_COLUMNS and len(truth) == 5_000


def test_generate_reports_every_stage_in_order():
    seen: list[str] = []
    generate(SyntheticParams(seed=1, parcels=50, days=3), on_stage=seen.append)
    assert tuple(seen) == GENERATION_STAGES


def test_progress_bar_only_when_asked(tmp_path, capsys):
    generate_to_dir(parcels=500, days=5, seed=2, out=tmp_path / "a", start="2026-01-01")
    assert capsys.readouterr().err == ""
    generate_to_dir(
        parcels=500, days=5, seed=2, out=tmp_path / "b", start="2026-01-01", progress=True
    )
    shown = capsys.readouterr()
    assert "generate" in shown.err and f"{len(GENERATION_STAGES) + 2}/" in shown.err
    assert shown.out == ""


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(
    ("terminal", "quiet", "progress"),
    [(True, False, True), (True, True, False), (False, False, False)],
)
def test_cli_generate_shows_progress_on_a_terminal_unless_quiet(
    monkeypatch, tmp_path, terminal, quiet, progress
):
    import features.synthetic
    from features import cli

    calls: list[dict] = []
    monkeypatch.setattr(features.synthetic, "generate_to_dir", lambda **kw: calls.append(kw) or {})
    monkeypatch.setattr(sys, "stderr", _Terminal() if terminal else io.StringIO())
    cli.generate(parcels=10, days=2, seed=1, out=tmp_path, start="2026-01-01", quiet=quiet)
    assert calls[0]["progress"] is progress
