"""Group commit benchmark: what a power-loss-durable pixel hit costs at concurrency 8.

Run from the project root::

    .venv/bin/python benchmarks/group_commit.py            # 7 rounds, about 10 s
    .venv/bin/python benchmarks/group_commit.py --quick    # 2 small rounds (smoke test)

Three SQLite stores, each behind its own ``PixelMiddleware``, take ``hot_path.py``'s
pixel hit (a conversion with a unique ``reference_id`` and the cookie of a real
click) from several writers at once:

- ``default``: ``synchronous="NORMAL"``, durable across a crash of the process;
- ``FULL``: ``synchronous="FULL"``, durable across a power loss by group commit
  (one ``fdatasync`` of the log for the writers that committed meanwhile);
- ``SQLite's own FULL``: ``synchronous="EXTRA"``, which in WAL mode is SQLite's FULL,
  a sync inside every commit: what ``FULL`` cost before group commit (reference).

The writers are 8 threads of this process, and 2 forked processes of 4 threads each
(gunicorn's gthread workers, say); a single thread is timed too (informational:
alone, a writer has no one to share its sync with). Each round times one batch of
every store in every shape, in an order that rotates from round to round so that
noise lands on all alike; the figure of a store is the median over rounds of the
batch's wall-clock time divided by its hits. The ratio ``FULL / default`` is checked
against <= 1.5x and printed as PASS/FAIL with its per-round (paired) values.

A report, not a test: the exit status is 0 whatever the figures, 2 when the
benchmark is broken (a store does not hold exactly the rows its hits should have
written, or a worker process failed).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import multiprocessing
import os
import platform
import shutil
import sqlite3
import statistics
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from pixel_wsgi import PixelMiddleware, SQLiteStorage

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))  # hot_path.py, beside this file, however it is run
import hot_path as hot  # noqa: E402

#: FULL's cost per hit over the default's, at most (the issue's criterion)
TARGET_FULL_OVER_DEFAULT = 1.5
#: (label, writer processes, threads in each); the first one is informational
SHAPES = (("1 thread", 1, 1), ("8 threads", 1, 8), ("2 processes x 4 threads", 2, 4))


# ------------------------------------------------------------------------- writers


def hit_environs(path: str, cookie: str, references: Sequence[str]) -> list[dict[str, Any]]:
    """One fresh environ per hit (the middleware writes into it)."""
    base = hot.make_environ(path, "", cookie)
    environs = []
    for reference in references:
        environ = base.copy()
        environ["QUERY_STRING"] = hot.pixel_query(reference)
        environs.append(environ)
    return environs


def fire(middleware: PixelMiddleware, environs: Sequence[dict[str, Any]]) -> None:
    """The hits, one after another, as a server's worker thread would make them."""
    start_response = hot.start_response
    for environ in environs:
        body = middleware(environ, start_response)
        for _chunk in body:
            pass
        close = getattr(body, "close", None)
        if close is not None:
            close()


def timed_threads(
    middleware: PixelMiddleware, shares: Sequence[Sequence[dict[str, Any]]]
) -> tuple[int, int]:
    """Fire each share from a thread of its own, all at once.

    :returns: nanoseconds from the start to the last thread's end, and the ``fdatasync``
        calls the store's group commit made meanwhile.
    """
    start = threading.Barrier(len(shares) + 1)
    failures: list[BaseException] = []

    def writer(share: Sequence[dict[str, Any]]) -> None:
        start.wait()
        try:
            fire(middleware, share)
        except BaseException as exc:  # reported by the caller: never a silent thread
            failures.append(exc)

    threads = [threading.Thread(target=writer, args=(share,)) for share in shares]
    for thread in threads:
        thread.start()
    syncs = _syncs(middleware)
    start.wait()
    started = time.perf_counter_ns()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter_ns() - started
    if failures:
        raise RuntimeError(f"a writer thread failed: {failures[0]!r}")
    return elapsed, _syncs(middleware) - syncs


