"""``pixel-wsgi migrate``, ``advertiser``, ``publisher``, ``campaign`` and ``link``."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Any

import click

from ..entities import destination_host, validate_destination
from ..errors import NotFoundError
from ..ledger.payouts import describe_payout
from ..models import (
    Advertiser,
    Campaign,
    PayoutKind,
    PayoutRule,
    Publisher,
)
from .common import (
    CLICK_PATH,
    ID,
    E,
    campaign_dict,
    check_name,
    check_reason_codes,
    emit_json,
    json_option,
    link_dict,
    parse_currency,
    parse_fixed_payout,
    parse_percent,
    print_list,
    require_advertiser,
    text,
)
from .group import cli
from .state import State


@cli.command()
@json_option
@click.pass_obj
def migrate(state: State, as_json: bool) -> None:
    """Create or update the storage schema.

    Safe to run repeatedly and concurrently.
    """
    state.storage(migrate=False).migrate()
    if as_json:
        emit_json({"migrated": True})
    else:
        click.echo("Storage schema is up to date.")


@cli.group()
def advertiser() -> None:
    """Advertisers: the sites whose conversions are tracked."""


@advertiser.command("add")
@click.argument("name", callback=check_name)
@json_option
@click.pass_obj
def advertiser_add(state: State, name: str, as_json: bool) -> None:
    """Create an advertiser called NAME and print its id."""
    _print_created("advertiser", state.storage().add_advertiser(name), as_json)


def _name_dict(entity: Advertiser | Publisher) -> dict[str, Any]:
    return {"id": entity.id, "name": entity.name, "created_at": entity.created_at}


def _print_created(kind: str, created: Advertiser | Publisher, as_json: bool) -> None:
    """What ``advertiser add`` and ``publisher add`` print."""
    if as_json:
        emit_json(_name_dict(created))
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
@json_option
@click.pass_obj
def advertiser_list(state: State, as_json: bool) -> None:
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
@click.argument("advertiser_id", type=ID)
@click.option(
    "--require-signed-pixels/--allow-unsigned-pixels",
    "require_signed_pixels",
    default=None,
    help="Refuse conversion pixels without a valid signature (rejected as"
    " unsigned_pixel), or accept them again.",
)
@json_option
@click.pass_obj
def advertiser_set(
    state: State, advertiser_id: int, require_signed_pixels: bool | None, as_json: bool
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
        emit_json(_advertiser_dict(changed))
    elif changed.require_signed_pixels:
        click.echo(
            f"Advertiser {changed.id} ({changed.name}) accepts only signed pixels. {_SEEN_WITHIN}"
        )
    else:
        click.echo(
            f"Advertiser {changed.id} ({changed.name}) accepts unsigned pixels. {_SEEN_WITHIN}"
        )


def _print_entities(
    rows: Sequence[E],
    as_json: bool,
    headers: Sequence[str],
    as_dict: Callable[[E], dict[str, Any]],
    empty: str,
) -> None:
    """A list command's output: JSON objects, or a table of some of their fields."""

    def cells(row: E) -> list[str]:
        fields = as_dict(row)
        return [text(fields[header]) for header in headers]

    print_list(rows, as_json, document=as_dict, headers=headers, cells=cells, empty=empty)


@cli.group()
def publisher() -> None:
    """Publishers: the partners whose visitors earn payouts."""


@publisher.command("add")
@click.argument("name", callback=check_name)
@json_option
@click.pass_obj
def publisher_add(state: State, name: str, as_json: bool) -> None:
    """Create a publisher called NAME and print its id."""
    _print_created("publisher", state.storage().add_publisher(name), as_json)


@publisher.command("list")
@json_option
@click.pass_obj
def publisher_list(state: State, as_json: bool) -> None:
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
@click.option("--advertiser", "advertiser_id", type=ID, required=True, help="Advertiser id.")
@click.argument("name", callback=check_name)
@click.option(
    "--payout",
    metavar="AMOUNT",
    callback=parse_fixed_payout,
    help="A fixed payout per conversion, like 5 or 12.50.",
)
@click.option(
    "--payout-percent",
    metavar="P",
    callback=parse_percent,
    help="A payout of P percent of sale_amount (0 < P <= 100).",
)
@click.option(
    "--currency",
    metavar="CODE",
    callback=parse_currency,
    help="ISO 4217 currency of a fixed --payout  [default: USD]",
)
@click.option(
    "--reason-code",
    "reason_codes",
    multiple=True,
    metavar="CODE",
    callback=check_reason_codes,
    help="Pay only for conversions with this reason_code (repeatable).",
)
@json_option
@click.pass_obj
def campaign_add(
    state: State,
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
    require_advertiser(storage, advertiser_id)
    created = storage.add_campaign(advertiser_id, name, rule)
    if as_json:
        emit_json(campaign_dict(created))
    else:
        click.echo(
            f"Created campaign {created.id} ({created.name}) for advertiser"
            f" {created.advertiser_id}: pays {describe_payout(created.payout, field_names=True)}"
        )


@campaign.command("list")
@click.option("--advertiser", "advertiser_id", type=ID, help="Only this advertiser's.")
@json_option
@click.pass_obj
def campaign_list(state: State, advertiser_id: int | None, as_json: bool) -> None:
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
        **campaign_dict(campaign),
        "daily_cap": campaign.daily_cap,
        "pays": describe_payout(campaign.payout, field_names=True),
    }


@campaign.command("set")
@click.argument("campaign_id", type=ID)
@click.option(
    "--daily-cap",
    type=click.IntRange(min=0),
    metavar="N",
    help="Accept at most N conversions per UTC day from pixels (the rest are"
    " rejected as daily_cap_reached); 0 pauses the campaign.",
)
@click.option("--no-daily-cap", is_flag=True, help="Remove the daily cap.")
@json_option
@click.pass_obj
def campaign_set(
    state: State, campaign_id: int, daily_cap: int | None, no_daily_cap: bool, as_json: bool
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
        emit_json(_campaign_listing(changed))
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
@click.option("--campaign", "campaign_id", type=ID, required=True, help="Campaign id.")
@click.option("--publisher", "publisher_id", type=ID, required=True, help="Publisher id.")
@click.option(
    "--to",
    "destination",
    metavar="URL",
    required=True,
    help="Where visitors land: a path like /landing or an https:// URL.",
)
@json_option
@click.pass_obj
def link_add(
    state: State, campaign_id: int, publisher_id: int, destination: str, as_json: bool
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
        emit_json(link_dict(created))
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
@click.option("--advertiser", "advertiser_id", type=ID, help="Only this advertiser's.")
@json_option
@click.pass_obj
def link_list(state: State, advertiser_id: int | None, as_json: bool) -> None:
    """List tracking links and where they lead."""
    _print_entities(
        state.reader().links(advertiser_id=advertiser_id),
        as_json,
        ("id", "path", "campaign_id", "publisher_id", "destination"),
        link_dict,
        "No links.",
    )
