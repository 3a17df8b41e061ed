"""The SQLite backend: one file, no server, safe under threads and forks.

Why these settings:

- WAL journal: readers never block the writer, and a commit is one append
  instead of a rollback journal's rewrite (about 45x faster measured here).
- ``synchronous=NORMAL`` by default: in WAL mode a commit survives a crash of
  the application process; only an OS crash or a power loss can drop the newest
  commits, and the database stays consistent either way.
- ``synchronous="FULL"`` survives a power loss too, by group commit
  (:mod:`.group_sync`): the connections still run ``NORMAL``, and each write, once
  committed and out of the write gate, waits for an ``fdatasync`` of the ``-wal``
  file that it shares with the writers who committed meanwhile. Measured with
  ``benchmarks/group_commit.py`` (pixel hits through the middleware; 2 vCPUs, an
  ``fdatasync`` of 0.2 to 0.3 ms): 1.2 to 1.6x the default's cost per hit with 8
  writers (8 threads, or 2 processes of 4), mostly under 1.5x, where SQLite's own
  sync inside every commit costs 1.7 to 2.6x; a writer alone pays a whole sync
  (about 4x, SQLite's own about 3x). ``synchronous="EXTRA"`` keeps SQLite's own
  sync in each commit.
- ``BEGIN IMMEDIATE`` for every write of more than one statement: the write
  lock is taken up front, so two writers queue on the busy timeout instead of
  failing on lock upgrade. A new conversion without personal data is a single
  autocommit ``INSERT``, which takes the write lock at once and so needs none.
- A busy timeout (5 s) well under a WSGI worker's timeout (gunicorn: 30 s).
- WAL checkpoints off the request path, when the middleware asks for it
  (:meth:`SQLiteStorage.housekeeping`): a thread per process copies the
  log back every half second, and a request's commit checkpoints only past
  :data:`FALLBACK_AUTOCHECKPOINT` pages. Otherwise, under concurrent writers, a log
  past SQLite's 1000 pages cannot restart, and nearly every commit tries a
  checkpoint again, with its ``fsync``, inside a request (measured under gunicorn:
  0.05 to 0.09 ``fdatasync`` per pixel hit).
- One connection per process *and* thread, opened lazily: a connection never
  crosses a ``fork()`` (gunicorn ``--preload``) or a thread.
- A file the process may read but not write (the CLI made it as another user, in a
  directory this user cannot write) is opened read-only rather than not at all:
  ``mode=ro``, which needs the ``-shm`` file a writer keeps while it has the file
  open, else ``immutable=1`` while no ``-wal`` file exists (no writer has it open).
  Reads then work (a tracking link still redirects); writes fail as on any
  read-only store (the middleware spools them). Such a connection is given up for
  a new attempt at a writable one after :data:`READ_ONLY_RETRY` seconds, and an
  ``immutable`` one as soon as a ``-wal`` file appears.

Every statement but this dialect's own (the ledger's INSERT) is the SQL core's,
:mod:`pixel_wsgi.storage.sql`; listings are read in keyset pages of ``page_size`` rows.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from ..background import ProcessThread
from ..errors import ConfigurationError, NotFoundError, RecordRefused, StorageError
from ..models import TransactionDraft
from .base import LedgerWriter
from .deliveries import SQLDeliveryStorage
from .group_sync import GroupSync
from .migrations import sqlite as schema
from .rows import (
    INSERTED_TRANSACTION_COLUMNS,
    INSERTED_WITH_CONTEXT_COLUMNS,
    json_object,
    transaction_values,
    transaction_values_with_context,
)
from .sql import PAGE_SIZE, Execute, Row, SQLLedgerWriter, check_page_size
from .write_gate import WriteGate

logger = logging.getLogger("pixel_wsgi")

_SYNCHRONOUS_LEVELS = ("OFF", "NORMAL", "FULL", "EXTRA")
#: Pages in the write-ahead log past which a commit checkpoints (SQLite's default).
DEFAULT_AUTOCHECKPOINT = 1000
#: The same, while a thread checkpoints in the background: only if it falls behind.
FALLBACK_AUTOCHECKPOINT = 20_000
#: Seconds between two looks of the checkpoint thread at the log.
CHECKPOINT_INTERVAL = 0.5
#: Seconds without a commit after which the checkpoint thread ends (the next
#: request starts it again): a process at rest runs no thread.
CHECKPOINT_IDLE_EXIT = 2.0

# Held while the checkpoint thread is inside SQLite, and by fork() (see the hooks at
# the end): a child never inherits a SQLite mutex that thread held.
_CHECKPOINTING = threading.Lock()
#: Seconds a read-only fallback connection is used before a writable one is tried again.
READ_ONLY_RETRY = 30.0


# SQLite's own (PostgreSQL's differs): ON CONFLICT burns no id here, lastrowid gives
# the new one, and personal data is a second statement rather than a CTE.
def _insert_sql(columns: str) -> str:
    return f"""
