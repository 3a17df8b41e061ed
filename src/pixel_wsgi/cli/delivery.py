"""``pixel-wsgi target``, ``deliver``, ``deliveries``, ``retry`` and ``skip``: delivery.

A target sends one advertiser's ledger rows somewhere: a publisher's postback URL, a
signed webhook, Meta's Conversions API, Google Ads, GA4 or Invoca's Signal API::

    export PIXEL_WSGI_SECRET_KEY=...   # the middleware's secret_key
    pixel-wsgi target add --advertiser 1 --kind postback --publisher 2 \\
        --url 'https://publisher.example/postback?click={sub1}&amount={sale_amount}'
    pixel-wsgi target add --advertiser 1 --kind webhook --url https://shop.example/hooks
    pixel-wsgi deliver            # everything due now, then exit (cron)
    pixel-wsgi deliver --loop     # a service: until SIGTERM
    pixel-wsgi deliveries --status dead
    pixel-wsgi retry --target 2

Credentials (tokens, webhook secrets, refresh tokens) are stored sealed with a key
derived from ``PIXEL_WSGI_SECRET_KEY``; ``target add`` prints a webhook's signing
secret once, and nothing prints a credential after that (``target list`` masks them).
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import click

from ..clock import iso_utc, utc_now
from ..errors import ConfigurationError, NotFoundError
from ..models import Delivery, DeliveryStatus, StoredTarget, TargetKind, TargetStatus
from ..storage import Storage
from .common import (
    ID,
    emit_json,
    json_option,
    print_list,
    require_advertiser,
    stopped_by_signals,
    text,
)
from .group import cli
from .state import State

if TYPE_CHECKING:
    from ..delivery.secrets import SecretBox
    from ..delivery.targets.base import TargetType
    from ..delivery.worker import PassReport, Worker

# The delivery package (the worker, the target types, cryptography for the sealed
# credentials) is imported inside the commands that use it: every other command
# starts without paying for it (about 60 ms).

#: Settings given as a flag; the target types store them as "1".
_FLAGS = frozenset({"validate_only", "validate"})
#: What ``retry`` sends again: every settled row that did not reach the platform.
_RETRIED = (
    DeliveryStatus.DEAD,
    DeliveryStatus.EXPIRED,
    DeliveryStatus.UNSUPPORTED,
    DeliveryStatus.SKIPPED,
)
DEFAULT_DELIVERIES_LIMIT = 100

KINDS = [kind.value for kind in TargetKind]
STATUSES = [status.value for status in DeliveryStatus]


# -- the options of each kind ------------------------------------------------------
#
# Each option's parameter is the name the target type stores (--pixel-id -> pixel_id),
# so the kind's required_settings, optional_settings and required_secrets say which
# options it takes; an option no kind stores is refused by name.

_KIND_OPTIONS = [
    click.option(
        "--url",
        metavar="URL",
        help="postback: the URL template, with macros like {transaction_id} and {sub1};"
        " webhook: where rows are POSTed.",
    ),
    click.option(
        "--method",
        type=click.Choice(["GET", "POST"], case_sensitive=False),
        metavar="GET|POST",
        help="postback: GET (the default) or POST (the query as a form body).",
    ),
    click.option(
        "--secret",
        metavar="WHSEC",
        help="webhook: the signing secret, whsec_ and base64 (several, space-separated,"
        " while rotating). Default for add: a new one, printed once.",
    ),
    click.option("--pixel-id", metavar="ID", help="meta_capi: the pixel (dataset) id."),
    click.option("--access-token", metavar="TOKEN", help="meta_capi: the access token."),
    click.option(
        "--test-event-code",
        metavar="CODE",
        help="meta_capi: send to Events Manager's Test Events with this code.",
    ),
    click.option(
        "--customer-id", metavar="ID", help="google_ads: the account's ten digits (dashes allowed)."
    ),
    click.option(
        "--conversion-action",
        metavar="NAME",
        help="google_ads: the conversion action's id or resource name.",
    ),
    click.option("--client-id", metavar="ID", help="google_ads: the OAuth client id."),
    click.option("--client-secret", metavar="SECRET", help="google_ads: the OAuth client secret."),
    click.option("--refresh-token", metavar="TOKEN", help="google_ads: the OAuth refresh token."),
    click.option(
        "--login-customer-id", metavar="ID", help="google_ads: the manager account acting for it."
    ),
    click.option(
        "--validate-only/--no-validate-only",
        "validate_only",
        default=None,
        help="google_ads: Google checks every row and records none (the test mode).",
    ),
    click.option(
        "--token-endpoint",
        metavar="URL",
        help="google_ads: the OAuth token endpoint's scheme, host and port (local servers).",
    ),
    click.option(
        "--measurement-id", metavar="G-XXXX", help="ga4: the web stream's measurement id."
    ),
    click.option(
        "--api-secret", metavar="SECRET", help="ga4: the Measurement Protocol API secret."
    ),
    click.option(
        "--validate/--no-validate",
        "validate",
        default=None,
        help="ga4: send to the validation server instead (it records nothing).",
    ),
    click.option("--api-token", metavar="TOKEN", help="invoca_signal: the API token."),
    click.option(
        "--signal-name", metavar="NAME", help="invoca_signal: the signal as set up in Invoca."
    ),
    click.option(
        "--call-id-field",
        metavar="FIELD",
        help="invoca_signal: the conversion's custom field holding the Invoca call id.",
    ),
    click.option(
        "--endpoint",
        metavar="URL",
        help="meta_capi, google_ads, ga4, invoca_signal: replace the platform's scheme,"
        " host and port, keeping its documented path (tests, staging).",
    ),
]


def _kind_options(command: Any) -> Any:
    for option in reversed(_KIND_OPTIONS):
        command = option(command)
    return command


def _option(name: str) -> str:
    return "--" + name.replace("_", "-")


def _names(kind: type[TargetType]) -> frozenset[str]:
    return kind.required_settings | kind.optional_settings | kind.required_secrets


def _taken_by(name: str) -> str:
    """The kinds that take the option stored as ``name``, for an error message."""
    from ..delivery.targets import target_type

    kinds = [kind.value for kind in TargetKind if name in _names(target_type(kind))]
    return " and ".join(kinds)


def _kind_values(
    kind: TargetKind, given: Mapping[str, str | bool | None], *, changing: bool
) -> tuple[dict[str, str | None], dict[str, str]]:
    """The settings and secrets the options ``given`` say, for a target of ``kind``.

    Options of another kind are refused, naming the option. ``changing`` (``target
    set``): an empty value or a ``--no-...`` flag removes an optional setting (None).
    """
    from ..delivery.targets import target_type

    type_ = target_type(kind)
    accepted = _names(type_)
    settings: dict[str, str | None] = {}
    secrets: dict[str, str] = {}
    for name, value in given.items():
        if value is None:
            continue
        if name not in accepted:
            flag = _option(name)
            if name in _FLAGS and value is False:
                flag = "--no-" + flag[2:]
            raise click.UsageError(
                f"{flag} is not an option of a {kind.value} target: it is for"
                f" {_taken_by(name)} targets"
            )
        if name in type_.required_secrets:
            assert isinstance(value, str)
            secrets[name] = value
        elif name in _FLAGS:
            if value:
                settings[name] = "1"
            elif changing:
                settings[name] = None
        else:
            assert isinstance(value, str)
            removed = changing and value == "" and name in type_.optional_settings
            settings[name] = None if removed else value
    return settings, secrets


def _required_missing(
    kind: TargetKind, settings: Mapping[str, str | None], secrets: Mapping[str, str]
) -> None:
    from ..delivery.targets import target_type

    type_ = target_type(kind)
    needed = (type_.required_settings - settings.keys()) | (type_.required_secrets - secrets.keys())
    if kind is TargetKind.WEBHOOK:
        needed -= {"secret"}  # a new one is made
    if needed:
        options = " and ".join(_option(name) for name in sorted(needed))
        raise click.UsageError(f"a {kind.value} target needs {options}")


# -- what every target command shares ---------------------------------------------


def secret_box() -> SecretBox:
    """The box that seals and opens targets' credentials, from ``PIXEL_WSGI_SECRET_KEY``."""
    from ..attribution.keyring import MAKE_A_KEY
    from ..delivery.secrets import SecretBox
    from ..settings import SECRET_KEY_ENV, secret_keys

    if not os.environ.get(SECRET_KEY_ENV):
        raise ConfigurationError(
            f"set {SECRET_KEY_ENV} to the middleware's secret_key: targets' credentials are"
            f" sealed with it (a new installation makes one with: {MAKE_A_KEY})"
        )
    try:
        keys = secret_keys(None)
    except ConfigurationError as exc:  # too short: say where it came from
        raise ConfigurationError(f"{SECRET_KEY_ENV}: {exc}") from exc
    return SecretBox(keys)


