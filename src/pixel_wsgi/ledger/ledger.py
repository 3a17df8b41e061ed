"""The ledger's rules, applied through a :class:`~pixel_wsgi.storage.Storage`.

- A conversion is credited to the visit its attribution cookie names; the
  visit's campaign must belong to the advertiser the report is for.
- ``(advertiser, reference_id)`` identifies a conversion: reporting it again
  adds nothing, whatever values the repeat carries (the unauthenticated pixel
  never overwrites).
- Without a ``reference_id``, the same values from the same visit within the
  reload window are the same conversion (a reloaded thank-you page).
- ``parent_reference_id`` appends a correction row naming the row it corrects;
  it inherits the attribution of the conversion, and from the pixel it must come
  from the visit that made the conversion. A correction that changes nothing is
  not written (:mod:`~pixel_wsgi.ledger.corrections`).
- Every payout is computed, in exact decimals, when its row is written
  (:mod:`~pixel_wsgi.ledger.payouts`).
- The advertiser's server outranks every browser: once a server-side report
  (API, CSV, in-process) was applied to a conversion, pixels can no longer change
  it (``server_reported``); a server report equal to an earlier one from the same
  source changes nothing, whatever happened in between
  (:mod:`~pixel_wsgi.ledger.server_reports`).
- A second browser claim of a ``reference_id`` from another visit is kept, not
  paid (``contested_claim``); the server's report decides which claim wins the
  attribution (the others: ``contest_lost``). Until then the conversion is
  contested and browsers cannot change it (``contested_reference``)
  (:mod:`~pixel_wsgi.ledger.contests`).
- A signed pixel URL without ``reference_id`` counts once, whoever fires it.
- A campaign with a daily cap accepts at most that many browser-reported
  conversions per UTC day, counted inside the serialised write (so exactly,
  however many requests race); the others are rejected ``daily_cap_reached``.
- Whatever does not count is written to the rejection log with a reason
  (:mod:`~pixel_wsgi.ledger.refusals`).

The ledger knows nothing of HTTP, cookies or the outage spool: a store failure
raises :class:`~pixel_wsgi.errors.StorageError`, which
:class:`~pixel_wsgi.outage.spooling.SpoolingLedger` turns into a spool record.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import TYPE_CHECKING, NamedTuple

from ..clock import Clock, iso_utc, utc_day_start, utc_now
from ..errors import EventAlreadyApplied, NotFoundError, ReportRefused
from ..models import (
    Attribution,
    ClickContext,
    ConversionContext,
    Link,
    Reason,
    ReferenceClaim,
    SaleReport,
    ServerReport,
    Source,
    Transaction,
    VisitClaim,
)
from .catalog import Catalog
from .contests import MAX_OPEN_CLAIMS, server_spoke
from .corrections import corrected_values, insert_correction
from .fingerprints import reload_fingerprint
from .payouts import new_draft
from .refusals import (
    DUPLICATE_REFERENCE_DETAIL,
    SERVER_REPORTED_DETAIL,
    Params,
    write_rejection,
)
from .server_reports import ReportResult, apply_plan, plan_report
from .visits import visit_attribution

if TYPE_CHECKING:
    from ..storage.base import LedgerWriter, Storage

__all__ = ["DEFAULT_RELOAD_WINDOW", "ContextSource", "Ledger", "Outcome", "replaying"]

DEFAULT_RELOAD_WINDOW = timedelta(hours=24)

_Reject = Callable[[Reason, str], "Outcome"]
#: Makes a conversion's request context; called only when its advertiser keeps one.
ContextSource = Callable[[], "ConversionContext | None"]


class Outcome(NamedTuple):
    """What became of one report: a new row, or a rejection reason.

    ``spooled``: the store failed and the event went to the outage spool, for
    ``pixel-wsgi replay`` (:mod:`pixel_wsgi.outage`).
    """

    transaction_id: int | None = None
    reason: Reason | None = None
    spooled: bool = False

    @property
    def accepted(self) -> bool:
        return self.transaction_id is not None


class Ledger:
    """Applies the ledger's rules through a :class:`~pixel_wsgi.storage.Storage`.

    Every method raises :class:`~pixel_wsgi.errors.StorageError` when the store
    fails; the middleware's ledger (:class:`~pixel_wsgi.outage.spooling.SpoolingLedger`)
    keeps such events in the outage spool instead.

    :param storage: where rows are written.
    :param reload_window: how long the same values from the same visit, without
        a ``reference_id``, count as one conversion.
    :param clock: returns the current UTC time (tests pass a fixed one).
    """

    #: the spooled event a replay applies (see :func:`replaying`), claimed by every write
    _event_id: str | None = None

    def __init__(
        self,
        storage: Storage,
        *,
        reload_window: timedelta = DEFAULT_RELOAD_WINDOW,
        clock: Clock = utc_now,
    ) -> None:
        self.storage = storage
        self.catalog = Catalog(storage)
        self.reload_window = reload_window
        self.clock = clock

    def _now(self) -> str:
        return iso_utc(self.clock())

    @contextmanager
    def _writer(self) -> Iterator[LedgerWriter]:
        """A serialised write; during a replay it first claims the event, once ever."""
        with self.storage.writer() as writer:
            if self._event_id is not None and not writer.claim_event(self._event_id, self._now()):
                raise EventAlreadyApplied(self._event_id)
            yield writer

    # -- clicks ----------------------------------------------------------------------

    def record_visit(
        self,
        link: Link,
        *,
        ip_prefix: str | None,
        user_agent: str | None,
        click: ClickContext | None = None,
    ) -> int:
        """Record a click on a tracking link; return the visit id its cookie names.

        :param click: the sub ids and click ids its query carried, for delivery.
        """
        return self.storage.record_visit(
            link, ip_prefix=ip_prefix, user_agent=user_agent, created_at=self._now(), click=click
        )

    def restore_visit(
        self,
        link: Link,
        visit_id: int,
        *,
        ip_prefix: str | None,
        user_agent: str | None,
        click: ClickContext | None = None,
    ) -> None:
        """Store a click kept while the store was down under the (negative) visit id
        its cookie already carries; idempotent."""
        self.storage.record_visit(
            link,
            ip_prefix=ip_prefix,
            user_agent=user_agent,
            created_at=self._now(),
            visit_id=visit_id,
            click=click,
        )

    # -- the rejection log -----------------------------------------------------------

    def reject(
        self,
        *,
        advertiser_id: int | None,
        source: Source | str,
        reason: Reason,
        detail: str,
        params: Params = "",
        visit_id: int | None = None,
        reference_id: str | None = None,
    ) -> Outcome:
        """Record why a report or click did not count."""
        with self._writer() as writer:
            reject = self._rejecting(writer, advertiser_id, source, params, visit_id, reference_id)
            return reject(reason, detail)

    def _rejecting(
        self,
        writer: LedgerWriter,
        advertiser_id: int | None,
        source: Source | str,
        params: Params,
        visit_id: int | None,
        reference_id: str | None,
    ) -> _Reject:
        """How one report is refused inside ``writer``: with a reason and a detail."""

        def reject(reason: Reason, detail: str) -> Outcome:
            write_rejection(
                writer,
                self.clock(),
                advertiser_id,
                source,
                reason,
                detail,
                params,
                visit_id,
                reference_id,
            )
            return Outcome(reason=reason)

        return reject

    # -- browser-reported conversions ------------------------------------------------

    def record_web_conversion(
        self,
        *,
        advertiser_id: int,
        report: SaleReport,
        source: Source,
        visit: VisitClaim | None,
        cookie_problem: Reason | None = None,
        params: Params = "",
        once_key: str | None = None,
        conversion: ContextSource | None = None,
    ) -> Outcome:
        """Record a conversion reported by a visitor's browser.

        The pixel has already checked the hit's signature, and whether its
        advertiser requires one.

        :param visit: what a valid attribution cookie says, or None.
        :param cookie_problem: why there is no visit (no cookie, bad signature, ...).
        :param params: the redacted query kept with a rejection, or a callable that
            makes it (only called when the report is rejected).
        :param once_key: a validly signed pixel URL's identity, when it carries no
            ``reference_id``: such a URL counts once (``duplicate_signed_pixel``).
        :param conversion: makes the request's context; it is called, and the context
            stored with the new conversion's row, only when the advertiser keeps
            conversion contexts (read with the attribution: no query of its own). A
            correction keeps none: it shares its conversion's.
        """
        if (
            self._event_id is None
            and visit is not None
            and report.reference_id
            and report.parent_reference_id is None
        ):
            # The common case, a new conversion with its reference_id: the unique key
            # settles reloads and races, so one atomic append is enough.
            attribution = self.catalog.attribution(visit.link_id)
            # A capped campaign takes the serialised path below, which counts.
            if (
                attribution is not None
                and attribution.advertiser_id == advertiser_id
                and attribution.daily_cap is None
            ):
                draft = new_draft(attribution, visit.visit_id, report, source, "", self.clock())
                if conversion is not None and attribution.keeps_conversion_context:
                    draft.conversion = conversion()
                try:
                    transaction_id = self.storage.append_transaction(draft)
                except NotFoundError:
                    pass  # the visit is gone: the full path below records why
                else:
                    if transaction_id is not None:
                        return Outcome(transaction_id=transaction_id)
                    # The reference is taken: the serialised path below tells a reload
                    # from a contesting claim or a conversion the server has reported.
        reference_id = report.parent_reference_id or report.reference_id
        visit_id = None if visit is None else visit.visit_id
        with self._writer() as writer:
            reject = self._rejecting(writer, advertiser_id, source, params, visit_id, reference_id)
            if visit is None:
                if not writer.advertiser_exists(advertiser_id):
                    return reject(Reason.UNKNOWN_ADVERTISER, f"no advertiser {advertiser_id}")
                problem = cookie_problem or Reason.NO_ATTRIBUTION
                return reject(problem, "the visitor carries no valid attribution cookie")
            attribution = visit_attribution(writer, visit, self._now())
            if attribution is None:
                return reject(Reason.UNKNOWN_VISIT, f"visit {visit.visit_id} does not exist")
            if attribution.advertiser_id != advertiser_id:
                if not writer.advertiser_exists(advertiser_id):
                    return reject(Reason.UNKNOWN_ADVERTISER, f"no advertiser {advertiser_id}")
                return reject(
                    Reason.CROSS_ADVERTISER,
                    f"the visit belongs to a campaign of advertiser {attribution.advertiser_id}",
                )
            if report.parent_reference_id is not None:
                return self._correct_from_visit(
                    writer, attribution, visit.visit_id, report, source, reject
                )
            return self._record_new(
                writer, attribution, visit.visit_id, report, source, reject, once_key, conversion
            )

    def _record_new(
        self,
        writer: LedgerWriter,
        attribution: Attribution,
        visit_id: int,
        report: SaleReport,
        source: Source,
        reject: _Reject,
        once_key: str | None,
        conversion: ContextSource | None,
    ) -> Outcome:
        now = self.clock()
        if report.reference_id is not None:
            original = writer.find_original(attribution.advertiser_id, report.reference_id)
            if original is not None:
                return self._claim_again(
                    writer, original, attribution, visit_id, report, source, reject
                )
        fingerprint = ""
        # Without a reference id, only the visit can tell a reload from a new sale.
        if report.reference_id is None:
            fingerprint = reload_fingerprint(report)
            since = iso_utc(now - self.reload_window)
            if writer.has_recent_duplicate(attribution.advertiser_id, visit_id, fingerprint, since):
                return reject(
                    Reason.DUPLICATE_RELOAD,
                    "the same visit reported the same values within the reload window",
                )
        cap = attribution.daily_cap
        if cap is not None and cap <= writer.conversions_since(
            attribution.campaign_id, iso_utc(utc_day_start(now))
        ):
            return reject(
                Reason.DAILY_CAP_REACHED,
                f"campaign {attribution.campaign_id} reached its cap of {cap} conversions"
                " for this UTC day",
            )
        if once_key is not None and not writer.claim_event(once_key, iso_utc(now)):
            return reject(
                Reason.DUPLICATE_SIGNED_PIXEL,
                "this signed pixel URL has already been counted; sign each conversion's own"
                " URL (with its reference_id)",
            )
        draft = new_draft(attribution, visit_id, report, source, fingerprint, now)
        if conversion is not None and attribution.keeps_conversion_context:
            draft.conversion = conversion()
        transaction_id = writer.insert_transaction(draft)
        if transaction_id is None:  # taken since find_original(): never, writes are serialised
            return reject(Reason.DUPLICATE_REFERENCE_ID, DUPLICATE_REFERENCE_DETAIL)
        return Outcome(transaction_id=transaction_id)

    def _claim_again(
        self,
        writer: LedgerWriter,
        original: Transaction,
        attribution: Attribution,
        visit_id: int,
        report: SaleReport,
        source: Source,
        reject: _Reject,
    ) -> Outcome:
        """A browser reports a ``reference_id`` that a conversion already has."""
        reference_id = original.reference_id
        assert reference_id is not None
        # The same browser again (a reload, or its own report the server took up):
        # a duplicate, whatever else happened.
        if original.visit_id == visit_id:
            return reject(Reason.DUPLICATE_REFERENCE_ID, DUPLICATE_REFERENCE_DETAIL)
        if server_spoke(writer, original):
            return reject(Reason.SERVER_REPORTED, SERVER_REPORTED_DETAIL)
        claims = writer.open_claims(original.advertiser_id, reference_id)
        if any(c.visit_id == visit_id for c in claims):
            return reject(Reason.DUPLICATE_REFERENCE_ID, DUPLICATE_REFERENCE_DETAIL)
        if len(claims) >= MAX_OPEN_CLAIMS:
            return reject(
                Reason.DUPLICATE_REFERENCE_ID,
                f"this reference_id already has {len(claims)} contesting claims",
            )
        # A predictable order number may have been claimed first by someone else:
        # keep this claim too; the advertiser's server report decides.
        claimed = dataclasses.replace(report, personal_data={})
        writer.add_claim(
            ReferenceClaim(
                claim_id=0,
                advertiser_id=original.advertiser_id,
                reference_id=reference_id,
                visit_id=visit_id,
                campaign_id=attribution.campaign_id,
                publisher_id=attribution.publisher_id,
                source=source._value_,
                report=json.dumps(claimed.as_json(), separators=(",", ":")),
                created_at=self._now(),
            )
        )
        return reject(
            Reason.CONTESTED_CLAIM,
            "another visit reported this reference_id first; both claims are kept and"
            " the advertiser's server report decides which one is credited",
        )

    def _correct_from_visit(
        self,
        writer: LedgerWriter,
        attribution: Attribution,
        visit_id: int,
        report: SaleReport,
        source: Source,
        reject: _Reject,
    ) -> Outcome:
        assert report.parent_reference_id is not None
        original = writer.find_original(attribution.advertiser_id, report.parent_reference_id)
        if original is None:
            return reject(
                Reason.UNKNOWN_PARENT_REFERENCE, "no conversion has this parent_reference_id"
            )
        if server_spoke(writer, original):
            return reject(Reason.SERVER_REPORTED, SERVER_REPORTED_DETAIL)
        if writer.open_claims(original.advertiser_id, report.parent_reference_id):
            return reject(
                Reason.CONTESTED_REFERENCE,
                "other visits claim this conversion too; only the advertiser's server can"
                " change it now",
            )
        if original.visit_id != visit_id:
            return reject(
                Reason.PARENT_FROM_OTHER_VISIT,
                "only the visit that made a conversion may update it from the pixel",
            )
        current = writer.chain_end(original.transaction_id)
        corrected = corrected_values(current, report)
        if corrected is None:
            return reject(
                Reason.UNCHANGED_CORRECTION, "the update carries the conversion's current values"
            )
        return Outcome(
            transaction_id=insert_correction(
                writer, self.clock(), original, current, corrected, source
            )
        )

    # -- server-side reports -------------------------------------------------------

    def report(
        self,
        advertiser_id: int,
        server_report: ServerReport,
        *,
        source: Source = Source.API,
        visit: VisitClaim | None = None,
        params: Params = "",
    ) -> ReportResult:
        """Apply a report from the advertiser's own servers, idempotently.

        - A ``reference_id`` not seen before creates a conversion (``CREATED``),
          credited to ``campaign_id``/``publisher_id`` (the publisher must have a
          tracking link for the campaign) or, for an in-process call made while
          serving the visitor, to the visit of ``visit``.
        - A ``reference_id`` (or ``parent_reference_id``) of an earlier conversion,
          from the pixel or not, is tied to it and inherits its attribution: the
          same values again change nothing (``UNCHANGED``); other values append
          a correction (``CORRECTED``); ``reversal_reason`` voids it (payout 0.00).

        :raises ~pixel_wsgi.errors.ReportRefused: when the report cannot be applied;
            it is also written to the rejection log.
        :raises ~pixel_wsgi.errors.StorageError: when the store failed (then nothing
            was written; but for a SQLite store at ``synchronous="FULL"`` whose sync
            failed after the commit: the report is stored, not known durable, and a
            retry of it finds it there).
        """
        report = server_report.report
        with self._writer() as writer:
            now = self.clock()
            plan = plan_report(writer, now, advertiser_id, server_report, source, visit)
            if isinstance(plan, ReportRefused):
                write_rejection(
                    writer,
                    now,
                    advertiser_id,
                    source,
                    plan.reason,
                    plan.detail,
                    params,
                    None if visit is None else visit.visit_id,
                    report.parent_reference_id or report.reference_id,
                )
            else:
                result = apply_plan(writer, now, advertiser_id, plan, server_report, source)
        if isinstance(plan, ReportRefused):
            raise plan
        return result


def replaying(ledger: Ledger, event_id: str) -> Ledger:
    """The ledger as :mod:`pixel_wsgi.outage.replay` applies one spooled event with it.

    Every write of the returned ledger first claims ``event_id`` in the same
    transaction, so the event is applied at most once, ever; a write of an event
    applied before raises :class:`~pixel_wsgi.errors.EventAlreadyApplied` and
    writes nothing.
    """
    view = copy.copy(ledger)
    view._event_id = event_id
    return view
