"""``pixel-wsgi replay``: apply the outage spool (the queued mode's log) to the store."""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import click

from ..outage.applier import DEFAULT_INTERVAL, apply_until_stopped
from ..outage.replay import ReplaySummary
from ..outage.replay import replay as replay_spool
from ..outage.spool import Spool
from ..storage import Storage
from .common import (
    emit_json,
    json_option,
    stopped_by_signals,
)
from .group import cli
from .state import State


@cli.command()
@click.option(
    "--spool-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Default: where the middleware puts it for this store (beside a SQLite file).",
)
@click.option(
    "--loop",
    is_flag=True,
    help="Keep applying (the queued mode's applier as a service) until SIGTERM or Ctrl-C.",
)
@click.option(
    "--interval",
    type=click.FloatRange(min=0.01, max=60),
    default=DEFAULT_INTERVAL,
    show_default=True,
    help="With --loop: seconds between two passes.",
)
@json_option
@click.pass_obj
def replay(
    state: State, spool_dir: Path | None, loop: bool, interval: float, as_json: bool
) -> None:
    """Apply the outage spool (the queued mode's log) to the store, exactly once.

    Clicks and conversions the store could not take were spooled by the
    middleware, and with ingest="queued" every click and conversion is; this
    applies each one once, however often it runs, in batches of one
    transaction each. Exits 1 when the store failed again before the spool was
    drained. With --loop it keeps applying every --interval seconds until
    SIGTERM or Ctrl-C, beside the applier threads of the application (any
    number may run: one applies at a time).
    """
    storage = state.storage()
    directory = spool_dir if spool_dir is not None else storage.default_spool_dir()
    if not directory.is_dir():
        raise click.ClickException(f"no spool at {directory}")
    spool = Spool(directory)
    spool.check()  # a directory others could have planted files in: refused, said why
    if loop:
        if as_json:
            raise click.UsageError("--loop runs until stopped: it takes no --json")
        _replay_until_stopped(spool, storage, interval)
        return
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


def _replay_until_stopped(spool: Spool, storage: Storage, interval: float) -> None:
    """The applier's loop, in this process: a line for each pass that applied events."""
    stop = threading.Event()

    def said(summary: ReplaySummary) -> None:
        if summary.applied or summary.quarantined:
            click.echo(
                f"applied {summary.applied} events ({summary.already_applied} before),"
                f" {summary.quarantined} quarantined",
                err=True,
            )

    click.echo(f"applying {spool.directory} every {interval:g} s until stopped", err=True)
    with stopped_by_signals(stop):
        apply_until_stopped(spool, storage, stop, interval=interval, applied=said)