def existing_target(storage: Storage, target_id: int) -> StoredTarget:
    found = storage.target(target_id)
    if found is None:
        raise NotFoundError(f"no target with id {target_id}")
    return found


def _not_removed(stored: StoredTarget) -> StoredTarget:
    if stored.status is TargetStatus.REMOVED:
        raise ConfigurationError(
            f"target {stored.id} was removed (its deliveries are kept); add a new one"
        )
    return stored


def _mask(name: str, value: str) -> str:
    """A credential as ``target list`` shows it: enough to tell which, never usable."""
    from ..delivery.targets.webhook import SECRET_PREFIX

    if name == "secret":  # whsec_ secrets, several while rotating
        return " ".join(f"{SECRET_PREFIX}…" for _ in value.split())
    # A long token's first 4 characters tell two tokens apart and give away little.
    return value[:4] + "…" if len(value) >= 16 else "***"


def _masked_secrets(stored: StoredTarget, box: SecretBox | None) -> dict[str, str]:
    from ..delivery.outbox import open_target
    from ..delivery.targets import target_type

    names = sorted(target_type(stored.kind).required_secrets)
    if box is not None:
        try:
            opened = open_target(stored, box).secrets
        except ConfigurationError:  # sealed under another key: nothing to show
            pass
        else:
            return {name: _mask(name, opened[name]) for name in sorted(opened)}
    return {name: "***" for name in names}


