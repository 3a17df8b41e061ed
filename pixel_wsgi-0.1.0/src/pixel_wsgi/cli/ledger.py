"""``pixel-wsgi transactions``, ``conversions``, ``rejections``, ``erase`` and ``export``."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

import click

from ..columns import COLUMNS, csv_cells
from ..models import (
    Rejection,
    Transaction,
)
from ..outage.spool import Spool, SpoolError
from ..storage import Storage
from .common import (
    DEFAULT_REJECTIONS_LIMIT,
    ID,
    emit_json,
    json_option,
    print_ledger,
    print_list,
    require_advertiser,
    text,
)
from .group import cli
from .state import State


@cli.command()
@click.option("--advertiser", "advertiser_id", type=ID, help="Only this advertiser's rows.")
@click.option("--after", "after_id", type=ID, help="Only rows after this transaction id.")
@click.option("--limit", type=ID, help="At most this many rows.")
@json_option
@click.pass_obj
def transactions(
    state: State,
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
    print_ledger(rows, as_json, "No transactions.")


@cli.command()
@click.option("--advertiser", "advertiser_id", type=ID, help="Only this advertiser's.")
@json_option
@click.pass_obj
def conversions(state: State, advertiser_id: int | None, as_json: bool) -> None:
    """The current state of each conversion.

    One row per conversion: the end of its correction chain.
    """
    rows = list(state.reader().conversions(advertiser_id=advertiser_id))
    print_ledger(rows, as_json, "No conversions.")


def _rejection_row(row: Rejection) -> list[str]:
    return [
        str(row.id),
        text(row.advertiser_id),
        row.source,
        row.reason,
        text(row.reference_id),
        row.created_at,
        row.detail,
    ]


@cli.command()
@click.option("--advertiser", "advertiser_id", type=ID, help="Only this advertiser's.")
@click.option(
    "--limit",
    type=ID,
    default=DEFAULT_REJECTIONS_LIMIT,
    show_default=True,
    help="At most this many, newest first.",
)
@json_option
@click.pass_obj
def rejections(state: State, advertiser_id: int | None, limit: int, as_json: bool) -> None:
    """Reports and clicks that did not count, and why.

    Newest first.
    """
    print_list(
        list(state.reader().rejections(advertiser_id=advertiser_id, limit=limit)),
        as_json,
        document=Rejection.as_dict,
        headers=("id", "advertiser", "source", "reason", "reference_id", "created_at", "detail"),
        cells=_rejection_row,
        empty="No rejections.",
    )


@cli.command()
@click.option("--advertiser", "advertiser_id", type=ID, required=True, help="Advertiser id.")
@click.option("--reference-id", required=True, help="The conversion's reference_id.")
@click.option(
    "--spool-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="The outage spool to reach too. Default: the middleware's for this store.",
)
@json_option
@click.pass_obj
def erase(
    state: State, advertiser_id: int, reference_id: str, spool_dir: Path | None, as_json: bool
) -> None:
    """Erase a conversion's personal data.

    Removes the remarketing fields stored with every row of the conversion
    that has this reference_id, and the request context kept for delivery
    (cookies, User-Agent, network); the ledger rows themselves stay. In the outage
    spool, destroys the key that seals the conversion's spooled personal data,
    so no spooled copy can be read and a replay stores none of it.
    """
    storage = state.storage()
    require_advertiser(storage, advertiser_id)
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
        emit_json(document)
    else:
        noun = "row" if erased == 1 else "rows"
        click.echo(f"Erased personal data from {erased} {noun}.")
        if spooled:
            click.echo(f"Destroyed the key to its personal data in the outage spool {directory}.")


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
@click.option("--advertiser", "advertiser_id", type=ID, required=True, help="Advertiser id.")
@click.option(
    "--format", "form", type=click.Choice(["csv", "json"]), default="csv", show_default=True
)
@click.option(
    "--output", "-o", type=click.File("w", encoding="utf-8"), default="-", help="Default: stdout."
)
@click.pass_obj
def export(state: State, advertiser_id: int, form: str, output: TextIO) -> None:
    """Write every ledger row of an advertiser.

    The columns of the Transactions API; import reads the CSV back
    (unchanged rows are recognised by transaction_id).
    """
    storage = state.reader()
    require_advertiser(storage, advertiser_id)
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