def _syncs(middleware: PixelMiddleware) -> int:
    storage = middleware.storage
    group_sync = getattr(storage, "_group_sync", None)  # None: no group commit
    return 0 if group_sync is None else int(group_sync.syncs)


def worker_process(channel: Connection, middleware: PixelMiddleware) -> None:
    """A forked writer process: for each order ``(path, cookie, shares)`` received,
    say it is ready, fire the shares from a thread each at "go", answer
    ``(elapsed ns, fdatasync calls)``; ``None`` ends it."""
    try:
        while (order := channel.recv()) is not None:
            path, cookie, shares = order
            prepared = [hit_environs(path, cookie, share) for share in shares]
            gc.collect()
            channel.send("ready")
            channel.recv()
            channel.send(timed_threads(middleware, prepared))
    finally:
        middleware.close()
        channel.close()


# ------------------------------------------------------------------------- stores


@dataclass
class Store:
    key: str
    label: str
    synchronous: str
    storage: SQLiteStorage
    middleware: PixelMiddleware
    #: the pixel's path and the Cookie header of a real click, once clicked
    path: str = ""
    cookie: str = ""
    hits: int = 0
    #: per shape: cost per hit of each round (ns), fdatasync calls and hits timed
    per_hit_ns: dict[str, list[float]] = field(default_factory=dict)
    syncs: dict[str, int] = field(default_factory=dict)
    timed_hits: dict[str, int] = field(default_factory=dict)
    #: the writer processes, forked before the first request
    workers: list[tuple[Any, Connection]] = field(default_factory=list)

    def median_us(self, shape: str) -> float:
        return statistics.median(self.per_hit_ns[shape]) / 1000

    def click(self) -> None:
        """An advertiser, a campaign, a link, and a visitor's click on it (the
        middleware's first request, which starts its checkpoint thread)."""
        advertiser_id, _, self.cookie = hot.clicked_advertiser(
            self.storage, self.middleware, f"Bench {self.key}"
        )
        self.path = f"/pixels/conversion/{advertiser_id}.gif"


def open_store(tmpdir: Path, key: str, label: str, synchronous: str) -> Store:
    """A migrated store behind its middleware, which has served no request yet."""
    storage = SQLiteStorage(tmpdir / f"{key}.db", synchronous=synchronous)
    storage.migrate()
    middleware = PixelMiddleware(hot.bare_app, storage, secret_key=hot.SECRET_KEY)
    return Store(key, label, synchronous, storage, middleware)


def start_workers(store: Store, processes: int) -> None:
    context = multiprocessing.get_context("fork")
    for _ in range(processes):
        ours, theirs = context.Pipe()
        process = context.Process(target=worker_process, args=(theirs, store.middleware))
        process.start()
        theirs.close()
        store.workers.append((process, ours))


def stop_workers(store: Store) -> list[str]:
    problems = []
    for process, channel in store.workers:
        with contextlib.suppress(OSError):  # it ended already
            channel.send(None)
        process.join(timeout=30)
        if process.exitcode != 0:
            problems.append(f"{store.label}: a writer process ended with {process.exitcode}")
            process.kill()
        channel.close()
    store.workers.clear()
    return problems


class References:
    """Unique, fixed-width reference ids, so every hit writes a row of the same width."""

    def __init__(self) -> None:
        self.taken = 0

    def take(self, count: int) -> list[str]:
        start = self.taken
        self.taken += count
        return [f"ref-{n:010d}" for n in range(start, start + count)]


def batch_hits(shape: tuple[str, int, int], per_thread: int) -> int:
    """The hits of one batch: a writer alone makes twice as many (its batch is short)."""
    _, processes, threads = shape
    writers = processes * threads
    return writers * per_thread * (2 if writers == 1 else 1)


