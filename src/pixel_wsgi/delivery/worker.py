"""The delivery worker: queue new ledger rows, claim the due ones, send, settle.

One pass (:meth:`Worker.run_once`) goes over every active target:

1. **Queue.** The rows after the target's cursor, a page at a time, those the target
   concerns become pending deliveries and the cursor moves, atomically (two workers
   never queue a row twice). Recording a conversion wrote nothing for this.
2. **Claim.** Due pending rows are leased (PostgreSQL: ``FOR UPDATE SKIP LOCKED``
   first), oldest first; a correction only once its original was settled, and only
   on an active target. Two workers on two machines never hold one row (see Leases).
3. **Send and settle.** Rows the platform cannot take settle at once (``expired``,
   ``unsupported``; a correction whose original never reached the platform); the
   others go out in batches of the platform's size, each request settled as soon as
   its answer is read (a failed one once the next tells why, see below), so a worker
   killed mid-pass resends at most the request in flight, with the same idempotency
   key (the platforms count it once); a row it had tried and failed is tried again.

Failures: a request whose every row must wait opens the target's circuit breaker for
a backoff delay (full jitter, ``Retry-After`` honoured) when the target as a whole is
failing: no answer at all, a ``Retry-After``, or the next row failing too. The target
is then passed over until the delay is over, others go on, and its rows stay in
order. A row failing while the next one goes through waits on its own backoff, so
one bad row never holds the others up. Refused credentials pause the target
(``auth_failed``) until an operator resumes it. Rows still failing after
:data:`~.backoff.GIVE_UP_AFTER` are dead-lettered with the reason; a row no request
can be made of is dead-lettered at once.

Leases: a claim holds its rows for :attr:`Worker.lease`; before each request the
worker makes sure the lease outlasts the request's :func:`~.http.deadline`, renewing
it if not, and never sends a row it no longer holds. The machines' clocks must agree
(NTP): a lease is a time.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import random
import secrets as token_source
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from ..clock import iso_utc, parse_utc, utc_now
from ..errors import PixelError
from ..models import (
    Delivery,
    DeliveryAttempt,
    DeliveryStatus,
    Settlement,
    StoredTarget,
    TargetStatus,
    Transaction,
)
from ..storage import Storage
from . import http
from .backoff import GIVE_UP_AFTER, retry_delay
from .model import DeliveryItem, HttpRequest, HttpResponse, Outcome, OutcomeKind
from .outbox import open_target
from .secrets import SecretBox
from .targets import target_type
from .targets.base import TargetType
from .targets.payloads import masked

__all__ = ["PassReport", "Worker"]

logger = logging.getLogger("pixel_wsgi.delivery")

#: Ledger rows read per page when queueing.
QUEUE_PAGE = 1000
#: Rows claimed at once by a target that sends one row per request.
SINGLE_ROW_CLAIM = 20
#: How often the ledger id of a context's keeping age is read again.
_AGE_REFRESH = timedelta(minutes=10)
#: What the attempt log keeps of an answer's body.
_LOGGED_BODY = 2000
#: Seconds a lease must still run after a request's deadline when it is sent.
LEASE_MARGIN = 5.0

_SETTLED_BY_OUTCOME = {
    OutcomeKind.DELIVERED: DeliveryStatus.DELIVERED,
    OutcomeKind.DUPLICATE: DeliveryStatus.DUPLICATE,
    OutcomeKind.PERMANENT: DeliveryStatus.DEAD,
    OutcomeKind.UNSUPPORTED: DeliveryStatus.UNSUPPORTED,
    OutcomeKind.EXPIRED: DeliveryStatus.EXPIRED,
}


@dataclass
class PassReport:
    """What one pass did: rows per status they settled in, and requests sent."""

    settled: dict[DeliveryStatus, int] = field(default_factory=dict)
    requests: int = 0
    #: targets passed over this time: paused by the breaker or by refused credentials
    waiting_targets: int = 0

    def count(self, status: DeliveryStatus) -> None:
        self.settled[status] = self.settled.get(status, 0) + 1

    @property
    def busy(self) -> bool:
        return bool(self.requests or self.settled)


class _Stop(Exception):
    """The target must not be sent more this pass (breaker open, credentials refused)."""


class Worker:
    """Delivers the ledger rows of every target (or of ``target_ids``) of a store.

    :param box: opens the targets' credentials (built from the middleware's secret_key).
    :param clock: the current time (aware); tests move it to simulate hours.
    :param send: sends one request (:func:`pixel_wsgi.delivery.http.send` by default).
    :param lease: how long a claimed row stays with this worker before another may
        take it (a worker that died): longer than the requests of one claim take.
    :param stop: when set, the worker finishes the request in flight and returns.
    """

    def __init__(
        self,
        storage: Storage,
        box: SecretBox,
        *,
        clock: Callable[[], datetime] = utc_now,
        send: Callable[[HttpRequest], HttpResponse] | None = None,
        timeout: float = http.DEFAULT_TIMEOUT,
        lease: timedelta | None = None,
        target_ids: Sequence[int] | None = None,
        rng: random.Random | None = None,
        stop: threading.Event | None = None,
    ) -> None:
        self.storage = storage
        self.box = box
        self.clock = clock
        self.send = send or functools.partial(http.send, timeout=timeout)
        #: the most one request takes: the lease must outlast it when it is sent
        self.request_deadline = timedelta(seconds=http.deadline(timeout) + LEASE_MARGIN)
        self.lease = lease or timedelta(seconds=max(60.0, SINGLE_ROW_CLAIM * (timeout + 1)))
        self.target_ids = None if target_ids is None else set(target_ids)
        self.rng = rng or random.Random()
        self.stop = stop or threading.Event()
        # A target's type is kept between passes (an OAuth token lives an hour) until
        # the target changes.
        self._types: dict[int, tuple[str, TargetType]] = {}
        # Per advertiser, the ledger id through which contexts were forgotten.
        self._forgotten: dict[int, int] = {}
        # Per age, when the newest ledger id that old was read, and that id.
        self._ages: dict[timedelta, tuple[datetime, int]] = {}

    # -- passes -------------------------------------------------------------------

    def _targets(self) -> list[StoredTarget]:
        targets = self.storage.targets()
        if self.target_ids is not None:
            targets = [target for target in targets if target.id in self.target_ids]
        return targets

    def run_once(self) -> PassReport:
        """Send everything due now, target after target; return what was done."""
        report = PassReport()
        for stored in self._targets():
            if self.stop.is_set():
                break
            if stored.status is not TargetStatus.ACTIVE:
                continue
            if stored.resume_at is not None and parse_utc(stored.resume_at) > self.clock():
                report.waiting_targets += 1
                continue
            try:
                self._deliver(stored, report)
            except _Stop:
                report.waiting_targets += 1
            except Exception as exc:
                # One target's trouble (its credentials no longer open, the store
                # failing, a fault of ours) must not stop the others; the breaker
                # spaces the retries.
                if isinstance(exc, (PixelError, OSError)):
                    logger.warning("delivery to target %s failed: %s", stored.id, exc)
                else:
                    logger.exception("delivery to target %s failed", stored.id)
                with contextlib.suppress(PixelError, OSError):
                    self._open_breaker(stored, str(exc), retry_after=None)
                report.waiting_targets += 1
        self._forget_contexts()
        return report

    def _forget_contexts(self) -> None:
        """Drop the conversion contexts (cookies, user agent, IP prefix) that no target
        needs any more: those of rows every context-taking target of the advertiser has
        settled, and past the time a target keeps them for later corrections
        (:attr:`~.targets.base.TargetType.context_kept_for`). Kept only for as long as
        delivery needs them."""
        frontiers: dict[int, int] = {}
        for stored in self.storage.targets():
            kind = target_type(stored.kind)
            if not kind.needs_conversion_context:
                continue
            reached = self.storage.settled_through(stored.id)
            if kind.context_kept_for is not None:
                reached = min(reached, self._made_before(kind.context_kept_for))
            known = frontiers.get(stored.advertiser_id, reached)
            frontiers[stored.advertiser_id] = min(known, reached)
        for advertiser_id, through in frontiers.items():
            if through > self._forgotten.get(advertiser_id, 0):
                self.storage.forget_conversion_contexts(advertiser_id, through)
                self._forgotten[advertiser_id] = through

    def _made_before(self, age: timedelta) -> int:
        """The newest ledger id at least ``age`` old, read again every ten minutes (it
        reads the rows made since, and a pass runs every second)."""
        now = self.clock()
        known = self._ages.get(age)
        if known is None or now - known[0] >= _AGE_REFRESH:
            known = (now, self.storage.last_transaction_id(before=iso_utc(now - age)))
            self._ages[age] = known
        return known[1]

    def run(self, *, idle: float = 1.0, sleep: Callable[[float], object] | None = None) -> None:
        """Deliver until :attr:`stop` is set: a pass, then ``idle`` seconds' rest after
        a pass that found nothing to do."""
        wait = sleep or self.stop.wait
        while not self.stop.is_set():
            try:
                report = self.run_once()
            except PixelError as exc:  # the store is down: try again later
                logger.warning("delivery pass failed: %s", exc)
                report = PassReport()
            except Exception:  # a fault of ours: logged, and the loop goes on
                logger.exception("delivery pass failed")
                report = PassReport()
            if not report.busy and not self.stop.is_set():
                wait(idle)

    def plan(self) -> Iterator[tuple[StoredTarget, HttpRequest, str]]:
        """The requests a pass would send now, with their redacted text; sends nothing,
        claims nothing, asks no platform for a token (``pixel-wsgi deliver --dry-run``).

        Rows not queued yet are shown too; rows a pass would settle without a request
        (expired, unsupported, waiting) are not.
        """
        now = self.clock()
        for stored in self._targets():
            if stored.status is not TargetStatus.ACTIVE:
                continue
            kind = self._type(stored)
            due = self.storage.due_deliveries(stored.id, now=iso_utc(now), limit=QUEUE_PAGE)
            rows = [(d.transaction_id, d.original_transaction_id, d.attempts) for d in due]
            page = list(
                self.storage.transactions(
                    advertiser_id=stored.advertiser_id,
                    after_transaction_id=stored.cursor,
                    limit=QUEUE_PAGE,
                )
            )
            placed = self._placements(stored, kind, page)
            rows += [(transaction_id, origin, 0) for transaction_id, origin in placed]
            items = self._items(rows)
            sendable = [
                item for item in kind.sendable(items, now) if (kind.not_before(item) or now) <= now
            ]
            for wave in _waves(sendable):
                for request in kind.requests(wave, now):
                    yield stored, request, kind.redacted(request)

    # -- one target -------------------------------------------------------------------

    def _type(self, stored: StoredTarget) -> TargetType:
        known = self._types.get(stored.id)
        if known is not None and known[0] == stored.updated_at:
            return known[1]
        kind = target_type(stored.kind)(open_target(stored, self.box))
        self._types[stored.id] = (stored.updated_at, kind)
        return kind

    def _deliver(self, stored: StoredTarget, report: PassReport) -> None:
        kind = self._type(stored)
        self._queue(stored, kind)
        claim_size = kind.batch_limit if kind.batch_limit > 1 else SINGLE_ROW_CLAIM
        authorized = False
        while not self.stop.is_set():
            now = self.clock()
            token = token_source.token_hex(16)
            claimed = self.storage.claim_deliveries(
                stored.id,
                now=iso_utc(now),
                lease_until=iso_utc(now + self.lease),
                token=token,
                limit=claim_size,
            )
            if not claimed:
                return
            batch = _Batch(self, stored, kind, token, claimed, report, now + self.lease)
            sendable = batch.settle_unsendable(now)
            if not sendable:
                continue
            if not authorized:
                batch.authorize(now)
                authorized = True
            batch.send(sendable, now)

    def _queue(self, stored: StoredTarget, kind: TargetType) -> None:
        """Queue the rows after the target's cursor, a page at a time."""
        cursor = stored.cursor
        while True:
            page = list(
                self.storage.transactions(
                    advertiser_id=stored.advertiser_id,
                    after_transaction_id=cursor,
                    limit=QUEUE_PAGE,
                )
            )
            if not page:
                return
            rows = self._placements(stored, kind, page)
            new_cursor = page[-1].transaction_id
            if not self.storage.queue_deliveries(
                stored.id, cursor, new_cursor, rows, iso_utc(self.clock())
            ):
                # Another worker queued these first: go on from where it got to.
                now_stored = self.storage.target(stored.id)
                if now_stored is None:
                    return
                new_cursor = now_stored.cursor
            cursor = new_cursor

    def _placements(
        self, stored: StoredTarget, kind: TargetType, page: Sequence[Transaction]
    ) -> list[tuple[int, int]]:
        """The deliveries a page of new ledger rows makes for the target."""
        if not kind.follows_credit:
            return kind.placements(page, {}, {})
        wanted = sorted(
            {row.corrects_transaction_id for row in page if row.corrects_transaction_id}
        )
        corrected = self.storage.transactions_by_id(wanted)
        origins = self.storage.delivery_origins(stored.id, wanted)
        return kind.placements(page, corrected, origins)

    def _items(self, rows: Sequence[tuple[int, int, int]]) -> list[DeliveryItem]:
        """Delivery items for ``(transaction_id, original_id, attempts)``, in order."""
        wanted = {tid for tid, _, _ in rows} | {oid for _, oid, _ in rows}
        ledger = self.storage.transactions_by_id(sorted(wanted))
        contexts = self.storage.delivery_contexts([tid for tid, _, _ in rows])
        items = []
        for transaction_id, original_id, attempts in rows:
            row = ledger.get(transaction_id)
            original = ledger.get(original_id)
            if row is None or original is None:
                continue
            context = contexts.get(transaction_id)
            items.append(
                DeliveryItem(
                    row=row,
                    original=original,
                    click=None if context is None else context.click,
                    conversion=None if context is None else context.conversion,
                    personal={} if context is None else dict(context.personal),
                    attempts=attempts,
                    original_click=None if context is None else context.original_click,
                )
            )
        return items

    def _secrets(self, stored: StoredTarget) -> Sequence[str]:
        """The target's credentials, to mask them in what is logged (none if not opened)."""
        known = self._types.get(stored.id)
        return () if known is None else list(known[1].secrets.values())

    def _open_breaker(
        self, stored: StoredTarget, detail: str, retry_after: float | None
    ) -> datetime:
        current = self.storage.target(stored.id) or stored
        failures = current.failures + 1
        resume = self.clock() + retry_delay(failures, retry_after=retry_after, rng=self.rng)
        self.storage.set_target_breaker(stored.id, failures, iso_utc(resume))
        logger.info(
            "target %s: %s; trying again at %s (failure %d in a row)",
            stored.id,
            masked(detail, self._secrets(stored)),
            iso_utc(resume),
            failures,
        )
        return resume