def _target_dict(storage: Storage, stored: StoredTarget, box: SecretBox | None) -> dict[str, Any]:
    counts = storage.delivery_counts(stored.id)
    return {
        "id": stored.id,
        "advertiser_id": stored.advertiser_id,
        "kind": stored.kind.value,
        "publisher_id": stored.publisher_id,
        "status": stored.status.value,
        "status_detail": stored.status_detail,
        "backlog": counts.get(DeliveryStatus.PENDING, 0),
        "oldest_pending": storage.oldest_pending(stored.id),
        # while its circuit breaker is open: when the target is tried again
        "retry_at": stored.resume_at,
        "deliveries": {status.value: n for status, n in sorted(counts.items()) if n},
        "settings": dict(sorted(stored.settings.items())),
        "secrets": _masked_secrets(stored, box),
        "created_at": stored.created_at,
        "updated_at": stored.updated_at,
    }


def _print_target(document: dict[str, Any], as_json: bool, said: str) -> None:
    if as_json:
        emit_json(document)
    else:
        click.echo(said)


def _pairs(values: Mapping[str, str]) -> str:
    return " ".join(f"{name}={value}" for name, value in values.items()) or "-"


# -- target ------------------------------------------------------------------------


@cli.group()
def target() -> None:
    """Delivery targets: where an advertiser's ledger rows are sent.

    Credentials are sealed with PIXEL_WSGI_SECRET_KEY (the middleware's
    secret_key), which add, set and deliver need.
    """


