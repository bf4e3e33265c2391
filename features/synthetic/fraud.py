"""Fraud: who intends an offence, which mechanism they use and the signature it leaves.

Every parcel gets a fraud *intent* from a logistic model of the world's latent traits plus
observable fields (HS chapter, origin, IOSS, category). An intending parcel uses one mechanism,
which leaves its own signature in the declared data:

============================  ================================================================
offence_type                  signature in the declaration
============================  ================================================================
undervaluation                declared unit value 8-40% of the HS reference price
misclassification             HS code of a lower-duty item; the description names the real item
prohibited                    restricted medicines, tobacco, nicotine, weapons (description words)
split_shipment                a consignee receives 2-4 parcels of one order, each under 150 EUR,
                              within hours to three days
counterfeit                   fictional brand words (Luxora, Vantex, Kairo...) at 8-30% of the
                              reference price (genuine branded goods cost 1.5-3x the reference)
origin_misdeclared            CN/HK sellers declaring a VN/MY/TH/KH/ID origin
vague_description             "gift", "parts", "goods", "accessories", "sample"; value lowered
other                         background offences with no particular signature
============================  ================================================================

Honest look-alikes keep each signature from being a giveaway: legitimate discounts, genuine
branded goods, sloppy vague descriptions, resellers of Chinese goods, real origin shifts.

``p_illicit`` = intent x q + (1 - intent) x b with q (how clear-cut the offence is) set by the
mechanism and the strength of its signature (more extreme undervaluation, more certain) plus a
little noise, and b a small background rate rising with latent risk; ``illicit`` ~
Bernoulli(p_illicit). Latent intent and the Bernoulli draw keep the oracle ROC-AUC near 0.93.

Concept drift (all three are in the data):

1. **Seller cluster turns to undervaluation.** 40% of TR sellers become high-risk undervaluers
   at ``drift_day_fraction`` (default mid-period).
2. **Undervaluation moves from clothing to electronics.** The item groups undervaluers pick
   shift linearly from 60% clothing / 10% electronics on the first day to 10% clothing / 70%
   electronics on the last.
3. **A platform cleans up.** PLT09 (a risky marketplace) becomes partnered at
   ``platform_partner_day_fraction`` (default 60% of the period) and is compliant afterwards.

A newcomer adding a mechanism appends it to ``OFFENCE_TYPES`` in the contract (before
"other"), gives it a share in ``MECHANISM_MIX`` and a clarity in ``MECHANISM_CLARITY``, writes
its signature into the stage it touches (items, values, goods, origin) and its revenue in
``inspection.revenue_at_stake``. Each stage draws for every parcel, whatever its mechanism:
that keeps the random stream, and so the data of the other mechanisms, in place.
"""

from __future__ import annotations

import numpy as np

from features.intake.contract import OFFENCE_TYPES
from features.synthetic.catalogue import (
    VAGUE_WORDS,
    Catalogue,
    draw_item_words,
    draw_items_from,
    draw_items_in_groups,
)
from features.synthetic.params import SyntheticParams
from features.synthetic.sampling import pick_in_pools, sigmoid, weighted_choice
from features.synthetic.world import (
    COUNTRY_CODES,
    COUNTRY_RISK,
    DRIFT_PLATFORM,
    OPERATOR_AEO,
    PARTNERED_PLATFORMS,
    RESELLER_COUNTRIES,
    World,
)

MECHANISMS = OFFENCE_TYPES[:-1]  # every type except "other" has a signature
NO_MECHANISM = -1  # the parcel's sender intends no offence
UNDERVALUATION = MECHANISMS.index("undervaluation")
MISCLASSIFICATION = MECHANISMS.index("misclassification")
PROHIBITED = MECHANISMS.index("prohibited")
SPLIT_SHIPMENT = MECHANISMS.index("split_shipment")
COUNTERFEIT = MECHANISMS.index("counterfeit")
ORIGIN_MISDECLARED = MECHANISMS.index("origin_misdeclared")
VAGUE_DESCRIPTION = MECHANISMS.index("vague_description")
OTHER = len(MECHANISMS)  # index of "other" in OFFENCE_TYPES: background offences

