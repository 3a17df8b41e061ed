"""Where a pixel hit's time goes: each step of the hot path timed on its own.

Run from the project root::

    .venv/bin/python benchmarks/pixel_breakdown.py [--rounds N] [--quick]

Each stage calls the *same* pixel_wsgi function the middleware calls, with the
inputs of the hot_path.py pixel hit, in a tight loop. Stages are interleaved
round by round like hot_path.py and the median per-call time is printed. No
profiler runs, so there is no per-call profiler overhead to subtract; the price
is that some stages reach into private names (``SQLiteStorage._connection``,
``_INSERT_TRANSACTION``): this is a diagnostic, and may need updating when those
internals change.

The stages do not add up exactly to the full hit (caches are warmer in a tight
loop, and the loop itself costs ~0.03 µs), but they show the proportions.
"""

from __future__ import annotations

import argparse
import gc
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hot_path as hp
from werkzeug.http import parse_cookie

from pixel_wsgi.clock import iso_utc, utc_now
from pixel_wsgi.edge import is_prefetch
from pixel_wsgi.gif import GIF_HEADERS
from pixel_wsgi.ledger import compute_payout
from pixel_wsgi.models import Source, TransactionDraft
from pixel_wsgi.params import DEFAULT_LIMITS, parse_query, parse_sale_params, redacted_query
from pixel_wsgi.pixel import parse_id
from pixel_wsgi.storage.sqlite import _ATTRIBUTION, _INSERT_TRANSACTION, SQLiteLedgerWriter


@dataclass
class Stage:
    group: str
    label: str
    run: Callable[[int], int]  # run(n) -> elapsed ns
    per_round_ns: list[float] = field(default_factory=list)


def loop(fn: Callable[[], Any]) -> Callable[[int], int]:
    def run(n: int) -> int:
        perf = time.perf_counter_ns
        t0 = perf()
        for _ in range(n):
            fn()
        return perf() - t0

    return run


# ------------------------------------------------------------ in-context timing

# (label, children): the call tree of one accepted pixel hit, as instrumented below.
TREE: list[tuple[str, list[Any]]] = [
    ("PixelMiddleware.__call__", [
        ("ConversionPixel.record", [
            ("params.parse_query", []),
            ("params.parse_sale_params", []),
            ("werkzeug parse_cookie", []),
            ("AttributionCookies.verify", []),
            ("params.redacted_query", []),
            ("Ledger.record_web_conversion", [
                ("SQL BEGIN IMMEDIATE", []),
                ("SQLiteLedgerWriter.attribution", [
                    ("SQL SELECT (attribution join)", []),
                ]),
                ("Ledger._record_new", [
                    ("compute_payout", []),
                    ("iso_utc(clock())", []),
                    ("TransactionDraft(...)", []),
                    ("SQLiteLedgerWriter.insert_transaction", [
                        ("SQL INSERT transactions", []),
                    ]),
                ]),
                ("SQL COMMIT", []),
            ]),
        ]),
    ]),
]  # fmt: skip


class Instrument:
    """Wraps functions with inclusive timers; SQL is timed per statement kind."""

    def __init__(self) -> None:
        self.totals: dict[str, int] = {}
        self.calls: dict[str, int] = {}
        self._undo: list[tuple[Any, str, Any]] = []
        self.enabled = False

    def add(self, label: str, ns: int) -> None:
        self.totals[label] = self.totals.get(label, 0) + ns
        self.calls[label] = self.calls.get(label, 0) + 1

    def wrap(self, owner: Any, attr: str, label: str) -> None:
        original = getattr(owner, attr)
        perf = time.perf_counter_ns
        add = self.add

        def timed(*args: Any, **kwargs: Any) -> Any:
            t0 = perf()
            try:
                return original(*args, **kwargs)
            finally:
                add(label, perf() - t0)

        self._undo.append((owner, attr, original))
        setattr(owner, attr, timed)

    def connection_factory(self) -> type[sqlite3.Connection]:
        perf = time.perf_counter_ns
        add = self.add
        labels = {
            "BEGIN": "SQL BEGIN IMMEDIATE",
            "COMMIT": "SQL COMMIT",
            "SELECT": "SQL SELECT (attribution join)",
            "INSERT": "SQL INSERT transactions",
        }

        class TimedConnection(sqlite3.Connection):
            def execute(self, sql: str, parameters: Any = (), /) -> sqlite3.Cursor:
                t0 = perf()
                try:
                    return super().execute(sql, parameters)
                finally:
                    word = sql.lstrip().split(None, 1)[0].upper()
                    add(labels.get(word, f"SQL {word}"), perf() - t0)

        return TimedConnection

    def undo(self) -> None:
        for owner, attr, original in reversed(self._undo):
            setattr(owner, attr, original)
        self._undo.clear()


