"""The storage contract every backend implements.

A backend stores the entities of the ledger (advertisers, publishers,
campaigns, tracking links, visits), the append-only transaction rows, personal
data kept apart from them, and the bounded rejection log. The *rules* (what is
a duplicate, what a correction inherits, what a payout is) live in
:mod:`pixel_wsgi.ledger`; a backend only promises that the primitives of one
:meth:`Storage.writer` block run atomically and serialised against every other
writer, and that its unique keys hold under concurrency.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlsplit

from ..background import ProcessThread
from ..errors import ConfigurationError
from ..models import (
    Advertiser,
    ApiCredential,
    Attribution,
    Campaign,
    ClickContext,
    Delivery,
    DeliveryAttempt,
    DeliveryContext,
    DeliveryStatus,
    IdempotencyRecord,
    Link,
    PayoutRule,
    Publisher,
    ReferenceClaim,
    Rejection,
    RejectionDraft,
    Settlement,
    StoredTarget,
    TargetHealth,
    TargetKind,
    TargetStatus,
    Transaction,
    TransactionDraft,
    TransactionType,
)


class LedgerWriter(abc.ABC):
    """The primitives the ledger uses inside one atomic, serialised write."""

    @abc.abstractmethod
    def attribution(self, visit_id: int) -> Attribution | None:
        """The attribution of the visit's tracking link, or None for an unknown visit.

        Its ``daily_cap`` is the campaign's current one, read inside this write.
        """

    @abc.abstractmethod
    def advertiser_exists(self, advertiser_id: int) -> bool:
        """Whether an advertiser with this id exists."""

    @abc.abstractmethod
    def campaign_payout(self, campaign_id: int) -> PayoutRule:
        """The current payout rule of a campaign."""

    @abc.abstractmethod
    def campaign(self, campaign_id: int) -> Campaign | None:
        """A campaign, or None when there is none with this id."""

    @abc.abstractmethod
    def publisher_approved(self, campaign_id: int, publisher_id: int) -> bool:
        """Whether the publisher promotes the campaign: it has a tracking link for it."""

    @abc.abstractmethod
    def ensure_visit(self, visit_id: int, link_id: int, created_at: str) -> bool:
        """Store a visit known only from its signed cookie, unless it is stored already.

        Its click was spooled while the store was down, so the conversion arrives
        first. False when the link does not exist.
        """

    @abc.abstractmethod
    def claim_event(self, event_id: str, claimed_at: str) -> bool:
        """Mark a spooled event as applied; False when it was applied before.

        Called inside the same write as the event's rows, so an event is applied
        exactly once however often a replay runs or crashes.
        """

    @abc.abstractmethod
    def claim_events(self, event_ids: Collection[str], claimed_at: str) -> set[str]:
        """Mark many spooled events as applied at once; the ids that were not before.

        For a batch that applies the events it claims in the same transaction
        (:meth:`Storage.batch`): one or two statements instead of one per event.
        """

    @abc.abstractmethod
    def find_original(self, advertiser_id: int, reference_id: str) -> Transaction | None:
        """The first row of the advertiser's conversion with this ``reference_id``."""

    @abc.abstractmethod
    def chain_end(self, original_transaction_id: int) -> Transaction:
        """The newest row of a conversion's correction chain: its current state."""

    @abc.abstractmethod
    def has_recent_duplicate(
        self, advertiser_id: int, visit_id: int, fingerprint: str, since: str
    ) -> bool:
        """Whether the visit reported these exact values, without a reference id, since then."""

    @abc.abstractmethod
    def insert_transaction(self, draft: TransactionDraft) -> int | None:
        """Append a row and its personal data; None if its ``reference_id`` is taken."""

    @abc.abstractmethod
    def insert_rejection(self, draft: RejectionDraft) -> None:
        """Append to the rejection log, dropping the oldest entries past its bound."""

    # -- the advertiser's server outranks browsers; contested reference ids ------------

    @abc.abstractmethod
    def server_reported(self, advertiser_id: int, reference_id: str) -> bool:
        """Whether a server-side report (API, CSV, in-process) was applied to this conversion."""

    @abc.abstractmethod
    def server_report_seen(
        self, advertiser_id: int, reference_id: str, source: str, report_hash: str
    ) -> bool:
        """Whether this very report (by digest) came from this source before."""

    @abc.abstractmethod
    def note_server_report(
        self, advertiser_id: int, reference_id: str, source: str, report_hash: str, at: str
    ) -> None:
        """Remember a server-side report applied to the conversion ``reference_id`` names."""

    @abc.abstractmethod
    def add_claim(self, claim: ReferenceClaim) -> None:
        """Keep a second browser claim of a ``reference_id`` (``claim_id`` is ignored)."""

    @abc.abstractmethod
    def open_claims(self, advertiser_id: int, reference_id: str) -> list[ReferenceClaim]:
        """The claims of this ``reference_id`` no server report has decided, oldest first."""

    @abc.abstractmethod
    def resolve_claims(self, claim_ids: list[int], winner_id: int | None, at: str) -> None:
        """Mark these claims decided: ``winner_id`` won (if one of them), the others lost."""

    @abc.abstractmethod
    def conversions_since(self, campaign_id: int, since: str) -> int:
        """How many conversions of the campaign were created at or after ``since``.

        Conversions are first rows (not corrections), from every source, whatever
        became of them later. ``since`` is ISO UTC text as stored (the start of a
        UTC day for a daily cap). Read inside the serialised write, so a count
        followed by an insert cannot race another writer.
        """


