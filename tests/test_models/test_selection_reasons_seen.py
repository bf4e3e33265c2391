"""When no test parcel is a random or legacy-rule selection, the reasons say which selection
reasons the history does hold: an export's own words, not mapped, show there."""

from __future__ import annotations

import pandas as pd

from models.evaluation import seen_selection_reasons


def test_the_reasons_a_history_holds_are_listed_most_frequent_first() -> None:
    reasons = pd.Series(["Zufallsauswahl"] * 3 + ["Risikoprofil A"] * 5 + [None] * 4)
    assert seen_selection_reasons(reasons) == (
        "the test period's: 'Risikoprofil A' 5, 'Zufallsauswahl' 3"
    )


def test_many_reasons_are_cut_and_none_is_said() -> None:
    reasons = pd.Series([f"r{i}" for i in range(8)])
    assert seen_selection_reasons(reasons, shown=2).endswith("and 6 more")
    assert seen_selection_reasons(pd.Series([None, None])) == "none recorded in the test period"