def _parse_day(ctx: click.Context, param: click.Parameter, value: datetime | None) -> Any:
    if value is None:
        return None
    # click.DateTime gives naive times: they are UTC, like the ledger's.
    moment = value.replace(tzinfo=timezone.utc)
    if moment > utc_now():
        raise click.BadParameter(
            f"{iso_utc(moment)} is still to come: rows made from now on are sent anyway"
        )
    return moment


@target.command("add")
@click.option("--advertiser", "advertiser_id", type=ID, required=True, help="Advertiser id.")
@click.option("--kind", type=click.Choice(KINDS), required=True, help="Where rows go.")
@click.option(
    "--publisher",
    "publisher_id",
    type=ID,
    help="postback: the publisher whose rows it gets (and whose URL it calls).",
)
@_kind_options
@click.option(
    "--history-from",
    type=click.DateTime(["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M:%SZ"]),
    callback=_parse_day,
    metavar="DATE",
    help="Also send the ledger rows made since this UTC date (or time). Default: only"
    " rows made from now on.",
)
@json_option
@click.pass_obj
def target_add(
    state: State,
    /,
    advertiser_id: int,
    kind: str,
    publisher_id: int | None,
    history_from: datetime | None,
    as_json: bool,
    **given: str | bool | None,
) -> None:
    """Add a target for an advertiser's ledger rows.

    \b
    --kind postback --publisher ID --url TEMPLATE [--method GET|POST]
    --kind webhook --url URL [--secret WHSEC]
    --kind meta_capi --pixel-id ID --access-token TOKEN [--test-event-code CODE]
    --kind google_ads --customer-id ID --conversion-action NAME --client-id ID
        --client-secret SECRET --refresh-token TOKEN [--login-customer-id ID]
        [--validate-only] [--token-endpoint URL]
    --kind ga4 --measurement-id G-XXXX --api-secret SECRET [--validate]
    --kind invoca_signal --api-token TOKEN --signal-name NAME --call-id-field FIELD
    (meta_capi, google_ads, ga4 and invoca_signal also take --endpoint URL)

    Prints the new target's id and kind, and a webhook's signing secret: the
    only time it is shown.
    """
    from ..delivery.outbox import add_target

    target_kind = TargetKind(kind)
    settings, secrets = _kind_values(target_kind, given, changing=False)
    if target_kind is TargetKind.POSTBACK and publisher_id is None:
        raise click.UsageError("a postback target needs --publisher: the publisher it pays")
    if target_kind is not TargetKind.POSTBACK and publisher_id is not None:
        raise click.UsageError(
            f"--publisher is not an option of a {kind} target: it is for postback targets"
        )
    _required_missing(target_kind, settings, secrets)
    box = secret_box()
    storage = state.storage()
    require_advertiser(storage, advertiser_id)
    if publisher_id is not None and storage.publisher(publisher_id) is None:
        raise NotFoundError(f"no publisher with id {publisher_id}")
    created = add_target(
        storage,
        box,
        advertiser_id,
        target_kind,
        settings={name: value for name, value in settings.items() if value is not None},
        secrets=secrets,
        publisher_id=publisher_id,
        history_from=history_from,
    )
    stored = created.stored
    signing_secret = created.secrets["secret"] if target_kind is TargetKind.WEBHOOK else None
    if as_json:
        document: dict[str, Any] = {
            "id": stored.id,
            "kind": stored.kind.value,
            "advertiser_id": stored.advertiser_id,
            "publisher_id": stored.publisher_id,
            "status": stored.status.value,
            "settings": dict(sorted(stored.settings.items())),
            "created_at": stored.created_at,
        }
        if signing_secret is not None:
            document["secret"] = signing_secret
        emit_json(document)
        return
    since = "from now on" if history_from is None else f"since {iso_utc(history_from)}"
    line = (
        f"Created target {stored.id} ({stored.kind.value}) for advertiser"
        f" {stored.advertiser_id}: it gets the ledger rows made {since}."
    )
    if signing_secret is not None:
        line += f" Signing secret (shown only now): {signing_secret}"
    click.echo(line)


