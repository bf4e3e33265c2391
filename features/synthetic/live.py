"""One generated world cut in two: a history known at the cut and live traffic after it.

``generate_cut_world`` generates ``history_days + live_days`` days (``generate``) and places the
generator's drift events a given number of days after the cut, so that they arrive in the
traffic a champion trained on the history will score. The history holds the declarations before
the cut with the outcomes recorded before it (``as_known_at``); the traffic holds declaration
columns only, in ``declared_at`` order, with its ground truth row-aligned and the moment a
physical exam of each parcel would report (the generator's own lag, drawn once per parcel, so
every scorer that inspects a parcel hears the same). What the loop benchmark and the notebooks'
sandbox (``models.sandbox``) both run on.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class CutWorld:
    history: pd.DataFrame  # declared before the cut, outcomes as known at the cut
    history_truth: pd.DataFrame  # ground truth of the history, row-aligned with it
    traffic: pd.DataFrame  # declared from the cut on: declaration columns, declared_at order
    truth: pd.DataFrame  # ground truth of the traffic, row-aligned with it
    inspected_at: pd.Series  # when a physical exam of each traffic parcel would report
    cut: pd.Timestamp


def event_day_fraction(day: float, days: int) -> float:
    """The generator's ``*_day_fraction`` that switches an event on at the start of ``day``."""
    # the generator switches on day >= fraction x days: half a day early lands on the day itself
    return min(1.0, max(0.0, (day - 0.5) / days))


def generate_cut_world(
    *,
    seed: int,
    parcels: int,
    history_days: int,
    live_days: int,
    drift_after: int,
    partner_after: int,
    start: str = "2026-01-01",
) -> CutWorld:
    """``parcels`` over ``history_days + live_days`` days; the TR sellers' undervaluation drift
    starts ``drift_after`` days after the cut, PLT09's partnership ``partner_after`` days after."""
    from features.intake.contract import DECLARATION_COLUMNS
    from features.pipeline.prepare import as_known_at
    from features.synthetic import SyntheticParams, generate
    from features.synthetic.inspection import draw_inspection_delay
    from features.synthetic.world import OPERATORS

    days = history_days + live_days
    declarations, truth = generate(
        SyntheticParams(
            seed=seed,
            parcels=parcels,
            days=days,
            start=start,
            drift_day_fraction=event_day_fraction(history_days + drift_after, days),
            platform_partner_day_fraction=event_day_fraction(history_days + partner_after, days),
        )
    )
    first = declarations["declared_at"].min().normalize()
    cut = first + pd.Timedelta(days=history_days)
    later = (declarations["declared_at"] >= cut).to_numpy()
    traffic = declarations.loc[later, list(DECLARATION_COLUMNS)].reset_index(drop=True)
    traffic_truth = truth.loc[later].reset_index(drop=True)
    operator = pd.Categorical(traffic["operator_id"], categories=[o[0] for o in OPERATORS]).codes
    delay_s = draw_inspection_delay(np.random.default_rng(seed + 1), operator)
    inspected_at = traffic["declared_at"] + pd.to_timedelta(delay_s, unit="s")
    return CutWorld(
        history=as_known_at(declarations, cut),
        history_truth=truth.loc[~later].reset_index(drop=True),
        traffic=traffic,
        truth=traffic_truth,
        inspected_at=inspected_at,
        cut=cut,
    )
