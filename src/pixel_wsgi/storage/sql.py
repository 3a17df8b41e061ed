"""The SQL core that SQLite and PostgreSQL share: every statement written once.

Statements are written with ``?`` placeholders; the PostgreSQL dialect translates
them to ``%s`` (:func:`dialect`). A dialect module (:mod:`.sqlite`,
:mod:`.postgres`) subclasses :class:`SQLStorage` and :class:`SQLLedgerWriter` and
keeps only what truly differs: connecting, locking, mapping driver errors, and
the few statements whose text cannot be the same (each says why).

Listings (:meth:`SQLStorage.transactions`, :meth:`~SQLStorage.conversions`,
:meth:`~SQLStorage.rejections`) are read in keyset pages of ``page_size`` rows:
each page is one short query, so memory stays bounded on a large export and a
half-read iterator holds nothing. The first page is read by the call itself, so
a failing store raises there; later pages are read as the iterator advances and
see rows committed meanwhile, never skipping nor repeating one.
"""

from __future__ import annotations

import abc
import functools
import json
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Any, ClassVar, Protocol, TypeVar

from ..clock import iso_utc, utc_now
from ..entities import check_daily_cap, check_payout, check_stored_name, validate_destination
from ..errors import ConfigurationError, EntityInvalid, NotFoundError, StorageError
from ..models import (
    Advertiser,
    ApiCredential,
    Attribution,
    Campaign,
    ClickContext,
    DeliveryContext,
    IdempotencyRecord,
    Link,
    PayoutRule,
    Publisher,
    ReferenceClaim,
    Rejection,
    RejectionDraft,
    Transaction,
    TransactionType,
)
from .base import LedgerWriter, Storage, rejections_to_trim
from .rows import (
    ANY_CAPPED_CAMPAIGN,
    CAP_INDEX_DDL,
    CREDENTIAL_COLUMNS,
    DATE_INDEXES_DDL,
    DROP_CAP_INDEX_DDL,
    IDEMPOTENCY_COLUMNS,
    INSERTED_REJECTION_COLUMNS,
    REJECTION_COLUMNS,
    SELECT_ADVERTISERS,
    SELECT_ATTRIBUTION,
    SELECT_CAMPAIGNS,
    SELECT_LINKS,
    TRANSACTION_COLUMNS,
    advertiser_from_row,
    attribution_from_row,
    campaign_from_row,
    click_data,
    click_from_data,
    conversion_from_data,
    filters,
    idempotency_values,
    payout_rule,
    payout_values,
    rejection_values,
    transaction_from_row,
    transaction_type_condition,
)

__all__ = [
    "PAGE_SIZE",
    "SQLLedgerWriter",
    "SQLStorage",
    "check_page_size",
    "dialect",
    "id_chunks",
]

#: Rows per query when a listing is read (the ``page_size`` option's default).
PAGE_SIZE = 1000
_MAX_ID = 2**63 - 1
#: Event ids per statement of :meth:`SQLLedgerWriter.claim_events` (two values each:
#: well under SQLite's and PostgreSQL's limits on bound parameters).
_CLAIM_CHUNK = 250

Row = tuple[Any, ...]
_T = TypeVar("_T")


class Cursor(Protocol):
    """What the core uses of a DB-API cursor (``sqlite3`` and psycopg alike)."""

    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...


#: Runs one statement (``?`` placeholders) inside a write; its cursor.
Execute = Callable[[str, tuple[Any, ...]], Cursor]


@functools.lru_cache(maxsize=256)
def dialect(sql: str, placeholder: str) -> str:
    """``sql`` with its ``?`` placeholders as ``placeholder`` (``%s`` for psycopg).

    No statement of the core holds a ``?`` or a ``%`` of its own (in a literal, say).
    """
    return sql.replace("?", placeholder)


def check_page_size(page_size: int) -> int:
    """:raises ConfigurationError: unless ``page_size`` is a whole number >= 1."""
    if isinstance(page_size, bool) or not isinstance(page_size, int) or page_size < 1:
        raise ConfigurationError(f"page_size must be a whole number >= 1, got {page_size!r}")
    return page_size


# -- statements --------------------------------------------------------------------

