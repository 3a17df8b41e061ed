"""The SQLite backend: one file, no server, safe under threads and forks.

Why these settings:

- WAL journal: readers never block the writer, and a commit is one append
  instead of a rollback journal's rewrite (about 45x faster measured here).
- ``synchronous=NORMAL`` by default: in WAL mode a commit survives a crash of
  the application process; only an OS crash or a power loss can drop the newest
  commits, and the database stays consistent either way.
  Pass ``synchronous="FULL"`` to survive power loss at about 9x the commit cost.
- ``BEGIN IMMEDIATE`` for every write of more than one statement: the write
  lock is taken up front, so two writers queue on the busy timeout instead of
  failing on lock upgrade. A new conversion without personal data is a single
  autocommit ``INSERT``, which takes the write lock at once and so needs none.
- A busy timeout (5 s) well under a WSGI worker's timeout (gunicorn: 30 s).
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
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from sqlite_utils import Database

from ..clock import iso_utc, utc_now
from ..entities import validate_destination
from ..errors import ConfigurationError, NotFoundError, RecordRefused, StorageError
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
from .migrations.sqlite import migrations
from .precedence import CONTESTED_REFERENCES, SharedWriterSQL, idempotency_settlement
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

_SYNCHRONOUS_LEVELS = ("OFF", "NORMAL", "FULL", "EXTRA")
#: Seconds a read-only fallback connection is used before a writable one is tried again.
READ_ONLY_RETRY = 30.0

_INSERT_TRANSACTION = f"""
INSERT INTO transactions ({INSERTED_TRANSACTION_COLUMNS})
VALUES ({", ".join("?" for _ in INSERTED_TRANSACTION_COLUMNS.split(", "))})
ON CONFLICT (advertiser_id, reference_id)
    WHERE corrects_transaction_id IS NULL AND reference_id IS NOT NULL
    DO NOTHING
