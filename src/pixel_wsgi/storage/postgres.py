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
  its sockets within about ten seconds. A pooled connection is checked before
  use, so one killed by a server restart is replaced instead of failing a request.
- **Text rules as in SQLite.** PostgreSQL ``TEXT`` cannot hold NUL, which the
  edge already refuses; should one reach the store anyway it is a clear
  :class:`~pixel_wsgi.errors.StorageError` and nothing is written.
- **Reads in keyset pages** of 1000 rows (``transactions()``, ``conversions()``,
  ``rejections()``): each page is a short query on a connection that goes back
  to the pool at once, so memory stays bounded on a large export and a
  half-read iterator holds nothing. The first page is read by the call itself,
  so a failing store raises there; later pages are read as the iterator
  advances and see rows committed meanwhile, never skipping nor repeating one.

Every driver error becomes a :class:`~pixel_wsgi.errors.StorageError` whose
message names the operation and the server, never the password; a broken
foreign key is a :class:`~pixel_wsgi.errors.NotFoundError`, as in SQLite.
"""

from __future__ import annotations

import functools
import json
import os
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

from ..clock import iso_utc, utc_now
from ..entities import validate_destination
from ..errors import (
    ConfigurationError,
    MissingDependencyError,
    NotFoundError,
    RecordRefused,
    StorageError,
)
from ..models import (
    Advertiser,
    ApiCredential,
    Attribution,
    Campaign,
    IdempotencyRecord,
    Link,
    PayoutRule,
    Publisher,
    Rejection,
    RejectionDraft,
    Transaction,
    TransactionDraft,
    TransactionType,
)
from .base import LedgerWriter, Storage, check_daily_cap, trim_rejections
from .migrations.postgres import MIGRATE_LOCK_KEY, migrations
from .precedence import (
    CONTESTED_REFERENCES,
    SharedWriterSQL,
    dialect,
    idempotency_settlement,
)
from .rows import (
    ANY_CAPPED_CAMPAIGN,
    CAP_INDEX_DDL,
    CREDENTIAL_COLUMNS,
    DROP_CAP_INDEX_DDL,
    IDEMPOTENCY_COLUMNS,
    INSERTED_REJECTION_COLUMNS,
    INSERTED_TRANSACTION_COLUMNS,
    REJECTION_COLUMNS,
    SELECT_ADVERTISERS,
    SELECT_ATTRIBUTION,
    SELECT_CAMPAIGNS,
    SELECT_LINKS,
    TRANSACTION_COLUMNS,
    advertiser_from_row,
    attribution_from_row,
    campaign_from_row,
    idempotency_values,
    json_object,
    payout_rule,
    payout_values,
    rejection_values,
    transaction_conditions,
    transaction_from_row,
    transaction_values,
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

#: Rows per query when a read is streamed.
PAGE_SIZE = 1000
_MAX_ID = 2**63 - 1

# A worker's timeout is 30 s (gunicorn's default): every wait must end well before.
_MAX_TIMEOUT = 25
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
_INSERTED_NAMES = INSERTED_TRANSACTION_COLUMNS.split(", ")
_INSERTED_CASTS = ", ".join(
    f"%s::{'bigint' if name in _BIGINT_COLUMNS else 'text'}" for name in _INSERTED_NAMES
)
_INTO_TRANSACTIONS = f"INSERT INTO transactions ({INSERTED_TRANSACTION_COLUMNS})"

# A correction, or a conversion without a reference_id: no idempotency key.
_INSERT_TRANSACTION = (
    f"{_INTO_TRANSACTIONS} VALUES ({', '.join('%s' for _ in _INSERTED_NAMES)}) RETURNING id"
)

# A conversion with a reference_id. A sequence value is drawn for every row an
# INSERT tries, so ON CONFLICT DO NOTHING alone would burn an id on each reload:
# look first, which the write lock makes race-free, and keep ON CONFLICT as the
# backstop. Its target is the partial unique index transactions_reference_key,
# named by its columns and predicate: ON CONFLICT ON CONSTRAINT takes only a
# constraint's name, and a partial unique key can only be an index.
_INSERT_NEW_CONVERSION = f"""
{_INTO_TRANSACTIONS}
SELECT {_INSERTED_CASTS}
WHERE NOT EXISTS (
    SELECT 1 FROM transactions WHERE advertiser_id = %s AND reference_id = %s
    AND corrects_transaction_id IS NULL
)
ON CONFLICT (advertiser_id, reference_id)
    WHERE corrects_transaction_id IS NULL AND reference_id IS NOT NULL
    DO NOTHING
