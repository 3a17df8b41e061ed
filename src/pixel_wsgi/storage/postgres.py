"""The PostgreSQL backend: one database that several app servers share.

Needs the optional extra (psycopg 3 and its connection pool)::

    pip install 'pixel-wsgi[postgres]'

    storage = storage_from_url("postgresql://pixel:secret@db.internal:5432/pixel")

The schema, keys and text rules are the SQLite backend's
(:mod:`pixel_wsgi.storage.migrations.postgres` says how the types map), so both
backends pass one contract test-suite and give byte-identical rows. Why these
settings:

- **One pool per process, opened on first use.** A pool (its sockets and its
  worker threads) never crosses a ``fork()`` (gunicorn ``--preload``): a child
  makes its own and never uses or closes the parent's. Threads share their
  process's pool; :meth:`~PostgresStorage.close` retires it once the operations
  under way end, so any thread may call it at any time.
- **Autocommit connections.** A read or a one-statement write is one round
  trip; a write of several statements is an explicit ``READ COMMITTED``
  transaction.
- **One write lock for the ledger.** Every :meth:`~PostgresStorage.writer` block
  *and* every :meth:`~PostgresStorage.append_transaction` (the pixel's fast path)
  first takes the transaction-scoped advisory lock ``pg_advisory_xact_lock``
  with one constant key, held until commit. It makes ``writer()`` serialised
  against all other writers, as the contract requires. It is also what keeps the
  Transactions API's keyset cursor (``after_transaction_id``) exact: ids come
  from a sequence, which numbers rows in the order they are *inserted*, not
  committed; two unlocked appenders could commit id 8 before id 7, and a reader
  that saw 8 would page past 7 for good. Under the lock an id is drawn only after
  every earlier writer has committed, so id order is commit order, and in
  ``READ COMMITTED`` each statement after the lock sees those commits.
  The price: ledger writes from all app servers commit one at a time, each
  holding the lock for a few round trips and its commit's WAL flush (a new
  conversion: its INSERT, personal data included, and its COMMIT). Clicks,
  entities, credentials, idempotency records and erasure take no lock.
- **Timeouts well under a worker's** (gunicorn: 30 s), 5 s each by default:
  connecting, waiting for a pooled connection, a statement, waiting for a lock
  (the write lock included); and the server ends a session left idle inside a
  transaction after twice the statement timeout, so a stuck client cannot keep
  the write lock. TCP keepalives notice a server that vanished without closing
  its sockets within about ten seconds. A pooled connection idle for a second or
  more is checked before use, so one killed by a server restart is replaced instead
  of failing a request; one back from a request a moment ago is not (the check was a
  round trip in three per pixel hit), and if the server went away meanwhile its
  write fails as any write may (the middleware spools the event).
- **Text rules as in SQLite.** PostgreSQL ``TEXT`` cannot hold NUL, which the
  edge already refuses; should one reach the store anyway it is a clear
  :class:`~pixel_wsgi.errors.StorageError` and nothing is written.
- **Reads in keyset pages** (``transactions()``, ``conversions()``,
  ``rejections()``, written once in :mod:`pixel_wsgi.storage.sql`): each page is a
  short query on a connection that goes back to the pool at once, so a
  half-read iterator holds nothing.

Every statement but this dialect's own (the ledger's INSERT and its write lock)
is the SQL core's, :mod:`pixel_wsgi.storage.sql`, translated from ``?`` to ``%s``.
Every driver error becomes a :class:`~pixel_wsgi.errors.StorageError` whose
message names the operation and the server, never the password; a broken
foreign key is a :class:`~pixel_wsgi.errors.NotFoundError`, as in SQLite.
"""

from __future__ import annotations

import os
import re
import socket
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

