"""The dashboard's query parameters, validated: a bad one is a 400 page, never a traceback."""

from __future__ import annotations

import re
from datetime import date, timedelta
from typing import Any

from ..currencies import ISO_4217_CODES
from ..errors import BadRequest, ParamError
from ..params import values
from ..params.values import Query
from .reports import DateRange
from .tables import ASC, DESC, Table, TableQuery

__all__ = [
    "DEFAULT_DAYS",
    "MAX_DAYS",
    "MAX_FILTER_LENGTH",
    "currency_of_sort",
    "optional_id",
    "parse_range",
    "parse_table_query",
    "reason_filter",
    "single",
]

#: The range shown without ``from``/``to``: the last 30 days, today included.
DEFAULT_DAYS = 30
#: The longest range one page covers (two years and a leap day).
MAX_DAYS = 731
MAX_FILTER_LENGTH = 200

_REASON_RE = re.compile(r"[a-z][a-z0-9_]{0,63}")
_MONEY_SORT_RE = re.compile(r"(?:sales|payouts)_([A-Z]{3})")


def single(args: Query, name: str) -> str | None:
    """The one value of a parameter; an empty value counts as not given."""
    try:
        text = values.single(args, name)
    except ParamError:
        raise BadRequest(f"{name} is given more than once") from None
    return text or None


def _parse_date(args: Query, name: str) -> date | None:
    text = single(args, name)
    if text is None:
        return None
    try:
        return values.parse_day(text, name)
    except ParamError as exc:
        raise BadRequest(f"{exc.detail}, got {text!r}") from None


def parse_range(args: Query, today: date) -> DateRange:
    """``from`` and ``to`` (UTC days, both included); by default the last 30 days."""
    start = _parse_date(args, "from")
    end = _parse_date(args, "to")
    if end is None:
        end = today if start is None or start <= today else start
    if start is None:
        start = end - timedelta(days=DEFAULT_DAYS - 1)
    if end < start:
        raise BadRequest(f"from ({start}) must not be after to ({end})")
    days = DateRange(start, end)
    if days.length > MAX_DAYS:
        raise BadRequest(f"a range covers at most {MAX_DAYS} days, this one {days.length}")
    return days


def currency_of_sort(args: Query) -> str | None:
    """The currency a ``sort=sales_EUR`` asks for, so that its column exists."""
    match = _MONEY_SORT_RE.fullmatch(single(args, "sort") or "")
    if match is None or match.group(1) not in ISO_4217_CODES:
        return None
    return match.group(1)


def parse_table_query(args: Query, table: Table[Any]) -> TableQuery:
    """``sort`` (a column of ``table``), ``dir`` (``asc``/``desc``) and ``q``."""
    sort = single(args, "sort")
    if sort is not None and table.column(sort) is None:
        raise BadRequest(f"cannot sort by {sort!r}: sort by one of {', '.join(table.keys)}")
    direction = single(args, "dir")
    if direction not in (None, ASC, DESC):
        raise BadRequest(f"dir must be {ASC} or {DESC}, got {direction!r}")
    q = (single(args, "q") or "").strip()
    if len(q) > MAX_FILTER_LENGTH:
        raise BadRequest(f"q must be at most {MAX_FILTER_LENGTH} characters")
    if sort is None:
        descending = table.default_descending if direction is None else direction == DESC
        return TableQuery(table.default_sort, descending, q)
    return TableQuery(sort, direction == DESC, q)


def optional_id(args: Query, name: str) -> int | None:
    text = single(args, name)
    if text is None:
        return None
    number = values.parse_positive_id(text)
    if number is None:
        raise BadRequest(f"{name} must be an id (a whole number from 1), got {text!r}")
    return number


def reason_filter(args: Query) -> str | None:
    text = single(args, "reason")
    if text is None:
        return None
    if _REASON_RE.fullmatch(text) is None:
        raise BadRequest(f"reason must be a reason code like no_attribution, got {text!r}")
    return text
