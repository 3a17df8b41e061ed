"""``pixel-wsgi replay``: apply the outage spool to the store."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from ..outage.replay import replay as replay_spool
from ..outage.spool import Spool
from .common import (
    emit_json,
    json_option,
)
from .group import cli
from .state import State


@cli.command()
@click.option(
    "--spool-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Default: where the middleware puts it for this store (beside a SQLite file).",
)
@json_option
@click.pass_obj
def replay(state: State, spool_dir: Path | None, as_json: bool) -> None:
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
        emit_json(summary.as_dict())
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
