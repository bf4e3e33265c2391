"""The gate's refusal of a holdout without unbiased labels says why, in the analyst's terms."""

from __future__ import annotations

import pandas as pd

from models.promotion import Decision, _without_unbiased_labels

NOT_COMPARED = Decision(
    False,
    ["no comparable metric: champion and challenger share no finite precision_at_5 ..."],
    not_compared="no finite precision_at_5 of both on the holdout",
)


def _holdout(selection: list[str | None]) -> pd.DataFrame:
    n = 10
    inspected = [True] * len(selection) + [False] * (n - len(selection))
    return pd.DataFrame(
        {
            "declared_at": pd.date_range("2026-09-12", periods=n, freq="h", tz="UTC"),
            "inspected": inspected,
            "selection_reason": selection + [None] * (n - len(selection)),
        }
    )


def test_a_holdout_of_the_models_own_selections_says_to_post_the_random_results() -> None:
    """Probe 13: only the red lane's results came back; the refusal named metrics and offered
    --force, not the cause (no random-exploration result) nor the fix (post them)."""
    decided = _without_unbiased_labels(NOT_COMPARED, _holdout(["model"] * 3 + ["manual"]))
    why = decided.reasons[-1]
    assert "holds no random-exploration result" in why
    assert "4 inspection results, selected by: model 3, manual 1" in why
    assert "post the exploration parcels' results" in why and "--ground-truth" in why
    assert decided.reasons[:-1] == NOT_COMPARED.reasons and not decided.promote


def test_random_results_in_the_holdout_leave_the_refusal_as_it_was() -> None:
    assert _without_unbiased_labels(NOT_COMPARED, _holdout(["model", "random"])) == NOT_COMPARED