# Share of each mechanism among intended offences (and among sellers' favourites).
MECHANISM_MIX = (0.33, 0.14, 0.10, 0.03, 0.17, 0.09, 0.14)
# Base probability that an intended offence is found, by mechanism (prohibited goods are
# unmistakable once opened; a vague description is often a sloppy but honest sender).
MECHANISM_CLARITY = (0.62, 0.72, 0.90, 0.70, 0.78, 0.62, 0.55)
# Transshipment pattern of origin misdeclaration: Chinese goods declared as South-East Asian.
MISDECLARED_ORIGINS = ("VN", "MY", "TH", "KH", "ID")
_RISKY_INTENT_CHAPTERS = (30, 24, 93, 42, 64, 91, 71)


def calibrate_offset(logit: np.ndarray, target: float) -> float:
    """Offset so the mean of sigmoid(logit + offset) is ``target`` (bisection, deterministic)."""
    lo, hi = -20.0, 20.0
    for _ in range(40):
        mid = (lo + hi) / 2
        if sigmoid(logit + mid).mean() > target:
            hi = mid
        else:
            lo = mid
    return (lo + hi) / 2


def draw_intent(
    p: SyntheticParams,
    rng: np.random.Generator,
    world: World,
    cat: Catalogue,
    parcels: dict[str, np.ndarray],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Whether each parcel's sender intends an offence, from latent risk and observable fields.

    Returns ``(logit, intent, drift_on)``: the calibrated intent logit (its mean sigmoid is
    ``intent_rate``), the drawn intent, and whether the parcel's seller has turned to
    undervaluation (drift 1).
    """
    seller, platform, item = parcels["seller"], parcels["platform"], parcels["item"]
    day = parcels["sec"] // 86_400
    n = len(seller)
    partner_day = p.platform_partner_day_fraction * p.days
    plat_effect = np.select(
        [platform < 0, platform < PARTNERED_PLATFORMS, platform == DRIFT_PLATFORM],
        [0.4, -0.9, np.where(day >= partner_day, -0.9, 0.9)],
        0.2,
    )
    drift_on = world.seller_drift[seller] & (day >= p.drift_day_fraction * p.days)
    chapter_effect = np.where(np.isin(cat.chapter[item], _RISKY_INTENT_CHAPTERS), 0.4, 0.0)
    chapter_effect -= np.where(cat.chapter[item] == 49, 0.8, 0.0)
    category = parcels["category"]
    logit = (
        world.seller_risk[seller]
        + 2.8 * drift_on
        + world.consignee_risk[parcels["consignee"]]
        + plat_effect
        - 0.8 * OPERATOR_AEO[parcels["operator"]]
        + COUNTRY_RISK[world.seller_country[seller]]
        + chapter_effect
        + 0.3 * ~parcels["ioss"]
        + np.select([category == 1, category == 4], [0.3, -1.5], 0.0)
        + rng.normal(0, 0.3, n)
    )
    logit += calibrate_offset(logit, p.intent_rate)
    intent = rng.random(n) < sigmoid(logit)
    return logit, intent, drift_on


def choose_mechanisms(
    rng: np.random.Generator,
    world: World,
    seller: np.ndarray,
    intent: np.ndarray,
    drift_on: np.ndarray,
) -> np.ndarray:
    """Index into ``MECHANISMS`` per parcel, ``NO_MECHANISM`` where there is no intent.

    Sellers mostly use their favourite; drifted sellers undervalue.
    """
    n = len(seller)
    mix = weighted_choice(rng, np.array(MECHANISM_MIX), n)
    mechanism = np.where(rng.random(n) < 0.6, world.seller_favourite[seller], mix)
    mechanism = np.where(drift_on & (rng.random(n) < 0.9), UNDERVALUATION, mechanism)
    # Origin misdeclaration is the CN/HK transshipment pattern; elsewhere it is undervaluation.
    mechanism = np.where(
        (mechanism == ORIGIN_MISDECLARED) & ~_sells_from_china(world, seller),
        UNDERVALUATION,
        mechanism,
    )
    return np.where(intent, mechanism, NO_MECHANISM)


def _sells_from_china(world: World, seller: np.ndarray) -> np.ndarray:
    return np.isin(COUNTRY_CODES[world.seller_country[seller]], ("CN", "HK"))


def redraw_items(
    rng: np.random.Generator,
    cat: Catalogue,
    parcels: dict[str, np.ndarray],
    t_frac: np.ndarray,
    mechanism: np.ndarray,
) -> np.ndarray:
    """The item each parcel really holds, once mechanisms that need a kind of item redrew it.

    ``t_frac`` is each parcel's time as a share of the period (undervaluation drift 2).
    """
    item = parcels["item"]
    n = len(item)
    groups = list(cat.groups)
    elec_share = 0.1 + 0.6 * t_frac
    cloth_share = 0.6 - 0.5 * t_frac
    u = rng.random(n)
    under_group = np.where(
        u < cloth_share,
        groups.index("clothing"),
        np.where(
            u < cloth_share + elec_share, groups.index("electronics"), parcels["group_of_item"]
        ),
    )
    redraw = (mechanism == UNDERVALUATION) & (rng.random(n) < 0.8)
    item = np.where(redraw, draw_items_in_groups(rng, cat, under_group), item)
    m_proh = mechanism == PROHIBITED
    item = np.where(
        m_proh & ~cat.restricted[item], draw_items_from(rng, cat, cat.restricted, n), item
    )
    m_fake = mechanism == COUNTERFEIT
    item = np.where(
        m_fake & ~cat.brandable[item], draw_items_from(rng, cat, cat.brandable, n), item
    )
    high_duty = (cat.duty >= 0.04) & ~cat.restricted
    m_misc = mechanism == MISCLASSIFICATION
    return np.where(m_misc & ~high_duty[item], draw_items_from(rng, cat, high_duty, n), item)


def value_parcels(
    rng: np.random.Generator,
    cat: Catalogue,
    item: np.ndarray,
    intent: np.ndarray,
    mechanism: np.ndarray,
) -> dict[str, np.ndarray]:
    """Quantities, true and declared values (EUR) and weights (kg).

    ``unit_price`` is the true price per item, ``declared_share`` the declared share of the true
    value: undervaluation 8-40%, vague descriptions 30-80%, legitimate discounts 40-80%.
    ``genuine_brand`` marks honest branded goods (priced 1.5-3x the reference).
    """
    n = len(item)
    m_under, m_fake = mechanism == UNDERVALUATION, mechanism == COUNTERFEIT
    price = cat.price[item]
    quantity = rng.geometric(0.6, n)
    quantity = np.where(price < 10, quantity * rng.integers(1, 4, n), quantity)
    quantity = np.minimum(quantity, 50)
    unit = price * rng.lognormal(0, 0.35, n)
    genuine_brand = ~intent & cat.brandable[item] & (rng.random(n) < 0.04)
    unit = np.where(genuine_brand, price * rng.uniform(1.5, 3.0, n), unit)
    unit = np.where(m_fake, price * rng.uniform(0.08, 0.3, n), unit)
    true_value = quantity * unit
    factor = np.ones(n)
    legit_discount = ~intent & (rng.random(n) < 0.08)
    factor = np.where(legit_discount, rng.uniform(0.4, 0.8, n), factor)
    factor = np.where(m_under, rng.uniform(0.08, 0.4, n), factor)
    factor = np.where(mechanism == VAGUE_DESCRIPTION, rng.uniform(0.3, 0.8, n), factor)
    weight = quantity * cat.weight[item] * rng.lognormal(0, 0.2, n) + rng.uniform(0.03, 0.3, n)
    return {
        "quantity": quantity,
        "unit_price": unit,
        "true_value": true_value,
        "declared_share": factor,
        "declared_eur": true_value * factor,
        "weight": weight,
        "genuine_brand": genuine_brand,
    }


def declare_goods(
    rng: np.random.Generator,
    cat: Catalogue,
    item: np.ndarray,
    intent: np.ndarray,
    mechanism: np.ndarray,
    genuine_brand: np.ndarray,
    category: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """What the declaration says the goods are: ``(description, declared_item, category)``.

    Counterfeits and genuine branded goods carry a brand word; prohibited goods name their
    restricted variant; vague descriptions say "gift", "parts"...; misclassified parcels declare
    a lower-duty item while the description still names the real one.
    """
    n = len(item)
    m_proh, m_vague = mechanism == PROHIBITED, mechanism == VAGUE_DESCRIPTION
    words, brand = draw_item_words(rng, cat, item)
    branded = genuine_brand | (mechanism == COUNTERFEIT)
    description = np.where(branded, brand, "") + words
    rnoun = cat.rnoun_pool[pick_in_pools(rng, cat.rnoun_start[item], cat.rnoun_count[item])]
    description = np.where(m_proh, rnoun, description)
    vague_words = np.array(VAGUE_WORDS, dtype=object)
    legit_vague = ~intent & (rng.random(n) < 0.025)
    vague = m_vague | legit_vague
    description = np.where(vague, vague_words[rng.integers(0, len(VAGUE_WORDS), n)], description)

    m_misc = mechanism == MISCLASSIFICATION
    declared_item = np.where(m_misc, cat.substitutes[item, rng.integers(0, 4, n)], item)
    category = np.where(m_vague & (rng.random(n) < 0.5), 1, category)  # declared as a gift
    return description, declared_item, category


def declare_origin(
    rng: np.random.Generator,
    world: World,
    seller: np.ndarray,
    intent: np.ndarray,
    mechanism: np.ndarray,
) -> np.ndarray:
    """Declared origin country (int into ``world.COUNTRIES``) of each parcel."""
    n = len(seller)
    country = world.seller_country[seller]
    origin = country.copy()
    codes = list(COUNTRY_CODES)
    cn = codes.index("CN")
    resale = np.isin(COUNTRY_CODES[country], RESELLER_COUNTRIES) & (rng.random(n) < 0.3)
    origin = np.where(resale, cn, origin)
    misdeclared = np.array([codes.index(c) for c in MISDECLARED_ORIGINS])
    shifted = misdeclared[rng.integers(0, len(misdeclared), n)]
    legit_shift = _sells_from_china(world, seller) & ~intent & (rng.random(n) < 0.01)
    return np.where((mechanism == ORIGIN_MISDECLARED) | legit_shift, shifted, origin)


def offence_probability(
    rng: np.random.Generator,
    cat: Catalogue,
    item: np.ndarray,
    intent: np.ndarray,
    mechanism: np.ndarray,
    values: dict[str, np.ndarray],
    logit: np.ndarray,
) -> np.ndarray:
    """True probability that each parcel is illicit (``p_illicit``)."""
    # How clear-cut an intended offence is follows what the declaration shows (mechanism, and
    # how extreme the price is), with a little parcel noise. If q were pure latent noise, the
    # oracle would rank on information no data holds and stop being a meaningful ceiling.
    n = len(item)
    factor, unit = values["declared_share"], values["unit_price"]
    q_mechanism = np.array(MECHANISM_CLARITY)[np.maximum(mechanism, 0)]
    price_gap = np.clip((0.4 - factor) / 0.32, 0.0, 1.0)  # undervaluation: 0 mild .. 1 extreme
    fake_gap = np.clip((0.3 - unit / cat.price[item]) / 0.22, 0.0, 1.0)  # counterfeit: far below
    q = (
        q_mechanism
        + np.where(mechanism == UNDERVALUATION, 0.25 * price_gap, 0.0)
        + np.where(mechanism == COUNTERFEIT, 0.15 * fake_gap, 0.0)
    )
    q = np.clip(q + rng.normal(0.0, 0.05, n), 0.2, 0.96)
    background = 0.004 + 0.2 * sigmoid(logit)
    return np.where(intent, q, background)


def add_split_orders(
    p: SyntheticParams,
    rng: np.random.Generator,
    base: dict[str, np.ndarray],
    world: World,
) -> dict[str, np.ndarray]:
    """Turn split-shipment parcels into orders of 2-4 parcels under the de minimis threshold.

    The anchor goes to a splitting consignee; its siblings follow within 0.5-72 hours with the
    same seller and item. Random non-split parcels are dropped so the total stays ``parcels``.
    """
    anchor = np.flatnonzero(base["mechanism"] == SPLIT_SHIPMENT)
    k = rng.integers(2, 5, len(anchor))
    order_value = rng.uniform(1.05, 3.6, len(anchor)) * p.de_minimis_eur
    order_value = np.minimum(order_value, k * p.de_minimis_eur * 0.97)
    base["consignee"][anchor] = world.splitters[rng.integers(0, len(world.splitters), len(anchor))]
    base["ioss"][anchor] = False

    rep = np.repeat(np.arange(len(anchor)), k - 1)  # sibling -> anchor position
    src = anchor[rep]
    siblings = {key: val[src].copy() for key, val in base.items()}
    offset = rng.uniform(1_800, 72 * 3_600, len(src)).astype(np.int64)
    siblings["sec"] = np.minimum(siblings["sec"] + offset, p.days * 86_400 - 1)
    siblings["p_illicit"] = np.clip(sigmoid(rng.normal(1.0, 1.1, len(src))), 0.2, 0.96)

    # Every parcel of the order is valued at a share of the order, under the threshold.
    per_parcel_anchor = order_value / k
    for target, share_src in ((base, anchor), (siblings, None)):
        idx = share_src if share_src is not None else slice(None)
        pos = np.arange(len(anchor)) if share_src is not None else rep
        value = per_parcel_anchor[pos] * rng.uniform(0.85, 1.15, len(pos))
        value = np.minimum(value, p.de_minimis_eur * rng.uniform(0.8, 0.99, len(pos)))
        scale = value / np.maximum(target["true_value"][idx], 1e-9)
        target["true_value"][idx] = value
        target["declared_eur"][idx] = value
        target["weight"][idx] = np.maximum(target["weight"][idx] * np.sqrt(scale), 0.05)

    merged = {key: np.concatenate([base[key], siblings[key]]) for key in base}
    surplus = len(merged["sec"]) - p.parcels
    if surplus > 0:
        # Drop ordinary parcels first; only in tiny runs can split siblings have to go too.
        is_split = merged["mechanism"] == SPLIT_SHIPMENT
        ordinary = rng.permutation(np.flatnonzero(~is_split))
        split_rows = np.flatnonzero(is_split)[::-1]
        drop = np.concatenate([ordinary, split_rows])[:surplus]
        keep = np.ones(len(merged["sec"]), dtype=bool)
        keep[drop] = False
        merged = {key: val[keep] for key, val in merged.items()}
    order = np.argsort(merged["sec"], kind="stable")
    return {key: val[order] for key, val in merged.items()}


def draw_offences(
    rng: np.random.Generator, mechanism: np.ndarray, p_illicit: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Draw the truth: ``(illicit, would_be, offence)``.

    ``would_be`` is the offence (index into ``OFFENCE_TYPES``) a parcel would be found with, its
    mechanism or "other" for background cases; ``offence`` is that where illicit, else -1.
    """
    illicit = rng.random(len(p_illicit)) < p_illicit
    would_be = np.where(mechanism >= 0, mechanism, OTHER)
    return illicit, would_be, np.where(illicit, would_be, -1)
