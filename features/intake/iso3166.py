"""ISO 3166-1 country codes: alpha-3 and numeric -> the contract's alpha-2.

Exports from customs systems and statistics offices often write countries as alpha-3 (``CHN``)
or as the numeric code (``156``); the contract holds alpha-2. A mapping asks for the conversion
with ``country_codes: alpha3`` or ``country_codes: numeric`` (``features.intake.mapping``).
The table is the standard's 249 officially assigned codes (as in the Debian iso-codes data,
2026); a code an administration uses beyond it (e.g. ``XKX`` for Kosovo) goes in the
column's ``values`` table, which is read first.
"""

from __future__ import annotations

# alpha-3, alpha-2, numeric; one entry per officially assigned code
_TABLE = """
    ABW AW 533  AFG AF 004  AGO AO 024  AIA AI 660  ALA AX 248  ALB AL 008  AND AD 020
    ARE AE 784  ARG AR 032  ARM AM 051  ASM AS 016  ATA AQ 010  ATF TF 260  ATG AG 028
    AUS AU 036  AUT AT 040  AZE AZ 031  BDI BI 108  BEL BE 056  BEN BJ 204  BES BQ 535
    BFA BF 854  BGD BD 050  BGR BG 100  BHR BH 048  BHS BS 044  BIH BA 070  BLM BL 652
    BLR BY 112  BLZ BZ 084  BMU BM 060  BOL BO 068  BRA BR 076  BRB BB 052  BRN BN 096
    BTN BT 064  BVT BV 074  BWA BW 072  CAF CF 140  CAN CA 124  CCK CC 166  CHE CH 756
    CHL CL 152  CHN CN 156  CIV CI 384  CMR CM 120  COD CD 180  COG CG 178  COK CK 184
    COL CO 170  COM KM 174  CPV CV 132  CRI CR 188  CUB CU 192  CUW CW 531  CXR CX 162
    CYM KY 136  CYP CY 196  CZE CZ 203  DEU DE 276  DJI DJ 262  DMA DM 212  DNK DK 208
    DOM DO 214  DZA DZ 012  ECU EC 218  EGY EG 818  ERI ER 232  ESH EH 732  ESP ES 724
    EST EE 233  ETH ET 231  FIN FI 246  FJI FJ 242  FLK FK 238  FRA FR 250  FRO FO 234
    FSM FM 583  GAB GA 266  GBR GB 826  GEO GE 268  GGY GG 831  GHA GH 288  GIB GI 292
    GIN GN 324  GLP GP 312  GMB GM 270  GNB GW 624  GNQ GQ 226  GRC GR 300  GRD GD 308
    GRL GL 304  GTM GT 320  GUF GF 254  GUM GU 316  GUY GY 328  HKG HK 344  HMD HM 334
    HND HN 340  HRV HR 191  HTI HT 332  HUN HU 348  IDN ID 360  IMN IM 833  IND IN 356
    IOT IO 086  IRL IE 372  IRN IR 364  IRQ IQ 368  ISL IS 352  ISR IL 376  ITA IT 380
    JAM JM 388  JEY JE 832  JOR JO 400  JPN JP 392  KAZ KZ 398  KEN KE 404  KGZ KG 417
    KHM KH 116  KIR KI 296  KNA KN 659  KOR KR 410  KWT KW 414  LAO LA 418  LBN LB 422
    LBR LR 430  LBY LY 434  LCA LC 662  LIE LI 438  LKA LK 144  LSO LS 426  LTU LT 440
    LUX LU 442  LVA LV 428  MAC MO 446  MAF MF 663  MAR MA 504  MCO MC 492  MDA MD 498
    MDG MG 450  MDV MV 462  MEX MX 484  MHL MH 584  MKD MK 807  MLI ML 466  MLT MT 470
    MMR MM 104  MNE ME 499  MNG MN 496  MNP MP 580  MOZ MZ 508  MRT MR 478  MSR MS 500
    MTQ MQ 474  MUS MU 480  MWI MW 454  MYS MY 458  MYT YT 175  NAM NA 516  NCL NC 540
    NER NE 562  NFK NF 574  NGA NG 566  NIC NI 558  NIU NU 570  NLD NL 528  NOR NO 578
    NPL NP 524  NRU NR 520  NZL NZ 554  OMN OM 512  PAK PK 586  PAN PA 591  PCN PN 612
    PER PE 604  PHL PH 608  PLW PW 585  PNG PG 598  POL PL 616  PRI PR 630  PRK KP 408
    PRT PT 620  PRY PY 600  PSE PS 275  PYF PF 258  QAT QA 634  REU RE 638  ROU RO 642
    RUS RU 643  RWA RW 646  SAU SA 682  SDN SD 729  SEN SN 686  SGP SG 702  SGS GS 239
    SHN SH 654  SJM SJ 744  SLB SB 090  SLE SL 694  SLV SV 222  SMR SM 674  SOM SO 706
    SPM PM 666  SRB RS 688  SSD SS 728  STP ST 678  SUR SR 740  SVK SK 703  SVN SI 705
    SWE SE 752  SWZ SZ 748  SXM SX 534  SYC SC 690  SYR SY 760  TCA TC 796  TCD TD 148
    TGO TG 768  THA TH 764  TJK TJ 762  TKL TK 772  TKM TM 795  TLS TL 626  TON TO 776
    TTO TT 780  TUN TN 788  TUR TR 792  TUV TV 798  TWN TW 158  TZA TZ 834  UGA UG 800
    UKR UA 804  UMI UM 581  URY UY 858  USA US 840  UZB UZ 860  VAT VA 336  VCT VC 670
    VEN VE 862  VGB VG 092  VIR VI 850  VNM VN 704  VUT VU 548  WLF WF 876  WSM WS 882
    YEM YE 887  ZAF ZA 710  ZMB ZM 894  ZWE ZW 716
"""