INSERT INTO transactions ({columns})
VALUES ({", ".join("?" for _ in columns.split(", "))})
ON CONFLICT (advertiser_id, reference_id)
    WHERE corrects_transaction_id IS NULL AND reference_id IS NOT NULL
    DO NOTHING
"""


_INSERT_TRANSACTION = _insert_sql(INSERTED_TRANSACTION_COLUMNS)
# A row without a conversion context (nearly every one) leaves delivery_context out
# rather than bind a None: sqlite3 looks an adapter up for each None it binds, some
# 1,900 instructions (0.7% of a pixel hit, measured with callgrind).
_INSERT_WITH_CONTEXT = _insert_sql(INSERTED_WITH_CONTEXT_COLUMNS)

# Connections a forked child inherited: never used nor closed in the child.
_INHERITED: list[sqlite3.Connection] = []


class _OwnedConnection(sqlite3.Connection):
    """A store's connection for one thread, closed as soon as it is dropped.

    Connections are opened lazily per thread, so no caller closes the ones of a
    thread that ended (a threaded server's worker) or of a store nobody closed;
    the garbage collector would, with a ``ResourceWarning`` (Python 3.13).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.pid = os.getpid()

    def __del__(self) -> None:
        pid = getattr(self, "pid", None)
        if pid is None:  # the connection failed to open: nothing to close
            return
        if pid == os.getpid():
            self.close()
        else:
            # Closing the parent's connection here could touch its WAL: keep it.
            _INHERITED.append(self)


def _insert_transaction(conn: sqlite3.Connection, draft: TransactionDraft) -> int | None:
    if draft.conversion is None:
        cursor = conn.execute(_INSERT_TRANSACTION, transaction_values(draft))
    else:
        cursor = conn.execute(_INSERT_WITH_CONTEXT, transaction_values_with_context(draft))
    if cursor.rowcount != 1:
        return None
    transaction_id = cursor.lastrowid
    assert transaction_id is not None
    if draft.personal_data:
        conn.execute(
            "INSERT INTO personal_data (transaction_id, advertiser_id, data, created_at)"
            " VALUES (?, ?, ?, ?)",
            (
                transaction_id,
                draft.advertiser_id,
                json_object(draft.personal_data),
                draft.created_at,
            ),
        )
    return transaction_id


def _append_new(conn: sqlite3.Connection, draft: TransactionDraft) -> int | None:
    try:
        return _insert_transaction(conn, draft)
    except sqlite3.IntegrityError as exc:
        # The reference key is handled by ON CONFLICT: what is left is a foreign key.
        raise NotFoundError(f"a row this conversion refers to is gone ({exc})") from exc


class SQLiteLedgerWriter(SQLLedgerWriter):
    """The ledger primitives on one connection inside ``BEGIN IMMEDIATE``."""

    def __init__(self, conn: sqlite3.Connection, max_rejections: int) -> None:
        super().__init__(max_rejections)
        self._conn = conn

    def _execute(self, sql: str, params: tuple[Any, ...]) -> sqlite3.Cursor:
        # The core's statements are SQLite's own: no translation.
        return self._conn.execute(sql, params)

    def _insert(self, sql: str, params: tuple[Any, ...]) -> int:
        return self._conn.execute(sql, params).lastrowid or 0

    def insert_transaction(self, draft: TransactionDraft) -> int | None:
        return _insert_transaction(self._conn, draft)


def _storage_error(failed: str, exc: Exception) -> StorageError:
    """A driver error as ours: :class:`RecordRefused` when it is about the record's
    data (text SQLite cannot encode, a value too big), not about the store."""
    if isinstance(exc, UnicodeEncodeError):
        return RecordRefused(f"{failed}: the text is not valid Unicode ({exc.reason})")
    if isinstance(exc, sqlite3.DataError):
        return RecordRefused(f"{failed}: the record cannot be stored ({exc})")
    return StorageError(f"{failed}: {exc}")


class SQLiteStorage(SQLDeliveryStorage):
    """Storage in one SQLite file.

    :param path: the database file; created with its directory's permissions.
    :param busy_timeout: seconds a writer waits for the lock before failing.
    :param synchronous: ``NORMAL`` (default), or ``FULL`` to survive a power loss
        (by group commit: a write returns once it is synced, or raises
        :class:`~pixel_wsgi.errors.StorageError`, even though it was committed, when
        the sync fails); ``EXTRA`` is SQLite's own sync in every commit, ``OFF`` none.
        See the module docs.
    :param max_rejections: how many rejection-log entries are kept.
    :param read_only: open the file read-only, never create it, never write (the
        CLI's read commands); :meth:`pending_migrations` says whether it is current.
    :param page_size: rows per query when a listing (``transactions()``,
        ``conversions()``, ``rejections()``) is read, in keyset pages.

    Prefer :func:`~pixel_wsgi.storage.storage_from_url`::

        storage = storage_from_url("sqlite:///var/pixel-wsgi.db")
    """

    schemes = ("sqlite",)

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        busy_timeout: float = 5.0,
        synchronous: str = "NORMAL",
        max_rejections: int = 100_000,
        read_only: bool = False,
        page_size: int = PAGE_SIZE,
    ) -> None:
        self.path = Path(path)
        if str(path) in ("", ":memory:"):
            raise ConfigurationError(
                "SQLite storage needs a file path: an in-memory database is private to one"
                " connection and would lose data between threads"
            )
        if synchronous.upper() not in _SYNCHRONOUS_LEVELS:
            raise ConfigurationError(
                f"synchronous must be one of {', '.join(_SYNCHRONOUS_LEVELS)}, got {synchronous!r}"
            )
        if not 0 < busy_timeout <= 25:
            raise ConfigurationError(
                f"busy_timeout must be between 0 and 25 seconds (under a worker timeout),"
                f" got {busy_timeout!r}"
            )
        if max_rejections < 1:
            raise ConfigurationError(f"max_rejections must be at least 1, got {max_rejections}")
        self.busy_timeout = busy_timeout
        #: pages of write-ahead log past which a commit checkpoints; raised by
        #: :meth:`housekeeping` (for connections opened afterwards)
        self.wal_autocheckpoint = DEFAULT_AUTOCHECKPOINT
        self.synchronous = synchronous.upper()
        self.max_rejections = max_rejections
        self.read_only = read_only
        self.page_size = check_page_size(page_size)
        self._local = threading.local()
        #: the writers' turn, in front of SQLite's lock (see :mod:`.write_gate`)
        self._gate = WriteGate(self.path, busy_timeout)
        #: ``FULL``: the commits' sync, shared by the writers (see :mod:`.group_sync`)
        self._group_sync = (
            GroupSync(self._wal_path()) if self.synchronous == "FULL" and not read_only else None
        )

    @classmethod
    def from_url(cls, url: str, **options: Any) -> SQLiteStorage:
        """``sqlite:///relative/path.db`` or ``sqlite:////absolute/path.db``."""
        parts = urlsplit(url)
        if parts.scheme != "sqlite" or parts.netloc or not parts.path.startswith("/"):
            raise ConfigurationError(
                "SQLite URLs look like sqlite:///relative.db or sqlite:////abs/path.db,"
                f" got {url!r}"
            )
        if parts.query:
            raise ConfigurationError(f"SQLite URLs take no query string, got {url!r}")
        return cls(unquote(parts.path[1:]), **options)

    def __repr__(self) -> str:
        return f"SQLiteStorage({str(self.path)!r})"

    def housekeeping(self, *, after_exit: Callable[[], object] | None = None) -> WalCheckpointer:
        """A thread (not started) that checkpoints this file's write-ahead log every
        :data:`CHECKPOINT_INTERVAL` seconds, for the connections this store opens from
        now on to leave it out of their commits (see the module docs).

        It ends by itself after :data:`CHECKPOINT_IDLE_EXIT` seconds without a commit,
        then calls ``after_exit`` (the middleware starts it again with its next
        request).
        """
        self.wal_autocheckpoint = FALLBACK_AUTOCHECKPOINT
        return WalCheckpointer(self, after_exit=after_exit)

    def serve_threads(self, threaded: bool) -> None:
        """Open the write gate for single-threaded workers only, and close it for
        threaded ones (see :mod:`.write_gate`): a thread that holds it while it waits
        for the GIL makes every other writer wait too."""
        self._gate.enabled = not threaded

    def default_spool_dir(self) -> Path:
        """Beside the database file: ``<name>.db.spool``."""
        return self.path.with_name(f"{self.path.name}.spool")

    # -- connections -----------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        if self.read_only:
            return self._connect_read_only()
        conn = None
        try:
            conn = sqlite3.connect(
                self.path,
                timeout=self.busy_timeout,
                isolation_level=None,
                # Still one thread's own: False only lets it be closed from the
                # thread that drops the store (see _OwnedConnection).
                check_same_thread=False,
                factory=_OwnedConnection,
            )
            conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
            journal_mode = self._enter_wal(conn)
            # FULL in WAL mode is NORMAL plus a sync of the log after each commit, which
            # the writers share (_immediate); without a log, SQLite's own FULL.
            group_sync = self._group_sync is not None and journal_mode == "wal"
            conn.execute(f"PRAGMA synchronous = {'NORMAL' if group_sync else self.synchronous}")
            conn.execute(f"PRAGMA wal_autocheckpoint = {int(self.wal_autocheckpoint)}")
            conn.execute("PRAGMA foreign_keys = ON")
            # 64 MiB page cache: keeps the unique-key index hot at millions of rows.
            conn.execute("PRAGMA cache_size = -65536")
            # A first read: a WAL file needs its -shm index, which this user may be
            # unable to create.
            conn.execute("PRAGMA schema_version").fetchone()
        except sqlite3.Error as exc:
            if conn is not None:
                conn.close()
            if not self._readable_not_writable():
                raise StorageError(f"cannot open SQLite database {self.path}: {exc}") from exc
            return self._connect_read_only()
        return conn

    def _enter_wal(self, conn: sqlite3.Connection) -> str:
        """``PRAGMA journal_mode = WAL``, waiting up to the busy timeout for the lock.

        On a database still in rollback-journal mode (a new file) whose lock another
        connection holds, as when several workers start on it at once, SQLite answers
        "locked" at once instead of calling its busy handler (a deadlock it avoids
        for us): we wait here instead, in short and growing steps.
        """
        deadline = time.monotonic() + self.busy_timeout
        pause = 0.001
        while True:
            try:
                return str(conn.execute("PRAGMA journal_mode = WAL").fetchone()[0])
            except sqlite3.OperationalError as exc:
                if "database is locked" not in str(exc) or time.monotonic() >= deadline:
                    raise
            time.sleep(pause)
            pause = min(2 * pause, 0.05)

    def _readable_not_writable(self) -> bool:
        """The file exists and may be read, but it or its directory may not be written."""
        directory = self.path.parent
        return os.access(self.path, os.R_OK) and not (
            os.access(self.path, os.W_OK) and os.access(directory, os.W_OK | os.X_OK)
        )

    def _connect_read_only(self) -> sqlite3.Connection:
        """A read-only connection that creates nothing beside the file (see the module docs)."""
        if not self.path.is_file():
            raise StorageError(f"no SQLite database at {self.path.absolute()}")
        uri = f"file:{quote(str(self.path.absolute()))}?"
        has_wal = self._wal_path().exists()
        # mode=ro needs the -shm index of a writer that has the file open (it would
        # make one if it could, and leave it behind); immutable=1 reads the file alone,
        # which is all there is while no -wal file exists.
        modes = []
        if has_wal or self.path.with_name(f"{self.path.name}-shm").exists():
            modes.append("mode=ro")
        if not has_wal:
            modes.append("immutable=1")
        problem: sqlite3.Error | None = None
        for mode in modes:
            conn = None
            try:
                conn = sqlite3.connect(
                    uri + mode,
                    uri=True,
                    timeout=self.busy_timeout,
                    isolation_level=None,
                    check_same_thread=False,
                    factory=_OwnedConnection,
                )
                conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
                conn.execute("PRAGMA schema_version").fetchone()
            except sqlite3.Error as exc:
                if conn is not None:
                    conn.close()
                problem = exc
                continue
            self._local.immutable = mode == "immutable=1"
            self._local.retry_at = time.monotonic() + READ_ONLY_RETRY
            return conn
        hint = (
            " (its -wal file holds commits that only a user who may write beside it can read)"
            if has_wal
            else ""
        )
        raise StorageError(f"cannot read SQLite database {self.path}: {problem}{hint}")

    def _wal_path(self) -> Path:
        return self.path.with_name(f"{self.path.name}-wal")

    def _stale_fallback(self) -> bool:
        """A read-only fallback connection that should be given up (see the module docs)."""
        local = self._local
        if local.immutable and self._wal_path().exists():
            return True
        return not self.read_only and time.monotonic() >= local.retry_at

    def _connection(self) -> sqlite3.Connection:
        local = self._local
        pid = os.getpid()
        if getattr(local, "pid", None) != pid or (
            local.retry_at is not None and self._stale_fallback()
        ):
            if getattr(local, "pid", None) == pid:
                local.conn.close()  # a read-only fallback, given up
            # A connection inherited through fork() must never be used nor
            # closed in the child: drop it and open this process's own.
            local.pid = None
            local.retry_at = None
            local.conn = self._connect()
            local.pid = pid
        conn: sqlite3.Connection = local.conn
        return conn

    @contextmanager
    def _immediate(self) -> Iterator[sqlite3.Connection]:
        conn = self._connection()
        if getattr(self._local, "batch", 0):
            if self._local.savepoints:
                with self._savepoint(conn):
                    yield conn
            else:
                try:
                    yield conn
                except (sqlite3.Error, UnicodeEncodeError) as exc:  # the batch is undone
                    raise _storage_error(f"write to {self.path} failed", exc) from exc
            return
        with self._gate.turn():
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise StorageError(f"cannot start a write on {self.path}: {exc}") from exc
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException as exc:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                if isinstance(exc, (sqlite3.Error, UnicodeEncodeError)):
                    raise _storage_error(f"write to {self.path} failed", exc) from exc
                raise
        # Past the gate: the next writer commits while this one syncs.
        if self._group_sync is not None:
            self._group_sync.sync()

    @contextmanager
    def _savepoint(self, conn: sqlite3.Connection) -> Iterator[None]:
        """One write inside a batch: undone alone when it fails."""
        try:
            conn.execute("SAVEPOINT pixel_write")
        except sqlite3.Error as exc:
            raise StorageError(f"cannot start a write on {self.path}: {exc}") from exc
        try:
            yield
            conn.execute("RELEASE pixel_write")
        except BaseException as exc:
            conn.execute("ROLLBACK TO pixel_write")
            conn.execute("RELEASE pixel_write")
            if isinstance(exc, (sqlite3.Error, UnicodeEncodeError)):
                raise _storage_error(f"write to {self.path} failed", exc) from exc
            raise

    @contextmanager
    def batch(self, *, savepoints: bool = True) -> Iterator[None]:
        local = self._local
        if getattr(local, "batch", 0):
            local.batch += 1
            try:
                yield
            finally:
                local.batch -= 1
            return
        with self._immediate():
            local.batch = 1
            local.savepoints = savepoints
            try:
                yield
            finally:
                local.batch = 0

    def _read(self, operation: str, sql: str, params: tuple[Any, ...] = ()) -> list[Row]:
        try:
            return self._connection().execute(sql, params).fetchall()
        except (sqlite3.Error, UnicodeEncodeError) as exc:
            raise _storage_error(f"read from {self.path} failed", exc) from exc

    def _insert(self, operation: str, sql: str, params: tuple[Any, ...]) -> int:
        with self._immediate() as conn:
            try:
                cursor = conn.execute(sql, params)
            except sqlite3.IntegrityError as exc:
                raise NotFoundError(f"a referenced entity does not exist ({exc})") from exc
            assert cursor.lastrowid is not None
            return cursor.lastrowid

    @contextmanager
    def _transaction(self, operation: str, *, lock: bool = False) -> Iterator[Execute]:
        # BEGIN IMMEDIATE serialises every write with the ledger's already.
        with self._immediate() as conn:
            yield conn.execute

    # -- lifecycle -------------------------------------------------------------

    def migrate(self) -> None:
        # BEGIN IMMEDIATE serialises concurrent migrators; each migration runs in a
        # savepoint inside it.
        with self._immediate() as conn:
            schema.apply(conn)

    def pending_migrations(self) -> list[str]:
        """The names of the schema migrations this file lacks (a read: nothing is written)."""
        try:
            return schema.pending(self._connection())
        except sqlite3.Error as exc:
            raise StorageError(f"read from {self.path} failed: {exc}") from exc

    def check(self, *, writable: bool = False) -> None:
        self._read("check the store", "SELECT 1 FROM transactions LIMIT 1")
        if writable:
            self._check_writable()

    def _check_writable(self) -> None:
        # An empty BEGIN IMMEDIATE/COMMIT succeeds on a read-only file: rewrite one
        # header field with its own value, then roll back, so nothing changes.
        conn = self._connection()
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                version = conn.execute("PRAGMA user_version").fetchone()[0]
                conn.execute(f"PRAGMA user_version = {int(version)}")
            finally:
                conn.execute("ROLLBACK")
        except sqlite3.Error as exc:
            raise StorageError(f"{self.path} is not writable: {exc}") from exc

    def close(self) -> None:
        local = self._local
        if getattr(local, "pid", None) == os.getpid():
            local.conn.close()
        local.__dict__.clear()

    # -- the ledger's writes ----------------------------------------------------------

    def append_transaction(self, draft: TransactionDraft) -> int | None:
        in_batch: int = getattr(self._local, "batch", 0)
        if draft.personal_data or in_batch:
            with self._immediate() as conn:
                return _append_new(conn, draft)
        # One statement is atomic on its own: no BEGIN/COMMIT round trip, and the
        # write lock is held only for the INSERT itself.
        conn = self._connection()
        try:
            with self._gate.turn():
                transaction_id = _append_new(conn, draft)
        except (sqlite3.Error, UnicodeEncodeError) as exc:
            raise _storage_error(f"write to {self.path} failed", exc) from exc
        # Also after a conflict (None): the row it met may be another writer's, not
        # durable yet.
        if self._group_sync is not None:
            self._group_sync.sync()
        return transaction_id

    @contextmanager
    def writer(self) -> Iterator[LedgerWriter]:
        with self._immediate() as conn:
            yield SQLiteLedgerWriter(conn, self.max_rejections)


