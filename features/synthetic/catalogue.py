"""The goods: HS codes, reference prices, weights, duty rates and the words that describe them.

Every parcel carries one catalogue item (the truth); a declaration may name another (see
``fraud``). A newcomer adds goods as one line of the table below, adjectives per group in
``_ADJECTIVES``; ``restricted nouns`` name the prohibited variants prohibited-goods parcels use.
Adding or reordering lines changes which item every draw lands on, and so every seed's data.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np

from features.synthetic.sampling import pick_in_pools, weighted_choice

# --------------------------------------------------------------------------------------------
# hs6 | group | reference price EUR/item | kg/item | duty | flags | nouns | restricted nouns.
# Flags: B = brandable (counterfeit target). Restricted nouns name prohibited or restricted
# variants of the item.
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
EXTRA_HS_DIGITS = ("00", "10", "90", "0000", "1000", "9000", "9090")  # national subheadings


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
class Catalogue:
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
def catalogue_arrays() -> Catalogue:
    """The catalogue as arrays, built once per process."""
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
    return Catalogue(
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


def draw_items_in_groups(rng: np.random.Generator, cat: Catalogue, group: np.ndarray) -> np.ndarray:
    """A catalogue item of each row's group, weighted by popularity (loop over groups only)."""
    item = np.empty(len(group), dtype=np.int64)
    for g in range(len(cat.groups)):
        rows = np.flatnonzero(group == g)
        members = np.flatnonzero(cat.group == g)
        item[rows] = members[weighted_choice(rng, cat.popularity[members], len(rows))]
    return item


def draw_items_from(
    rng: np.random.Generator, cat: Catalogue, mask: np.ndarray, n: int
) -> np.ndarray:
    """``n`` items among those ``mask`` selects, weighted by popularity."""
    members = np.flatnonzero(mask)
    return members[weighted_choice(rng, cat.popularity[members], n)]


def draw_item_words(
    rng: np.random.Generator, cat: Catalogue, item: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """An honest description of each item (adjective + noun) and a brand word to put before it.

    Whether the brand is used is the caller's choice: genuine branded goods and counterfeits.
    """
    n = len(item)
    noun = cat.noun_pool[pick_in_pools(rng, cat.noun_start[item], cat.noun_count[item])]
    adj_idx = pick_in_pools(rng, cat.adj_start[cat.group[item]], cat.adj_count[cat.group[item]])
    adjective = np.where(rng.random(n) < 0.65, cat.adj_pool[adj_idx], "")
    brand = np.array([b + " " for b in BRANDS], dtype=object)[rng.integers(0, len(BRANDS), n)]
    return adjective + noun, brand