class Storage(abc.ABC):
    """Base class of storage backends.

    Subclasses set ``schemes`` to the URL schemes they serve and are found by
    :func:`storage_from_url`::

        storage = storage_from_url("sqlite:///pixel-wsgi.db")
        storage.migrate()
        acme = storage.add_advertiser("Acme")

    A backend must be safe to share between threads and to create before a
    server forks: connections are opened lazily, per process and per thread.
    """

    schemes: ClassVar[tuple[str, ...]] = ()
    _registry: ClassVar[dict[str, type[Storage]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # Only a class that declares its own schemes serves them: a subclass made to
        # tweak a backend (in tests, say) must not take over its URLs.
        for scheme in cls.__dict__.get("schemes", ()):
            Storage._registry[scheme] = cls

    @classmethod
    @abc.abstractmethod
    def from_url(cls, url: str, **options: Any) -> Storage:
        """Build the backend from its URL; raise ConfigurationError on a bad one."""

    # -- lifecycle -----------------------------------------------------------

    @abc.abstractmethod
    def migrate(self) -> None:
        """Bring the schema up to date; safe to run concurrently and repeatedly."""

    @abc.abstractmethod
    def check(self, *, writable: bool = False) -> None:
        """Raise :class:`~pixel_wsgi.errors.StorageError` unless the store answers.

        :param writable: also check that a write could start now (takes the write
            lock for an instant and writes nothing).
        """

    @abc.abstractmethod
    def close(self) -> None:
        """Close this thread's connection (others close when their threads end)."""

    def housekeeping(
        self, *, after_exit: Callable[[], object] | None = None
    ) -> ProcessThread | None:
        """A thread (not started) that keeps the store's own upkeep off the request
        path, for the middleware to run in each process; None when the backend needs
        none (SQLite's checkpoints its write-ahead log).

        :param after_exit: called when the thread ends by itself, idle (the middleware
            starts it again with its next request).
        """
        return None

    def serve_threads(self, threaded: bool) -> None:
        """Be told whether the server runs requests in several threads of a process
        (the middleware reads ``wsgi.multithread`` from each process's first request), for
        a backend that writes best one way or the other (SQLite's write gate,
        :mod:`~pixel_wsgi.storage.write_gate`). Nothing by default."""
        return None

    def default_spool_dir(self) -> Path:
        """Where the outage spool goes unless the middleware is told otherwise."""
        return Path("pixel-wsgi.spool")

    # -- entities --------------------------------------------------------------

    # Every entity is checked by the rules of pixel_wsgi.entities before it is stored:
    # a broken one raises EntityInvalid (a ConfigurationError, so a ValueError).

    @abc.abstractmethod
    def add_advertiser(self, name: str) -> Advertiser:
        """Store a new advertiser; ``name`` is any text, kept exactly.

        :raises EntityInvalid: when ``name`` is not text.
        """

    @abc.abstractmethod
    def add_publisher(self, name: str) -> Publisher:
        """Store a new publisher; ``name`` is any text, kept exactly.

        :raises EntityInvalid: when ``name`` is not text.
        """

    @abc.abstractmethod
    def add_campaign(self, advertiser_id: int, name: str, payout: PayoutRule) -> Campaign:
        """Raise NotFoundError when the advertiser does not exist.

        :raises EntityInvalid: for a payout rule that breaks
            :func:`~pixel_wsgi.entities.check_payout` (a percentage over 100, a
            negative value, an unknown currency...).
        """

    @abc.abstractmethod
    def add_link(self, campaign_id: int, publisher_id: int, destination: str) -> Link:
        """Raise NotFoundError when the campaign or publisher does not exist.

        :raises EntityInvalid: for a destination no redirect could use (checked
            with :func:`~pixel_wsgi.entities.validate_destination` before storing).
        """

    @abc.abstractmethod
    def advertiser(self, advertiser_id: int) -> Advertiser | None: ...

    @abc.abstractmethod
    def advertisers(self) -> list[Advertiser]: ...

    @abc.abstractmethod
    def publisher(self, publisher_id: int) -> Publisher | None: ...

    @abc.abstractmethod
    def publishers(self) -> list[Publisher]: ...

    @abc.abstractmethod
    def campaigns(self, *, advertiser_id: int | None = None) -> list[Campaign]: ...

    @abc.abstractmethod
    def links(self, *, advertiser_id: int | None = None) -> list[Link]: ...

    @abc.abstractmethod
    def campaign(self, campaign_id: int) -> Campaign | None: ...

    @abc.abstractmethod
    def link(self, link_id: int) -> Link | None: ...

    @abc.abstractmethod
    def set_advertiser_options(
        self, advertiser_id: int, *, require_signed_pixels: bool
    ) -> Advertiser:
        """Change an advertiser's options; return the advertiser as stored now.

        :raises NotFoundError: when the advertiser does not exist.
        """

    @abc.abstractmethod
    def set_advertiser_keeps_conversion_context(self, advertiser_id: int, keep: bool) -> None:
        """Whether the advertiser's pixel conversions keep their request context (the
        ``_fbp`` and ``_ga`` cookies, User-Agent, truncated IP, page) for delivery.

        Running processes see the change within their catalog's ``ttl``.

        :raises NotFoundError: when the advertiser does not exist.
        :raises EntityInvalid: unless ``keep`` is True or False.
        """

    def index_dates(self) -> bool:
        """Add the indexes that bound an advertiser's reads by date, if missing.

        Reads with ``created_from``/``created_before`` (the dashboard's pages, the
        Transactions API) are correct without them, but scan the advertiser's rows;
        with them, a page's time no longer grows with rows outside its range. Each
        index costs every later write, so no migration adds them: the dashboard asks
        on its first request. A backend without such indexes returns False.

        :returns: whether the store has them now.
        :raises StorageError: when the store cannot add them (read-only, unavailable).
        """
        return False

    @abc.abstractmethod
    def set_campaign_daily_cap(self, campaign_id: int, cap: int | None) -> Campaign:
        """Set (a whole number >= 0) or remove (None) a campaign's daily cap.

        :raises NotFoundError: when the campaign does not exist.
        :raises EntityInvalid: for a negative cap (a ValueError).
        """

    @abc.abstractmethod
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
        """Durably record one click on a link; return the new visit id.

        With ``visit_id`` (a spooled click being replayed) that id is used, and a
        visit already stored under it is kept: the call is idempotent (a visit its
        conversion stored first, without a click context, gets ``click``'s).

        :param click: what the link's query carried for delivery; nothing is kept for
            None or a context without sub ids and click ids.
        """

    # -- the ledger ------------------------------------------------------------

    @abc.abstractmethod
    def append_transaction(self, draft: TransactionDraft) -> int | None:
        """Atomically append one new conversion and its personal data.

        The ``(advertiser, reference_id)`` unique key alone makes this idempotent,
        so it needs no serialised :meth:`writer` block: None when the key is taken.

        :raises NotFoundError: when the row's visit, campaign or publisher is gone.
        """

    @abc.abstractmethod
    def writer(self) -> AbstractContextManager[LedgerWriter]:
        """An atomic write serialised against all other writers (commit on success)."""

    @abc.abstractmethod
    def batch(self, *, savepoints: bool = True) -> AbstractContextManager[None]:
        """One transaction for every write this thread makes inside it: each write
        (``writer()``, ``append_transaction()``, ...) is a savepoint in it, undone alone
        when it fails; all commit together when the block ends, or none when it raises.
        Reads inside see the batch's writes. Nested batches are part of the outer one.

        What applies many small events at once (the queued mode's applier) pays one
        commit for all of them.

        :param savepoints: False to run the writes inside without savepoints (on
            PostgreSQL two round trips fewer per write): a write that fails may then
            leave a part of itself, so the caller must let the failure end the block,
            which undoes the whole batch (and may redo it with savepoints).
        """

    @abc.abstractmethod
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
        """Ledger rows in ``transaction_id`` order, corrections included.

        Every filter given must hold. ``reference_id`` matches every row of the
        conversion's chain; ``created_from`` (inclusive) and ``created_before``
        (exclusive) compare with ``created_at`` as stored (ISO UTC text).

        Ids are handed out in commit order, so a keyset cursor
        (``after_transaction_id``) never skips or repeats a row while writes go on.
        The rows are read in keyset pages as the iterator advances (the first page by
        the call itself): memory stays bounded, and rows committed meanwhile past the
        last one read are seen.
        """

    @abc.abstractmethod
    def conversions(
        self,
        *,
        advertiser_id: int | None = None,
        created_from: str | None = None,
        created_before: str | None = None,
    ) -> Iterator[Transaction]:
        """The current state of each conversion: the end of every correction chain, in
        the order of the conversions' first rows.

        ``created_from`` (inclusive) and ``created_before`` (exclusive) bound when the
        sale happened: the ``created_at`` of the conversion's *first* row, whatever
        the date of its latest correction (which is the row returned).
        Read in keyset pages, as :meth:`transactions`.
        """

    @abc.abstractmethod
    def rejections(
        self,
        *,
        advertiser_id: int | None = None,
        limit: int | None = None,
        created_from: str | None = None,
        created_before: str | None = None,
    ) -> Iterator[Rejection]:
        """The rejection log, newest first; ``created_from`` (inclusive) and
        ``created_before`` (exclusive) bound ``created_at``. Read in keyset pages."""

    @abc.abstractmethod
    def contested_references(self, advertiser_id: int) -> set[str]:
        """The advertiser's ``reference_id`` values that browsers contest, undecided yet."""

    # -- API credentials and idempotency keys ------------------------------------

    @abc.abstractmethod
    def add_credential(self, advertiser_id: int, label: str, secret_hash: str) -> ApiCredential:
        """Store a new credential (its secret's digest only).

        :raises NotFoundError: when the advertiser does not exist.
        """

    @abc.abstractmethod
    def credential(self, credential_id: int) -> ApiCredential | None: ...

    @abc.abstractmethod
    def credentials(self, *, advertiser_id: int | None = None) -> list[ApiCredential]:
        """Credentials in id order, revoked ones included."""

    @abc.abstractmethod
    def revoke_credential(self, credential_id: int) -> bool:
        """Revoke a credential now; False when it does not exist or was revoked already."""

    @abc.abstractmethod
    def idempotency_record(
        self, advertiser_id: int, key: str, *, since: str
    ) -> IdempotencyRecord | None:
        """The answer stored for this key, unless it is older than ``since``."""

    @abc.abstractmethod
    def save_idempotency_record(
        self, record: IdempotencyRecord, *, expired_before: str
    ) -> IdempotencyRecord:
        """Store an answer; when the key is taken (a race), return the stored one.

        Records created before ``expired_before`` are deleted first, so an
        expired key can be used again.
        """

    @abc.abstractmethod
    def settle_idempotency_record(
        self, advertiser_id: int, key: str, request_hash: str, *, status: int | None, body: str = ""
    ) -> None:
        """Settle a pending claim of a key (saved with status 0 before the request ran).

        With a ``status``, record the answer given; with None, release the claim, so
        that a retry runs the request again (it was not applied, or was spooled).
        """

    @abc.abstractmethod
    def personal_data(self, transaction_id: int) -> dict[str, str]:
        """The remarketing fields stored with a row (empty when none or erased)."""

    @abc.abstractmethod
    def erase_personal_data(self, advertiser_id: int, reference_id: str) -> int:
        """Erase the personal data of every row of a conversion; return rows erased.

        Its request context kept for delivery (:meth:`forget_conversion_contexts`) goes
        too; the count is of rows whose remarketing fields were erased.
        """

    # -- delivery: targets, the outbox, the attempt log ----------------------------
    #
    # The ledger is the log: each target keeps a cursor over ledger ids (which follow
    # commit order) and queues the rows after it; recording a conversion writes
    # nothing here. Workers claim due rows (a lease; FOR UPDATE SKIP LOCKED first on
    # PostgreSQL), send them, and settle them under the same lease token.

    @abc.abstractmethod
    def add_target(
        self,
        advertiser_id: int,
        kind: TargetKind,
        *,
        publisher_id: int | None,
        settings: Mapping[str, str],
        sealed_secrets: str,
        start_after: int,
    ) -> StoredTarget:
        """Store a new, active target whose cursor starts after ledger id ``start_after``.

        :raises NotFoundError: for an unknown advertiser or publisher.
        """

    @abc.abstractmethod
    def target(self, target_id: int) -> StoredTarget | None: ...

    @abc.abstractmethod
    def targets(
        self, *, advertiser_id: int | None = None, removed: bool = False
    ) -> list[StoredTarget]:
        """The targets by id; ``removed`` ones too only when asked."""

    @abc.abstractmethod
    def set_target(
        self, target_id: int, settings: Mapping[str, str], sealed_secrets: str
    ) -> StoredTarget:
        """Replace a target's settings and credentials (``pixel-wsgi target set``).

        :raises NotFoundError: for an unknown target.
        """

    @abc.abstractmethod
    def set_target_status(
        self, target_id: int, status: TargetStatus, detail: str | None
    ) -> StoredTarget:
        """Pause, resume, remove, or mark refused credentials; resuming closes the breaker.

        :raises NotFoundError: for an unknown target.
        """

    @abc.abstractmethod
    def set_target_breaker(self, target_id: int, failures: int, resume_at: str | None) -> None:
        """Record the circuit breaker: requests failed in a row, and until when to wait."""

    @abc.abstractmethod
    def last_transaction_id(self, *, before: str | None = None) -> int:
        """The newest ledger id (made before ``before`` when given); 0 for none."""

    @abc.abstractmethod
    def queue_deliveries(
        self,
        target_id: int,
        cursor: int,
        new_cursor: int,
        rows: Sequence[tuple[int, int]],
        now: str,
    ) -> bool:
        """Queue ``rows`` (``(transaction_id, original_transaction_id)``) as pending and
        move the target's cursor from ``cursor`` to ``new_cursor``, atomically.

        :returns: False, changing nothing, when the cursor was not ``cursor`` any more
            (another worker queued those rows first).
        """

    @abc.abstractmethod
    def claim_deliveries(
        self, target_id: int, *, now: str, lease_until: str, token: str, limit: int
    ) -> list[Delivery]:
        """Lease up to ``limit`` due pending rows, oldest first, to ``token``.

        A row is due when its time has come, no lease on it is running, and no earlier
        row of its chain is pending for this target (a correction waits for its
        original), on a target that is active. Each comes with ``original_status`` and,
        for a correction, ``superseded_by``.
        """

    @abc.abstractmethod
    def due_deliveries(self, target_id: int, *, now: str, limit: int) -> list[Delivery]:
        """The rows :meth:`claim_deliveries` would claim, leasing nothing (``--dry-run``)."""

    @abc.abstractmethod
    def delivery_origins(self, target_id: int, transaction_ids: Sequence[int]) -> dict[int, int]:
        """For those of ``transaction_ids`` queued for the target, the origin each was
        queued with (what a correction of it waits for)."""

    @abc.abstractmethod
    def renew_lease(self, target_id: int, token: str, *, lease_until: str) -> set[int]:
        """Extend the lease of the rows ``token`` still holds to ``lease_until``; their
        transaction ids (a row another worker claimed since is not among them)."""

    @abc.abstractmethod
    def settle_deliveries(
        self,
        target_id: int,
        token: str,
        settlements: Sequence[Settlement],
        attempts: Sequence[DeliveryAttempt],
    ) -> int:
        """Record what became of leased rows and log the attempts, in one transaction.

        A row whose lease ``token`` no longer holds (it ran out and another worker
        claimed the row) is left alone. :returns: the rows settled.
        """

    @abc.abstractmethod
    def deliveries(
        self, target_id: int, *, status: DeliveryStatus | None = None, limit: int | None = None
    ) -> Iterator[Delivery]:
        """A target's rows by ledger id, in keyset pages."""

    @abc.abstractmethod
    def move_deliveries(
        self,
        target_id: int,
        *,
        from_statuses: Sequence[DeliveryStatus],
        to_status: DeliveryStatus,
        now: str,
        detail: str | None,
        transaction_ids: Sequence[int] | None = None,
    ) -> int:
        """Move rows (all of the target's, or ``transaction_ids``) from one of
        ``from_statuses`` to ``to_status`` (``retry``: to pending, due now and queued
        anew; ``skip``). A row leased by a worker is not moved. :returns: the rows moved."""

    @abc.abstractmethod
    def delivery_attempts(
        self, target_id: int, *, limit: int = 20, exclude_outcomes: Sequence[str] = ()
    ) -> list[DeliveryAttempt]:
        """The target's newest attempts first; with ``exclude_outcomes``, only those
        whose outcome is none of them (the last errors: not ``delivered``, ``duplicate``)."""

    @abc.abstractmethod
    def delivery_counts(self, target_id: int) -> dict[DeliveryStatus, int]:
        """How many of the target's rows are in each status (absent: none)."""

    @abc.abstractmethod
    def delivery_health(
        self, *, advertiser_id: int | None = None, removed: bool = False
    ) -> list[TargetHealth]:
        """Every target's status, backlog and oldest undelivered row, by id, in ONE read
        (``/pixels/health`` runs it on every check); ``removed`` targets only when asked."""

    @abc.abstractmethod
    def oldest_pending(self, target_id: int) -> str | None:
        """When the oldest ledger row still pending for the target was made."""

    @abc.abstractmethod
    def attempt_outcomes_by_day(self, target_id: int, since: str) -> list[tuple[str, str, int]]:
        """``(UTC day, outcome, attempts)`` of the target's attempts since ``since``."""

    @abc.abstractmethod
    def transactions_by_id(self, transaction_ids: Sequence[int]) -> dict[int, Transaction]:
        """The ledger rows of these ids (missing ids are absent)."""

    @abc.abstractmethod
    def settled_through(self, target_id: int) -> int:
        """The highest ledger id up to which every row is queued and settled for the target."""

    # -- what delivery needs beyond the rows --------------------------------------------

    @abc.abstractmethod
    def delivery_contexts(self, transaction_ids: Sequence[int]) -> dict[int, DeliveryContext]:
        """What delivery needs of each ledger row beyond the row, by its id.

        All of it is the chain's original's: the click context of its visit, its
        conversion context (unless forgotten), its personal data (unless erased). A
        correction or a reversal so shares its conversion's, never a copy. Ids of no
        row are absent. A few queries for the whole batch, never one per id.
        """

    @abc.abstractmethod
    def forget_conversion_contexts(self, advertiser_id: int, through_transaction_id: int) -> int:
        """Drop the conversion contexts of the advertiser's rows up to and including
        ``through_transaction_id`` (delivery no longer needs them): the one change the
        append-only ledger allows. Returns how many rows had one."""


def storage_from_url(url: str, **options: Any) -> Storage:
    """The storage backend for ``url``, e.g. ``sqlite:///pixel-wsgi.db``.

    :raises ConfigurationError: for an unknown scheme or a malformed URL.
    """
    scheme = urlsplit(url).scheme.split("+", 1)[0]
    backend = Storage._registry.get(scheme)
    if backend is None:
        known = ", ".join(sorted(Storage._registry)) or "none"
        raise ConfigurationError(f"no storage backend for {url!r} (known schemes: {known})")
    return backend.from_url(url, **options)


# -- rules every backend applies the same way -------------------------------------


def rejections_to_trim(
    newest_id: int, max_rejections: int, count_by_reason: Callable[[], Mapping[str, int]]
) -> dict[str, int]:
    """After the rejection ``newest_id``: how many of its newest entries each reason that
    must shrink keeps (empty: nothing goes). Run inside the writer's transaction.

    The log keeps about ``max_rejections`` entries. When it holds more, the most frequent
    reasons give way first, each down to a fair share (:func:`rejection_quotas`): a
    flood of one reason (junk pixels, say) only ever evicts its own kind, never the one
    ``cookie_stuffing`` entry that is the evidence of a fraud.

    Trimming is batched so that it stays cheap on the write path: it runs once in
    ``max(256, max_rejections // 16)`` inserts, and only then counts the log
    (``count_by_reason``, one aggregate over the table), so the log may exceed its
    bound by up to that batch between two trims.
    """
    interval = max(256, max_rejections // 16)
    if newest_id % interval or newest_id <= max_rejections:
        return {}
    return rejection_quotas(count_by_reason(), max_rejections)


def rejection_quotas(counts: Mapping[str, int], max_rejections: int) -> dict[str, int]:
    """The reasons that must shrink for ``counts`` to fit ``max_rejections``, with how
    many entries each keeps: the same for all of them, the largest that fits (at least 1).

    Reasons with fewer entries than that keep them all (max-min fairness).

    >>> rejection_quotas({"cookie_stuffing": 1, "unknown_advertiser": 500}, 100)
    {'unknown_advertiser': 99}
    """
    if sum(counts.values()) <= max_rejections:
        return {}
    remaining = max_rejections
    ordered = sorted(counts.items(), key=lambda item: item[1])
    for index, (_reason, count) in enumerate(ordered):
        share = remaining // (len(ordered) - index)
        if count > share:
            quota = max(share, 1)
            return {reason: quota for reason, count in ordered[index:] if count > quota}
        remaining -= count
    return {}
