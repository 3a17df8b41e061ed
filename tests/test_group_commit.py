"""``SQLiteStorage(synchronous="FULL")`` by group commit (:mod:`pixel_wsgi.storage.group_sync`):
every write is synced before it returns, writers share their syncs, a failed sync is
never reported durable, and the log SQLite deletes and makes anew is followed."""

from __future__ import annotations

import errno
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from pixel_wsgi import PixelMiddleware, SQLiteStorage
from pixel_wsgi.errors import StorageError
from pixel_wsgi.models import Reason, TransactionDraft
from pixel_wsgi.outage.replay import replay
from pixel_wsgi.storage.group_sync import GroupSync

from .conftest import SECRET, clicked_store, host_app, pixel_status, race_in_processes
from .storage_contract import draft
from .wsgi_calls import seed_campaign

Ids = tuple[int, int, int]


@dataclass
class Syncs:
    """The ``os.fdatasync`` calls made from Python, with what each one synced."""

    wal: Path
    real: Callable[[int], None]
    #: (inode, size) of the file each call synced, in order
    calls: list[tuple[int, int]] = field(default_factory=list)
    #: seconds each call takes on top of the real sync (lets writers pile up)
    delay: float = 0.0
    #: the error every call raises instead of syncing, when set
    error: OSError | None = None

    def __call__(self, fd: int) -> None:
        stat = os.fstat(fd)
        self.calls.append((stat.st_ino, stat.st_size))
        if self.delay:
            time.sleep(self.delay)
        if self.error is not None:
            raise self.error
        self.real(fd)

    def of_the_log(self) -> list[tuple[int, int]]:
        """The calls that synced the store's ``-wal`` file as it is now."""
        inode = self.wal.stat().st_ino
        return [call for call in self.calls if call[0] == inode]


@pytest.fixture
def syncs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Syncs:
    recorder = Syncs(tmp_path / "full.db-wal", os.fdatasync)
    monkeypatch.setattr(os, "fdatasync", recorder)
    return recorder


@pytest.fixture
def full(tmp_path: Path) -> Iterator[tuple[SQLiteStorage, Ids]]:
    storage = SQLiteStorage(tmp_path / "full.db", synchronous="FULL")
    seeded = seed_campaign(storage, publisher="Pub", campaign="Full")
    yield storage, (seeded.advertiser_id, seeded.campaign_id, seeded.publisher_id)
    storage.close()


def _draft(ids: Ids, reference_id: str, **options: Any) -> TransactionDraft:
    return draft(*ids, None, reference_id=reference_id, **options)


def _references(path: Path) -> list[str]:
    reader = SQLiteStorage(path)
    try:
        return sorted(tx.reference_id or "" for tx in reader.transactions())
    finally:
        reader.close()


def _in_threads(count: int, work: Callable[[int], object]) -> list[BaseException]:
    """Run ``work(index)`` in ``count`` threads started together; their exceptions."""
    start = threading.Barrier(count)
    failures: list[BaseException] = []

    def run(index: int) -> None:
        start.wait()
        try:
            work(index)
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return failures


# -- what the connections run ------------------------------------------------------


@pytest.mark.parametrize(
    ("synchronous", "pragma", "grouped"),
    [
        pytest.param("NORMAL", 1, False, id="normal"),
        pytest.param("FULL", 1, True, id="full-by-group-commit"),
        pytest.param("EXTRA", 3, False, id="extra-sqlite-own"),
    ],
)
def test_full_runs_normal_connections_and_syncs_the_log_itself(
    tmp_path: Path, synchronous: str, pragma: int, grouped: bool
) -> None:
    storage = SQLiteStorage(tmp_path / "x.db", synchronous=synchronous)
    try:
        storage.migrate()
        conn = storage._connection()
        assert conn.execute("PRAGMA synchronous").fetchone() == (pragma,)
        assert (storage._group_sync is not None) is grouped
        assert storage.synchronous == synchronous
    finally:
        storage.close()


