"""The operator command line, ``pixel-wsgi``.

Set up what the middleware tracks, and read what it recorded::

    pixel-wsgi --storage sqlite:///pixel-wsgi.db migrate
    pixel-wsgi advertiser add "Acme Shop"
    pixel-wsgi publisher add "Tea Blog"
    pixel-wsgi campaign add --advertiser 1 "Spring sale" --payout-percent 10
    pixel-wsgi link add --campaign 1 --publisher 1 --to /landing
    pixel-wsgi conversions --advertiser 1 --json
    pixel-wsgi credential add --advertiser 1
    pixel-wsgi import conversions.csv --advertiser 1
    pixel-wsgi export --advertiser 1 --format csv > ledger.csv

The store is chosen with ``--storage URL`` or the ``PIXEL_WSGI_STORAGE``
environment variable. Commands that write (``add``, ``set``, ``import``, ...)
bring the schema up to date first (it is idempotent), so a new file just works.
Commands that only read (the lists, ``conversions``, ``transactions``,
``rejections``, ``export``, ``dashboard``) never create a database and never
write: a SQLite file they may only read (made by another user) works, and a
missing one is an error naming the absolute path looked for. A relative SQLite
path is relative to the current directory: every command given one says on
stderr which file it used.

Each command takes ``--json`` to print one JSON document on stdout instead of
text; money is always a string (``"24.50"``), never a float. Errors are one
``Error: ...`` line on stderr and exit status 1 (2 for a malformed command line).
"""

from __future__ import annotations

import csv
import json
import os
import re
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any, BinaryIO, TextIO, TypeVar

import click

from .columns import COLUMNS, csv_cells
from .currencies import ISO_4217_CODES
from .dashboard_cli import dashboard
from .endpoints.api.auth import issue_credential
from .endpoints.api.bulk import decoded_lines, import_csv
from .entities import destination_host, validate_destination
from .errors import ConfigurationError, NotFoundError, ParamError, PixelError
from .ledger.ledger import Ledger
from .models import (
    Advertiser,
    ApiCredential,
    Campaign,
    Link,
    PayoutKind,
    PayoutRule,
    Publisher,
    Rejection,
    Transaction,
)
from .outage.replay import replay as replay_spool
from .outage.spool import Spool, SpoolError
from .params.sale import parse_amount
from .params.server_report import ReportInvalid
from .storage import SQLiteStorage, Storage, storage_from_url

__all__ = ["DEFAULT_STORAGE", "STORAGE_ENV", "cli", "main"]

#: The store used when neither ``--storage`` nor ``PIXEL_WSGI_STORAGE`` is given.
DEFAULT_STORAGE = "sqlite:///pixel-wsgi.db"
#: The environment variable read for ``--storage``.
STORAGE_ENV = "PIXEL_WSGI_STORAGE"

#: Where the tracking-link route lives with the middleware's default ``prefix``.
CLICK_PATH = "/pixels/click/{}"

# A percentage is a plain decimal with at most 4 places: enough for 12.3456 %,
# and, like amounts, never parsed through float.
_PERCENT_RE = re.compile(r"[0-9]{1,3}(?:\.[0-9]{1,4})?")
_HUNDRED = Decimal(100)
_CONTROL_RE = re.compile("[\x00-\x1f\x7f-\x9f]")
_MAX_NAME_LENGTH = 200
_DEFAULT_REJECTIONS_LIMIT = 100

_F = TypeVar("_F", bound=Callable[..., Any])
_E = TypeVar("_E")