from ..clock import iso_utc, utc_now
from ..errors import (
    ConfigurationError,
    MissingDependencyError,
    NotFoundError,
    RecordRefused,
    StorageError,
)
from ..models import TransactionDraft
from .base import LedgerWriter
from .deliveries import SQLDeliveryStorage
from .migrations.postgres import MIGRATE_LOCK_KEY
from .migrations.postgres import apply as apply_migrations
from .rows import INSERTED_WITH_CONTEXT_COLUMNS, json_object, transaction_values_with_context
from .sql import (
    PAGE_SIZE,
    Execute,
    Row,
    SQLLedgerWriter,
    check_page_size,
    dialect,
)

if TYPE_CHECKING:
    from psycopg import Connection, Cursor
    from psycopg.rows import TupleRow
    from psycopg_pool import ConnectionPool

    Pool = ConnectionPool[Connection[TupleRow]]

__all__ = ["PostgresLedgerWriter", "PostgresStorage"]

NEEDS_EXTRA = (
    "the PostgreSQL backend needs psycopg 3 and its pool: pip install 'pixel-wsgi[postgres]'"
)

#: ``pg_advisory_xact_lock`` key of the ledger's write lock ("pixlwrit").
WRITE_LOCK_KEY = 0x7069_786C_7772_6974
_TAKE_WRITE_LOCK = f"SELECT pg_advisory_xact_lock({WRITE_LOCK_KEY})"

# A worker's timeout is 30 s (gunicorn's default): every wait must end well before.
_MAX_TIMEOUT = 25
#: Seconds since a connection came back from a request within which the pool hands
#: it out again without testing it (see ``_check_connection``).
CHECK_AFTER_IDLE = 1.0
_DEFAULT_CONNECT_TIMEOUT = 5
_TCP_SETTINGS = {
    "keepalives": "1",
    "keepalives_idle": "5",
    "keepalives_interval": "2",
    "keepalives_count": "3",
    "tcp_user_timeout": "10000",
}

# The constructor's options that a URL's query may carry, and their types.
_URL_OPTIONS: dict[str, Callable[[str], float]] = {
    "pool_min": int,
    "pool_max": int,
    "pool_timeout": float,
    "connect_timeout": int,
    "statement_timeout": float,
    "max_rejections": int,
    "page_size": int,
}

# The ids of a transaction row are bigint, everything else it stores is text:
# the casts an INSERT ... SELECT of parameters needs.
_BIGINT_COLUMNS = frozenset(
    (
        "advertiser_id",
        "campaign_id",
        "publisher_id",
        "visit_id",
        "corrects_transaction_id",
        "original_transaction_id",
    )
)
_INSERTED_NAMES = INSERTED_WITH_CONTEXT_COLUMNS.split(", ")
_INSERTED_CASTS = ", ".join(
    f"%s::{'bigint' if name in _BIGINT_COLUMNS else 'text'}" for name in _INSERTED_NAMES
)
_INTO_TRANSACTIONS = f"INSERT INTO transactions ({INSERTED_WITH_CONTEXT_COLUMNS})"

# The write lock as the first part of the statement that inserts (the pixel's fast
# path, outside a transaction): the INSERT reads its one row, so the lock is granted
# before the row's id is drawn, and held until the statement's own commit. One
# statement, prepared once per connection, instead of a simple query planned anew
# each time: measured, the server's work per pixel hit fell from about 170 to 60 µs.
_WRITE_LOCK_CTE = f"write_lock AS MATERIALIZED ({_TAKE_WRITE_LOCK})"

# Personal data goes in the same statement as its row: one round trip less
# while the write lock is held.
_PERSONAL_DATA_CTE = """p AS (
    INSERT INTO personal_data (transaction_id, advertiser_id, data, created_at)
    SELECT id, %s::bigint, %s::text, %s::text FROM t
)"""


