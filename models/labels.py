"""Which parcels carry labels, and which of those describe all the traffic.

Labels exist only for inspected parcels with a recorded outcome, and past inspections were
chosen by the legacy rules, so most labels are biased toward what the rules target. The unbiased
sample is the random-exploration parcels and the parcels of a census, inspected because every
parcel was (``census_mask``). Training fits on every label; calibration and evaluation prefer
the unbiased sample.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd

from features.errors import ParcelriskError
from features.intake.contract import CENSUS_SELECTION, RANDOM_SELECTION

UnbiasedSample = Literal["random", "census", "random+census", "none"]
OUTCOME_COLUMNS = ("inspected", "illicit", "selection_reason")  # what unbiased_mask reads
# ... and, to find census days, when the frame has them: the declaration time and the
# calendar feature that holds its weekday in features.timezone
DAY_COLUMNS = ("declared_at", "day_of_week")
# A day is a census day when at least this many parcels were declared on it and every one was
# inspected with a result. Targeting that picks a share s of the traffic picks all n parcels of
# a day with probability about s^n: at a heavy 50% and 50 parcels, 1e-15, and still 1e-3 if
# the parcels came in ten consignments selected together (s^10), so over a year of days no
# ordinary day passes for a census. Fewer parcels a day (a holiday, a small office) can be all
# inspected by the rules alone; an administration whose census days are smaller says so with
# selection_reason 'census'.
CENSUS_DAY_MIN_PARCELS = 50
US_PER_DAY = 86_400_000_000


def require_columns(frame: pd.DataFrame, columns: tuple[str, ...], what: str) -> None:
    """Refuse a frame without ``columns`` in one line that names them."""
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ParcelriskError(f"{what} lacks column(s): {', '.join(missing)}")


def labelled_mask(frame: pd.DataFrame) -> np.ndarray:
    """Inspected parcels with a recorded outcome: the only ones with labels."""
    inspected = frame["inspected"].astype("boolean").fillna(False).to_numpy(bool)
    return inspected & frame["illicit"].notna().to_numpy()


def recorded_before(frame: pd.DataFrame, when: pd.Timestamp) -> np.ndarray:
    """Rows whose result was recorded (``inspected_at``) before ``when``, or whose record
    time is unknown (a frame without the column, an empty cell): what a model trained at
    ``when`` could have learnt from."""
    if "inspected_at" not in frame.columns:
        return np.ones(len(frame), dtype=bool)
    at = pd.to_datetime(frame["inspected_at"], utc=True)
    return (at.isna() | (at < when)).to_numpy(dtype=bool)


def random_mask(frame: pd.DataFrame) -> np.ndarray:
    """Parcels inspected by the random exploration quota: the unbiased labels."""
    return (frame["selection_reason"].astype("str") == RANDOM_SELECTION).fillna(False).to_numpy(
        bool
    ) & labelled_mask(frame)


def local_days(frame: pd.DataFrame) -> np.ndarray:
    """Each parcel's declaration day in features.timezone, as days since 1970-01-01.

    The feature frame holds the local weekday (``day_of_week``, built in features.timezone),
    which puts the UTC day one back, on, or one forward: every caller (train, promote, the
    notebooks) then reads the same days from the frame alone. Without the column (a
    declarations frame) the days are UTC days: a census day's edges may be missed, never a
    selected parcel counted, since a day counts only when all its parcels are labelled."""
    at = pd.to_datetime(frame["declared_at"], utc=True).array.as_unit("us").asi8
    day = at // US_PER_DAY
    if "day_of_week" in frame.columns:
        weekday = frame["day_of_week"].to_numpy(np.float64, na_value=np.nan)
        known = np.isfinite(weekday)
        shift = np.zeros(len(day), dtype=np.int64)
        shift[known] = (weekday[known].astype(np.int64) - (day[known] + 3) % 7 + 1) % 7 - 1
        day = day + np.where(np.abs(shift) <= 1, shift, 0)  # 1970-01-01 was a Thursday (3)
    return day


def census_mask(frame: pd.DataFrame) -> np.ndarray:
    """Labelled parcels inspected because every parcel was: nothing chose them.

    Those whose ``selection_reason`` is ``census`` (the administration's word for it); those
    declared on a census day, one of at least CENSUS_DAY_MIN_PARCELS parcels every one of which
    was inspected with a result (``local_days``; a crackdown month mapped under any reason);
    and every parcel of a frame every parcel of which was. The days are judged on the parcels
    of ``frame``: a day cut by the frame's start counts only if its part reaches the floor.
    """
    labelled = labelled_mask(frame)
    if len(frame) and labelled.all():
        return labelled
    census = (frame["selection_reason"].astype("str") == CENSUS_SELECTION).fillna(False)
    census = census.to_numpy(bool) & labelled
    if "declared_at" in frame.columns and labelled.any():
        _, day, parcels = np.unique(local_days(frame), return_inverse=True, return_counts=True)
        unlabelled = np.bincount(day, weights=~labelled, minlength=len(parcels))
        whole_day = (unlabelled == 0) & (parcels >= CENSUS_DAY_MIN_PARCELS)
        census |= whole_day[day]
    return census


def sample_kind(random: np.ndarray, census: np.ndarray) -> UnbiasedSample:
    """What an unbiased sample holds: random-exploration parcels, census parcels, both, none."""
    if random.any():
        return "random+census" if census.any() else "random"
    return "census" if census.any() else "none"


def unbiased_mask(frame: pd.DataFrame) -> tuple[np.ndarray, UnbiasedSample]:
    """The parcels of ``frame`` whose labels describe all its traffic, and what kind they are.

    The random-exploration parcels and the census parcels (``census_mask``): ``random``,
    ``census``, ``random+census``, or ``none`` (targeted selections only). A census weighs as
    many parcels as it inspected: beside a 2.5% quota a census month is most of the sample.
    """
    random, census = random_mask(frame), census_mask(frame)
    return random | census, sample_kind(random, census)


def illicit_labels(frame: pd.DataFrame) -> np.ndarray:
    """1.0 for illicit, 0.0 otherwise (unlabelled parcels too: mask them with labelled_mask)."""
    return frame["illicit"].astype("boolean").fillna(False).to_numpy(dtype=np.float64)