def install(inst: Instrument) -> None:
    import pixel_wsgi.ledger as ledger_mod
    import pixel_wsgi.pixel as pixel_mod
    import pixel_wsgi.storage.sqlite as sqlite_mod
    from pixel_wsgi.attribution import AttributionCookies
    from pixel_wsgi.ledger import Ledger
    from pixel_wsgi.middleware import PixelMiddleware
    from pixel_wsgi.pixel import ConversionPixel

    inst.wrap(PixelMiddleware, "__call__", "PixelMiddleware.__call__")
    inst.wrap(ConversionPixel, "record", "ConversionPixel.record")
    inst.wrap(pixel_mod, "parse_query", "params.parse_query")
    inst.wrap(pixel_mod, "parse_sale_params", "params.parse_sale_params")
    inst.wrap(pixel_mod, "parse_cookie", "werkzeug parse_cookie")
    inst.wrap(pixel_mod, "redacted_query", "params.redacted_query")
    inst.wrap(AttributionCookies, "verify", "AttributionCookies.verify")
    inst.wrap(Ledger, "record_web_conversion", "Ledger.record_web_conversion")
    inst.wrap(Ledger, "_record_new", "Ledger._record_new")
    inst.wrap(ledger_mod, "compute_payout", "compute_payout")
    inst.wrap(ledger_mod, "iso_utc", "iso_utc(clock())")
    inst.wrap(ledger_mod, "TransactionDraft", "TransactionDraft(...)")
    inst.wrap(SQLiteLedgerWriter, "attribution", "SQLiteLedgerWriter.attribution")
    inst.wrap(SQLiteLedgerWriter, "insert_transaction", "SQLiteLedgerWriter.insert_transaction")

    factory = inst.connection_factory()
    real_connect = sqlite3.connect

    class Sqlite3Shim:
        """Stands in for the sqlite3 module inside pixel_wsgi.storage.sqlite."""

        def __getattr__(self, name: str) -> Any:
            return getattr(sqlite3, name)

        @staticmethod
        def connect(*args: Any, **kwargs: Any) -> sqlite3.Connection:
            return real_connect(*args, factory=factory, **kwargs)

    inst._undo.append((sqlite_mod, "sqlite3", sqlite3))
    setattr(sqlite_mod, "sqlite3", Sqlite3Shim())  # noqa: B010 (module attribute swap)


def print_tree(totals: dict[str, float], nodes: list[Any], depth: int = 0) -> None:
    for label, children in nodes:
        value = totals.get(label, 0.0)
        print(f"{'  ' * depth}{label:<{60 - 2 * depth}} {value:>9.2f}")
        if children:
            print_tree(totals, children, depth + 1)
            rest = value - sum(totals.get(c[0], 0.0) for c in children)
            print(f"{'  ' * (depth + 1)}{'(own code, not in the lines above)':<{58 - 2 * depth}}"
                  f" {rest:>9.2f}")  # fmt: skip