def run_batch(
    store: Store, shape: tuple[str, int, int], per_thread: int, references: References
) -> tuple[int, int]:
    """One batch of ``store`` in ``shape``: (elapsed ns, fdatasync calls)."""
    _, processes, threads = shape
    per_thread = batch_hits(shape, per_thread) // (processes * threads)
    shares = [references.take(per_thread) for _ in range(processes * threads)]
    store.hits += processes * threads * per_thread
    if processes == 1:
        prepared = [hit_environs(store.path, store.cookie, share) for share in shares]
        gc.collect()
        return timed_threads(store.middleware, prepared)
    for index, (_, channel) in enumerate(store.workers):
        channel.send((store.path, store.cookie, shares[index * threads : (index + 1) * threads]))
    for _, channel in store.workers:
        if channel.recv() != "ready":
            raise RuntimeError(f"{store.label}: a writer process is not ready")
    started = time.perf_counter_ns()
    for _, channel in store.workers:
        channel.send("go")
    answers = [channel.recv() for _, channel in store.workers]
    return time.perf_counter_ns() - started, sum(syncs for _, syncs in answers)


# ------------------------------------------------------------------------- checks


def sanity_checks(stores: Sequence[Store]) -> list[str]:
    """Every hit must have written its row, once, in its store; none may be spooled."""
    problems = []
    for store in stores:
        conn = sqlite3.connect(store.storage.path)
        try:
            rows, references = conn.execute(
                "SELECT COUNT(*), COUNT(DISTINCT reference_id) FROM transactions"
                " WHERE source = 'pixel' AND visit_id IS NOT NULL"
            ).fetchone()
            mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
        finally:
            conn.close()
        if rows != store.hits or references != rows:
            problems.append(
                f"{store.label}: {store.hits} hits but {rows} attributed rows"
                f" ({references} distinct references)"
            )
        if mode != "wal":
            problems.append(f"{store.label}: journal mode {mode}, not wal")
        spool = store.middleware.spool
        if spool is not None and spool.pending():
            problems.append(f"{store.label}: {spool.pending()} events spooled (a store failure)")
    return problems


# ------------------------------------------------------------------------- report


def report(stores: Sequence[Store], rounds: int) -> None:
    by = {store.key: store for store in stores}
    print()
    print(
        f"{'writers':<25} {'store':<36} {'median µs/hit':>13} {'min':>8} {'max':>8}"
        f" {'hits/sync':>9}"
    )
    print("-" * 102)
    for label, _, _ in SHAPES:
        for store in stores:
            per = [ns / 1000 for ns in store.per_hit_ns[label]]
            syncs = store.syncs[label]
            per_sync = f"{store.timed_hits[label] / syncs:9.1f}" if syncs else f"{'-':>9}"
            print(
                f"{label:<25} {store.label:<36} {statistics.median(per):>13.1f}"
                f" {min(per):>8.1f} {max(per):>8.1f} {per_sync}"
            )
    print("-" * 102)
    print(
        f"medians of {rounds} interleaved rounds; hits/sync: pixel hits per fdatasync of"
        " the group commit"
    )

    def paired(a: str, b: str, shape: str) -> list[float]:
        pairs = zip(by[a].per_hit_ns[shape], by[b].per_hit_ns[shape], strict=True)
        return [x / y for x, y in pairs]

    def line(n: int | str, text: str, a: str, b: str, shape: str, target: bool) -> None:
        ratio = by[a].median_us(shape) / by[b].median_us(shape)
        spread = paired(a, b, shape)
        verdict = ""
        if target:
            ok = ratio <= TARGET_FULL_OVER_DEFAULT
            verdict = f"   target <= {TARGET_FULL_OVER_DEFAULT:.2f} x {'PASS' if ok else 'FAIL'}"
        print(
            f"  {n:>2} {text:<58} {ratio:6.2f} x{verdict}"
            f"   [per-round median {statistics.median(spread):.2f},"
            f" range {min(spread):.2f}..{max(spread):.2f}]"
        )

    print()
    print("criterion")
    line("1.", "FULL / default, 8 threads", "full", "default", "8 threads", True)
    line("2.", "FULL / default, 2 processes x 4 threads", "full", "default", SHAPES[2][0], True)
    print()
    print("informational")
    for shape, _, _ in SHAPES:
        line("", f"SQLite's own FULL / default, {shape}", "sqlite_full", "default", shape, False)
        line("", f"FULL / SQLite's own FULL, {shape}", "full", "sqlite_full", shape, False)
    line("", "FULL / default, 1 thread", "full", "default", SHAPES[0][0], False)


