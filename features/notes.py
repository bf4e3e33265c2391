"""The warnings a decision carries, each with a stable code a client can branch on.

A warning's text is for a person and may be reworded between releases; its code is the
contract. A clearance system treats two groups differently (probe 14: an ignored misspelt
field turned a red parcel yellow, said only in English): ``lane.*`` codes say the lane was
set by policy rather than by the model's risk alone; every other code says the decision was
made on less than, or other than, what a clean declaration would give (a field ignored, a
code or value the model could not read), and a feed owner should hear of it.

The codes of the declaration rules' warnings are the rules' own names
(``features.intake.rules``: ``currency.rate``, ``hs_code.chapter``,
``declared_value.plausible``...); the others are listed in ``CODES``.
"""

from __future__ import annotations

from typing import NamedTuple


class RowNote(NamedTuple):
    """One warning on one row of a batch: its text and its stable code."""

    row: int
    text: str
    code: str


# Lanes set by policy, not by the model's risk alone.
LANE_IMPLAUSIBLE = "lane.implausible"
LANE_UNVALUED_CURRENCY = "lane.unvalued_currency"
LANE_EXPLORATION = "lane.exploration"
LANE_AEO_FACILITATION = "lane.aeo_facilitation"
# What the model read of the declaration.
CATEGORY_UNKNOWN = "category.unknown"
HS6_NO_REFERENCE = "hs6.no_reference"
HISTORY_BEFORE_CUTOFF = "history.before_cutoff"
HISTORY_STALE = "history.stale"
EXTRA_BEYOND_TRAINING = "extra.beyond_training"
FIELD_IGNORED = "field.ignored"
EXTRAS_MISSING = "extras.missing"
DECLARATION_AMENDED = "declaration.amended"
DECLARATION_SUPERSEDED = "declaration.superseded"
DESCRIPTION_OBSCURED = "description.obscured"
# A decision recorded before warnings had codes.
UNCLASSIFIED = "unclassified"

CODES: dict[str, str] = {
    LANE_IMPLAUSIBLE: "the lane was raised to serve.implausible_lane: a number above its "
    "plausible bound, which the model never saw",
    LANE_UNVALUED_CURRENCY: "the lane was raised to serve.implausible_lane: the value's "
    "currency has no exchange rate, so the model could not value the parcel",
    LANE_EXPLORATION: "the lane was raised by the random exploration quota, not by the model",
    LANE_AEO_FACILITATION: "the AEO facilitation made the lane milder than the risk alone",
    CATEGORY_UNKNOWN: "a code (office, operator, country, platform...) the model never saw: "
    "scored as 'other'",
    HS6_NO_REFERENCE: "an HS6 code without a reference price in the history",
    HISTORY_BEFORE_CUTOFF: "declared before the entity-state cutoff: history as of the cutoff",
    HISTORY_STALE: "declared long after the model's history ends: recent counts or hit rates "
    "describe the history's end",
    EXTRA_BEYOND_TRAINING: "a numeric extra far above any the model learnt from",
    FIELD_IGNORED: "a field not in the contract was ignored (a misspelt name?)",
    EXTRAS_MISSING: "a field the model's training traffic held was not sent: scored as unknown",
    DECLARATION_AMENDED: "the declaration id was decided before with other content",
    DECLARATION_SUPERSEDED: "an answer only: this content of the declaration id was decided "
    "before, and a later decision was made on other content since (the warning names it); "
    "this decision is not the parcel's current one",
    DESCRIPTION_OBSCURED: "the description holds hidden marks or letters of another script "
    "that look like Latin ones: read as the words it prints",
    UNCLASSIFIED: "a warning of a decision recorded before warnings had codes",
}


def is_lane_code(code: str) -> bool:
    """Whether the warning says the lane was set by policy, not by the risk alone."""
    return code.startswith("lane.")