RETURNING id
"""

# Personal data goes in the same statement as its row: one round trip less
# while the write lock is held.
_WITH_PERSONAL_DATA = """
WITH t AS ({insert}), p AS (
    INSERT INTO personal_data (transaction_id, advertiser_id, data, created_at)
    SELECT id, %s::bigint, %s::text, %s::text FROM t
)
SELECT id FROM t
"""

# Conversions of a campaign since a moment: transactions_campaign_created.
_CONVERSIONS_SINCE = """
SELECT COUNT(*) FROM transactions
WHERE campaign_id = %(campaign)s AND created_at >= %(since)s AND corrects_transaction_id IS NULL
"""

# The chain ends, one page at a time in the order of their conversions' first
# rows: walk the first rows by primary key and find each one's newest row.
_CONVERSIONS = f"""
SELECT e.* FROM transactions o CROSS JOIN LATERAL (
    SELECT {TRANSACTION_COLUMNS} FROM transactions
    WHERE id = o.id OR original_transaction_id = o.id
    ORDER BY id DESC LIMIT 1
) e
WHERE o.corrects_transaction_id IS NULL AND o.id > %s
"""
_CONVERSION_KEY = 8  # COALESCE(original_transaction_id, id): the first row's id

_SELECT_REJECTIONS = f"SELECT {REJECTION_COLUMNS} FROM rejections WHERE id < %s"

_T = TypeVar("_T")
Row = tuple[Any, ...]


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


def _insert_statement(draft: TransactionDraft) -> tuple[str, tuple[Any, ...]]:
    """One statement that inserts a row and its personal data, returning its id
    (no row when its reference key is taken)."""
    params = transaction_values(draft)
    if draft.reference_id is not None and draft.corrects_transaction_id is None:
        sql = _INSERT_NEW_CONVERSION
        params += (draft.advertiser_id, draft.reference_id)
    else:
        sql = _INSERT_TRANSACTION
    if draft.personal_data:
        sql = _WITH_PERSONAL_DATA.format(insert=sql)
        params += (draft.advertiser_id, json_object(draft.personal_data), draft.created_at)
    return sql, params


def _inserted_id(row: Row | None) -> int | None:
    if row is None:
        return None
    transaction_id: int = row[0]
    return transaction_id


def _insert_transaction(cur: Cursor[TupleRow], draft: TransactionDraft) -> int | None:
    """Insert a row and its personal data; None if its key is taken."""
    sql, params = _insert_statement(draft)
    return _inserted_id(cur.execute(sql, params).fetchone())


@functools.lru_cache(maxsize=64)
def _percent_placeholders(sql: str) -> str:
    return dialect(sql, "%s")


class PostgresLedgerWriter(SharedWriterSQL, LedgerWriter):
    """The ledger primitives on one cursor, inside a transaction holding the write lock."""

    def __init__(self, cur: Cursor[TupleRow], max_rejections: int) -> None:
        self._cur = cur
        self._max_rejections = max_rejections

    def _execute(self, sql: str, params: tuple[Any, ...]) -> Cursor[TupleRow]:
        return self._cur.execute(_percent_placeholders(sql), params)

    def _one(self, sql: str, params: tuple[Any, ...]) -> Row | None:
        return self._cur.execute(sql, params).fetchone()

    def ensure_visit(self, visit_id: int, link_id: int, created_at: str) -> bool:
        self._cur.execute(
            "INSERT INTO visits (id, link_id, ip_prefix, user_agent, created_at)"
            " OVERRIDING SYSTEM VALUE SELECT %s, id, NULL, NULL, %s FROM links WHERE id = %s"
            " ON CONFLICT ON CONSTRAINT visits_pkey DO NOTHING",
            (visit_id, created_at, link_id),
        )
        return self._one("SELECT 1 FROM visits WHERE id = %s", (visit_id,)) is not None

    def attribution(self, visit_id: int) -> Attribution | None:
        row = self._one(f"{SELECT_ATTRIBUTION} WHERE v.id = %s", (visit_id,))
        return None if row is None else attribution_from_row(row)

    def advertiser_exists(self, advertiser_id: int) -> bool:
        return self._one("SELECT 1 FROM advertisers WHERE id = %s", (advertiser_id,)) is not None

    def campaign_payout(self, campaign_id: int) -> PayoutRule:
        row = self._one(
            "SELECT payout_kind, payout_value, payout_currency, reason_codes"
            " FROM campaigns WHERE id = %s",
            (campaign_id,),
        )
        if row is None:
            raise NotFoundError(f"campaign {campaign_id} does not exist")
        return payout_rule(*row)

    def campaign(self, campaign_id: int) -> Campaign | None:
        row = self._one(f"{SELECT_CAMPAIGNS} WHERE id = %s", (campaign_id,))
        return None if row is None else campaign_from_row(row)

    def publisher_approved(self, campaign_id: int, publisher_id: int) -> bool:
        row = self._one(
            "SELECT 1 FROM links WHERE campaign_id = %s AND publisher_id = %s LIMIT 1",
            (campaign_id, publisher_id),
        )
        return row is not None

    def claim_event(self, event_id: str, claimed_at: str) -> bool:
        cursor = self._cur.execute(
            "INSERT INTO applied_events (event_id, applied_at) VALUES (%s, %s)"
            " ON CONFLICT ON CONSTRAINT applied_events_pkey DO NOTHING",
            (event_id, claimed_at),
        )
        return cursor.rowcount == 1

    def find_original(self, advertiser_id: int, reference_id: str) -> Transaction | None:
        row = self._one(
            f"SELECT {TRANSACTION_COLUMNS} FROM transactions WHERE advertiser_id = %s"
            " AND reference_id = %s AND corrects_transaction_id IS NULL",
            (advertiser_id, reference_id),
        )
        return None if row is None else transaction_from_row(row)

    def chain_end(self, original_transaction_id: int) -> Transaction:
        # Chains are lines (transactions_corrects_key) and ids only grow, so
        # the newest row of the chain is its end.
        row = self._one(
            f"SELECT {TRANSACTION_COLUMNS} FROM transactions"
            " WHERE id = %s OR original_transaction_id = %s ORDER BY id DESC LIMIT 1",
            (original_transaction_id, original_transaction_id),
        )
        if row is None:
            raise NotFoundError(f"transaction {original_transaction_id} does not exist")
        return transaction_from_row(row)

    def has_recent_duplicate(
        self, advertiser_id: int, visit_id: int, fingerprint: str, since: str
    ) -> bool:
        row = self._one(
            "SELECT 1 FROM transactions WHERE visit_id = %s AND fingerprint = %s"
            " AND reference_id IS NULL AND corrects_transaction_id IS NULL"
            " AND advertiser_id = %s AND created_at >= %s LIMIT 1",
            (visit_id, fingerprint, advertiser_id, since),
        )
        return row is not None

    def insert_transaction(self, draft: TransactionDraft) -> int | None:
        return _insert_transaction(self._cur, draft)

    def insert_rejection(self, draft: RejectionDraft) -> None:
        row = self._one(
            f"INSERT INTO rejections ({INSERTED_REJECTION_COLUMNS})"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s) RETURNING id",
            rejection_values(draft),
        )
        trim_rejections(0 if row is None else row[0], self._max_rejections, self._cur.execute, "%s")

    def conversions_since(self, campaign_id: int, since: str) -> int:
        row = self._cur.execute(
            _CONVERSIONS_SINCE, {"campaign": campaign_id, "since": since}
        ).fetchone()
        assert row is not None
        count: int = row[0]
        return count


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


class PostgresStorage(Storage):
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

    Prefer :func:`~pixel_wsgi.storage.storage_from_url`::

        storage = storage_from_url("postgresql://pixel@db.internal/pixel")
        storage.migrate()

    The database must use the UTF8 encoding. The tables live in the first schema
    of the ``search_path``; to choose one, add ``?options=-csearch_path%3Dpixel``.
    """

    schemes = ("postgresql", "postgres")

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
        a server that stopped answering must not hold the request here either."""
        from psycopg_pool import ConnectionPool

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
        except (Error, UnicodeEncodeError) as exc:
            raise self._error(operation, exc) from exc
        finally:
            self._leave_pool(slot)

    @contextmanager
    def _transaction(
        self, operation: str, *, lock: bool = False, deadline: bool = True
    ) -> Iterator[Cursor[TupleRow]]:
        """A transaction on a pooled connection; ``lock`` takes the write lock first."""
        with (
            self._connection(operation, deadline=deadline) as conn,
            conn.transaction(),
            conn.cursor() as cur,
        ):
            if lock:
                cur.execute(_TAKE_WRITE_LOCK)
            yield cur

    def _read(self, operation: str, sql: str, params: tuple[Any, ...] = ()) -> list[Row]:
        with self._connection(operation) as conn:
            return conn.execute(sql, params).fetchall()

    def _one(self, operation: str, sql: str, params: tuple[Any, ...]) -> Row | None:
        with self._connection(operation) as conn:
            return conn.execute(sql, params).fetchone()

    def _paged(
        self,
        operation: str,
        sql: str,
        params: tuple[Any, ...],
        *,
        order: str,
        start: int,
        limit: int | None,
        key: int,
        convert: Callable[[Row], _T],
    ) -> Iterator[_T]:
        """Stream ``sql`` in keyset pages: its first placeholder is the key's bound.

        ``order`` and ``LIMIT`` are appended; each next page starts after the
        ``key``-th column of the last row read.
        """
        if limit is not None and limit < 0:  # as in SQLite: a negative LIMIT is none
            limit = None
        if limit == 0:
            return iter(())
        paged = f"{sql} ORDER BY {order} LIMIT %s"

        def fetch(bound: int, size: int) -> list[Row]:
            return self._read(operation, paged, (bound, *params, size))

        size = PAGE_SIZE if limit is None else min(limit, PAGE_SIZE)
        return _pages(fetch, fetch(start, size), size, limit, key, convert)

    # -- lifecycle -------------------------------------------------------------

    def migrate(self) -> None:
        # No deadline: a migration may rightly take long on a big table.
        with self._transaction("migrate the schema", deadline=False) as cur:
            row = cur.execute("SHOW server_encoding").fetchone()
            if row is None or row[0] != "UTF8":
                raise StorageError(
                    f"the database of {self._where} must use the UTF8 encoding (it uses"
                    f" {row and row[0]}): CREATE DATABASE ... ENCODING 'UTF8' TEMPLATE template0"
                )
            # Migrators queue here; the later ones find nothing left to do.
            cur.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATE_LOCK_KEY,))
            migrations.apply(cur, iso_utc(utc_now()))

    def check(self, *, writable: bool = False) -> None:
        self._read("check the store", "SELECT 1 FROM transactions LIMIT 1")
        if writable:
            row = self._one("check the store is writable", "SHOW transaction_read_only", ())
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

    # -- entities --------------------------------------------------------------

    def _insert(self, operation: str, sql: str, params: tuple[Any, ...]) -> int:
        row = self._one(operation, f"{sql} RETURNING id", params)
        assert row is not None
        new_id: int = row[0]
        return new_id

    def add_advertiser(self, name: str) -> Advertiser:
        now = iso_utc(utc_now())
        new_id = self._insert(
            "add an advertiser",
            "INSERT INTO advertisers (name, created_at) VALUES (%s, %s)",
            (name, now),
        )
        return Advertiser(new_id, name, now)

    def add_publisher(self, name: str) -> Publisher:
        now = iso_utc(utc_now())
        new_id = self._insert(
            "add a publisher",
            "INSERT INTO publishers (name, created_at) VALUES (%s, %s)",
            (name, now),
        )
        return Publisher(new_id, name, now)

    def add_campaign(self, advertiser_id: int, name: str, payout: PayoutRule) -> Campaign:
        now = iso_utc(utc_now())
        new_id = self._insert(
            "add a campaign",
            "INSERT INTO campaigns (advertiser_id, name, payout_kind, payout_value,"
            " payout_currency, reason_codes, created_at) VALUES (%s, %s, %s, %s, %s, %s, %s)",
            (advertiser_id, name, *payout_values(payout), now),
        )
        return Campaign(new_id, advertiser_id, name, payout, now)

    def add_link(self, campaign_id: int, publisher_id: int, destination: str) -> Link:
        validate_destination(destination)  # every caller: the CLI, the API, tests
        row = self._one(
            "add a link",
            "INSERT INTO links (campaign_id, publisher_id, destination, created_at)"
            " VALUES (%s, %s, %s, %s) RETURNING id, campaign_id, publisher_id,"
            " (SELECT advertiser_id FROM campaigns WHERE id = campaign_id),"
            " destination, created_at",
            (campaign_id, publisher_id, destination, iso_utc(utc_now())),
        )
        assert row is not None
        return Link(*row)

    def advertiser(self, advertiser_id: int) -> Advertiser | None:
        row = self._one(
            "read an advertiser", f"{SELECT_ADVERTISERS} WHERE id = %s", (advertiser_id,)
        )
        return None if row is None else advertiser_from_row(row)

    def advertisers(self) -> list[Advertiser]:
        rows = self._read("list advertisers", f"{SELECT_ADVERTISERS} ORDER BY id")
        return [advertiser_from_row(row) for row in rows]

    def set_advertiser_options(
        self, advertiser_id: int, *, require_signed_pixels: bool
    ) -> Advertiser:
        with self._transaction("change an advertiser's options") as cur:
            cur.execute(
                "UPDATE advertisers SET require_signed_pixels = %s WHERE id = %s",
                (bool(require_signed_pixels), advertiser_id),
            )
            row = cur.execute(f"{SELECT_ADVERTISERS} WHERE id = %s", (advertiser_id,)).fetchone()
        if row is None:
            raise NotFoundError(f"no advertiser with id {advertiser_id}")
        return advertiser_from_row(row)

    def set_campaign_daily_cap(self, campaign_id: int, cap: int | None) -> Campaign:
        check_daily_cap(cap)
        # Under the write lock: the index appears or goes between two ledger writes.
        with self._transaction("set a campaign's daily cap", lock=True) as cur:
            cur.execute("UPDATE campaigns SET daily_cap = %s WHERE id = %s", (cap, campaign_id))
            row = cur.execute(f"{SELECT_CAMPAIGNS} WHERE id = %s", (campaign_id,)).fetchone()
            capped = cur.execute(ANY_CAPPED_CAMPAIGN).fetchone() is not None
            cur.execute(CAP_INDEX_DDL if capped else DROP_CAP_INDEX_DDL)
        if row is None:
            raise NotFoundError(f"no campaign with id {campaign_id}")
        return campaign_from_row(row)

    def publisher(self, publisher_id: int) -> Publisher | None:
        row = self._one(
            "read a publisher",
            "SELECT id, name, created_at FROM publishers WHERE id = %s",
            (publisher_id,),
        )
        return None if row is None else Publisher(*row)

    def publishers(self) -> list[Publisher]:
        rows = self._read(
            "list publishers", "SELECT id, name, created_at FROM publishers ORDER BY id"
        )
        return [Publisher(*row) for row in rows]

    def campaign(self, campaign_id: int) -> Campaign | None:
        row = self._one("read a campaign", f"{SELECT_CAMPAIGNS} WHERE id = %s", (campaign_id,))
        return None if row is None else campaign_from_row(row)

    def campaigns(self, *, advertiser_id: int | None = None) -> list[Campaign]:
        if advertiser_id is None:
            rows = self._read("list campaigns", f"{SELECT_CAMPAIGNS} ORDER BY id")
        else:
            rows = self._read(
                "list campaigns",
                f"{SELECT_CAMPAIGNS} WHERE advertiser_id = %s ORDER BY id",
                (advertiser_id,),
            )
        return [campaign_from_row(row) for row in rows]

    def link(self, link_id: int) -> Link | None:
        row = self._one("read a link", f"{SELECT_LINKS} WHERE l.id = %s", (link_id,))
        return None if row is None else Link(*row)

    def links(self, *, advertiser_id: int | None = None) -> list[Link]:
        if advertiser_id is None:
            rows = self._read("list links", f"{SELECT_LINKS} ORDER BY l.id")
        else:
            rows = self._read(
                "list links",
                f"{SELECT_LINKS} WHERE c.advertiser_id = %s ORDER BY l.id",
                (advertiser_id,),
            )
        return [Link(*row) for row in rows]

    def record_visit(
        self,
        link: Link,
        *,
        ip_prefix: str | None,
        user_agent: str | None,
        created_at: str,
        visit_id: int | None = None,
    ) -> int:
        if visit_id is None:
            return self._insert(
                "record a visit",
                "INSERT INTO visits (link_id, ip_prefix, user_agent, created_at)"
                " VALUES (%s, %s, %s, %s)",
                (link.id, ip_prefix, user_agent, created_at),
            )
        with self._transaction("replay a visit") as cur:
            cur.execute(
                "INSERT INTO visits (id, link_id, ip_prefix, user_agent, created_at)"
                " OVERRIDING SYSTEM VALUE VALUES (%s, %s, %s, %s, %s)"
                " ON CONFLICT ON CONSTRAINT visits_pkey DO NOTHING",
                (visit_id, link.id, ip_prefix, user_agent, created_at),
            )
        return visit_id

    # -- the ledger ------------------------------------------------------------

    def append_transaction(self, draft: TransactionDraft) -> int | None:
        # Under the write lock, like every ledger write (see the module docs), in ONE
        # round trip: the lock and the INSERT go as one simple query, which the
        # server runs as one implicit transaction, so the lock is held only while
        # the server works, not across the network twice (the pixel's hot path).
        from psycopg import ClientCursor

        sql, params = _insert_statement(draft)
        with self._connection("append a conversion") as conn, ClientCursor(conn) as cur:
            cur.execute(f"{_TAKE_WRITE_LOCK};\n{sql}", params)
            cur.nextset()
            return _inserted_id(cur.fetchone())

    @contextmanager
    def writer(self) -> Iterator[LedgerWriter]:
        with self._transaction("write to the ledger", lock=True) as cur:
            yield PostgresLedgerWriter(cur, self.max_rejections)

    def transactions(
        self,
        *,
        advertiser_id: int | None = None,
        after_transaction_id: int | None = None,
        limit: int | None = None,
        transaction_id: int | None = None,
        reference_id: str | None = None,
        transaction_type: TransactionType | None = None,
        created_from: str | None = None,
        created_before: str | None = None,
    ) -> Iterator[Transaction]:
        conditions, params = transaction_conditions(
            "%s",
            advertiser_id=advertiser_id,
            transaction_id=transaction_id,
            reference_id=reference_id,
            transaction_type=transaction_type,
            created_from=created_from,
            created_before=created_before,
        )
        return self._paged(
            "read transactions",
            f"SELECT {TRANSACTION_COLUMNS} FROM transactions WHERE id > %s{conditions}",
            tuple(params),
            order="id",
            start=after_transaction_id or 0,
            limit=limit,
            key=0,
            convert=transaction_from_row,
        )

    def conversions(self, *, advertiser_id: int | None = None) -> Iterator[Transaction]:
        sql = _CONVERSIONS
        params: tuple[Any, ...] = ()
        if advertiser_id is not None:
            # Corrections inherit their conversion's advertiser: filter the first rows.
            sql += " AND o.advertiser_id = %s"
            params = (advertiser_id,)
        return self._paged(
            "read conversions",
            sql,
            params,
            order="o.id",
            start=0,
            limit=None,
            key=_CONVERSION_KEY,
            convert=transaction_from_row,
        )

    def rejections(
        self, *, advertiser_id: int | None = None, limit: int | None = None
    ) -> Iterator[Rejection]:
        sql = _SELECT_REJECTIONS
        params: tuple[Any, ...] = ()
        if advertiser_id is not None:
            sql += " AND advertiser_id = %s"
            params = (advertiser_id,)
        return self._paged(
            "read rejections",
            sql,
            params,
            order="id DESC",
            start=_MAX_ID,
            limit=limit,
            key=0,
            convert=lambda row: Rejection(*row),
        )

    def contested_references(self, advertiser_id: int) -> set[str]:
        rows = self._read(
            "read contested references",
            _percent_placeholders(CONTESTED_REFERENCES),
            (advertiser_id,),
        )
        return {row[0] for row in rows}

    # -- API credentials and idempotency keys ------------------------------------

    def add_credential(self, advertiser_id: int, label: str, secret_hash: str) -> ApiCredential:
        now = iso_utc(utc_now())
        new_id = self._insert(
            "add a credential",
            "INSERT INTO api_credentials (advertiser_id, label, secret_hash, created_at)"
            " VALUES (%s, %s, %s, %s)",
            (advertiser_id, label, secret_hash, now),
        )
        return ApiCredential(new_id, advertiser_id, label, secret_hash, now)

    def credential(self, credential_id: int) -> ApiCredential | None:
        row = self._one(
            "read a credential",
            f"SELECT {CREDENTIAL_COLUMNS} FROM api_credentials WHERE id = %s",
            (credential_id,),
        )
        return None if row is None else ApiCredential(*row)

    def credentials(self, *, advertiser_id: int | None = None) -> list[ApiCredential]:
        sql = f"SELECT {CREDENTIAL_COLUMNS} FROM api_credentials"
        params: tuple[Any, ...] = ()
        if advertiser_id is not None:
            sql, params = f"{sql} WHERE advertiser_id = %s", (advertiser_id,)
        rows = self._read("list credentials", f"{sql} ORDER BY id", params)
        return [ApiCredential(*row) for row in rows]

    def revoke_credential(self, credential_id: int) -> bool:
        row = self._one(
            "revoke a credential",
            "UPDATE api_credentials SET revoked_at = %s WHERE id = %s AND revoked_at IS NULL"
            " RETURNING id",
            (iso_utc(utc_now()), credential_id),
        )
        return row is not None

    def idempotency_record(
        self, advertiser_id: int, key: str, *, since: str
    ) -> IdempotencyRecord | None:
        row = self._one(
            "read an idempotency record",
            f"SELECT {IDEMPOTENCY_COLUMNS} FROM idempotency_keys"
            " WHERE advertiser_id = %s AND key = %s AND created_at >= %s",
            (advertiser_id, key, since),
        )
        return None if row is None else IdempotencyRecord(*row)

    def save_idempotency_record(
        self, record: IdempotencyRecord, *, expired_before: str
    ) -> IdempotencyRecord:
        operation = "save an idempotency record"
        with self._transaction(operation) as cur:
            cur.execute("DELETE FROM idempotency_keys WHERE created_at < %s", (expired_before,))
            # In READ COMMITTED the INSERT waits for a racing insert of the same key
            # to commit, and the SELECT after it sees that row; it can only miss it
            # when a third writer deleted it as expired meanwhile: then try again.
            for _ in range(3):
                inserted = cur.execute(
                    f"INSERT INTO idempotency_keys ({IDEMPOTENCY_COLUMNS})"
                    " VALUES (%s, %s, %s, %s, %s, %s)"
                    " ON CONFLICT ON CONSTRAINT idempotency_keys_pkey DO NOTHING RETURNING 1",
                    idempotency_values(record),
                ).fetchone()
                if inserted is not None:
                    return record
                row = cur.execute(
                    f"SELECT {IDEMPOTENCY_COLUMNS} FROM idempotency_keys"
                    " WHERE advertiser_id = %s AND key = %s",
                    (record.advertiser_id, record.key),
                ).fetchone()
                if row is not None:
                    return IdempotencyRecord(*row)
        raise StorageError(f"cannot {operation}: the key keeps being taken and expired")

    def settle_idempotency_record(
        self, advertiser_id: int, key: str, request_hash: str, *, status: int | None, body: str = ""
    ) -> None:
        sql, params = idempotency_settlement(advertiser_id, key, request_hash, status, body)
        with self._transaction("settle an idempotency record") as cur:
            cur.execute(_percent_placeholders(sql), params)

    def personal_data(self, transaction_id: int) -> dict[str, str]:
        row = self._one(
            "read personal data",
            "SELECT data FROM personal_data WHERE transaction_id = %s",
            (transaction_id,),
        )
        return {} if row is None else dict(json.loads(row[0]))

    def erase_personal_data(self, advertiser_id: int, reference_id: str) -> int:
        with self._connection("erase personal data") as conn:
            cursor = conn.execute(
                "DELETE FROM personal_data WHERE transaction_id IN (SELECT id FROM"
                " transactions WHERE advertiser_id = %s AND reference_id = %s)",
                (advertiser_id, reference_id),
            )
            return cursor.rowcount


def _pages(
    fetch: Callable[[int, int], list[Row]],
    rows: list[Row],
    size: int,
    limit: int | None,
    key: int,
    convert: Callable[[Row], _T],
) -> Iterator[_T]:
    """Yield ``rows`` and then the pages after them, until a short page or ``limit``."""
    remaining = limit
    while True:
        yield from map(convert, rows)
        if remaining is not None:
            remaining -= len(rows)
        if len(rows) < size or remaining == 0:
            return
        size = PAGE_SIZE if remaining is None else min(remaining, PAGE_SIZE)
        rows = fetch(rows[-1][key], size)