def _labels(nodes: list[Any]) -> list[str]:
    out = []
    for label, children in nodes:
        out.append(label)
        out.extend(_labels(children))
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    rounds = args.rounds or (3 if args.quick else 11)
    n_pure, n_sql = (2000, 200) if args.quick else (10000, 1000)

    tmpdir = Path(tempfile.mkdtemp(prefix="pixel_breakdown-", dir=hp.BENCH_DIR))
    print(f"Python {sys.version.split()[0]}, SQLite {sqlite3.sqlite_version}; dbs in {tmpdir}")
    bench = hp.setup(tmpdir)
    extra: list[sqlite3.Connection] = []
    try:
        mw = bench.middleware
        pixel = mw.conversion_pixel
        ledger = mw.ledger
        storage = bench.storage
        adv = bench.advertiser_id
        adv_text = str(adv)
        ids = hp.Counter("bd")
        query = hp.pixel_query("ref-0000000001")
        env = hp.make_environ(f"/pixels/conversion/{adv}.gif", query, bench.cookie_header)
        header = bench.cookie_header
        name = pixel.cookies.cookie_name(adv)
        cookie_value = parse_cookie(header)[name]
        visit_id = pixel.cookies.verify(cookie_value)
        margs = parse_query(query, DEFAULT_LIMITS)
        report = parse_sale_params(margs, default_currency="USD", limits=DEFAULT_LIMITS)
        params_text = redacted_query(margs)
        conn = storage._connection()
        writer = SQLiteLedgerWriter(conn, storage.max_rejections)
        attribution = writer.attribution(visit_id)
        assert attribution is not None
        now_text = iso_utc(utc_now())

        def draft(ref: str | None = "ref-x") -> TransactionDraft:
            return TransactionDraft(
                advertiser_id=adv, campaign_id=attribution.campaign_id,
                publisher_id=attribution.publisher_id, visit_id=visit_id, source="pixel",
                reference_id=ref, corrects_transaction_id=None, original_transaction_id=None,
                sale_amount=report.sale_amount, sale_currency="USD", reason_code="renewal",
                sku_list=("34657",), quantity_list=(), external_data=None, custom_data={},
                payout=attribution.payout.value, payout_currency="USD", fingerprint="",
                created_at=now_text, personal_data={},
            )  # fmt: skip

        # -- the full hit, for reference
        def full_hit(n: int) -> int:
            base = env
            envs = []
            for ref in ids.take(n):
                e = base.copy()
                e["QUERY_STRING"] = hp.pixel_query(ref)
                envs.append(e)
            return hp.timed_each(mw, envs)

        # -- the ledger call with a prepared report (unique reference ids)
        def ledger_call(n: int) -> int:
            reports = [parse_sale_params(parse_query(hp.pixel_query(ref))) for ref in ids.take(n)]
            perf = time.perf_counter_ns
            t0 = perf()
            for rep in reports:
                ledger.record_web_conversion(
                    advertiser_id=adv, report=rep, source=Source.PIXEL, visit_id=visit_id,
                    cookie_problem=None, params=params_text,
                )  # fmt: skip
            return perf() - t0

        def empty_writer() -> None:
            with storage.writer():
                pass

        def attribution_in_txn(n: int) -> int:
            conn.execute("BEGIN IMMEDIATE")
            try:
                return loop(lambda: writer.attribution(visit_id))(n)
            finally:
                conn.execute("COMMIT")

        def attribution_sql_in_txn(n: int) -> int:
            conn.execute("BEGIN IMMEDIATE")
            try:
                return loop(lambda: conn.execute(_ATTRIBUTION, (visit_id,)).fetchone())(n)
            finally:
                conn.execute("COMMIT")

        def insert_transaction_commit(n: int) -> int:
            drafts = [draft(ref) for ref in ids.take(n)]
            perf = time.perf_counter_ns
            t0 = perf()
            for d in drafts:
                conn.execute("BEGIN IMMEDIATE")
                writer.insert_transaction(d)
                conn.execute("COMMIT")
            return perf() - t0

        campaign_id, publisher_id = attribution.campaign_id, attribution.publisher_id

        def raw_sql_on(c: sqlite3.Connection, with_select: bool) -> Callable[[int], int]:
            def run(n: int) -> int:
                rows = [
                    hp.baseline_row(adv, campaign_id, publisher_id, visit_id, ref, now_text)
                    for ref in ids.take(n)
                ]
                ex = c.execute
                perf = time.perf_counter_ns
                t0 = perf()
                for row in rows:
                    ex("BEGIN IMMEDIATE")
                    if with_select:
                        ex(_ATTRIBUTION, (visit_id,)).fetchone()
                    ex(_INSERT_TRANSACTION, row)
                    ex("COMMIT")
                return perf() - t0

            return run

        fk_off = sqlite3.connect(storage.path, isolation_level=None, timeout=5.0)
        extra.append(fk_off)
        for pragma in ("busy_timeout = 5000", "journal_mode = WAL", "synchronous = NORMAL",
                       "foreign_keys = OFF", "cache_size = -65536"):  # fmt: skip
            fk_off.execute(f"PRAGMA {pragma}")

        raw_baseline = next(v for v in hp.build_variants(bench, 1, 1) if v.key == "raw")
        stages = [
            Stage("", "FULL pixel hit through PixelMiddleware", full_hit),
            Stage("parse", "parse_id(advertiser)", loop(lambda: parse_id(adv_text))),
            Stage("parse", "parse_query(QUERY_STRING)", loop(lambda: parse_query(query))),
            Stage("parse", "parse_sale_params(args)", loop(lambda: parse_sale_params(margs))),
            Stage("parse", "redacted_query(args)  [always computed]",
                  loop(lambda: redacted_query(margs))),
            Stage("cookie", "werkzeug parse_cookie(header).get(name)",
                  loop(lambda: parse_cookie(header).get(name))),
            Stage("cookie", "AttributionCookies.verify (itsdangerous)",
                  loop(lambda: pixel.cookies.verify(cookie_value))),
            Stage("misc", "is_prefetch + start_response(list(GIF_HEADERS))",
                  loop(lambda: (is_prefetch(env), hp.start_response("200 OK", list(GIF_HEADERS))))),
            Stage("ledger", "Ledger.record_web_conversion (all storage work)", ledger_call),
            Stage("ledger", "  storage.writer(): empty BEGIN IMMEDIATE+COMMIT", loop(empty_writer)),
            Stage("ledger", "  writer.attribution(visit) [in a txn]", attribution_in_txn),
            Stage("ledger", "    its SQL alone (execute+fetchone)", attribution_sql_in_txn),
            Stage("ledger", "  compute_payout", loop(lambda: compute_payout(
                attribution.payout, report.sale_amount, "renewal", "USD"))),
            Stage("ledger", "  iso_utc(utc_now())", loop(lambda: iso_utc(utc_now()))),
            Stage("ledger", "  TransactionDraft(...)", loop(draft)),
            Stage("ledger", "  BEGIN + insert_transaction(draft) + COMMIT",
                  insert_transaction_commit),
            Stage("sql", "BEGIN+INSERT(transactions)+COMMIT, FK on", raw_sql_on(conn, False)),
            Stage("sql", "BEGIN+INSERT(transactions)+COMMIT, FK off", raw_sql_on(fk_off, False)),
            Stage("sql", "BEGIN+SELECT attribution+INSERT+COMMIT, FK on",
                  raw_sql_on(conn, True)),
            Stage("sql", "baseline table (hot_path raw) INSERT+COMMIT",
                  raw_baseline.run),
        ]  # fmt: skip

        def size(s: Stage) -> int:
            return n_sql if s.group in ("", "ledger", "sql") else n_pure

        for s in stages:
            s.run(size(s) // 4)
        for r in range(rounds):
            k = r % len(stages)
            for s in stages[k:] + stages[:k]:
                gc.collect()
                n = size(s)
                s.per_round_ns.append(s.run(n) / n)
        print(f"\n{'stage':<58} {'median µs':>10} {'min':>8}")
        print("-" * 78)
        for s in stages:
            per = [x / 1000 for x in s.per_round_ns]
            print(f"{s.label:<58} {statistics.median(per):>10.2f} {min(per):>8.2f}")
        print("-" * 78)
        print(f"medians of {rounds} interleaved rounds (each stage alone in a tight loop)")

        # -- in context: the same functions timed inside real full hits
        inst = Instrument()
        install(inst)
        storage.close()  # reconnect through the timed connection class
        try:
            per_label: dict[str, list[float]] = {}
            full_hit(n_sql // 4)
            for _ in range(rounds):
                inst.totals.clear()
                gc.collect()
                full_hit(n_sql)
                for label, ns in inst.totals.items():
                    per_label.setdefault(label, []).append(ns / n_sql / 1000)
        finally:
            inst.undo()
            storage.close()
        medians = {label: statistics.median(v) for label, v in per_label.items()}
        print(f"\n{'in context: inclusive µs per accepted pixel hit':<60} {'median':>9}")
        print("-" * 70)
        print_tree(medians, TREE)
        print("-" * 70)
        print(
            f"medians of {rounds} rounds of {n_sql} hits; each timer adds ~0.2 µs to its"
            " parent, so the instrumented total is above the FULL hit of the first table"
        )

        # -- pages written per commit (each one a 4 KiB WAL frame plus its share of checkpoints)
        def frames_per_call(c: sqlite3.Connection, wal: Path, run: Callable[[int], int]) -> float:
            page_size: int = c.execute("PRAGMA page_size").fetchone()[0]
            c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            c.execute("PRAGMA wal_autocheckpoint = 0")
            try:
                run(100)
                return wal.stat().st_size / (page_size + 24) / 100
            finally:
                c.execute("PRAGMA wal_autocheckpoint = 1000")

        pixel_frames = frames_per_call(storage._connection(), Path(f"{storage.path}-wal"), full_hit)
        raw_frames = frames_per_call(bench.raw_conn, tmpdir / "raw.db-wal", raw_baseline.run)
        print(
            f"WAL frames (pages) written per commit: pixel hit {pixel_frames:.2f},"
            f" raw baseline {raw_frames:.2f}"
        )
        unknown = sorted(set(medians) - {label for label in _labels(TREE)})
        if unknown:
            print("also timed: " + ", ".join(f"{k} {medians[k]:.2f}" for k in unknown))
        return 0
    finally:
        for c in extra:
            c.close()
        bench.close()
        shutil.rmtree(tmpdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
