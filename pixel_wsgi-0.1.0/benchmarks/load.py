"""Load test of pixel-wsgi under gunicorn: throughput, latency and correctness at concurrency.

Run from the project root::

    .venv/bin/python benchmarks/load.py            # the full matrix, several minutes
    .venv/bin/python benchmarks/load.py --quick    # one small configuration per backend

For every configuration of {sqlite, postgresql} x {2, 4 workers} x {sync, gthread
(4 threads)} it seeds a fresh store (an advertiser, a publisher, a campaign, a
link), serves ``load_app.py`` twice with the same gunicorn settings -- ``bare`` (a
WSGI app answering the same 43-byte GIF with the same headers) and ``pixel``
(``PixelMiddleware``) -- takes one attribution cookie from a real click, and then:

1. fires ``--requests`` pixel hits with unique ``reference_id`` values at
   ``--concurrency`` keep-alive connections, in rounds that alternate between the
   bare and the pixel server, so that noise from the rest of the machine lands on
   both alike; every hit carries the cookie, so every one must become a row;
2. fires 100 ``reference_id`` values 20 times each (2,000 hits, shuffled, same
   concurrency): exactly 100 rows may come of them.

Then it stops both servers and counts, through the Storage API, the rows stored
against the 200 responses, the lock errors that surfaced (non-200 answers, failed
connections, and log lines of the servers that mention a lock, a timeout or a
traceback), and the records of the outage spool when the middleware has one.

The load generator is an asyncio client on raw sockets with hand-written HTTP/1.1
requests, prepared before the clock starts; gunicorn's sync workers close every
connection (``Connection: close``), so for them each request opens a new one. The
client shares the machine's CPUs with the server: the bare app's figure is the
ceiling of this client and this server together, and the pixel's figure is read
against it (the ratio), never alone.

Every figure is printed, with PASS/FAIL lines for the correctness criteria; the
exit status is 0 either way (a report, not a gate). Exit status 2 means the
script itself broke: a server did not start, the click set no cookie, a phase did
not finish in time, or it was interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import http.client
import math
import os
import platform
import random
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Protocol

from pixel_wsgi.storage import storage_from_url

BENCH_DIR = Path(__file__).resolve().parent
PROJECT_DIR = BENCH_DIR.parent
sys.path.insert(0, str(BENCH_DIR))
# The test suite's helpers (tests/wsgi_calls.py, tests/postgres_server.py).
if str(PROJECT_DIR) not in sys.path:
    sys.path.insert(0, str(PROJECT_DIR))

import load_app  # noqa: E402  (beside this file; gunicorn imports it in its workers)

from tests.wsgi_calls import seed_campaign  # noqa: E402

SECRET_KEY = "load-benchmark-secret-0123456789abcdef"
USER_AGENT = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/126.0 Safari/537.36"
)
COOKIE_PREFIX = "pixel_wsgi_a"

BACKENDS = ("sqlite", "postgresql")
WORKER_CLASSES = ("sync", "gthread")
GTHREAD_THREADS = 4
BACKLOG = 2048

DUP_IDS = 100
DUP_REPEATS = 20

#: How long a server may take to boot all its workers, and to stop.
START_TIMEOUT = 60.0
STOP_TIMEOUT = 15.0

#: Lines of a server's log that say a write did not go through (or might not have).
LOG_PROBLEM = re.compile(
    r"locked|could not|traceback|not stored|timed? ?out|deadlock|busy|error", re.IGNORECASE
)


def _pkg(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "?"


def _load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# ------------------------------------------------------------------ the load client


@dataclass
class Fired:
    """What one phase of requests got back."""

    requests: int = 0
    statuses: Counter[int] = field(default_factory=Counter)  # 0: no answer at all
    latencies_ns: list[int] = field(default_factory=list)
    elapsed_ns: int = 0
    client_cpu_ns: int = 0  # CPU time this process (the client) spent meanwhile
    connections: int = 0  # connections opened
    retried: int = 0  # requests resent once after a reused connection closed under them
    errors: list[str] = field(default_factory=list)  # the first few failures

    def add(self, other: Fired) -> None:
        self.requests += other.requests
        self.statuses.update(other.statuses)
        self.latencies_ns.extend(other.latencies_ns)
        self.elapsed_ns += other.elapsed_ns
        self.client_cpu_ns += other.client_cpu_ns
        self.connections += other.connections
        self.retried += other.retried
        self.errors.extend(other.errors[: max(0, 5 - len(self.errors))])

    @property
    def ok(self) -> int:
        return self.statuses.get(200, 0)

    @property
    def not_ok(self) -> int:
        return self.requests - self.ok

    @property
    def client_cpu(self) -> float:
        """The share of one CPU the client used while it ran."""
        return self.client_cpu_ns / self.elapsed_ns if self.elapsed_ns else 0.0

    @property
    def per_second(self) -> float:
        return self.requests / (self.elapsed_ns / 1e9) if self.elapsed_ns else 0.0

    def percentile_ms(self, p: float) -> float:
        """Nearest-rank percentile of the latencies, in milliseconds."""
        if not self.latencies_ns:
            return math.nan
        ordered = sorted(self.latencies_ns)
        return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)] / 1e6


def _is_close(head: bytes) -> bool:
    return b"\r\nconnection: close" in head.lower()


def _content_length(head: bytes) -> int:
    lowered = head.lower()
    at = lowered.find(b"\r\ncontent-length:")
    if at < 0:
        raise ValueError("response without Content-Length")
    end = lowered.find(b"\r\n", at + 2)
    return int(lowered[at + 17 : end])


async def _drive(port: int, requests: list[bytes], fired: Fired) -> None:
    """Send ``requests`` one after another on a keep-alive connection, reconnecting
    whenever the server closes it."""
    reader: asyncio.StreamReader | None = None
    writer: asyncio.StreamWriter | None = None
    perf = time.perf_counter_ns
    latencies = fired.latencies_ns
    statuses = fired.statuses
    try:
        for request in requests:
            started = perf()
            resent = False
            while True:
                fresh = writer is None
                try:
                    if reader is None or writer is None:
                        reader, writer = await asyncio.open_connection("127.0.0.1", port)
                        fired.connections += 1
                    writer.write(request)
                    head = await reader.readuntil(b"\r\n\r\n")
                    status = int(head[9:12])
                    await reader.readexactly(_content_length(head))
                except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
                    if writer is not None:
                        writer.close()
                    reader = writer = None
                    nothing_read = not isinstance(exc, asyncio.IncompleteReadError) or (
                        exc.partial == b""
                    )
                    if not fresh and not resent and nothing_read:
                        # A reused connection the server closed before answering (an
                        # idle keep-alive timing out): resend once, as browsers do.
                        resent = True
                        fired.retried += 1
                        continue
                    statuses[0] += 1
                    if len(fired.errors) < 5:
                        fired.errors.append(f"{type(exc).__name__}: {exc}")
                    break
                latencies.append(perf() - started)
                statuses[status] += 1
                if _is_close(head):
                    writer.close()
                    reader = writer = None
                break
    finally:
        if writer is not None:
            writer.close()


async def _fire(port: int, requests: list[bytes], concurrency: int, timeout: float) -> Fired:
    fired = Fired(requests=len(requests))
    shares = [requests[i::concurrency] for i in range(concurrency)]
    started = time.perf_counter_ns()
    cpu_started = time.process_time_ns()
    tasks = [asyncio.ensure_future(_drive(port, share, fired)) for share in shares if share]
    gathered = asyncio.gather(*tasks)
    # Interrupted, it ends with its tasks' CancelledError: retrieve it, quietly.
    gathered.add_done_callback(lambda f: None if f.cancelled() else f.exception())
    try:
        await asyncio.wait_for(gathered, timeout)
    except asyncio.TimeoutError:
        raise BenchmarkBroken(
            f"{len(requests)} requests did not finish within {timeout:.0f} s"
        ) from None
    fired.elapsed_ns = time.perf_counter_ns() - started
    fired.client_cpu_ns = time.process_time_ns() - cpu_started
    return fired


def fire(port: int, requests: list[bytes], concurrency: int) -> Fired:
    """Send every request at ``concurrency`` connections; bounded in time."""
    # 20 ms a request on top of two minutes: only a hung server runs out of it.
    timeout = 120 + 0.02 * len(requests)
    # The client's own garbage collections would pause all its connections at once.
    gc.collect()
    gc.disable()
    try:
        return asyncio.run(_fire(port, requests, concurrency, timeout))
    finally:
        gc.enable()


def pixel_request(port: int, advertiser_id: int, reference_id: str, cookie: str) -> bytes:
    """A browser's GET of the conversion pixel on the shop's thank-you page."""
    query = (
        f"sale_amount=10.00&reason_code=renewal&sku_list%5B%5D=34657&reference_id={reference_id}"
    )
    return (
        f"GET /pixels/conversion/{advertiser_id}.gif?{query} HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{port}\r\n"
        f"User-Agent: {USER_AGENT}\r\n"
        "Accept: image/avif,image/webp,image/apng,image/*,*/*;q=0.8\r\n"
        "Accept-Language: en-US,en;q=0.9\r\n"
        f"Referer: http://127.0.0.1:{port}/checkout/thanks\r\n"
        "Sec-Fetch-Dest: image\r\n"
        "Sec-Fetch-Mode: no-cors\r\n"
        "Sec-Fetch-Site: same-origin\r\n"
        f"Cookie: {cookie}\r\n"
        "Connection: keep-alive\r\n"
        "\r\n"
    ).encode("ascii")


# ------------------------------------------------------------------------- servers


class BenchmarkBroken(Exception):
    """The benchmark itself could not do what it measures (exit status 2)."""


class Gunicorn:
    """``python -m gunicorn 'load_app:build()'`` on a free port of 127.0.0.1."""

    def __init__(
        self, directory: Path, mode: str, workers: int, worker_class: str, env: dict[str, str]
    ) -> None:
        self.directory = directory
        self.mode = mode
        self.workers = workers
        self.worker_class = worker_class
        self.env = {**os.environ, **env, load_app.MODE_ENV: mode}
        self.log = directory / f"gunicorn-{mode}.log"
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        command = [
            *(sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{self.port}"),
            *("--workers", str(self.workers), "--worker-class", self.worker_class),
            *("--backlog", str(BACKLOG), "--pythonpath", str(BENCH_DIR)),
            *("--log-level", "warning", "--graceful-timeout", "5"),
        ]
        if self.worker_class == "gthread":
            command += ["--threads", str(GTHREAD_THREADS)]
        return [*command, "load_app:build()"]

    def start(self) -> None:
        for _attempt in range(3):  # a free port can be taken before gunicorn binds it
            ready = Path(tempfile.mkdtemp(prefix=f"ready-{self.mode}-", dir=self.directory))
            self.env[load_app.READY_ENV] = str(ready)
            self.port = free_port()
            with self.log.open("ab") as log:
                self.process = subprocess.Popen(
                    self.command(),
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=self.env,
                    cwd=self.directory,
                    start_new_session=True,  # its own group: stopped by us, not by Ctrl-C
                )
            if self._wait_ready(ready):
                return
            self.stop()
            if "already in use" not in self.log_text():
                break
        raise BenchmarkBroken(
            f"gunicorn ({self.mode}, {self.workers} {self.worker_class}) did not start:\n"
            + self.log_text()[-3000:]
        )

    def _wait_ready(self, ready: Path) -> bool:
        """Whether every worker built its application and the port answers."""
        assert self.process is not None
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            if len(list(ready.glob("*.ready"))) >= self.workers:
                try:
                    with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                        return True
                except OSError:
                    pass
            time.sleep(0.05)
        return False

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            # The group we created at start: the master and its workers.
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=STOP_TIMEOUT)

    def log_text(self) -> str:
        try:
            return self.log.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def problem_lines(self) -> list[str]:
        return [line for line in self.log_text().splitlines() if LOG_PROBLEM.search(line)]

    def click_cookie(self, link_id: int, advertiser_id: int) -> str:
        """Follow the tracking link once, as a browser; the attribution cookie it sets."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request(
                "GET",
                f"/pixels/click/{link_id}",
                headers={
                    "User-Agent": USER_AGENT,
                    "Accept": "text/html,*/*;q=0.8",
                    "Sec-Fetch-Dest": "document",
                    "Sec-Fetch-Mode": "navigate",
                    "Sec-Fetch-Site": "cross-site",
                },
            )
            response = conn.getresponse()
            response.read()
            set_cookies = response.headers.get_all("Set-Cookie") or []
        finally:
            conn.close()
        name = f"{COOKIE_PREFIX}{advertiser_id}="
        pairs = [c.split(";", 1)[0] for c in set_cookies if c.startswith(name)]
        if response.status != 302 or len(pairs) != 1:
            raise BenchmarkBroken(
                f"the click answered {response.status} with Set-Cookie {set_cookies!r}"
            )
        return pairs[0]


