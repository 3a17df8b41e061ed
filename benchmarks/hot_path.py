"""Hot-path benchmark for pixel-wsgi: interleaved, in-process, medians of rounds.

Run from the project root::

    .venv/bin/python benchmarks/hot_path.py            # ~15 rounds, well under a minute
    .venv/bin/python benchmarks/hot_path.py --quick    # ~3 small rounds (smoke test)

Every variant is a WSGI callable (or a raw SQLite write) driven directly in this
process: no server, no sockets. Each round runs one batch of every variant, in an
order that rotates from round to round, so that machine noise (other processes,
CPU frequency, disk flushes) lands on all variants alike. The reported figure of a
variant is the median over rounds of its per-call time in that round.

The targets are checked and printed as PASS/FAIL, but the exit status is 0 either
way: this is a report, not a test. Exit status 2 means the benchmark itself is
broken (a sanity check failed: e.g. pixel hits did not write the rows they should).

GC choice: the collector stays *enabled* during timed batches, because a real
worker runs with it and its cost grows with what a request allocates, so it is a
fair part of each variant's price. To keep one variant's garbage from being
collected inside another's batch, ``gc.collect()`` runs (untimed) before every
batch. ``--no-gc`` disables the collector during batches instead.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import os
import platform
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from importlib.metadata import PackageNotFoundError, version
from io import BytesIO
from pathlib import Path
from typing import Any

from itsdangerous import BadSignature, TimestampSigner

from pixel_wsgi import PayoutKind, PayoutRule, PixelMiddleware, SQLiteStorage
from pixel_wsgi.endpoints.gif import TRANSPARENT_GIF

Environ = dict[str, Any]
WSGIApp = Callable[..., Iterable[bytes]]

BENCH_DIR = Path(__file__).resolve().parent
PROJECT_DIR = BENCH_DIR.parent

SECRET_KEY = "benchmark-secret-key-0123456789abcdef"
# What pixel_wsgi.attribution.cookie uses, so the Flask view can verify the same cookie.
COOKIE_SALT = "pixel-wsgi.attribution"
# The requests are https (wsgi.url_scheme below), so the cookie's name is __Host- prefixed.
COOKIE_PREFIX = "__Host-pixel_wsgi_a"
COOKIE_MAX_AGE = 30 * 24 * 3600

# Targets (see benchmarks/README.md).
TARGET_PASS_THROUGH_US = 0.5  # wrapped - bare, microseconds
TARGET_PIXEL_OVER_RAW = 2.5  # pixel hit / raw INSERT+COMMIT, at most
TARGET_FLASK_OVER_PIXEL = 3.0  # Flask view / pixel hit, at least
TARGET_TARGETS_OVER_PIXEL = 1.05  # pixel hit with five delivery targets / without, at most

OTHER_COOKIES = (
    "session=9f2c1e7ab34d; _ga=GA1.2.1234567890.1700000000; _fbp=fb.1.1700000000000.987654321"
)
USER_AGENT = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/126.0 Safari/537.36"
)

# --------------------------------------------------------------------------- WSGI bits


def _write(data: bytes) -> None:  # the PEP 3333 write() callable, never used
    pass


def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
    """A no-op ``start_response``."""
    return _write


class Capture:
    """A ``start_response`` that remembers the status and headers (setup only)."""

    def __init__(self) -> None:
        self.status = ""
        self.headers: list[tuple[str, str]] = []

    def __call__(self, status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        self.status = status
        self.headers = list(headers)
        return _write


def call(app: WSGIApp, environ: Environ, sr: Callable[..., Any] = start_response) -> bytes:
    """Drive one request as a server would; return the body (setup and checks only)."""
    it = app(environ, sr)
    try:
        return b"".join(it)
    finally:
        close = getattr(it, "close", None)
        if close is not None:
            close()


def make_environ(
    path: str, query: str = "", cookie: str | None = None, method: str = "GET"
) -> Environ:
    """An environ shaped like the one a WSGI server (gunicorn) hands the app."""
    environ: Environ = {
        "REQUEST_METHOD": method,
        "SCRIPT_NAME": "",
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "RAW_URI": f"{path}?{query}" if query else path,
        "SERVER_NAME": "shop.example",
        "SERVER_PORT": "443",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "203.0.113.77",
        "REMOTE_PORT": "51234",
        "HTTP_HOST": "shop.example",
        "HTTP_USER_AGENT": USER_AGENT,
        "HTTP_ACCEPT": "image/avif,image/webp,image/apng,image/*,*/*;q=0.8",
        "HTTP_ACCEPT_LANGUAGE": "en-US,en;q=0.9",
        "HTTP_ACCEPT_ENCODING": "gzip, deflate, br",
        "HTTP_REFERER": "https://shop.example/checkout/thanks",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "https",
        "wsgi.input": BytesIO(b""),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": False,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }
    if cookie is not None:
        environ["HTTP_COOKIE"] = cookie
    return environ


_BARE_CONTENT_LENGTH = str(len(TRANSPARENT_GIF))


def bare_app(environ: Environ, start_response: Callable[..., Any]) -> list[bytes]:
    """The floor: a WSGI app that answers a 43-byte GIF and nothing else."""
    start_response(
        "200 OK", [("Content-Type", "image/gif"), ("Content-Length", _BARE_CONTENT_LENGTH)]
    )
    return [TRANSPARENT_GIF]


# ------------------------------------------------------------------ the raw baseline

# The same 19 columns as pixel-wsgi's transactions table, with the one index any
# implementation needs (the reference_id idempotency key). No foreign keys, no
# AUTOINCREMENT, no other index: the cost of durably appending a row of that width.
BASELINE_SCHEMA = """
CREATE TABLE IF NOT EXISTS conversions (
    id INTEGER PRIMARY KEY,
    advertiser_id INTEGER NOT NULL,
    campaign_id INTEGER,
    publisher_id INTEGER,
    visit_id INTEGER,
    source TEXT NOT NULL,
    reference_id TEXT,
    corrects_transaction_id INTEGER,
    original_transaction_id INTEGER,
    sale_amount TEXT,
    sale_currency TEXT NOT NULL,
    reason_code TEXT,
    sku_list TEXT NOT NULL,
    quantity_list TEXT NOT NULL,
    external_data TEXT,
    custom_data TEXT NOT NULL,
    payout TEXT,
    payout_currency TEXT,
    fingerprint TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS conversions_reference
    ON conversions (advertiser_id, reference_id);
"""

BASELINE_INSERT = (
    "INSERT INTO conversions (advertiser_id, campaign_id, publisher_id, visit_id, source,"
    " reference_id, corrects_transaction_id, original_transaction_id, sale_amount,"
    " sale_currency, reason_code, sku_list, quantity_list, external_data, custom_data,"
    " payout, payout_currency, fingerprint, created_at)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def baseline_row(
    advertiser_id: int,
    campaign_id: int,
    publisher_id: int,
    visit_id: int,
    reference_id: str,
    created_at: str,
) -> tuple[Any, ...]:
    """The values an accepted pixel hit of hot_path.py writes, in BASELINE_INSERT order."""
    return (
        *(advertiser_id, campaign_id, publisher_id, visit_id, "pixel", reference_id, None, None),
        *("10.00", "USD", "renewal", '["34657"]', "[]", None, "{}", "5.00", "USD", ""),
        created_at,
    )


def open_baseline_db(path: Path) -> sqlite3.Connection:
    """A persistent connection with the SQLite backend's durability settings."""
    conn = sqlite3.connect(path, isolation_level=None, timeout=5.0)
    conn.execute("PRAGMA busy_timeout = 5000")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.executescript(BASELINE_SCHEMA)
    return conn


# ------------------------------------------------------------ the Flask comparison


def build_flask_app(db_path: Path) -> Any:
    """A plausible, straightforward hand-written Flask pixel view.

    Parses ``request.args``, reads the cookie from ``request.cookies``, verifies it
    with itsdangerous, inserts one row on a persistent WAL connection inside
    ``BEGIN IMMEDIATE`` ... ``COMMIT`` and returns the GIF with no-store headers.
    """
    import json

    from flask import Flask, Response, request

    app = Flask("hot_path_flask_view")
    signer = TimestampSigner(SECRET_KEY, salt=COOKIE_SALT, digest_method=hashlib.sha256)
    conn = open_baseline_db(db_path)
    app.config["BENCH_CONN"] = conn
    no_store = {
        "Cache-Control": "no-store, no-cache, must-revalidate, max-age=0",
        "Pragma": "no-cache",
        "Expires": "0",
    }
    cent = Decimal("0.01")

    @app.route("/pixels/conversion/<int:adv>.gif")
    def conversion(adv: int) -> Response:
        args = request.args
        sale_amount: Decimal | None = None
        amount_text = args.get("sale_amount", "")
        if amount_text:
            try:
                sale_amount = Decimal(amount_text).quantize(cent)
            except InvalidOperation:
                sale_amount = None
        reason_code = args.get("reason_code") or None
        skus = args.getlist("sku_list[]")
        reference_id = args.get("reference_id") or None
        visit_id: int | None = None
        cookie = request.cookies.get(f"{COOKIE_PREFIX}{adv}")
        if cookie:
            try:
                # The cookie names "<visit_id>-<link_id>".
                visit_text = signer.unsign(cookie, max_age=COOKIE_MAX_AGE).split(b"-")[0]
                visit_id = int(visit_text)
            except (BadSignature, ValueError):
                visit_id = None
        if visit_id is not None:
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.execute(
                    BASELINE_INSERT,
                    (
                        adv,
                        None,
                        None,
                        visit_id,
                        "pixel",
                        reference_id,
                        None,
                        None,
                        None if sale_amount is None else str(sale_amount),
                        "USD",
                        reason_code,
                        json.dumps(skus),
                        "[]",
                        None,
                        "{}",
                        None,
                        None,
                        "",
                        datetime.now(timezone.utc).isoformat(),
                    ),
                )
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        return Response(TRANSPARENT_GIF, mimetype="image/gif", headers=no_store)

    return app


# ------------------------------------------------------------------------ variants


@dataclass
class Variant:
    key: str
    label: str
    batch: int
    # run(n) -> elapsed ns for n calls; any per-call input is prepared inside run()
    # before its timer starts.
    run: Callable[[int], int]
    info: bool = False
    per_round_ns: list[float] = field(default_factory=list)

    @property
    def median_us(self) -> float:
        return statistics.median(self.per_round_ns) / 1000


def timed_same(app: WSGIApp, environ: Environ, n: int) -> int:
    """n calls with one environ (only for apps that leave the environ untouched)."""
    sr = start_response
    perf = time.perf_counter_ns
    t0 = perf()
    for _ in range(n):
        it = app(environ, sr)
        for _chunk in it:
            pass
        close = getattr(it, "close", None)
        if close is not None:
            close()
    return perf() - t0


def timed_each(app: WSGIApp, environs: Sequence[Environ]) -> int:
    """One call per prepared environ (fresh dicts: frameworks write into environ)."""
    sr = start_response
    perf = time.perf_counter_ns
    t0 = perf()
    for environ in environs:
        it = app(environ, sr)
        for _chunk in it:
            pass
        close = getattr(it, "close", None)
        if close is not None:
            close()
    return perf() - t0


def timed_raw(conn: sqlite3.Connection, rows: Sequence[tuple[Any, ...]]) -> int:
    execute = conn.execute
    perf = time.perf_counter_ns
    t0 = perf()
    for row in rows:
        execute("BEGIN IMMEDIATE")
        execute(BASELINE_INSERT, row)
        execute("COMMIT")
    return perf() - t0


class Counter:
    """Unique, fixed-width reference ids, so every hit writes a row of the same width."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.n = 0

    def take(self, k: int) -> list[str]:
        start = self.n
        self.n += k
        return [f"{self.prefix}-{i:010d}" for i in range(start, start + k)]


def pixel_query(reference_id: str) -> str:
    return f"sale_amount=10.00&reason_code=renewal&sku_list%5B%5D=34657&reference_id={reference_id}"


# ---------------------------------------------------------------------------- setup


@dataclass
class Bench:
    tmpdir: Path
    storage: SQLiteStorage
    middleware: PixelMiddleware
    flask_app: Any
    raw_conn: sqlite3.Connection
    advertiser_id: int
    link_id: int
    cookie_header: str
    #: an advertiser with five delivery targets that keep no conversion context
    targets_advertiser_id: int
    targets_cookie_header: str
    #: an advertiser with five targets, Meta's and GA4's among them: its pixel keeps the
    #: conversion's context (cookies, user agent, IP prefix, page) for them
    context_advertiser_id: int
    context_cookie_header: str
    counts: dict[str, int] = field(default_factory=dict)

    def close(self) -> None:
        self.storage.close()
        self.raw_conn.close()
        self.flask_app.config["BENCH_CONN"].close()


def clicked_advertiser(
    storage: SQLiteStorage, middleware: PixelMiddleware, name: str
) -> tuple[int, int, str]:
    """A new advertiser with a campaign and a link, clicked once through the middleware:
    its id, its link's id and the Cookie header of the visitor (real Set-Cookie value)."""
    advertiser = storage.add_advertiser(name)
    publisher = storage.add_publisher(f"{name} Publisher")
    campaign = storage.add_campaign(
        advertiser.id,
        f"{name} Campaign",
        PayoutRule(kind=PayoutKind.FIXED, value=Decimal("5.00"), currency="USD"),
    )
    link = storage.add_link(campaign.id, publisher.id, "/landing")
    capture = Capture()
    call(middleware, make_environ(f"/pixels/click/{link.id}"), capture)
    set_cookies = [v for k, v in capture.headers if k.lower() == "set-cookie"]
    if not capture.status.startswith("302") or len(set_cookies) != 1:
        raise RuntimeError(f"click setup failed: {capture.status} {capture.headers}")
    cookie_pair = set_cookies[0].split(";", 1)[0]
    if not cookie_pair.startswith(f"{COOKIE_PREFIX}{advertiser.id}="):
        raise RuntimeError(f"unexpected attribution cookie {set_cookies[0]!r}")
    return advertiser.id, link.id, f"{OTHER_COOKIES}; {cookie_pair}"


def add_five_targets(storage: SQLiteStorage, advertiser_id: int, *, with_context: bool) -> None:
    """Five delivery targets for the advertiser, as ``pixel-wsgi target add`` makes them
    (nothing is sent: the benchmark runs no worker). With ``with_context``, Meta's and
    GA4's are among them, so the pixel keeps each conversion's context."""
    from pixel_wsgi.delivery.outbox import add_target
    from pixel_wsgi.delivery.secrets import SecretBox
    from pixel_wsgi.models import TargetKind

    box = SecretBox([SECRET_KEY.encode()])
    [publisher, *_] = storage.publishers()
    kinds: list[tuple[TargetKind, dict[str, str], dict[str, str], int | None]] = [
        (
            TargetKind.POSTBACK,
            {"url": "https://publisher.example/pb?tid={transaction_id}&s={sub1}"},
            {},
            publisher.id,
        ),
        (TargetKind.WEBHOOK, {"url": "https://hooks.example/pixel"}, {}, None),
        (
            TargetKind.GOOGLE_ADS,
            {"customer_id": "1234567890", "conversion_action": "987654321", "client_id": "c"},
            {"client_secret": "s", "refresh_token": "r"},
            None,
        ),
    ]
    if with_context:
        kinds += [
            (TargetKind.META_CAPI, {"pixel_id": "1234567890"}, {"access_token": "EAAB"}, None),
            (TargetKind.GA4, {"measurement_id": "G-BENCH1"}, {"api_secret": "s"}, None),
        ]
    else:
        kinds += [
            (
                TargetKind.INVOCA_SIGNAL,
                {"signal_name": "Sale", "call_id_field": "call_id"},
                {"api_token": "t"},
                None,
            ),
            (TargetKind.WEBHOOK, {"url": "https://hooks.example/second"}, {}, None),
        ]
    for kind, settings, secrets, publisher_id in kinds:
        add_target(
            storage,
            box,
            advertiser_id,
            kind,
            settings=settings,
            secrets=secrets,
            publisher_id=publisher_id,
        )


def setup(tmpdir: Path) -> Bench:
    storage = SQLiteStorage(tmpdir / "pixel.db")
    middleware = PixelMiddleware(bare_app, storage, secret_key=SECRET_KEY)
    advertiser_id, link_id, cookie_header = clicked_advertiser(
        storage, middleware, "Bench Advertiser"
    )
    targets_id, _, targets_cookie = clicked_advertiser(storage, middleware, "Bench Targets")
    context_id, _, context_cookie = clicked_advertiser(storage, middleware, "Bench Context")
    add_five_targets(storage, targets_id, with_context=False)
    add_five_targets(storage, context_id, with_context=True)

    flask_app = build_flask_app(tmpdir / "flask.db")
    raw_conn = open_baseline_db(tmpdir / "raw.db")
    return Bench(
        tmpdir=tmpdir,
        storage=storage,
        middleware=middleware,
        flask_app=flask_app,
        raw_conn=raw_conn,
        advertiser_id=advertiser_id,
        link_id=link_id,
        cookie_header=cookie_header,
        targets_advertiser_id=targets_id,
        targets_cookie_header=targets_cookie,
        context_advertiser_id=context_id,
        context_cookie_header=context_cookie,
    )


def build_variants(bench: Bench, heavy: int, light: int) -> list[Variant]:
    mw = bench.middleware
    adv = bench.advertiser_id
    pixel_path = f"/pixels/conversion/{adv}.gif"
    pass_env = make_environ("/shop/cart", "item=34657&qty=1", OTHER_COOKIES)
    ids = Counter("ref")  # pixel hits, Flask hits, raw rows, rejections all draw from it
    counts = bench.counts
    for key in ("pixel", "targets", "context", "flask", "raw", "reject", "click"):
        counts[key] = 0

    def hit_environs(n: int, cookie: str | None, path: str = pixel_path) -> list[Environ]:
        base = make_environ(path, "", cookie)
        out = []
        for ref in ids.take(n):
            env = base.copy()
            env["QUERY_STRING"] = pixel_query(ref)
            out.append(env)
        return out

    def pixel(n: int) -> int:
        envs = hit_environs(n, bench.cookie_header)
        counts["pixel"] += n
        return timed_each(mw, envs)

    targets_path = f"/pixels/conversion/{bench.targets_advertiser_id}.gif"
    context_path = f"/pixels/conversion/{bench.context_advertiser_id}.gif"

    def targets(n: int) -> int:
        envs = hit_environs(n, bench.targets_cookie_header, targets_path)
        counts["targets"] += n
        return timed_each(mw, envs)

    def context(n: int) -> int:
        envs = hit_environs(n, bench.context_cookie_header, context_path)
        counts["context"] += n
        return timed_each(mw, envs)

    def flask(n: int) -> int:
        envs = hit_environs(n, bench.cookie_header)
        counts["flask"] += n
        return timed_each(bench.flask_app.wsgi_app, envs)

    created_at = "2026-01-01T00:00:00.000000Z"

    def raw(n: int) -> int:
        rows = [baseline_row(adv, 1, 1, 1, ref, created_at) for ref in ids.take(n)]
        counts["raw"] += n
        return timed_raw(bench.raw_conn, rows)

    def reject(n: int) -> int:
        envs = hit_environs(n, OTHER_COOKIES)  # other cookies, no attribution cookie
        counts["reject"] += n
        return timed_each(mw, envs)

    click_base = make_environ(f"/pixels/click/{bench.link_id}", "", OTHER_COOKIES)

    def click(n: int) -> int:
        envs = [click_base.copy() for _ in range(n)]
        counts["click"] += n
        return timed_each(mw, envs)

    def bare(n: int) -> int:
        return timed_same(bare_app, pass_env, n)

    def wrapped(n: int) -> int:
        return timed_same(mw, pass_env, n)

    return [
        Variant("bare", "bare WSGI app, 43-byte GIF", light, bare),
        Variant("wrapped", "PixelMiddleware pass-through /shop/cart", light, wrapped),
        Variant("pixel", "pixel hit, PixelMiddleware (writes a row)", heavy, pixel),
        Variant("targets", "pixel hit, five delivery targets", heavy, targets),
        Variant("context", "pixel hit, five targets with Meta and GA4", heavy, context, info=True),
        Variant("raw", "raw sqlite3 INSERT+COMMIT (WAL, NORMAL)", heavy, raw),
        Variant("flask", "pixel hit, hand-written Flask view", heavy, flask),
        Variant("click", "tracking-link click (302 + cookie)", heavy, click, info=True),
        Variant("reject", "pixel rejection: no cookie", heavy, reject, info=True),
    ]


# ---------------------------------------------------------------------------- checks


def sanity_checks(bench: Bench) -> list[str]:
    """Each pixel hit must have written a transaction, each Flask hit a row, etc."""
    problems = []
    counts = bench.counts
    pixel_db = sqlite3.connect(bench.tmpdir / "pixel.db")
    try:
        tx, tx_visits = pixel_db.execute(
            "SELECT COUNT(*), COUNT(visit_id) FROM transactions WHERE source = 'pixel'"
        ).fetchone()
        rejections = pixel_db.execute(
            "SELECT COUNT(*) FROM rejections WHERE reason = 'no_attribution'"
        ).fetchone()[0]
        other_rejections = pixel_db.execute(
            "SELECT reason, COUNT(*) FROM rejections WHERE reason != 'no_attribution'"
            " GROUP BY reason"
        ).fetchall()
        visits = pixel_db.execute("SELECT COUNT(*) FROM visits").fetchone()[0]
        kept = pixel_db.execute(
            "SELECT COUNT(delivery_context) FROM transactions WHERE source = 'pixel'"
        ).fetchone()[0]
    finally:
        pixel_db.close()
    hits = counts["pixel"] + counts["targets"] + counts["context"]
    if tx != hits or tx_visits != tx:
        problems.append(f"pixel hits: {hits} calls but {tx} attributed transactions")
    if kept != counts["context"]:
        problems.append(f"conversion contexts: {counts['context']} hits kept one, {kept} stored")
    if rejections != counts["reject"]:
        problems.append(f"rejections: {counts['reject']} calls but {rejections} logged")
    if other_rejections:
        problems.append(f"unexpected rejections: {other_rejections}")
    if visits != counts["click"] + 3:  # + the setup clicks
        problems.append(f"clicks: {counts['click']} calls but {visits - 3} visits")
    flask_conn = bench.flask_app.config["BENCH_CONN"]
    flask_rows = flask_conn.execute(
        "SELECT COUNT(*) FROM conversions WHERE visit_id IS NOT NULL"
    ).fetchone()[0]
    if flask_rows != counts["flask"]:
        problems.append(f"Flask view: {counts['flask']} calls but {flask_rows} rows")
    raw_rows = bench.raw_conn.execute("SELECT COUNT(*) FROM conversions").fetchone()[0]
    if raw_rows != counts["raw"]:
        problems.append(f"raw: {counts['raw']} inserts but {raw_rows} rows")
    return problems


# --------------------------------------------------------------------------- report


def _pkg(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "?"


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def report(variants: list[Variant], rounds: int) -> None:
    by = {v.key: v for v in variants}
    print()
    print(f"{'variant':<44} {'calls/batch':>11} {'median µs':>10} {'min µs':>9} {'max µs':>9}")
    print("-" * 87)
    for v in variants:
        per = [x / 1000 for x in v.per_round_ns]
        tag = "  (info)" if v.info else ""
        print(
            f"{v.label:<44} {v.batch:>11} {statistics.median(per):>10.2f} {min(per):>9.2f}"
            f" {max(per):>9.2f}{tag}"
        )
    print("-" * 87)
    print(f"medians of {rounds} interleaved rounds; each round: one batch per variant")
    print()

    def paired(a: str, b: str, op: Callable[[float, float], float]) -> list[float]:
        return [op(x, y) for x, y in zip(by[a].per_round_ns, by[b].per_round_ns, strict=True)]

    print("targets")

    def line(n: int, text: str, value: str, target: str, ok: bool, spread: list[float]) -> None:
        digits = 3 if n == 1 else 2
        print(
            f"  {n}. {text:<40} {value:>9}   target {target:<11} {_verdict(ok)}"
            f"   [per-round median {statistics.median(spread):.{digits}f},"
            f" range {min(spread):.{digits}f}..{max(spread):.{digits}f}]"
        )

    overhead = by["wrapped"].median_us - by["bare"].median_us
    line(
        1,
        "pass-through overhead (wrapped - bare)",
        f"{overhead:.3f} µs",
        f"<= {TARGET_PASS_THROUGH_US:.2f} µs",
        overhead <= TARGET_PASS_THROUGH_US,
        [d / 1000 for d in paired("wrapped", "bare", lambda x, y: x - y)],
    )
    pixel_over_raw = by["pixel"].median_us / by["raw"].median_us
    line(
        2,
        "pixel hit / raw INSERT+COMMIT",
        f"{pixel_over_raw:.2f} x",
        f"<= {TARGET_PIXEL_OVER_RAW:.2f} x",
        pixel_over_raw <= TARGET_PIXEL_OVER_RAW,
        paired("pixel", "raw", lambda x, y: x / y),
    )
    flask_over_pixel = by["flask"].median_us / by["pixel"].median_us
    line(
        3,
        "Flask view / pixel hit (pixel x faster)",
        f"{flask_over_pixel:.2f} x",
        f">= {TARGET_FLASK_OVER_PIXEL:.2f} x",
        flask_over_pixel >= TARGET_FLASK_OVER_PIXEL,
        paired("flask", "pixel", lambda x, y: x / y),
    )
    targets_over_pixel = by["targets"].median_us / by["pixel"].median_us
    line(
        4,
        "pixel hit, five targets / no target",
        f"{targets_over_pixel:.2f} x",
        f"<= {TARGET_TARGETS_OVER_PIXEL:.2f} x",
        targets_over_pixel <= TARGET_TARGETS_OVER_PIXEL,
        paired("targets", "pixel", lambda x, y: x / y),
    )
    print()
    print("informational")
    for a, b, text in (
        ("context", "pixel", "five targets with Meta, GA4 / no target"),
        ("reject", "pixel", "rejection / pixel hit"),
        ("click", "raw", "click / raw INSERT+COMMIT"),
        ("pixel", "bare", "pixel hit / bare app"),
    ):
        print(f"     {text:<40} {by[a].median_us / by[b].median_us:8.2f} x")


# ----------------------------------------------------------------------------- main


def database_dir(base: Path, prefix: str) -> Path:
    """A new temporary directory for a benchmark's databases, under ``base``, said
    where, and whether on the project's filesystem (the caller deletes it)."""
    tmpdir = Path(tempfile.mkdtemp(prefix=prefix, dir=base.resolve()))
    same_disk = os.stat(tmpdir).st_dev == os.stat(PROJECT_DIR).st_dev
    print(
        f"databases: {tmpdir} ({'same' if same_disk else 'NOT the same'} filesystem as"
        f" the project; deleted at exit)"
    )
    return tmpdir


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Interleaved in-process benchmark of pixel-wsgi's hot paths."
    )
    parser.add_argument("--rounds", type=int, default=None, help="rounds (default 15; 3 quick)")
    parser.add_argument(
        "--quick", action="store_true", help="3 small rounds: a smoke run, not a measurement"
    )
    parser.add_argument(
        "--no-gc", action="store_true", help="disable the garbage collector during batches"
    )
    parser.add_argument(
        "--tmpdir",
        type=Path,
        default=BENCH_DIR,
        help="where the temporary database directory is created (default: benchmarks/,"
        " on the project's disk)",
    )
    args = parser.parse_args(argv)
    if args.rounds is not None and args.rounds < 1:
        parser.error("--rounds must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    rounds = args.rounds if args.rounds is not None else (3 if args.quick else 15)
    heavy, light = (200, 2000) if args.quick else (1000, 20000)
    warm_heavy, warm_light = (50, 500) if args.quick else (300, 5000)

    print("pixel-wsgi hot-path benchmark (in-process WSGI calls, interleaved rounds)")
    print(
        f"Python {platform.python_version()} ({platform.python_implementation()}),"
        f" SQLite {sqlite3.sqlite_version}, Flask {_pkg('flask')},"
        f" Werkzeug {_pkg('werkzeug')}, itsdangerous {_pkg('itsdangerous')},"
        f" pixel-wsgi {_pkg('pixel-wsgi')}"
    )
    print(f"{platform.platform()}, {os.cpu_count()} CPUs")

    tmpdir = database_dir(args.tmpdir, "hot_path-")
    print(
        f"{rounds} rounds; batches of {heavy} calls (writes) and {light} (pass-through);"
        f" warm-up {warm_heavy}/{warm_light}; GC "
        + ("disabled during batches" if args.no_gc else "enabled, gc.collect() before each batch")
    )
    bench: Bench | None = None
    gc_was_enabled = gc.isenabled()
    try:
        bench = setup(tmpdir)
        variants = build_variants(bench, heavy, light)
        for v in variants:  # warm-up: caches, prepared statements, WAL file growth
            v.run(warm_light if v.batch == light else warm_heavy)
        for r in range(rounds):
            k = r % len(variants)
            for v in variants[k:] + variants[:k]:
                gc.collect()
                if args.no_gc:
                    gc.disable()
                try:
                    elapsed = v.run(v.batch)
                finally:
                    if gc_was_enabled:
                        gc.enable()
                v.per_round_ns.append(elapsed / v.batch)
        problems = sanity_checks(bench)
        report(variants, rounds)
        if problems:
            print()
            for p in problems:
                print(f"BENCHMARK BROKEN: {p}")
            return 2
        return 0
    finally:
        if bench is not None:
            bench.close()
        shutil.rmtree(tmpdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
