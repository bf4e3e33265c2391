"""``read_period`` holds a period's repeated text as ``category`` (``benchmarks/monitor_scale.py``):
the categories unioned across chunks, and every figure of the summary the same as from text."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from features.params import MonitorParams
from serving.monitor.cli import _clean
from serving.monitor.compute import (
    COMPARED_COLUMNS,
    compare_period,
    deciding_models,
    feature_matrix,
    lane_targets_of,
    monitor_period,
)
from serving.monitor.data import CATEGORIES
from serving.monitor.report import _CDF_POINTS, live_cdf
from tests.test_serving.conftest import stored_decision
from tests.test_serving.test_monitor import INFO, POLICY, _reference_champion

STORED = "%Y-%m-%dT%H:%M:%S.%fZ"
SINCE, UNTIL = pd.Timestamp("2026-03-01", tz="UTC"), pd.Timestamp("2026-03-05", tz="UTC")


def _period_records(rng: np.random.Generator) -> tuple[list, list[bool]]:
    """400 decisions over 4 days, seeded: the champion's (manifest fp-1) after 120 of an older
    model's, two other manifests of 40 each (fp-9 first: a tie that text counts in order of
    appearance), a thresholds version nobody knows, red and exploration parcels inspected.
    Before them, 200 decisions over the 4 days before (the period before: its risk lower,
    its counts shifted, the first 50 the older model's), one of them scored twice."""
    from serving.decision import features_for_storage

    n, before = 400, 200
    X = np.column_stack(
        [rng.uniform(0, 100, n), rng.normal(0, 1, n), rng.integers(0, 5, n).astype(float)]
    )
    vectors = features_for_storage(X)
    declared = SINCE + pd.to_timedelta(np.sort(rng.uniform(0, 4 * 86_400, n)), unit="s")
    risk = rng.uniform(0, 1, n)
    exploration = rng.uniform(size=n) < 0.1
    records = []
    for i in range(n):
        old = i < 120
        manifest = "fp-9" if 120 <= i < 160 else "fp-0" if 160 <= i < 200 else "fp-1"
        lane = "red" if risk[i] > 0.8 else "yellow" if risk[i] > 0.5 or exploration[i] else "green"
        declaration = {
            "declaration_id": f"P{i:04d}",
            "declared_at": declared[i].strftime(STORED),
            "aeo_operator": bool(i % 7 == 0),
            "origin_country": ["CN", "US", "TR"][i % 3],
            "channel": ["postal", "express"][i % 2],
            "platform_id": f"PL{i % 4}",
        }
        records.append(
            stored_decision(
                declaration,
                features=vectors[i],
                manifest_fingerprint="fp-old" if old else manifest,
                model_version="0" if old else "1",
                thresholds_version="thr-0" if old else "thr-9" if i % 50 == 0 else "thr-1",
                lane_policy=POLICY,
                risk=float(risk[i]),
                expected_revenue=float(risk[i] * 40),
                lane=lane,
                exploration=bool(exploration[i]),
            )
        )
    X = np.column_stack(
        [
            rng.uniform(20, 100, before),
            rng.normal(0, 1, before),
            rng.integers(0, 5, before).astype(float),
        ]
    )
    vectors = features_for_storage(X)
    declared = SINCE - pd.to_timedelta(np.sort(rng.uniform(0, 4 * 86_400, before)), unit="s")
    for i in range(before):
        old = i < 50
        declaration = {
            "declaration_id": f"Q{i:04d}",
            "declared_at": declared[i].strftime(STORED),
            "aeo_operator": bool(i % 5 == 0),
            "origin_country": "CN",
        }
        records.append(
            stored_decision(
                declaration,
                features=vectors[i],
                manifest_fingerprint="fp-old" if old else "fp-1",
                model_version="0" if old else "1",
                thresholds_version="thr-0" if old else "thr-1",
                lane_policy=POLICY,
                risk=float(rng.uniform(0, 0.6)),
                lane="green",
            )
        )
    # scored again later, another vector and risk: the period before counts it as first scored
    records.append(
        replace(
            records[n + 60],
            decision_id="again-Q0060",
            scored_at="2026-05-04T12:00:00.000000+00:00",
            features=vectors[0],
            risk=0.99,
        )
    )
    inspected = [r for r in records[:n] if r.lane == "red" or r.exploration]
    return records, [k % 3 == 0 for k in range(len(inspected))]


def _write_store(location: str) -> str:
    """``_period_records`` written to ``location`` (a SQLite file or a PostgreSQL URL), with
    the results of its red and exploration parcels."""
    from serving.outcomes import store_outcomes
    from serving.store import open_outcome_store, open_store

    records, illicit = _period_records(np.random.default_rng(3))
    store = open_store(location)
    store.record(records)
    inspected = [r for r in records[:400] if r.lane == "red" or r.exploration]
    results = open_outcome_store(location, store)
    store_outcomes(
        results,
        pd.DataFrame(
            {
                "declaration_id": [r.declaration_id for r in inspected],
                "inspected_at": [
                    f"{json.loads(r.declaration_json)['declared_at'][:10]}T23:59:00Z"
                    for r in inspected
                ],
                "illicit": ["true" if x else "false" for x in illicit],
                "offence_type": ["undervaluation" if x else "" for x in illicit],
                "revenue_recovered": ["40" if x else "" for x in illicit],
            }
        ),
        source="test",
        now=pd.Timestamp("2026-04-01", tz="UTC"),
    )
    results.close()
    store.close()
    return location


@pytest.fixture(scope="module")
def period_store(tmp_path_factory: pytest.TempPathFactory) -> str:
    """``_period_records`` in a SQLite file."""
    return _write_store(str(tmp_path_factory.mktemp("monitor-memory") / "audit.db"))


def _read(db: str, **options) -> pd.DataFrame:
    from serving.monitor.data import read_period

    return read_period(db, SINCE.strftime(STORED), UNTIL.strftime(STORED), **options)


def _summary(
    db: str, frame: pd.DataFrame, previous: pd.DataFrame | None = None
) -> tuple[str, dict]:
    """``monitor_period``'s summary as ``parcelrisk monitor`` prints it (its live scores after
    it), and as read back; ``previous``: the period before (default: ``frame`` again)."""
    from serving.auditor.disparity import read_lane_counts

    counts = read_lane_counts(
        db, declared_from=SINCE.strftime(STORED), declared_to=UNTIL.strftime(STORED)
    )
    champion = _reference_champion(np.random.default_rng(7))
    targets = lane_targets_of(champion, {"thr-0": (0.05, 0.1)})
    params = MonitorParams(min_drift_rows=10, min_lane_decisions=10, min_results=5,
                           disparity_min_results=5)  # fmt: skip
    previous = frame if previous is None else previous
    summary = monitor_period(frame, counts, champion, INFO, targets, SINCE, UNTIL, params, previous)
    live = summary["drift"].pop("score_live")
    text = json.dumps(_clean(summary), indent=1)
    return text + json.dumps([float(x) for x in live]), json.loads(text)


def test_the_text_a_period_repeats_is_held_as_categories_unioned_across_chunks(
    period_store, monkeypatch
) -> None:
    import serving.monitor.data as data

    whole = _read(period_store)
    assert "decision_id" not in whole and "declaration_id" not in whole
    for column in CATEGORIES:
        assert isinstance(whole[column].dtype, pd.CategoricalDtype), column
    monkeypatch.setattr(data, "_CHUNK_ROWS", 64)  # the first chunks hold the older model alone
    chunked = _read(period_store)
    assert chunked["model_version"].cat.categories.tolist() == ["0", "1"]
    pd.testing.assert_frame_equal(chunked, whole)


def test_the_summary_from_categories_is_the_summary_from_text(period_store, monkeypatch) -> None:
    """Byte for byte, as the reader before categories gave it (text columns), chunked or not:
    ``value_counts`` of a category lists unused categories at 0 and breaks ties in category
    order; the summary does neither."""
    import serving.monitor.data as data

    monkeypatch.setattr(data, "_CHUNK_ROWS", 64)
    frame = _read(period_store, vectors_at_most=300)
    as_text = frame.astype({column: "str" for column in CATEGORIES})
    text, summary = _summary(period_store, frame)
    assert text == _summary(period_store, as_text)[0]
    others = summary["drift"]["other_manifests"]
    assert list(others.items()) == [("fp-old", 120), ("fp-9", 40), ("fp-0", 40)]
    lanes = summary["lanes"]
    assert lanes["unknown_thresholds_versions"] == ["thr-9"]
    assert [d["day"] for d in lanes["daily"]] == ["2026-03-01", "2026-03-02", "2026-03-03",
                                                  "2026-03-04"]  # fmt: skip


def test_the_champion_s_manifest_is_no_other_manifest_at_0(period_store) -> None:
    frame = _read(period_store)
    mine = frame[frame["manifest_fingerprint"] == "fp-1"].reset_index(drop=True)
    drift = _summary(period_store, mine)[1]["drift"]
    assert drift["other_manifests"] == {} and drift["other_manifest_decisions"] == 0


def test_feature_vectors_of_different_lengths_are_refused() -> None:
    from serving.decision import features_for_storage, pack_feature_rows

    rows = pack_feature_rows(features_for_storage(np.ones((2, 3)))) + pack_feature_rows(
        features_for_storage(np.ones((1, 4)))
    )
    assert feature_matrix(rows[:2]).shape == (2, 3)
    with pytest.raises(ValueError):
        feature_matrix(rows)


def _before(db: str, **options) -> pd.DataFrame:
    """The period of the same length before [SINCE, UNTIL), as ``monitor_store`` reads it."""
    from serving.monitor.data import read_period

    since = SINCE - (UNTIL - SINCE)
    return read_period(db, since.strftime(STORED), SINCE.strftime(STORED), **options)


def test_the_period_before_is_read_for_its_comparison_alone(period_store, monkeypatch) -> None:
    """Its compared columns, the same values as from the whole frame, chunked or not, and the
    same summary byte for byte: ``monitor_period`` reads nothing else of it."""
    import serving.monitor.data as data

    monkeypatch.setattr(data, "_CHUNK_ROWS", 64)
    whole = _before(period_store, vectors_at_most=150)
    compared = _before(period_store, vectors_at_most=150, columns=COMPARED_COLUMNS)
    assert list(compared.columns) == list(COMPARED_COLUMNS) and len(compared) == 200
    assert 0 < compared["features"].notna().sum() < 200  # a sample of its vectors
    pd.testing.assert_frame_equal(compared, whole[list(COMPARED_COLUMNS)])
    frame = _read(period_store, vectors_at_most=300)
    text, summary = _summary(period_store, frame, compared)
    assert text == _summary(period_store, frame, whole)[0]
    previous = summary["drift"]["previous"]
    assert previous["judged"] and previous["comparable_decisions"] == 150
    assert all("previous_psi" in f for f in summary["drift"]["features"])
    # reduced to its comparison before the period is read (monitor_store): the same summary
    champion = _reference_champion(np.random.default_rng(7))
    params = MonitorParams(min_drift_rows=10, min_lane_decisions=10, min_results=5,
                           disparity_min_results=5)  # fmt: skip
    reduced = compare_period(compared, champion, INFO, params)
    assert _summary(period_store, frame, reduced)[0] == text


def test_a_declaration_scored_twice_is_read_once_as_first_scored(period_store) -> None:
    before = _before(period_store)
    assert len(before) == 200 and 0.99 not in before["risk"].tolist()


def test_a_column_the_period_has_not_is_refused(period_store) -> None:
    with pytest.raises(ValueError, match="not in"):
        _before(period_store, columns=["risk", "declaration_json"])
    with pytest.raises(ValueError):
        _before(period_store, columns=[])


def test_a_period_read_without_its_results_joins_none(period_store) -> None:
    read = _read(period_store, columns=["lane", "declared_at", "risk"])
    assert list(read.columns) == ["declared_at", "risk", "lane"]
    pd.testing.assert_frame_equal(read, _read(period_store)[["declared_at", "risk", "lane"]])


def test_the_reads_are_the_same_from_postgresql(period_store, postgres_url) -> None:
    """The window's subquery, its JSON read inside, on both stores: the whole period, a
    sample of its vectors, and the period before's compared columns."""
    pg = _write_store(postgres_url)
    for read, options in (
        (_read, {}),
        (_read, {"vectors_at_most": 100}),
        (_before, {"vectors_at_most": 150, "columns": COMPARED_COLUMNS}),
    ):
        lite, other = read(period_store, **options), read(pg, **options)
        columns = [c for c in lite.columns if c != "features"]  # bytes: compared below
        pd.testing.assert_frame_equal(lite[columns], other[columns], check_dtype=False)
        kept = lite["features"].notna()
        assert kept.equals(other["features"].notna()) and kept.any()
        assert [bytes(b) for b in lite["features"][kept]] == [
            bytes(b) for b in other["features"][kept]
        ]


def test_the_models_that_decided_a_period_are_its_distinct_pairs(period_store) -> None:
    frame = _read(period_store)
    assert deciding_models(frame) == {("parcel-risk", "0"), ("parcel-risk", "1")}
    as_text = set(
        zip(frame["model_name"].astype(str), frame["model_version"].astype(str), strict=True)
    )
    assert deciding_models(frame) == as_text


def test_unused_categories_and_missing_versions_name_no_model() -> None:
    frame = pd.DataFrame(
        {
            "model_name": pd.Categorical(["m", "m", "m", None, "m"], categories=["m", "gone"]),
            "model_version": pd.Categorical(
                ["1", "2", "1", "3", None], categories=["1", "2", "3", "9"]
            ),
        }
    )
    assert deciding_models(frame) == {("m", "1"), ("m", "2")}
    assert deciding_models(frame.iloc[:0]) == set()


def test_a_long_period_s_live_cdf_is_drawn_at_bounded_points() -> None:
    """Each point the exact share below its x (at most a bin right of the scores it counts)."""
    live = np.random.default_rng(5).beta(1.0, 12.0, 100_000)
    x, share = live_cdf(live)
    assert len(x) == len(share) == _CDF_POINTS
    assert x[-1] == live.max() and share[-1] == 1.0 and np.all(np.diff(share) >= 0)
    below = np.searchsorted(np.sort(live), x[:-1], side="left") / len(live)
    assert np.array_equal(share[:-1], below)
    assert np.all(np.diff(x) <= (live.max() - live.min()) / _CDF_POINTS * (1 + 1e-9))


def test_a_short_period_s_live_cdf_is_every_score() -> None:
    live = np.array([0.3, 0.1, np.nan, 0.2])
    x, share = live_cdf(live)
    assert x.tolist() == [0.1, 0.2, 0.3] and share.tolist() == [1 / 3, 2 / 3, 1.0]
    x, share = live_cdf(np.full(_CDF_POINTS + 1, 0.25))
    assert x.tolist() == [0.25] and share.tolist() == [1.0]
    assert len(live_cdf([])[0]) == 0


def _pixels(img: str) -> np.ndarray:
    import base64
    import io

    from matplotlib.image import imread

    data = img.split("base64,", 1)[1].split('"', 1)[0]
    return imread(io.BytesIO(base64.b64decode(data)), format="png")


def test_the_binned_score_chart_looks_like_every_score_s(monkeypatch) -> None:
    import serving.monitor.report as report

    rng = np.random.default_rng(9)
    reference = _reference_champion(rng).reference.score
    live = rng.beta(1.0, 3.0, 50_000)
    binned = _pixels(report.score_chart(reference, live))
    monkeypatch.setattr(report, "_CDF_POINTS", len(live))  # every score, as before
    exact = _pixels(report.score_chart(reference, live))
    assert binned.shape == exact.shape
    differ = np.abs(binned - exact).max(axis=-1) > 0.25
    assert differ.mean() < 0.005, differ.mean()  # antialiasing of a line a bin apart: 0.19%


def test_the_report_renders_a_period_of_more_scores_than_it_draws(
    period_store, monkeypatch
) -> None:
    import serving.monitor.report as report

    monkeypatch.setattr(report, "_CDF_POINTS", 50)  # the fixture's 240 champion decisions
    frame = _read(period_store)
    champion = _reference_champion(np.random.default_rng(7))
    summary = monitor_period(
        frame, [], champion, INFO, lane_targets_of(champion), SINCE, UNTIL,
        MonitorParams(min_drift_rows=10), _before(period_store, columns=COMPARED_COLUMNS),
    )  # fmt: skip
    assert len(summary["drift"]["score_live"]) > 50
    page = report.render_report(summary, champion.reference.score, MonitorParams())
    assert "Risk score: PSI" in page and page.count("data:image/png;base64,") >= 3