class _State:
    """What the group hands its commands: the storage URL, opened on first use."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._storage: Storage | None = None

    def storage(self, *, migrate: bool = True) -> Storage:
        """The store for a command that writes: created (SQLite) and migrated."""
        if self._storage is None:
            storage = storage_from_url(self.url)
            if isinstance(storage, SQLiteStorage):
                verb = "using" if storage.path.exists() else "creating"
                _say_which_file(storage, verb)
            if migrate:
                storage.migrate()
            self._storage = storage
        return self._storage

    def reader(self) -> Storage:
        """The store for a command that only reads: never created, never written.

        A SQLite file is opened read-only, so one that this user may not write works.
        """
        if self._storage is None:
            storage = storage_from_url(self.url)
            if isinstance(storage, SQLiteStorage):
                storage = _read_only_sqlite(storage)
            self._storage = storage
        return self._storage

    def close(self) -> None:
        if self._storage is not None:
            self._storage.close()


def _say_which_file(storage: SQLiteStorage, verb: str) -> None:
    """A relative path depends on the current directory: name the file it resolved to."""
    if not storage.path.is_absolute():
        click.echo(f"pixel-wsgi: {verb} {storage.path.absolute()}", err=True)


def _read_only_sqlite(storage: SQLiteStorage) -> SQLiteStorage:
    _say_which_file(storage, "using")
    path = storage.path.absolute()
    if not path.is_file():
        raise ConfigurationError(
            f"no database at {path} (commands that only read never create one): give"
            f" --storage sqlite:///<path> or set {STORAGE_ENV}, or create it with"
            " `pixel-wsgi migrate`"
        )
    reader = SQLiteStorage(
        path,
        busy_timeout=storage.busy_timeout,
        synchronous=storage.synchronous,
        max_rejections=storage.max_rejections,
        read_only=True,
    )
    pending = reader.pending_migrations()
    if pending:
        reader.close()
        raise ConfigurationError(
            f"the database {path} lacks the schema migrations {', '.join(pending)}: run"
            " `pixel-wsgi migrate` as a user who may write it"
        )
    return reader


class _PixelGroup(click.Group):
    """A group that turns pixel-wsgi's own errors into ``Error: ...`` and exit 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except PixelError as exc:
            # An operator wants the reason, not a traceback: every PixelError
            # message is written to be read on its own.
            raise click.ClickException(str(exc)) from exc


# -- option helpers ----------------------------------------------------------------


def _json_option(command: _F) -> _F:
    option = click.option(
        "--json", "as_json", is_flag=True, help="Print one JSON document instead of text."
    )
    return option(command)


def _emit_json(document: Any) -> None:
    click.echo(json.dumps(document, indent=2, ensure_ascii=False))


def _check_name(ctx: click.Context, param: click.Parameter, value: str) -> str:
    name = value.strip()
    if not name:
        raise click.BadParameter("must not be empty")
    if _CONTROL_RE.search(name):
        raise click.BadParameter("must not contain control characters")
    if len(name) > _MAX_NAME_LENGTH:
        raise click.BadParameter(f"must be at most {_MAX_NAME_LENGTH} characters")
    return name


def _parse_fixed_payout(
    ctx: click.Context, param: click.Parameter, value: str | None
) -> Decimal | None:
    if value is None:
        return None
    try:
        return parse_amount(value, field="the amount")
    except ParamError as exc:
        raise click.BadParameter(f"{exc.detail} (like 5 or 12.50), got {value!r}") from exc


def _parse_percent(ctx: click.Context, param: click.Parameter, value: str | None) -> Decimal | None:
    if value is None:
        return None
    if _PERCENT_RE.fullmatch(value) is None:
        raise click.BadParameter(
            f"must be a decimal percentage with at most 4 decimals (like 10 or 7.5), got {value!r}"
        )
    percent = Decimal(value)
    if not 0 < percent <= _HUNDRED:
        raise click.BadParameter(f"must be more than 0 and at most 100, got {value!r}")
    return percent


