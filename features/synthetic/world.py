"""The trade: sellers, consignees, platforms, operators and offices, and how they behave.

Entities carry latent behaviour that only shows through their history:

- **sellers**: Zipf-like activity; ~8% high-risk, each with a favourite fraud mechanism; about
  a third appear during the period and new sellers are riskier. Each sells mainly from two
  catalogue groups, through one platform and one operator, in one currency.
- **platforms**: 15; five partnered and more compliant; direct sales have no platform.
- **consignees**: most receive 1-3 parcels; ~1% split orders into several parcels under the
  de minimis threshold (see ``fraud.add_split_orders``).
- **operators**: 12 postal, express and courier operators; five AEO-certified and cleaner.
- 30 seller countries (with a latent risk shift), 8 arrival offices, NUTS-like consignee
  regions, and a weekly and daily rhythm with slight growth over the period.

A newcomer changes the entities' mix and behaviour here (shares, popularity, currencies);
how latent risk turns into intent is in ``fraud.draw_intent``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from features.params import DEFAULT_FX_TO_BASE
from features.synthetic.catalogue import EXTRA_HS_DIGITS, Catalogue, draw_items_in_groups
from features.synthetic.params import SyntheticParams, parse_start
from features.synthetic.sampling import format_ids, weighted_choice

# Seller countries, their share of sellers and their latent risk shift.
COUNTRIES = (
    ("CN", 0.40, 0.30),
    ("HK", 0.07, 0.40),
    ("US", 0.08, -0.60),
    ("GB", 0.05, -0.60),
    ("TR", 0.05, 0.20),
    ("VN", 0.03, 0.20),
    ("IN", 0.03, 0.30),
    ("KR", 0.03, -0.40),
    ("JP", 0.02, -0.70),
    ("TW", 0.02, -0.30),
    ("TH", 0.02, 0.10),
    ("MY", 0.02, 0.10),
    ("ID", 0.015, 0.20),
    ("PK", 0.015, 0.50),
    ("BD", 0.01, 0.30),
    ("SG", 0.01, -0.50),
    ("AE", 0.015, 0.50),
    ("CH", 0.01, -0.80),
    ("CA", 0.015, -0.60),
    ("AU", 0.01, -0.60),
    ("BR", 0.01, 0.10),
    ("MX", 0.01, 0.10),
    ("IL", 0.01, -0.20),
    ("UA", 0.01, 0.20),
    ("RS", 0.01, 0.20),
    ("MA", 0.01, 0.30),
    ("EG", 0.005, 0.30),
    ("PH", 0.01, 0.20),
    ("KH", 0.005, 0.40),
    ("LK", 0.005, 0.10),
)
# Sellers outside these trade goods made in China (legitimate origin != seller country).
RESELLER_COUNTRIES = ("US", "GB", "HK", "SG", "AE", "CA", "AU", "KR", "CH")
_REGION_COUNTRIES = ("DE", "FR", "IT", "ES", "NL", "BE", "PL", "AT", "SE", "PT", "IE", "CZ")
COUNTRY_CODES = np.array([c for c, _, _ in COUNTRIES], dtype=object)
COUNTRY_RISK = np.array([r for _, _, r in COUNTRIES])
OFFICES = ("BEBRU01", "DEFRA01", "NLAMS01", "FRCDG01", "ITMXP01", "ESMAD01", "PLWAW01", "DELEJ01")
# id, channel, AEO, popularity
OPERATORS = (
    ("POST-01", "postal", False, 0.22),
    ("POST-02", "postal", False, 0.14),
    ("POST-03", "postal", True, 0.10),
    ("POST-04", "postal", False, 0.07),
    ("POST-05", "postal", False, 0.05),
    ("EXP-01", "express", True, 0.10),
    ("EXP-02", "express", True, 0.08),
    ("EXP-03", "express", True, 0.05),
    ("EXP-04", "express", False, 0.04),
    ("COUR-01", "courier", False, 0.07),
    ("COUR-02", "courier", False, 0.05),
    ("COUR-03", "courier", False, 0.03),
)
PLATFORMS = tuple(f"PLT{i:02d}" for i in range(1, 16))
PARTNERED_PLATFORMS = 5  # PLT01..PLT05
DRIFT_PLATFORM = 8  # index of PLT09
OPERATOR_CHANNELS = np.array([o[1] for o in OPERATORS], dtype=object)
OPERATOR_AEO = np.array([o[2] for o in OPERATORS])
_OPERATOR_POPULARITY = np.array([o[3] for o in OPERATORS])
_HOURLY = np.array(
    [2, 1.5, 1.5, 2, 3, 4, 5, 6, 7, 7, 7, 7, 6.5, 6.5, 6.5, 6, 6, 5.5, 5, 4.5, 4, 3.5, 3, 2.5]
)
_WEEKDAY = np.array([1.05, 1.10, 1.10, 1.05, 1.00, 0.80, 0.75])  # Monday first


@dataclass(frozen=True)
class World:
    """Latent entities. Sellers are sorted by the day they appear."""

    seller_start: np.ndarray
    seller_weight: np.ndarray
    seller_country: np.ndarray  # int into COUNTRIES
    seller_risk: np.ndarray
    seller_high_risk: np.ndarray
    seller_favourite: np.ndarray  # int into fraud.MECHANISMS
    seller_drift: np.ndarray  # TR cluster that turns to undervaluation
    seller_platform: np.ndarray  # -1 = direct sales
    seller_operator: np.ndarray
    seller_groups: np.ndarray  # (sellers, 2) main catalogue groups
    seller_currency: np.ndarray  # int into currency tuple
    seller_ids: np.ndarray
    consignee_weight: np.ndarray
    consignee_risk: np.ndarray
    consignee_region: np.ndarray  # object, None = unknown
    consignee_ids: np.ndarray
    splitters: np.ndarray  # consignee indices that split orders
    currencies: tuple[str, ...]


def build_world(
    p: SyntheticParams,
    rng: np.random.Generator,
    cat: Catalogue,
    mechanism_mix: tuple[float, ...],
) -> World:
    """Draw the sellers and consignees of one history (sizes follow the number of parcels).

    ``mechanism_mix`` weighs each fraud mechanism as a seller's favourite (``fraud.MECHANISMS``
    order); it is passed in so the world does not depend on the fraud module.
    """
    n_sellers = max(40, p.parcels // 40)
    n_consignees = max(100, int(p.parcels / 1.8))
    countries = [c for c, _, _ in COUNTRIES]
    share = np.array([s for _, s, _ in COUNTRIES])

    new = rng.random(n_sellers) < p.new_seller_share
    start = np.where(new, rng.integers(1, max(p.days, 2), n_sellers), 0)
    order = np.argsort(start, kind="stable")
    start, new = start[order], new[order]
    # Zipf-like activity, independent of the order of appearance.
    weight = 1.0 / rng.permutation(np.arange(1, n_sellers + 1)) ** 1.05
    weight *= rng.lognormal(0, 0.3, n_sellers)
    country = weighted_choice(rng, share, n_sellers)
    # High-risk sellers are rarer among the big ones and more frequent among newcomers.
    big = weight > np.quantile(weight, 0.99)
    p_high = p.high_risk_seller_share * np.where(big, 0.3, 1.0) * np.where(new, 1.8, 1.0)
    high = rng.random(n_sellers) < p_high
    risk = rng.normal(0, 0.6, n_sellers) + 2.8 * high + 0.6 * new + COUNTRY_RISK[country]
    favourite = weighted_choice(rng, np.array(mechanism_mix), n_sellers)
    drift = (country == countries.index("TR")) & (rng.random(n_sellers) < 0.4)

    platform_pop = np.array([3, 2.5, 2, 1.5, 1.2, 1.5, 1, 1, 1.3, 0.8, 0.6, 0.5, 0.5, 0.4, 0.3])
    platform = weighted_choice(rng, platform_pop, n_sellers)
    platform = np.where(rng.random(n_sellers) < 0.12, -1, platform)
    operator = weighted_choice(rng, _OPERATOR_POPULARITY, n_sellers)
    n_groups = len(cat.groups)
    group_pop = np.bincount(cat.group, weights=cat.popularity, minlength=n_groups)
    groups = np.stack(
        [weighted_choice(rng, group_pop, n_sellers), weighted_choice(rng, group_pop, n_sellers)]
    )

    currencies = ("EUR", "USD", "CNY", "GBP", "HKD", "JPY", "TRY")
    cu = rng.random(n_sellers)
    c_name = np.array(countries, dtype=object)[country]
    currency = np.where(cu < 0.6, 1, np.where(cu < 0.85, 0, 1))  # USD / EUR default
    currency = np.where((c_name == "CN") & (cu < 0.35), 2, currency)
    currency = np.where((c_name == "GB") & (cu < 0.85), 3, currency)
    currency = np.where((c_name == "US") & (cu < 0.95), 1, currency)
    currency = np.where((c_name == "HK") & (cu < 0.15), 4, currency)
    currency = np.where((c_name == "JP") & (cu < 0.6), 5, currency)
    currency = np.where((c_name == "TR") & (cu < 0.3), 6, currency)

    c_weight = rng.lognormal(0, 0.9, n_consignees)
    c_risk = rng.normal(0, 0.3, n_consignees) + 1.5 * (rng.random(n_consignees) < 0.02)
    regions = np.array(
        [f"{c}{d}" for c in _REGION_COUNTRIES for d in ("1", "2", "3", "4", "5")], dtype=object
    )
    region = regions[weighted_choice(rng, rng.lognormal(0, 0.8, len(regions)), n_consignees)]
    region = np.where(rng.random(n_consignees) < 0.05, None, region)
    splitters = rng.choice(
        n_consignees, max(5, int(p.splitter_consignee_share * n_consignees)), replace=False
    )
    return World(
        seller_start=start,
        seller_weight=weight,
        seller_country=country,
        seller_risk=risk,
        seller_high_risk=high,
        seller_favourite=favourite,
        seller_drift=drift,
        seller_platform=platform,
        seller_operator=operator,
        seller_groups=groups.T,
        seller_currency=currency,
        seller_ids=format_ids("S", rng.permutation(n_sellers) + 1, 6),
        consignee_weight=c_weight,
        consignee_risk=c_risk,
        consignee_region=region,
        consignee_ids=format_ids("C", rng.permutation(n_consignees) + 1, 7),
        splitters=splitters,
        currencies=currencies,
    )


def draw_seconds(p: SyntheticParams, rng: np.random.Generator, n: int) -> np.ndarray:
    """Seconds since the start, sorted, with weekly and daily rhythm and a slight growth."""
    start_weekday = int((parse_start(p.start).astype("datetime64[D]").astype(np.int64) + 3) % 7)
    day_index = np.arange(p.days)
    day_w = _WEEKDAY[(day_index + start_weekday) % 7] * (1 + 0.3 * day_index / p.days)
    day = weighted_choice(rng, day_w, n)
    hour = weighted_choice(rng, _HOURLY, n)
    seconds = day * 86_400 + hour * 3_600 + rng.integers(0, 3_600, n)
    return np.sort(seconds)


def draw_parcels(
    p: SyntheticParams, rng: np.random.Generator, world: World, cat: Catalogue
) -> dict[str, np.ndarray]:
    """Who sends what to whom, and when: the honest skeleton of every parcel.

    Returns one array per column, sorted by ``sec`` (seconds since the start): seller, platform
    (-1 = direct sale), operator, consignee, item and its group, category code and IOSS.
    """
    n = p.parcels
    sec = draw_seconds(p, rng, n)
    day = sec // 86_400
    active = np.searchsorted(world.seller_start, day, side="right")  # sellers sorted by start
    cw = np.cumsum(world.seller_weight)
    seller = np.searchsorted(cw, rng.random(n) * cw[active - 1], side="right")
    seller = np.minimum(seller, active - 1)

    platform = world.seller_platform[seller].copy()
    other_platform = weighted_choice(rng, np.ones(len(PLATFORMS)), n)
    switch = (rng.random(n) < 0.1) & (platform >= 0)
    platform = np.where(switch, other_platform, platform)
    operator = np.where(
        rng.random(n) < 0.75,
        world.seller_operator[seller],
        weighted_choice(rng, _OPERATOR_POPULARITY, n),
    )
    consignee = weighted_choice(rng, world.consignee_weight, n)

    # Item: one of the seller's two main groups (80%) or anything.
    g_pick = world.seller_groups[seller, (rng.random(n) < 0.35).astype(int)]
    group_of_item = np.where(
        rng.random(n) < 0.8, g_pick, cat.group[weighted_choice(rng, cat.popularity, n)]
    )
    item = draw_items_in_groups(rng, cat, group_of_item)

    category = weighted_choice(rng, np.array([0.88, 0.06, 0.02, 0.02, 0.02]), n)
    ioss = rng.random(n) < np.where(platform < 0, 0.25, 0.7)
    ioss |= (platform >= 0) & (platform < PARTNERED_PLATFORMS) & (rng.random(n) < 0.6)
    return {
        "sec": sec,
        "seller": seller,
        "platform": platform,
        "operator": operator,
        "consignee": consignee,
        "group_of_item": group_of_item,
        "item": item,
        "category": category,
        "ioss": ioss,
    }


@dataclass(frozen=True)
class DeclaredFields:
    """What the operator files beside the goods: money, HS code, office, weight, AEO status."""

    currency: np.ndarray
    declared_value: np.ndarray  # in ``currency``
    declared_value_eur: np.ndarray
    hs_code: np.ndarray
    office: np.ndarray  # int into OFFICES
    weight: np.ndarray  # kg, rounded as declared
    aeo: np.ndarray


def draw_declared_fields(
    rng: np.random.Generator, world: World, cat: Catalogue, parcels: dict[str, np.ndarray]
) -> DeclaredFields:
    """The filed form of each parcel: the seller's currency, 6-10 digit HS code, arrival office."""
    seller, operator = parcels["seller"], parcels["operator"]
    n = len(seller)
    currencies = np.array(world.currencies, dtype=object)
    currency = currencies[world.seller_currency[seller]]
    fx = np.array([DEFAULT_FX_TO_BASE[c] for c in world.currencies])[world.seller_currency[seller]]
    declared_value = np.maximum(np.round(parcels["declared_eur"] / fx, 2), 0.01)
    digits = rng.random(n)
    extra = np.array(EXTRA_HS_DIGITS, dtype=object)[rng.integers(0, len(EXTRA_HS_DIGITS), n)]
    hs_code = cat.hs6[parcels["declared_item"]] + np.where(digits < 0.25, extra, "")
    # Operators mostly declare at their home office.
    op_office = np.arange(len(OPERATORS)) % len(OFFICES)
    office = np.where(rng.random(n) < 0.6, op_office[operator], rng.integers(0, len(OFFICES), n))
    return DeclaredFields(
        currency=currency,
        declared_value=declared_value,
        declared_value_eur=declared_value * fx,
        hs_code=hs_code,
        office=office,
        weight=np.round(np.minimum(parcels["weight"], 999.0), 3),
        aeo=OPERATOR_AEO[operator],
    )