_CLAIM_COLUMNS = (
    "id, advertiser_id, reference_id, visit_id, campaign_id, publisher_id, source, report,"
    " created_at"
)
_SELECT_TRANSACTIONS = f"SELECT {TRANSACTION_COLUMNS} FROM transactions"
# A visit with a given id: a spooled click replayed, or known from its signed cookie.
# ``{explicit_id}``: PostgreSQL's identity columns refuse an explicit id unless told.
# A visit stored first from its cookie (_ENSURE_VISIT: its conversion came before the
# replay) gets the click's data when the click is replayed.
_INSERT_VISIT_WITH_ID = (
    "INSERT INTO visits (id, link_id, ip_prefix, user_agent, created_at, click_data)"
    "{explicit_id} VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE"
    " SET click_data = excluded.click_data"
    " WHERE visits.click_data IS NULL AND excluded.click_data IS NOT NULL"
)
_ENSURE_VISIT = (
    "INSERT INTO visits (id, link_id, ip_prefix, user_agent, created_at){explicit_id}"
    " SELECT ?, id, NULL, NULL, ? FROM links WHERE id = ? ON CONFLICT (id) DO NOTHING"
)
#: Conversions of a campaign since a moment: transactions_campaign_created.
CONVERSIONS_SINCE = (
    "SELECT COUNT(*) FROM transactions"
    " WHERE campaign_id = ? AND created_at >= ? AND corrects_transaction_id IS NULL"
)
# The chain ends, a page at a time in the order of their conversions' first rows:
# walk the first rows ``o`` by primary key (filtered by advertiser and by when the
# sale happened) and find each one's newest row (transactions_original).
_CONVERSIONS = (
    f"{_SELECT_TRANSACTIONS} WHERE id IN (SELECT COALESCE((SELECT max(e.id) FROM"
    " transactions e WHERE e.original_transaction_id = o.id), o.id) FROM transactions o"
    " WHERE o.corrects_transaction_id IS NULL AND o.id > ?{conditions} ORDER BY o.id LIMIT ?)"
    " ORDER BY COALESCE(original_transaction_id, id)"
)
_CONVERSION_KEY = 8  # COALESCE(original_transaction_id, id): the first row's id
#: The advertiser's undecided contested reference ids (a read outside the writer).
CONTESTED_REFERENCES = (
    "SELECT DISTINCT reference_id FROM reference_claims WHERE advertiser_id = ?"
    " AND resolution IS NULL"
)
_COUNT_REJECTIONS_BY_REASON = "SELECT reason, count(*) FROM rejections GROUP BY reason"
# The newest ``keep`` entries of one reason stay (the OFFSET is keep - 1); the older go.
_TRIM_REASON = (
    "DELETE FROM rejections WHERE reason = ? AND id < (SELECT id FROM rejections"
    " WHERE reason = ? ORDER BY id DESC LIMIT 1 OFFSET ?)"
)
_SELECT_IDEMPOTENCY = f"SELECT {IDEMPOTENCY_COLUMNS} FROM idempotency_keys"
# What delivery needs of ledger rows (``{ids}``: their placeholders): the click of the
# chain's original's visit, the original's request context and personal data.
_DELIVERY_CONTEXTS = (
    "SELECT t.id, v.click_data, o.delivery_context, p.data, ov.click_data"
    " FROM transactions t"
    " JOIN transactions o ON o.id = COALESCE(t.original_transaction_id, t.id)"
    " LEFT JOIN visits v ON v.id = COALESCE(t.visit_id, o.visit_id)"
    " LEFT JOIN visits ov ON ov.id = o.visit_id"
    " LEFT JOIN personal_data p ON p.transaction_id = o.id"
    " WHERE t.id IN ({ids})"
)
# The one UPDATE the ledger's triggers allow, over the ledger ids after the advertiser's
# last forgetting through the new bound: a range of the primary key, however large the
# ledger.
_FORGET_CONVERSION_CONTEXTS = (
    "UPDATE transactions SET delivery_context = NULL WHERE id > ? AND id <= ?"
    " AND advertiser_id = ? AND delivery_context IS NOT NULL"
)
#: Ids per statement of a batch read or write by id: far under every backend's limit on
#: parameters (SQLite 32,766, PostgreSQL 65,535), and a delivery batch fits one.
ID_CHUNK = 1000


def id_chunks(transaction_ids: Sequence[int]) -> Iterator[tuple[tuple[int, ...], str]]:
    """The distinct ids in chunks of :data:`ID_CHUNK`, each with its placeholders."""
    ids = list(dict.fromkeys(transaction_ids))
    for start in range(0, len(ids), ID_CHUNK):
        chunk = tuple(ids[start : start + ID_CHUNK])
        yield chunk, ", ".join("?" * len(chunk))


