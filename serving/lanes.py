"""Lane assignment: priority against the model's stored cut-offs, AEO facilitation, exploration.

Pure and vectorised over a batch. The policy, in order:

1. AEO facilitation: the priority of a declaration lodged by an AEO operator is multiplied by
   ``aeo_risk_discount`` (0.5 halves it; 1.0 switches facilitation off) before the cut-offs, so
   trusted traders need twice the evidence to be stopped; they are never exempt.
   (``models.thresholds.effective_priority``: training fits the cut-offs on the same.)
2. Cut-offs: ``priority >= red_cutoff`` -> red, ``>= yellow_cutoff`` -> yellow, else green
   (``models.bundle.LaneThresholds``, fitted on training traffic at the configured rates).
3. Implausible numbers: a declaration with a number above its plausible bound (the
   ``.plausible`` warning rules: value, weight, quantity, amount extras), or valued in a
   currency without an exchange rate (``currency.rate``: its value features are empty), goes
   at least to ``implausible_lane``: the model cannot judge a value it never saw or could not
   convert.
4. Exploration: a random quota of ``exploration_rate`` of all traffic, drawn independently of
   the score, goes at least to ``exploration_lane`` and is flagged ``exploration=True``. These
   parcels are the unbiased sample the next model is evaluated on, so membership is recorded
   even when the model had already chosen the same or a stricter lane.

The draw is ``blake2b(f"{seed}:{key}")`` mapped to [0, 1): reproducible from the seed and the
key alone (an auditor can recompute it with any blake2b implementation), and unpredictable to a
trader who does not know the seed. The key is the declaration id, so re-submitting the same
declaration cannot re-roll the draw. Keep the production seed out of public configuration.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

import numpy as np

from models.thresholds import effective_priority

if TYPE_CHECKING:
    from features.intake.rules import Findings
    from features.params import ServeParams
    from models.bundle import LaneThresholds

Lane = Literal["red", "yellow", "green"]
LANES: tuple[Lane, ...] = ("red", "yellow", "green")
_SEVERITY = {"green": 0, "yellow": 1, "red": 2}


def exploration_draws(keys: Sequence[str], seed: int) -> np.ndarray:
    """Uniform [0, 1) draw per key, a pure function of (seed, key)."""
    prefix = f"{seed}:".encode()
    digests = b"".join(
        hashlib.blake2b(prefix + str(k).encode(), digest_size=8).digest() for k in keys
    )
    ints = np.frombuffer(digests, dtype=">u8")
    # top 53 bits -> exact doubles in [0, 1)
    return (ints >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def assign_lanes(
    priority: np.ndarray,
    aeo: np.ndarray,
    decision_keys: Sequence[str],
    thresholds: LaneThresholds,
    config: ServeParams,
    implausible: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Lanes (array of 'red'/'yellow'/'green') and the exploration flag for each row.

    ``config``: the lane policy keys of the ``serve`` settings (``LANE_POLICY_KEYS``).
    ``implausible``: rows with a number above its plausible bound (``implausible_rows``)."""
    priority = np.asarray(priority, dtype=np.float64)
    aeo = np.asarray(aeo, dtype=bool)
    if not (len(priority) == len(aeo) == len(decision_keys)):
        raise ValueError("priority, aeo and decision_keys must have the same length")
    effective = effective_priority(priority, aeo, config.aeo_risk_discount)
    # NaN priority (should not happen) never lands in green silently: it goes to yellow.
    severity = np.select(
        [
            np.isnan(effective),
            effective >= thresholds.red_cutoff,
            effective >= thresholds.yellow_cutoff,
        ],
        [1, 2, 1],
        default=0,
    )
    if implausible is not None:
        floor = _SEVERITY[config.implausible_lane]
        severity = np.where(np.asarray(implausible, bool), np.maximum(severity, floor), severity)
    if config.exploration_rate > 0 and len(priority):
        exploration = exploration_draws(decision_keys, config.exploration_seed) < (
            config.exploration_rate
        )
        severity = np.where(
            exploration, np.maximum(severity, _SEVERITY[config.exploration_lane]), severity
        )
    else:
        exploration = np.zeros(len(priority), dtype=bool)
    lanes = np.array(["green", "yellow", "red"], dtype=object)[severity]
    return lanes, exploration


def facilitation_notes(
    priority: np.ndarray,
    aeo: np.ndarray,
    lanes: np.ndarray,
    thresholds: LaneThresholds,
    config: ServeParams,
) -> dict[int, str]:
    """Row -> a note for each declaration whose lane AEO facilitation made milder than its
    priority alone would: the decision shows ``priority`` before the discount, so a green
    parcel at 0.978 beside a red cut-off of 0.971 would read as an error (probe, 2026-12)."""
    priority = np.asarray(priority, dtype=np.float64)
    aeo = np.asarray(aeo, dtype=bool)
    if config.aeo_risk_discount >= 1.0 or not aeo.any():
        return {}
    names = ("green", "yellow", "red")
    discount = config.aeo_risk_discount
    notes = {}
    for i in np.flatnonzero(aeo).tolist():  # the AEO rows only: on the scoring path
        p = priority[i]
        plain = 2 if p >= thresholds.red_cutoff else 1 if p >= thresholds.yellow_cutoff else 0
        given = _SEVERITY.get(str(lanes[i]), 0)
        if plain > given:
            notes[i] = (
                f"AEO facilitation: priority {p:.3f} x serve.aeo_risk_discount {discount:g} = "
                f"{p * discount:.3f}, so {names[given]} instead of {names[plain]}"
            )
    return notes


# The warning rule of a currency without an exchange rate (``features.intake.rules``).
NO_RATE_RULE = "currency.rate"


def implausible_rows(findings: Findings) -> np.ndarray:
    """Rows of a batch's warning findings with a number above its plausible bound (the rules
    named ``<field>.plausible``, ``features.intake.rules``)."""
    rows = np.zeros(findings.n_rows, dtype=bool)
    for finding in findings.items:
        if finding.rule.name.endswith(".plausible") and finding.rule.severity == "warning":
            rows[finding.rows] = True
    return rows


def unvalued_rows(findings: Findings) -> np.ndarray:
    """Rows of a batch's warning findings in a currency without an exchange rate."""
    rows = np.zeros(findings.n_rows, dtype=bool)
    for finding in findings.items:
        if finding.rule.name == NO_RATE_RULE and finding.rule.severity == "warning":
            rows[finding.rows] = True
    return rows


def exploration_note(lane: str, without: str, rate: float) -> str:
    """The warning of a declaration the exploration quota raised from ``without`` to ``lane``:
    its reasons are the model's view of the parcel, not why it was selected (probe 12: a
    parcel drawn at random was answered and recorded with "IOSS prepaid: 0" as its reasons)."""
    return (
        f"{lane} by the random exploration quota (serve.exploration_rate {rate:.1%}), not by "
        f"the model: its risk alone gives {without}; drawn at random to measure what the model "
        "misses, and the reasons are the model's view of the parcel, not why it was selected"
    )


def implausible_note(lane: str, *, unvalued: bool = False) -> str:
    """The warning of a declaration ``implausible_lane`` raised to ``lane`` (``unvalued``: by
    its currency without an exchange rate rather than a number above its bound)."""
    if unvalued:
        return (
            f"{lane} at least (serve.implausible_lane): its currency has no exchange rate, so "
            "the model could not value the parcel (its value features are empty)"
        )
    return (
        f"{lane} at least (serve.implausible_lane): a number above its plausible bound, which "
        "the model never saw and cannot judge"
    )
