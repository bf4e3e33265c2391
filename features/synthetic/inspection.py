"""The legacy inspection policy: which parcels carry labels, and what an offence is worth.

A random quota (``random_rate``, default 2.5%, ``selection_reason = "random"``) and, among the
others, the top ``inspection_capacity`` (3%) of each day's parcels by a transparent rule score:

=========================  ======  ========================================================
rule                       weight  fires when
=========================  ======  ========================================================
rule:risky_hs              2.0     HS chapter 21, 24, 30, 33, 42, 64, 71, 91 or 93
rule:high_value            1.5/3   declared value above 150 EUR / above 1,000 EUR
rule:vague_description     2.0     description is a vague word (gift, parts, goods...)
rule:restricted_keyword    3.0     description has a watchlist word (knife, steroid, tobacco...;
                                   about half of the restricted goods)
rule:low_value_per_kg      2.0     declared value below 10 EUR per kg
rule:risky_origin          1.0     origin HK, TR, PK, AE, VN or KH
rule:non_aeo               0.8     the declaring operator is not AEO-certified
rule:no_ioss               0.5     VAT not prepaid through IOSS
=========================  ======  ========================================================

A rule-selected parcel's ``selection_reason`` names its largest rule contribution. Inspection
finds the truth: an inspected illicit parcel recovers its revenue at stake, hours to days later.

A newcomer changes the legacy rules here (one line in ``select_for_inspection``'s table and a
row above) and what each offence costs in ``revenue_at_stake``.
"""

from __future__ import annotations

import numpy as np

from features.intake.contract import OFFENCE_TYPES, RANDOM_SELECTION
from features.synthetic.catalogue import VAGUE_WORDS, Catalogue
from features.synthetic.params import SyntheticParams
from features.synthetic.world import OPERATOR_CHANNELS

RISKY_CHAPTERS = ("21", "24", "30", "33", "42", "64", "71", "91", "93")
RULE_RISKY_ORIGINS = ("HK", "TR", "PK", "AE", "VN", "KH")
# The legacy keyword watchlist knows only some restricted goods (as real ones lag new products):
# the model must learn the others from outcomes.
WATCHLIST_WORDS = (
    "knife",
    "steroid",
    "cigarettes",
    "cigarette",
    "tobacco",
    "tramadol",
    "dagger",
    "ammunition",
)