# -- every write synced before it returns ----------------------------------------


def _write_alone(storage: SQLiteStorage, ids: Ids) -> None:
    storage.append_transaction(_draft(ids, "alone"))


def _write_with_personal_data(storage: SQLiteStorage, ids: Ids) -> None:
    storage.append_transaction(_draft(ids, "personal", personal_data={"email": "a@b.example"}))


def _write_in_a_writer(storage: SQLiteStorage, ids: Ids) -> None:
    with storage.writer() as writer:
        writer.insert_transaction(_draft(ids, "writer"))


def _write_a_batch(storage: SQLiteStorage, ids: Ids) -> None:
    with storage.batch():
        for n in range(5):
            storage.append_transaction(_draft(ids, f"batch-{n}"))
            with storage.batch():  # nested: one more savepoint, no commit
                storage.append_transaction(_draft(ids, f"nested-{n}"))


def _add_an_entity(storage: SQLiteStorage, ids: Ids) -> None:
    storage.add_publisher("Another")


@pytest.mark.parametrize(
    "write",
    [
        pytest.param(_write_alone, id="autocommit-insert"),
        pytest.param(_write_with_personal_data, id="begin-immediate"),
        pytest.param(_write_in_a_writer, id="ledger-writer"),
        pytest.param(_write_a_batch, id="batch"),
        pytest.param(_add_an_entity, id="entity"),
    ],
)
def test_a_write_is_synced_once_before_it_returns(
    full: tuple[SQLiteStorage, Ids],
    syncs: Syncs,
    write: Callable[[SQLiteStorage, Ids], None],
) -> None:
    storage, ids = full
    write(storage, ids)
    # One sync of the log as the write left it: the commit's frames included.
    assert syncs.of_the_log() == [(syncs.wal.stat().st_ino, syncs.wal.stat().st_size)]
    assert len(syncs.calls) == 1


def test_a_conflict_is_synced_too(full: tuple[SQLiteStorage, Ids], syncs: Syncs) -> None:
    # The row a duplicate meets may be another writer's, not durable yet.
    storage, ids = full
    assert storage.append_transaction(_draft(ids, "twice")) is not None
    assert storage.append_transaction(_draft(ids, "twice")) is None
    assert len(syncs.of_the_log()) == 2


def test_a_failed_write_is_not_synced(full: tuple[SQLiteStorage, Ids], syncs: Syncs) -> None:
    storage, ids = full
    with pytest.raises(RuntimeError), storage.writer() as writer:
        writer.insert_transaction(_draft(ids, "undone"))
        raise RuntimeError("the ledger changed its mind")
    assert syncs.calls == []
    assert _references(storage.path) == []


def test_the_default_never_syncs_on_the_request_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "normal.db"
    advertiser_id, cookie = clicked_store(path)
    calls: list[int] = []
    real = os.fdatasync
    monkeypatch.setattr(os, "fdatasync", lambda fd: (calls.append(fd), real(fd))[1])
    middleware = PixelMiddleware(host_app, SQLiteStorage(path), secret_key=SECRET)
    try:
        for n in range(20):
            status = pixel_status(middleware, advertiser_id, f"reference_id=r{n}", cookie)
            assert status == "200 OK"
        assert len(list(middleware.storage.transactions())) == 20
    finally:
        middleware.close()
    assert calls == []


# -- writers share their syncs ----------------------------------------------------


def test_concurrent_writers_need_fewer_syncs_than_writes(
    full: tuple[SQLiteStorage, Ids], syncs: Syncs
) -> None:
    storage, ids = full
    syncs.delay = 0.02  # a slow disk: the other writers commit while one syncs
    failures = _in_threads(
        8,
        lambda t: [storage.append_transaction(_draft(ids, f"t{t}-{n}")) for n in range(5)],
    )
    assert failures == []
    assert len(_references(storage.path)) == 40
    assert 1 <= len(syncs.calls) < 40
    # The last sync covered the log as the last write left it.
    assert syncs.calls[-1] == (syncs.wal.stat().st_ino, syncs.wal.stat().st_size)