_TOKENS = _TABLE.split()
_ROWS = list(zip(_TOKENS[0::3], _TOKENS[1::3], _TOKENS[2::3], strict=True))
ALPHA3_TO_ALPHA2: dict[str, str] = {a3: a2 for a3, a2, _ in _ROWS}
NUMERIC_TO_ALPHA2: dict[str, str] = {num: a2 for _, a2, num in _ROWS}
ALPHA2: frozenset[str] = frozenset(ALPHA3_TO_ALPHA2.values())


# Names exports write that the standard's names and translations do not hold (plain form).
_ALIASES = {
    "usa": "US", "u s a": "US", "u s": "US", "united states of america": "US", "america": "US",
    "uk": "GB", "u k": "GB", "great britain": "GB", "britain": "GB", "england": "GB",
    "south korea": "KR", "korea": "KR", "north korea": "KP", "russia": "RU", "vietnam": "VN",
    "viet nam": "VN", "taiwan": "TW", "iran": "IR", "syria": "SY", "laos": "LA",
    "bolivia": "BO", "venezuela": "VE", "tanzania": "TZ", "moldova": "MD", "macau": "MO",
    "macao": "MO", "hong kong": "HK", "czech republic": "CZ", "czechia": "CZ", "turkey": "TR",
    "turkiye": "TR", "ivory coast": "CI", "holland": "NL", "the netherlands": "NL",
    "macedonia": "MK", "swaziland": "SZ", "burma": "MM", "palestine": "PS", "vatican": "VA",
    "micronesia": "FM", "brunei": "BN", "cape verde": "CV", "east timor": "TL",
    "mainland china": "CN", "prc": "CN", "p r china": "CN", "uae": "AE", "eua": "US",
    "eeuu": "US", "ee uu": "US", "rpc": "CN", "rp china": "CN",
    "democratic republic of the congo": "CD", "the democratic republic of the congo": "CD",
    "dr congo": "CD", "drc": "CD", "congo kinshasa": "CD", "republic of the congo": "CG",
    "congo brazzaville": "CG",
    # China's customs write its special regions under its name
    "中国香港": "HK", "中国澳门": "MO", "中国台湾": "TW", "中国大陆": "CN",
}  # fmt: skip


def plain_name(text: str) -> str:
    """A name as compared: lowercase, no accents, words separated by one space."""
    import re
    import unicodedata

    decomposed = unicodedata.normalize("NFKD", str(text))
    stripped = unicodedata.normalize(
        "NFC", "".join(c for c in decomposed if not unicodedata.combining(c))
    )
    return " ".join(re.findall(r"\w+", stripped.casefold()))


_NAMES: dict[str, str] | None = None


def name_to_alpha2() -> dict[str, str]:
    """Country name (``plain_name``) -> alpha-2, from the standard's English names (short,
    official, common) and their translations into every language Debian's iso-codes carries
    (through pycountry), and ``_ALIASES``. A name two countries share across languages is left
    out (read as not a country, never guessed), unless one of them is the standard's English
    name or far more languages give it to one (a slip of one table). Built once, ~0.3 s."""
    global _NAMES
    if _NAMES is not None:
        return _NAMES
    import gettext
    import os

    import pycountry

    english: dict[str, str] = {}
    for country in pycountry.countries:
        for attribute in ("name", "official_name", "common_name"):
            name = getattr(country, attribute, None)
            if name:
                english[name] = country.alpha_2
                if ", " in name:  # "Korea, Republic of" -> "Republic of Korea"
                    head, _, tail = name.partition(", ")
                    english[f"{tail} {head}"] = country.alpha_2
    from collections import Counter

    standard: dict[str, set[str]] = {}
    for name, alpha2 in english.items():
        standard.setdefault(plain_name(name), set()).add(alpha2)
    # name -> how many languages translate which country to it
    translated: dict[str, Counter] = {}
    for language in sorted(os.listdir(pycountry.LOCALES_DIR)):
        try:
            translation = gettext.translation(
                "iso3166-1", pycountry.LOCALES_DIR, languages=[language]
            )
        except OSError:
            continue
        for name, alpha2 in english.items():
            local = translation.gettext(name)
            if local != name:
                translated.setdefault(plain_name(local), Counter())[alpha2] += 1
    names = {}
    for name, votes in translated.items():
        (first, n_first), *rest = votes.most_common()
        n_second = rest[0][1] if rest else 0
        # a translation table's slip (Guarani writes Malaysia "Mexico"; es, gl, pt write
        # Mexico "México") is outvoted; a name languages really share is left out
        if name and (n_second == 0 or (n_first >= 3 and n_first >= 3 * n_second)):
            names[name] = first
    # the standard's own English names over any translation of another country to them
    names.update({name: next(iter(c)) for name, c in standard.items() if len(c) == 1 and name})
    names.update(_ALIASES)
    _NAMES = names
    return names


__all__ = ["ALPHA2", "ALPHA3_TO_ALPHA2", "NUMERIC_TO_ALPHA2", "name_to_alpha2", "plain_name"]