def revenue_at_stake(
    p: SyntheticParams,
    rng: np.random.Generator,
    cat: Catalogue,
    parcels: dict[str, np.ndarray],
    would_be: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """What each parcel's offence is worth in EUR: ``(expected, drawn)``, at least 0.50.

    Fines and settlement shares vary case by case. ``expected`` (the ground truth's
    ``revenue_if_illicit``) is the expectation given the parcel, what an oracle can know;
    ``drawn`` is the case's amount, recovered if the parcel is illicit and inspected.
    ``would_be`` indexes ``OFFENCE_TYPES``.
    """
    n = len(would_be)
    item, declared_item = parcels["item"], parcels["declared_item"]
    duty, vat = cat.duty[item], p.vat_rate
    true_value, declared_eur = parcels["true_value"], parcels["declared_eur"]
    tax = duty + vat
    fine_mean = 120 * np.exp(0.9**2 / 2)
    fine = rng.lognormal(np.log(120), 0.9, n)
    origin_share = rng.uniform(0.1, 0.5, n)
    vague_share = rng.uniform(0.1, 0.6, n)

    def revenue_for(
        fine: np.ndarray, origin_share: np.ndarray, vague_share: np.ndarray
    ) -> np.ndarray:
        by_offence = {
            "undervaluation": (true_value - declared_eur) * tax,
            "misclassification": true_value * (duty - cat.duty[declared_item]) + 0.1 * true_value,
            "prohibited": fine + true_value * tax,
            "split_shipment": true_value * tax,
            "counterfeit": 0.6 * fine + true_value * tax,
            "origin_misdeclared": true_value * origin_share,
            "vague_description": (true_value - declared_eur) * tax + 0.1 * true_value,
            "other": true_value * tax * vague_share,
        }
        amount = np.select(
            [would_be == OFFENCE_TYPES.index(name) for name in by_offence],
            list(by_offence.values()),
            0.0,
        )
        return np.maximum(np.round(amount, 2), 0.5)

    expected = revenue_for(np.full(n, fine_mean), np.full(n, 0.3), np.full(n, 0.35))
    return expected, revenue_for(fine, origin_share, vague_share)


def select_for_inspection(
    p: SyntheticParams,
    rng: np.random.Generator,
    day: np.ndarray,
    chapter: np.ndarray,
    description: np.ndarray,
    declared_value_eur: np.ndarray,
    weight: np.ndarray,
    origin: np.ndarray,
    aeo: np.ndarray,
    ioss: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """The legacy policy's picks: ``(inspected, selection_reason)``, reason None if not picked.

    ``day`` is each parcel's day index (capacity is per day), ``chapter`` the declared HS
    chapter (int), ``origin`` the declared country code, ``weight`` in kg.
    """
    n = len(day)
    rules = {
        "rule:risky_hs": 2.0 * np.isin(chapter, [int(c) for c in RISKY_CHAPTERS]),
        "rule:high_value": 1.5 * (declared_value_eur > p.de_minimis_eur)
        + 1.5 * (declared_value_eur > 1_000),
        "rule:vague_description": 2.0 * np.isin(description, VAGUE_WORDS),
        "rule:restricted_keyword": 3.0 * on_watchlist(description),
        "rule:low_value_per_kg": 2.0 * (declared_value_eur / weight < 10.0),
        "rule:risky_origin": 1.0 * np.isin(origin, RULE_RISKY_ORIGINS),
        "rule:non_aeo": 0.8 * ~aeo,
        "rule:no_ioss": 0.5 * ~ioss,
    }
    contributions = np.stack(list(rules.values()), axis=1)
    score = contributions.sum(axis=1) + rng.uniform(0, 0.5, n)
    random_pick = rng.random(n) < p.random_rate
    day_counts = np.bincount(day, minlength=p.days)
    capacity = np.ceil(p.inspection_capacity * day_counts).astype(np.int64)
    # Parcels arrive sorted by time, so each day is one block; rank within it by score.
    ranked = np.lexsort((-np.where(random_pick, -np.inf, score), day))
    first = np.concatenate([[0], np.cumsum(day_counts)[:-1]])
    rank = np.arange(n) - first[day[ranked]]
    rule_pick = np.zeros(n, dtype=bool)
    rule_pick[ranked] = rank < capacity[day[ranked]]
    rule_pick &= ~random_pick
    rule_names = np.array(list(rules), dtype=object)
    reason = np.where(
        random_pick,
        RANDOM_SELECTION,
        np.where(rule_pick, rule_names[contributions.argmax(axis=1)], None),
    )
    return random_pick | rule_pick, reason


MAX_INSPECTION_DELAY_H = 240  # the longest wait for an inspection result


def draw_inspection_delay(rng: np.random.Generator, operator: np.ndarray) -> np.ndarray:
    """Seconds from declaration to inspection result: 1 to 240 hours, postal slower."""
    delay_h = rng.lognormal(np.log(30), 0.9, len(operator))
    delay_h = np.where(OPERATOR_CHANNELS[operator] == "postal", 1.5, 0.7) * delay_h
    return np.clip(delay_h * 3_600, 3_600, MAX_INSPECTION_DELAY_H * 3_600).astype(np.int64)


def on_watchlist(description: np.ndarray) -> np.ndarray:
    """Whether each description contains a watchlist word (whole word, any case)."""
    import pandas as pd

    pattern = r"\b(?:" + "|".join(WATCHLIST_WORDS) + r")\b"
    return (
        pd.Series(description, dtype="str")
        .str.contains(pattern, case=False, regex=True)
        .to_numpy(dtype=bool)
    )