def test_pixel_hits_from_threads_through_the_middleware(tmp_path: Path, syncs: Syncs) -> None:
    path = tmp_path / "full.db"
    advertiser_id, cookie = clicked_store(path)
    storage = SQLiteStorage(path, synchronous="FULL")
    middleware = PixelMiddleware(host_app, storage, secret_key=SECRET)
    statuses: list[str] = []
    # Held open: once the threads' own connections are gone, the last one to close
    # would checkpoint and delete the -wal file whose syncs are counted below.
    keeper = sqlite3.connect(path)
    keeper.execute("SELECT count(*) FROM transactions").fetchone()
    try:
        failures = _in_threads(
            8,
            lambda t: statuses.extend(
                pixel_status(
                    middleware, advertiser_id, f"sale_amount=10&reference_id=t{t}-{n}", cookie
                )
                for n in range(10)
            ),
        )
        assert failures == []
        assert statuses == ["200 OK"] * 80
        assert middleware.spool is not None and middleware.spool.pending() == 0
        assert len(_references(path)) == 80
        assert 1 <= len(syncs.of_the_log()) <= 80
    finally:
        middleware.close()
        keeper.close()


def _process_writes(start: Any, path: str, ids: Ids, index: int) -> None:
    storage = SQLiteStorage(path, synchronous="FULL")
    start.wait()
    failures = _in_threads(
        4,
        lambda t: [
            storage.append_transaction(_draft(ids, f"p{index}-t{t}-{n}")) for n in range(25)
        ],
    )
    storage.close()
    if failures:
        raise failures[0]


def test_threads_of_several_processes_write_every_row_once(
    full: tuple[SQLiteStorage, Ids],
) -> None:
    storage, ids = full
    storage.close()
    calls = [(str(storage.path), ids, index) for index in range(3)]
    assert race_in_processes(_process_writes, calls) == [0, 0, 0]
    references = _references(storage.path)
    assert len(references) == len(set(references)) == 3 * 4 * 25


# -- a failed sync -----------------------------------------------------------------


def test_a_failed_sync_is_a_storage_error_until_the_log_starts_over(
    full: tuple[SQLiteStorage, Ids], syncs: Syncs
) -> None:
    storage, ids = full
    syncs.error = OSError(errno.EIO, "Input/output error")
    with pytest.raises(StorageError, match=r"full\.db-wal could not be synced"):
        storage.append_transaction(_draft(ids, "unsynced"))
    # Committed all the same: visible, merely not known to be durable.
    assert _references(storage.path) == ["unsynced"]

    # The disk answers again, but what it dropped stays dropped: not vouched for...
    syncs.error = None
    calls = len(syncs.calls)
    with pytest.raises(StorageError, match="until SQLite has checkpointed"):
        storage.append_transaction(_draft(ids, "after"))
    assert len(syncs.calls) == calls  # no sync was even tried

    # ... until SQLite has copied the log into the database file and started it over.
    checkpointer = SQLiteStorage(storage.path)._connection()
    assert checkpointer.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0] == 0
    checkpointer.close()
    assert storage.append_transaction(_draft(ids, "started over")) is not None
    assert syncs.calls[-1] == (syncs.wal.stat().st_ino, syncs.wal.stat().st_size)
    assert len(syncs.calls) == calls + 1
    assert _references(storage.path) == ["after", "started over", "unsynced"]


def test_every_writer_of_a_failed_round_gets_the_error(
    full: tuple[SQLiteStorage, Ids], syncs: Syncs
) -> None:
    storage, ids = full
    syncs.delay = 0.02
    syncs.error = OSError(errno.EIO, "Input/output error")
    failures = _in_threads(6, lambda t: storage.append_transaction(_draft(ids, f"t{t}")))
    # None was told its write is durable.
    assert len(failures) == 6
    assert all(isinstance(failure, StorageError) for failure in failures)
    assert len(_references(storage.path)) == 6


