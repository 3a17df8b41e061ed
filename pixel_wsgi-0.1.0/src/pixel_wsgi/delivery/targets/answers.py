"""Reading the platforms' answers: what every target type reads alike.

An answer that is not the documented JSON says nothing (never an exception); ``Retry-After``
is read as RFC 9110 writes it; an outcome's detail quotes the start of the body, which the
attempt log keeps for the operator.
"""

from __future__ import annotations

import json
from decimal import Decimal
from email.utils import parsedate_to_datetime
from typing import Any

from ...clock import utc_now
from ..model import HttpResponse, Outcome, OutcomeKind

__all__ = ["DETAIL_CHARS", "described", "json_object", "no_answer", "retry_after", "retrying"]

#: How much of an answer's body an outcome's detail quotes.
DETAIL_CHARS = 200


def json_object(body: bytes) -> dict[str, Any]:
    """A JSON object's members (numbers with a fraction as Decimal), or {} for anything
    else: an answer that is not the documented JSON is read as saying nothing."""
    try:
        found = json.loads(body, parse_float=Decimal)
    except (ValueError, UnicodeDecodeError):
        return {}
    return found if isinstance(found, dict) else {}


def _excerpt(response: HttpResponse) -> str:
    text = " ".join(response.body[: DETAIL_CHARS * 4].decode("utf-8", "replace").split())
    return text[:DETAIL_CHARS]


def described(response: HttpResponse, what: str = "") -> str:
    """``HTTP 503: <the body's start>``: an outcome's detail for an answer."""
    detail = f"HTTP {response.status}{what}"
    excerpt = _excerpt(response)
    return f"{detail}: {excerpt}" if excerpt else detail


def retry_after(response: HttpResponse) -> float | None:
    """The seconds ``Retry-After`` asks to wait (RFC 9110: delta-seconds or an HTTP-date),
    or None when it is absent or unreadable. A date counts from the answer's own ``Date``
    when it has one (both from the server's clock), else from ours."""
    value = response.header("retry-after")
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        until = parsedate_to_datetime(value)
        date = response.header("date")
        since = parsedate_to_datetime(date) if date else utc_now()
    except (TypeError, ValueError):
        return None
    if until.tzinfo is None or since.tzinfo is None:
        return None
    return max(0.0, (until - since).total_seconds())


def no_answer(error: str | None, source: str = "") -> Outcome:
    """Nothing came back from ``source`` (refused, reset, timed out): try again later."""
    where = f" from {source}" if source else ""
    return Outcome(OutcomeKind.RETRY, f"no answer{where}: {error or 'unknown'}")


def retrying(response: HttpResponse) -> Outcome:
    """Try again later, after what ``Retry-After`` asks."""
    return Outcome(OutcomeKind.RETRY, described(response), retry_after(response))