def _insert_sql(*, reference_key: bool, after_lock: bool) -> str:
    """The INSERT of a ledger row, returning its id.

    :param reference_key: a conversion with a reference_id: a sequence value is drawn
        for every row an INSERT tries, so ON CONFLICT DO NOTHING alone would burn an
        id on each reload: look first, and keep ON CONFLICT as the backstop (and the
        guard, when the lock is taken in this very statement: the look then uses the
        statement's snapshot, taken before the lock, so a duplicate racing it only
        burns an id). Its target is the partial unique index transactions_reference_key,
        named by its columns and predicate: ON CONFLICT ON CONSTRAINT takes only a
        constraint's name, and a partial unique key can only be an index.
    :param after_lock: the row is selected from ``write_lock`` (``_WRITE_LOCK_CTE``).
    """
    sql = f"{_INTO_TRANSACTIONS}\nSELECT {_INSERTED_CASTS}"
    if after_lock:
        sql += " FROM write_lock"
    if reference_key:
        sql += """
WHERE NOT EXISTS (
    SELECT 1 FROM transactions WHERE advertiser_id = %s AND reference_id = %s
    AND corrects_transaction_id IS NULL
)
ON CONFLICT (advertiser_id, reference_id)
    WHERE corrects_transaction_id IS NULL AND reference_id IS NOT NULL
    DO NOTHING"""
    return f"{sql}\nRETURNING id"


# Identity columns refuse an explicit id (a replayed visit's) unless told.
_OVERRIDING = " OVERRIDING SYSTEM VALUE"


class _Slot:
    """A process's pool, how many operations use it, and whether close() retired it."""

    __slots__ = ("pid", "pool", "retired", "users")

    def __init__(self, pid: int, pool: Pool) -> None:
        self.pid = pid
        self.pool = pool
        self.users = 0
        self.retired = False


# Guards every _Slot (held for a few bytecodes per operation). A fork may leave
# it held by a thread that does not exist in the child: the child gets a new one.
_pool_lock = threading.Lock()
# Pools inherited through fork(): never used, closed nor garbage-collected in the
# child (their finalizers would touch the parent's sockets and threads' queues).
_inherited_pools: list[_Slot] = []


def _renew_pool_lock() -> None:
    global _pool_lock
    _pool_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_renew_pool_lock)


def _number(name: str, value: object, kind: Callable[[str], float]) -> Any:
    try:
        return kind(str(value))
    except ValueError:
        raise ConfigurationError(f"{name} must be a number, got {value!r}") from None


def _load_driver() -> None:
    try:
        import psycopg  # noqa: F401
        import psycopg_pool  # noqa: F401
    except ImportError as exc:
        raise MissingDependencyError(NEEDS_EXTRA) from exc


_PASSWORD_IN_URL = re.compile(r"(://[^:/?#@\s]*:)[^@/?#\s]*@")
_PASSWORD_PARAM = re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)


def redact(conninfo: str) -> str:
    """A URL or connection string with its password replaced by ``***``."""
    conninfo = _PASSWORD_IN_URL.sub(r"\1***@", conninfo)
    return _PASSWORD_PARAM.sub(r"\1***", conninfo)


def _insert_statement(
    draft: TransactionDraft, *, locked: bool = False
) -> tuple[str, tuple[Any, ...]]:
    """One statement that inserts a row and its personal data, returning its id
    (no row when its reference key is taken); with ``locked``, it takes the write
    lock first (``_WRITE_LOCK_CTE``)."""
    params = transaction_values_with_context(draft)
    reference_key = draft.reference_id is not None and draft.corrects_transaction_id is None
    if reference_key:
        params += (draft.advertiser_id, draft.reference_id)
    insert = _insert_sql(reference_key=reference_key, after_lock=locked)
    parts = [_WRITE_LOCK_CTE] if locked else []
    if draft.personal_data:
        parts += [f"t AS ({insert})", _PERSONAL_DATA_CTE]
        params += (draft.advertiser_id, json_object(draft.personal_data), draft.created_at)
        return f"WITH {', '.join(parts)}\nSELECT id FROM t", params
    return (f"WITH {parts[0]}\n{insert}" if parts else insert), params


