"""Declarations without an HS code (postal items often have none; probe 11: 55% of a postal
export's items were refused, and the only way in was a fake 999999 that then spoke in the
reasons). They are read, their HS-based features unknown, in batch and online alike."""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.intake.contract import DECLARATION_COLUMNS, Contract, coerce_declarations
from features.params import FeatureParams
from features.pipeline.build import build_features
from features.pipeline.online import compute_online_features
from features.pipeline.snapshot import EntityState, build_entity_state
from features.synthetic import SyntheticParams, generate

HS_BASED = ("value_per_kg_ratio_hs6", "value_per_kg_ratio_hs6_origin")  # unknown without HS


def _history(missing: float = 0.4) -> pd.DataFrame:
    full, _ = generate(SyntheticParams(seed=11, parcels=3000, days=40))
    lacking = np.random.default_rng(11).random(len(full)) < missing
    return coerce_declarations(
        full.assign(hs_code=full["hs_code"].mask(lacking)), with_outcomes=True
    )


def test_a_history_without_some_hs_codes_builds_with_them_unknown() -> None:
    history = _history()
    frame = build_features(history, Contract(), FeatureParams()).frame.set_index("declaration_id")
    lacking = history.set_index("declaration_id")["hs_code"].isna()
    assert 0.3 < lacking.mean() < 0.5
    for name in HS_BASED:
        assert frame.loc[lacking[lacking].index, name].isna().all(), name
        assert frame.loc[lacking[~lacking].index, name].notna().mean() > 0.2, name
    # no reference prices without a code: counted as none, never pooled into one "no HS" code
    assert (frame.loc[lacking[lacking].index, "reference_count_hs6"] == 0).all()


def test_online_features_without_an_hs_code_equal_batch(tmp_path) -> None:
    history = _history()
    params = FeatureParams()
    built = build_features(history, Contract(), params)
    cut = history["declared_at"].sort_values().iloc[-40]
    past = history[history["declared_at"] < cut]
    state = build_entity_state(past, Contract(), params, cutoff=cut, manifest=built.manifest)
    state.save(tmp_path / "state")
    # one arrival at a time, so each sees exactly the history before it, as batch does
    request = history[history["declared_at"] >= cut].head(1)
    request = pd.concat(
        [request, request.assign(declaration_id="NOHS", hs_code=None)], ignore_index=True
    )[list(DECLARATION_COLUMNS)]
    warnings: list[tuple[int, str]] = []
    online = compute_online_features(request, EntityState.load(tmp_path / "state"), warnings)
    assert online.loc[1, list(HS_BASED)].isna().all()
    assert online.loc[1, "reference_count_hs6"] == 0 < online.loc[0, "reference_count_hs6"]
    assert not [w for row, w, _ in warnings if row == 1 and "hs" in w.lower()], warnings


def test_dates_without_times_are_told_apart_from_times() -> None:
    """Posting dates alone hid a day's other parcels from the split windows, unsaid (probe
    11): `features build` warns when every declaration sits at one time of day."""
    from features.pipeline.build import dates_only

    days = pd.Series(pd.date_range("2026-03-01", periods=90, freq="D", tz="UTC").repeat(3))
    assert dates_only(days)
    # local midnights read in UTC: two times of day across a clock change
    local = pd.Series(
        pd.date_range("2026-03-01", periods=90, freq="D", tz="Europe/Warsaw").tz_convert("UTC")
    )
    assert dates_only(local)
    timed = days + pd.to_timedelta(np.arange(len(days)) * 37, unit="min")
    assert not dates_only(timed)
    assert not dates_only(days.head(10))  # too few to tell


def test_a_parquet_history_of_dates_alone_is_told_as_the_dask_engine_reads_it(tmp_path) -> None:
    from features.pipeline.build import dates_only_in

    days = pd.date_range("2026-03-01", periods=90, freq="D", tz="UTC").repeat(3)
    for stamps, expected in (
        (days, True),
        (days + pd.Timedelta(minutes=1) * np.arange(270), False),
    ):
        path = tmp_path / f"{expected}.parquet"
        pd.DataFrame({"declared_at": stamps.astype("datetime64[us, UTC]")}).to_parquet(path)
        assert dates_only_in(path) is expected


def test_features_build_says_a_history_of_dates_alone(tmp_path, caplog) -> None:
    """The warning and the summary's flag, from `features build` itself (not only its test)."""
    import logging

    from features.intake.io import write_declarations
    from features.params import Settings
    from features.pipeline.build import build_to_dir

    history = _history(missing=0.0)
    for dated, expected in ((False, None), (True, True)):
        frame = (
            history.assign(declared_at=history["declared_at"].dt.floor("D")) if dated else history
        )
        frame = frame.assign(
            inspected_at=frame["inspected_at"].where(
                frame["inspected_at"].isna(), frame["declared_at"] + pd.Timedelta(days=1)
            )
        )
        path = tmp_path / f"h{dated}.parquet"
        write_declarations(frame, path)
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="features.pipeline.build"):
            summary = build_to_dir(
                declarations_path=path, out=tmp_path / f"f{dated}", settings=Settings()
            )
        assert summary.get("declared_at_dates_only") is expected
        assert ("dates without times" in caplog.text) is dated
