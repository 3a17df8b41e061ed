"""The SQLite writers' gate (:mod:`pixel_wsgi.storage.write_gate`): writers of one file
take their turn in front of SQLite's lock, across threads and processes, and a gate
that cannot be had never stops a write."""

from __future__ import annotations

import fcntl
import gc
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from webtest import TestApp

from pixel_wsgi import PixelMiddleware
from pixel_wsgi.models import TransactionDraft
from pixel_wsgi.storage.sqlite import SQLiteStorage
from pixel_wsgi.storage.write_gate import WriteGate

from .conftest import SECRET, host_app, race_in_processes
from .storage_contract import draft
from .wsgi_calls import seed_campaign

Ids = tuple[int, int, int]


def _store(tmp_path: Path, **options: float) -> tuple[SQLiteStorage, Ids]:
    """A store whose gate is open, as the middleware opens it for a sync worker."""
    storage = SQLiteStorage(tmp_path / "gate.db", **options)
    storage.serve_threads(False)
    seeded = seed_campaign(storage, publisher="Pub", campaign="Gate")
    return storage, (seeded.advertiser_id, seeded.campaign_id, seeded.publisher_id)


def _draft(ids: Ids, reference_id: str) -> TransactionDraft:
    return draft(*ids, None, reference_id=reference_id)


def test_a_writer_waits_for_the_gate_then_writes(tmp_path: Path) -> None:
    storage, ids = _store(tmp_path)
    holder = os.open(storage._gate.path, os.O_RDONLY | os.O_CREAT)  # another process's turn
    fcntl.flock(holder, fcntl.LOCK_EX)
    released = threading.Timer(0.3, lambda: fcntl.flock(holder, fcntl.LOCK_UN))
    started = time.monotonic()
    released.start()
    try:
        assert storage.append_transaction(_draft(ids, "waited")) is not None
        assert time.monotonic() - started >= 0.25  # it waited for the turn
    finally:
        released.join()
        os.close(holder)
        storage.close()
    assert [tx.reference_id for tx in SQLiteStorage(storage.path).transactions()] == ["waited"]


def test_a_gate_held_past_the_busy_timeout_does_not_stop_the_write(tmp_path: Path) -> None:
    # A holder that hangs (stopped, say) while SQLite's own lock is free: the writer
    # goes on without its turn after busy_timeout, and SQLite serialises it.
    storage, ids = _store(tmp_path, busy_timeout=0.2)
    holder = os.open(storage._gate.path, os.O_RDONLY | os.O_CREAT)
    fcntl.flock(holder, fcntl.LOCK_EX)
    try:
        started = time.monotonic()
        with storage.writer() as writer:
            writer.insert_transaction(_draft(ids, "in a transaction"))
        assert storage.append_transaction(_draft(ids, "alone")) is not None
        assert 0.35 <= time.monotonic() - started < 3
    finally:
        os.close(holder)
        storage.close()
    assert len(list(SQLiteStorage(storage.path).transactions())) == 2


def test_a_forked_child_takes_its_own_turn(tmp_path: Path) -> None:
    # The parent forks while one of its threads holds the gate: the child must wait
    # for the parent's write to end, neither sharing the parent's lock (an inherited
    # descriptor would) nor blocking on the parent's thread lock for ever.
    storage, ids = _store(tmp_path)
    storage.append_transaction(_draft(ids, "before the fork"))
    gate: WriteGate = storage._gate
    with gate.turn():
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                started = time.monotonic()
                storage.append_transaction(_draft(ids, "child"))
                waited = time.monotonic() - started
                code = 0 if waited >= 0.25 else 2
            finally:
                os._exit(code)
        time.sleep(0.4)  # the parent's write, still under way
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    refs = sorted(tx.reference_id or "" for tx in storage.transactions())
    assert refs == ["before the fork", "child"]
    storage.close()


def test_threads_and_processes_all_write_through_the_gate(tmp_path: Path) -> None:
    storage, ids = _store(tmp_path)
    storage.close()

    def worker(start: Any, index: int) -> None:
        start.wait()
        store = SQLiteStorage(tmp_path / "gate.db")
        store.serve_threads(False)
        threads = [
            threading.Thread(
                target=lambda t=t: [
                    store.append_transaction(_draft(ids, f"p{index}-t{t}-{n}")) for n in range(50)
                ]
            )
            for t in range(3)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        store.close()

    assert race_in_processes(worker, [(0,), (1,), (2,)]) == [0, 0, 0]
    rows = list(SQLiteStorage(tmp_path / "gate.db").transactions())
    assert len(rows) == len({tx.reference_id for tx in rows}) == 3 * 3 * 50


def test_a_store_without_a_file_to_lock_still_writes(tmp_path: Path) -> None:
    gate = WriteGate(tmp_path / "no" / "such" / "directory.db", timeout=1.0)
    gate.enabled = True
    with gate.turn():  # nothing to lock: the write goes on, SQLite decides
        pass


@pytest.mark.parametrize(("multithread", "gated"), [(False, True), (True, False)])
def test_the_middleware_opens_the_gate_for_single_threaded_workers_only(
    tmp_path: Path, multithread: bool, gated: bool
) -> None:
    storage, _ = _store(tmp_path)
    middleware = PixelMiddleware(host_app, storage, secret_key=SECRET)
    try:
        browser = TestApp(middleware, extra_environ={"wsgi.multithread": multithread})
        browser.get("/pixels/health")
        assert storage._gate.enabled is gated
    finally:
        middleware.close()
        storage.close()


_LOCK_FROM_ANOTHER_PROCESS = """
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
try:
    fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
except OSError:
    sys.exit(1)
"""


def _locked_by_another_process(path: Path) -> bool:
    probe = subprocess.run([sys.executable, "-c", _LOCK_FROM_ANOTHER_PROCESS, str(path)])
    return probe.returncode == 1


def test_a_gate_closed_never_drops_sqlites_own_locks(tmp_path: Path) -> None:
    # Closing any descriptor of a file drops every POSIX lock the process holds on
    # it. The gate must never be the database file, whose locks are SQLite's.
    storage, ids = _store(tmp_path)
    conn = storage._connection()
    conn.execute("BEGIN")
    conn.execute("SELECT count(*) FROM transactions").fetchone()  # a read: SQLite's lock
    try:
        assert _locked_by_another_process(storage.path)
        other = SQLiteStorage(storage.path)
        other.serve_threads(False)
        other.append_transaction(_draft(ids, "through another store"))
        other.close()
        del other
        gc.collect()  # its gate's descriptor closed
        assert _locked_by_another_process(storage.path)
    finally:
        conn.execute("COMMIT")
        storage.close()


def test_a_store_outside_the_middleware_makes_no_gate_file(tmp_path: Path) -> None:
    storage = SQLiteStorage(tmp_path / "plain.db")
    seed_campaign(storage)
    storage.close()
    assert sorted(path.name for path in tmp_path.iterdir()) == ["plain.db"]