# ------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Cost per pixel hit of SQLite's power-loss-durable setting at concurrency 8."
    )
    parser.add_argument("--rounds", type=int, default=None, help="rounds (default 7; 2 quick)")
    parser.add_argument(
        "--hits", type=int, default=None, help="hits per writer thread in a batch (default 100)"
    )
    parser.add_argument(
        "--quick", action="store_true", help="2 small rounds: a smoke run, not a measurement"
    )
    parser.add_argument(
        "--tmpdir",
        type=Path,
        default=BENCH_DIR,
        help="where the temporary database directory is created (default: benchmarks/, on"
        " the project's disk: a sync on tmpfs costs nothing)",
    )
    args = parser.parse_args(argv)
    if args.rounds is not None and args.rounds < 1:
        parser.error("--rounds must be at least 1")
    if args.hits is not None and args.hits < 1:
        parser.error("--hits must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    rounds = args.rounds if args.rounds is not None else (2 if args.quick else 7)
    per_thread = args.hits if args.hits is not None else (10 if args.quick else 100)
    print("pixel-wsgi group commit benchmark (pixel hits from concurrent writers)")
    print(
        f"Python {platform.python_version()}, SQLite {sqlite3.sqlite_version},"
        f" {platform.platform()}, {os.cpu_count()} CPUs"
    )
    tmpdir = hot.database_dir(args.tmpdir, "group_commit-")
    print(
        f"{rounds} rounds; a batch: {per_thread} hits per writer thread (1 thread alone:"
        f" {per_thread * 2}); warm-up: one batch of each"
    )
    stores: list[Store] = []
    problems: list[str] = []
    references = References()
    try:
        for key, label, synchronous in (
            ("default", "default (synchronous=NORMAL)", "NORMAL"),
            ("full", "FULL, group commit", "FULL"),
            ("sqlite_full", "SQLite's own FULL (synchronous=EXTRA)", "EXTRA"),
        ):
            stores.append(open_store(tmpdir, key, label, synchronous))
        # Forked while this process runs no thread but its own (no lock can be
        # inherited held); the click then starts the parent's checkpoint threads.
        for store in stores:
            start_workers(store, max(processes for _, processes, _ in SHAPES))
        for store in stores:
            store.click()
        batches: list[tuple[Store, tuple[str, int, int]]] = [
            (store, shape) for shape in SHAPES for store in stores
        ]
        for store, shape in batches:  # warm-up: caches, the WAL's growth, the threads
            run_batch(store, shape, per_thread, references)
        for r in range(rounds):
            k = r % len(batches)
            for store, shape in batches[k:] + batches[:k]:
                elapsed, syncs = run_batch(store, shape, per_thread, references)
                hits = batch_hits(shape, per_thread)
                label = shape[0]
                store.per_hit_ns.setdefault(label, []).append(elapsed / hits)
                store.syncs[label] = store.syncs.get(label, 0) + syncs
                store.timed_hits[label] = store.timed_hits.get(label, 0) + hits
        for store in stores:
            problems += stop_workers(store)
        problems += sanity_checks(stores)
        report(stores, rounds)
        if problems:
            print()
            for problem in problems:
                print(f"BENCHMARK BROKEN: {problem}")
            return 2
        return 0
    finally:
        for store in stores:
            stop_workers(store)
            store.middleware.close()
            store.storage.close()
        shutil.rmtree(tmpdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