def _inserted_id(row: Row | None) -> int | None:
    if row is None:
        return None
    transaction_id: int = row[0]
    return transaction_id


def _insert_transaction(cur: Cursor[TupleRow], draft: TransactionDraft) -> int | None:
    """Insert a row and its personal data; None if its key is taken."""
    sql, params = _insert_statement(draft)
    return _inserted_id(cur.execute(sql, params).fetchone())


class PostgresLedgerWriter(SQLLedgerWriter):
    """The ledger primitives on one cursor, inside a transaction holding the write lock."""

    explicit_id = _OVERRIDING

    def __init__(self, cur: Cursor[TupleRow], max_rejections: int) -> None:
        super().__init__(max_rejections)
        self._cur = cur

    def _execute(self, sql: str, params: tuple[Any, ...]) -> Cursor[TupleRow]:
        return self._cur.execute(dialect(sql, "%s"), params)

    def _insert(self, sql: str, params: tuple[Any, ...]) -> int:
        # No lastrowid in psycopg: the id comes back with RETURNING.
        row = self._execute(f"{sql} RETURNING id", params).fetchone()
        assert row is not None
        new_id: int = row[0]
        return new_id

    def insert_transaction(self, draft: TransactionDraft) -> int | None:
        return _insert_transaction(self._cur, draft)


class _Watchdog:
    """Cuts the socket of a connection whose operation outlived its deadline.

    One thread per process, started on first use, that looks every quarter second:
    arming and disarming are a dict assignment and removal, no thread per operation.
    A cut socket makes the waiting call fail at once (``OperationalError``, then a
    :class:`StorageError`, so the event goes to the spool), and the pool discards
    the broken connection.
    """

    TICK = 0.25

    def __init__(self) -> None:
        self._armed: dict[int, tuple[float, Connection[TupleRow]]] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._pid = 0

    def arm(self, conn: Connection[TupleRow], seconds: float) -> int:
        token = id(conn)
        self._armed[token] = (time.monotonic() + seconds, conn)
        if self._pid != os.getpid():
            with self._lock:
                if self._pid != os.getpid():  # first use, or a new process after fork
                    self._thread = threading.Thread(
                        target=self._watch, name="pixel-wsgi-postgres-watchdog", daemon=True
                    )
                    self._thread.start()
                    self._pid = os.getpid()
        return token

    def disarm(self, token: int) -> None:
        self._armed.pop(token, None)

    def _watch(self) -> None:
        while True:
            time.sleep(self.TICK)
            now = time.monotonic()
            for token, (deadline, conn) in list(self._armed.items()):
                if deadline <= now and self._armed.pop(token, None) is not None:
                    _cut(conn)


def _cut(conn: Connection[TupleRow]) -> None:
    try:
        fd = conn.pgconn.socket
        with socket.socket(fileno=os.dup(fd)) as sock:
            sock.shutdown(socket.SHUT_RDWR)
    except Exception:  # already closed, or no socket: nothing is waiting on it
        pass


_WATCHDOG = _Watchdog()