# ------------------------------------------------------------------------ backends


class Backend(Protocol):
    name: str

    def new_store(self, directory: Path) -> str: ...

    def describe(self) -> str: ...


class SQLiteBackend:
    name = "sqlite"

    def new_store(self, directory: Path) -> str:
        return f"sqlite:///{directory / 'pixel.db'}"

    def describe(self) -> str:
        return f"SQLite {sqlite3.sqlite_version} (WAL; the backend's own settings)"


class PostgresBackend:
    """A throwaway cluster (``tests/postgres_server.py``), a fresh database per configuration."""

    name = "postgresql"

    def __init__(self, cluster: Any, durable: bool) -> None:
        import psycopg

        self.cluster = cluster
        with psycopg.connect(cluster.url(), autocommit=True, connect_timeout=10) as conn:
            if durable:
                for setting in ("fsync", "synchronous_commit", "full_page_writes"):
                    conn.execute(f"ALTER SYSTEM SET {setting} = on".encode())
                conn.execute(b"SELECT pg_reload_conf()")
                time.sleep(0.5)  # the reload is asynchronous
            self.settings = {
                name: str(conn.execute(f"SHOW {name}".encode()).fetchone()[0])  # type: ignore[index]
                for name in ("server_version", "fsync", "synchronous_commit")
            }

    def new_store(self, directory: Path) -> str:
        url: str = self.cluster.new_database()
        return url

    def describe(self) -> str:
        s = self.settings
        return (
            f"PostgreSQL {s['server_version']} (throwaway cluster, fsync={s['fsync']},"
            f" synchronous_commit={s['synchronous_commit']}), psycopg {_pkg('psycopg')}"
        )