def _parse_currency(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is None:
        return None
    code = value.upper()
    if code not in ISO_4217_CODES:
        raise click.BadParameter(f"must be an ISO 4217 currency code like USD, got {value!r}")
    return code


def _check_reason_codes(
    ctx: click.Context, param: click.Parameter, value: tuple[str, ...]
) -> tuple[str, ...]:
    for code in value:
        if not code.strip() or _CONTROL_RE.search(code):
            raise click.BadParameter(f"must be non-empty text, got {code!r}")
    return value


# -- rendering -------------------------------------------------------------------


def _table(headers: Sequence[str], rows: Iterable[Sequence[str]], *, right: int = 0) -> str:
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


def _text(value: object) -> str:
    return "-" if value is None or value == "" else str(value)


def _money(amount: Decimal | None, currency: str) -> str:
    return "-" if amount is None else f"{amount} {currency}"


_LEDGER_HEADERS = (
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


def _ledger_row(row: Transaction) -> list[str]:
    return [
        str(row.transaction_id),
        str(row.original_transaction_id),
        _text(row.corrects_transaction_id),
        str(row.advertiser_id),
        str(row.campaign_id),
        str(row.publisher_id),
        row.source,
        _text(row.reference_id) + (" (contested)" if row.contested else ""),
        _text(row.reason_code),
        row.created_at,
        _money(row.sale_amount, row.sale_currency),
        _money(row.payout, row.payout_currency),
    ]


def _print_list(
    rows: Sequence[_E],
    as_json: bool,
    *,
    document: Callable[[_E], dict[str, Any]],
    headers: Sequence[str],
    cells: Callable[[_E], Sequence[str]],
    empty: str,
    right: int = 0,
) -> None:
    """A list command's output: a JSON array of documents, a table, or ``empty``."""
    if as_json:
        _emit_json([document(row) for row in rows])
    elif not rows:
        click.echo(empty)
    else:
        click.echo(_table(headers, (cells(row) for row in rows), right=right))


def _print_ledger(rows: list[Transaction], as_json: bool, empty: str) -> None:
    _print_list(
        rows,
        as_json,
        document=Transaction.as_dict,
        headers=_LEDGER_HEADERS,
        cells=_ledger_row,
        empty=empty,
        right=2,
    )


def _describe_payout(rule: PayoutRule) -> str:
    if rule.kind is PayoutKind.PERCENT:
        text = f"{rule.value}% of sale_amount"
    else:
        text = f"{rule.value} {rule.currency} per conversion"
    if rule.reason_codes:
        text += f" (only for reason_code {', '.join(rule.reason_codes)})"
    return text


def _campaign_dict(campaign: Campaign) -> dict[str, Any]:
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


def _link_dict(link: Link) -> dict[str, Any]:
    return {
        "id": link.id,
        "campaign_id": link.campaign_id,
        "publisher_id": link.publisher_id,
        "advertiser_id": link.advertiser_id,
        "destination": link.destination,
        "path": CLICK_PATH.format(link.id),
        "created_at": link.created_at,
    }


def _check_label(ctx: click.Context, param: click.Parameter, value: str) -> str:
    if _CONTROL_RE.search(value) or len(value) > _MAX_NAME_LENGTH:
        raise click.BadParameter(f"at most {_MAX_NAME_LENGTH} characters, no control characters")
    return value.strip()


def _require_advertiser(storage: Storage, advertiser_id: int) -> None:
    if storage.advertiser(advertiser_id) is None:
        raise NotFoundError(f"no advertiser with id {advertiser_id}")


# -- the commands ------------------------------------------------------------------

_ID = click.IntRange(min=1)


@click.group(cls=_PixelGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--storage",
    "storage_url",
    metavar="URL",
    envvar=STORAGE_ENV,
    default=DEFAULT_STORAGE,
    show_default=True,
    help=f"Where the ledger lives (env {STORAGE_ENV}), e.g. sqlite:///pixel-wsgi.db.",
)
@click.version_option(package_name="pixel-wsgi")
@click.pass_context
def cli(ctx: click.Context, storage_url: str) -> None:
    """Operate pixel-wsgi: set up advertisers, publishers, campaigns and tracking
    links, and read the conversions, ledger rows and rejections it recorded."""
    state = _State(storage_url)
    ctx.obj = state
    ctx.call_on_close(state.close)


@cli.command()
@_json_option
@click.pass_obj
def migrate(state: _State, as_json: bool) -> None:
    """Create or update the storage schema.

    Safe to run repeatedly and concurrently.
    """
    state.storage(migrate=False).migrate()
    if as_json:
        _emit_json({"migrated": True})
    else:
        click.echo("Storage schema is up to date.")


@cli.group()
def advertiser() -> None:
    """Advertisers: the sites whose conversions are tracked."""


@advertiser.command("add")
@click.argument("name", callback=_check_name)
@_json_option
@click.pass_obj
def advertiser_add(state: _State, name: str, as_json: bool) -> None:
    """Create an advertiser called NAME and print its id."""
    _print_created("advertiser", state.storage().add_advertiser(name), as_json)


def _name_dict(entity: Advertiser | Publisher) -> dict[str, Any]:
    return {"id": entity.id, "name": entity.name, "created_at": entity.created_at}


def _print_created(kind: str, created: Advertiser | Publisher, as_json: bool) -> None:
    """What ``advertiser add`` and ``publisher add`` print."""
    if as_json:
        _emit_json(_name_dict(created))
    else:
        click.echo(f"Created {kind} {created.id} ({created.name})")


def _advertiser_dict(advertiser: Advertiser) -> dict[str, Any]:
    return {
        "id": advertiser.id,
        "name": advertiser.name,
        "require_signed_pixels": advertiser.require_signed_pixels,
        "created_at": advertiser.created_at,
    }


@advertiser.command("list")
@_json_option
@click.pass_obj
def advertiser_list(state: _State, as_json: bool) -> None:
    """List every advertiser."""
    _print_entities(
        state.reader().advertisers(),
        as_json,
        ("id", "name", "require_signed_pixels", "created_at"),
        _advertiser_dict,
        "No advertisers.",
    )


# Running middleware processes cache these options (catalog.DEFAULT_TTL).
_SEEN_WITHIN = "Running servers apply the change within a minute."


@advertiser.command("set")
@click.argument("advertiser_id", type=_ID)
@click.option(
    "--require-signed-pixels/--allow-unsigned-pixels",
    "require_signed_pixels",
    default=None,
    help="Refuse conversion pixels without a valid signature (rejected as"
    " unsigned_pixel), or accept them again.",
)
@_json_option
@click.pass_obj
def advertiser_set(
    state: _State, advertiser_id: int, require_signed_pixels: bool | None, as_json: bool
) -> None:
    """Change an advertiser's options.

    Signed pixel URLs come from pixel_wsgi.signing (a template helper);
    requiring them stops visitors from editing sale_amount or reference_id.
    Running servers apply the change within a minute.
    """
    if require_signed_pixels is None:
        raise click.UsageError("give --require-signed-pixels or --allow-unsigned-pixels")
    changed = state.storage().set_advertiser_options(
        advertiser_id, require_signed_pixels=require_signed_pixels
    )
    if as_json:
        _emit_json(_advertiser_dict(changed))
    elif changed.require_signed_pixels:
        click.echo(
            f"Advertiser {changed.id} ({changed.name}) accepts only signed pixels. {_SEEN_WITHIN}"
        )
    else:
        click.echo(
            f"Advertiser {changed.id} ({changed.name}) accepts unsigned pixels. {_SEEN_WITHIN}"
        )


def _print_entities(
    rows: Sequence[_E],
    as_json: bool,
    headers: Sequence[str],
    as_dict: Callable[[_E], dict[str, Any]],
    empty: str,
) -> None:
    """A list command's output: JSON objects, or a table of some of their fields."""

    def cells(row: _E) -> list[str]:
        fields = as_dict(row)
        return [_text(fields[header]) for header in headers]

    _print_list(rows, as_json, document=as_dict, headers=headers, cells=cells, empty=empty)


@cli.group()
def publisher() -> None:
    """Publishers: the partners whose visitors earn payouts."""


@publisher.command("add")
@click.argument("name", callback=_check_name)
@_json_option
@click.pass_obj
def publisher_add(state: _State, name: str, as_json: bool) -> None:
    """Create a publisher called NAME and print its id."""
    _print_created("publisher", state.storage().add_publisher(name), as_json)


@publisher.command("list")
@_json_option
@click.pass_obj
def publisher_list(state: _State, as_json: bool) -> None:
    """List every publisher."""
    _print_entities(
        state.reader().publishers(),
        as_json,
        ("id", "name", "created_at"),
        _name_dict,
        "No publishers.",
    )


@cli.group()
def campaign() -> None:
    """Campaigns: what an advertiser pays per conversion."""


@campaign.command("add")
@click.option("--advertiser", "advertiser_id", type=_ID, required=True, help="Advertiser id.")
@click.argument("name", callback=_check_name)
@click.option(
    "--payout",
    metavar="AMOUNT",
    callback=_parse_fixed_payout,
    help="A fixed payout per conversion, like 5 or 12.50.",
)
@click.option(
    "--payout-percent",
    metavar="P",
    callback=_parse_percent,
    help="A payout of P percent of sale_amount (0 < P <= 100).",
)
@click.option(
    "--currency",
    metavar="CODE",
    callback=_parse_currency,
    help="ISO 4217 currency of a fixed --payout  [default: USD]",
)
@click.option(
    "--reason-code",
    "reason_codes",
    multiple=True,
    metavar="CODE",
    callback=_check_reason_codes,
    help="Pay only for conversions with this reason_code (repeatable).",
)
@_json_option
@click.pass_obj
def campaign_add(
    state: _State,
    advertiser_id: int,
    name: str,
    payout: Decimal | None,
    payout_percent: Decimal | None,
    currency: str | None,
    reason_codes: tuple[str, ...],
    as_json: bool,
) -> None:
    """Create a campaign called NAME for an advertiser.

    Give exactly one of --payout (a fixed amount per conversion) or
    --payout-percent (a share of the sale, paid in the sale's currency).
    """
    if (payout is None) == (payout_percent is None):
        raise click.UsageError("give exactly one of --payout or --payout-percent")
    if payout_percent is not None and currency is not None:
        raise click.UsageError(
            "--currency applies to --payout only: a percentage is paid in the sale's currency"
        )
    if payout is not None:
        rule = PayoutRule(PayoutKind.FIXED, payout, currency or "USD", reason_codes)
    else:
        assert payout_percent is not None
        rule = PayoutRule(PayoutKind.PERCENT, payout_percent, "USD", reason_codes)
    storage = state.storage()
    _require_advertiser(storage, advertiser_id)
    created = storage.add_campaign(advertiser_id, name, rule)
    if as_json:
        _emit_json(_campaign_dict(created))
    else:
        click.echo(
            f"Created campaign {created.id} ({created.name}) for advertiser"
            f" {created.advertiser_id}: pays {_describe_payout(created.payout)}"
        )


@campaign.command("list")
@click.option("--advertiser", "advertiser_id", type=_ID, help="Only this advertiser's.")
@_json_option
@click.pass_obj
def campaign_list(state: _State, advertiser_id: int | None, as_json: bool) -> None:
    """List campaigns and what they pay."""
    _print_entities(
        state.reader().campaigns(advertiser_id=advertiser_id),
        as_json,
        ("id", "advertiser_id", "name", "daily_cap", "pays"),
        _campaign_listing,
        "No campaigns.",
    )


def _campaign_listing(campaign: Campaign) -> dict[str, Any]:
    return {
        **_campaign_dict(campaign),
        "daily_cap": campaign.daily_cap,
        "pays": _describe_payout(campaign.payout),
    }


@campaign.command("set")
@click.argument("campaign_id", type=_ID)
@click.option(
    "--daily-cap",
    type=click.IntRange(min=0),
    metavar="N",
    help="Accept at most N conversions per UTC day from pixels (the rest are"
    " rejected as daily_cap_reached); 0 pauses the campaign.",
)
@click.option("--no-daily-cap", is_flag=True, help="Remove the daily cap.")
@_json_option
@click.pass_obj
def campaign_set(
    state: _State, campaign_id: int, daily_cap: int | None, no_daily_cap: bool, as_json: bool
) -> None:
    """Change a campaign's options.

    The cap counts the campaign's conversions of the UTC day from every
    source, and is enforced on the pixels. Running servers apply the change
    within a minute.
    """
    if (daily_cap is None) != no_daily_cap:
        raise click.UsageError("give exactly one of --daily-cap N or --no-daily-cap")
    changed = state.storage().set_campaign_daily_cap(campaign_id, daily_cap)
    if as_json:
        _emit_json(_campaign_listing(changed))
    elif changed.daily_cap is None:
        click.echo(f"Campaign {changed.id} ({changed.name}) has no daily cap. {_SEEN_WITHIN}")
    else:
        click.echo(
            f"Campaign {changed.id} ({changed.name}) accepts at most {changed.daily_cap}"
            f" conversions per UTC day. {_SEEN_WITHIN}"
        )


@cli.group()
def link() -> None:
    """Tracking links for publishers."""


@link.command("add")
@click.option("--campaign", "campaign_id", type=_ID, required=True, help="Campaign id.")
@click.option("--publisher", "publisher_id", type=_ID, required=True, help="Publisher id.")
@click.option(
    "--to",
    "destination",
    metavar="URL",
    required=True,
    help="Where visitors land: a path like /landing or an https:// URL.",
)
@_json_option
@click.pass_obj
def link_add(
    state: _State, campaign_id: int, publisher_id: int, destination: str, as_json: bool
) -> None:
    """Create a tracking link and print its path (/pixels/click/<id>)."""
    validate_destination(destination)
    storage = state.storage()
    if storage.campaign(campaign_id) is None:
        raise NotFoundError(f"no campaign with id {campaign_id}")
    if storage.publisher(publisher_id) is None:
        raise NotFoundError(f"no publisher with id {publisher_id}")
    created = storage.add_link(campaign_id, publisher_id, destination)
    if as_json:
        _emit_json(_link_dict(created))
    else:
        click.echo(
            f"Created link {created.id}: {CLICK_PATH.format(created.id)} -> {created.destination}"
        )
    host = destination_host(created.destination)
    if host is not None:
        # The middleware, not the store, decides: without it every click answers 404.
        click.echo(
            f"Warning: unless {host} is the site's own host, the middleware must allow it:"
            f" PixelMiddleware(..., allowed_redirect_hosts=[{host!r}]); until then a click"
            " on this link answers 404.",
            err=True,
        )


@link.command("list")
@click.option("--advertiser", "advertiser_id", type=_ID, help="Only this advertiser's.")
@_json_option
@click.pass_obj
def link_list(state: _State, advertiser_id: int | None, as_json: bool) -> None:
    """List tracking links and where they lead."""
    _print_entities(
        state.reader().links(advertiser_id=advertiser_id),
        as_json,
        ("id", "path", "campaign_id", "publisher_id", "destination"),
        _link_dict,
        "No links.",
    )


@cli.command()
@click.option("--advertiser", "advertiser_id", type=_ID, help="Only this advertiser's rows.")
@click.option("--after", "after_id", type=_ID, help="Only rows after this transaction id.")
@click.option("--limit", type=_ID, help="At most this many rows.")
@_json_option
@click.pass_obj
def transactions(
    state: _State,
    advertiser_id: int | None,
    after_id: int | None,
    limit: int | None,
    as_json: bool,
) -> None:
    """Every ledger row, corrections included.

    Oldest first.
    """
    rows = list(
        state.reader().transactions(
            advertiser_id=advertiser_id, after_transaction_id=after_id, limit=limit
        )
    )
    _print_ledger(rows, as_json, "No transactions.")


@cli.command()
@click.option("--advertiser", "advertiser_id", type=_ID, help="Only this advertiser's.")
@_json_option
@click.pass_obj
def conversions(state: _State, advertiser_id: int | None, as_json: bool) -> None:
    """The current state of each conversion.

    One row per conversion: the end of its correction chain.
    """
    rows = list(state.reader().conversions(advertiser_id=advertiser_id))
    _print_ledger(rows, as_json, "No conversions.")


def _rejection_row(row: Rejection) -> list[str]:
    return [
        str(row.id),
        _text(row.advertiser_id),
        row.source,
        row.reason,
        _text(row.reference_id),
        row.created_at,
        row.detail,
    ]


@cli.command()
@click.option("--advertiser", "advertiser_id", type=_ID, help="Only this advertiser's.")
@click.option(
    "--limit",
    type=_ID,
    default=_DEFAULT_REJECTIONS_LIMIT,
    show_default=True,
    help="At most this many, newest first.",
)
@_json_option
@click.pass_obj
def rejections(state: _State, advertiser_id: int | None, limit: int, as_json: bool) -> None:
    """Reports and clicks that did not count, and why.

    Newest first.
    """
    _print_list(
        list(state.reader().rejections(advertiser_id=advertiser_id, limit=limit)),
        as_json,
        document=Rejection.as_dict,
        headers=("id", "advertiser", "source", "reason", "reference_id", "created_at", "detail"),
        cells=_rejection_row,
        empty="No rejections.",
    )


@cli.command()
@click.option("--advertiser", "advertiser_id", type=_ID, required=True, help="Advertiser id.")
@click.option("--reference-id", required=True, help="The conversion's reference_id.")
@click.option(
    "--spool-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="The outage spool to reach too. Default: the middleware's for this store.",
)
@_json_option
@click.pass_obj
def erase(
    state: _State, advertiser_id: int, reference_id: str, spool_dir: Path | None, as_json: bool
) -> None:
    """Erase a conversion's personal data.

    Removes the remarketing fields stored with every row of the conversion
    that has this reference_id; the ledger rows themselves stay. In the outage
    spool, destroys the key that seals the conversion's spooled personal data,
    so no spooled copy can be read and a replay stores none of it.
    """
    storage = state.storage()
    _require_advertiser(storage, advertiser_id)
    directory = spool_dir if spool_dir is not None else storage.default_spool_dir()
    # The spool first: it needs no store, and an outage is when it holds data.
    spool_problem: SpoolError | None = None
    try:
        spooled = directory.is_dir() and Spool(directory).erase(advertiser_id, reference_id)
    except SpoolError as exc:
        spooled, spool_problem = False, exc
    erased = storage.erase_personal_data(advertiser_id, reference_id)
    if spool_problem is not None:  # the store's copy is erased; say what is left
        raise click.ClickException(
            f"erased personal data from {erased} stored rows, but not from the spool: "
            f"{spool_problem}"
        )
    if as_json:
        document: dict[str, Any] = {
            "advertiser_id": advertiser_id,
            "reference_id": reference_id,
            "erased": erased,
        }
        if spooled:  # the spool held personal data of it: unreadable now
            document["spool_key_destroyed"] = True
        _emit_json(document)
    else:
        noun = "row" if erased == 1 else "rows"
        click.echo(f"Erased personal data from {erased} {noun}.")
        if spooled:
            click.echo(f"Destroyed the key to its personal data in the outage spool {directory}.")


@cli.command()
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Interface to listen on. Beyond this machine (0.0.0.0) the dashboard needs a"
    " real password in PIXEL_WSGI_DASHBOARD_PASSWORD.",
)
@click.option(
    "--port", type=click.IntRange(1, 65535), default=8000, show_default=True, help="TCP port."
)
@click.pass_obj
def demo(state: _State, host: str, port: int) -> None:
    """Run the demo shop.

    Needs Flask: pip install 'pixel-wsgi[demo]'. The shop, a publisher page
    and the tracking link are seeded into the store on first run; stop the
    server with Ctrl-C. The operator dashboard at /dashboard/ has the password
    "demo" unless PIXEL_WSGI_DASHBOARD_PASSWORD is set, which --host beyond
    this machine requires.
    """
    from .demo import run_demo

    run_demo(state.url, host=host, port=port)


# -- server-side reporting: credentials, bulk import, export -------------------------


@cli.group()
def credential() -> None:
    """API credentials of advertisers (for /pixels/api/...)."""


@credential.command("add")
@click.option("--advertiser", "advertiser_id", type=_ID, required=True, help="Advertiser id.")
@click.option("--label", default="", help="A note on who uses it.", callback=_check_label)
@_json_option
@click.pass_obj
def credential_add(state: _State, advertiser_id: int, label: str, as_json: bool) -> None:
    """Make a credential and print its secret, once.

    Only a digest of the secret is stored: keep the secret where your
    servers read it. They send it as HTTP Basic (the advertiser id as the
    user name) or as "Authorization: Bearer <secret>".
    """
    storage = state.storage()
    _require_advertiser(storage, advertiser_id)
    issued = issue_credential(storage, advertiser_id, label)
    if as_json:
        _emit_json({**issued.credential.as_dict(), "secret": issued.secret})
    else:
        click.echo(
            f"Credential {issued.credential.id} for advertiser {advertiser_id}.\n"
            f"  username: {advertiser_id}\n"
            f"  secret:   {issued.secret}\n"
            "The secret is shown only now; only its digest is stored."
        )


def _credential_row(row: ApiCredential) -> list[str]:
    return [str(row.id), str(row.advertiser_id), row.label, row.created_at, _text(row.revoked_at)]


@credential.command("list")
@click.option("--advertiser", "advertiser_id", type=_ID, help="Only this advertiser's.")
@_json_option
@click.pass_obj
def credential_list(state: _State, advertiser_id: int | None, as_json: bool) -> None:
    """Credentials and whether they are revoked (never their secrets)."""
    _print_list(
        state.reader().credentials(advertiser_id=advertiser_id),
        as_json,
        document=ApiCredential.as_dict,
        headers=("id", "advertiser", "label", "created_at", "revoked_at"),
        cells=_credential_row,
        empty="No credentials.",
    )


@credential.command("revoke")
@click.argument("credential_id", type=_ID)
@_json_option
@click.pass_obj
def credential_revoke(state: _State, credential_id: int, as_json: bool) -> None:
    """Revoke a credential: requests using it get 401 from now on."""
    storage = state.storage()
    if storage.credential(credential_id) is None:
        raise NotFoundError(f"no credential with id {credential_id}")
    revoked = storage.revoke_credential(credential_id)
    if as_json:
        _emit_json({"id": credential_id, "revoked": True, "already_revoked": not revoked})
    else:
        click.echo(
            f"Credential {credential_id} " + ("revoked." if revoked else "was revoked already.")
        )


def _lines_with_progress(raw: BinaryIO, size: int | None, show: bool) -> Iterator[str]:
    """The file's lines as text, advancing a progress bar (on stderr) by bytes read."""
    with click.progressbar(
        length=size or 0, label="Importing", file=sys.stderr, hidden=not show or not size
    ) as bar:
        yield from decoded_lines(raw.read, on_read=bar.update)


@cli.command("import")
@click.argument("file", type=click.File("rb"))
@click.option("--advertiser", "advertiser_id", type=_ID, required=True, help="Advertiser id.")
@click.option(
    "--currency",
    "default_currency",
    default="USD",
    show_default=True,
    callback=_parse_currency,
    help="The currency of rows that name none.",
)
@_json_option
@click.pass_obj
def import_command(
    state: _State, file: BinaryIO, advertiser_id: int, default_currency: str, as_json: bool
) -> None:
    """Apply a CSV file of server-side reports (- reads standard input).

    The columns of POST /pixels/api/conversions, or a file written by
    export. Each row is applied on its own and idempotently, so after a
    failure the same file can be imported again. Exits 1 when any row
    failed or matched nothing.
    """
    storage = state.storage()
    _require_advertiser(storage, advertiser_id)
    try:
        size: int | None = os.fstat(file.fileno()).st_size
    except (OSError, ValueError):
        size = None
    ledger = Ledger(storage)
    try:
        summary = import_csv(
            ledger,
            advertiser_id,
            _lines_with_progress(file, size, show=not as_json),
            default_currency=default_currency or "USD",
        )
    except ReportInvalid as exc:
        raise click.ClickException(f"not a CSV of reports: {exc}") from exc
    except UnicodeDecodeError as exc:
        raise click.ClickException(
            f"the file is not UTF-8 (at byte {exc.start} of a line); the rows before it"
            " were applied"
        ) from exc
    if as_json:
        _emit_json(summary.as_dict())
    else:
        click.echo(
            f"{summary.rows} rows: {summary.created} created, {summary.corrected} corrected,"
            f" {summary.unchanged} unchanged, {summary.unmatched} unmatched,"
            f" {summary.failed} failed."
        )
        for failure in summary.failures:
            click.echo(f"  row {failure.row}: {failure.code}: {failure.message}")
        if summary.failures_not_listed:
            click.echo(f"  ... and {summary.failures_not_listed} more.")
    if summary.failed or summary.unmatched:
        sys.exit(1)


_EXPORT_PAGE = 1000


def _all_rows(storage: Storage, advertiser_id: int) -> Iterator[Transaction]:
    """Every row of the advertiser, read page by page (flat memory for any ledger)."""
    after = 0
    while True:
        page = list(
            storage.transactions(
                advertiser_id=advertiser_id, after_transaction_id=after, limit=_EXPORT_PAGE
            )
        )
        yield from page
        if len(page) < _EXPORT_PAGE:
            return
        after = page[-1].transaction_id


@cli.command()
@click.option("--advertiser", "advertiser_id", type=_ID, required=True, help="Advertiser id.")
@click.option(
    "--format", "form", type=click.Choice(["csv", "json"]), default="csv", show_default=True
)
@click.option(
    "--output", "-o", type=click.File("w", encoding="utf-8"), default="-", help="Default: stdout."
)
@click.pass_obj
def export(state: _State, advertiser_id: int, form: str, output: TextIO) -> None:
    """Write every ledger row of an advertiser.

    The columns of the Transactions API; import reads the CSV back
    (unchanged rows are recognised by transaction_id).
    """
    storage = state.reader()
    _require_advertiser(storage, advertiser_id)
    rows = _all_rows(storage, advertiser_id)
    if form == "csv":
        writer = csv.writer(output, lineterminator="\r\n")
        writer.writerow(COLUMNS)
        for row in rows:
            writer.writerow(csv_cells(row, COLUMNS))
        return
    output.write("[")
    for index, row in enumerate(rows):
        output.write(("," if index else "") + "\n" + json.dumps(row.as_dict(), ensure_ascii=False))
    output.write("\n]\n")


@cli.command()
@click.option(
    "--spool-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Default: where the middleware puts it for this store (beside a SQLite file).",
)
@_json_option
@click.pass_obj
def replay(state: _State, spool_dir: Path | None, as_json: bool) -> None:
    """Apply the outage spool to the store, exactly once.

    Clicks and conversions the store could not take were spooled by the
    middleware; this applies each one once, however often it runs. Exits 1
    when the store failed again before the spool was drained.
    """
    storage = state.storage()
    directory = spool_dir if spool_dir is not None else storage.default_spool_dir()
    if not directory.is_dir():
        raise click.ClickException(f"no spool at {directory}")
    spool = Spool(directory)
    spool.check()  # a directory others could have planted files in: refused, said why
    summary = replay_spool(spool, storage)
    if as_json:
        _emit_json(summary.as_dict())
    else:
        click.echo(
            f"Applied {summary.applied} spooled events ({summary.already_applied} had been"
            f" applied before); {summary.quarantined} lines quarantined (damaged, or"
            f" breaking a rule: the reason is on their first line) in"
            f" {directory / 'quarantine'}."
        )
        if summary.stopped:
            click.echo(f"Stopped: {summary.stopped}. Run replay again once the store works.")
    if summary.stopped:
        sys.exit(1)


cli.add_command(dashboard)


def main(argv: Sequence[str] | None = None) -> None:
    """Run the ``pixel-wsgi`` command line (the console script's entry point)."""
    cli.main(args=argv, prog_name="pixel-wsgi")
