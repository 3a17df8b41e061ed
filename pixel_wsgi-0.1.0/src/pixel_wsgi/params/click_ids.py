"""What a tracking link's query carries for delivery: the publisher's sub ids and the
ad platforms' click ids.

The publisher's postback gets its sub ids back (``sub1``..``sub5``, or TUNE's
``aff_sub``..``aff_sub5``); Google Ads, Meta, TikTok and Microsoft match a conversion to
their ad click by the id they appended to the link (``gclid``, ``gbraid``, ``wbraid``,
``fbclid``, ``ttclid``, ``msclkid``). Click ids are case-sensitive and must reach the
platform byte for byte ("make sure you have not modified the click IDs"), so a value is
kept exactly as decoded from the query, or not at all: one that is too long, holds a
control character, is not UTF-8, or is given twice with two different values is
dropped, never cut or repaired, and nothing here raises. None of it is ever logged.

>>> parse_click_context("aff_sub=A&sub1=B&gclid=Cj0K-x_Y&utm_source=x", 1700000000000)
ClickContext(sub_ids={'sub1': 'B'}, click_ids={'gclid': 'Cj0K-x_Y'}, clicked_at_ms=1700000000000)
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote_plus, unquote_to_bytes

from ..models import (
    CLICK_ID_PARAMS,
    SUB_ID_ALIASES,
    SUB_ID_PARAMS,
    ClickContext,
    click_context_json,
)
from .values import CONTROL_RE

__all__ = [
    "MAX_CAPTURED_LENGTH",
    "acceptable",
    "parse_click_context",
    "validated_click_context",
]

#: The longest sub id or click id kept, in characters (a gclid is about 100; Meta's
#: fbclid about 60-200). A longer value is dropped, never cut: a cut id matches nothing.
MAX_CAPTURED_LENGTH = 512
# A percent-encoded value takes at most 12 characters per character kept (4 UTF-8
# bytes, 3 characters each): a longer raw value is dropped before it is decoded.
_MAX_RAW_LENGTH = 12 * MAX_CAPTURED_LENGTH
_WANTED = frozenset((*SUB_ID_PARAMS, *SUB_ID_ALIASES, *CLICK_ID_PARAMS))
# The latest Unix millisecond a click may carry (the year 9999): a spooled one is checked.
_MAX_CLICKED_AT_MS = 253_402_300_800_000
_CONTEXT_KEYS = frozenset(("sub_ids", "click_ids", "clicked_at_ms"))


def _decoded(raw: str) -> str | None:
    """A query value as kept: percent-decoded, UTF-8, short and printable; else None.

    ``raw`` comes from a WSGI ``QUERY_STRING``: its bytes decoded as latin-1 (PEP 3333).
    """
    if len(raw) > _MAX_RAW_LENGTH:
        return None
    try:
        data = raw.encode("latin-1")
    except UnicodeEncodeError:  # a server that broke PEP 3333: already text
        data = raw.encode("utf-8", "surrogatepass")
    if b"%" in data or b"+" in data:
        data = unquote_to_bytes(data.replace(b"+", b" "))
    try:
        value = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return value if acceptable(value) else None


def acceptable(value: object) -> bool:
    """Whether a sub id or click id may be kept as it is: non-empty text of at most
    :data:`MAX_CAPTURED_LENGTH` characters, without control characters or surrogates."""
    return (
        isinstance(value, str)
        and 0 < len(value) <= MAX_CAPTURED_LENGTH
        and CONTROL_RE.search(value) is None
    )


def parse_click_context(query_string: str, clicked_at_ms: int) -> ClickContext | None:
    """The sub ids and click ids of a tracking link's query; None when it carries none.

    :param query_string: the WSGI ``QUERY_STRING`` (PEP 3333's latin-1 text).
    :param clicked_at_ms: when the click happened, in Unix milliseconds (Meta's ``fbc``
        is built with it).

    ``aff_sub``..``aff_sub5`` are ``sub1``..``sub5`` under TUNE's names: when a link
    carries both names of one sub id, the ``subN`` one is kept (unless it is dropped, as
    a dropped value is as good as none). A name given twice with
    different values is ambiguous (one may have been appended to the publisher's link
    by someone else): neither is kept. Other parameters are ignored.
    """
    if not query_string:
        return None
    found: dict[str, str | None] = {}
    for piece in query_string.split("&"):
        name, sign, raw = piece.partition("=")
        if not sign:
            continue
        if "%" in name or "+" in name:
            name = unquote_plus(name, errors="replace")
        if name not in _WANTED:
            continue
        value = _decoded(raw)
        if name in found and found[name] != value:
            value = None  # given twice, differently: ambiguous
        found[name] = value
    if not found:
        return None
    sub_ids = {}
    for alias, name in SUB_ID_ALIASES.items():
        value = found.get(name) or found.get(alias)
        if value is not None:
            sub_ids[name] = value
    click_ids = {name: value for name in CLICK_ID_PARAMS if (value := found.get(name))}
    if not sub_ids and not click_ids:
        return None
    return ClickContext(sub_ids=sub_ids, click_ids=click_ids, clicked_at_ms=clicked_at_ms)


def validated_click_context(data: Any) -> ClickContext | None:
    """A click context read back from the outage spool (untrusted), checked by the rules
    :func:`parse_click_context` keeps values by; None for none.

    :raises ValueError, TypeError: for anything a parsed link could not have given.
    """
    if data is None:
        return None
    if not isinstance(data, dict):
        raise TypeError("a click context must be an object")
    if not data.keys() <= _CONTEXT_KEYS:
        raise ValueError("a click context holds sub_ids, click_ids and clicked_at_ms only")
    sub_ids = _validated_ids(data.get("sub_ids", {}), SUB_ID_PARAMS, "sub_ids")
    click_ids = _validated_ids(data.get("click_ids", {}), CLICK_ID_PARAMS, "click_ids")
    clicked_at_ms = data.get("clicked_at_ms")
    if isinstance(clicked_at_ms, bool) or not isinstance(clicked_at_ms, int):
        raise TypeError("clicked_at_ms must be an integer")
    if not 0 < clicked_at_ms <= _MAX_CLICKED_AT_MS:
        raise ValueError("clicked_at_ms is not a time")
    if not sub_ids and not click_ids:
        raise ValueError("a click context without sub ids or click ids is kept as none")
    click = ClickContext(sub_ids=sub_ids, click_ids=click_ids, clicked_at_ms=clicked_at_ms)
    if click_context_json(click) != data:
        raise ValueError("the click context is not in the form a click stores")
    return click


def _validated_ids(ids: Any, names: tuple[str, ...], what: str) -> dict[str, str]:
    if not isinstance(ids, dict):
        raise TypeError(f"{what} must be an object")
    for name, value in ids.items():
        if name not in names:
            raise ValueError(f"{what} holds an unknown name")
        if not acceptable(value):
            raise ValueError(f"{what} holds a value a click would not have kept")
    return dict(ids)
