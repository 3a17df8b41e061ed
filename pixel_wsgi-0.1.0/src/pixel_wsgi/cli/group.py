"""The ``pixel-wsgi`` click group: ``--storage`` and the error handling of every command."""

from __future__ import annotations

import click

from .common import (
    PixelGroup,
)
from .state import DEFAULT_STORAGE, STORAGE_ENV, State


@click.group(cls=PixelGroup, context_settings={"help_option_names": ["-h", "--help"]})
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
    links, read the conversions, ledger rows and rejections it recorded, and
    deliver them to publishers' postbacks, webhooks and ad platforms."""
    state = State(storage_url)
    ctx.obj = state
    ctx.call_on_close(state.close)