def _pages(
    fetch: Callable[[int, int], list[Row]],
    first: list[Row],
    size: int,
    page_size: int,
    limit: int | None,
    key: int,
    convert: Callable[[Row], _T],
) -> Iterator[_T]:
    """Yield ``first`` and then the pages after it, until a short page or ``limit``."""
    rows, remaining = first, limit
    while True:
        yield from map(convert, rows)
        if remaining is not None:
            remaining -= len(rows)
        if len(rows) < size or remaining == 0:
            return
        size = page_size if remaining is None else min(remaining, page_size)
        bound = rows[-1][key]
        rows = []  # a page is dropped before the next one is read
        rows = fetch(bound, size)


class SQLLedgerWriter(LedgerWriter):
    """The :class:`~pixel_wsgi.storage.base.LedgerWriter` primitives, once for both dialects.

    A dialect provides :meth:`_execute`, :meth:`_insert` and ``insert_transaction``.
    """

    #: Inserted before ``VALUES``/``SELECT`` when a row is given its own id.
    explicit_id: ClassVar[str] = ""

    def __init__(self, max_rejections: int) -> None:
        self._max_rejections = max_rejections

    @abc.abstractmethod
    def _execute(self, sql: str, params: tuple[Any, ...]) -> Cursor:
        """Run ``sql`` (``?`` placeholders) in the write; the DB-API cursor."""

    @abc.abstractmethod
    def _insert(self, sql: str, params: tuple[Any, ...]) -> int:
        """Run an ``INSERT`` of one row (``?`` placeholders) in the write; the new id."""

    def _one(self, sql: str, params: tuple[Any, ...]) -> Any:
        return self._execute(sql, params).fetchone()

    def attribution(self, visit_id: int) -> Attribution | None:
        row = self._one(f"{SELECT_ATTRIBUTION} WHERE v.id = ?", (visit_id,))
        return None if row is None else attribution_from_row(row)

    def advertiser_exists(self, advertiser_id: int) -> bool:
        return self._one("SELECT 1 FROM advertisers WHERE id = ?", (advertiser_id,)) is not None

    def campaign_payout(self, campaign_id: int) -> PayoutRule:
        row = self._one(
            "SELECT payout_kind, payout_value, payout_currency, reason_codes"
            " FROM campaigns WHERE id = ?",
            (campaign_id,),
        )
        if row is None:
            raise NotFoundError(f"campaign {campaign_id} does not exist")
        return payout_rule(*row)

    def campaign(self, campaign_id: int) -> Campaign | None:
        row = self._one(f"{SELECT_CAMPAIGNS} WHERE id = ?", (campaign_id,))
        return None if row is None else campaign_from_row(row)

    def publisher_approved(self, campaign_id: int, publisher_id: int) -> bool:
        sql = "SELECT 1 FROM links WHERE campaign_id = ? AND publisher_id = ? LIMIT 1"
        return self._one(sql, (campaign_id, publisher_id)) is not None

    def ensure_visit(self, visit_id: int, link_id: int, created_at: str) -> bool:
        self._execute(
            _ENSURE_VISIT.format(explicit_id=self.explicit_id), (visit_id, created_at, link_id)
        )
        return self._one("SELECT 1 FROM visits WHERE id = ?", (visit_id,)) is not None

    def claim_event(self, event_id: str, claimed_at: str) -> bool:
        cursor = self._execute(
            "INSERT INTO applied_events (event_id, applied_at) VALUES (?, ?)"
            " ON CONFLICT (event_id) DO NOTHING",
            (event_id, claimed_at),
        )
        return cursor.rowcount == 1

    def claim_events(self, event_ids: Collection[str], claimed_at: str) -> set[str]:
        fresh = set(event_ids)
        wanted = sorted(fresh)
        for start in range(0, len(wanted), _CLAIM_CHUNK):
            chunk = wanted[start : start + _CLAIM_CHUNK]
            marks = ", ".join("?" for _ in chunk)
            cursor = self._execute(
                f"SELECT event_id FROM applied_events WHERE event_id IN ({marks})", tuple(chunk)
            )
            fresh.difference_update(row[0] for row in cursor.fetchall())
        new = sorted(fresh)
        for start in range(0, len(new), _CLAIM_CHUNK):
            chunk = new[start : start + _CLAIM_CHUNK]
            values = ", ".join("(?, ?)" for _ in chunk)
            cursor = self._execute(
                f"INSERT INTO applied_events (event_id, applied_at) VALUES {values}"
                " ON CONFLICT (event_id) DO NOTHING",
                tuple(item for event_id in chunk for item in (event_id, claimed_at)),
            )
            if cursor.rowcount != len(chunk):  # another writer, despite the write lock
                raise StorageError("spooled events were claimed by another replay meanwhile")
        return fresh

    def find_original(self, advertiser_id: int, reference_id: str) -> Transaction | None:
        row = self._one(
            f"{_SELECT_TRANSACTIONS} WHERE advertiser_id = ? AND reference_id = ?"
            " AND corrects_transaction_id IS NULL",
            (advertiser_id, reference_id),
        )
        return None if row is None else transaction_from_row(row)

    def chain_end(self, original_transaction_id: int) -> Transaction:
        # Chains are lines (transactions_corrects_key) and ids only grow, so
        # the newest row of the chain is its end.
        row = self._one(
            f"{_SELECT_TRANSACTIONS} WHERE id = ? OR original_transaction_id = ?"
            " ORDER BY id DESC LIMIT 1",
            (original_transaction_id, original_transaction_id),
        )
        if row is None:
            raise NotFoundError(f"transaction {original_transaction_id} does not exist")
        return transaction_from_row(row)

    def has_recent_duplicate(
        self, advertiser_id: int, visit_id: int, fingerprint: str, since: str
    ) -> bool:
        row = self._one(
            "SELECT 1 FROM transactions WHERE visit_id = ? AND fingerprint = ?"
            " AND reference_id IS NULL AND corrects_transaction_id IS NULL"
            " AND advertiser_id = ? AND created_at >= ? LIMIT 1",
            (visit_id, fingerprint, advertiser_id, since),
        )
        return row is not None

    def insert_rejection(self, draft: RejectionDraft) -> None:
        newest_id = self._insert(
            f"INSERT INTO rejections ({INSERTED_REJECTION_COLUMNS})"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            rejection_values(draft),
        )
        # Trimmed inside this write (see rejections_to_trim).
        quotas = rejections_to_trim(
            newest_id,
            self._max_rejections,
            lambda: dict(self._execute(_COUNT_REJECTIONS_BY_REASON, ()).fetchall()),
        )
        for reason, keep in quotas.items():
            self._execute(_TRIM_REASON, (reason, reason, keep - 1))

    def conversions_since(self, campaign_id: int, since: str) -> int:
        count: int = self._one(CONVERSIONS_SINCE, (campaign_id, since))[0]
        return count

    # -- the advertiser's server outranks browsers; contested reference ids ------------

    def server_reported(self, advertiser_id: int, reference_id: str) -> bool:
        row = self._one(
            "SELECT 1 FROM server_reports WHERE advertiser_id = ? AND reference_id = ? LIMIT 1",
            (advertiser_id, reference_id),
        )
        return row is not None

    def server_report_seen(
        self, advertiser_id: int, reference_id: str, source: str, report_hash: str
    ) -> bool:
        row = self._one(
            "SELECT 1 FROM server_reports WHERE advertiser_id = ? AND reference_id = ?"
            " AND source = ? AND report_hash = ?",
            (advertiser_id, reference_id, source, report_hash),
        )
        return row is not None

    def note_server_report(
        self, advertiser_id: int, reference_id: str, source: str, report_hash: str, at: str
    ) -> None:
        self._execute(
            "INSERT INTO server_reports (advertiser_id, reference_id, source, report_hash,"
            " created_at) VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            (advertiser_id, reference_id, source, report_hash, at),
        )

    def add_claim(self, claim: ReferenceClaim) -> None:
        self._execute(
            "INSERT INTO reference_claims (advertiser_id, reference_id, visit_id, campaign_id,"
            " publisher_id, source, report, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                claim.advertiser_id,
                claim.reference_id,
                claim.visit_id,
                claim.campaign_id,
                claim.publisher_id,
                claim.source,
                claim.report,
                claim.created_at,
            ),
        )

    def open_claims(self, advertiser_id: int, reference_id: str) -> list[ReferenceClaim]:
        cursor = self._execute(
            f"SELECT {_CLAIM_COLUMNS} FROM reference_claims WHERE advertiser_id = ?"
            " AND reference_id = ? AND resolution IS NULL ORDER BY id",
            (advertiser_id, reference_id),
        )
        return [ReferenceClaim(*row) for row in cursor.fetchall()]

    def resolve_claims(self, claim_ids: list[int], winner_id: int | None, at: str) -> None:
        for claim_id in claim_ids:
            self._execute(
                "UPDATE reference_claims SET resolution = ?, resolved_at = ? WHERE id = ?",
                ("won" if claim_id == winner_id else "lost", at, claim_id),
            )


