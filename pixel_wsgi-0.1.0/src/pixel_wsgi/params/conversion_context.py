"""What a conversion's request carries that delivery targets need, made safe to keep.

Meta's Conversions API matches a server event to the browser by the ``_fbp`` cookie
and requires the browser's User-Agent and the page's URL for a website event; GA4's
Measurement Protocol needs the client id of the ``_ga`` cookie. The pixel keeps these
(for an advertiser that asks: ``keeps_conversion_context``) as a
:class:`~pixel_wsgi.models.ConversionContext`; everything here is pure and never raises
on what a browser sends: a value that is malformed, too long, or ambiguous (a cookie
name sent twice: one may be planted from a subdomain) is simply not kept.

>>> ga_client_id(["GA1.2.1234567890.1700000000"])
'1234567890.1700000000'
>>> page_url("https://shop.example/thanks?order=42&email=a%40b.example#top")
'https://shop.example/thanks'
"""

from __future__ import annotations

import re
from typing import Any

from ..models import ConversionContext, conversion_context_json
from .network import truncated_ip
from .sale import printable_text
from .values import CONTROL_RE

__all__ = [
    "MAX_PAGE_URL",
    "MAX_USER_AGENT",
    "conversion_context",
    "fbp",
    "ga_client_id",
    "page_url",
    "stored_user_agent",
    "tracker_cookies",
    "validated_conversion_context",
]

#: The longest User-Agent kept, in characters (longer ones are cut).
MAX_USER_AGENT = 512
#: The longest page URL kept, in characters (a longer one is dropped: a cut URL is wrong).
MAX_PAGE_URL = 2048
# Meta's fbp: fb.<subdomain index>.<creation time, ms>.<random>, and the fifth
# "appendix" segment Meta's own parameter builder adds (which parsers must accept).
_FBP_RE = re.compile(r"fb\.[0-9]{1,2}\.[0-9]{1,20}\.[0-9A-Za-z_-]{1,64}(?:\.[0-9A-Za-z_-]{1,64})?")
# A gtag-issued _ga cookie: GA1.<domain depth>.<random>.<first visit, s>; the client id
# is the last two numbers.
_GA_RE = re.compile(r"GA1\.[0-9]{1,2}\.([0-9]{1,20}\.[0-9]{1,20})")
_CLIENT_ID_RE = re.compile(r"[0-9]{1,20}\.[0-9]{1,20}")
_COOKIE_SEPARATORS = "; \t"
# An absolute http(s) URL as urllib.parse.urlsplit() reads one (its port a number, an
# IPv6 host in brackets), in one match: scheme, credentials (left out), host and port,
# path, then whatever follows (left out). Control characters and spaces are refused
# before: a tenth of urlsplit()'s cost, on the pixel's path.
_PAGE_URL_RE = re.compile(
    r"(https?)://(?:[^/?#@]*@)?"
    r"((?:\[[0-9A-Fa-f:.]+\]|[^/?#@:\[\]]+)(?::([0-9]{0,5}))?)"
    r"([^?#]*)(?:[?#].*)?",
    re.IGNORECASE | re.DOTALL,
)
_NOTHING = (None,) * 5


def _header_text(header: str) -> str | None:
    """A header as text: PEP 3333 gives its bytes decoded as latin-1; None unless UTF-8."""
    if header.isascii():
        return header
    try:
        return header.encode("latin-1").decode("utf-8")
    except UnicodeEncodeError:  # a server that broke PEP 3333: already text
        return header
    except UnicodeDecodeError:
        return None


def _printable(text: str) -> bool:
    """No control character, no surrogate (:data:`~pixel_wsgi.params.values.CONTROL_RE`)."""
    # For ASCII, str.isprintable() is exactly that, in one C pass (the regular
    # expression costs some 60 instructions a character).
    if text.isascii():
        return text.isprintable()
    return CONTROL_RE.search(text) is None


def stored_user_agent(header: str) -> str:
    """The ``User-Agent`` as pixel-wsgi keeps it (a visit's, a conversion's): UTF-8
    text, at most :data:`MAX_USER_AGENT` characters, nothing a store cannot hold.

    PEP 3333 gives header bytes decoded as latin-1, and development servers pass a NUL
    or any other byte on: a NUL alone made PostgreSQL refuse the visit (and the spool
    keep it for ever). Bad UTF-8, control characters and NULs become U+FFFD.
    """
    if header.isascii() and header.isprintable():  # nearly every one: nothing to clean
        return header[:MAX_USER_AGENT]
    header = header[: MAX_USER_AGENT * 4]  # UTF-8 takes at most 4 bytes a character
    try:
        text = header.encode("latin-1").decode("utf-8", "replace")
    except UnicodeEncodeError:  # a server that broke PEP 3333: already text
        text = header
    return printable_text(text, MAX_USER_AGENT)


def _only(values: list[str]) -> str | None:
    """The one value of a cookie name; None for none, or for two (hostile input)."""
    return values[0] if len(values) == 1 else None