@target.command("list")
@click.option("--advertiser", "advertiser_id", type=ID, help="Only this advertiser's.")
@click.option("--all", "include_removed", is_flag=True, help="Removed targets too.")
@json_option
@click.pass_obj
def target_list(
    state: State, advertiser_id: int | None, include_removed: bool, as_json: bool
) -> None:
    """List targets: status, backlog (rows pending), settings, masked credentials.

    Credentials are never printed: with PIXEL_WSGI_SECRET_KEY set, a token's
    first characters tell which one is set; without it, ***.
    """
    storage = state.reader()
    try:
        box: SecretBox | None = secret_box()
    except ConfigurationError:
        box = None
    rows = [
        _target_dict(storage, stored, box)
        for stored in storage.targets(advertiser_id=advertiser_id, removed=include_removed)
    ]
    print_list(
        rows,
        as_json,
        document=lambda row: row,
        headers=(
            "id",
            "advertiser",
            "kind",
            "publisher",
            "status",
            "backlog",
            "settings",
            "secrets",
            "detail",
        ),
        cells=lambda row: [
            str(row["id"]),
            str(row["advertiser_id"]),
            row["kind"],
            text(row["publisher_id"]),
            row["status"] + (f" (breaker open until {row['retry_at']})" if row["retry_at"] else ""),
            str(row["backlog"]),
            _pairs(row["settings"]),
            _pairs(row["secrets"]),
            text(row["status_detail"]),
        ],
        empty="No targets.",
    )


@target.command("set")
@click.argument("target_id", type=ID)
@_kind_options
@click.option(
    "--new-secret",
    is_flag=True,
    help="webhook: make a new signing secret and sign with both it and the current one"
    " (rotation); it is printed once. Drop the old one later with --secret.",
)
@json_option
@click.pass_obj
def target_set(
    state: State,
    /,
    target_id: int,
    new_secret: bool,
    as_json: bool,
    **given: str | bool | None,
) -> None:
    """Change some of a target's settings or credentials.

    Takes the options of the target's kind (see target add). An empty value
    (--endpoint '') or a --no- flag removes an optional setting.
    """
    from ..delivery.outbox import change_target, new_webhook_secret, open_target

    storage = state.storage()
    stored = _not_removed(existing_target(storage, target_id))
    settings, secrets = _kind_values(stored.kind, given, changing=True)
    if new_secret and stored.kind is not TargetKind.WEBHOOK:
        raise click.UsageError(
            f"--new-secret is not an option of a {stored.kind.value} target: it is for"
            " webhook targets"
        )
    if new_secret and "secret" in secrets:
        raise click.UsageError("give --new-secret or --secret, not both")
    if not settings and not secrets and not new_secret:
        raise click.UsageError("give an option to change (see pixel-wsgi target set --help)")
    box = secret_box()
    made = None
    if new_secret:
        made = new_webhook_secret()
        secrets["secret"] = f"{made} {open_target(stored, box).secrets['secret']}"
    changed = change_target(storage, box, stored, settings=settings, secrets=secrets)
    document = _target_dict(storage, changed, box)
    if made is not None:
        document["new_secret"] = made
    said = f"Changed target {changed.id} ({changed.kind.value})."
    if made is not None:
        said += f" New signing secret (shown only now): {made}"
    _print_target(document, as_json, said)


