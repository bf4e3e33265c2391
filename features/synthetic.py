"""Synthetic declaration history: a seeded world of e-commerce parcels, frauds and inspections.

The generator stands in for an administration's history until real data is mapped in. It writes
the declarations (with outcomes only where the legacy policy inspected) and the ground truth no
real administration has: the true probability and the true label of every parcel.

How the world works
-------------------
Entities carry latent behaviour that only shows through their history:

- **sellers** (Zipf-like activity; ~8% high-risk, each with a favourite fraud mechanism; about a
  third appear during the period and new sellers are riskier), **platforms** (15; five partnered
  and more compliant; direct sales have no platform), **consignees** (most receive 1-3 parcels;
  ~1% split orders into several parcels under the de minimis threshold), **operators** (12 postal,
  express and courier operators; five AEO-certified and cleaner), 30 origin countries, 8 arrival
  offices and NUTS-like consignee regions.
- Every parcel gets a fraud *intent* from a logistic model of these latent traits plus observable
  fields (HS chapter, origin, IOSS, category). An intending parcel uses one mechanism, which leaves
  its own signature in the declared data:

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

- ``p_illicit`` = intent x q + (1 - intent) x b with q (how clear-cut the offence is) set by the
  mechanism and the strength of its signature (more extreme undervaluation, more certain) plus a
  little noise, and b a small background rate rising with latent risk; ``illicit`` ~
  Bernoulli(p_illicit). Latent intent and the Bernoulli draw keep the oracle ROC-AUC near 0.93.

Concept drift (all three are in the data)
-----------------------------------------
1. **Seller cluster turns to undervaluation.** 40% of TR sellers become high-risk undervaluers
   at ``drift_day_fraction`` (default mid-period).
2. **Undervaluation moves from clothing to electronics.** The item groups undervaluers pick
   shift linearly from 60% clothing / 10% electronics on the first day to 10% clothing / 70%
   electronics on the last.
3. **A platform cleans up.** PLT09 (a risky marketplace) becomes partnered at
   ``platform_partner_day_fraction`` (default 60% of the period) and is compliant afterwards.

Legacy inspection policy (what decides which parcels carry labels)
-----------------------------------------------------------------
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

A rule-selected parcel's ``selection_reason`` names its largest rule contribution.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from features.errors import ParcelriskError
from features.intake.contract import (
    CATEGORIES,
    OFFENCE_TYPES,
    RANDOM_SELECTION,
    coerce_declarations,
    write_declarations,
)
from features.params import DEFAULT_FX_TO_BASE

if TYPE_CHECKING:
    import pandas as pd

logger = logging.getLogger(__name__)

DECLARATIONS_FILE = "declarations.parquet"
GROUND_TRUTH_FILE = "ground_truth.parquet"
GROUND_TRUTH_COLUMNS = (
    "declaration_id",
    "p_illicit",
    "illicit",
    "revenue_at_stake",
    "revenue_if_illicit",
    "offence_type",
)


class SyntheticParamsError(ParcelriskError, ValueError):
    """Generator parameters out of range; the message names the parameter."""


@dataclass(frozen=True)
class SyntheticParams:
    """Size, seed and world knobs of one synthetic history. Rates are shares of parcels."""

    seed: int = 42
    parcels: int = 300_000
    days: int = 180
    start: str = "2026-01-01"
    intent_rate: float = 0.075  # parcels whose sender intends an offence (before split copies)
    high_risk_seller_share: float = 0.08
    new_seller_share: float = 0.30
    splitter_consignee_share: float = 0.01
    inspection_capacity: float = 0.03  # rule-based inspections per day, share of the day's parcels
    # Random exploration quota. At 1.5% the offences the rules never target (unlisted restricted
    # goods, split orders, origin shifts) got 14-43 labels each in 108 days and a model reached
    # only 0.85 of the oracle's revenue@5%; at 2.5% it reaches 0.90 (see the models issue notes).
    random_rate: float = 0.025
    de_minimis_eur: float = 150.0
    vat_rate: float = 0.20
    drift_day_fraction: float = 0.5  # TR seller cluster turns to undervaluation
    platform_partner_day_fraction: float = 0.6  # PLT09 becomes partnered

    def __post_init__(self) -> None:
        if self.parcels < 1:
            raise SyntheticParamsError(f"parcels must be at least 1, got {self.parcels}")
        if self.days < 1:
            raise SyntheticParamsError(f"days must be at least 1, got {self.days}")
        for name in (
            "intent_rate",
            "high_risk_seller_share",
            "new_seller_share",
            "splitter_consignee_share",
            "inspection_capacity",
            "random_rate",
            "drift_day_fraction",
            "platform_partner_day_fraction",
        ):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise SyntheticParamsError(f"{name} must be between 0 and 1, got {value}")
        if not 0.0 < self.intent_rate < 0.5:
            raise SyntheticParamsError(f"intent_rate must be in (0, 0.5), got {self.intent_rate}")
        try:
            _parse_start(self.start)
        except ValueError as exc:
            raise SyntheticParamsError(
                f"start must be a date like 2026-01-01, got {self.start!r}"
            ) from exc


def _parse_start(start: str) -> np.datetime64:
    import pandas as pd

    ts = pd.Timestamp(start)
    if ts.tzinfo is not None:
        ts = ts.tz_convert("UTC").tz_localize(None)
    return np.datetime64(ts.normalize().to_datetime64(), "us")


# --------------------------------------------------------------------------------------------
# The HS catalogue: hs6 | group | reference price EUR/item | kg/item | duty | flags | nouns |
# restricted nouns. Flags: B = brandable (counterfeit target). Restricted nouns name prohibited
# or restricted variants of the item.
# --------------------------------------------------------------------------------------------

_CATALOGUE_TABLE = """
610910|clothing|8|0.18|0.12|B|T-shirt;tee;crew-neck top|
610990|clothing|7|0.16|0.12|B|tank top;sports tee|
611020|clothing|25|0.45|0.12|B|sweater;hoodie;sweatshirt|
611030|clothing|20|0.4|0.12|B|fleece jacket;zip hoodie|
610462|clothing|22|0.4|0.12||trousers;joggers|
610463|clothing|18|0.35|0.12||leggings;yoga pants|
610442|clothing|25|0.3|0.12|B|dress;maxi dress|
610443|clothing|20|0.28|0.12||party dress;bodycon dress|
611241|clothing|15|0.15|0.12||swimsuit;bikini|
611595|clothing|3|0.05|0.12||socks;ankle socks|
611596|clothing|3|0.05|0.12||compression socks;tights|
611710|clothing|10|0.15|0.12|B|scarf;shawl|
620342|clothing|30|0.6|0.12|B|jeans;chinos;cargo trousers|
620462|clothing|28|0.55|0.12|B|women's jeans;denim shorts|
620520|clothing|20|0.3|0.12|B|shirt;oxford shirt|
620630|clothing|18|0.22|0.12||blouse;tunic|
620193|clothing|45|0.8|0.12|B|rain jacket;windbreaker;parka|
620293|clothing|45|0.8|0.12|B|puffer jacket;down coat|
621210|clothing|12|0.08|0.065||bra;sports bra|
611233|clothing|30|0.6|0.12|B|tracksuit;training suit|
620442|clothing|30|0.35|0.12|B|summer dress;shirt dress|
621710|clothing|4|0.05|0.063||sew-on patches;collar stays|
640299|footwear|18|0.7|0.169|B|sneakers;slides;sandals|
640391|footwear|55|1.0|0.08|B|leather boots;ankle boots|
640399|footwear|45|0.8|0.08|B|leather shoes;loafers|
640411|footwear|40|0.7|0.169|B|running shoes;trainers|
640419|footwear|15|0.5|0.17||slippers;canvas shoes|
640520|footwear|12|0.4|0.04||house slippers;espadrilles|
640610|footwear|5|0.15|0.03||shoe uppers;shoe parts|
640690|footwear|4|0.1|0.03||insoles;heel cushions|
847130|electronics|450|2.0|0.0|B|laptop;notebook computer|
847150|electronics|300|3.0|0.0||mini PC;computer unit|
847160|electronics|25|0.3|0.0||keyboard;mouse;gaming mouse|
847170|electronics|40|0.1|0.0||SSD drive;hard drive|
847330|electronics|30|0.1|0.0||graphics card;RAM module;motherboard|
847989|electronics|60|2.0|0.017||robot vacuum;air purifier|
850440|electronics|12|0.2|0.0||power adapter;charger;power supply|
850650|electronics|6|0.05|0.047||lithium battery;coin cell|
850760|electronics|20|0.3|0.027||power bank;battery pack|
850980|electronics|35|1.5|0.022||blender;juicer|
851010|electronics|30|0.4|0.022|B|electric shaver;beard trimmer|
851631|electronics|25|0.6|0.027|B|hair dryer;hair straightener|
851671|electronics|40|2.0|0.027||coffee maker;espresso machine|
851713|electronics|250|0.25|0.0|B|smartphone;mobile phone|
851762|electronics|35|0.3|0.0||wifi router;bluetooth adapter;smartwatch|
851779|electronics|10|0.05|0.0||phone battery;replacement screen|
851830|electronics|20|0.2|0.02|B|headphones;earbuds;wireless earphones|
851822|electronics|30|0.6|0.02|B|bluetooth speaker;soundbar|
852580|electronics|60|0.3|0.0||action camera;webcam;security camera|
852852|electronics|150|4.0|0.0||monitor;computer screen|
852872|electronics|300|8.0|0.14||smart TV;LED television|
854370|electronics|15|0.2|0.022||LED controller;electronic module|
854340|electronics|10|0.08|0.022||vape pen;e-cigarette;pod device|disposable vape 20mg;nicotine vape pen
853950|electronics|6|0.1|0.027||LED bulb;LED strip|
854442|electronics|4|0.08|0.033||USB cable;charging cable;HDMI cable|
852351|electronics|12|0.02|0.0||memory card;USB flash drive|
950450|electronics|250|2.5|0.0|B|game console;handheld console|
851660|electronics|50|3.0|0.027||air fryer;hot plate|
852691|electronics|80|0.3|0.037||GPS tracker;navigation device|
852910|electronics|10|0.2|0.036||antenna;TV aerial|
950300|toys|12|0.4|0.0|B|toy car;puzzle;building blocks;doll|
950490|toys|15|0.6|0.0||board game;card game;chess set|
950440|toys|4|0.1|0.029||playing cards;tarot deck|
950510|toys|8|0.3|0.027||christmas ornaments;tree decorations|
950590|toys|6|0.2|0.027||party decorations;costume mask|
950631|toys|80|1.2|0.027|B|golf club;putter|
950662|toys|15|0.4|0.027|B|football;basketball|
950691|toys|35|3.0|0.027||dumbbells;resistance bands;yoga mat|
950711|toys|25|0.5|0.037||fishing rod;telescopic rod|
950790|toys|6|0.1|0.037||fishing lures;fishing hooks|
330300|cosmetics|35|0.3|0.0|B|eau de parfum;perfume;cologne|
330410|cosmetics|8|0.05|0.0|B|lipstick;lip gloss|
330420|cosmetics|9|0.05|0.0|B|mascara;eyeliner;eyeshadow palette|
330430|cosmetics|5|0.05|0.0||nail polish;gel nail kit|
330491|cosmetics|10|0.08|0.0|B|face powder;setting powder|
330499|cosmetics|15|0.15|0.0|B|face serum;moisturiser;sunscreen|skin whitening cream (mercury);hydroquinone cream
330510|cosmetics|8|0.4|0.0||shampoo;hair mask|
330590|cosmetics|7|0.2|0.0||hair oil;hair dye|
330720|cosmetics|5|0.15|0.0||deodorant;antiperspirant|
711311|jewellery|30|0.05|0.025|B|silver ring;silver necklace;silver bracelet|
711319|jewellery|250|0.02|0.025|B|gold ring;gold chain;gold earrings|
711719|jewellery|5|0.04|0.04|B|fashion earrings;costume necklace;charm bracelet|
711790|jewellery|4|0.03|0.04||beaded bracelet;hair jewellery|
710391|jewellery|100|0.01|0.0||gemstone;loose sapphire|
711610|jewellery|40|0.03|0.0||pearl necklace;pearl earrings|
711411|jewellery|60|0.4|0.02||silver cutlery;silver tray|
910211|watches|40|0.1|0.045|B|quartz watch;wristwatch|
910212|watches|25|0.08|0.045|B|digital watch;sports watch|
910221|watches|120|0.15|0.045|B|automatic watch;diver watch|
910111|watches|800|0.12|0.045|B|gold watch;luxury watch|
911320|watches|8|0.04|0.06||watch strap;watch band;metal bracelet|
910521|watches|20|0.8|0.047||wall clock;alarm clock|
420221|bags|80|0.7|0.03|B|leather handbag;shoulder bag;tote bag|
420222|bags|20|0.4|0.097|B|handbag;crossbody bag|
420231|bags|25|0.1|0.03|B|leather wallet;card holder|
420232|bags|8|0.06|0.097||wallet;coin purse|
420292|bags|25|0.6|0.097|B|backpack;gym bag;duffel bag|
420212|bags|60|3.5|0.097|B|suitcase;carry-on luggage|
420330|bags|15|0.2|0.05|B|leather belt;belt|
490199|books|12|0.4|0.0||book;novel;textbook|
490110|books|3|0.1|0.0||brochure;leaflet|
490300|books|8|0.3|0.0||picture book;colouring book|
491191|books|6|0.1|0.0||poster;art print;photo print|
490900|books|2|0.03|0.0||postcards;greeting cards|
490290|books|5|0.2|0.0||magazine;comic book|
210690|food|20|0.5|0.09||protein powder;vitamin gummies;collagen powder|DMAA pre-workout;sibutramine slimming capsules
210111|food|12|0.3|0.09||instant coffee;coffee extract|
090210|food|10|0.2|0.0||green tea;matcha powder|
170490|food|6|0.3|0.08||candy;chocolate bar;gummies|
190590|food|5|0.4|0.09||biscuits;snack crackers|
200899|food|8|0.4|0.1||dried fruit;roasted nuts|
090111|food|15|0.5|0.0||coffee beans;espresso beans|
121120|food|30|0.2|0.0||ginseng root;herbal roots|kratom powder;khat leaves
230910|food|15|2.0|0.096||cat treats;dog food|
300490|medicines|25|0.1|0.0||paracetamol tablets;ibuprofen gel;allergy tablets|sildenafil 100mg tablets;tramadol capsules;modafinil tablets;semaglutide pen
300450|medicines|15|0.15|0.0||multivitamin tablets;vitamin D capsules|anabolic steroid tablets;oxandrolone capsules
300510|medicines|5|0.1|0.0||adhesive bandages;plasters|
300590|medicines|6|0.1|0.0||gauze dressing;wound dressing|
300660|medicines|10|0.05|0.0||contraceptive gel;lubricant gel|
300215|medicines|60|0.1|0.0||allergy test kit;rapid test kit|botox injection vials;peptide injection vials
240210|tobacco|30|0.1|0.26||cigars;cigarillos|cigars without excise stamps
240220|tobacco|40|0.25|0.576||cigarettes|cigarette cartons;duty-free cigarettes
240311|tobacco|15|0.25|0.749||shisha tobacco;hookah tobacco|unlabelled shisha tobacco
240399|tobacco|12|0.1|0.166||nicotine pouches;snus|snus cans;chewing tobacco
240412|tobacco|8|0.05|0.065||e-liquid 0mg;vape juice|e-liquid 20mg nicotine;nicotine shots 18mg
930400|weapons|60|1.5|0.032||airsoft gun;BB pistol|CO2 air pistol;pepper spray gun
930690|weapons|20|0.3|0.017||airsoft pellets;practice targets|blank cartridges;pellet ammunition
930700|weapons|50|1.2|0.017||decorative sword;katana replica|butterfly knife;gravity knife;bayonet
930599|weapons|30|0.4|0.032||scope mount;gun cleaning kit|rifle trigger assembly;gun barrel
821191|weapons|10|0.3|0.085||kitchen knife;steak knives|push dagger;knuckle knife
821193|weapons|15|0.15|0.085||pocket knife;multi-tool|switchblade knife;automatic knife
870899|auto|25|1.5|0.03||car mirror;spoiler;brake caliper cover|
870830|auto|40|2.5|0.03||brake pads;brake discs|
870829|auto|30|1.2|0.03||car bumper;door handle|
870870|auto|80|8.0|0.03|B|alloy wheel;wheel rim|
871492|auto|25|1.0|0.047||bicycle rim;spokes|
871499|auto|15|0.5|0.047||bike saddle;bike pedals;bicycle light mount|
851220|auto|20|0.4|0.027||LED headlight;car tail light|
940120|auto|70|5.0|0.0||car seat cushion;car seat|
871200|auto|300|13.0|0.14|B|bicycle;mountain bike|
871160|auto|400|15.0|0.06|B|electric scooter;e-bike|
392410|home|6|0.3|0.065||lunch box;food container|
392690|home|5|0.1|0.065||phone case;cable organizer;plastic hook|
392640|home|8|0.2|0.065||plastic figurine;decorative ornament|
691200|home|15|1.0|0.09||ceramic mug;dinner plate|
701337|home|12|0.6|0.11||drinking glasses;glass tumbler|
732393|home|15|0.6|0.032||stainless steel pan;steel water bottle|
821510|home|20|0.6|0.085||cutlery set;spoon set|
940540|home|25|1.0|0.047||desk lamp;floor lamp;night light|
940161|home|80|8.0|0.0||office chair;gaming chair|
940360|home|60|6.0|0.0||bookshelf;side table|
630231|home|30|1.0|0.12||bed sheets;duvet cover|
630260|home|12|0.5|0.12||bath towel;beach towel|
630391|home|20|0.8|0.12||curtains;blackout curtain|
630140|home|20|1.0|0.12||fleece blanket;throw blanket|
630790|home|8|0.1|0.063||face mask;cleaning cloth;reusable bag|
961511|home|3|0.05|0.027||hair comb;hair clip|
960321|home|3|0.05|0.037||toothbrush;toothbrush heads|
961900|home|10|1.0|0.0||baby diapers;sanitary pads|
630622|sports|60|3.0|0.12||camping tent;beach tent|
950699|sports|12|0.4|0.027||badminton set;jump rope;swim goggles|
950619|sports|50|2.0|0.037||ski goggles;ski poles|
900410|sports|15|0.05|0.029|B|sunglasses;polarised sunglasses|
900490|sports|10|0.05|0.029||safety glasses;reading glasses|
900510|sports|50|0.6|0.042||binoculars;monocular|
901910|sports|30|0.8|0.0||massage gun;neck massager|
902519|sports|8|0.05|0.0||digital thermometer;hygrometer|
846721|tools|50|1.8|0.027|B|cordless drill;impact driver|
820540|tools|8|0.2|0.037||screwdriver set;precision screwdriver kit|
820320|tools|10|0.3|0.037||pliers;wire cutters|
846729|tools|40|1.5|0.027||angle grinder;heat gun|
901720|tools|10|0.2|0.027||laser level;measuring tape|
851511|tools|20|0.4|0.027||soldering iron;soldering station|
960820|misc|5|0.1|0.037||marker pens;highlighters|
482020|misc|4|0.3|0.0||notebook;sketchbook|
920600|misc|40|2.0|0.032||drum pad;tambourine|
920710|misc|120|5.0|0.032||digital piano;MIDI keyboard|
920290|misc|80|3.0|0.032|B|acoustic guitar;ukulele|
420100|misc|12|0.3|0.027||dog collar;dog leash;pet harness|
940490|misc|20|1.0|0.037||pet bed;floor cushion|
871500|misc|150|8.0|0.027||stroller;pram|
392490|misc|8|0.2|0.065||baby bottle;teether|
820110|misc|15|1.2|0.017||garden spade;shovel|
842489|misc|20|0.8|0.017||garden sprayer;mist sprayer|
670411|misc|25|0.3|0.022|B|wig;hair extensions|
670420|misc|80|0.3|0.022||human hair wig;lace front wig|
"""

_ADJECTIVES = {
    "clothing": "cotton;polyester;knitted;women's;men's;kids';black;striped;oversized;slim-fit;printed",
    "footwear": "leather;running;canvas;women's;men's;kids';waterproof;suede",
    "electronics": "wireless;USB-C;portable;smart;bluetooth;rechargeable;mini;LED",
    "toys": "plastic;wooden;plush;educational;remote control;kids';magnetic",
    "cosmetics": "organic;matte;waterproof;vegan;long-lasting;hydrating;herbal",
    "jewellery": "handmade;vintage;minimalist;crystal;adjustable;dainty",
    "watches": "men's;women's;classic;black;silver-tone;minimalist",
    "bags": "black;brown;women's;travel;mini;quilted",
    "books": "paperback;hardcover;illustrated;used;children's",
    "food": "vegan;herbal;sugar-free;organic;natural",
    "medicines": "sterile;adhesive;elastic;cooling;travel-size",
    "tobacco": "menthol;mint;flavoured;premium",
    "weapons": "folding;tactical;steel;compact;hunting",
    "auto": "universal;black;replacement;front;rear",
    "home": "large;small;white;grey;modern;set of 2",
    "sports": "adjustable;foldable;anti-slip;lightweight;professional",
    "tools": "steel;heavy-duty;compact;professional;mini",
    "misc": "small;large;blue;red;handmade;new",
}
BRANDS = ("Luxora", "Vantex", "Kairo", "Zentra", "Orvani", "Belmonte")
VAGUE_WORDS = ("gift", "parts", "goods", "accessories", "sample")
RISKY_CHAPTERS = ("21", "24", "30", "33", "42", "64", "71", "91", "93")
RULE_RISKY_ORIGINS = ("HK", "TR", "PK", "AE", "VN", "KH")
# Transshipment pattern of origin misdeclaration: Chinese goods declared as South-East Asian.
MISDECLARED_ORIGINS = ("VN", "MY", "TH", "KH", "ID")
EXTRA_HS_DIGITS = ("00", "10", "90", "0000", "1000", "9000", "9090")

# Seller countries, their share of sellers and their latent risk shift.
_COUNTRIES = (
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
_RESELLER_COUNTRIES = ("US", "GB", "HK", "SG", "AE", "CA", "AU", "KR", "CH")
_REGION_COUNTRIES = ("DE", "FR", "IT", "ES", "NL", "BE", "PL", "AT", "SE", "PT", "IE", "CZ")
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
_PARTNERED_PLATFORMS = 5  # PLT01..PLT05
_DRIFT_PLATFORM = 8  # index of PLT09
MECHANISMS = OFFENCE_TYPES[:-1]  # every type except "other" has a signature
_MECHANISM_MIX = (0.33, 0.14, 0.10, 0.03, 0.17, 0.09, 0.14)
# Base probability that an intended offence is found, by mechanism (prohibited goods are
# unmistakable once opened; a vague description is often a sloppy but honest sender).
_MECHANISM_CLARITY = (0.62, 0.72, 0.90, 0.70, 0.78, 0.62, 0.55)
_HOURLY = np.array(
    [2, 1.5, 1.5, 2, 3, 4, 5, 6, 7, 7, 7, 7, 6.5, 6.5, 6.5, 6, 6, 5.5, 5, 4.5, 4, 3.5, 3, 2.5]
)
_WEEKDAY = np.array([1.05, 1.10, 1.10, 1.05, 1.00, 0.80, 0.75])  # Monday first


@dataclass(frozen=True)
class HsItem:
    """One catalogue entry: the truth about an item kind."""

    hs6: str
    group: str
    ref_price_eur: float  # typical unit price, EUR per item
    weight_kg: float  # typical weight per item
    duty: float  # ad valorem duty rate
    brandable: bool
    nouns: tuple[str, ...]
    restricted_nouns: tuple[str, ...]

    @property
    def chapter(self) -> str:
        return self.hs6[:2]


def _parse_catalogue(table: str) -> tuple[HsItem, ...]:
    items = []
    for line in table.strip().splitlines():
        hs6, group, price, weight, duty, flags, nouns, restricted = line.split("|")
        items.append(
            HsItem(
                hs6,
                group,
                float(price),
                float(weight),
                float(duty),
                "B" in flags,
                tuple(nouns.split(";")),
                tuple(restricted.split(";")) if restricted else (),
            )
        )
    return tuple(items)


CATALOGUE: tuple[HsItem, ...] = _parse_catalogue(_CATALOGUE_TABLE)


@dataclass(frozen=True)
class _Catalogue:
    """The catalogue as arrays indexed by item number, plus flattened text pools."""

    hs6: np.ndarray
    group: np.ndarray  # int code into groups
    groups: tuple[str, ...]
    chapter: np.ndarray
    price: np.ndarray
    weight: np.ndarray
    duty: np.ndarray
    brandable: np.ndarray
    restricted: np.ndarray
    noun_pool: np.ndarray
    noun_start: np.ndarray
    noun_count: np.ndarray
    rnoun_pool: np.ndarray
    rnoun_start: np.ndarray
    rnoun_count: np.ndarray
    adj_pool: np.ndarray
    adj_start: np.ndarray  # by group
    adj_count: np.ndarray
    substitutes: np.ndarray  # (items, 4) lower-duty codes to misclassify each item as
    popularity: np.ndarray


@cache
def _catalogue() -> _Catalogue:
    groups = tuple(dict.fromkeys(i.group for i in CATALOGUE))
    group = np.array([groups.index(i.group) for i in CATALOGUE])
    duty = np.array([i.duty for i in CATALOGUE])
    restricted = np.array([bool(i.restricted_nouns) for i in CATALOGUE])

    def flatten(lists: list[tuple[str, ...]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        count = np.array([max(len(x), 1) for x in lists])
        start = np.concatenate([[0], np.cumsum(count)[:-1]])
        pool = [w for x in lists for w in (x or ("",))]
        return np.array(pool, dtype=object), start, count

    noun_pool, noun_start, noun_count = flatten([i.nouns for i in CATALOGUE])
    rnoun_pool, rnoun_start, rnoun_count = flatten([i.restricted_nouns for i in CATALOGUE])
    adj_pool, adj_start, adj_count = flatten([tuple(_ADJECTIVES[g].split(";")) for g in groups])
    adj_pool = np.array([a + " " for a in adj_pool], dtype=object)

    # Misclassification targets: a lower-duty code, preferably from the same group.
    free = np.flatnonzero((duty <= 0.01) & ~restricted)
    substitutes = np.empty((len(CATALOGUE), 4), dtype=np.int64)
    for k in range(len(CATALOGUE)):
        same = np.flatnonzero((group == group[k]) & (duty <= 0.6 * duty[k]) & ~restricted)
        pool = same if len(same) else free
        substitutes[k] = pool[(np.arange(4) * 7 + k) % len(pool)]

    popularity = np.array(
        [
            {"clothing": 1.3, "electronics": 1.2, "tobacco": 0.15, "weapons": 0.25}.get(g, 1.0)
            for g in (i.group for i in CATALOGUE)
        ]
    )
    return _Catalogue(
        hs6=np.array([i.hs6 for i in CATALOGUE], dtype=object),
        group=group,
        groups=groups,
        chapter=np.array([int(i.chapter) for i in CATALOGUE]),
        price=np.array([i.ref_price_eur for i in CATALOGUE]),
        weight=np.array([i.weight_kg for i in CATALOGUE]),
        duty=duty,
        brandable=np.array([i.brandable for i in CATALOGUE]),
        restricted=restricted,
        noun_pool=noun_pool,
        noun_start=noun_start,
        noun_count=noun_count,
        rnoun_pool=rnoun_pool,
        rnoun_start=rnoun_start,
        rnoun_count=rnoun_count,
        adj_pool=adj_pool,
        adj_start=adj_start,
        adj_count=adj_count,
        substitutes=substitutes,
        popularity=popularity,
    )


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _ids(prefix: str, numbers: np.ndarray, width: int) -> np.ndarray:
    return np.strings.add(prefix, np.strings.zfill(numbers.astype(str), width)).astype(object)


def _pick(rng: np.random.Generator, start: np.ndarray, count: np.ndarray) -> np.ndarray:
    """Index of a uniformly chosen member of each row's [start, start+count) pool slice."""
    return start + (rng.random(len(start)) * count).astype(np.int64)


