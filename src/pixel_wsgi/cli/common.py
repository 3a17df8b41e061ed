"""Helpers of every ``pixel-wsgi`` command: options, parsing callbacks, rendering."""

from __future__ import annotations

import contextlib
import json
import re
import signal
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from decimal import Decimal
from types import FrameType
from typing import Any, TypeVar

import click

from ..currencies import ISO_4217_CODES
from ..entities import label_problem, name_problem, reason_code_problem
from ..errors import NotFoundError, ParamError, PixelError
from ..models import (
    Campaign,
    Link,
    PayoutKind,
    Transaction,
)
from ..params.sale import parse_amount
from ..storage import Storage

#: Where the tracking-link route lives with the middleware's default ``prefix``.
CLICK_PATH = "/pixels/click/{}"

# A percentage is a plain decimal with at most 4 places: enough for 12.3456 %,
# and, like amounts, never parsed through float.
PERCENT_RE = re.compile(r"[0-9]{1,3}(?:\.[0-9]{1,4})?")
HUNDRED = Decimal(100)
DEFAULT_REJECTIONS_LIMIT = 100

_F = TypeVar("_F", bound=Callable[..., Any])
E = TypeVar("E")


class PixelGroup(click.Group):
    """A group that turns pixel-wsgi's own errors into ``Error: ...`` and exit 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except PixelError as exc:
            # An operator wants the reason, not a traceback: every PixelError
            # message is written to be read on its own.
            raise click.ClickException(str(exc)) from exc


# -- option helpers ----------------------------------------------------------------


def json_option(command: _F) -> _F:
    option = click.option(
        "--json", "as_json", is_flag=True, help="Print one JSON document instead of text."
    )
    return option(command)


def emit_json(document: Any) -> None:
    click.echo(json.dumps(document, indent=2, ensure_ascii=False))


def check_name(ctx: click.Context, param: click.Parameter, value: str) -> str:
    problem = name_problem(value)
    if problem is not None:
        raise click.BadParameter(problem)
    return value.strip()


def parse_fixed_payout(
    ctx: click.Context, param: click.Parameter, value: str | None
) -> Decimal | None:
    if value is None:
        return None
    try:
        return parse_amount(value, field="the amount")
    except ParamError as exc:
        raise click.BadParameter(f"{exc.detail} (like 5 or 12.50), got {value!r}") from exc


def parse_percent(ctx: click.Context, param: click.Parameter, value: str | None) -> Decimal | None:
    if value is None:
        return None
    if PERCENT_RE.fullmatch(value) is None:
        raise click.BadParameter(
            f"must be a decimal percentage with at most 4 decimals (like 10 or 7.5), got {value!r}"
        )
    percent = Decimal(value)
    if not 0 < percent <= HUNDRED:
        raise click.BadParameter(f"must be more than 0 and at most 100, got {value!r}")
    return percent


def parse_currency(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is None:
        return None
    code = value.upper()
    if code not in ISO_4217_CODES:
        raise click.BadParameter(f"must be an ISO 4217 currency code like USD, got {value!r}")
    return code


def check_reason_codes(
    ctx: click.Context, param: click.Parameter, value: tuple[str, ...]
) -> tuple[str, ...]:
    for code in value:
        problem = reason_code_problem(code)
        if problem is not None:
            raise click.BadParameter(problem)
    return value


# -- rendering -------------------------------------------------------------------


def table(headers: Sequence[str], rows: Iterable[Sequence[str]], *, right: int = 0) -> str:
    """Columns padded to their widest cell; the last ``right`` columns right-aligned."""
    body = [list(row) for row in rows]
    widths = [max([len(h), *(len(row[i]) for row in body)]) for i, h in enumerate(headers)]
    first_right = len(headers) - right

    def line(cells: Sequence[str]) -> str:
        padded = [
            cell.rjust(width) if i >= first_right else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
        ]
        return "  ".join(padded).rstrip()

    return "\n".join([line(headers), *(line(row) for row in body)])


def text(value: object) -> str:
    return "-" if value is None or value == "" else str(value)


def money(amount: Decimal | None, currency: str) -> str:
    return "-" if amount is None else f"{amount} {currency}"


LEDGER_HEADERS = (
    "id",
    "conversion",
    "corrects",
    "advertiser",
    "campaign",
    "publisher",
    "source",
    "reference_id",
    "reason_code",
    "created_at",
    "sale",
    "payout",
)


def ledger_row(row: Transaction) -> list[str]:
    return [
        str(row.transaction_id),
        str(row.original_transaction_id),
        text(row.corrects_transaction_id),
        str(row.advertiser_id),
        str(row.campaign_id),
        str(row.publisher_id),
        row.source,
        text(row.reference_id) + (" (contested)" if row.contested else ""),
        text(row.reason_code),
        row.created_at,
        money(row.sale_amount, row.sale_currency),
        money(row.payout, row.payout_currency),
    ]


def print_list(
    rows: Sequence[E],
    as_json: bool,
    *,
    document: Callable[[E], dict[str, Any]],
    headers: Sequence[str],
    cells: Callable[[E], Sequence[str]],
    empty: str,
    right: int = 0,
) -> None:
    """A list command's output: a JSON array of documents, a table, or ``empty``."""
    if as_json:
        emit_json([document(row) for row in rows])
    elif not rows:
        click.echo(empty)
    else:
        click.echo(table(headers, (cells(row) for row in rows), right=right))


def print_ledger(rows: list[Transaction], as_json: bool, empty: str) -> None:
    print_list(
        rows,
        as_json,
        document=Transaction.as_dict,
        headers=LEDGER_HEADERS,
        cells=ledger_row,
        empty=empty,
        right=2,
    )


def campaign_dict(campaign: Campaign) -> dict[str, Any]:
    rule = campaign.payout
    return {
        "id": campaign.id,
        "advertiser_id": campaign.advertiser_id,
        "name": campaign.name,
        "payout": {
            "kind": rule.kind.value,
            "value": str(rule.value),
            # A percentage is paid in the sale's own currency.
            "currency": rule.currency if rule.kind is PayoutKind.FIXED else None,
            "reason_codes": list(rule.reason_codes),
        },
        "created_at": campaign.created_at,
    }


def link_dict(link: Link) -> dict[str, Any]:
    return {
        "id": link.id,
        "campaign_id": link.campaign_id,
        "publisher_id": link.publisher_id,
        "advertiser_id": link.advertiser_id,
        "destination": link.destination,
        "path": CLICK_PATH.format(link.id),
        "created_at": link.created_at,
    }


def check_label(ctx: click.Context, param: click.Parameter, value: str) -> str:
    problem = label_problem(value)
    if problem is not None:
        raise click.BadParameter(problem)
    return value.strip()


def require_advertiser(storage: Storage, advertiser_id: int) -> None:
    if storage.advertiser(advertiser_id) is None:
        raise NotFoundError(f"no advertiser with id {advertiser_id}")


# -- the commands ------------------------------------------------------------------

ID = click.IntRange(min=1)


@contextlib.contextmanager
def stopped_by_signals(stop: threading.Event) -> Iterator[None]:
    """SIGTERM and SIGINT set ``stop`` (a service's ``--loop``: the work in hand finishes,
    then the command returns). A second Ctrl-C interrupts at once."""

    def handler(signum: int, frame: FrameType | None) -> None:
        stop.set()
        signal.signal(signal.SIGINT, signal.default_int_handler)

    if threading.current_thread() is not threading.main_thread():  # signals need it
        yield
        return
    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
