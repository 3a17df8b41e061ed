"""The small parsers every way in shares: ids, numbers, single values, days, names.

Pure functions on text and on the plain query type :data:`Query` (a ``dict`` of lists,
as :func:`~pixel_wsgi.params.sale.parse_query` makes it): no WSGI, no Werkzeug. They are
written once here, and the pixel, the APIs, the bulk upload and the dashboard use them.

>>> parse_positive_id("42"), parse_positive_id("042"), parse_positive_id("0")
(42, None, None)
>>> single({"from": ["2026-11-25"]}, "from")
'2026-11-25'
"""

from __future__ import annotations

import re
from datetime import date

from ..errors import ParamError
from ..models import Reason

__all__ = [
    "CONTROL_RE",
    "MAX_ID_DIGITS",
    "Query",
    "one_value",
    "parse_day",
    "parse_positive_id",
    "parse_whole_number",
    "shown_name",
    "single",
]

#: Parsed query parameters: each name with its values in the order given. A plain
#: ``dict`` of lists, cheap to build on the pixel's hot path and to read anywhere.
Query = dict[str, list[str]]

#: The most digits of an id or a count: int() never sees a huge string, and every
#: value fits a signed 64-bit column.
MAX_ID_DIGITS = 18

# Cc is exactly U+0000-U+001F and U+007F-U+009F (C0, DEL, C1). U+2028/U+2029 are not Cc
# but break lines in logs, CSV exports and JavaScript string literals just the same.
# Surrogates (U+D800-U+DFFF) are no characters at all: JSON's "\ud800" decodes to one,
# and no store can encode it as UTF-8 (SQLite and PostgreSQL fail, the report would be
# spooled for ever). A NUL is refused by PostgreSQL. All are refused at the door.
CONTROL_RE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")

# [0-9], never \d: \d also matches Arabic-Indic, full-width and other Unicode digits.
# No leading zero: "/advertisers/01" and "/advertisers/1" must not both name one page.
_ID_RE = re.compile(rf"[1-9][0-9]{{0,{MAX_ID_DIGITS - 1}}}")
_NUMBER_RE = re.compile(rf"[0-9]{{1,{MAX_ID_DIGITS}}}")
_DAY_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_SHOWN_NAME_LENGTH = 64


def parse_positive_id(text: str) -> int | None:
    """``text`` as an id: a whole number from 1, at most :data:`MAX_ID_DIGITS` ASCII
    digits without a leading zero; None for anything else."""
    return int(text) if _ID_RE.fullmatch(text) is not None else None


def parse_whole_number(text: str) -> int | None:
    """``text`` as a whole number from 0 (at most :data:`MAX_ID_DIGITS` ASCII digits,
    leading zeros allowed); None for anything else."""
    return int(text) if _NUMBER_RE.fullmatch(text) is not None else None


def shown_name(key: str) -> str:
    """``key`` as it may appear in a detail or ``field``: escaped and bounded.

    Control characters and surrogates become backslash escapes, and a long name is cut,
    so a parameter's name can be logged and stored whatever a client sent.
    """
    if CONTROL_RE.search(key) is not None:
        key = key.encode("unicode_escape").decode("ascii")
    if len(key) > _SHOWN_NAME_LENGTH:
        key = key[:_SHOWN_NAME_LENGTH] + "..."
    return key


def one_value(name: str, values: list[str]) -> str:
    """The only value of a parameter given at least once.

    :raises ParamError: ``DUPLICATE_PARAMETER`` when it was given more than once.
    """
    # Two values, even equal ones, mean the request was built wrong; picking one would
    # hide that and could pick the wrong one.
    if len(values) > 1:
        raise ParamError(
            Reason.DUPLICATE_PARAMETER, f"{name} may be given only once", field=shown_name(name)
        )
    return values[0]


def single(args: Query, name: str) -> str | None:
    """The one value of ``name`` in ``args`` (possibly blank), or None when not given.

    :raises ParamError: ``DUPLICATE_PARAMETER`` when it was given more than once.
    """
    values = args.get(name)
    return one_value(name, values) if values else None


def parse_day(text: str, name: str) -> date:
    """A calendar day written ``YYYY-MM-DD`` in ASCII digits.

    >>> parse_day("2026-11-25", "from")
    datetime.date(2026, 11, 25)

    :raises ParamError: ``INVALID_FIELD``, saying ``{name} must be a date like 2026-11-25
        (YYYY-MM-DD)`` for text of another shape and ``{name} is not a real date`` for a
        day no calendar has (``2026-02-30``).
    """
    if _DAY_RE.fullmatch(text) is None:
        raise ParamError(
            Reason.INVALID_FIELD,
            f"{name} must be a date like 2026-11-25 (YYYY-MM-DD)",
            field=name,
        )
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise ParamError(Reason.INVALID_FIELD, f"{name} is not a real date", field=name) from None
