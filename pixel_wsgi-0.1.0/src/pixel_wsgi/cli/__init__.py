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
    pixel-wsgi target add --advertiser 1 --kind webhook --url https://shop.example/hooks
    pixel-wsgi deliver --loop

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

from collections.abc import Sequence

# Each command module adds its commands to the group when imported.
from . import delivery, entities, ledger, outage, reporting, serve  # noqa: F401
from .group import cli
from .state import DEFAULT_STORAGE, STORAGE_ENV

__all__ = ["DEFAULT_STORAGE", "STORAGE_ENV", "cli", "main"]


def main(argv: Sequence[str] | None = None) -> None:
    """Run the ``pixel-wsgi`` command line (the console script's entry point)."""
    cli.main(args=argv, prog_name="pixel-wsgi")
