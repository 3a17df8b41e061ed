"""What the outage tests share: a store held locked, the middleware in front of it, and
spool files rewritten as an attacker (or a damaged disk) would."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from webtest import TestApp

from pixel_wsgi import PixelMiddleware
from pixel_wsgi.outage.spool import _decode, _encode

from .conftest import SECRET, FakeClock, World, host_app, pixel_url


@contextmanager
def write_locked(path: Path) -> Iterator[None]:
    """A second connection holds the write lock (a long job, a stuck writer)."""
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        yield
    finally:
        holder.execute("ROLLBACK")
        holder.close()


def locked_shop(world: World, clock: FakeClock, spool_dir: Path, **options: Any) -> TestApp:
    """The middleware on the world's store, with a busy timeout short enough for tests
    to hit it (the store is the fixture's, so its connection is closed after the test)."""
    storage = world.storage
    storage.close()  # the next connection takes the new timeout
    storage.busy_timeout = 0.02
    middleware = PixelMiddleware(
        host_app, storage, secret_key=SECRET, clock=clock, spool_dir=spool_dir, **options
    )
    return TestApp(middleware)


def spooled_visit(world: World, clock: FakeClock, spool_dir: Path, *hits: str) -> TestApp:
    """A click, then a conversion pixel for each query (or each path, when it starts
    with ``/``), all while the store is locked: all spooled."""
    shop = locked_shop(world, clock, spool_dir)
    with write_locked(world.storage.path):
        shop.get(f"/pixels/click/{world.percent_link_id}")
        for hit in hits:
            shop.get(hit if hit.startswith("/") else pixel_url(world.advertiser_id, hit))
    return shop


def rewrite_spool(spool_dir: Path, change: Callable[[dict[str, Any]], None]) -> None:
    """Change every record of every spool file, with a valid checksum: what someone
    who can write the files could plant."""
    for path in spool_dir.glob("*.spool"):
        events = [_decode(line) for line in path.read_bytes().splitlines(keepends=True)]
        records = []
        for event in events:
            assert event is not None
            change(event)
            records.append(_encode(event))
        path.write_bytes(b"".join(records))


def quarantine_reasons(spool_dir: Path) -> list[str]:
    """The first line of each quarantine file: ``# <reason>``."""
    return [
        path.read_bytes().split(b"\n", 1)[0].decode()
        for path in sorted((spool_dir / "quarantine").iterdir())
    ]