def _set_status(state: State, target_id: int, status: TargetStatus, as_json: bool) -> None:
    storage = state.storage()
    stored = existing_target(storage, target_id)
    if status is not TargetStatus.REMOVED:
        _not_removed(stored)
    if status is TargetStatus.REMOVED:
        from ..delivery.outbox import remove_target

        changed = remove_target(storage, stored)
    else:
        # Resuming also clears refused credentials and closes the circuit breaker: the
        # rows waiting on them are due at once.
        changed = storage.set_target_status(target_id, status, None)
    words = {
        TargetStatus.ACTIVE: "resumed: its rows are sent again",
        TargetStatus.PAUSED: "paused: nothing is sent until it is resumed",
        TargetStatus.REMOVED: "removed: nothing more is sent; its deliveries are kept",
    }
    said = f"Target {changed.id} ({changed.kind.value}) {words[status]}."
    if as_json:
        box = None
        with contextlib.suppress(ConfigurationError):
            box = secret_box()
        emit_json(_target_dict(storage, changed, box))
    else:
        click.echo(said)


@target.command("pause")
@click.argument("target_id", type=ID)
@json_option
@click.pass_obj
def target_pause(state: State, target_id: int, as_json: bool) -> None:
    """Stop sending to a target (a pass under way stops at its next claim); its rows,
    and those recorded meanwhile, wait for resume."""
    _set_status(state, target_id, TargetStatus.PAUSED, as_json)


@target.command("resume")
@click.argument("target_id", type=ID)
@json_option
@click.pass_obj
def target_resume(state: State, target_id: int, as_json: bool) -> None:
    """Send to a paused target again.

    Also resumes a target paused for refused credentials (auth_failed): fix
    them first with target set.
    """
    _set_status(state, target_id, TargetStatus.ACTIVE, as_json)


@target.command("remove")
@click.argument("target_id", type=ID)
@json_option
@click.pass_obj
def target_remove(state: State, target_id: int, as_json: bool) -> None:
    """Stop sending to a target for good; its deliveries stay on record."""
    _set_status(state, target_id, TargetStatus.REMOVED, as_json)


# -- deliver -----------------------------------------------------------------------


@cli.command()
@click.option("--loop", is_flag=True, help="Keep delivering until SIGTERM or Ctrl-C (a service).")
@click.option("--target", "target_id", type=ID, help="Only this target.")
@click.option("--dry-run", is_flag=True, help="Print the requests due now, exactly; send nothing.")
@json_option
@click.pass_obj
def deliver(state: State, loop: bool, target_id: int | None, dry_run: bool, as_json: bool) -> None:
    """Send the ledger rows due to every active target.

    Without --loop, sends everything due now, prints what became of the rows
    and exits (run it from cron); rows that must wait (a retry's backoff, a
    target's circuit breaker) are left for the next run. With --loop, keeps
    going until SIGTERM or Ctrl-C, then finishes the request in flight and
    exits 0. Any number of deliver commands may run at once, on any number of
    machines: no row is sent twice.

    --dry-run prints each request as it would be sent (credentials masked)
    and changes nothing.
    """
    if loop and (dry_run or as_json):
        raise click.UsageError("--loop runs until stopped: it takes no --dry-run or --json")
    from ..delivery.worker import PassReport, Worker

    box = secret_box()
    storage = state.reader() if dry_run else state.storage()
    if target_id is not None:
        existing_target(storage, target_id)
    stop = threading.Event()
    worker = Worker(storage, box, target_ids=None if target_id is None else [target_id], stop=stop)
    if dry_run:
        _print_plan(worker, as_json)
        return
    with stopped_by_signals(stop):
        if loop:
            click.echo("pixel-wsgi: delivering until SIGTERM or Ctrl-C", err=True)
            worker.run()
            return
        total, passes = PassReport(), 0
        while not stop.is_set():
            report = worker.run_once()
            passes += 1
            total.requests += report.requests
            for status, count in report.settled.items():
                total.settled[status] = total.settled.get(status, 0) + count
            # A pass that settled nothing found nothing due, or only rows that wait.
            if not report.settled:
                break
    _print_summary(storage, total, target_id, as_json)


