"""What a pixel hit costs when the CPU's caches are cold, as they are in a server.

Run from the project root::

    .venv/bin/python benchmarks/cold_cache.py                   # 3,000 hits a phase
    .venv/bin/python benchmarks/cold_cache.py --hits 500 --megabytes 8

In a benchmark loop each pixel hit finds its code and its data in the CPU's caches.
In a server it does not: the client and the other workers ran in between, and
``benchmarks/load.py`` measures some 190 µs of worker CPU per hit above the bare app's
where this loop measures 70-85 µs for the whole hit. This script times the same hits
(``hot_path.py``'s: ``PixelMiddleware`` over SQLite, a new ``reference_id`` each, a
real attribution cookie) in four phases, warm, cold, warm, cold: a cold phase writes
``--megabytes`` of other memory, a byte per 64-byte cache line, before every hit,
outside the timing. Each hit's CPU time (``time.thread_time``) is split into the
store's write (``SQLiteStorage.append_transaction``) and the rest (parsing, the cookie,
the ledger's rules, the answer). It prints both per phase, in microseconds per hit, and
cold over warm. Exit status 2 if the store does not hold one attributed row per hit.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import shutil
import sqlite3
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pixel_wsgi import PixelMiddleware, SQLiteStorage

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))  # hot_path.py, beside this file, however it is run
import hot_path as hot  # noqa: E402

PHASES = ("warm", "cold", "warm", "cold")
CACHE_LINE = 64
WARM_UP = 200  # hits before the first phase: prepared statements, the WAL, the imports


class TimedStorage(SQLiteStorage):
    """The SQLite store, adding up the CPU time of the pixel's one write."""

    write_ns = 0

    def append_transaction(self, draft: Any) -> int | None:
        started = time.thread_time_ns()
        try:
            return super().append_transaction(draft)
        finally:
            self.write_ns += time.thread_time_ns() - started


@dataclass
class Phase:
    name: str
    hits: int
    total_ns: int
    write_ns: int

    def per_hit_us(self) -> tuple[float, float, float]:
        """CPU µs per hit: the whole hit, the store's write, the rest."""
        per = 1e3 * self.hits
        return self.total_ns / per, self.write_ns / per, (self.total_ns - self.write_ns) / per


def evict(memory: bytearray) -> None:
    """Write a byte of every cache line of ``memory``: what a hit left in the caches
    is pushed out, as by the processes a server runs between two requests."""
    for offset in range(0, len(memory), CACHE_LINE):
        memory[offset] ^= 1


def run_phase(
    name: str,
    middleware: PixelMiddleware,
    storage: TimedStorage,
    environs: list[dict[str, Any]],
    memory: bytearray | None,
) -> Phase:
    total = 0
    write_before = storage.write_ns
    for environ in environs:
        if memory is not None:
            evict(memory)
        started = time.thread_time_ns()
        hot.call(middleware, environ)
        total += time.thread_time_ns() - started
    return Phase(name, len(environs), total, storage.write_ns - write_before)


def hits(advertiser_id: int, cookie: str, prefix: str, n: int) -> list[dict[str, Any]]:
    path = f"/pixels/conversion/{advertiser_id}.gif"
    return [hot.make_environ(path, hot.pixel_query(f"{prefix}-{i}"), cookie) for i in range(n)]


def report(phases: list[Phase], megabytes: int) -> None:
    print(f"pixel hit CPU, µs per hit; cold: {megabytes} MiB written before each hit")
    print(f"{'phase':<6} {'hits':>6} {'whole hit':>10} {'write':>8} {'rest':>8}")
    for phase in phases:
        whole, write, rest = phase.per_hit_us()
        print(f"{phase.name:<6} {phase.hits:>6} {whole:>10.0f} {write:>8.0f} {rest:>8.0f}")
    sums = {
        name: Phase(
            name,
            sum(p.hits for p in phases if p.name == name),
            sum(p.total_ns for p in phases if p.name == name),
            sum(p.write_ns for p in phases if p.name == name),
        ).per_hit_us()
        for name in ("warm", "cold")
    }
    warm, cold = sums["warm"], sums["cold"]
    whole, write, rest = (c / w if w else math.nan for c, w in zip(cold, warm, strict=True))
    print(f"cold / warm: whole hit {whole:.2f}x, write {write:.2f}x, rest {rest:.2f}x")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--hits", type=int, default=3000, help="hits per phase (3,000)")
    parser.add_argument(
        "--megabytes", type=int, default=4, help="memory written before each cold hit (4 MiB)"
    )
    args = parser.parse_args(argv)
    tmpdir = Path(tempfile.mkdtemp(prefix="pixel_cold_cache-"))
    try:
        storage = TimedStorage(tmpdir / "pixel.db")
        middleware = PixelMiddleware(hot.bare_app, storage, secret_key=hot.SECRET_KEY)
        advertiser_id, _, cookie = hot.clicked_advertiser(storage, middleware, "Cold Cache")
        memory = bytearray(args.megabytes << 20)
        for environ in hits(advertiser_id, cookie, "warm-up", WARM_UP):
            hot.call(middleware, environ)
        phases = [
            run_phase(
                name,
                middleware,
                storage,
                hits(advertiser_id, cookie, f"{number}-{name}", args.hits),
                memory if name == "cold" else None,
            )
            for number, name in enumerate(PHASES)
        ]
        report(phases, args.megabytes)
        expected = WARM_UP + args.hits * len(PHASES)
        middleware.close()
        storage.close()
        with contextlib.closing(sqlite3.connect(tmpdir / "pixel.db")) as db:
            # Attributed ones: the cookie was verified on every hit.
            (stored,) = db.execute(
                "SELECT COUNT(visit_id) FROM transactions WHERE source = 'pixel'"
            ).fetchone()
        if stored != expected:
            print(f"BENCHMARK BROKEN: {stored} rows stored for {expected} hits")
            return 2
        return 0
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