class WalCheckpointer(ProcessThread):
    """The checkpoint thread of :meth:`SQLiteStorage.housekeeping`.

    Every :data:`CHECKPOINT_INTERVAL` seconds it asks SQLite whether another
    connection committed since (``PRAGMA data_version``); if one did, it runs a
    ``PASSIVE`` checkpoint, which waits on no writer and copies what it can. Nothing
    escapes it: a failure is logged and the thread ends (the commits' own
    checkpoints past :data:`FALLBACK_AUTOCHECKPOINT` pages remain).
    """

    name = "pixel-wsgi-checkpoint"

    def __init__(
        self, storage: SQLiteStorage, *, after_exit: Callable[[], object] | None = None
    ) -> None:
        super().__init__(after_fork=after_exit)
        self.storage = storage
        self.after_exit = after_exit
        #: checkpoints run (tests, the benchmark's counts)
        self.checkpoints = 0

    def _run(self, stop: threading.Event) -> None:
        conn: sqlite3.Connection | None = None
        idle = False
        try:
            seen = None
            quiet_since = time.monotonic()
            while not stop.wait(CHECKPOINT_INTERVAL):
                with _CHECKPOINTING:
                    if conn is None:
                        conn = sqlite3.connect(self.storage.path, isolation_level=None)
                    version = conn.execute("PRAGMA data_version").fetchone()[0]
                    if version != seen:
                        seen = version
                        quiet_since = time.monotonic()
                        conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                        self.checkpoints += 1
                if time.monotonic() - quiet_since >= CHECKPOINT_IDLE_EXIT:
                    idle = True
                    break
        except Exception:  # ended for good: the commits checkpoint past the fallback
            logger.exception("pixel-wsgi could not checkpoint %s", self.storage.path)
        finally:
            if conn is not None:
                with _CHECKPOINTING:
                    conn.close()
        if idle and not stop.is_set():
            self._retire()
            if self.after_exit is not None:
                self.after_exit()


def _before_fork() -> None:
    _CHECKPOINTING.acquire()


def _after_fork_in_parent() -> None:
    _CHECKPOINTING.release()


def _after_fork_in_child() -> None:
    global _CHECKPOINTING
    _CHECKPOINTING = threading.Lock()  # the parent's copy is held: not ours


if hasattr(os, "register_at_fork"):  # not on Windows, which does not fork
    os.register_at_fork(
        before=_before_fork,
        after_in_parent=_after_fork_in_parent,
        after_in_child=_after_fork_in_child,
    )