"""

# Conversions of a campaign since a moment: transactions_campaign_created.
_CONVERSIONS_SINCE = """
SELECT COUNT(*) FROM transactions
WHERE campaign_id = ? AND created_at >= ? AND corrects_transaction_id IS NULL
"""


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
        if self.pid == os.getpid():
            self.close()
        else:
            # Closing the parent's connection here could touch its WAL: keep it.
            _INHERITED.append(self)


def _insert_transaction(conn: sqlite3.Connection, draft: TransactionDraft) -> int | None:
    cursor = conn.execute(_INSERT_TRANSACTION, transaction_values(draft))
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


class SQLiteLedgerWriter(SharedWriterSQL, LedgerWriter):
    """The ledger primitives on one connection inside ``BEGIN IMMEDIATE``."""

    def __init__(self, conn: sqlite3.Connection, max_rejections: int) -> None:
        self._conn = conn
        self._max_rejections = max_rejections

    def _execute(self, sql: str, params: tuple[Any, ...]) -> sqlite3.Cursor:
        return self._conn.execute(sql, params)

    def attribution(self, visit_id: int) -> Attribution | None:
        row = self._conn.execute(f"{SELECT_ATTRIBUTION} WHERE v.id = ?", (visit_id,)).fetchone()
        return None if row is None else attribution_from_row(row)

    def advertiser_exists(self, advertiser_id: int) -> bool:
        sql = "SELECT 1 FROM advertisers WHERE id = ?"
        return self._conn.execute(sql, (advertiser_id,)).fetchone() is not None

    def campaign_payout(self, campaign_id: int) -> PayoutRule:
        row = self._conn.execute(
            "SELECT payout_kind, payout_value, payout_currency, reason_codes"
            " FROM campaigns WHERE id = ?",
            (campaign_id,),
        ).fetchone()
        if row is None:
            raise NotFoundError(f"campaign {campaign_id} does not exist")
        return payout_rule(*row)

    def campaign(self, campaign_id: int) -> Campaign | None:
        row = self._conn.execute(f"{SELECT_CAMPAIGNS} WHERE id = ?", (campaign_id,)).fetchone()
        return None if row is None else campaign_from_row(row)

    def publisher_approved(self, campaign_id: int, publisher_id: int) -> bool:
        sql = "SELECT 1 FROM links WHERE campaign_id = ? AND publisher_id = ? LIMIT 1"
        return self._conn.execute(sql, (campaign_id, publisher_id)).fetchone() is not None

    def ensure_visit(self, visit_id: int, link_id: int, created_at: str) -> bool:
        self._conn.execute(
            "INSERT INTO visits (id, link_id, ip_prefix, user_agent, created_at)"
            " SELECT ?, id, NULL, NULL, ? FROM links WHERE id = ? ON CONFLICT (id) DO NOTHING",
            (visit_id, created_at, link_id),
        )
        row = self._conn.execute("SELECT 1 FROM visits WHERE id = ?", (visit_id,)).fetchone()
        return row is not None

    def claim_event(self, event_id: str, claimed_at: str) -> bool:
        cursor = self._conn.execute(
            "INSERT INTO applied_events (event_id, applied_at) VALUES (?, ?)"
            " ON CONFLICT (event_id) DO NOTHING",
            (event_id, claimed_at),
        )
        return cursor.rowcount == 1

    def find_original(self, advertiser_id: int, reference_id: str) -> Transaction | None:
        row = self._conn.execute(
            f"SELECT {TRANSACTION_COLUMNS} FROM transactions WHERE advertiser_id = ?"
            " AND reference_id = ? AND corrects_transaction_id IS NULL",
            (advertiser_id, reference_id),
        ).fetchone()
        return None if row is None else transaction_from_row(row)

    def chain_end(self, original_transaction_id: int) -> Transaction:
        # Chains are lines (transactions_corrects_key) and ids only grow, so
        # the newest row of the chain is its end.
        row = self._conn.execute(
            f"SELECT {TRANSACTION_COLUMNS} FROM transactions"
            " WHERE id = :id OR original_transaction_id = :id ORDER BY id DESC LIMIT 1",
            {"id": original_transaction_id},
        ).fetchone()
        if row is None:
            raise NotFoundError(f"transaction {original_transaction_id} does not exist")
        return transaction_from_row(row)

    def has_recent_duplicate(
        self, advertiser_id: int, visit_id: int, fingerprint: str, since: str
    ) -> bool:
        row = self._conn.execute(
            "SELECT 1 FROM transactions WHERE visit_id = ? AND fingerprint = ?"
            " AND reference_id IS NULL AND corrects_transaction_id IS NULL"
            " AND advertiser_id = ? AND created_at >= ? LIMIT 1",
            (visit_id, fingerprint, advertiser_id, since),
        ).fetchone()
        return row is not None

    def insert_transaction(self, draft: TransactionDraft) -> int | None:
        return _insert_transaction(self._conn, draft)

    def insert_rejection(self, draft: RejectionDraft) -> None:
        cursor = self._conn.execute(
            f"INSERT INTO rejections ({INSERTED_REJECTION_COLUMNS})"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            rejection_values(draft),
        )
        trim_rejections(cursor.lastrowid or 0, self._max_rejections, self._conn.execute, "?")

    def conversions_since(self, campaign_id: int, since: str) -> int:
        count: int = self._conn.execute(_CONVERSIONS_SINCE, (campaign_id, since)).fetchone()[0]
        return count


def _storage_error(failed: str, exc: Exception) -> StorageError:
    """A driver error as ours: :class:`RecordRefused` when it is about the record's
    data (text SQLite cannot encode, a value too big), not about the store."""
    if isinstance(exc, UnicodeEncodeError):
        return RecordRefused(f"{failed}: the text is not valid Unicode ({exc.reason})")
    if isinstance(exc, sqlite3.DataError):
        return RecordRefused(f"{failed}: the record cannot be stored ({exc})")
    return StorageError(f"{failed}: {exc}")


class SQLiteStorage(Storage):
    """Storage in one SQLite file.

    :param path: the database file; created with its directory's permissions.
    :param busy_timeout: seconds a writer waits for the lock before failing.
    :param synchronous: ``NORMAL`` (default) or ``FULL``; see the module docs.
    :param max_rejections: how many rejection-log entries are kept.
    :param read_only: open the file read-only, never create it, never write (the
        CLI's read commands); :meth:`pending_migrations` says whether it is current.

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
        self.synchronous = synchronous.upper()
        self.max_rejections = max_rejections
        self.read_only = read_only
        self._local = threading.local()

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
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute(f"PRAGMA synchronous = {self.synchronous}")
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

    def _read(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        try:
            return self._connection().execute(sql, params).fetchall()
        except (sqlite3.Error, UnicodeEncodeError) as exc:
            raise _storage_error(f"read from {self.path} failed", exc) from exc

    # -- lifecycle -------------------------------------------------------------

    def migrate(self) -> None:
        # BEGIN IMMEDIATE serialises concurrent migrators; sqlite-utils nests
        # each migration in a savepoint inside it.
        with self._immediate() as conn:
            migrations.apply(Database(conn, execute_plugins=False, recursive_triggers=False))

    def pending_migrations(self) -> list[str]:
        """The names of the schema migrations this file lacks (a read: nothing is written)."""
        db = Database(self._connection(), execute_plugins=False, recursive_triggers=False)
        try:
            return [migration.name for migration in migrations.pending(db)]
        except sqlite3.Error as exc:
            raise StorageError(f"read from {self.path} failed: {exc}") from exc

    def check(self, *, writable: bool = False) -> None:
        self._read("SELECT 1 FROM transactions LIMIT 1")
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

    # -- entities --------------------------------------------------------------

    def _insert(self, sql: str, params: tuple[Any, ...]) -> int:
        with self._immediate() as conn:
            try:
                cursor = conn.execute(sql, params)
            except sqlite3.IntegrityError as exc:
                raise NotFoundError(f"a referenced entity does not exist ({exc})") from exc
            assert cursor.lastrowid is not None
            return cursor.lastrowid

    def add_advertiser(self, name: str) -> Advertiser:
        now = iso_utc(utc_now())
        new_id = self._insert(
            "INSERT INTO advertisers (name, created_at) VALUES (?, ?)", (name, now)
        )
        return Advertiser(new_id, name, now)

    def add_publisher(self, name: str) -> Publisher:
        now = iso_utc(utc_now())
        new_id = self._insert(
            "INSERT INTO publishers (name, created_at) VALUES (?, ?)", (name, now)
        )
        return Publisher(new_id, name, now)

    def add_campaign(self, advertiser_id: int, name: str, payout: PayoutRule) -> Campaign:
        now = iso_utc(utc_now())
        new_id = self._insert(
            "INSERT INTO campaigns (advertiser_id, name, payout_kind, payout_value,"
            " payout_currency, reason_codes, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (advertiser_id, name, *payout_values(payout), now),
        )
        return Campaign(new_id, advertiser_id, name, payout, now)

    def add_link(self, campaign_id: int, publisher_id: int, destination: str) -> Link:
        validate_destination(destination)  # every caller: the CLI, the API, tests
        now = iso_utc(utc_now())
        new_id = self._insert(
            "INSERT INTO links (campaign_id, publisher_id, destination, created_at)"
            " VALUES (?, ?, ?, ?)",
            (campaign_id, publisher_id, destination, now),
        )
        link = self.link(new_id)
        assert link is not None
        return link

    def advertiser(self, advertiser_id: int) -> Advertiser | None:
        rows = self._read(f"{SELECT_ADVERTISERS} WHERE id = ?", (advertiser_id,))
        return advertiser_from_row(rows[0]) if rows else None

    def advertisers(self) -> list[Advertiser]:
        return [advertiser_from_row(row) for row in self._read(f"{SELECT_ADVERTISERS} ORDER BY id")]

    def set_advertiser_options(
        self, advertiser_id: int, *, require_signed_pixels: bool
    ) -> Advertiser:
        with self._immediate() as conn:
            conn.execute(
                "UPDATE advertisers SET require_signed_pixels = ? WHERE id = ?",
                (int(bool(require_signed_pixels)), advertiser_id),
            )
            row = conn.execute(f"{SELECT_ADVERTISERS} WHERE id = ?", (advertiser_id,)).fetchone()
        if row is None:
            raise NotFoundError(f"no advertiser with id {advertiser_id}")
        return advertiser_from_row(row)

    def set_campaign_daily_cap(self, campaign_id: int, cap: int | None) -> Campaign:
        check_daily_cap(cap)
        with self._immediate() as conn:
            conn.execute("UPDATE campaigns SET daily_cap = ? WHERE id = ?", (cap, campaign_id))
            row = conn.execute(f"{SELECT_CAMPAIGNS} WHERE id = ?", (campaign_id,)).fetchone()
            capped = conn.execute(ANY_CAPPED_CAMPAIGN).fetchone() is not None
            conn.execute(CAP_INDEX_DDL if capped else DROP_CAP_INDEX_DDL)
        if row is None:
            raise NotFoundError(f"no campaign with id {campaign_id}")
        return campaign_from_row(row)

    def publisher(self, publisher_id: int) -> Publisher | None:
        rows = self._read(
            "SELECT id, name, created_at FROM publishers WHERE id = ?", (publisher_id,)
        )
        return Publisher(*rows[0]) if rows else None

    def publishers(self) -> list[Publisher]:
        return [
            Publisher(*row)
            for row in self._read("SELECT id, name, created_at FROM publishers ORDER BY id")
        ]

    def campaign(self, campaign_id: int) -> Campaign | None:
        found = self._campaigns("WHERE id = ?", (campaign_id,))
        return found[0] if found else None

    def campaigns(self, *, advertiser_id: int | None = None) -> list[Campaign]:
        if advertiser_id is None:
            return self._campaigns("", ())
        return self._campaigns("WHERE advertiser_id = ?", (advertiser_id,))

    def _campaigns(self, where: str, params: tuple[Any, ...]) -> list[Campaign]:
        rows = self._read(f"{SELECT_CAMPAIGNS} {where} ORDER BY id", params)
        return [campaign_from_row(row) for row in rows]

    def link(self, link_id: int) -> Link | None:
        found = self._links("WHERE l.id = ?", (link_id,))
        return found[0] if found else None

    def links(self, *, advertiser_id: int | None = None) -> list[Link]:
        if advertiser_id is None:
            return self._links("", ())
        return self._links("WHERE c.advertiser_id = ?", (advertiser_id,))

    def _links(self, where: str, params: tuple[Any, ...]) -> list[Link]:
        rows = self._read(f"{SELECT_LINKS} {where} ORDER BY l.id", params)
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
                "INSERT INTO visits (link_id, ip_prefix, user_agent, created_at)"
                " VALUES (?, ?, ?, ?)",
                (link.id, ip_prefix, user_agent, created_at),
            )
        self._insert(
            "INSERT INTO visits (id, link_id, ip_prefix, user_agent, created_at)"
            " VALUES (?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
            (visit_id, link.id, ip_prefix, user_agent, created_at),
        )
        return visit_id

    # -- the ledger ------------------------------------------------------------

    def append_transaction(self, draft: TransactionDraft) -> int | None:
        if draft.personal_data:
            with self._immediate() as conn:
                return _append_new(conn, draft)
        # One statement is atomic on its own: no BEGIN/COMMIT round trip, and the
        # write lock is held only for the INSERT itself.
        try:
            return _append_new(self._connection(), draft)
        except (sqlite3.Error, UnicodeEncodeError) as exc:
            raise _storage_error(f"write to {self.path} failed", exc) from exc

    @contextmanager
    def writer(self) -> Iterator[LedgerWriter]:
        with self._immediate() as conn:
            yield SQLiteLedgerWriter(conn, self.max_rejections)

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
            "?",
            advertiser_id=advertiser_id,
            transaction_id=transaction_id,
            reference_id=reference_id,
            transaction_type=transaction_type,
            created_from=created_from,
            created_before=created_before,
        )
        sql = (
            f"SELECT {TRANSACTION_COLUMNS} FROM transactions WHERE id > ?{conditions}"
            " ORDER BY id LIMIT ?"
        )
        params = [after_transaction_id or 0, *params, -1 if limit is None else limit]
        return (transaction_from_row(row) for row in self._read(sql, tuple(params)))

    def conversions(self, *, advertiser_id: int | None = None) -> Iterator[Transaction]:
        sql = (
            f"SELECT {TRANSACTION_COLUMNS} FROM transactions WHERE NOT EXISTS"
            " (SELECT 1 FROM transactions c WHERE c.corrects_transaction_id = transactions.id)"
        )
        params: tuple[Any, ...] = ()
        if advertiser_id is not None:
            sql += " AND advertiser_id = ?"
            params = (advertiser_id,)
        sql += " ORDER BY COALESCE(original_transaction_id, id)"
        return (transaction_from_row(row) for row in self._read(sql, params))

    def rejections(
        self, *, advertiser_id: int | None = None, limit: int | None = None
    ) -> Iterator[Rejection]:
        sql = f"SELECT {REJECTION_COLUMNS} FROM rejections"
        params: list[Any] = []
        if advertiser_id is not None:
            sql += " WHERE advertiser_id = ?"
            params.append(advertiser_id)
        sql += " ORDER BY id DESC LIMIT ?"
        params.append(-1 if limit is None else limit)
        return (Rejection(*row) for row in self._read(sql, tuple(params)))

    def contested_references(self, advertiser_id: int) -> set[str]:
        rows = self._read(CONTESTED_REFERENCES, (advertiser_id,))
        return {row[0] for row in rows}

    # -- API credentials and idempotency keys ------------------------------------

    def add_credential(self, advertiser_id: int, label: str, secret_hash: str) -> ApiCredential:
        now = iso_utc(utc_now())
        new_id = self._insert(
            "INSERT INTO api_credentials (advertiser_id, label, secret_hash, created_at)"
            " VALUES (?, ?, ?, ?)",
            (advertiser_id, label, secret_hash, now),
        )
        return ApiCredential(new_id, advertiser_id, label, secret_hash, now)

    def credential(self, credential_id: int) -> ApiCredential | None:
        rows = self._read(
            f"SELECT {CREDENTIAL_COLUMNS} FROM api_credentials WHERE id = ?", (credential_id,)
        )
        return ApiCredential(*rows[0]) if rows else None

    def credentials(self, *, advertiser_id: int | None = None) -> list[ApiCredential]:
        sql = f"SELECT {CREDENTIAL_COLUMNS} FROM api_credentials"
        params: tuple[Any, ...] = ()
        if advertiser_id is not None:
            sql += " WHERE advertiser_id = ?"
            params = (advertiser_id,)
        return [ApiCredential(*row) for row in self._read(sql + " ORDER BY id", params)]

    def revoke_credential(self, credential_id: int) -> bool:
        with self._immediate() as conn:
            cursor = conn.execute(
                "UPDATE api_credentials SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                (iso_utc(utc_now()), credential_id),
            )
            return cursor.rowcount == 1

    def idempotency_record(
        self, advertiser_id: int, key: str, *, since: str
    ) -> IdempotencyRecord | None:
        rows = self._read(
            f"SELECT {IDEMPOTENCY_COLUMNS} FROM idempotency_keys"
            " WHERE advertiser_id = ? AND key = ? AND created_at >= ?",
            (advertiser_id, key, since),
        )
        return IdempotencyRecord(*rows[0]) if rows else None

    def save_idempotency_record(
        self, record: IdempotencyRecord, *, expired_before: str
    ) -> IdempotencyRecord:
        with self._immediate() as conn:
            conn.execute("DELETE FROM idempotency_keys WHERE created_at < ?", (expired_before,))
            cursor = conn.execute(
                f"INSERT INTO idempotency_keys ({IDEMPOTENCY_COLUMNS})"
                " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (advertiser_id, key) DO NOTHING",
                idempotency_values(record),
            )
            if cursor.rowcount == 1:
                return record
            row = conn.execute(
                f"SELECT {IDEMPOTENCY_COLUMNS} FROM idempotency_keys"
                " WHERE advertiser_id = ? AND key = ?",
                (record.advertiser_id, record.key),
            ).fetchone()
            return IdempotencyRecord(*row)

    def settle_idempotency_record(
        self, advertiser_id: int, key: str, request_hash: str, *, status: int | None, body: str = ""
    ) -> None:
        sql, params = idempotency_settlement(advertiser_id, key, request_hash, status, body)
        with self._immediate() as conn:
            conn.execute(sql, params)

    def personal_data(self, transaction_id: int) -> dict[str, str]:
        rows = self._read(
            "SELECT data FROM personal_data WHERE transaction_id = ?", (transaction_id,)
        )
        return dict(json.loads(rows[0][0])) if rows else {}

    def erase_personal_data(self, advertiser_id: int, reference_id: str) -> int:
        with self._immediate() as conn:
            cursor = conn.execute(
                "DELETE FROM personal_data WHERE transaction_id IN (SELECT id FROM"
                " transactions WHERE advertiser_id = ? AND reference_id = ?)",
                (advertiser_id, reference_id),
            )
            return cursor.rowcount
