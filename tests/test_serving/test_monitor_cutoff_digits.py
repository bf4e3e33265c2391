"""The monitor's lane advice writes a refit's cut-off and the one in force with the digits that
tell them apart: a calibrated champion's top risks sit at 0.99999901..0.99999902, where four
significant digits printed both as "1" (probe 37)."""

from __future__ import annotations

import pytest

from serving.monitor.compute import Alert, _with_lane_advice, distinct_cutoffs

PROPOSED, IN_FORCE = 0.9999990120372492, 0.9999990151371909  # probe 37's September refit


def _red_alert() -> Alert:
    return Alert("lane_share", "red", 0.004, 0.01, "red lane: 0.40% of decisions")


def _lanes(proposed: float, in_force: float) -> dict:
    return {"refit": {"red_cutoff": proposed, "current_red_cutoff": in_force}}


def test_two_cut_offs_apart_in_the_ninth_digit_are_written_apart() -> None:
    proposed, in_force = distinct_cutoffs(PROPOSED, IN_FORCE)
    assert proposed != in_force
    assert (proposed, in_force) == ("0.99999901", "0.99999902")


@pytest.mark.parametrize(
    ("proposed", "in_force", "shown"),
    [
        (0.9, 0.5, ("0.9", "0.5")),  # ordinary cut-offs read as before
        (0.65, 0.2312345, ("0.65", "0.2312")),
        (0.7, 0.7, ("0.7", "0.7")),  # equal: alike
    ],
)
def test_cut_offs_far_apart_keep_four_significant_digits(proposed, in_force, shown) -> None:
    assert distinct_cutoffs(proposed, in_force) == shown


def test_the_red_lane_advice_shows_two_different_numbers() -> None:
    red = _with_lane_advice(_red_alert(), _lanes(PROPOSED, IN_FORCE), [])
    assert (
        "would have filled its target on this traffic: 0.99999901 (in force: 0.99999902;"
        in red.message
    )
