"""The active ISO 4217 alphabetic currency codes that a sale may be reported in.

``ISO_4217_CODES`` is the set of codes in ISO 4217 "list one" (current currencies and
funds), written out here so that validating ``sale_currency`` needs no data file and no
third-party package. It includes the fund codes (``BOV``, ``CHE``, ``USN`` ...), the SDR
and the precious metals, because they are valid ISO codes that an accounting system may
use. It leaves out ``XTS`` (reserved for testing) and ``XXX`` ("no currency"): neither is
a currency a sale can be made in.

Where a currency is being replaced, both codes are listed for as long as both are in
list one (``SLL``/``SLE``, ``ZWL``/``ZWG``, ``ANG``/``XCG``); withdrawn codes such as
``HRK``, ``CUC``, ``VEF`` and ``MRO`` are not. Update this set when ISO 4217 is amended.
"""

from __future__ import annotations

ISO_4217_CODES: frozenset[str] = frozenset(
    {
        # A
        "AED", "AFN", "ALL", "AMD", "ANG", "AOA", "ARS", "AUD", "AWG", "AZN",
        # B
        "BAM", "BBD", "BDT", "BGN", "BHD", "BIF", "BMD", "BND", "BOB", "BOV",
        "BRL", "BSD", "BTN", "BWP", "BYN", "BZD",
        # C
        "CAD", "CDF", "CHE", "CHF", "CHW", "CLF", "CLP", "CNY", "COP", "COU",
        "CRC", "CUP", "CVE", "CZK",
        # D
        "DJF", "DKK", "DOP", "DZD",
        # E
        "EGP", "ERN", "ETB", "EUR",
        # F
        "FJD", "FKP",
        # G
        "GBP", "GEL", "GHS", "GIP", "GMD", "GNF", "GTQ", "GYD",
        # H
        "HKD", "HNL", "HTG", "HUF",
        # I
        "IDR", "ILS", "INR", "IQD", "IRR", "ISK",
        # J
        "JMD", "JOD", "JPY",
        # K
        "KES", "KGS", "KHR", "KMF", "KPW", "KRW", "KWD", "KYD", "KZT",
        # L
        "LAK", "LBP", "LKR", "LRD", "LSL", "LYD",
        # M
        "MAD", "MDL", "MGA", "MKD", "MMK", "MNT", "MOP", "MRU", "MUR", "MVR",
        "MWK", "MXN", "MXV", "MYR", "MZN",
        # N
        "NAD", "NGN", "NIO", "NOK", "NPR", "NZD",
        # O
        "OMR",
        # P
        "PAB", "PEN", "PGK", "PHP", "PKR", "PLN", "PYG",
        # Q
        "QAR",
        # R
        "RON", "RSD", "RUB", "RWF",
        # S
        "SAR", "SBD", "SCR", "SDG", "SEK", "SGD", "SHP", "SLE", "SLL", "SOS",
        "SRD", "SSP", "STN", "SVC", "SYP", "SZL",
        # T
        "THB", "TJS", "TMT", "TND", "TOP", "TRY", "TTD", "TWD", "TZS",
        # U
        "UAH", "UGX", "USD", "USN", "UYI", "UYU", "UYW", "UZS",
        # V
        "VED", "VES", "VND", "VUV",
        # W
        "WST",
        # X: supranational currencies, funds and precious metals
        "XAF", "XAG", "XAU", "XBA", "XBB", "XBC", "XBD", "XCD", "XCG", "XDR",
        "XOF", "XPD", "XPF", "XPT", "XSU", "XUA",
        # Y
        "YER",
        # Z
        "ZAR", "ZMW", "ZWG", "ZWL",
    }
)  # fmt: skip