def _waves(items: Sequence[DeliveryItem]) -> list[list[DeliveryItem]]:
    """``items`` as a pass sends them: a row of a chain only once the row before it has
    settled, so the first row of each chain, then the second of each, and so on (a
    correction never shares a request with its conversion). ``--dry-run`` prints its
    requests so."""
    waves: list[list[DeliveryItem]] = []
    depth: dict[int, int] = {}
    for item in items:
        chain = item.original.transaction_id
        wave = depth.get(chain, 0)
        depth[chain] = wave + 1
        if wave == len(waves):
            waves.append([])
        waves[wave].append(item)
    return waves


def _described(response: HttpResponse | None, error: str | None) -> str:
    if response is None:
        return f"no answer: {error}"
    body = response.body[:_LOGGED_BODY].decode("utf-8", "replace")
    return f"{response.status}\n{body}"


@dataclass
class _Answered:
    """One request sent, and what its answer means for each of its rows."""

    request: HttpRequest
    #: per row of the request, in its order
    outcomes: list[Outcome]
    attempt: DeliveryAttempt
    #: no answer came at all (refused, reset, timed out)
    unanswered: bool

    @property
    def whole_target(self) -> Outcome | None:
        """The outcome that concerns the target rather than its rows: refused
        credentials, or every row to be tried again; None otherwise."""
        every = self.outcomes
        auth = next((o for o in every if o.kind is OutcomeKind.AUTH), None)
        if auth is not None:
            return auth
        if every and all(o.kind is OutcomeKind.RETRY for o in every):
            return every[0]
        return None


