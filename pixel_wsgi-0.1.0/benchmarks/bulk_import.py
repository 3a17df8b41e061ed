"""Bulk CSV import benchmark: rows per second, and whether memory stays flat.

Run from the project root::

    .venv/bin/python benchmarks/bulk_import.py                 # 1,000,000 rows (minutes)
    .venv/bin/python benchmarks/bulk_import.py --rows 200000   # a shorter run

The CSV is generated on the fly, line by line, and fed to
:func:`pixel_wsgi.endpoints.api.bulk.import_csv` exactly as ``pixel-wsgi import`` feeds a file:
every row is its own idempotent report, committed on its own, into a temporary
SQLite store (deleted at exit). Each row is a new conversion with an amount, two
SKUs with quantities and a reason code, credited to a percentage campaign.

Memory is measured at 10% and at 100% of the rows (and at 50%, to show where
RSS levels off):

- the tracemalloc peak: every Python allocation since the import started. If
  the import kept anything per row, the peak at 100% would be about ten times
  the peak at 10%; flat memory gives a ratio near 1.0.
- the number of memory blocks Python holds (``sys.getallocatedblocks()`` after a
  garbage collection): cheap, so it is measured with tracemalloc off too; a leak
  of anything per row shows as growth.
- the process's maximum RSS (``resource.getrusage``): everything, including
  SQLite's page cache, which grows with the database up to its configured cap
  (64 MiB per connection) and then stays there, and the interpreter itself.

tracemalloc slows Python down; ``--no-tracemalloc`` measures speed alone. The
figures are a report, not a test: the exit status is 0 unless the import did
not do what it should (2: rows missing or failed).
"""

from __future__ import annotations

import argparse
import gc
import platform
import shutil
import sqlite3
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

try:
    import resource
except ImportError:  # Windows: no getrusage
    resource = None  # type: ignore[assignment]

from pixel_wsgi import PayoutKind, PayoutRule, SQLiteStorage
from pixel_wsgi.endpoints.api.bulk import import_csv
from pixel_wsgi.ledger.ledger import Ledger

MIB = 1024 * 1024


@dataclass(frozen=True)
class Checkpoint:
    rows: int
    seconds: float
    python_peak: int | None  # bytes, tracemalloc
    blocks: int  # sys.getallocatedblocks() after gc.collect()
    max_rss: int | None  # bytes

    def line(self, label: str) -> str:
        rate = self.rows / self.seconds if self.seconds else float("inf")
        python = "-" if self.python_peak is None else f"{self.python_peak / MIB:.2f} MiB"
        rss = "-" if self.max_rss is None else f"{self.max_rss / MIB:.1f} MiB"
        return (
            f"at {label:>4} ({self.rows:>9,} rows): {rate:>8,.0f} rows/s,"
            f" tracemalloc peak {python}, Python blocks {self.blocks:,}, max RSS {rss}"
        )


def max_rss() -> int | None:
    if resource is None:
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports KiB, macOS bytes.
    return int(peak if sys.platform == "darwin" else peak * 1024)


def csv_lines(rows: int, campaign_id: int, publisher_id: int) -> Iterator[str]:
    """A CSV file of ``rows`` new conversions, one line at a time (never held whole)."""
    yield (
        "reference_id,sale_amount,advertiser_campaign_id,affiliate_id,"
        "sku_list,quantity_list,reason_code\n"
    )
    for index in range(rows):
        cents = 100 + index % 99_900
        yield (
            f"order-{index:09d},{cents // 100}.{cents % 100:02d},{campaign_id},{publisher_id},"
            f'"SKU-{index % 500},SKU-{index % 37}","1,{1 + index % 3}",sale\n'
        )


def run(rows: int, directory: Path, trace: bool) -> int:
    storage = SQLiteStorage(directory / "bulk.db")
    storage.migrate()
    advertiser = storage.add_advertiser("Bench Shop")
    publisher = storage.add_publisher("Bench Blog")
    campaign = storage.add_campaign(
        advertiser.id, "Ten percent", PayoutRule(PayoutKind.PERCENT, Decimal("10"))
    )
    storage.add_link(campaign.id, publisher.id, "/landing")
    ledger = Ledger(storage)
    tenth = max(1, rows // 10)
    half = max(2, rows // 2)
    checkpoints: dict[str, Checkpoint] = {}

    def checkpoint(done: int) -> Checkpoint:
        seconds = time.perf_counter() - started
        peak = tracemalloc.get_traced_memory()[1] if trace else None
        gc.collect()
        return Checkpoint(done, seconds, peak, sys.getallocatedblocks(), max_rss())

    def progress(row_number: int) -> None:
        done = row_number - 1  # the header is row 1
        if done == tenth:
            checkpoints["10%"] = checkpoint(done)
        elif done == half:
            checkpoints["50%"] = checkpoint(done)

    print(f"pixel-wsgi bulk import: {rows:,} rows into {storage.path}")
    print(
        f"Python {platform.python_version()}, SQLite {sqlite3.sqlite_version},"
        f" tracemalloc {'on' if trace else 'off'}"
    )
    if trace:
        tracemalloc.start()
    started = time.perf_counter()
    try:
        summary = import_csv(
            ledger,
            advertiser.id,
            csv_lines(rows, campaign.id, publisher.id),
            progress=progress,
        )
        checkpoints["100%"] = checkpoint(summary.rows)
    finally:
        if trace:
            tracemalloc.stop()
        storage.close()
    for label in ("10%", "50%", "100%"):
        print(checkpoints[label].line(label))
    first, middle, last = checkpoints["10%"], checkpoints["50%"], checkpoints["100%"]
    ratios = []
    if first.python_peak and last.python_peak:
        ratios.append(f"tracemalloc {last.python_peak / first.python_peak:.2f}")
    ratios.append(f"Python blocks {last.blocks / first.blocks:.2f}")
    if first.max_rss and middle.max_rss and last.max_rss:
        # RSS climbs while SQLite's page cache fills up to its cap, then stays.
        ratios.append(
            f"max RSS {last.max_rss / first.max_rss:.2f}"
            f" (100% / 50%: {last.max_rss / middle.max_rss:.2f})"
        )
    print(f"peak memory at 100% / at 10%: {', '.join(ratios)} (flat: about 1.0)")
    print(
        f"result: {summary.created:,} created, {summary.unchanged:,} unchanged,"
        f" {summary.unmatched:,} unmatched, {summary.failed:,} failed"
    )
    if summary.created != rows or summary.failed or summary.unmatched:
        print("BENCHMARK BROKEN: not every row created a conversion", file=sys.stderr)
        return 2
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows to import")
    parser.add_argument(
        "--no-tracemalloc",
        dest="trace",
        action="store_false",
        help="measure speed alone (no Python allocation tracing)",
    )
    parser.add_argument("--tmpdir", type=Path, default=None, help="where the temporary store goes")
    options = parser.parse_args(argv)
    if options.rows < 10:
        parser.error("--rows must be at least 10")
    directory = Path(tempfile.mkdtemp(prefix="pixel-bulk-", dir=options.tmpdir))
    try:
        return run(options.rows, directory, options.trace)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