def test_a_pixel_hit_whose_sync_failed_is_spooled_and_counts_once(
    tmp_path: Path, syncs: Syncs, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "full.db"
    advertiser_id, cookie = clicked_store(path)
    storage = SQLiteStorage(path, synchronous="FULL")
    middleware = PixelMiddleware(host_app, storage, secret_key=SECRET)
    spool = middleware.spool
    assert spool is not None
    try:
        syncs.error = OSError(errno.EIO, "Input/output error")
        status = pixel_status(middleware, advertiser_id, "sale_amount=10&reference_id=o1", cookie)
        assert status == "200 OK"
        assert "could not be synced" in caplog.text
        # The row is in the file and the event in the spool as well...
        assert _references(path) == ["o1"]
        assert len([record for file in spool.files() for record in spool.records(file)]) == 1

        # ... and once the log started over, the replay finds the reference taken.
        syncs.error = None
        checkpointer = SQLiteStorage(path)._connection()
        checkpointer.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        checkpointer.close()
        summary = replay(spool, storage)
        assert (summary.applied, summary.stopped) == (1, None)
        assert _references(path) == ["o1"]
        assert [r.reason for r in storage.rejections()] == [Reason.DUPLICATE_REFERENCE_ID]
    finally:
        middleware.close()


# -- fork, and the log SQLite deletes ---------------------------------------------


# Python 3.12+ warns of any fork while a thread runs: this one is the point.
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_a_forked_child_runs_its_own_rounds(full: tuple[SQLiteStorage, Ids], syncs: Syncs) -> None:
    # The parent forks while one of its threads is inside a sync: the child must not
    # wait for that round (it never ends there), and syncs on its own descriptor.
    storage, ids = full
    storage.append_transaction(_draft(ids, "before the fork"))
    inside, release = threading.Event(), threading.Event()
    real = syncs.real

    def held_sync(fd: int) -> None:
        if threading.current_thread() is not threading.main_thread():
            inside.set()
            release.wait(10)
        real(fd)

    syncs.real = held_sync
    writer = threading.Thread(target=storage.append_transaction, args=(_draft(ids, "parent"),))
    writer.start()
    assert inside.wait(10)
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            calls = len(syncs.calls)
            storage.append_transaction(_draft(ids, "child"))
            group_sync = storage._group_sync
            fd = None if group_sync is None else group_sync._fd
            ok = len(syncs.calls) == calls + 1 and fd is not None
            code = 0 if ok and os.fstat(fd).st_ino == syncs.wal.stat().st_ino else 2
        finally:
            os._exit(code)
    try:
        code = _exit_code(pid, timeout=10)
    finally:
        release.set()
        writer.join()
    assert code == 0
    assert _references(storage.path) == ["before the fork", "child", "parent"]


def _exit_code(pid: int, timeout: float) -> int | str:
    """The child's exit code, or ``"hung"`` (then killed) after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.01)
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    return "hung"


def test_the_log_sqlite_deletes_and_makes_anew_is_followed(
    full: tuple[SQLiteStorage, Ids], syncs: Syncs
) -> None:
    storage, ids = full
    storage.append_transaction(_draft(ids, "first log"))
    first = syncs.wal.stat().st_ino
    storage.close()  # the last connection: SQLite checkpoints and deletes the -wal
    assert not syncs.wal.exists()
    storage.append_transaction(_draft(ids, "second log"))
    # The new file is synced, not the deleted one this process still held open.
    assert syncs.of_the_log() == [(syncs.wal.stat().st_ino, syncs.wal.stat().st_size)]
    assert syncs.calls[0][0] == first
    assert _references(storage.path) == ["first log", "second log"]


def test_no_log_means_nothing_to_sync(tmp_path: Path, syncs: Syncs) -> None:
    # Everything was checkpointed into the database file (synced by SQLite).
    GroupSync(tmp_path / "nothing.db-wal").sync()
    assert syncs.calls == []
    assert not (tmp_path / "nothing.db-wal").exists()  # never created
