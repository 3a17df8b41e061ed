"""Personal data as the ad platforms take it: normalised, then SHA-256 in hex.

Each platform documents its own normalisation, and a hash of a differently normalised
value matches nobody, so each has its own functions here:

- Meta (Conversions API, customer information parameters): ``em`` trimmed and
  lower-cased; ``ph`` digits only, country code included, no ``+`` and no leading zeros
  (``16505551212``); ``fn``/``ln`` lower-cased, without punctuation, in UTF-8.
- Google (Google Ads enhanced conversions and GA4 ``user_data``): e-mail trimmed and
  lower-cased, with the dots of the local part removed for ``gmail.com`` and
  ``googlemail.com``; phone in E.164 with its ``+`` (``+16505551212``).

A value that already is 64 hex digits is taken as hashed and passed through (lower-cased),
so an advertiser who hashes on its own side is not hashed twice.

Phones come from the pixel's ``home_phone_number`` and ``cell_phone_number``, which the
pixel only accepts in E.164 (:mod:`pixel_wsgi.params.sale`), so they carry their country
code; a number without one cannot be completed here and is hashed as its digits.

>>> meta_email("  John.Smith@Example.COM ") == sha256_hex("john.smith@example.com")
True
>>> google_email("Jane.Doe@gmail.com") == sha256_hex("janedoe@gmail.com")
True
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Callable, Mapping

__all__ = [
    "PHONE_FIELDS",
    "google_email",
    "google_phone",
    "google_user_data",
    "is_sha256_hex",
    "meta_email",
    "meta_name",
    "meta_phone",
    "meta_user_data",
    "normalize_google_email",
    "normalize_google_phone",
    "normalize_meta_email",
    "normalize_meta_name",
    "normalize_meta_phone",
    "sha256_hex",
    "split_name",
]

#: The pixel's phone fields (E.164), in the order their hashes are sent.
PHONE_FIELDS = ("cell_phone_number", "home_phone_number")

_SHA256_HEX_RE = re.compile(r"[0-9a-fA-F]{64}")
_NOT_DIGITS_RE = re.compile(r"[^0-9]")
_GMAIL_DOMAINS = frozenset({"gmail.com", "googlemail.com"})


def sha256_hex(text: str) -> str:
    """SHA-256 of ``text``'s UTF-8 bytes, as 64 lower-case hex digits."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def is_sha256_hex(value: str) -> bool:
    """Whether ``value`` (trimmed) already is a SHA-256 in hex."""
    return _SHA256_HEX_RE.fullmatch(value.strip()) is not None


def normalize_meta_email(value: str) -> str:
    """Meta's ``em``: trimmed, lower-cased."""
    return value.strip().lower()


def _phone_digits(value: str) -> str:
    # Symbols, letters and spaces go; so do leading zeros ("00" is an international
    # prefix, a lone "0" a trunk prefix that never starts a country code).
    return _NOT_DIGITS_RE.sub("", value).lstrip("0")


def normalize_meta_phone(value: str) -> str:
    """Meta's ``ph``: the digits with the country code, no ``+``, no leading zeros."""
    return _phone_digits(value)


def normalize_meta_name(value: str) -> str:
    """Meta's ``fn``/``ln``: lower-cased, without punctuation, UTF-8 letters kept.

    Meta's SDK only lower-cases and trims; Meta's documentation also removes punctuation
    (``O'Brien`` is ``obrien``), and that is what this follows.
    """
    lowered = unicodedata.normalize("NFC", value.strip().lower())
    return "".join(char for char in lowered if not unicodedata.category(char).startswith("P"))


def normalize_google_email(value: str) -> str:
    """Google's e-mail: trimmed, lower-cased, and for Gmail without dots before the ``@``."""
    email = value.strip().lower()
    local, at, domain = email.rpartition("@")
    if at and domain in _GMAIL_DOMAINS:
        return f"{local.replace('.', '')}@{domain}"
    return email


def normalize_google_phone(value: str) -> str:
    """Google's phone: E.164 with its ``+`` (``+16505551212``)."""
    digits = _phone_digits(value)
    return f"+{digits}" if digits else ""


def _hashed(normalize: Callable[[str], str], value: str) -> str | None:
    """The hash of ``normalize(value)``; a 64-hex value as it is; None when empty."""
    text = value.strip()
    if not text:
        return None
    if _SHA256_HEX_RE.fullmatch(text):
        return text.lower()
    normalized = normalize(text)
    return sha256_hex(normalized) if normalized else None


def meta_email(value: str) -> str | None:
    """Meta's hashed ``em`` (None for an empty value)."""
    return _hashed(normalize_meta_email, value)


def meta_phone(value: str) -> str | None:
    """Meta's hashed ``ph`` (None for a value without digits)."""
    return _hashed(normalize_meta_phone, value)


def meta_name(value: str) -> str | None:
    """Meta's hashed ``fn`` or ``ln`` (None when nothing is left to hash)."""
    return _hashed(normalize_meta_name, value)


def google_email(value: str) -> str | None:
    """Google's hashed e-mail (``sha256_email_address``, ``hashed_email``)."""
    return _hashed(normalize_google_email, value)


def google_phone(value: str) -> str | None:
    """Google's hashed phone (``sha256_phone_number``, ``hashed_phone_number``)."""
    return _hashed(normalize_google_phone, value)


def split_name(name: str) -> tuple[str, str] | None:
    """The pixel's one ``name`` field as (first name, last name): its first and its last
    word. None for a single word or fewer: which of the two it is cannot be told.

    >>> split_name("Mary Ann  O'Brien")
    ('Mary', "O'Brien")
    """
    words = name.split()
    if len(words) < 2:
        return None
    return words[0], words[-1]


def _collect(
    personal: Mapping[str, str], fields: tuple[str, ...], hash_one: Callable[[str], str | None]
) -> list[str]:
    hashes: list[str] = []
    for name in fields:
        value = personal.get(name)
        digest = hash_one(value) if value else None
        if digest is not None and digest not in hashes:
            hashes.append(digest)
    return hashes


def meta_user_data(personal: Mapping[str, str]) -> dict[str, list[str]]:
    """The hashed ``em``, ``ph``, ``fn`` and ``ln`` of Meta's ``user_data``, from the
    pixel's personal fields (only those given; lists, as Meta's SDK sends them)."""
    found = {
        "em": _collect(personal, ("email_address",), meta_email),
        "ph": _collect(personal, PHONE_FIELDS, meta_phone),
    }
    names = split_name(personal.get("name", ""))
    if names is not None:
        found["fn"] = _collect({"fn": names[0]}, ("fn",), meta_name)
        found["ln"] = _collect({"ln": names[1]}, ("ln",), meta_name)
    return {key: hashes for key, hashes in found.items() if hashes}


def google_user_data(personal: Mapping[str, str]) -> dict[str, list[str]]:
    """GA4's ``user_data`` (``sha256_email_address``, ``sha256_phone_number``), from the
    pixel's personal fields (only those given)."""
    found = {
        "sha256_email_address": _collect(personal, ("email_address",), google_email),
        "sha256_phone_number": _collect(personal, PHONE_FIELDS, google_phone),
    }
    return {key: hashes for key, hashes in found.items() if hashes}
