"""Load test of pixel-wsgi under gunicorn: throughput, latency and correctness at concurrency.

Run from the project root::

    .venv/bin/python benchmarks/load.py            # the full matrix, several minutes
    .venv/bin/python benchmarks/load.py --quick    # one small configuration per backend

For every configuration of {sqlite, postgresql} x {2, 4 workers} x {sync, gthread
(4 threads)} it serves ``load_app.py`` three times with the same gunicorn settings
(``--modes``): ``bare`` (a WSGI app answering the same 43-byte GIF with the same
headers), ``pixel`` (``PixelMiddleware``, the default synchronous mode) and
``queued`` (``PixelMiddleware(..., ingest="queued")``: the pixel appends to a log,
an applier thread per worker applies it). Each pixel server gets a fresh store (an
advertiser, a publisher, a campaign, a link) and one attribution cookie from a real
click on it; then:

1. it fires ``--requests`` hits per server with unique ``reference_id`` values at
   ``--concurrency`` keep-alive connections, in rounds that fire every server once,
   in an order that rotates from round to round, so that noise from the rest of the
   machine lands on all alike; every hit carries the cookie, so every one must
   become a row. After the queued server's share of a round it reads that store
   every 10 ms until the round's rows are all there: the apply lag;
2. it fires 100 ``reference_id`` values 20 times each (2,000 hits, shuffled, same
   concurrency) at each pixel server: exactly 100 rows may come of them.

It waits for the queued log to be applied (what the applier leaves, ``replay()``
applies once the servers stopped, and the lag criterion fails), stops the servers
and counts, through the Storage API, the rows stored against the 200 responses, the
lock errors that surfaced (non-200 answers, failed connections, and log lines of the
servers that mention a lock, a timeout, a failure or a traceback), and the records
left in each spool directory.

The load generator is an asyncio client on raw sockets with hand-written HTTP/1.1
requests, prepared before the clock starts; gunicorn's sync workers close every
connection (``Connection: close``), so for them each request opens a new one. The
client shares the machine's CPUs with the server: the bare app's figure is the
ceiling of this client and this server together, and the pixel's figure is read
against it (the ratio), never alone.

Every figure is printed, with PASS/FAIL lines for the issue's criteria (throughput
and p99 ratios, apply lag, rows, lock errors, duplicates); the exit status is 0
either way (a report, not a gate). Exit status 2 means the script itself broke: a
server did not start, the click set no cookie, a phase did not finish in time, or it
was interrupted.
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
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Protocol

from pixel_wsgi.outage.replay import replay
from pixel_wsgi.outage.spool import Spool
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
#: The servers compared in every configuration: the GIF app, the default
#: (synchronous) PixelMiddleware, and PixelMiddleware(ingest="queued").
MODES = ("bare", "pixel", "queued")
WORKER_CLASSES = ("sync", "gthread")
GTHREAD_THREADS = 4
BACKLOG = 2048

DUP_IDS = 100
DUP_REPEATS = 20

#: The issue's targets: the synchronous pixel on SQLite (sync x2, gthread x2) at this
#: share of the bare app's requests per second, with a p99 at most this multiple of
#: bare's; on PostgreSQL at this share; the queued mode (sync x2) at this share, its
#: rows in the store within LAG_LIMIT seconds of a round's last response.
SYNC_RATIO = 0.75
SYNC_P99 = 1.5
PG_RATIO = 0.5
QUEUED_RATIO = 0.9
LAG_LIMIT = 1.0

#: How often the queued server's store is read while its rows arrive, and how long
#: they may take before the applier counts as not having caught up.
POLL_INTERVAL = 0.01
APPLY_TIMEOUT = 30.0

#: How long a server may take to boot all its workers, and to stop.
START_TIMEOUT = 60.0
STOP_TIMEOUT = 15.0

#: Lines of a server's log that say a write did not go through (or might not have).
LOG_PROBLEM = re.compile(
    r"locked|could not|traceback|not stored|timed? ?out|deadlock|busy|error|fail|lost",
    re.IGNORECASE,
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
    #: CPU time of the server's processes (gunicorn, its workers and their threads:
    #: the queued applier too) and of the database server's, from the phase's first
    #: request until its rows were stored (None: not measurable, no /proc)
    server_cpu_ns: int | None = 0
    database_cpu_ns: int | None = 0
    connections: int = 0  # connections opened
    retried: int = 0  # requests resent once after a reused connection closed under them
    errors: list[str] = field(default_factory=list)  # the first few failures
    last_ns: int = 0  # perf_counter_ns() of the last response read

    def add(self, other: Fired) -> None:
        self.requests += other.requests
        self.statuses.update(other.statuses)
        self.latencies_ns.extend(other.latencies_ns)
        self.elapsed_ns += other.elapsed_ns
        self.client_cpu_ns += other.client_cpu_ns
        self.server_cpu_ns = _add_or_none(self.server_cpu_ns, other.server_cpu_ns)
        self.database_cpu_ns = _add_or_none(self.database_cpu_ns, other.database_cpu_ns)
        self.connections += other.connections
        self.retried += other.retried
        self.errors.extend(other.errors[: max(0, 5 - len(self.errors))])
        self.last_ns = max(self.last_ns, other.last_ns)

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

    def cpu_per_request_us(self) -> tuple[float, float, float] | None:
        """Microseconds of CPU per request: server, database, client (None: unknown)."""
        if not self.requests or self.server_cpu_ns is None or self.database_cpu_ns is None:
            return None
        per = 1e3 * self.requests
        return (self.server_cpu_ns / per, self.database_cpu_ns / per, self.client_cpu_ns / per)

    def percentile_ms(self, p: float) -> float:
        """Nearest-rank percentile of the latencies, in milliseconds."""
        if not self.latencies_ns:
            return math.nan
        ordered = sorted(self.latencies_ns)
        return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)] / 1e6


def _add_or_none(a: int | None, b: int | None) -> int | None:
    return None if a is None or b is None else a + b


def _spent(before: int | None, after: int | None) -> int | None:
    return None if before is None or after is None else after - before


# ------------------------------------------------------------------ CPU accounting


def _stat_fields(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            # The name, in parentheses, may hold spaces: the fields follow its last ")".
            return f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None  # gone, or no /proc


def process_tree_cpu_ns(root: int) -> int | None:
    """CPU time (user and system, every thread) of ``root`` and of its descendants
    alive now, each with the children it reaped (a PostgreSQL connection's backend that
    ended): from Linux's ``/proc``. None where there is none."""
    if _stat_fields(root) is None:
        return None  # gone, or no /proc
    children: dict[int, list[int]] = {}
    ticks_of: dict[int, int] = {}  # every process's own and reaped children's
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat_fields(int(entry))
            if fields is not None:
                children.setdefault(int(fields[1]), []).append(int(entry))
                # utime, stime, cutime, cstime
                ticks_of[int(entry)] = sum(int(f) for f in fields[11:15])
    ticks, pending = 0, [root]
    while pending:
        pid = pending.pop()
        ticks += ticks_of.get(pid, 0)
        pending += children.get(pid, [])
    return ticks * 1_000_000_000 // os.sysconf("SC_CLK_TCK")


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
                answered = fired.last_ns = perf()
                latencies.append(answered - started)
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

    def cpu_ns(self) -> int | None:
        """The CPU time gunicorn and its workers have used so far (None: unknown)."""
        return None if self.process is None else process_tree_cpu_ns(self.process.pid)

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

    def cpu_ns(self) -> int | None:
        """The CPU time the database's own server has used so far (None: unknown)."""