def _weighted(rng: np.random.Generator, weights: np.ndarray, n: int) -> np.ndarray:
    cw = np.cumsum(weights)
    return np.minimum(np.searchsorted(cw, rng.random(n) * cw[-1], side="right"), len(cw) - 1)


@dataclass(frozen=True)
class _World:
    """Latent entities. Sellers are sorted by the day they appear."""

    seller_start: np.ndarray
    seller_weight: np.ndarray
    seller_country: np.ndarray  # int into _COUNTRIES
    seller_risk: np.ndarray
    seller_high_risk: np.ndarray
    seller_favourite: np.ndarray  # int into MECHANISMS
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


def _build_world(p: SyntheticParams, rng: np.random.Generator, cat: _Catalogue) -> _World:
    n_sellers = max(40, p.parcels // 40)
    n_consignees = max(100, int(p.parcels / 1.8))
    countries = [c for c, _, _ in _COUNTRIES]
    share = np.array([s for _, s, _ in _COUNTRIES])
    country_risk = np.array([r for _, _, r in _COUNTRIES])

    new = rng.random(n_sellers) < p.new_seller_share
    start = np.where(new, rng.integers(1, max(p.days, 2), n_sellers), 0)
    order = np.argsort(start, kind="stable")
    start, new = start[order], new[order]
    # Zipf-like activity, independent of the order of appearance.
    weight = 1.0 / rng.permutation(np.arange(1, n_sellers + 1)) ** 1.05
    weight *= rng.lognormal(0, 0.3, n_sellers)
    country = _weighted(rng, share, n_sellers)
    # High-risk sellers are rarer among the big ones and more frequent among newcomers.
    big = weight > np.quantile(weight, 0.99)
    p_high = p.high_risk_seller_share * np.where(big, 0.3, 1.0) * np.where(new, 1.8, 1.0)
    high = rng.random(n_sellers) < p_high
    risk = rng.normal(0, 0.6, n_sellers) + 2.8 * high + 0.6 * new + country_risk[country]
    favourite = _weighted(rng, np.array(_MECHANISM_MIX), n_sellers)
    drift = (country == countries.index("TR")) & (rng.random(n_sellers) < 0.4)

    platform_pop = np.array([3, 2.5, 2, 1.5, 1.2, 1.5, 1, 1, 1.3, 0.8, 0.6, 0.5, 0.5, 0.4, 0.3])
    platform = _weighted(rng, platform_pop, n_sellers)
    platform = np.where(rng.random(n_sellers) < 0.12, -1, platform)
    op_pop = np.array([o[3] for o in OPERATORS])
    operator = _weighted(rng, op_pop, n_sellers)
    n_groups = len(cat.groups)
    group_pop = np.bincount(cat.group, weights=cat.popularity, minlength=n_groups)
    groups = np.stack([_weighted(rng, group_pop, n_sellers), _weighted(rng, group_pop, n_sellers)])

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
    region = regions[_weighted(rng, rng.lognormal(0, 0.8, len(regions)), n_consignees)]
    region = np.where(rng.random(n_consignees) < 0.05, None, region)
    splitters = rng.choice(
        n_consignees, max(5, int(p.splitter_consignee_share * n_consignees)), replace=False
    )
    return _World(
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
        seller_ids=_ids("S", rng.permutation(n_sellers) + 1, 6),
        consignee_weight=c_weight,
        consignee_risk=c_risk,
        consignee_region=region,
        consignee_ids=_ids("C", rng.permutation(n_consignees) + 1, 7),
        splitters=splitters,
        currencies=currencies,
    )


def _draw_seconds(p: SyntheticParams, rng: np.random.Generator, n: int) -> np.ndarray:
    """Seconds since the start, sorted, with weekly and daily rhythm and a slight growth."""
    start_weekday = int((_parse_start(p.start).astype("datetime64[D]").astype(np.int64) + 3) % 7)
    day_index = np.arange(p.days)
    day_w = _WEEKDAY[(day_index + start_weekday) % 7] * (1 + 0.3 * day_index / p.days)
    day = _weighted(rng, day_w, n)
    hour = _weighted(rng, _HOURLY, n)
    seconds = day * 86_400 + hour * 3_600 + rng.integers(0, 3_600, n)
    return np.sort(seconds)


def _calibrate_offset(logit: np.ndarray, target: float) -> float:
    """Offset so the mean of sigmoid(logit + offset) is ``target`` (bisection, deterministic)."""
    lo, hi = -20.0, 20.0
    for _ in range(40):
        mid = (lo + hi) / 2
        if _sigmoid(logit + mid).mean() > target:
            hi = mid
        else:
            lo = mid
    return (lo + hi) / 2


def generate(params: SyntheticParams) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Generate (declarations with outcomes, ground truth) in memory, sorted by declared_at.

    Declarations are in canonical contract dtypes. The ground truth has one row per parcel:
    ``declaration_id, p_illicit, illicit, revenue_at_stake, offence_type`` (offence_type is the
    true offence, null when not illicit).
    """
    p = params
    rng = np.random.default_rng(p.seed)
    cat = _catalogue()
    world = _build_world(p, rng, cat)
    n = p.parcels
    total_seconds = p.days * 86_400

    # ---- base parcels: time, seller, entities --------------------------------------------
    sec = _draw_seconds(p, rng, n)
    day = sec // 86_400
    t_frac = sec / total_seconds
    active = np.searchsorted(world.seller_start, day, side="right")  # sellers sorted by start
    cw = np.cumsum(world.seller_weight)
    seller = np.searchsorted(cw, rng.random(n) * cw[active - 1], side="right")
    seller = np.minimum(seller, active - 1)

    platform = world.seller_platform[seller].copy()
    other_platform = _weighted(rng, np.ones(len(PLATFORMS)), n)
    switch = (rng.random(n) < 0.1) & (platform >= 0)
    platform = np.where(switch, other_platform, platform)
    op_pop = np.array([o[3] for o in OPERATORS])
    operator = np.where(
        rng.random(n) < 0.75, world.seller_operator[seller], _weighted(rng, op_pop, n)
    )
    consignee = _weighted(rng, world.consignee_weight, n)

    country = world.seller_country[seller]
    country_names = np.array([c for c, _, _ in _COUNTRIES], dtype=object)
    country_risk = np.array([r for _, _, r in _COUNTRIES])
    seller_cn = np.isin(country_names[country], ("CN", "HK"))

    # Item: one of the seller's two main groups (80%) or anything.
    g_pick = world.seller_groups[seller, (rng.random(n) < 0.35).astype(int)]
    group_of_item = np.where(
        rng.random(n) < 0.8, g_pick, cat.group[_weighted(rng, cat.popularity, n)]
    )
    item = _item_in_group(rng, cat, group_of_item)

    category_code = _weighted(rng, np.array([0.88, 0.06, 0.02, 0.02, 0.02]), n)
    ioss = rng.random(n) < np.where(platform < 0, 0.25, 0.7)
    ioss |= (platform >= 0) & (platform < _PARTNERED_PLATFORMS) & (rng.random(n) < 0.6)

    # ---- intent --------------------------------------------------------------------------
    aeo = np.array([o[2] for o in OPERATORS])[operator]
    partner_day = p.platform_partner_day_fraction * p.days
    plat_effect = np.select(
        [platform < 0, platform < _PARTNERED_PLATFORMS, platform == _DRIFT_PLATFORM],
        [0.4, -0.9, np.where(day >= partner_day, -0.9, 0.9)],
        0.2,
    )
    drift_on = world.seller_drift[seller] & (day >= p.drift_day_fraction * p.days)
    chapter_effect = np.where(np.isin(cat.chapter[item], (30, 24, 93, 42, 64, 91, 71)), 0.4, 0.0)
    chapter_effect -= np.where(cat.chapter[item] == 49, 0.8, 0.0)
    logit = (
        world.seller_risk[seller]
        + 2.8 * drift_on
        + world.consignee_risk[consignee]
        + plat_effect
        - 0.8 * aeo
        + country_risk[country]
        + chapter_effect
        + 0.3 * ~ioss
        + np.select([category_code == 1, category_code == 4], [0.3, -1.5], 0.0)
        + rng.normal(0, 0.3, n)
    )
    logit += _calibrate_offset(logit, p.intent_rate)
    intent = rng.random(n) < _sigmoid(logit)

    mix = _weighted(rng, np.array(_MECHANISM_MIX), n)
    mechanism = np.where(rng.random(n) < 0.6, world.seller_favourite[seller], mix)
    mechanism = np.where(drift_on & (rng.random(n) < 0.9), 0, mechanism)
    # Origin misdeclaration is the CN/HK transshipment pattern; elsewhere it is undervaluation.
    mechanism = np.where((mechanism == 5) & ~seller_cn, 0, mechanism)
    mechanism = np.where(intent, mechanism, -1)
    m_under, m_misc, m_proh, _m_split, m_fake, m_origin, m_vague = (
        mechanism == k for k in range(7)
    )

    # Mechanisms that need a particular kind of item redraw it.
    groups = list(cat.groups)
    elec_share = 0.1 + 0.6 * t_frac
    cloth_share = 0.6 - 0.5 * t_frac
    u = rng.random(n)
    under_group = np.where(
        u < cloth_share,
        groups.index("clothing"),
        np.where(u < cloth_share + elec_share, groups.index("electronics"), group_of_item),
    )
    redraw = m_under & (rng.random(n) < 0.8)
    item = np.where(redraw, _item_in_group(rng, cat, under_group), item)
    item = np.where(m_proh & ~cat.restricted[item], _item_from(rng, cat, cat.restricted, n), item)
    item = np.where(m_fake & ~cat.brandable[item], _item_from(rng, cat, cat.brandable, n), item)
    high_duty = (cat.duty >= 0.04) & ~cat.restricted
    item = np.where(m_misc & ~high_duty[item], _item_from(rng, cat, high_duty, n), item)

    # ---- values, weights, quantities -----------------------------------------------------
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
    factor = np.where(m_vague, rng.uniform(0.3, 0.8, n), factor)
    declared_eur = true_value * factor
    weight = quantity * cat.weight[item] * rng.lognormal(0, 0.2, n) + rng.uniform(0.03, 0.3, n)

    # ---- description, HS code, origin, category ------------------------------------------
    noun = cat.noun_pool[_pick(rng, cat.noun_start[item], cat.noun_count[item])]
    adj_idx = _pick(rng, cat.adj_start[cat.group[item]], cat.adj_count[cat.group[item]])
    adjective = np.where(rng.random(n) < 0.65, cat.adj_pool[adj_idx], "")
    brand = np.array([b + " " for b in BRANDS], dtype=object)[rng.integers(0, len(BRANDS), n)]
    branded = genuine_brand | m_fake
    description = np.where(branded, brand, "") + adjective + noun
    rnoun = cat.rnoun_pool[_pick(rng, cat.rnoun_start[item], cat.rnoun_count[item])]
    description = np.where(m_proh, rnoun, description)
    vague_words = np.array(VAGUE_WORDS, dtype=object)
    legit_vague = ~intent & (rng.random(n) < 0.025)
    vague = m_vague | legit_vague
    description = np.where(vague, vague_words[rng.integers(0, len(VAGUE_WORDS), n)], description)

    declared_item = np.where(m_misc, cat.substitutes[item, rng.integers(0, 4, n)], item)
    category_code = np.where(m_vague & (rng.random(n) < 0.5), 1, category_code)

    origin = country.copy()
    cn = np.flatnonzero(country_names == "CN")[0]
    resale = np.isin(country_names[country], _RESELLER_COUNTRIES) & (rng.random(n) < 0.3)
    origin = np.where(resale, cn, origin)
    misdeclared = np.array([np.flatnonzero(country_names == c)[0] for c in MISDECLARED_ORIGINS])
    shifted = misdeclared[rng.integers(0, len(misdeclared), n)]
    legit_shift = seller_cn & ~intent & (rng.random(n) < 0.01)
    origin = np.where(m_origin | legit_shift, shifted, origin)

    # ---- truth ---------------------------------------------------------------------------
    # How clear-cut an intended offence is follows what the declaration shows (mechanism, and
    # how extreme the price is), with a little parcel noise. If q were pure latent noise, the
    # oracle would rank on information no data holds and stop being a meaningful ceiling.
    q_mechanism = np.array(_MECHANISM_CLARITY)[np.maximum(mechanism, 0)]
    price_gap = np.clip((0.4 - factor) / 0.32, 0.0, 1.0)  # undervaluation: 0 mild .. 1 extreme
    fake_gap = np.clip((0.3 - unit / price) / 0.22, 0.0, 1.0)  # counterfeit: price far below
    q = (
        q_mechanism
        + np.where(m_under, 0.25 * price_gap, 0.0)
        + np.where(m_fake, 0.15 * fake_gap, 0.0)
    )
    q = np.clip(q + rng.normal(0.0, 0.05, n), 0.2, 0.96)
    background = 0.004 + 0.2 * _sigmoid(logit)
    p_illicit = np.where(intent, q, background)

    base = {
        "sec": sec,
        "seller": seller,
        "platform": platform,
        "operator": operator,
        "consignee": consignee,
        "item": item,
        "declared_item": declared_item,
        "quantity": quantity,
        "weight": weight,
        "true_value": true_value,
        "declared_eur": declared_eur,
        "description": description,
        "origin": origin,
        "category": category_code,
        "ioss": ioss,
        "mechanism": mechanism,
        "p_illicit": p_illicit,
    }
    parcels = _add_split_orders(p, rng, base, world)

    return _finish(p, rng, parcels, world, cat, country_names)


def _item_in_group(rng: np.random.Generator, cat: _Catalogue, group: np.ndarray) -> np.ndarray:
    """A catalogue item of each row's group, weighted by popularity (loop over groups only)."""
    item = np.empty(len(group), dtype=np.int64)
    for g in range(len(cat.groups)):
        rows = np.flatnonzero(group == g)
        members = np.flatnonzero(cat.group == g)
        item[rows] = members[_weighted(rng, cat.popularity[members], len(rows))]
    return item


def _item_from(rng: np.random.Generator, cat: _Catalogue, mask: np.ndarray, n: int) -> np.ndarray:
    members = np.flatnonzero(mask)
    return members[_weighted(rng, cat.popularity[members], n)]


def _add_split_orders(
    p: SyntheticParams,
    rng: np.random.Generator,
    base: dict[str, np.ndarray],
    world: _World,
) -> dict[str, np.ndarray]:
    """Turn split-shipment parcels into orders of 2-4 parcels under the de minimis threshold.

    The anchor goes to a splitting consignee; its siblings follow within 0.5-72 hours with the
    same seller and item. Random non-split parcels are dropped so the total stays ``parcels``.
    """
    anchor = np.flatnonzero(base["mechanism"] == 3)
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
    siblings["p_illicit"] = np.clip(_sigmoid(rng.normal(1.0, 1.1, len(src))), 0.2, 0.96)

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
        is_split = merged["mechanism"] == 3
        ordinary = rng.permutation(np.flatnonzero(~is_split))
        split_rows = np.flatnonzero(is_split)[::-1]
        drop = np.concatenate([ordinary, split_rows])[:surplus]
        keep = np.ones(len(merged["sec"]), dtype=bool)
        keep[drop] = False
        merged = {key: val[keep] for key, val in merged.items()}
    order = np.argsort(merged["sec"], kind="stable")
    return {key: val[order] for key, val in merged.items()}


def _finish(
    p: SyntheticParams,
    rng: np.random.Generator,
    d: dict[str, np.ndarray],
    world: _World,
    cat: _Catalogue,
    country_names: np.ndarray,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Labels, revenue, the legacy inspection policy and the two frames."""
    import pandas as pd

    n = len(d["sec"])
    item, declared_item, mech = d["item"], d["declared_item"], d["mechanism"]
    p_illicit = d["p_illicit"]
    illicit = rng.random(n) < p_illicit
    # the offence a parcel would be found with: its mechanism, or "other" for background cases
    would_be = np.where(mech >= 0, mech, len(MECHANISMS))
    offence = np.where(illicit, would_be, -1)

    # ---- revenue at stake (EUR) ------------------------------------------------------------
    duty, vat = cat.duty[item], p.vat_rate
    true_value, declared_eur = d["true_value"], d["declared_eur"]
    tax = duty + vat
    # Fines and settlement shares vary case by case. The ground truth's revenue_if_illicit is
    # the expectation given the parcel (what an oracle can know); revenue_at_stake is the draw.
    fine_mean = 120 * np.exp(0.9**2 / 2)
    fine = rng.lognormal(np.log(120), 0.9, n)
    origin_share = rng.uniform(0.1, 0.5, n)
    vague_share = rng.uniform(0.1, 0.6, n)

    def revenue_for(
        fine: np.ndarray, origin_share: np.ndarray, vague_share: np.ndarray
    ) -> np.ndarray:
        amount = np.select(
            [would_be == k for k in range(8)],
            [
                (true_value - declared_eur) * tax,
                true_value * (duty - cat.duty[declared_item]) + 0.1 * true_value,
                fine + true_value * tax,
                true_value * tax,
                0.6 * fine + true_value * tax,
                true_value * origin_share,
                (true_value - declared_eur) * tax + 0.1 * true_value,
                true_value * tax * vague_share,
            ],
            0.0,
        )
        return np.maximum(np.round(amount, 2), 0.5)

    revenue_if_illicit = revenue_for(np.full(n, fine_mean), np.full(n, 0.3), np.full(n, 0.35))
    revenue_drawn = revenue_for(fine, origin_share, vague_share)
    revenue = np.where(illicit, revenue_drawn, 0.0)

    # ---- declared fields -------------------------------------------------------------------
    currencies = np.array(world.currencies, dtype=object)
    currency = currencies[world.seller_currency[d["seller"]]]
    fx = np.array([DEFAULT_FX_TO_BASE[c] for c in world.currencies])[
        world.seller_currency[d["seller"]]
    ]
    declared_value = np.maximum(np.round(declared_eur / fx, 2), 0.01)
    declared_value_eur = declared_value * fx
    digits = rng.random(n)
    extra = np.array(EXTRA_HS_DIGITS, dtype=object)[rng.integers(0, len(EXTRA_HS_DIGITS), n)]
    hs_code = cat.hs6[declared_item] + np.where(digits < 0.25, extra, "")
    op_office = np.arange(len(OPERATORS)) % len(OFFICES)
    office = np.where(
        rng.random(n) < 0.6, op_office[d["operator"]], rng.integers(0, len(OFFICES), n)
    )
    weight = np.round(np.minimum(d["weight"], 999.0), 3)
    aeo = np.array([o[2] for o in OPERATORS])[d["operator"]]
    description = d["description"]

    # ---- legacy inspection policy ---------------------------------------------------------
    chapter = cat.chapter[declared_item]
    is_vague = np.isin(description, VAGUE_WORDS)
    rules = {
        "rule:risky_hs": 2.0 * np.isin(chapter, [int(c) for c in RISKY_CHAPTERS]),
        "rule:high_value": 1.5 * (declared_value_eur > p.de_minimis_eur)
        + 1.5 * (declared_value_eur > 1_000),
        "rule:vague_description": 2.0 * is_vague,
        "rule:restricted_keyword": 3.0 * _on_watchlist(description),
        "rule:low_value_per_kg": 2.0 * (declared_value_eur / weight < 10.0),
        "rule:risky_origin": 1.0 * np.isin(country_names[d["origin"]], RULE_RISKY_ORIGINS),
        "rule:non_aeo": 0.8 * ~aeo,
        "rule:no_ioss": 0.5 * ~d["ioss"],
    }
    contributions = np.stack(list(rules.values()), axis=1)
    score = contributions.sum(axis=1) + rng.uniform(0, 0.5, n)
    random_pick = rng.random(n) < p.random_rate
    day = d["sec"] // 86_400
    day_counts = np.bincount(day, minlength=p.days)
    capacity = np.ceil(p.inspection_capacity * day_counts).astype(np.int64)
    ranked = np.lexsort((-np.where(random_pick, -np.inf, score), day))
    first = np.concatenate([[0], np.cumsum(day_counts)[:-1]])
    rank = np.arange(n) - first[day[ranked]]
    rule_pick = np.zeros(n, dtype=bool)
    rule_pick[ranked] = rank < capacity[day[ranked]]
    rule_pick &= ~random_pick
    inspected = random_pick | rule_pick
    rule_names = np.array(list(rules), dtype=object)
    reason = np.where(
        random_pick,
        RANDOM_SELECTION,
        np.where(rule_pick, rule_names[contributions.argmax(axis=1)], None),
    )

    delay_h = rng.lognormal(np.log(30), 0.9, n)
    delay_h = np.where(np.array([o[1] for o in OPERATORS])[d["operator"]] == "postal", 1.5, 0.7) * (
        delay_h
    )
    delay_s = np.clip(delay_h * 3_600, 3_600, 240 * 3_600).astype(np.int64)

    start = _parse_start(p.start)
    declared_at = start + d["sec"].astype("timedelta64[s]")
    inspected_at = declared_at + delay_s.astype("timedelta64[s]")

    offence_names = np.array(OFFENCE_TYPES, dtype=object)
    offence_text = np.where(offence >= 0, offence_names[np.maximum(offence, 0)], None)
    ids = _ids("D", np.arange(1, n + 1), 9)
    platform_ids = np.array([*PLATFORMS, None], dtype=object)[d["platform"]]
    channel = np.array([o[1] for o in OPERATORS], dtype=object)[d["operator"]]

    def text(values: np.ndarray) -> pd.Series:
        return pd.Series(values, dtype="str")

    declarations = pd.DataFrame(
        {
            "declaration_id": text(ids),
            "declared_at": pd.Series(declared_at).dt.tz_localize("UTC"),
            "arrival_office": text(np.array(OFFICES, dtype=object)[office]),
            "channel": text(channel),
            "operator_id": text(np.array([o[0] for o in OPERATORS], dtype=object)[d["operator"]]),
            "platform_id": text(platform_ids),
            "seller_id": text(world.seller_ids[d["seller"]]),
            "seller_country": text(country_names[world.seller_country[d["seller"]]]),
            "consignee_id": text(world.consignee_ids[d["consignee"]]),
            "consignee_region": text(world.consignee_region[d["consignee"]]),
            "origin_country": text(country_names[d["origin"]]),
            "hs_code": text(hs_code),
            "description": text(description),
            "quantity": d["quantity"].astype(np.int64),
            "gross_weight_kg": weight,
            "declared_value": declared_value,
            "currency": text(currency),
            "category": text(np.array(CATEGORIES, dtype=object)[d["category"]]),
            "ioss_prepaid": d["ioss"].astype(bool),
            "aeo_operator": aeo.astype(bool),
            "inspected": inspected,
            "inspected_at": pd.Series(np.where(inspected, inspected_at, np.datetime64("NaT")))
            .dt.tz_localize("UTC")
            .astype("datetime64[us, UTC]"),
            "illicit": pd.array(np.where(inspected, illicit, False), dtype="boolean"),
            "offence_type": text(np.where(inspected, offence_text, None)),
            "revenue_recovered": np.where(inspected, revenue, np.nan),
            "selection_reason": text(reason),
        }
    )
    declarations.loc[~inspected, "illicit"] = pd.NA
    declarations = coerce_declarations(declarations, with_outcomes=True)
    truth = pd.DataFrame(
        {
            "declaration_id": declarations["declaration_id"],
            "p_illicit": p_illicit,
            "illicit": illicit,
            "revenue_at_stake": revenue,
            # what an offence would cost if there is one: p_illicit x this is the revenue oracle
            # (ranking on revenue_at_stake would rank on the label itself)
            "revenue_if_illicit": revenue_if_illicit,
            "offence_type": text(offence_text),
        }
    )
    return declarations, truth


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


def _on_watchlist(description: np.ndarray) -> np.ndarray:
    import pandas as pd

    pattern = r"\b(?:" + "|".join(WATCHLIST_WORDS) + r")\b"
    return (
        pd.Series(description, dtype="str")
        .str.contains(pattern, case=False, regex=True)
        .to_numpy(dtype=bool)
    )


# --------------------------------------------------------------------------------------------
# Summary and files
# --------------------------------------------------------------------------------------------


def oracle_roc_auc(p_illicit: np.ndarray, illicit: np.ndarray) -> float:
    """ROC-AUC of ranking by the true probability (Mann-Whitney with tied ranks averaged)."""
    import pandas as pd

    y = np.asarray(illicit, dtype=bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = pd.Series(p_illicit).rank(method="average").to_numpy()
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def precision_at(p_illicit: np.ndarray, illicit: np.ndarray, share: float) -> float:
    """Share of illicit parcels among the top ``share`` ranked by ``p_illicit``."""
    k = max(1, round(share * len(p_illicit)))
    top = np.argsort(-np.asarray(p_illicit), kind="stable")[:k]
    return float(np.asarray(illicit, dtype=bool)[top].mean())


def summarize(declarations: pd.DataFrame, truth: pd.DataFrame) -> dict[str, Any]:
    """The facts of one generated history that a risk analyst checks first."""
    inspected = declarations["inspected"].to_numpy(dtype=bool)
    reason = declarations["selection_reason"]
    found = declarations["illicit"].fillna(False).to_numpy(dtype=bool)
    done = declarations[inspected]
    by_reason = done["illicit"].astype(bool).groupby(done["selection_reason"]).agg(["size", "mean"])
    hit_rates = {
        str(name): {"inspected": int(row["size"]), "hit_rate": round(float(row["mean"]), 4)}
        for name, row in by_reason.iterrows()
    }
    y = truth["illicit"].to_numpy(dtype=bool)
    p = truth["p_illicit"].to_numpy()
    mix = truth["offence_type"].value_counts(normalize=True)
    return {
        "parcels": len(declarations),
        "days": int(
            (declarations["declared_at"].max() - declarations["declared_at"].min()).days + 1
        ),
        "prevalence": round(float(y.mean()), 4),
        "inspection_rate": round(float(inspected.mean()), 4),
        "random_share": round(float((reason == RANDOM_SELECTION).mean()), 4),
        "hit_rate_inspected": round(float(found[inspected].mean()), 4) if inspected.any() else None,
        "hit_rate_by_selection_reason": dict(sorted(hit_rates.items())),
        "offence_mix": {k: round(float(v), 4) for k, v in mix.items()},
        "oracle_roc_auc": round(oracle_roc_auc(p, y), 4),
        "oracle_precision_at_5pct": round(precision_at(p, y, 0.05), 4),
        "revenue_at_stake_total_eur": round(float(truth["revenue_at_stake"].sum()), 2),
        "revenue_recovered_total_eur": round(
            float(declarations["revenue_recovered"].fillna(0).sum()), 2
        ),
    }


def generate_to_dir(*, parcels: int, days: int, seed: int, out: Path, start: str) -> dict:
    """Generate a history and write ``declarations.parquet`` and ``ground_truth.parquet`` to ``out``.

    Both files are written atomically; the summary (see ``summarize``) adds timing and paths.
    """
    began = time.perf_counter()
    params = SyntheticParams(seed=seed, parcels=parcels, days=days, start=start)
    declarations, truth = generate(params)
    generated = time.perf_counter() - began
    out = Path(out)
    write_declarations(declarations, out / DECLARATIONS_FILE)
    write_ground_truth(truth, out / GROUND_TRUTH_FILE)
    summary = {
        "parcels": len(declarations),
        "days": days,
        "seed": seed,
        "seconds": None,
        **{k: v for k, v in summarize(declarations, truth).items() if k not in ("parcels", "days")},
        "declarations": str(out / DECLARATIONS_FILE),
        "ground_truth": str(out / GROUND_TRUTH_FILE),
    }
    summary["seconds"] = round(time.perf_counter() - began, 2)
    summary["seconds_generate"] = round(generated, 2)
    logger.info("generated %d parcels in %.1f s", len(declarations), summary["seconds"])
    return summary


def write_ground_truth(truth: pd.DataFrame, path: Path) -> None:
    """Write the ground truth Parquet atomically."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from features.intake.contract import atomic_write

    table = pa.Table.from_pandas(truth[list(GROUND_TRUTH_COLUMNS)], preserve_index=False)
    atomic_write(Path(path), lambda tmp: pq.write_table(table, tmp))
