"""``GET /pixels/api/transactions.json`` and ``.csv``: the Transactions API.

The authenticated advertiser's ledger rows, corrections included, in ``transaction_id``
order. Page with ``start_after_transaction_id`` (the last id of the previous page) and
``limit`` (default 1000, at most 4000) until a page comes back empty; ids are handed out
in commit order, so a page read while writes go on never skips or repeats a row.

Query parameters (any other is a ``400``):

``from``, ``to``
    inclusive dates (``YYYY-MM-DD``) of ``created_at`` in ``timezone``
``timezone``
    an IANA zone name such as ``America/New_York``; default ``UTC``
``transaction_type``
    ``conversion``, ``correction`` or ``reversal``
``transaction_id``, ``reference_id``
    one row, or every row of one conversion
``include_columns``, ``exclude_columns``
    comma-separated column names
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator, Sequence
from datetime import date, datetime, time, timedelta, timezone
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from werkzeug.datastructures import MIMEAccept
from werkzeug.http import parse_accept_header

from ...clock import iso_utc
from ...columns import csv_cells, select_columns
from ...errors import ParamError
from ...models import Reason, Transaction, TransactionType
from ...params.sale import claimed_reference, parse_query
from ...params.values import Query, parse_day, parse_whole_number, single
from ..responses import json_response
from .conversions import error_body, status_line

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

    from ...storage import Storage

__all__ = ["DEFAULT_LIMIT", "MAX_LIMIT", "TransactionsEndpoint"]

DEFAULT_LIMIT = 1000
MAX_LIMIT = 4000
_PARAMETERS = frozenset(
    {
        "from",
        "to",
        "timezone",
        "transaction_type",
        "transaction_id",
        "reference_id",
        "start_after_transaction_id",
        "limit",
        "include_columns",
        "exclude_columns",
    }
)
_FORMATS = {"json": "application/json", "csv": "text/csv; charset=utf-8"}
# The server's offers, preferred first: JSON wins a tie (and "*/*").
_OFFERS = {"application/json": "json", "text/csv": "csv"}


def _invalid(field: str, message: str) -> ParamError:
    """A parameter this endpoint refuses: a ``400`` ``invalid_parameter`` naming it."""
    return ParamError(Reason.INVALID_FIELD, message, field=field)


def _number(args: Query, name: str, *, low: int, high: int) -> int | None:
    text = single(args, name)
    if text is None:
        return None
    number = parse_whole_number(text)
    if number is None or not low <= number <= high:
        raise _invalid(name, f"{name} must be a whole number from {low} to {high}")
    return number


def _day(args: Query, name: str) -> date | None:
    text = single(args, name)
    return None if text is None else parse_day(text, name)


def _zone(args: Query) -> timezone | ZoneInfo:
    name = single(args, "timezone")
    if name is None or name == "UTC":
        return timezone.utc
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        # OSError: a name that is a directory of the database ("America") or too long
        # for a file name reaches the file system before it is found wanting.
        raise _invalid("timezone", "timezone must be an IANA name like Europe/Paris") from None


def _start_of(day: date, zone: timezone | ZoneInfo) -> str | None:
    """The UTC instant ``day`` starts in ``zone``; None (no bound) past what datetime holds."""
    try:
        return iso_utc(datetime.combine(day, time(0), tzinfo=zone).astimezone(timezone.utc))
    except OverflowError:
        # Before 0001-01-01 or after 9999-12-31 UTC: earlier or later than any row.
        return None


def _end_of(day: date, zone: timezone | ZoneInfo) -> str | None:
    """The UTC instant the day after ``day`` starts (exclusive); None past 9999-12-31."""
    try:
        following = day + timedelta(days=1)
    except OverflowError:
        return None
    return _start_of(following, zone)


def _reference(args: Query) -> str | None:
    """The ``reference_id`` filter, when it could name a conversion at all.

    A NUL, a control character or a surrogate is refused here: PostgreSQL would fail
    on the query (a 503 for a bad request).
    """
    text = single(args, "reference_id")
    if text is not None and claimed_reference({"reference_id": [text]}) != text:
        raise _invalid("reference_id", "reference_id is not a valid reference id")
    return text


def _names(args: Query, name: str) -> list[str]:
    text = single(args, name)
    return [part.strip() for part in text.split(",") if part.strip()] if text else []


def _columns(args: Query) -> tuple[str, ...]:
    include = _names(args, "include_columns")
    exclude = _names(args, "exclude_columns")
    # Checked one at a time, so the error names the parameter at fault.
    for field, names in (("include_columns", include), ("exclude_columns", exclude)):
        try:
            select_columns(names)
        except ValueError as exc:
            raise _invalid(field, str(exc)) from None
    columns = select_columns(include, exclude)
    if not columns:
        raise _invalid("exclude_columns", "include_columns and exclude_columns leave no column")
    return columns


class TransactionsEndpoint:
    """Serves the authenticated advertiser's ledger rows as JSON or CSV."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    def __call__(
        self,
        environ: WSGIEnvironment,
        start_response: StartResponse,
        advertiser_id: int,
        extension: str | None,
    ) -> Iterable[bytes]:
        head = environ["REQUEST_METHOD"] == "HEAD"
        form = extension or _negotiate(environ.get("HTTP_ACCEPT", ""))
        try:
            args = parse_query(environ.get("QUERY_STRING", ""))
            unknown = sorted(set(args) - _PARAMETERS)
            if unknown:
                raise _invalid(unknown[0], f"unknown parameter {unknown[0]!r}")
            zone = _zone(args)
            first, last = _day(args, "from"), _day(args, "to")
            if first is not None and last is not None and last < first:
                raise _invalid("to", "to is before from")
            type_text = single(args, "transaction_type")
            try:
                kind = None if type_text is None else TransactionType(type_text)
            except ValueError:
                names = ", ".join(t.value for t in TransactionType)
                raise _invalid("transaction_type", f"transaction_type is one of {names}") from None
            columns = _columns(args)
            limit = _number(args, "limit", low=1, high=MAX_LIMIT) or DEFAULT_LIMIT
            after = _number(args, "start_after_transaction_id", low=0, high=2**63 - 1)
            rows = list(
                self.storage.transactions(
                    advertiser_id=advertiser_id,
                    after_transaction_id=after,
                    limit=limit,
                    transaction_id=_number(args, "transaction_id", low=1, high=2**63 - 1),
                    reference_id=_reference(args),
                    transaction_type=kind,
                    created_from=None if first is None else _start_of(first, zone),
                    created_before=None if last is None else _end_of(last, zone),
                )
            )
        except ParamError as exc:
            # A named parameter is refused as such; a query that does not parse at all
            # (too long, not UTF-8) keeps its own reason.
            refusal = (
                error_body(exc.reason.value, exc.detail)
                if exc.field is None
                else error_body("invalid_parameter", exc.detail, field=exc.field)
            )
            return json_response(start_response, status_line(400), refusal, head=head)
        headers = [("Content-Type", _FORMATS[form]), ("Cache-Control", "no-store, private")]
        if len(rows) == limit:
            # The next page: the same query after this page's last id.
            following = {key: values[-1] for key, values in args.items()}
            following["start_after_transaction_id"] = str(rows[-1].transaction_id)
            path = environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")
            headers.append(("Link", f'<{path}?{urlencode(following)}>; rel="next"'))
        if form == "csv":
            headers.append(("Content-Disposition", 'attachment; filename="transactions.csv"'))
        body = b"".join(_csv(rows, columns) if form == "csv" else _json(rows, columns))
        headers.append(("Content-Length", str(len(body))))
        start_response(status_line(200), headers)
        return [] if head else [body]


def _negotiate(accept: str) -> str:
    """``csv`` when the client prefers ``text/csv`` (q-values count), else ``json``.

    JSON wins a tie, ``*/*`` and a missing header. A client that accepts neither
    (``Accept: text/html``) still gets JSON rather than a ``406``: the ``.json`` and
    ``.csv`` URLs name the format outright.
    """
    best = parse_accept_header(accept, MIMEAccept).best_match(_OFFERS, "application/json")
    return _OFFERS[best]


def _json(rows: Sequence[Transaction], columns: Sequence[str]) -> Iterator[bytes]:
    yield b"["
    for index, row in enumerate(rows):
        values: dict[str, Any] = row.as_dict()
        document = {name: values[name] for name in columns}
        yield (b"," if index else b"") + json.dumps(document, separators=(",", ":")).encode()
    yield b"]"


def _csv(rows: Sequence[Transaction], columns: Sequence[str]) -> Iterator[bytes]:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow(csv_cells(row, columns))
    yield buffer.getvalue().encode("utf-8")
