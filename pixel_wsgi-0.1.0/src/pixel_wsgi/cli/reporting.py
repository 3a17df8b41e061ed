"""``pixel-wsgi credential`` and ``import``: server-side reporting."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from typing import BinaryIO

import click

from ..endpoints.api.auth import issue_credential
from ..endpoints.api.bulk import import_csv
from ..errors import NotFoundError
from ..ledger.ledger import Ledger
from ..models import (
    ApiCredential,
)
from ..params.csv_rows import decoded_lines
from ..params.server_report import ReportInvalid
from .common import (
    ID,
    check_label,
    emit_json,
    json_option,
    parse_currency,
    print_list,
    require_advertiser,
    text,
)
from .group import cli
from .state import State


@cli.group()
def credential() -> None:
    """API credentials of advertisers (for /pixels/api/...)."""


@credential.command("add")
@click.option("--advertiser", "advertiser_id", type=ID, required=True, help="Advertiser id.")
@click.option("--label", default="", help="A note on who uses it.", callback=check_label)
@json_option
@click.pass_obj
def credential_add(state: State, advertiser_id: int, label: str, as_json: bool) -> None:
    """Make a credential and print its secret, once.

    Only a digest of the secret is stored: keep the secret where your
    servers read it. They send it as HTTP Basic (the advertiser id as the
    user name) or as "Authorization: Bearer <secret>".
    """
    storage = state.storage()
    require_advertiser(storage, advertiser_id)
    issued = issue_credential(storage, advertiser_id, label)
    if as_json:
        emit_json({**issued.credential.as_dict(), "secret": issued.secret})
    else:
        click.echo(
            f"Credential {issued.credential.id} for advertiser {advertiser_id}.\n"
            f"  username: {advertiser_id}\n"
            f"  secret:   {issued.secret}\n"
            "The secret is shown only now; only its digest is stored."
        )


def _credential_row(row: ApiCredential) -> list[str]:
    return [str(row.id), str(row.advertiser_id), row.label, row.created_at, text(row.revoked_at)]


@credential.command("list")
@click.option("--advertiser", "advertiser_id", type=ID, help="Only this advertiser's.")
@json_option
@click.pass_obj
def credential_list(state: State, advertiser_id: int | None, as_json: bool) -> None:
    """Credentials and whether they are revoked (never their secrets)."""
    print_list(
        state.reader().credentials(advertiser_id=advertiser_id),
        as_json,
        document=ApiCredential.as_dict,
        headers=("id", "advertiser", "label", "created_at", "revoked_at"),
        cells=_credential_row,
        empty="No credentials.",
    )


@credential.command("revoke")
@click.argument("credential_id", type=ID)
@json_option
@click.pass_obj
def credential_revoke(state: State, credential_id: int, as_json: bool) -> None:
    """Revoke a credential: requests using it get 401 from now on."""
    storage = state.storage()
    if storage.credential(credential_id) is None:
        raise NotFoundError(f"no credential with id {credential_id}")
    revoked = storage.revoke_credential(credential_id)
    if as_json:
        emit_json({"id": credential_id, "revoked": True, "already_revoked": not revoked})
    else:
        click.echo(
            f"Credential {credential_id} " + ("revoked." if revoked else "was revoked already.")
        )


def lines_with_progress(raw: BinaryIO, size: int | None, show: bool) -> Iterator[str]:
    """The file's lines as text, advancing a progress bar (on stderr) by bytes read."""
    with click.progressbar(
        length=size or 0, label="Importing", file=sys.stderr, hidden=not show or not size
    ) as bar:
        yield from decoded_lines(raw.read, on_read=bar.update)


@cli.command("import")
@click.argument("file", type=click.File("rb"))
@click.option("--advertiser", "advertiser_id", type=ID, required=True, help="Advertiser id.")
@click.option(
    "--currency",
    "default_currency",
    default="USD",
    show_default=True,
    callback=parse_currency,
    help="The currency of rows that name none.",
)
@json_option
@click.pass_obj
def import_command(
    state: State, file: BinaryIO, advertiser_id: int, default_currency: str, as_json: bool
) -> None:
    """Apply a CSV file of server-side reports (- reads standard input).

    The columns of POST /pixels/api/conversions, or a file written by
    export. Each row is applied on its own and idempotently, so after a
    failure the same file can be imported again. Exits 1 when any row
    failed or matched nothing.
    """
    storage = state.storage()
    require_advertiser(storage, advertiser_id)
    try:
        size: int | None = os.fstat(file.fileno()).st_size
    except (OSError, ValueError):
        size = None
    ledger = Ledger(storage)
    try:
        summary = import_csv(
            ledger,
            advertiser_id,
            lines_with_progress(file, size, show=not as_json),
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
        emit_json(summary.as_dict())
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