class PostgresStorage(SQLDeliveryStorage):
    """Storage in a PostgreSQL database (11 or newer; tested with 15).

    :param url_or_conninfo: a ``postgresql://user:password@host:port/dbname?...``
        URL or a libpq ``key=value`` connection string; libpq's parameters and
        environment variables (``PGPASSWORD``, ``sslmode``, ...) all apply.
    :param pool_min: connections each process keeps open.
    :param pool_max: connections each process opens at most.
    :param pool_timeout: seconds to wait for a free connection from the pool.
    :param connect_timeout: seconds to wait for the server when connecting.
    :param statement_timeout: seconds a statement, or a wait for a lock, may take.
    :param max_rejections: how many rejection-log entries are kept.
    :param page_size: rows per query when a listing is read, in keyset pages.

    Prefer :func:`~pixel_wsgi.storage.storage_from_url`::

        storage = storage_from_url("postgresql://pixel@db.internal/pixel")
        storage.migrate()

    The database must use the UTF8 encoding. The tables live in the first schema
    of the ``search_path``; to choose one, add ``?options=-csearch_path%3Dpixel``.
    """

    schemes = ("postgresql", "postgres")
    explicit_id = _OVERRIDING
    skip_locked = " FOR UPDATE OF d SKIP LOCKED"

    def __init__(
        self,
        url_or_conninfo: str,
        *,
        pool_min: int = 1,
        pool_max: int = 10,
        pool_timeout: float = 5.0,
        connect_timeout: int | None = None,
        statement_timeout: float = 5.0,
        max_rejections: int = 100_000,
        page_size: int = PAGE_SIZE,
    ) -> None:
        _load_driver()
        from psycopg import ProgrammingError
        from psycopg.conninfo import conninfo_to_dict, make_conninfo

        try:
            params = conninfo_to_dict(url_or_conninfo)
        except ProgrammingError as exc:
            raise ConfigurationError(
                f"not a PostgreSQL URL or connection string: {redact(url_or_conninfo)!r}"
                f" ({redact(str(exc))})"
            ) from None
        if connect_timeout is None:
            connect_timeout = _number(
                "connect_timeout", params.get("connect_timeout", _DEFAULT_CONNECT_TIMEOUT), int
            )
        if not 0 <= pool_min <= pool_max or pool_max < 1:
            raise ConfigurationError(
                f"need 0 <= pool_min <= pool_max and pool_max >= 1,"
                f" got pool_min={pool_min!r}, pool_max={pool_max!r}"
            )
        for name, value in (
            ("pool_timeout", pool_timeout),
            ("connect_timeout", connect_timeout),
            ("statement_timeout", statement_timeout),
        ):
            if not 0 < value <= _MAX_TIMEOUT:
                raise ConfigurationError(
                    f"{name} must be between 0 and {_MAX_TIMEOUT} seconds (under a worker"
                    f" timeout), got {value!r}"
                )
        if int(connect_timeout) != connect_timeout:
            raise ConfigurationError(
                f"connect_timeout is whole seconds (libpq's unit), got {connect_timeout!r}"
            )
        if max_rejections < 1:
            raise ConfigurationError(f"max_rejections must be at least 1, got {max_rejections}")
        self.pool_min = pool_min
        self.pool_max = pool_max
        self.pool_timeout = float(pool_timeout)
        self.connect_timeout = int(connect_timeout)
        self.statement_timeout = float(statement_timeout)
        # An operation's statements each end within statement_timeout on a server that
        # answers; one that takes twice that is talking to a server that does not.
        self._deadline = 2 * self.statement_timeout
        self.max_rejections = max_rejections
        self.page_size = check_page_size(page_size)
        # This thread's connection while it runs a batch (see batch()).
        self._batched = threading.local()
        #: when each pooled connection came back from its last use (monotonic seconds)
        self._returned_at: weakref.WeakKeyDictionary[Connection[TupleRow], float] = (
            weakref.WeakKeyDictionary()
        )
        self._password = str(params.get("password") or "")
        self._where = self._describe(params)
        milliseconds = round(self.statement_timeout * 1000)
        server_settings = (
            f"-c statement_timeout={milliseconds} -c lock_timeout={milliseconds}"
            f" -c idle_in_transaction_session_timeout={2 * milliseconds}"
        )
        # Ours come last, so they win over the same settings in the URL's options.
        params["options"] = f"{params.get('options') or ''} {server_settings}".strip()
        params["connect_timeout"] = str(self.connect_timeout)
        # The statement timeout is the server's: a server that vanished without
        # closing its sockets (a host down, a network cut) is noticed by TCP, within
        # about ten seconds with these, instead of the system's default minutes.
        for key, value in _TCP_SETTINGS.items():
            params.setdefault(key, value)
        params.setdefault("application_name", "pixel-wsgi")
        self._conninfo = make_conninfo("", **params)
        self._slot: _Slot | None = None

    @staticmethod
    def _describe(params: dict[str, Any]) -> str:
        user = f"{params['user']}@" if params.get("user") else ""
        host = params.get("host") or params.get("hostaddr") or "localhost"
        port = f":{params['port']}" if params.get("port") else ""
        return f"postgresql://{user}{host}{port}/{params.get('dbname') or ''}"

    @classmethod
    def from_url(cls, url: str, **options: Any) -> PostgresStorage:
        """``postgresql://user:password@host:port/dbname?sslmode=require`` (or ``postgres://``).

        The query takes libpq's parameters and this class's options (``pool_max=20``,
        ``statement_timeout=2.5``, ...); keyword ``options`` win over the URL's.
        A driver suffix (``postgresql+psycopg://``) is accepted and dropped.
        """
        parts = urlsplit(url)
        if parts.scheme.split("+", 1)[0] not in cls.schemes:
            raise ConfigurationError(
                f"PostgreSQL URLs start with postgresql://, got {redact(url)!r}"
            )
        libpq_query = []
        for key, value in parse_qsl(parts.query, keep_blank_values=True):
            if key in _URL_OPTIONS:
                options.setdefault(key, _number(key, value, _URL_OPTIONS[key]))
            else:
                libpq_query.append((key, value))
        # Not urlunsplit(): it drops the empty host of postgresql:///dbname.
        query = urlencode(libpq_query, quote_via=quote)
        url = f"postgresql://{parts.netloc}{parts.path}" + (f"?{query}" if query else "")
        return cls(url, **options)

    def __repr__(self) -> str:
        return f"PostgresStorage({self._where!r})"

    # -- connections -----------------------------------------------------------

    def _enter_pool(self) -> _Slot:
        """This process's pool, counted as in use until :meth:`_leave_pool`."""
        pid = os.getpid()
        with _pool_lock:
            slot = self._slot
            if slot is None or slot.pid != pid:
                if slot is not None:
                    # Made before a fork(): the parent's sockets, not ours to touch.
                    _inherited_pools.append(slot)
                slot = self._slot = _Slot(pid, self._new_pool(pid))
            slot.users += 1
            return slot

    def _leave_pool(self, slot: _Slot) -> None:
        with _pool_lock:
            slot.users -= 1
            unused = slot.retired and slot.users == 0
        if unused:
            slot.pool.close()

    def _new_pool(self, pid: int) -> Pool:
        from psycopg import IsolationLevel
        from psycopg_pool import ConnectionPool

        def configure(conn: Connection[TupleRow]) -> None:
            # The write lock needs each statement to see the commits made before
            # it was granted; a server default of REPEATABLE READ would not.
            conn.isolation_level = IsolationLevel.READ_COMMITTED

        pool: Pool = ConnectionPool(
            self._conninfo,
            kwargs={"autocommit": True},
            min_size=self.pool_min,
            max_size=self.pool_max,
            timeout=self.pool_timeout,
            configure=configure,
            check=self._check_connection,
            name=f"pixel-wsgi-{pid}",
            open=False,
        )
        pool.open(wait=False)
        return pool

    def _check_connection(self, conn: Connection[TupleRow]) -> None:
        """The pool's test of a connection before handing it out, with a deadline:
        a server that stopped answering must not hold the request here either.

        A connection back from a request less than :data:`CHECK_AFTER_IDLE` seconds
        ago is handed out untested: under load that test was a round trip in three
        of every pixel hit (measured). If the server went away meanwhile, the write
        on it fails as any write may (the middleware spools its event).
        """
        from psycopg_pool import ConnectionPool

        if time.monotonic() - self._returned_at.get(conn, -CHECK_AFTER_IDLE) < CHECK_AFTER_IDLE:
            return

        token = _WATCHDOG.arm(conn, self.connect_timeout)
        try:
            ConnectionPool.check_connection(conn)
        finally:
            _WATCHDOG.disarm(token)

    def _error(self, operation: str, exc: BaseException) -> StorageError:
        from psycopg import DataError, errors
        from psycopg_pool import PoolTimeout

        where = self._where
        if isinstance(exc, errors.ForeignKeyViolation):
            detail = (exc.diag.message_detail or str(exc)).splitlines()[0]
            return NotFoundError(
                f"cannot {operation}: a row it refers to does not exist ({detail})"
            )
        if isinstance(exc, PoolTimeout):
            message = (
                f"cannot {operation}: no connection to {where} within {self.pool_timeout:g} s"
                f" ({exc})"
            )
        elif isinstance(exc, (errors.LockNotAvailable, errors.QueryCanceled)):
            # A wait for the write lock ends on whichever timeout fires first.
            message = (
                f"cannot {operation}: timed out after {self.statement_timeout:g} s on {where}"
                f" ({str(exc).strip()})"
            )
        elif isinstance(exc, DataError) and "NUL" in str(exc):
            message = (
                f"cannot {operation}: the text contains a NUL character, which PostgreSQL"
                " cannot store"
            )
        elif isinstance(exc, UnicodeEncodeError):
            message = f"cannot {operation}: the text is not valid Unicode ({exc.reason})"
        else:
            message = f"cannot {operation} on {where}: {str(exc).strip()}"
        if self._password:
            message = message.replace(self._password, "***")
        if isinstance(exc, (DataError, UnicodeEncodeError)):
            return RecordRefused(message)  # this record, not the store: never retried
        return StorageError(message)

    @contextmanager
    def _connection(
        self, operation: str, *, deadline: bool = True
    ) -> Iterator[Connection[TupleRow]]:
        from psycopg import Error

        pinned: Connection[TupleRow] | None = getattr(self._batched, "conn", None)
        if pinned is not None:
            # Inside a batch: its connection, each use a savepoint of its transaction
            # (unless the batch runs without: then a failure undoes all of it).
            try:
                with pinned.transaction() if self._batched.savepoints else nullcontext():
                    yield pinned
            except (Error, UnicodeEncodeError) as exc:
                raise self._error(operation, exc) from exc
            return
        slot = self._enter_pool()
        try:
            with slot.pool.connection() as conn:
                # The server enforces statement_timeout only while it runs: one that
                # stopped answering (a stall, a paused process) would hold the request
                # until it resumes. Past the deadline the watchdog cuts the socket.
                token = _WATCHDOG.arm(conn, self._deadline) if deadline else None
                try:
                    yield conn
                finally:
                    if token is not None:
                        _WATCHDOG.disarm(token)
                    self._returned_at[conn] = time.monotonic()  # back to the pool now
        except (Error, UnicodeEncodeError) as exc:
            raise self._error(operation, exc) from exc
        finally:
            self._leave_pool(slot)

    @contextmanager
    def _cursor(
        self, operation: str, *, lock: bool = False, deadline: bool = True
    ) -> Iterator[Cursor[TupleRow]]:
        """A transaction on a pooled connection; ``lock`` takes the write lock first."""
        with self._connection(operation, deadline=deadline) as conn:
            # A batch holds the write lock from its start, in one transaction.
            batched = conn is getattr(self._batched, "conn", None)
            plain = batched and not self._batched.savepoints
            with nullcontext() if plain else conn.transaction(), conn.cursor() as cur:
                if lock and not batched:
                    cur.execute(_TAKE_WRITE_LOCK)
                yield cur

    @contextmanager
    def _transaction(self, operation: str, *, lock: bool = False) -> Iterator[Execute]:
        with self._cursor(operation, lock=lock) as cur:

            def execute(sql: str, params: tuple[Any, ...]) -> Cursor[TupleRow]:
                return cur.execute(dialect(sql, "%s"), params)

            yield execute

    def _read(self, operation: str, sql: str, params: tuple[Any, ...] = ()) -> list[Row]:
        with self._connection(operation) as conn:
            return conn.execute(dialect(sql, "%s"), params).fetchall()

    def _insert(self, operation: str, sql: str, params: tuple[Any, ...]) -> int:
        # No lastrowid in psycopg: the id comes back with RETURNING.
        with self._connection(operation) as conn:
            row = conn.execute(dialect(f"{sql} RETURNING id", "%s"), params).fetchone()
        assert row is not None
        new_id: int = row[0]
        return new_id

    # -- lifecycle -------------------------------------------------------------

    def migrate(self) -> None:
        # No deadline: a migration may rightly take long on a big table.
        with self._cursor("migrate the schema", deadline=False) as cur:
            row = cur.execute("SHOW server_encoding").fetchone()
            if row is None or row[0] != "UTF8":
                raise StorageError(
                    f"the database of {self._where} must use the UTF8 encoding (it uses"
                    f" {row and row[0]}): CREATE DATABASE ... ENCODING 'UTF8' TEMPLATE template0"
                )
            # Migrators queue here; the later ones find nothing left to do.
            cur.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATE_LOCK_KEY,))
            apply_migrations(cur, iso_utc(utc_now()))

    def check(self, *, writable: bool = False) -> None:
        self._read("check the store", "SELECT 1 FROM transactions LIMIT 1")
        if writable:
            row = self._one("check the store is writable", "SHOW transaction_read_only")
            if row is None or row[0] != "off":
                raise StorageError(
                    f"{self!r} is read-only (a standby, or default_transaction_read_only)"
                )

    def close(self) -> None:
        """Close this process's pool once the operations using it end.

        Safe from any thread at any time (the contract's per-thread close): an
        operation under way finishes on the old pool, the next one opens a new pool.
        """
        with _pool_lock:
            slot, self._slot = self._slot, None
            if slot is None or slot.pid != os.getpid():
                if slot is not None:
                    _inherited_pools.append(slot)
                return
            slot.retired = True
            unused = slot.users == 0
        if unused:
            slot.pool.close()

    # -- the ledger ------------------------------------------------------------

    def append_transaction(self, draft: TransactionDraft) -> int | None:
        # Under the write lock, like every ledger write (see the module docs), in ONE
        # round trip: the lock and the INSERT are one prepared statement, which the
        # server runs as one implicit transaction, so the lock is held only while
        # the server works, not across the network twice (the pixel's hot path).
        if getattr(self._batched, "conn", None) is not None:
            with self._cursor("append a conversion", lock=True) as cur:
                return _insert_transaction(cur, draft)
        sql, params = _insert_statement(draft, locked=True)
        with self._connection("append a conversion") as conn:
            return _inserted_id(conn.execute(sql, params, prepare=True).fetchone())

    @contextmanager
    def writer(self) -> Iterator[LedgerWriter]:
        with self._cursor("write to the ledger", lock=True) as cur:
            yield PostgresLedgerWriter(cur, self.max_rejections)

    @contextmanager
    def batch(self, *, savepoints: bool = True) -> Iterator[None]:
        if getattr(self._batched, "conn", None) is not None:
            yield  # part of the outer batch
            return
        # No deadline: an applier's batch may rightly outlast one statement's.
        with self._connection("apply a batch", deadline=False) as conn, conn.transaction():
            # The write lock once, for the whole batch: its writes need not ask again.
            conn.execute(_TAKE_WRITE_LOCK)
            self._batched.conn = conn
            self._batched.savepoints = savepoints
            try:
                yield
            finally:
                self._batched.conn = None