class SQLStorage(Storage):
    """A :class:`~pixel_wsgi.storage.Storage` on SQL: every statement but the dialect's.

    A dialect provides connections and transactions through :meth:`_read`,
    :meth:`_insert` and :meth:`_transaction`, plus ``writer()``,
    ``append_transaction()`` and the lifecycle. Every entity written is checked
    here first, by the rules of :mod:`pixel_wsgi.entities`.
    """

    #: Inserted before ``VALUES`` when a visit is given its own id.
    explicit_id: ClassVar[str] = ""
    #: Rows per query of a listing; a constructor option of each dialect.
    page_size: int = PAGE_SIZE

    # -- what a dialect provides -------------------------------------------------------

    @abc.abstractmethod
    def _read(self, operation: str, sql: str, params: tuple[Any, ...] = ()) -> list[Row]:
        """Run a read (``?`` placeholders) on its own; all its rows.

        :param operation: what is being done, for the error's message.
        """

    @abc.abstractmethod
    def _insert(self, operation: str, sql: str, params: tuple[Any, ...]) -> int:
        """Run an ``INSERT`` of one row (``?`` placeholders) on its own; the new id.

        :raises NotFoundError: when a row it refers to does not exist.
        """

    @abc.abstractmethod
    def _transaction(
        self, operation: str, *, lock: bool = False
    ) -> AbstractContextManager[Execute]:
        """A write of several statements, committed on success; runs ``?`` statements.

        :param lock: serialise it with the ledger's writers too (SQLite's every write is).
        """

    def _one(self, operation: str, sql: str, params: tuple[Any, ...] = ()) -> Row | None:
        rows = self._read(operation, sql, params)
        return rows[0] if rows else None

    def _paged(
        self,
        operation: str,
        sql: str,
        params: tuple[Any, ...],
        *,
        start: int,
        limit: int | None,
        key: int,
        convert: Callable[[Row], _T],
    ) -> Iterator[_T]:
        """Stream ``sql`` in keyset pages: its first ``?`` is the key's bound, its last the
        ``LIMIT``; each next page starts after the ``key``-th column of the last row read."""
        if limit is not None and limit < 0:  # as in SQLite: a negative LIMIT is none
            limit = None
        if limit == 0:
            return iter(())
        page_size = self.page_size

        def fetch(bound: int, size: int) -> list[Row]:
            return self._read(operation, sql, (bound, *params, size))

        size = page_size if limit is None else min(limit, page_size)
        return _pages(fetch, fetch(start, size), size, page_size, limit, key, convert)

    # -- entities --------------------------------------------------------------

    def add_advertiser(self, name: str) -> Advertiser:
        now = iso_utc(utc_now())
        new_id = self._insert(
            "add an advertiser",
            "INSERT INTO advertisers (name, created_at) VALUES (?, ?)",
            (check_stored_name(name), now),
        )
        return Advertiser(new_id, name, now)

    def add_publisher(self, name: str) -> Publisher:
        now = iso_utc(utc_now())
        new_id = self._insert(
            "add a publisher",
            "INSERT INTO publishers (name, created_at) VALUES (?, ?)",
            (check_stored_name(name), now),
        )
        return Publisher(new_id, name, now)

    def add_campaign(self, advertiser_id: int, name: str, payout: PayoutRule) -> Campaign:
        check_stored_name(name)
        check_payout(payout)
        now = iso_utc(utc_now())
        new_id = self._insert(
            "add a campaign",
            "INSERT INTO campaigns (advertiser_id, name, payout_kind, payout_value,"
            " payout_currency, reason_codes, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (advertiser_id, name, *payout_values(payout), now),
        )
        return Campaign(new_id, advertiser_id, name, payout, now)

    def add_link(self, campaign_id: int, publisher_id: int, destination: str) -> Link:
        validate_destination(destination)  # every caller: the CLI, the API, tests
        new_id = self._insert(
            "add a link",
            "INSERT INTO links (campaign_id, publisher_id, destination, created_at)"
            " VALUES (?, ?, ?, ?)",
            (campaign_id, publisher_id, destination, iso_utc(utc_now())),
        )
        link = self.link(new_id)
        assert link is not None
        return link

    def advertiser(self, advertiser_id: int) -> Advertiser | None:
        row = self._one(
            "read an advertiser", f"{SELECT_ADVERTISERS} WHERE id = ?", (advertiser_id,)
        )
        return None if row is None else advertiser_from_row(row)

    def advertisers(self) -> list[Advertiser]:
        rows = self._read("list advertisers", f"{SELECT_ADVERTISERS} ORDER BY id")
        return [advertiser_from_row(row) for row in rows]

    def set_advertiser_options(
        self, advertiser_id: int, *, require_signed_pixels: bool
    ) -> Advertiser:
        if not isinstance(require_signed_pixels, bool):
            raise EntityInvalid(
                "require_signed_pixels", f"is True or False, got {require_signed_pixels!r}"
            )
        with self._transaction("change an advertiser's options") as execute:
            execute(
                "UPDATE advertisers SET require_signed_pixels = ? WHERE id = ?",
                (require_signed_pixels, advertiser_id),
            )
            row = execute(f"{SELECT_ADVERTISERS} WHERE id = ?", (advertiser_id,)).fetchone()
        if row is None:
            raise NotFoundError(f"no advertiser with id {advertiser_id}")
        return advertiser_from_row(row)

    def set_advertiser_keeps_conversion_context(self, advertiser_id: int, keep: bool) -> None:
        if not isinstance(keep, bool):
            raise EntityInvalid("keeps_conversion_context", f"is True or False, got {keep!r}")
        with self._transaction("change an advertiser's options") as execute:
            cursor = execute(
                "UPDATE advertisers SET keeps_conversion_context = ? WHERE id = ?",
                (keep, advertiser_id),
            )
            if cursor.rowcount != 1:
                raise NotFoundError(f"no advertiser with id {advertiser_id}")

    def index_dates(self) -> bool:
        # Under the write lock, like the cap index: between two ledger writes.
        with self._transaction("index rows by date", lock=True) as execute:
            for statement in DATE_INDEXES_DDL:
                execute(statement, ())
        return True

    def set_campaign_daily_cap(self, campaign_id: int, cap: int | None) -> Campaign:
        check_daily_cap(cap)
        # Under the write lock: the index appears or goes between two ledger writes.
        with self._transaction("set a campaign's daily cap", lock=True) as execute:
            execute("UPDATE campaigns SET daily_cap = ? WHERE id = ?", (cap, campaign_id))
            row = execute(f"{SELECT_CAMPAIGNS} WHERE id = ?", (campaign_id,)).fetchone()
            capped = execute(ANY_CAPPED_CAMPAIGN, ()).fetchone() is not None
            execute(CAP_INDEX_DDL if capped else DROP_CAP_INDEX_DDL, ())
        if row is None:
            raise NotFoundError(f"no campaign with id {campaign_id}")
        return campaign_from_row(row)

    def publisher(self, publisher_id: int) -> Publisher | None:
        row = self._one(
            "read a publisher",
            "SELECT id, name, created_at FROM publishers WHERE id = ?",
            (publisher_id,),
        )
        return None if row is None else Publisher(*row)

    def publishers(self) -> list[Publisher]:
        rows = self._read(
            "list publishers", "SELECT id, name, created_at FROM publishers ORDER BY id"
        )
        return [Publisher(*row) for row in rows]

    def campaign(self, campaign_id: int) -> Campaign | None:
        row = self._one("read a campaign", f"{SELECT_CAMPAIGNS} WHERE id = ?", (campaign_id,))
        return None if row is None else campaign_from_row(row)

    def campaigns(self, *, advertiser_id: int | None = None) -> list[Campaign]:
        where, params = filters(("advertiser_id = ?", advertiser_id), prefix=" WHERE ")
        rows = self._read("list campaigns", f"{SELECT_CAMPAIGNS}{where} ORDER BY id", params)
        return [campaign_from_row(row) for row in rows]

    def link(self, link_id: int) -> Link | None:
        row = self._one("read a link", f"{SELECT_LINKS} WHERE l.id = ?", (link_id,))
        return None if row is None else Link(*row)

    def links(self, *, advertiser_id: int | None = None) -> list[Link]:
        where, params = filters(("c.advertiser_id = ?", advertiser_id), prefix=" WHERE ")
        rows = self._read("list links", f"{SELECT_LINKS}{where} ORDER BY l.id", params)
        return [Link(*row) for row in rows]

    def record_visit(
        self,
        link: Link,
        *,
        ip_prefix: str | None,
        user_agent: str | None,
        created_at: str,
        visit_id: int | None = None,
        click: ClickContext | None = None,
    ) -> int:
        if visit_id is None:
            return self._insert(
                "record a visit",
                "INSERT INTO visits (link_id, ip_prefix, user_agent, created_at, click_data)"
                " VALUES (?, ?, ?, ?, ?)",
                (link.id, ip_prefix, user_agent, created_at, click_data(click)),
            )
        with self._transaction("replay a visit") as execute:
            execute(
                _INSERT_VISIT_WITH_ID.format(explicit_id=self.explicit_id),
                (visit_id, link.id, ip_prefix, user_agent, created_at, click_data(click)),
            )
        return visit_id

    # -- the ledger's reads ------------------------------------------------------

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
        conditions, params = filters(
            ("advertiser_id = ?", advertiser_id),
            ("id = ?", transaction_id),
            ("reference_id = ?", reference_id),
            ("created_at >= ?", created_from),
            ("created_at < ?", created_before),
        )
        conditions += transaction_type_condition(transaction_type)
        return self._paged(
            "read transactions",
            f"{_SELECT_TRANSACTIONS} WHERE id > ?{conditions} ORDER BY id LIMIT ?",
            params,
            start=after_transaction_id or 0,
            limit=limit,
            key=0,
            convert=transaction_from_row,
        )

    def conversions(
        self,
        *,
        advertiser_id: int | None = None,
        created_from: str | None = None,
        created_before: str | None = None,
    ) -> Iterator[Transaction]:
        # Corrections inherit their conversion's advertiser, and the sale happened
        # when its first row was made: filter the first rows.
        conditions, params = filters(
            ("o.advertiser_id = ?", advertiser_id),
            ("o.created_at >= ?", created_from),
            ("o.created_at < ?", created_before),
        )
        return self._paged(
            "read conversions",
            _CONVERSIONS.format(conditions=conditions),
            params,
            start=0,
            limit=None,
            key=_CONVERSION_KEY,
            convert=transaction_from_row,
        )

    def rejections(
        self,
        *,
        advertiser_id: int | None = None,
        limit: int | None = None,
        created_from: str | None = None,
        created_before: str | None = None,
    ) -> Iterator[Rejection]:
        conditions, params = filters(
            ("advertiser_id = ?", advertiser_id),
            ("created_at >= ?", created_from),
            ("created_at < ?", created_before),
        )
        if advertiser_id is not None and (created_from or created_before):
            # Newest first walks (advertiser_id, id), which the planner prefers to the
            # date index; bound that walk by the ids the date range holds, read from
            # the date index, so rows outside the range are never visited. Exact
            # whatever the order of ids and times: the conditions above still filter.
            in_range = conditions.removeprefix(" AND ")
            conditions += (
                f" AND id >= (SELECT min(id) FROM rejections WHERE {in_range})"
                f" AND id <= (SELECT max(id) FROM rejections WHERE {in_range})"
            )
            params = (*params, *params, *params)
        return self._paged(
            "read rejections",
            f"SELECT {REJECTION_COLUMNS} FROM rejections WHERE id < ?{conditions}"
            " ORDER BY id DESC LIMIT ?",
            params,
            start=_MAX_ID,
            limit=limit,
            key=0,
            convert=lambda row: Rejection(*row),
        )

    def contested_references(self, advertiser_id: int) -> set[str]:
        rows = self._read("read contested references", CONTESTED_REFERENCES, (advertiser_id,))
        return {row[0] for row in rows}

    # -- API credentials and idempotency keys ------------------------------------

    def add_credential(self, advertiser_id: int, label: str, secret_hash: str) -> ApiCredential:
        check_stored_name(label)
        now = iso_utc(utc_now())
        new_id = self._insert(
            "add a credential",
            "INSERT INTO api_credentials (advertiser_id, label, secret_hash, created_at)"
            " VALUES (?, ?, ?, ?)",
            (advertiser_id, label, secret_hash, now),
        )
        return ApiCredential(new_id, advertiser_id, label, secret_hash, now)

    def credential(self, credential_id: int) -> ApiCredential | None:
        row = self._one(
            "read a credential",
            f"SELECT {CREDENTIAL_COLUMNS} FROM api_credentials WHERE id = ?",
            (credential_id,),
        )
        return None if row is None else ApiCredential(*row)

    def credentials(self, *, advertiser_id: int | None = None) -> list[ApiCredential]:
        where, params = filters(("advertiser_id = ?", advertiser_id), prefix=" WHERE ")
        rows = self._read(
            "list credentials",
            f"SELECT {CREDENTIAL_COLUMNS} FROM api_credentials{where} ORDER BY id",
            params,
        )
        return [ApiCredential(*row) for row in rows]

    def revoke_credential(self, credential_id: int) -> bool:
        with self._transaction("revoke a credential") as execute:
            cursor = execute(
                "UPDATE api_credentials SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                (iso_utc(utc_now()), credential_id),
            )
            return cursor.rowcount == 1

    def idempotency_record(
        self, advertiser_id: int, key: str, *, since: str
    ) -> IdempotencyRecord | None:
        row = self._one(
            "read an idempotency record",
            f"{_SELECT_IDEMPOTENCY} WHERE advertiser_id = ? AND key = ? AND created_at >= ?",
            (advertiser_id, key, since),
        )
        return None if row is None else IdempotencyRecord(*row)

    def save_idempotency_record(
        self, record: IdempotencyRecord, *, expired_before: str
    ) -> IdempotencyRecord:
        operation = "save an idempotency record"
        with self._transaction(operation) as execute:
            execute("DELETE FROM idempotency_keys WHERE created_at < ?", (expired_before,))
            # PostgreSQL's READ COMMITTED: the INSERT waits for a racing insert of the
            # same key to commit, and the SELECT after it sees that row; it can only
            # miss it when a third writer deleted it as expired meanwhile: then try
            # again. (SQLite's write holds the lock: the first round settles it.)
            for _ in range(3):
                inserted = execute(
                    f"INSERT INTO idempotency_keys ({IDEMPOTENCY_COLUMNS})"
                    " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (advertiser_id, key) DO NOTHING",
                    idempotency_values(record),
                )
                if inserted.rowcount == 1:
                    return record
                row = execute(
                    f"{_SELECT_IDEMPOTENCY} WHERE advertiser_id = ? AND key = ?",
                    (record.advertiser_id, record.key),
                ).fetchone()
                if row is not None:
                    return IdempotencyRecord(*row)
        raise StorageError(f"cannot {operation}: the key keeps being taken and expired")

    def settle_idempotency_record(
        self, advertiser_id: int, key: str, request_hash: str, *, status: int | None, body: str = ""
    ) -> None:
        where = " WHERE advertiser_id = ? AND key = ? AND request_hash = ? AND status = 0"
        with self._transaction("settle an idempotency record") as execute:
            if status is None:  # released: a retry runs the request again
                execute("DELETE FROM idempotency_keys" + where, (advertiser_id, key, request_hash))
            else:
                execute(
                    "UPDATE idempotency_keys SET status = ?, body = ?" + where,
                    (status, body, advertiser_id, key, request_hash),
                )

    def personal_data(self, transaction_id: int) -> dict[str, str]:
        row = self._one(
            "read personal data",
            "SELECT data FROM personal_data WHERE transaction_id = ?",
            (transaction_id,),
        )
        return {} if row is None else dict(json.loads(row[0]))

    # -- what delivery needs beyond the rows --------------------------------------------

    def delivery_contexts(self, transaction_ids: Sequence[int]) -> dict[int, DeliveryContext]:
        found: dict[int, DeliveryContext] = {}
        for chunk, placeholders in id_chunks(transaction_ids):
            rows = self._read(
                "read delivery contexts", _DELIVERY_CONTEXTS.format(ids=placeholders), chunk
            )
            for transaction_id, click, conversion, personal, original_click in rows:
                found[transaction_id] = DeliveryContext(
                    click=click_from_data(click),
                    conversion=conversion_from_data(conversion),
                    personal={} if personal is None else dict(json.loads(personal)),
                    original_click=click_from_data(original_click),
                )
        return found

    def forget_conversion_contexts(self, advertiser_id: int, through_transaction_id: int) -> int:
        with self._transaction("forget conversion contexts") as execute:
            row = execute(
                "SELECT contexts_forgotten_through FROM advertisers WHERE id = ?",
                (advertiser_id,),
            ).fetchone()
            if row is None or through_transaction_id <= row[0]:
                return 0
            # Read the count first: PostgreSQL's execute reuses one cursor.
            forgotten = execute(
                _FORGET_CONVERSION_CONTEXTS, (row[0], through_transaction_id, advertiser_id)
            ).rowcount
            execute(
                "UPDATE advertisers SET contexts_forgotten_through = ? WHERE id = ?",
                (through_transaction_id, advertiser_id),
            )
            return int(forgotten)

    def erase_personal_data(self, advertiser_id: int, reference_id: str) -> int:
        with self._transaction("erase personal data") as execute:
            erased = execute(
                "DELETE FROM personal_data WHERE transaction_id IN (SELECT id FROM"
                " transactions WHERE advertiser_id = ? AND reference_id = ?)",
                (advertiser_id, reference_id),
            ).rowcount  # read now: PostgreSQL's next statement reuses the cursor
            # The request's context (cookies, User-Agent, network) is personal data too.
            execute(
                "UPDATE transactions SET delivery_context = NULL WHERE advertiser_id = ?"
                " AND reference_id = ? AND delivery_context IS NOT NULL",
                (advertiser_id, reference_id),
            )
            return erased