def fbp(values: list[str]) -> str | None:
    """Meta's ``fbp`` from the values of the ``_fbp`` cookie, or None."""
    value = _only(values)
    return value if value is not None and _FBP_RE.fullmatch(value) else None


def ga_client_id(values: list[str]) -> str | None:
    """GA4's client id from the values of the ``_ga`` cookie: ``GA1.2.X.Y`` gives
    ``X.Y``; None for anything else."""
    value = _only(values)
    found = None if value is None else _GA_RE.fullmatch(value)
    return None if found is None else found[1]


def page_url(referer: str | None) -> str | None:
    """The page that fired the pixel, from its ``Referer``: an absolute http(s) URL
    without its query, fragment and credentials, or None.

    The query goes: a thank-you page's often carries the order's e-mail address or
    name, which no platform may receive unhashed (Meta flags such URLs).
    """
    text = None if not referer else _header_text(referer)
    return None if text is None else _page_url(text)


def _page_url(text: str) -> str | None:
    if len(text) > MAX_PAGE_URL or " " in text or not _printable(text):
        return None
    parts = _PAGE_URL_RE.fullmatch(text)
    if parts is None or (parts[3] and int(parts[3]) > 65535):
        return None
    path = parts[4]
    if path and path[0] != "/":
        return None
    return f"{parts[1].lower()}://{parts[2]}{path}"


def _kept_user_agent(value: str) -> bool:
    return bool(value) and printable_text(value, MAX_USER_AGENT) == value


def tracker_cookies(cookie_header: str | None) -> tuple[list[str], list[str]]:
    """The values of the ``_fbp`` and of the ``_ga`` cookies in a ``Cookie`` header,
    each list in the order sent (a name sent twice gives two values)."""
    if not cookie_header:
        return [], []
    return _cookie_values(cookie_header, "_fbp="), _cookie_values(cookie_header, "_ga=")


def _cookie_values(header: str, target: str) -> list[str]:
    # Found by name, as the attribution cookie is (AttributionCookies.read): a tenth of
    # werkzeug.http.parse_cookie, which parses every cookie of the site (3.6 us measured,
    # a third of what the whole context costs otherwise), on the pixel's path.
    values = []
    start = 0
    while (found := header.find(target, start)) >= 0:
        start = found + 1
        # A match must start the header or follow a separator: "x_ga=" is another cookie.
        if found and header[found - 1] not in _COOKIE_SEPARATORS:
            continue
        begin = found + len(target)
        end = header.find(";", begin)
        value = (header[begin:] if end < 0 else header[begin:end]).strip(_COOKIE_SEPARATORS)
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1]
        values.append(value)
    return values


def conversion_context(
    *,
    cookie_header: str | None,
    user_agent: str | None,
    remote_addr: str | None,
    referer: str | None,
) -> ConversionContext | None:
    """The context a conversion keeps, from its request; None when it carries nothing.

    :param cookie_header: the ``Cookie`` header: its ``_fbp`` and ``_ga`` cookies.
    :param user_agent: the ``User-Agent`` header.
    :param remote_addr: the client's address (kept truncated: IPv4 /24, IPv6 /48).
    :param referer: the ``Referer`` header.
    """
    fbp_values, ga_values = tracker_cookies(cookie_header)
    values = (  # ConversionContext's fields, in order
        fbp(fbp_values) if fbp_values else None,
        ga_client_id(ga_values) if ga_values else None,
        (stored_user_agent(user_agent) or None) if user_agent else None,
        truncated_ip(remote_addr),
        page_url(referer),
    )
    return None if values == _NOTHING else ConversionContext(*values)


def validated_conversion_context(data: Any) -> ConversionContext | None:
    """A conversion context read back from the outage spool (untrusted), checked by the
    rules :func:`conversion_context` keeps values by; None for none (or an erased one).

    :raises ValueError, TypeError: for anything a request could not have given.
    """
    if data is None or data == {}:
        return None
    if not isinstance(data, dict):
        raise TypeError("a conversion context must be an object")
    if not all(isinstance(value, str) for value in data.values()):
        raise TypeError("a conversion context holds text only")
    try:
        context = ConversionContext(**data)
    except TypeError:
        raise ValueError("a conversion context holds an unknown member") from None
    checks = (
        (context.fbp, lambda value: fbp([value]) == value),
        (context.ga_client_id, lambda value: _CLIENT_ID_RE.fullmatch(value) is not None),
        (context.user_agent, _kept_user_agent),
        (context.ip_prefix, lambda value: truncated_ip(value) == value),
        (context.page_url, lambda value: _page_url(value) == value),
    )
    if any(value is not None and not kept(value) for value, kept in checks):
        raise ValueError("the conversion context holds a value a request could not have given")
    if conversion_context_json(context) != data:
        raise ValueError("the conversion context is not in the form a conversion stores")
    return context