@contextmanager
def postgres_backend(durable: bool) -> Iterator[PostgresBackend | str]:
    """The backend, or why there is none (a message to print)."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        yield "psycopg is not installed (pip install 'pixel-wsgi[postgres]')"
        return
    try:
        import pytest

        from tests.postgres_server import find_bin_dir, running_cluster
    except ImportError as exc:
        yield f"cannot import the test suite's cluster helper ({exc})"
        return
    if find_bin_dir() is None:
        yield "PostgreSQL is not installed (no initdb/pg_ctl on PATH or in /usr/lib/postgresql)"
        return
    with ExitStack() as stack:
        try:
            cluster = stack.enter_context(running_cluster())
        except pytest.skip.Exception as exc:
            yield f"no cluster: {exc}"
            return
        yield PostgresBackend(cluster, durable)


# ------------------------------------------------------------------ one configuration


@dataclass(frozen=True)
class Config:
    backend: str
    workers: int
    worker_class: str

    def __str__(self) -> str:
        return f"{self.backend} {self.workers}x{self.worker_class}"


@dataclass
class Result:
    config: Config
    bare: Fired = field(default_factory=Fired)
    pixel: Fired = field(default_factory=Fired)  # the timed rounds
    warmup: Fired = field(default_factory=Fired)  # pixel warm-up: rows too
    dup: Fired = field(default_factory=Fired)
    round_ratios: list[float] = field(default_factory=list)
    stored: int = 0  # rows of the warm-up and timed hits
    dup_rows: Counter[str] = field(default_factory=Counter)  # reference_id -> rows
    rejections: Counter[str] = field(default_factory=Counter)
    log_lines: list[str] = field(default_factory=list)
    bare_log_lines: list[str] = field(default_factory=list)
    spool_records: int | None = None

    @property
    def responses_200(self) -> int:
        return self.warmup.ok + self.pixel.ok

    @property
    def lock_errors(self) -> int:
        return self.warmup.not_ok + self.pixel.not_ok + self.dup.not_ok + len(self.log_lines)

    @property
    def dup_total(self) -> int:
        return sum(self.dup_rows.values())

    @property
    def stored_ok(self) -> bool:
        return self.stored == self.responses_200

    @property
    def dup_ok(self) -> bool:
        return len(self.dup_rows) == DUP_IDS and all(n == 1 for n in self.dup_rows.values())


def seed(url: str) -> tuple[int, int]:
    """An advertiser, a publisher, a campaign and its link; (advertiser id, link id)."""
    storage = storage_from_url(url)
    try:
        seeded = seed_campaign(
            storage,
            advertiser="Load Advertiser",
            publisher="Load Publisher",
            campaign="Load Campaign",
            destination="/",
        )
        return seeded.advertiser_id, seeded.link.id
    finally:
        storage.close()


def count_rows(url: str, advertiser_id: int, result: Result) -> None:
    storage = storage_from_url(url)
    try:
        for tx in storage.transactions(advertiser_id=advertiser_id):
            ref = tx.reference_id or ""
            if ref.startswith("d-"):
                result.dup_rows[ref] += 1
            else:
                result.stored += 1
        result.rejections.update(
            str(getattr(r.reason, "value", r.reason))
            for r in storage.rejections(advertiser_id=advertiser_id)
        )
    finally:
        storage.close()


def count_spool(directory: Path) -> int:
    return sum(
        len(path.read_bytes().splitlines()) for path in directory.rglob("*") if path.is_file()
    )


def run_config(
    config: Config,
    backend: Backend,
    workdir: Path,
    requests: int,
    concurrency: int,
    rounds: int,
    stack: ExitStack,
) -> Result:
    result = Result(config)
    directory = Path(tempfile.mkdtemp(prefix=f"{config.backend}-{config.workers}-", dir=workdir))
    url = backend.new_store(directory)
    advertiser_id, link_id = seed(url)
    spool_dir = directory / "spool"
    spool_dir.mkdir()
    env = {
        load_app.STORAGE_ENV: url,
        load_app.SECRET_ENV: SECRET_KEY,
        load_app.SPOOL_ENV: str(spool_dir),
    }
    bare = Gunicorn(directory, "bare", config.workers, config.worker_class, env)
    pixel = Gunicorn(directory, "pixel", config.workers, config.worker_class, env)
    stack.callback(bare.stop)
    stack.callback(pixel.stop)
    bare.start()
    pixel.start()
    cookie = pixel.click_cookie(link_id, advertiser_id)

    def hits(server: Gunicorn, refs: Sequence[str]) -> list[bytes]:
        return [pixel_request(server.port, advertiser_id, ref, cookie) for ref in refs]

    # Warm-up: every worker imports, connects, fills its caches (untimed; its rows count).
    warm = min(requests, max(2 * concurrency, requests // 20))
    fire(bare.port, hits(bare, [f"w-{i}" for i in range(warm)]), concurrency)
    result.warmup = fire(pixel.port, hits(pixel, [f"w-{i}" for i in range(warm)]), concurrency)

    sizes = [requests // rounds + (1 if r < requests % rounds else 0) for r in range(rounds)]
    first = 0
    for r, size in enumerate(sizes):
        refs = [f"m-{i}" for i in range(first, first + size)]
        first += size
        bare_requests, pixel_requests = hits(bare, refs), hits(pixel, refs)
        order = ("bare", "pixel") if r % 2 == 0 else ("pixel", "bare")
        round_results: dict[str, Fired] = {}
        for which in order:
            if which == "bare":
                round_results[which] = fire(bare.port, bare_requests, concurrency)
            else:
                round_results[which] = fire(pixel.port, pixel_requests, concurrency)
        result.bare.add(round_results["bare"])
        result.pixel.add(round_results["pixel"])
        if round_results["bare"].per_second:
            result.round_ratios.append(
                round_results["pixel"].per_second / round_results["bare"].per_second
            )

    # The duplicate check: each reference_id fired DUP_REPEATS times, all at once.
    dup_refs = [f"d-{i}" for i in range(DUP_IDS) for _ in range(DUP_REPEATS)]
    random.Random(f"{config}").shuffle(dup_refs)
    result.dup = fire(pixel.port, hits(pixel, dup_refs), concurrency)

    for server in (bare, pixel):
        if server.process is None or server.process.poll() is not None:
            raise BenchmarkBroken(
                f"gunicorn ({server.mode}, {config}) died during the run:\n"
                + server.log_text()[-3000:]
            )
    bare.stop()
    pixel.stop()
    result.log_lines = pixel.problem_lines()
    result.bare_log_lines = bare.problem_lines()
    if load_app.spool_option() is not None:
        result.spool_records = count_spool(spool_dir)
    count_rows(url, advertiser_id, result)
    return result


# --------------------------------------------------------------------------- report


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def print_progress(result: Result) -> None:
    r = result
    spool = "n/a" if r.spool_records is None else str(r.spool_records)
    ratio = r.pixel.per_second / r.bare.per_second if r.bare.per_second else math.nan
    print(
        f"  {r.config!s:<24} bare {r.bare.per_second:>7,.0f}/s  pixel {r.pixel.per_second:>7,.0f}/s"
        f" ({ratio:.2f})  200s {r.responses_200:,}  stored {r.stored:,}"
        f"  lock errors {r.lock_errors}  spool {spool}  dup rows {r.dup_total}",
        flush=True,
    )


def report(results: list[Result]) -> None:
    print()
    header = (
        f"{'configuration':<24} {'bare/s':>7} {'pixel/s':>7} {'ratio':>5} {'(rounds)':>11}"
        f" {'p50 ms':>7} {'p99 ms':>7} {'bare p50':>8} {'bare p99':>8}"
        f" {'200s':>6} {'stored':>6} {'lock err':>8} {'spool':>5} {'dup rows':>8}"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        ratio = r.pixel.per_second / r.bare.per_second if r.bare.per_second else math.nan
        spread = f"{min(r.round_ratios):.2f}..{max(r.round_ratios):.2f}" if r.round_ratios else "-"
        spool = "n/a" if r.spool_records is None else str(r.spool_records)
        print(
            f"{r.config!s:<24} {r.bare.per_second:>7,.0f} {r.pixel.per_second:>7,.0f}"
            f" {ratio:>5.2f} {spread:>11} {r.pixel.percentile_ms(50):>7.1f}"
            f" {r.pixel.percentile_ms(99):>7.1f} {r.bare.percentile_ms(50):>8.1f}"
            f" {r.bare.percentile_ms(99):>8.1f} {r.responses_200:>6} {r.stored:>6}"
            f" {r.lock_errors:>8} {spool:>5} {r.dup_total:>8}"
        )
    print("-" * len(header))
    print(
        "bare/s, pixel/s: requests per second over the timed rounds (warm-up excluded);"
        " ratio = pixel/bare over all rounds, (rounds) its range per round."
    )
    print(
        "p50/p99: latency of one request from send (or connect) to the last byte, ms."
        " 200s and stored: the warm-up and timed pixel hits, and their rows."
    )
    print(
        "lock err: non-200 pixel answers + log lines of the pixel server mentioning a lock,"
        " timeout, error or traceback. dup rows: rows from 100 ids x 20 hits (must be 100)."
    )
    if results:
        best = max(results, key=lambda r: r.bare.per_second)
        print(
            f"client ceiling: the bare app peaked at {best.bare.per_second:,.0f} req/s"
            f" ({best.config}); client and server share {os.cpu_count()} CPUs, so no"
            " pixel figure can exceed what the bare column shows for its configuration."
        )

    print()
    print("details")
    for r in results:
        bits = [
            f"client CPU {r.bare.client_cpu:.0%} of a core on bare,"
            f" {r.pixel.client_cpu:.0%} on pixel",
            f"connections {r.pixel.connections:,} (bare {r.bare.connections:,})",
            f"resent {r.pixel.retried + r.dup.retried} (bare {r.bare.retried})",
        ]
        statuses = r.warmup.statuses + r.pixel.statuses + r.dup.statuses
        bits.append(
            "statuses " + ", ".join(f"{k or 'none'}: {v}" for k, v in sorted(statuses.items()))
        )
        if r.rejections:
            bits.append(
                "rejections " + ", ".join(f"{k} {v}" for k, v in sorted(r.rejections.items()))
            )
        if r.spool_records:
            bits.append(
                f"{r.spool_records} spool records (durable, not yet stored): stored + spooled"
                f" {r.stored + r.spool_records:,} vs 200s {r.responses_200:,}"
            )
        missing = DUP_IDS - len(r.dup_rows)
        extra = sum(n - 1 for n in r.dup_rows.values() if n > 1)
        if missing or extra:
            bits.append(f"duplicate check: {missing} ids without a row, {extra} extra rows")
        if r.bare.not_ok:
            bits.append(f"BARE APP: {r.bare.not_ok} non-200")
        print(f"  {r.config!s:<24} " + "; ".join(bits))
        for line in (r.pixel.errors + r.dup.errors)[:3]:
            print(f"      client: {line}")
        for line in r.log_lines[:5]:
            print(f"      log: {line[:200]}")
        if len(r.log_lines) > 5:
            print(f"      log: ... {len(r.log_lines) - 5} more such lines")
        for line in r.bare_log_lines[:2]:
            print(f"      bare log: {line[:200]}")

    print()
    print("criteria")
    n = len(results)
    for text, ok in (
        ("stored rows == 200 responses", [r.stored_ok for r in results]),
        ("0 lock errors surfaced", [r.lock_errors == 0 for r in results]),
        (f"0 duplicates ({DUP_IDS} ids x {DUP_REPEATS} hits)", [r.dup_ok for r in results]),
    ):
        failing = [str(r.config) for r, good in zip(results, ok, strict=True) if not good]
        suffix = f"  failing: {', '.join(failing)}" if failing else ""
        print(f"  {text:<36} {_verdict(all(ok))}  {sum(ok)}/{n} configurations{suffix}")


# ----------------------------------------------------------------------------- main


def _csv(kind: Any, allowed: Sequence[str] | None = None) -> Any:
    def parse(text: str) -> list[Any]:
        values = [kind(v.strip()) for v in text.split(",") if v.strip()]
        if not values:
            raise argparse.ArgumentTypeError("at least one value")
        if allowed is not None:
            bad = [v for v in values if v not in allowed]
            if bad:
                raise argparse.ArgumentTypeError(f"unknown {bad}; choose from {list(allowed)}")
        return values

    return parse


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Load test of pixel-wsgi under gunicorn (a report, not a gate)."
    )
    parser.add_argument("--requests", type=int, default=None, help="timed pixel hits (20000)")
    parser.add_argument("--concurrency", type=int, default=64, help="connections (64)")
    parser.add_argument(
        "--backends", type=_csv(str, BACKENDS), default=list(BACKENDS), help="sqlite,postgresql"
    )
    parser.add_argument("--workers", type=_csv(int), default=[2, 4], help="2,4")
    parser.add_argument(
        "--worker-classes",
        type=_csv(str, WORKER_CLASSES),
        default=list(WORKER_CLASSES),
        help="sync,gthread",
    )
    parser.add_argument(
        "--rounds", type=int, default=None, help="alternating bare/pixel rounds (4; 2 quick)"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="1000 hits, one configuration per backend: a smoke run, not a measurement",
    )
    parser.add_argument(
        "--pg-durable",
        action="store_true",
        help="turn fsync and synchronous_commit on in the throwaway cluster (off by default)",
    )
    parser.add_argument(
        "--tmpdir",
        type=Path,
        default=Path(tempfile.gettempdir()),
        help="where the temporary directory goes (deleted at exit)",
    )
    args = parser.parse_args(argv)
    if args.requests is None:
        args.requests = 1000 if args.quick else 20000
    if args.rounds is None:
        args.rounds = 2 if args.quick else 4
    if args.requests < 1 or args.concurrency < 1 or args.rounds < 1:
        parser.error("--requests, --concurrency and --rounds must be at least 1")
    if any(w < 1 for w in args.workers):
        parser.error("--workers must be at least 1")
    if args.quick:
        args.workers = args.workers[:1]
        args.worker_classes = args.worker_classes[:1]
    return args


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _raise_interrupt)  # stop the servers on kill, too
    print("pixel-wsgi load test (gunicorn, real sockets, asyncio keep-alive client)")
    print(
        f"Python {platform.python_version()}, gunicorn {_pkg('gunicorn')},"
        f" pixel-wsgi {_pkg('pixel-wsgi')}; {platform.platform()}, {os.cpu_count()} CPUs,"
        f" load average {_load_average()}"
    )
    spool = load_app.spool_option()
    print(
        f"{args.requests:,} timed pixel hits (unique reference_id) in {args.rounds} rounds"
        f" alternating with the bare app, concurrency {args.concurrency}, backlog {BACKLOG};"
        f" then {DUP_IDS} ids x {DUP_REPEATS} hits; outage spool: "
        + (f"PixelMiddleware({spool}=...)" if spool else "n/a (PixelMiddleware has no option)"),
        flush=True,
    )
    workdir = Path(tempfile.mkdtemp(prefix="pixel-load-", dir=args.tmpdir.resolve()))
    results: list[Result] = []
    try:
        with ExitStack() as stack:
            for backend_name in args.backends:
                backend: Backend
                if backend_name == "sqlite":
                    backend = SQLiteBackend()
                else:
                    pg = stack.enter_context(postgres_backend(args.pg_durable))
                    if isinstance(pg, str):
                        print(f"{backend_name}: SKIPPED: {pg}", flush=True)
                        continue
                    backend = pg
                print(f"{backend_name}: {backend.describe()}", flush=True)
                for workers in args.workers:
                    for worker_class in args.worker_classes:
                        config = Config(backend_name, workers, worker_class)
                        with ExitStack() as servers:
                            result = run_config(
                                config,
                                backend,
                                workdir,
                                args.requests,
                                args.concurrency,
                                args.rounds,
                                servers,
                            )
                        results.append(result)
                        print_progress(result)
        print(f"load average after: {_load_average()}")
        report(results)
        if not results:
            print("BENCHMARK BROKEN: no backend could be run")
            return 2
        broken = [str(r.config) for r in results if r.bare.not_ok]
        if broken:
            # The bare app cannot fail: the client or the machine did.
            print(f"BENCHMARK BROKEN: the bare app did not answer 200 every time: {broken}")
            return 2
        return 0
    except BenchmarkBroken as exc:
        print(f"BENCHMARK BROKEN: {exc}", flush=True)
        return 2
    except KeyboardInterrupt:
        print("interrupted: servers stopped", flush=True)
        return 2
    except Exception:
        traceback.print_exc()
        print("BENCHMARK BROKEN: the script failed (traceback above)", flush=True)
        return 2
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