class _Batch:
    """The rows one claim leased, from their claim to their settlement."""

    def __init__(
        self,
        worker: Worker,
        stored: StoredTarget,
        kind: TargetType,
        token: str,
        claimed: list[Delivery],
        report: PassReport,
        lease_until: datetime,
    ) -> None:
        self.worker = worker
        self.storage = worker.storage
        self.stored = stored
        self.kind = kind
        self.token = token
        self.claimed = {delivery.transaction_id: delivery for delivery in claimed}
        self.report = report
        self.lease_until = lease_until
        self.breaker_closed = not (stored.failures or stored.resume_at)

    def _settle(
        self, settlements: list[Settlement], attempts: Sequence[DeliveryAttempt] = ()
    ) -> None:
        self.storage.settle_deliveries(self.stored.id, self.token, settlements, attempts)
        for settlement in settlements:
            self.claimed.pop(settlement.transaction_id, None)
            if settlement.status is not DeliveryStatus.PENDING:
                self.report.count(settlement.status)

    def _final(
        self, delivery: Delivery, status: DeliveryStatus, detail: str, now: datetime
    ) -> Settlement:
        return Settlement(delivery.transaction_id, status, delivery.attempts, iso_utc(now), detail)

    def release(self, deliveries: Sequence[Delivery] | None = None) -> None:
        """Give back the rows not sent (all, or ``deliveries``), as they were (still due)."""
        given = list(self.claimed.values()) if deliveries is None else deliveries
        if given:
            self._settle(
                [
                    Settlement(d.transaction_id, d.status, d.attempts, d.next_attempt_at, d.detail)
                    for d in given
                ]
            )

    def settle_unsendable(self, now: datetime) -> list[DeliveryItem]:
        """Settle what no request will carry; the items to send, in order."""
        deliveries = list(self.claimed.values())
        items = self.worker._items(
            [(d.transaction_id, d.original_transaction_id, d.attempts) for d in deliveries]
        )
        by_id = {item.row.transaction_id: item for item in items}
        settlements, sendable = [], []
        for delivery in deliveries:
            item = by_id.get(delivery.transaction_id)
            if item is None:
                detail = "the ledger row is gone"
                settlements.append(self._final(delivery, DeliveryStatus.DEAD, detail, now))
                continue
            verdict = self._verdict(delivery, item, now)
            if verdict is None:
                sendable.append(item)
            else:
                settlements.append(verdict)
        if settlements:
            self._settle(settlements)
        return sendable

    def _verdict(self, delivery: Delivery, item: DeliveryItem, now: datetime) -> Settlement | None:
        """How a row settles without being sent, or None to send it."""
        if delivery.transaction_id != delivery.original_transaction_id:
            original = delivery.original_status
            if original is None:
                detail = "its conversion was never queued for this target (added after it)"
                return self._final(delivery, DeliveryStatus.UNSUPPORTED, detail, now)
            if not original.reached:
                detail = f"its conversion did not reach the target ({original.value})"
                return self._final(delivery, DeliveryStatus.UNSUPPORTED, detail, now)
            if delivery.superseded_by is not None:
                detail = (
                    f"superseded: row {delivery.superseded_by} of its chain reached the target"
                    " first, and this older one would undo it"
                )
                return self._final(delivery, DeliveryStatus.UNSUPPORTED, detail, now)
        if self.kind.expired(item, now):
            age = self.kind.max_event_age
            detail = f"past the platform's deadline ({age} after the row was made)"
            return self._final(delivery, DeliveryStatus.EXPIRED, detail, now)
        reason = self.kind.unsupported(item)
        if reason is not None:
            return self._final(delivery, DeliveryStatus.UNSUPPORTED, reason, now)
        earliest = self.kind.not_before(item)
        if earliest is not None and earliest > now:
            detail = f"the platform takes it from {iso_utc(earliest)}"
            return Settlement(
                delivery.transaction_id,
                DeliveryStatus.PENDING,
                delivery.attempts,
                iso_utc(earliest),
                detail,
            )
        return None

    def authorize(self, now: datetime) -> None:
        outcome = self.kind.authorize(self.worker.send, now)
        if outcome is None:
            return
        self._stop(outcome)

    def _stop(self, outcome: Outcome, *, breaker_open: bool = False) -> None:
        """Give the rows back and stop sending to the target: paused for refused
        credentials, else behind its open breaker."""
        self.release()
        if breaker_open:
            pass
        elif outcome.kind is OutcomeKind.AUTH:
            # The platform's answer may echo what it refused: the dashboard and
            # /pixels/health show this detail.
            detail = masked(outcome.detail, self.kind.secrets.values())
            self.storage.set_target_status(self.stored.id, TargetStatus.AUTH_FAILED, detail)
            logger.warning("target %s paused: %s", self.stored.id, detail)
        else:
            self.worker._open_breaker(self.stored, outcome.detail, outcome.retry_after)
        raise _Stop

    # -- sending ----------------------------------------------------------------------

    def send(self, items: list[DeliveryItem], now: datetime) -> None:
        """Send ``items`` request after request, each settled as its answer is read.

        A request whose every row must wait is held back, leased, until the next one
        tells a failing row (that one goes through: its rows wait on their own
        backoff) from a failing target (it fails too: the breaker opens, and every
        held row waits for it, in order).
        """
        held: list[_Answered] = []
        for request in self._requests(items):
            if self.worker.stop.is_set():
                break
            if not self._hold_lease(request):
                continue
            answered = self._send_one(request)
            whole = answered.whole_target
            if whole is None:
                self._close_breaker()
                self._settle_answered([*held, answered], resume=None)
                held = []
            elif whole.kind is OutcomeKind.AUTH:
                self._settle_answered([*held, answered], resume=None)
                self._stop(whole)
            elif answered.unanswered or whole.retry_after is not None or held:
                resume = self.worker._open_breaker(self.stored, whole.detail, whole.retry_after)
                self._settle_answered([*held, answered], resume=resume)
                self._stop(whole, breaker_open=True)
            else:
                held.append(answered)
        # A failing row with no row after it to tell: its own backoff.
        self._settle_answered(held, resume=None)
        if self.worker.stop.is_set():
            self.release()
        elif self.claimed:  # a row no request carried would come back forever
            detail = "the target built no request for it"
            self._settle(
                [self._final(d, DeliveryStatus.DEAD, detail, now) for d in self.claimed.values()]
            )

    def _requests(self, items: list[DeliveryItem]) -> Iterator[HttpRequest]:
        """The requests for ``items``, each made as late as possible (a request carries
        the time it was made: Standard Webhooks' receivers allow five minutes). A row
        no request can be made of is dead-lettered with the reason."""
        if self.kind.batch_limit > 1:
            try:
                made = self.kind.requests(items, self.worker.clock())
            except Exception:  # one row at a time, to tell which one
                made = None
            if made is not None:
                yield from made
                return
        for item in items:
            try:
                one = self.kind.requests([item], self.worker.clock())
            except Exception as exc:
                logger.exception("target %s: no request for row %s", self.stored.id, item)
                delivery = self.claimed.get(item.row.transaction_id)
                if delivery is not None:
                    detail = f"no request can be made of it: {type(exc).__name__}: {exc}"
                    detail = masked(detail, self.kind.secrets.values())[:500]
                    self._settle(
                        [self._final(delivery, DeliveryStatus.DEAD, detail, self.worker.clock())]
                    )
                continue
            yield from one

    def _hold_lease(self, request: HttpRequest) -> bool:
        """Whether the rows of ``request`` are still this worker's until the request's
        deadline has passed (the lease is renewed when it would end before)."""
        now = self.worker.clock()
        if now + self.worker.request_deadline >= self.lease_until:
            lease_until = now + self.worker.lease
            held = self.storage.renew_lease(
                self.stored.id, self.token, lease_until=iso_utc(lease_until)
            )
            self.lease_until = lease_until
            for transaction_id in set(self.claimed) - held:
                del self.claimed[transaction_id]  # another worker has it now
        if all(tid in self.claimed for tid in request.transaction_ids):
            return True
        # Part of it is another worker's now: give the rest back, unsent.
        self.release([self.claimed[t] for t in request.transaction_ids if t in self.claimed])
        return False

    def _close_breaker(self) -> None:
        if not self.breaker_closed:
            self.storage.set_target_breaker(self.stored.id, 0, None)
            self.breaker_closed = True

    def _send_one(self, request: HttpRequest) -> _Answered:
        started = time.monotonic()
        attempted_at = self.worker.clock()
        response: HttpResponse | None
        try:
            response, error = self.worker.send(request), None
        except Exception as exc:  # no answer (OSError), or a fault of a custom sender
            response, error = (
                None,
                f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__,
            )
        outcomes = self.kind.classify(request, response, error)
        self.report.requests += 1
        every = [
            outcomes.get(tid, Outcome(OutcomeKind.RETRY, "no outcome for this row"))
            for tid in request.transaction_ids
        ]
        kinds = {outcome.kind for outcome in every}
        secrets = self.kind.secrets.values()
        attempt = DeliveryAttempt(
            target_id=self.stored.id,
            transaction_ids=request.transaction_ids,
            attempted_at=iso_utc(attempted_at),
            outcome=kinds.pop().value if len(kinds) == 1 else "mixed",
            detail=masked("; ".join(sorted({o.detail for o in every})), secrets)[:500],
            request=self.kind.redacted(request),
            response=masked(_described(response, error), secrets),
            duration_ms=int((time.monotonic() - started) * 1000),
        )
        return _Answered(request, every, attempt, unanswered=response is None)

    def _settle_answered(self, answers: Sequence[_Answered], resume: datetime | None) -> None:
        """Settle the rows of ``answers`` with their attempts; ``resume``: when the
        breaker lets the target be tried again (the rows that must wait, wait for it)."""
        if not answers:
            return
        now = self.worker.clock()
        settlements = [
            self._after(delivery, outcome, now, resume)
            for answered in answers
            for tid, outcome in zip(
                answered.request.transaction_ids, answered.outcomes, strict=True
            )
            if (delivery := self.claimed.get(tid)) is not None
        ]
        self._settle(settlements, [answered.attempt for answered in answers])

    def _after(
        self, delivery: Delivery, outcome: Outcome, now: datetime, resume: datetime | None
    ) -> Settlement:
        attempts = delivery.attempts + 1
        detail = masked(outcome.detail, self.kind.secrets.values())
        status = _SETTLED_BY_OUTCOME.get(outcome.kind)
        if status is not None:
            return Settlement(delivery.transaction_id, status, attempts, iso_utc(now), detail)
        if outcome.kind is OutcomeKind.AUTH:  # sent again once the target is resumed
            return Settlement(
                delivery.transaction_id, DeliveryStatus.PENDING, attempts, iso_utc(now), detail
            )
        if now - parse_utc(delivery.created_at) >= GIVE_UP_AFTER:
            days = GIVE_UP_AFTER.days
            detail = f"gave up after {attempts} attempts over {days} days: {detail}"
            return Settlement(
                delivery.transaction_id, DeliveryStatus.DEAD, attempts, iso_utc(now), detail
            )
        if resume is None:
            resume = now + retry_delay(
                attempts, retry_after=outcome.retry_after, rng=self.worker.rng
            )
        return Settlement(
            delivery.transaction_id, DeliveryStatus.PENDING, attempts, iso_utc(resume), detail
        )
