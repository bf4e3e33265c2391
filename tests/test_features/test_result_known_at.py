"""``result_known_at``: a result the risk system received after its ``inspected_at`` (a lab
report, a weekly file, a result the decision store took in days late) counts in entity
features from when it was known, as the service counted it; its label stays at
``inspected_at`` (probe 23's root: a history exported from the store placed such results at
``inspected_at``, so the next model learnt from features better informed than were served)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.intake.contract import Contract
from features.params import FeatureParams
from features.pipeline.build import build_features
from features.pipeline.prepare import as_known_at, result_times
from features.pipeline.snapshot import pending_results_of
from tests.test_features.exports import ingest_text
from tests.test_features.family_frames import T0, declarations
from tests.test_features.test_mapping_dated_results import MAPPING as DATED_MAPPING

US = pd.Timedelta(microseconds=1)
DAY = pd.Timedelta(days=1)
PARAMS = FeatureParams(windows_days=(7,), outcome_window_days=90)


def _history(known: pd.Timestamp | None) -> pd.DataFrame:
    """Seller S1's parcel D000 found illicit at T0 + 2 days, its result known at ``known``;
    parcels of the same seller declared after it."""
    return declarations(
        {
            "declared_at": T0,
            "inspected": True,
            "inspected_at": T0 + 2 * DAY,
            "result_known_at": known,
            "illicit": True,
            "revenue_recovered": 30.0,
        },
        {"declared_at": T0 + 3 * DAY},  # after the inspection, before the result was known
        {"declared_at": T0 + 5 * DAY},  # at the instant it became known: not yet
        {"declared_at": T0 + 5 * DAY + US},
    )


def _illicit_counts(history: pd.DataFrame) -> list[float]:
    frame = build_features(history, Contract(), PARAMS).frame
    return frame.set_index("declaration_id")["seller_n_illicit"].tolist()


def test_a_result_counts_from_when_it_was_known_not_from_its_inspection() -> None:
    assert _illicit_counts(_history(T0 + 5 * DAY)) == [0.0, 0.0, 0.0, 1.0]
    assert _illicit_counts(_history(None)) == [0.0, 1.0, 1.0, 1.0]  # known at inspected_at


def test_a_known_time_before_the_inspection_is_read_as_the_inspection() -> None:
    history = _history(T0 + DAY)  # before inspected_at: says nothing more (the gate warns)
    assert _illicit_counts(history) == [0.0, 1.0, 1.0, 1.0]
    assert result_times(history).iloc[0] == T0 + 2 * DAY


def test_the_label_stays_at_inspected_at() -> None:
    frame = build_features(_history(T0 + 5 * DAY), Contract(), PARAMS).frame
    first = frame.set_index("declaration_id").loc["D000"]
    assert bool(first["illicit"]) and first["inspected_at"] == T0 + 2 * DAY


@pytest.mark.parametrize(("cutoff", "known"), [(T0 + 4 * DAY, False), (T0 + 6 * DAY, True)])
def test_the_history_as_known_at_a_cutoff_has_the_results_known_before_it(
    cutoff: pd.Timestamp, known: bool
) -> None:
    seen = as_known_at(_history(T0 + 5 * DAY), cutoff).set_index("declaration_id").loc["D000"]
    assert bool(seen["inspected"]) is known
    assert pd.isna(seen["illicit"]) is not known
    assert pd.isna(seen["result_known_at"]) is not known


def test_a_snapshot_carries_a_result_known_after_its_cutoff_at_that_time() -> None:
    """Inspected before the cutoff, known after it: the live state takes it when known."""
    history = _history(T0 + 5 * DAY).iloc[:2]  # declarations up to T0 + 3 days
    cutoff_us = (T0 + 4 * DAY).value // 1000
    (carried,) = pending_results_of(history, Contract(), cutoff_us)
    assert carried["declaration"]["declaration_id"] == "D000"
    assert carried["inspected_at_us"] == (T0 + 5 * DAY).value // 1000
    assert pending_results_of(_history(None).iloc[:2], Contract(), cutoff_us) == ()


def test_results_known_later_change_only_the_outcome_features() -> None:
    """Declaration counts, windows and values do not move; only what results say."""
    base = build_features(_history(None), Contract(), PARAMS).frame
    late = build_features(_history(T0 + 5 * DAY), Contract(), PARAMS).frame
    differ = [
        c
        for c in base.columns
        if c != "result_known_at"
        and not base[c].equals(late[c])
        and not np.array_equal(base[c].to_numpy(), late[c].to_numpy())
    ]
    assert differ and all(
        any(w in c for w in ("illicit", "hit_rate", "revenue", "inspected", "prior"))
        for c in differ
    ), differ


EXPORT = """\
ID;DEPOT;CONTROLE;SAISIE;RESULTAT
A1;10/03/2026 12:00;10/03/2026 15:00;13/03/2026;POS
A2;10/03/2026 08:00;10/03/2026 09:30;10/03/2026 11:00;NEG
A3;11/03/2026 08:00;;;
"""

# the dated-results export's mapping, with the day each result was entered (SAISIE)
MAPPING = DATED_MAPPING.replace(
    "  illicit:",
    '  result_known_at: {column: SAISIE, format: ["%d/%m/%Y %H:%M", "%d/%m/%Y"], '
    "timezone: Europe/Paris}\n  illicit:",
)


def test_an_export_maps_when_its_results_were_entered(tmp_path) -> None:
    """A day alone is the end of that day, as for inspected_at (never earlier than known)."""
    summary, got = ingest_text(tmp_path, EXPORT, MAPPING)
    known = got["result_known_at"]
    assert known["A1"] == pd.Timestamp("2026-03-13T23:00", tz="UTC")  # end of 13/03 in Paris
    assert known["A2"] == pd.Timestamp("2026-03-10T10:00", tz="UTC")
    assert pd.isna(known["A3"]) and summary["dated_without_time"] == 1
