"""Dashboard benchmark: does a page's time grow with rows outside its date range?

Run from the project root::

    .venv/bin/python benchmarks/dashboard.py            # ~1 minute, most of it inserting
    .venv/bin/python benchmarks/dashboard.py --quick    # a small smoke run, not a measurement

Two SQLite stores hold the same 1,000 conversions (100 of them corrected once) and
1,000 rejections inside one 30-day range. The second also holds 200,000 ledger rows
and 200,000 rejections outside the range, half before and half after it. Every page
of that range is timed in both stores (in-process WSGI calls, the median of several
rounds, the stores interleaved), and the ratio of the two is printed: near 1 when a
page reads only its range, large when it reads everything and filters in Python.

The outside rows are copies of rows the middleware wrote, inserted with one
``executemany`` per table in one SQLite transaction (the benchmark's own
connection, not the product's write path), so building the stores takes seconds.

A report, not a test: the exit status is 0 whatever the ratio, 2 only when the
benchmark is broken (a page did not answer 200 or did not show the rows it should).
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

from werkzeug.test import Client

from pixel_wsgi import PayoutKind, PayoutRule, PixelMiddleware, SQLiteStorage
from pixel_wsgi.dashboard import Dashboard

FIRST_DAY = date(2026, 6, 1)
LAST_DAY = date(2026, 6, 30)
RANGE = f"from={FIRST_DAY}&to={LAST_DAY}"
SECRET_KEY = "benchmark-secret-key-0123456789abcdef"


class BenchmarkBroken(Exception):
    """A sanity check failed: the figures would not mean what they say."""


@dataclass(frozen=True)
class Store:
    label: str
    path: Path
    advertiser_id: int
    chain_id: int


def _stamp(day: date, second: int) -> str:
    moment = datetime(day.year, day.month, day.day, tzinfo=timezone.utc)
    return (moment + timedelta(seconds=second)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _spread(count: int, first: date, days: int) -> list[str]:
    """``count`` timestamps spread evenly over ``days`` days from ``first``."""
    step = days * 86_400 / max(count, 1)
    return [_stamp(first, int(index * step)) for index in range(count)]


def _template(connection: sqlite3.Connection, table: str, key: str) -> dict[str, Any]:
    cursor = connection.execute(f"SELECT * FROM {table} ORDER BY {key} LIMIT 1")
    names = [column[0] for column in cursor.description]
    row = cursor.fetchone()
    if row is None:
        raise BenchmarkBroken(f"the middleware wrote no row into {table}")
    return dict(zip(names, row, strict=True))


def _insert(connection: sqlite3.Connection, table: str, rows: Iterable[dict[str, Any]]) -> int:
    rows = list(rows)
    if not rows:
        return 0
    names = list(rows[0])
    statement = f"INSERT INTO {table} ({', '.join(names)}) VALUES ({', '.join('?' for _ in names)})"
    connection.executemany(statement, ([row[name] for name in names] for row in rows))
    return len(rows)


def build(path: Path, label: str, in_range: int, outside: int) -> Store:
    """A store with ``in_range`` conversions and rejections in the range, ``outside`` of
    each outside it; the first rows of each kind are written by the real middleware."""
    storage = SQLiteStorage(path)
    storage.migrate()
    advertiser = storage.add_advertiser("Bench")
    publisher = storage.add_publisher("Blog")
    campaign = storage.add_campaign(
        advertiser.id, "Ten percent", PayoutRule(PayoutKind.PERCENT, Decimal("10"))
    )
    link = storage.add_link(campaign.id, publisher.id, "/landing")
    clock_now = datetime(2020, 1, 1, tzinfo=timezone.utc)
    middleware = PixelMiddleware(
        lambda environ, start_response: [], storage, secret_key=SECRET_KEY, clock=lambda: clock_now
    )
    visitor = Client(middleware)
    visitor.get(f"/pixels/click/{link.id}")
    visitor.get(f"/pixels/conversion/{advertiser.id}.gif?sale_amount=10.00")
    Client(middleware).get(f"/pixels/conversion/{advertiser.id}.gif?sale_amount=1")
    storage.close()

    connection = sqlite3.connect(path, isolation_level=None)
    try:
        transaction = _template(connection, "transactions", "id")
        rejection = _template(connection, "rejections", "id")
        next_id = transaction["id"] + 1
        rows: list[dict[str, Any]] = []
        before = _spread(outside // 2, FIRST_DAY - timedelta(days=365), 365)
        after = _spread(outside - outside // 2, LAST_DAY + timedelta(days=1), 365)
        inside = _spread(in_range, FIRST_DAY, (LAST_DAY - FIRST_DAY).days + 1)
        chain_id = 0
        stamps = [*before, *inside, *after]
        for number, created_at in enumerate(stamps):
            first = {
                **transaction,
                "id": next_id,
                "reference_id": f"order-{number}",
                "created_at": created_at,
                "visit_id": None,
                "fingerprint": f"bench-{number}",
            }
            rows.append(first)
            next_id += 1
            # Every tenth conversion in the range is corrected a few seconds later.
            in_range_number = number - len(before)
            if 0 <= in_range_number < len(inside) and in_range_number % 10 == 0:
                chain_id = chain_id or first["id"]
                rows.append(
                    {
                        **first,
                        "id": next_id,
                        "reference_id": None,
                        "corrects_transaction_id": first["id"],
                        "original_transaction_id": first["id"],
                        "payout": "0.50",
                        "created_at": created_at[:18] + "9" + created_at[19:],
                        "fingerprint": f"bench-{number}-corrected",
                    }
                )
                next_id += 1
        rejections = [
            {**rejection, "id": None, "reference_id": f"lost-{number}", "created_at": created_at}
            for number, created_at in enumerate(stamps)
        ]
        connection.execute("BEGIN")
        _insert(connection, "transactions", rows)
        _insert(connection, "rejections", rejections)
        connection.execute("COMMIT")
    finally:
        connection.close()
    return Store(label, path, advertiser.id, chain_id)


def pages(store: Store) -> dict[str, str]:
    base = f"/advertisers/{store.advertiser_id}"
    return {
        "overview": f"{base}?{RANGE}",
        "campaigns": f"{base}/campaigns?{RANGE}",
        "publishers": f"{base}/publishers?{RANGE}",
        "days": f"{base}/days?{RANGE}",
        "conversions": f"{base}/conversions?{RANGE}",
        "conversions.csv": f"{base}/conversions.csv?{RANGE}",
        "chain": f"{base}/conversions/{store.chain_id}?{RANGE}",
        "rejections": f"{base}/rejections?{RANGE}",
    }


def time_page(client: Client, path: str, expect: str | None) -> float:
    started = time.perf_counter()
    response = client.get(path)
    body = response.get_data(as_text=True)
    elapsed = time.perf_counter() - started
    if response.status_code != 200:
        raise BenchmarkBroken(f"{path} answered {response.status}")
    if expect is not None and expect not in body:
        raise BenchmarkBroken(f"{path} does not show {expect!r}")
    return elapsed


def measure(stores: Sequence[Store], rounds: int, in_range: int) -> dict[str, list[float]]:
    """Median seconds per page in each store, the stores interleaved in every round."""
    clients = [
        Client(Dashboard(SQLiteStorage(store.path), authenticate=lambda environ: True))
        for store in stores
    ]
    expected = {"conversions": f"{in_range} rows", "rejections": f"{in_range} rows"}
    names = list(pages(stores[0]))
    samples: dict[str, list[list[float]]] = {name: [[] for _ in stores] for name in names}
    for round_number in range(rounds + 1):
        for index in range(len(stores)):
            # Rotate the order, so that noise lands on both stores alike.
            which = (index + round_number) % len(stores)
            for name, path in pages(stores[which]).items():
                elapsed = time_page(clients[which], path, expected.get(name))
                if round_number:  # the first round only warms up
                    samples[name][which].append(elapsed)
    return {
        name: [statistics.median(times) for times in per_store]
        for name, per_store in samples.items()
    }


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a small smoke run")
    parser.add_argument("--rounds", type=int, default=None, help="timed rounds (default 5)")
    parser.add_argument("--tmpdir", type=Path, default=Path(tempfile.gettempdir()))
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    in_range, outside = (100, 2_000) if args.quick else (1_000, 200_000)
    rounds = args.rounds if args.rounds is not None else (1 if args.quick else 5)
    print("pixel-wsgi dashboard benchmark: page time against rows outside the page's range")
    print(
        f"Python {platform.python_version()}, SQLite {sqlite3.sqlite_version},"
        f" {platform.platform()}, {os.cpu_count()} CPUs"
    )
    tmpdir = Path(tempfile.mkdtemp(prefix="dashboard-", dir=args.tmpdir.resolve()))
    try:
        started = time.perf_counter()
        small = build(tmpdir / "small.db", "0 outside", in_range, 0)
        big = build(tmpdir / "big.db", f"{outside:,} outside", in_range, outside)
        print(
            f"range {FIRST_DAY} to {LAST_DAY}: {in_range:,} conversions and {in_range:,}"
            f" rejections in it; the big store adds {outside:,} of each outside it"
            f" (built in {time.perf_counter() - started:.1f} s); median of {rounds} rounds"
        )
        medians = measure([small, big], rounds, in_range)
    except BenchmarkBroken as exc:
        print(f"BENCHMARK BROKEN: {exc}")
        return 2
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)
    print(f"{'page':<16} {small.label:>12} {big.label:>16} {'ratio':>7}")
    for name, (small_time, big_time) in medians.items():
        print(
            f"{name:<16} {small_time * 1000:>9.1f} ms {big_time * 1000:>13.1f} ms"
            f" {big_time / small_time:>7.2f}"
        )
    total_small = sum(times[0] for times in medians.values())
    total_big = sum(times[1] for times in medians.values())
    print(
        f"{'all pages':<16} {total_small * 1000:>9.1f} ms {total_big * 1000:>13.1f} ms"
        f" {total_big / total_small:>7.2f}"
    )
    print(
        f"dashboard page time, {in_range:,} rows in range with {outside:,} outside vs none:"
        f" x{total_big / total_small:.2f} (target: near 1)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