class SQLiteBackend:
    name = "sqlite"

    def new_store(self, directory: Path) -> str:
        return f"sqlite:///{directory / 'pixel.db'}"

    def cpu_ns(self) -> int | None:
        return 0  # a library in the workers: counted as theirs

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

    def cpu_ns(self) -> int | None:
        try:  # its first line: the postmaster's pid
            postmaster = int((self.cluster.data / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None
        return process_tree_cpu_ns(postmaster)

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
class ModeResult:
    """What one server of a configuration (``bare``, ``pixel`` or ``queued``) did."""

    mode: str
    timed: Fired = field(default_factory=Fired)  # the timed rounds
    warmup: Fired = field(default_factory=Fired)  # warm-up: rows too
    dup: Fired = field(default_factory=Fired)
    round_ratios: list[float] = field(default_factory=list)  # req/s over bare's, per round
    #: queued: seconds from a round's last response until all its rows were in the
    #: store, per round (None: not within APPLY_TIMEOUT)
    round_lags: list[float | None] = field(default_factory=list)
    #: queued: whether the applier emptied the log within APPLY_TIMEOUT after the run
    applier_finished: bool = True
    replayed: int = 0  # queued: events the benchmark's own replay() applied afterwards
    stored: int = 0  # rows of the warm-up and timed hits
    dup_rows: Counter[str] = field(default_factory=Counter)  # reference_id -> rows
    rejections: Counter[str] = field(default_factory=Counter)
    log_lines: list[str] = field(default_factory=list)
    spool_records: int | None = None  # records left in the spool once the servers stopped
    quarantined: int = 0

    @property
    def stores(self) -> bool:
        """Whether this mode's hits must become rows (every mode but ``bare``)."""
        return self.mode != "bare"

    @property
    def responses_200(self) -> int:
        return self.warmup.ok + self.timed.ok

    @property
    def lock_errors(self) -> int:
        return self.warmup.not_ok + self.timed.not_ok + self.dup.not_ok + len(self.log_lines)

    @property
    def dup_total(self) -> int:
        return sum(self.dup_rows.values())

    @property
    def stored_ok(self) -> bool:
        return self.stored == self.responses_200

    @property
    def dup_ok(self) -> bool:
        return len(self.dup_rows) == DUP_IDS and all(n == 1 for n in self.dup_rows.values())

    @property
    def max_lag(self) -> float:
        """The longest apply lag of a round, in seconds (inf: a round never caught up)."""
        if any(lag is None for lag in self.round_lags):
            return math.inf
        return max((lag for lag in self.round_lags if lag is not None), default=math.nan)

    @property
    def lag_ok(self) -> bool:
        return self.applier_finished and self.max_lag < LAG_LIMIT


@dataclass
class Result:
    config: Config
    modes: dict[str, ModeResult]

    @property
    def bare(self) -> ModeResult:
        return self.modes["bare"]

    def storing(self) -> list[ModeResult]:
        return [m for m in self.modes.values() if m.stores]

    def ratio(self, mode: str) -> float:
        """The mode's requests per second over the bare app's, over all rounds."""
        bare = self.bare.timed.per_second
        return self.modes[mode].timed.per_second / bare if bare else math.nan

    def p99_ratio(self, mode: str) -> float:
        bare = self.bare.timed.percentile_ms(99)
        return self.modes[mode].timed.percentile_ms(99) / bare if bare else math.nan


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


def count_rows(url: str, advertiser_id: int, result: ModeResult) -> None:
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
    """Records waiting in the spool's files (live, or taken by a replay)."""
    return sum(len(path.read_bytes().splitlines()) for path in Spool(directory).files())


class RowWatcher:
    """Reads a store's new rows every :data:`POLL_INTERVAL` seconds (a keyset cursor,
    so a poll costs only what was committed since the last): the queued mode's lag."""

    def __init__(self, url: str, advertiser_id: int) -> None:
        self.storage = storage_from_url(url)
        self.advertiser_id = advertiser_id
        self.after = 0  # the last transaction_id read
        self.seen: set[str] = set()  # reference_ids with a row

    def poll(self) -> list[str]:
        """The reference_ids of the rows committed since the last poll."""
        new: list[str] = []
        for tx in self.storage.transactions(
            advertiser_id=self.advertiser_id, after_transaction_id=self.after
        ):
            self.after = tx.transaction_id
            new.append(tx.reference_id or "")
        self.seen.update(new)
        return new

    def wait_for(self, refs: Sequence[str], since_ns: int) -> float | None:
        """Seconds from ``since_ns`` (``perf_counter_ns``) until a row of every one of
        ``refs`` is in the store; None when they were not all there within
        :data:`APPLY_TIMEOUT`."""
        missing = set(refs) - self.seen
        deadline = time.monotonic() + APPLY_TIMEOUT
        while True:
            missing.difference_update(self.poll())
            if not missing:
                return max(0, time.perf_counter_ns() - since_ns) / 1e9
            if time.monotonic() >= deadline:
                return None
            time.sleep(POLL_INTERVAL)

    def wait_applied(self, spool: Spool) -> bool:
        """Whether the log emptied (``Spool.pending() == 0``) and the row count stopped
        growing within :data:`APPLY_TIMEOUT`."""
        deadline = time.monotonic() + APPLY_TIMEOUT
        while True:
            drained = spool.pending() == 0  # before the poll: what it counted is committed
            if not self.poll() and drained:
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(POLL_INTERVAL)

    def close(self) -> None:
        self.storage.close()


@dataclass
class ModeServer:
    """One mode's gunicorn, with its own store, spool directory and attribution cookie."""

    mode: str
    gunicorn: Gunicorn
    url: str = ""  # the store ("" for the bare app, which has none)
    spool_dir: Path | None = None
    advertiser_id: int = 1
    link_id: int = 0
    cookie: str = ""
    watcher: RowWatcher | None = None  # queued: its store, read as the applier fills it

    def hits(self, refs: Sequence[str]) -> list[bytes]:
        port = self.gunicorn.port
        return [pixel_request(port, self.advertiser_id, ref, self.cookie) for ref in refs]


def start_server(
    mode: str, config: Config, backend: Backend, directory: Path, stack: ExitStack
) -> ModeServer:
    """A fresh store (not for ``bare``) and a started gunicorn serving ``mode``."""
    home = directory / mode
    home.mkdir()
    env = {load_app.SECRET_ENV: SECRET_KEY}
    url, spool_dir, advertiser_id, link_id = "", None, 1, 0
    if mode != "bare":
        url = backend.new_store(home)
        advertiser_id, link_id = seed(url)
        spool_dir = home / "spool"
        spool_dir.mkdir()
        env.update({load_app.STORAGE_ENV: url, load_app.SPOOL_ENV: str(spool_dir)})
    gunicorn = Gunicorn(home, mode, config.workers, config.worker_class, env)
    server = ModeServer(mode, gunicorn, url, spool_dir, advertiser_id, link_id)
    if mode == "queued":
        server.watcher = RowWatcher(server.url, server.advertiser_id)
        stack.callback(server.watcher.close)
    stack.callback(server.gunicorn.stop)
    server.gunicorn.start()
    return server


def warm_up(
    servers: dict[str, ModeServer], result: Result, requests: int, concurrency: int
) -> None:
    """Every worker imports, connects, fills its caches (untimed; its rows count).
    The queued store is let catch up, so that the timed rounds start from an empty log."""
    warm = min(requests, max(2 * concurrency, requests // 20))
    refs = [f"w-{i}" for i in range(warm)]
    for mode, server in servers.items():
        fired = fire(server.gunicorn.port, server.hits(refs), concurrency)
        result.modes[mode].warmup = fired
        if server.watcher is not None:
            server.watcher.wait_for(refs, fired.last_ns)


def timed_rounds(
    servers: dict[str, ModeServer],
    backend: Backend,
    result: Result,
    requests: int,
    concurrency: int,
    rounds: int,
) -> None:
    """``requests`` hits per mode in ``rounds`` rounds; each round fires every mode
    once, in an order that rotates from round to round. After the queued server's
    share of a round, its apply lag: until every row of the round is in the store.
    The CPU the server and the database spent runs until then too."""
    modes = list(servers)
    sizes = [requests // rounds + (1 if r < requests % rounds else 0) for r in range(rounds)]
    first = 0
    for r, size in enumerate(sizes):
        refs = [f"m-{i}" for i in range(first, first + size)]
        first += size
        prepared = {mode: server.hits(refs) for mode, server in servers.items()}
        fired: dict[str, Fired] = {}
        for mode in modes[r % len(modes) :] + modes[: r % len(modes)]:
            gunicorn = servers[mode].gunicorn
            server_cpu, database_cpu = gunicorn.cpu_ns(), backend.cpu_ns()
            fired[mode] = fire(gunicorn.port, prepared.pop(mode), concurrency)
            watcher = servers[mode].watcher
            if watcher is not None:
                result.modes[mode].round_lags.append(watcher.wait_for(refs, fired[mode].last_ns))
            fired[mode].server_cpu_ns = _spent(server_cpu, gunicorn.cpu_ns())
            fired[mode].database_cpu_ns = _spent(database_cpu, backend.cpu_ns())
        bare_rate = fired["bare"].per_second
        for mode, round_fired in fired.items():
            result.modes[mode].timed.add(round_fired)
            if bare_rate:
                result.modes[mode].round_ratios.append(round_fired.per_second / bare_rate)


def duplicate_check(servers: dict[str, ModeServer], result: Result, concurrency: int) -> None:
    """Each of DUP_IDS reference_ids fired DUP_REPEATS times, shuffled, all at once."""
    dup_refs = [f"d-{i}" for i in range(DUP_IDS) for _ in range(DUP_REPEATS)]
    random.Random(f"{result.config}").shuffle(dup_refs)
    for mode, server in servers.items():
        if server.url:
            result.modes[mode].dup = fire(server.gunicorn.port, server.hits(dup_refs), concurrency)


def apply_leftovers(server: ModeServer, result: ModeResult) -> None:
    """Replay what the queued server's applier left in its log (once it has stopped):
    those rows count as stored; the lag criterion fails."""
    assert server.spool_dir is not None
    if not Spool(server.spool_dir).pending():
        return
    result.applier_finished = False
    storage = storage_from_url(server.url)
    try:
        summary = replay(Spool(server.spool_dir), storage)
    finally:
        storage.close()
    result.replayed = summary.applied
    if summary.stopped:
        raise BenchmarkBroken(f"replay() of the queued log stopped: {summary.stopped}")


def run_config(
    config: Config,
    backend: Backend,
    workdir: Path,
    modes: Sequence[str],
    requests: int,
    concurrency: int,
    rounds: int,
    stack: ExitStack,
) -> Result:
    directory = Path(tempfile.mkdtemp(prefix=f"{config.backend}-{config.workers}-", dir=workdir))
    servers = {mode: start_server(mode, config, backend, directory, stack) for mode in modes}
    for server in servers.values():
        if server.url:
            server.cookie = server.gunicorn.click_cookie(server.link_id, server.advertiser_id)
    # The bare app ignores them, but its requests are the same bytes as the pixel's.
    storing = [server for server in servers.values() if server.url]
    servers["bare"].cookie = storing[0].cookie if storing else f"{COOKIE_PREFIX}1={'x' * 80}"

    result = Result(config, {mode: ModeResult(mode) for mode in modes})
    warm_up(servers, result, requests, concurrency)
    timed_rounds(servers, backend, result, requests, concurrency, rounds)
    duplicate_check(servers, result, concurrency)
    for mode, server in servers.items():
        if server.watcher is not None and server.spool_dir is not None:
            result.modes[mode].applier_finished = server.watcher.wait_applied(
                Spool(server.spool_dir)
            )

    for server in servers.values():
        process = server.gunicorn.process
        if process is None or process.poll() is not None:
            raise BenchmarkBroken(
                f"gunicorn ({server.mode}, {config}) died during the run:\n"
                + server.gunicorn.log_text()[-3000:]
            )
    for server in servers.values():
        server.gunicorn.stop()
    for mode, server in servers.items():
        mode_result = result.modes[mode]
        mode_result.log_lines = server.gunicorn.problem_lines()
        if server.spool_dir is None:
            continue
        if load_app.spool_option() is not None:
            mode_result.spool_records = count_spool(server.spool_dir)
            mode_result.quarantined = len(Spool(server.spool_dir).quarantined())
        if server.watcher is not None:
            apply_leftovers(server, mode_result)
        count_rows(server.url, server.advertiser_id, mode_result)
    return result


# --------------------------------------------------------------------------- report


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def _ms(seconds: float | None) -> str:
    """A lag in milliseconds; ``>`` the time limit for one that never ended."""
    if seconds is None or math.isinf(seconds):
        return f">{APPLY_TIMEOUT * 1000:.0f}"
    return "-" if math.isnan(seconds) else f"{seconds * 1000:.0f}"


def print_progress(result: Result) -> None:
    bits = [f"bare {result.bare.timed.per_second:>7,.0f}/s"]
    for m in result.storing():
        text = (
            f"{m.mode} {m.timed.per_second:>7,.0f}/s ({result.ratio(m.mode):.2f})"
            f" 200s {m.responses_200:,} stored {m.stored:,} lock errors {m.lock_errors}"
            f" dup rows {m.dup_total}"
        )
        if m.mode == "queued":
            text += f" lag {_ms(m.max_lag)} ms" + ("" if m.applier_finished else " (UNFINISHED)")
        bits.append(text)
    print(f"  {result.config!s:<18} " + " | ".join(bits), flush=True)


def _table_line(r: Result, m: ModeResult) -> str:
    rate = f"{m.timed.per_second:>7,.0f}"
    p50, p99 = m.timed.percentile_ms(50), m.timed.percentile_ms(99)
    if not m.stores:
        return (
            f"{r.config!s:<18} {m.mode:<6} {rate} {'':>5} {'':>11} {p50:>7.1f} {p99:>7.1f}"
            f" {'':>8} {m.responses_200:>6} {'-':>6} {'-':>8} {'-':>5} {'-':>8} {'-':>7}"
        )
    spread = f"{min(m.round_ratios):.2f}..{max(m.round_ratios):.2f}" if m.round_ratios else "-"
    spool = "n/a" if m.spool_records is None else str(m.spool_records)
    lag = _ms(m.max_lag) if m.mode == "queued" else "-"
    return (
        f"{r.config!s:<18} {m.mode:<6} {rate} {r.ratio(m.mode):>5.2f} {spread:>11}"
        f" {p50:>7.1f} {p99:>7.1f} {r.p99_ratio(m.mode):>8.2f} {m.responses_200:>6}"
        f" {m.stored:>6} {m.lock_errors:>8} {spool:>5} {m.dup_total:>8} {lag:>7}"
    )


def print_table(results: list[Result]) -> None:
    header = (
        f"{'configuration':<18} {'mode':<6} {'req/s':>7} {'ratio':>5} {'(rounds)':>11}"
        f" {'p50 ms':>7} {'p99 ms':>7} {'p99/bare':>8} {'200s':>6} {'stored':>6}"
        f" {'lock err':>8} {'spool':>5} {'dup rows':>8} {'lag ms':>7}"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        for m in r.modes.values():
            print(_table_line(r, m))
    print("-" * len(header))
    print(
        "req/s: requests per second over the timed rounds (warm-up excluded); ratio = req/s"
        " over bare's over all rounds, (rounds) its range per round."
    )
    print(
        "p50/p99: latency of one request from send (or connect) to the last byte, ms;"
        " p99/bare: p99 over bare's p99. 200s and stored: the warm-up and timed hits, and"
        " their rows."
    )
    print(
        "lock err: non-200 answers + log lines of the server mentioning a lock, timeout,"
        " failure, error or traceback. spool: records left in the spool directory once the"
        " servers stopped."
    )
    print(
        f"dup rows: rows from {DUP_IDS} ids x {DUP_REPEATS} hits (must be {DUP_IDS})."
        f" lag ms (queued): the longest, over rounds, from a round's last response until"
        f" all its rows were in the store (polled every {POLL_INTERVAL * 1000:.0f} ms)."
    )
    if results:
        best = max(results, key=lambda r: r.bare.timed.per_second)
        print(
            f"client ceiling: the bare app peaked at {best.bare.timed.per_second:,.0f} req/s"
            f" ({best.config}); client and server share {os.cpu_count()} CPUs, so no"
            " pixel figure can exceed what the bare line shows for its configuration."
        )
    print(
        "CPU per request (details, from /proc): gunicorn's processes (the queued applier"
        " included), the database server's and the client's, from a round's first request"
        " until its rows were stored; (n.nn): bare's total over the mode's, the ratio the"
        " CPUs allow when they are what runs out."
    )


def _mode_details(r: Result, m: ModeResult) -> list[str]:
    """The details of one storing mode, as ``; ``-joined bits and indented lines."""
    bits = [
        f"resent {m.timed.retried + m.dup.retried + m.warmup.retried}",
        f"connections {m.timed.connections:,}",
    ]
    statuses = m.warmup.statuses + m.timed.statuses + m.dup.statuses
    bits.append("statuses " + ", ".join(f"{k or 'none'}: {v}" for k, v in sorted(statuses.items())))
    if m.rejections:
        bits.append("rejections " + ", ".join(f"{k} {v}" for k, v in sorted(m.rejections.items())))
    if m.mode == "queued":
        bits.append("lag per round " + ", ".join(_ms(lag) for lag in m.round_lags) + " ms")
        if not m.applier_finished:
            bits.append(
                f"APPLIER UNFINISHED: the log was not empty {APPLY_TIMEOUT:.0f} s after the"
                f" last hit; replay() applied {m.replayed} events left once the servers stopped"
            )
    elif m.spool_records:
        bits.append(
            f"{m.spool_records} spool records (durable, not yet stored): stored + spooled"
            f" {m.stored + m.spool_records:,} vs 200s {m.responses_200:,}"
        )
    if m.quarantined:
        bits.append(f"{m.quarantined} records QUARANTINED")
    missing = DUP_IDS - len(m.dup_rows)
    extra = sum(n - 1 for n in m.dup_rows.values() if n > 1)
    if missing or extra:
        bits.append(f"duplicate check: {missing} ids without a row, {extra} extra rows")
    lines = [f"    {m.mode}: " + "; ".join(bits)]
    lines += [f"      client: {line}" for line in (m.timed.errors + m.dup.errors)[:3]]
    lines += [f"      log: {line[:200]}" for line in m.log_lines[:5]]
    if len(m.log_lines) > 5:
        lines.append(f"      log: ... {len(m.log_lines) - 5} more such lines")
    return lines


def _cpu_line(r: Result) -> str | None:
    """CPU per request of each mode, and the ratio to bare its CPU alone allows."""
    bare = r.bare.timed.cpu_per_request_us()
    if bare is None:
        return None
    parts = []
    for m in r.modes.values():
        spent = m.timed.cpu_per_request_us()
        if spent is None:
            return None
        server, database, client = spent
        total = server + database + client
        part = f"{m.mode} {server:.0f} + {database:.0f} + {client:.0f} = {total:.0f}"
        if m.stores and total:
            part += f" ({sum(bare) / total:.2f})"
        parts.append(part)
    return "CPU per request, us (server + database + client = total): " + "; ".join(parts)


def print_details(results: list[Result]) -> None:
    print("details")
    for r in results:
        cpu = ", ".join(f"{m.timed.client_cpu:.0%} on {m.mode}" for m in r.modes.values())
        bare = r.bare
        bits = [
            f"client CPU {cpu} (share of a core)",
            f"bare connections {bare.timed.connections:,}",
        ]
        bits.append(f"bare resent {bare.timed.retried}")
        if bare.timed.not_ok or bare.warmup.not_ok:
            bits.append(f"BARE APP: {bare.timed.not_ok + bare.warmup.not_ok} non-200")
        print(f"  {r.config!s:<18} " + "; ".join(bits))
        cpu_line = _cpu_line(r)
        if cpu_line is not None:
            print(f"    {cpu_line}")
        for line in bare.log_lines[:2]:
            print(f"      bare log: {line[:200]}")
        for m in r.storing():
            for line in _mode_details(r, m):
                print(line)


@dataclass
class Criterion:
    """One line of the criteria: a rule over some (configuration, mode) runs."""

    text: str
    runs: list[tuple[Result, ModeResult]]
    ok: Callable[[Result, ModeResult], bool]
    figure: Callable[[Result, ModeResult], str] | None = None  # shown for every run
    scope: str = ""  # what it needs, shown when no run is in scope

    def line(self) -> str:
        verdicts = [self.ok(r, m) for r, m in self.runs]
        if not self.runs:
            return f"  {self.text:<62} n/a   no run measured ({self.scope})"
        out = f"  {self.text:<62} {_verdict(all(verdicts))}  {sum(verdicts)}/{len(verdicts)} runs"
        if self.figure is not None:
            out += "  " + ", ".join(
                f"{r.config} {m.mode} {self.figure(r, m)}" for r, m in self.runs
            )
        else:
            failing = [
                f"{r.config} {m.mode}"
                for (r, m), ok in zip(self.runs, verdicts, strict=True)
                if not ok
            ]
            if failing:
                out += f"  failing: {', '.join(failing)}"
        return out


def criteria(results: list[Result]) -> list[Criterion]:
    """The issue's criteria, over the runs each applies to."""

    def runs(
        mode: str, keep: Callable[[Config], bool] = lambda c: True
    ) -> list[tuple[Result, ModeResult]]:
        return [(r, r.modes[mode]) for r in results if mode in r.modes and keep(r.config)]

    def sync_sqlite_x2(c: Config) -> bool:
        return c.backend == "sqlite" and c.workers == 2

    def ratio(r: Result, m: ModeResult) -> str:
        return f"{r.ratio(m.mode):.2f}"

    def p99(r: Result, m: ModeResult) -> str:
        return f"{r.p99_ratio(m.mode):.2f}"

    storing = runs("pixel") + runs("queued")
    return [
        Criterion(
            f"pixel >= {SYNC_RATIO} x bare req/s (SQLite, sync x2 and gthread x2)",
            runs("pixel", sync_sqlite_x2),
            lambda r, m: r.ratio(m.mode) >= SYNC_RATIO,
            ratio,
            "sqlite, --workers 2, --modes with pixel",
        ),
        Criterion(
            f"pixel p99 <= {SYNC_P99} x bare p99 (SQLite, sync x2 and gthread x2)",
            runs("pixel", sync_sqlite_x2),
            lambda r, m: r.p99_ratio(m.mode) <= SYNC_P99,
            p99,
            "sqlite, --workers 2, --modes with pixel",
        ),
        Criterion(
            f"pixel >= {PG_RATIO} x bare req/s (PostgreSQL)",
            runs("pixel", lambda c: c.backend == "postgresql"),
            lambda r, m: r.ratio(m.mode) >= PG_RATIO,
            ratio,
            "postgresql, --modes with pixel",
        ),
        Criterion(
            f"queued >= {QUEUED_RATIO} x bare req/s (gunicorn sync x2)",
            runs("queued", lambda c: c.workers == 2 and c.worker_class == "sync"),
            lambda r, m: r.ratio(m.mode) >= QUEUED_RATIO,
            ratio,
            "--workers 2, --worker-classes sync, --modes with queued",
        ),
        Criterion(
            f"queued apply lag < {LAG_LIMIT:g} s (every round, applier done)",
            runs("queued"),
            lambda r, m: m.lag_ok,
            lambda r, m: _ms(m.max_lag) + " ms" + ("" if m.applier_finished else " UNFINISHED"),
            "--modes with queued",
        ),
        Criterion(
            "stored rows == 200 responses",
            storing,
            lambda r, m: m.stored_ok,
            scope="--modes with pixel or queued",
        ),
        Criterion(
            "0 lock errors surfaced",
            storing,
            lambda r, m: m.lock_errors == 0,
            scope="--modes with pixel or queued",
        ),
        Criterion(
            f"0 duplicates ({DUP_IDS} ids x {DUP_REPEATS} hits)",
            storing,
            lambda r, m: m.dup_ok,
            scope="--modes with pixel or queued",
        ),
    ]


def report(results: list[Result]) -> None:
    print()
    print_table(results)
    print()
    print_details(results)
    print()
    print("criteria")
    for criterion in criteria(results):
        print(criterion.line())


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
    parser.add_argument(
        "--requests", type=int, default=None, help="timed hits per mode and configuration (20000)"
    )
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
        "--modes",
        type=_csv(str, MODES),
        default=list(MODES),
        help="servers to compare, bare among them (bare,pixel,queued)",
    )
    parser.add_argument(
        "--rounds", type=int, default=None, help="rounds rotating the modes' order (6; 3 quick)"
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
        args.rounds = 3 if args.quick else 6
    if args.requests < 1 or args.concurrency < 1 or args.rounds < 1:
        parser.error("--requests, --concurrency and --rounds must be at least 1")
    if any(w < 1 for w in args.workers):
        parser.error("--workers must be at least 1")
    if "bare" not in args.modes:
        parser.error("--modes must include bare: every figure is read against it")
    if "queued" in args.modes and not load_app.queued_supported():
        parser.error("--modes queued: this PixelMiddleware has no ingest= or spool_dir=")
    # In the order of MODES, once each: the table reads the same whatever was typed.
    args.modes = [mode for mode in MODES if mode in args.modes]
    if args.quick:
        args.workers = args.workers[:1]
        args.worker_classes = args.worker_classes[:1]
    return args


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def print_header(args: argparse.Namespace) -> None:
    print("pixel-wsgi load test (gunicorn, real sockets, asyncio keep-alive client)")
    print(
        f"Python {platform.python_version()}, gunicorn {_pkg('gunicorn')},"
        f" pixel-wsgi {_pkg('pixel-wsgi')}; {platform.platform()}, {os.cpu_count()} CPUs,"
        f" load average {_load_average()}"
    )
    spool = load_app.spool_option()
    servers = {
        "bare": "the GIF app",
        "pixel": "PixelMiddleware(...)"
        + (f" with {spool}=<its spool>" if spool else " (no outage spool option)"),
        "queued": f'PixelMiddleware(..., ingest="queued", {spool}=<its log>)',
    }
    print(
        f"{args.requests:,} timed hits (unique reference_id) per mode in {args.rounds} rounds"
        f" rotating {', '.join(args.modes)}, concurrency {args.concurrency}, backlog {BACKLOG};"
        f" then {DUP_IDS} ids x {DUP_REPEATS} hits."
    )
    print(
        "servers: " + "; ".join(f"{mode} = {servers[mode]}" for mode in args.modes),
        flush=True,
    )


def run_backends(args: argparse.Namespace, workdir: Path, results: list[Result]) -> None:
    """Every configuration of every backend asked for, appended to ``results``."""
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
                            args.modes,
                            args.requests,
                            args.concurrency,
                            args.rounds,
                            servers,
                        )
                    results.append(result)
                    print_progress(result)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _raise_interrupt)  # stop the servers on kill, too
    print_header(args)
    workdir = Path(tempfile.mkdtemp(prefix="pixel-load-", dir=args.tmpdir.resolve()))
    results: list[Result] = []
    try:
        run_backends(args, workdir, results)
        print(f"load average after: {_load_average()}")
        report(results)
        if not results:
            print("BENCHMARK BROKEN: no backend could be run")
            return 2
        broken = [str(r.config) for r in results if r.bare.timed.not_ok or r.bare.warmup.not_ok]
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