def _print_summary(
    storage: Storage, total: PassReport, target_id: int | None, as_json: bool
) -> None:
    """What ``deliver`` did, what is left, and the targets that need an operator."""
    scope = [each for each in storage.targets() if target_id is None or each.id == target_id]
    pending = sum(storage.delivery_counts(each.id).get(DeliveryStatus.PENDING, 0) for each in scope)
    now = iso_utc(utc_now())
    # ISO UTC texts of one format compare as the times they are.
    waiting = [
        each
        for each in scope
        if each.status is TargetStatus.ACTIVE and each.resume_at and each.resume_at > now
    ]
    refused = [each for each in scope if each.status is TargetStatus.AUTH_FAILED]
    rows = {
        status.value: total.settled[status] for status in DeliveryStatus if status in total.settled
    }
    if as_json:
        emit_json(
            {
                "requests": total.requests,
                "rows": rows,
                "pending": pending,
                "waiting_targets": [each.id for each in waiting],
                "auth_failed_targets": [each.id for each in refused],
            }
        )
        return
    settled = ", ".join(f"{count} {status}" for status, count in rows.items())
    said = f"Sent {_count(total.requests, 'request')}" + (f"; rows: {settled}" if settled else "")
    said += f". {_count(pending, 'row')} pending"
    if waiting:
        ids = ", ".join(str(each.id) for each in waiting)
        said += f"; {_count(len(waiting), 'target')} ({ids}) waiting for the platform to recover"
    click.echo(said + ".")
    for each in refused:
        click.echo(
            f"Warning: target {each.id} ({each.kind.value}) is paused, its credentials were"
            f" refused: {each.status_detail}. Fix them with `pixel-wsgi target set {each.id}`,"
            f" then `pixel-wsgi target resume {each.id}`.",
            err=True,
        )


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" + ("" if number == 1 else "s")


def _print_plan(worker: Worker, as_json: bool) -> None:
    planned = [
        (stored, request.transaction_ids, redacted) for stored, request, redacted in worker.plan()
    ]
    if as_json:
        emit_json(
            [
                {
                    "target_id": stored.id,
                    "kind": stored.kind.value,
                    "transaction_ids": list(transaction_ids),
                    "request": redacted,
                }
                for stored, transaction_ids, redacted in planned
            ]
        )
    elif not planned:
        click.echo("Nothing to send now.")
    for index, (stored, transaction_ids, redacted) in enumerate([] if as_json else planned):
        ids = ", ".join(str(tid) for tid in transaction_ids)
        heading = f"# target {stored.id} ({stored.kind.value}), ledger rows {ids}"
        click.echo(("\n" if index else "") + heading)
        click.echo(redacted, nl=not redacted.endswith("\n"))


# -- deliveries, retry, skip ----------------------------------------------------------


def _delivery_dict(delivery: Delivery) -> dict[str, Any]:
    pending = delivery.status is DeliveryStatus.PENDING
    return {
        "target_id": delivery.target_id,
        "transaction_id": delivery.transaction_id,
        "original_transaction_id": delivery.original_transaction_id,
        "status": delivery.status.value,
        "attempts": delivery.attempts,
        # for a settled row the store keeps when it settled there: that is updated_at
        "next_attempt_at": delivery.next_attempt_at if pending else None,
        "detail": delivery.detail,
        "created_at": delivery.created_at,
        "updated_at": delivery.updated_at,
    }


def _targets_of(storage: Storage, target_id: int | None) -> list[StoredTarget]:
    if target_id is not None:
        return [existing_target(storage, target_id)]
    return storage.targets(removed=True)


