"""``kill -9`` a writer again and again: the database stays sound, no acknowledged
conversion is lost, none is stored twice.

A writer process (``tests/fault_kill_writer.py``) serves conversion-pixel hits as fast
as it can and says ``ack <reference_id>`` after each ``200``; it is killed with
``SIGKILL`` after a random short time. In some rounds a second connection holds the
SQLite write lock, from the start or from half-way, so the writer is spooling when it
dies. Afterwards ``PRAGMA integrity_check`` must pass, and after ``pixel-wsgi replay``
every acknowledged ``reference_id`` must be stored exactly once. A spool line torn by
the kill goes to quarantine; that is allowed only for a hit never acknowledged.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import IO

from pixel_wsgi import PayoutKind, PayoutRule, SQLiteStorage
from pixel_wsgi.outage.replay import replay
from pixel_wsgi.outage.spool import Spool

from .conftest import SECRET
from .wsgi_calls import seed_campaign

WRITER = Path(__file__).with_name("fault_kill_writer.py")
ROUNDS = ("free", "locked", "lock_half_way") * 3
READY_TIMEOUT = 20.0
EXIT_TIMEOUT = 10.0
REFERENCE_IN_SPOOL = re.compile(rb'"reference_id":"([^"]+)"')


class Writer:
    """One writer process, its output read by a thread as it comes."""

    def __init__(self, config: dict[str, object], log: Path) -> None:
        self.lines: list[bytes] = []
        self.ready = threading.Event()
        with open(log, "wb") as stderr:
            self.process = subprocess.Popen(
                [sys.executable, str(WRITER), json.dumps(config)],
                stdout=subprocess.PIPE,
                stderr=stderr,
            )
        assert self.process.stdout is not None
        self._reader = threading.Thread(target=self._read, args=(self.process.stdout,))
        self._reader.start()

    def _read(self, stream: IO[bytes]) -> None:
        for line in stream:
            self.lines.append(line)
            if line.startswith(b"ready "):
                self.ready.set()
        stream.close()

    def wait_ready(self, log: Path) -> int:
        """The visit id its cookie carries, once it has clicked."""
        deadline = time.monotonic() + READY_TIMEOUT
        while not self.ready.wait(0.05):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"the writer did not start:\n{log.read_text()}")
        return int(self.lines[0].split()[1])

    def kill(self) -> None:
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=EXIT_TIMEOUT)
        self._reader.join(timeout=EXIT_TIMEOUT)
        assert not self._reader.is_alive()

    def acknowledged(self) -> list[str]:
        # A line without its newline was never finished: not an acknowledgement.
        return [
            line[4:-1].decode()
            for line in self.lines
            if line.startswith(b"ack ") and line.endswith(b"\n")
        ]


class WriteLock:
    """A second connection that takes and holds the write lock (a long job)."""

    def __init__(self, db: Path) -> None:
        self.conn = sqlite3.connect(db, isolation_level=None, timeout=EXIT_TIMEOUT)
        self.held = False

    def take(self) -> None:
        self.conn.execute("BEGIN IMMEDIATE")
        self.held = True

    def close(self) -> None:
        if self.held:
            self.conn.execute("ROLLBACK")
        self.conn.close()


def make_world(db: Path) -> tuple[int, int]:
    storage = SQLiteStorage(db)
    try:
        seeded = seed_campaign(
            storage, campaign="Fixed", rule=PayoutRule(PayoutKind.FIXED, Decimal("1.00"))
        )
    finally:
        storage.close()
    return seeded.advertiser_id, seeded.link.id


def kill_round(
    config: dict[str, object],
    log: Path,
    kind: str,
    delay: float,
    db: Path,
) -> tuple[int, list[str]]:
    """One writer, killed after ``delay``; the visit id of its click and its acks."""
    lock = WriteLock(db)
    writer: Writer | None = None
    try:
        if kind == "locked":
            lock.take()
        writer = Writer(config, log)
        visit_id = writer.wait_ready(log)
        if kind == "lock_half_way":
            time.sleep(delay / 2)
            lock.take()
            time.sleep(delay / 2)
        else:
            time.sleep(delay)
        writer.kill()
        return visit_id, writer.acknowledged()
    finally:
        if writer is not None and writer.process.poll() is None:
            writer.kill()
        lock.close()


def query(db: Path, sql: str) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(db)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def test_kill_9_loses_no_acknowledged_conversion_and_stores_none_twice(
    tmp_path: Path, record_property: Callable[[str, object], None]
) -> None:
    db, spool_dir = tmp_path / "pixel.db", tmp_path / "spool"
    advertiser_id, link_id = make_world(db)
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    acked: list[str] = []
    spooled_clicks = 0
    for number, kind in enumerate(ROUNDS):
        config: dict[str, object] = {
            "db": str(db),
            "spool": str(spool_dir),
            "secret": SECRET,
            "advertiser_id": advertiser_id,
            "link_id": link_id,
            "prefix": f"k{number}",
            "busy_timeout": 0.02,
        }
        delay = rng.uniform(0.05, 0.5)
        log = tmp_path / f"writer-{number}.log"
        visit_id, round_acked = kill_round(config, log, kind, delay, db)
        assert (visit_id < 0) == (kind == "locked"), f"round {number} ({kind})"
        spooled_clicks += visit_id < 0
        acked += round_acked

    assert query(db, "PRAGMA integrity_check") == [("ok",)]
    assert query(db, "PRAGMA foreign_key_check") == []

    spool = Spool(spool_dir)
    storage = SQLiteStorage(db)
    try:
        summary = replay(spool, storage)
        assert summary.stopped is None
        again = replay(spool, storage)
        assert (again.applied, again.files_done) == (0, 0)
        rejections = list(storage.rejections())
    finally:
        storage.close()

    rows = query(db, "SELECT reference_id, COUNT(*) FROM transactions GROUP BY 1")
    counts = {str(reference_id): int(str(count)) for reference_id, count in rows}
    stored = set(counts)
    quarantined = spool.quarantined()
    in_quarantine = {
        match.decode()
        for path in quarantined
        for match in REFERENCE_IN_SPOOL.findall(path.read_bytes())
    }
    spooled = summary.kinds.get("web_conversion", 0)
    outcome = {
        "seed": seed,
        "rounds": len(ROUNDS),
        "acked": len(acked),
        "stored": len(stored),
        "spooled": spooled,
        "spooled_clicks": spooled_clicks,
        "quarantined": len(quarantined),
    }
    print(f"kill -9 loop: {outcome}")
    for key, value in outcome.items():
        record_property(key, value)

    assert len(set(acked)) == len(acked)
    assert [ref for ref, count in counts.items() if count != 1] == []
    assert sorted(set(acked) - stored) == [], f"acknowledged but lost ({outcome})"
    assert sorted((in_quarantine & set(acked)) - stored) == []
    assert all(re.fullmatch(r"k\d+-\d+", str(ref)) for ref in stored)
    # Nothing was applied twice (a duplicate_reference_id), nor left without its visit.
    assert [r.reason for r in rejections] == []
    # The locked rounds did spool conversions, so kills did land while spooling.
    assert spooled > 0 and spooled_clicks == ROUNDS.count("locked")
    assert spool.pending() == 0
