"""Which parcels training reads: a history bigger than one process's memory still trains.

``train_models`` needs every feature of some parcels only:
- the labelled ones (the fits, calibration, the baselines' training);
- every parcel of the periods it scores whole: the test period (held-out metrics, and the refit
  model's lane cut-offs and monitoring reference), and the validation period when there is no
  refit (its lane cut-offs);
- the seeded samples the revenue mixture is distilled on (``distil_sample``);
- the seeded train-period sample the drift reference compares against (``baseline_sample``).

Of the rest of the history it needs counts and spans only: how many parcels, how many carry
random-exploration labels, which labelled parcels a census inspected (a census day is judged on
all of its parcels, labelled or not), where the periods start and end. ``TrainingRows`` carries both, and ``read_training_rows`` reads exactly those rows from a
features file: the few outcome columns of every parcel first, then the features of the rows it
needs, a column at a time. At 10M generated parcels (5.5% inspected) that is a third of
the history; the unlabelled train period, the bulk of it, is never read.

Every sample is a function of a count and the seed, never of which rows were read, so a frame read
this way trains exactly the models the whole frame trains (tested): the rows training uses are
the same rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from features.errors import ParcelriskError
from models.labels import (
    DAY_COLUMNS,
    OUTCOME_COLUMNS,
    UnbiasedSample,
    census_mask,
    labelled_mask,
    random_mask,
    require_columns,
    sample_kind,
)
from models.split import SplitBoundaries, split_boundaries

ORDER = ["declared_at", "declaration_id"]  # the history's order; ties at an instant by id
# What training reads of every row, whatever the features.
REQUIRED_COLUMNS = (
    "declaration_id",
    "declared_at",
    "inspected",
    "illicit",
    "revenue_recovered",
    "selection_reason",
)
# The revenue mixture is distilled on this many parcels and checked on the next FIDELITY_ROWS of
# the same seeded permutation (``models.train.distil_mixture``).
DISTIL_ROWS = 60_000
FIDELITY_ROWS = 10_000
# The drift reference's train-period baseline (``baseline_psi``: shares of the reference's bins)
# is measured on at most this many train-period parcels: bin shares from 500k parcels are within
# about 0.1 percentage point of the whole period's, and the demo's train periods are smaller, so
# it reads them whole.
BASELINE_ROWS = 500_000


def distil_sample(seed: int, candidates: int) -> tuple[np.ndarray, np.ndarray]:
    """The positions (in history order, among the first ``candidates`` parcels) the revenue
    mixture is distilled on and checked on: a seeded permutation's first DISTIL_ROWS, and its
    next FIDELITY_ROWS; each sorted."""
    order = np.random.default_rng(seed).permutation(candidates)
    fit = np.sort(order[:DISTIL_ROWS])
    held = np.sort(order[DISTIL_ROWS : DISTIL_ROWS + FIDELITY_ROWS])
    return fit, held


def baseline_sample(seed: int, train_parcels: int) -> np.ndarray:
    """The positions of the train period (its first ``train_parcels`` parcels in history order)
    the drift reference's baseline is measured on: all of them up to BASELINE_ROWS, else a
    seeded sample of that many; sorted."""
    if train_parcels <= BASELINE_ROWS:
        return np.arange(train_parcels)
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(train_parcels, BASELINE_ROWS, replace=False))


@dataclass(frozen=True)
class TrainingRows:
    """The parcels training reads, and what it needs to know of the whole history.

    ``frame``: the rows read, in history order, index 0..n-1. ``position``: each row's place
    in the whole history's order (``arange`` when every row was read)."""

    frame: pd.DataFrame
    position: np.ndarray
    boundaries: SplitBoundaries
    # of the whole history: its parcels per period ("train", "validation", "test") and those
    # labelled by the random-exploration quota
    period_parcels: dict[str, int]
    random_labelled: int
    # the rows read that a census inspected (``models.labels.census_mask``), judged per period
    # on every parcel of it, read or not: as ``evaluate_holdout`` judges the test period
    census: np.ndarray

    @classmethod
    def whole(cls, features: pd.DataFrame, split: dict) -> TrainingRows:
        """Every row of an in-memory feature frame."""
        require_columns(features, REQUIRED_COLUMNS, "feature frame")
        frame = features.sort_values(ORDER, kind="stable", ignore_index=True)
        boundaries = split_boundaries(frame["declared_at"], split)
        return cls(frame, np.arange(len(frame)), boundaries, **_history_facts(frame, boundaries))

    @property
    def parcels(self) -> int:
        return sum(self.period_parcels.values())

    @property
    def unbiased(self) -> np.ndarray:
        """The rows read whose labels describe all the traffic: random exploration or census
        (every such parcel is labelled, so read)."""
        return random_mask(self.frame) | self.census

    @property
    def unbiased_sample(self) -> dict[str, UnbiasedSample]:
        """The kind of unbiased sample of the history ("history") and of each period."""
        random = random_mask(self.frame)
        parts = {"history": np.ones(len(self.frame), dtype=bool)}
        parts.update(self.boundaries.masks(self.frame["declared_at"]))
        return {
            part: sample_kind(random & mask, self.census & mask) for part, mask in parts.items()
        }

    @property
    def census_labelled(self) -> dict[str, int]:
        """Unbiased labels a census gave, in the history ("history") and each period."""
        periods = self.boundaries.masks(self.frame["declared_at"])
        return {
            "history": int(self.census.sum()),
            **{part: int((self.census & mask).sum()) for part, mask in periods.items()},
        }

    @property
    def exploration_rate(self) -> float:
        """The random quota the history was built with: the random-exploration share of the
        parcels no census inspected (a census day's quota parcels, if any, are not told apart,
        and a census beside the quota would otherwise read as a higher or a lower quota)."""
        drawn = int((random_mask(self.frame) & ~self.census).sum())
        parcels = self.parcels - int(self.census.sum())
        return drawn / parcels if parcels else 0.0

    @property
    def inspection_census(self) -> bool:
        """Whether every parcel of the history was inspected with a result."""
        return bool(self.parcels) and int(self.census.sum()) == self.parcels

    def rows_at(self, positions: np.ndarray) -> np.ndarray:
        """The frame rows at ``positions`` (sorted history positions), every one of them read."""
        rows = np.searchsorted(self.position, positions)
        found = rows < len(self.position)
        found[found] = self.position[rows[found]] == positions[found]
        if not found.all():
            raise ParcelriskError(
                f"training needs {int((~found).sum())} parcel(s) that were not read "
                "(read the features with models.training_rows.read_training_rows)"
            )
        return rows


