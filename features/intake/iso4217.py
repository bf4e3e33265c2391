"""ISO 4217 currency codes: the contract's ``currency`` must be one.

``^[A-Z]{3}$`` alone let ``RMB`` (the renminbi's common name, ISO ``CNY``) through as a code,
leaving the parcel without a value in the base currency. The table is the standard's 178
active codes (as in the Debian iso-codes data, 2026), including the fund and precious-metal
codes (``XAU``, ``XDR``) and ``XXX`` ("no currency"), which the rate table then warns about.
"""

from __future__ import annotations

_CODES = """
    AED AFN ALL AMD AOA ARS AUD AWG AZN BAM BBD BDT BHD BIF BMD BND
    BOB BOV BRL BSD BTN BWP BYN BZD CAD CDF CHE CHF CHW CLF CLP CNY
    COP COU CRC CUP CVE CZK DJF DKK DOP DZD EGP ERN ETB EUR FJD FKP
    GBP GEL GHS GIP GMD GNF GTQ GYD HKD HNL HTG HUF IDR ILS INR IQD
    IRR ISK JMD JOD JPY KES KGS KHR KMF KPW KRW KWD KYD KZT LAK LBP
    LKR LRD LSL LYD MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN
    MXV MYR MZN NAD NGN NIO NOK NPR NZD OMR PAB PEN PGK PHP PKR PLN
    PYG QAR RON RSD RUB RWF SAR SBD SCR SDG SEK SGD SHP SLE SOS SRD
    SSP STN SVC SYP SZL THB TJS TMT TND TOP TRY TTD TWD TZS UAH UGX
    USD USN UYI UYU UYW UZS VED VES VND VUV WST XAD XAF XAG XAU XBA
    XBB XBC XBD XCD XCG XDR XOF XPD XPF XPT XSU XTS XUA XXX YER ZAR
    ZMW ZWG
"""

ISO_4217: frozenset[str] = frozenset(_CODES.split())

# names and symbols written where a code belongs: the hint a refusal gives (only the
# unambiguous ones: "$" and "¥" name several currencies)
COMMON_MISTAKES: dict[str, str] = {
    "RMB": "CNY",
    "NTD": "TWD",
    "YEN": "JPY",
    "UKL": "GBP",
    "RUR": "RUB",
    "EURO": "EUR",
    "R$": "BRL",
    "US$": "USD",
    "€": "EUR",
    "£": "GBP",
    "₩": "KRW",
    "₹": "INR",
    "₺": "TRY",
    "₦": "NGN",
}

__all__ = ["COMMON_MISTAKES", "ISO_4217"]