@cli.command()
@click.option("--target", "target_id", type=ID, help="Only this target's rows.")
@click.option("--status", type=click.Choice(STATUSES), help="Only rows in this status.")
@click.option(
    "--limit",
    type=ID,
    default=DEFAULT_DELIVERIES_LIMIT,
    show_default=True,
    help="At most this many rows.",
)
@json_option
@click.pass_obj
def deliveries(
    state: State, target_id: int | None, status: str | None, limit: int, as_json: bool
) -> None:
    """Where ledger rows stand with each target.

    By target, then ledger id, oldest first; removed targets' rows too.
    """
    storage = state.reader()
    wanted = None if status is None else DeliveryStatus(status)
    rows: list[Delivery] = []
    for stored in _targets_of(storage, target_id):
        # One row more than shown: whether to say there are more.
        rows.extend(storage.deliveries(stored.id, status=wanted, limit=limit + 1 - len(rows)))
        if len(rows) > limit:
            break
    more = len(rows) > limit
    rows = rows[:limit]
    print_list(
        rows,
        as_json,
        document=_delivery_dict,
        headers=("target", "transaction", "status", "attempts", "next_attempt", "detail"),
        cells=lambda row: [
            str(row.target_id),
            str(row.transaction_id),
            row.status.value,
            str(row.attempts),
            row.next_attempt_at if row.status is DeliveryStatus.PENDING else "-",
            text(row.detail),
        ],
        empty="No deliveries.",
    )
    if more and not as_json:
        click.echo(f"(the first {limit}: --limit N for more)", err=True)


def _move(
    state: State,
    target_id: int,
    transaction_ids: Sequence[int],
    from_statuses: Sequence[DeliveryStatus],
    to_status: DeliveryStatus,
    detail: str,
) -> tuple[StoredTarget, int]:
    storage = state.storage()
    stored = existing_target(storage, target_id)
    moved = storage.move_deliveries(
        target_id,
        from_statuses=from_statuses,
        to_status=to_status,
        now=iso_utc(utc_now()),
        detail=detail,
        transaction_ids=list(transaction_ids) or None,
    )
    return stored, moved


def _print_moved(stored: StoredTarget, moved: int, as_json: bool, what: str) -> None:
    if as_json:
        emit_json({"target_id": stored.id, "moved": moved})
        return
    said = f"{_count(moved, 'row')} of target {stored.id} {what}."
    if stored.status is not TargetStatus.ACTIVE and moved:
        said += f" The target is {stored.status.value}: nothing is sent until it is resumed."
    click.echo(said)


_TRANSACTION_OPTION = click.option(
    "--transaction",
    "transaction_ids",
    type=ID,
    multiple=True,
    metavar="ID",
    help="Only this ledger row (repeatable). Default: all of the target's.",
)


@cli.command()
@click.option("--target", "target_id", type=ID, required=True, help="Target id.")
@_TRANSACTION_OPTION
@json_option
@click.pass_obj
def retry(state: State, target_id: int, transaction_ids: tuple[int, ...], as_json: bool) -> None:
    """Send a target's dead, expired, unsupported or skipped rows again.

    They go back to pending, due now; the next deliver sends them.
    """
    stored, moved = _move(
        state,
        target_id,
        transaction_ids,
        _RETRIED,
        DeliveryStatus.PENDING,
        "sent again by an operator (pixel-wsgi retry)",
    )
    _print_moved(stored, moved, as_json, "back to pending, due now")


@cli.command()
@click.option("--target", "target_id", type=ID, required=True, help="Target id.")
@_TRANSACTION_OPTION
@json_option
@click.pass_obj
def skip(state: State, target_id: int, transaction_ids: tuple[int, ...], as_json: bool) -> None:
    """Never send a target's pending rows: they become skipped.

    retry sends them after all. A row a worker is sending right now is left
    as it is.
    """
    stored, moved = _move(
        state,
        target_id,
        transaction_ids,
        (DeliveryStatus.PENDING,),
        DeliveryStatus.SKIPPED,
        "skipped by an operator (pixel-wsgi skip)",
    )
    _print_moved(stored, moved, as_json, "skipped")