def _history_facts(outcomes: pd.DataFrame, boundaries: SplitBoundaries) -> dict:
    """What training needs to know of the whole history beside the rows it reads, from its
    outcome columns and declaration times (``outcomes``: every parcel, in any order; its
    ``census`` is aligned with its rows)."""
    periods = boundaries.masks(outcomes["declared_at"])
    census = np.zeros(len(outcomes), dtype=bool)
    for mask in periods.values():
        census[mask] = census_mask(outcomes[mask])
    return {
        "period_parcels": {part: int(mask.sum()) for part, mask in periods.items()},
        "random_labelled": int(random_mask(outcomes).sum()),
        "census": census,
    }


def needed_positions(
    labelled: np.ndarray, period_parcels: dict[str, int], *, refit: bool, seed: int
) -> np.ndarray:
    """Which parcels (a mask in history order) ``train_models`` reads features of: see the
    module's docstring. ``labelled``: the labelled mask in history order."""
    n_train, n_valid = period_parcels["train"], period_parcels["validation"]
    needed = labelled.copy()
    needed[n_train + n_valid :] = True  # the test period
    if not refit:
        needed[n_train : n_train + n_valid] = True  # the lane cut-offs' traffic
    needed[baseline_sample(seed, n_train)] = True
    for candidates in (n_train + n_valid, len(labelled)) if refit else (n_train + n_valid,):
        for positions in distil_sample(seed, candidates):
            needed[positions] = True
    return needed


def read_training_rows(path: Path, split: dict, *, refit: bool, seed: int) -> TrainingRows:
    """The rows of the features file at ``path`` that training needs (``needed_positions``).

    Reads the order and outcome columns of every parcel, then the rows it needs a column at a
    time, so its peak is those rows and not the file. The frame equals the whole file's sorted
    frame at the rows read (same dtypes)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    parquet = pq.ParquetFile(path)
    missing = [c for c in REQUIRED_COLUMNS if c not in parquet.schema_arrow.names]
    if missing:
        raise ParcelriskError(f"feature frame {path} lacks column(s): {', '.join(missing)}")
    outcomes = pq.read_table(
        path,
        columns=[
            *dict.fromkeys([*ORDER, *OUTCOME_COLUMNS]),
            *(c for c in DAY_COLUMNS if c in parquet.schema_arrow.names and c not in ORDER),
        ],
        read_dictionary=["selection_reason"],
    ).to_pandas()
    if outcomes.empty:
        raise ParcelriskError(f"cannot split an empty feature frame ({path} has no rows)")
    # file row of each history position
    order = outcomes.sort_values(ORDER, kind="stable").index.to_numpy()
    outcomes = outcomes.take(order)
    boundaries = split_boundaries(outcomes["declared_at"], split)
    facts = _history_facts(outcomes, boundaries)
    needed = needed_positions(
        labelled_mask(outcomes), facts["period_parcels"], refit=refit, seed=seed
    )
    del outcomes
    position = np.flatnonzero(needed)
    facts["census"] = facts["census"][position]
    take = pa.array(order[position])  # file row of each row read, in history order
    # Column by column: Parquet reads one column cheaply, and the peak is then the rows read
    # plus one column of the file (batches of whole rows held the rows about twice over in
    # Arrow's pool before pandas had them: 15 GB for 4.9 GB of rows at 10M). Each column goes
    # through its one-column table's to_pandas, which keeps the pandas dtypes the file records.
    columns = {
        name: parquet.read(columns=[name]).take(take).to_pandas()[name].reset_index(drop=True)
        for name in parquet.schema_arrow.names
    }
    frame = pd.DataFrame(columns, copy=False)  # one block per column: no second copy
    return TrainingRows(frame, position, boundaries, **facts)
