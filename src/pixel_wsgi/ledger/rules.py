"""The domain rules of the ledger, independent of any storage backend.

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
  not written.
- Every payout is computed, in exact decimals, when its row is written.
- The advertiser's server outranks every browser: once a server-side report
  (API, CSV, in-process) was applied to a conversion, pixels can no longer change
  it (``server_reported``); a server report equal to an earlier one from the same
  source changes nothing, whatever happened in between.
- A second browser claim of a ``reference_id`` from another visit is kept, not
  paid (``contested_claim``); the server's report decides which claim wins the
  attribution (the others: ``contest_lost``). Until then the conversion is
  contested and browsers cannot change it (``contested_reference``).
- A signed pixel URL without ``reference_id`` counts once, whoever fires it.
- A campaign with a daily cap accepts at most that many browser-reported
  conversions per UTC day, counted inside the serialised write (so exactly,
  however many requests race); the others are rejected ``daily_cap_reached``.
- Whatever does not count is written to the rejection log with a reason.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import json
import logging
import secrets
from collections.abc import Callable
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, NamedTuple

from ..attribution.cookie import VisitClaim
from ..clock import Clock, iso_utc, utc_now
from ..endpoints.filters import utc_day_start
from ..errors import NotFoundError, PixelError, RecordRefused, StorageError
from ..models import (
    Attribution,
    Link,
    PayoutKind,
    PayoutRule,
    Reason,
    ReferenceClaim,
    RejectionDraft,
    SaleReport,
    ServerReport,
    Source,
    Transaction,
    TransactionDraft,
)
from ..money import ZERO, percent_of, to_cents
from ..outage.records import decode_report, encode_report, encode_server_report, encode_visit
from ..outage.spool import Spool, SpoolError, SpoolFull
from ..storage.base import LedgerWriter, Storage
from .catalog import Catalog

logger = logging.getLogger("pixel_wsgi")

DEFAULT_RELOAD_WINDOW = timedelta(hours=24)
_DUPLICATE_REFERENCE_DETAIL = (
    "this reference_id was already reported; use parent_reference_id to update it"
)
_SERVER_REPORTED_DETAIL = (
    "the advertiser's server has reported this conversion; browser pixels can no longer change it"
)
#: How many other visits may contest one reference_id before further claims are duplicates.
MAX_OPEN_CLAIMS = 8
_BROWSER_SOURCES = frozenset({Source.PIXEL.value, Source.LEGACY_PIXEL.value})
# The values a server report can confirm a browser claim by.
_CONFIRMABLE_FIELDS = ("sale_amount", "sale_currency", "reason_code", "sku_list", "quantity_list")

#: Rejections still worth a spool record while the store is down (evidence of fraud
#: about a real advertiser), within 1/REJECTION_SHARE of the spool; others are counted.
SPOOLED_REJECTIONS = frozenset(
    {Reason.COOKIE_STUFFING, Reason.CROSS_SITE_PIXEL, Reason.INVALID_SIGNATURE, Reason.TOO_FAST}
)
REJECTION_SHARE = 16

# The redacted query kept with a rejection, or a callable that makes it on demand:
# the accepted path never pays for redaction.
Params = str | Callable[[], str]


class Outcome(NamedTuple):
    """What became of one report: a new row, or a rejection reason.

    ``spooled``: the store failed and the event went to the outage spool, for
    ``pixel-wsgi replay``. Neither a row nor a reason nor spooled: a replayed event
    that had been applied before.
    """

    transaction_id: int | None = None
    reason: Reason | None = None
    spooled: bool = False

    @property
    def accepted(self) -> bool:
        return self.transaction_id is not None


class ReportStatus(str, enum.Enum):
    """What a server-side report did to the ledger."""

    CREATED = "created"
    UNCHANGED = "unchanged"
    CORRECTED = "corrected"
    #: the store failed; the report is in the outage spool, to be applied by a replay
    SPOOLED = "spooled"


class ReportResult(NamedTuple):
    """A server-side report's effect and the conversion's current state after it.

    ``transaction`` is None only for ``SPOOLED``, which gives the spooled ``event_id``.
    """

    status: ReportStatus
    transaction: Transaction | None
    event_id: str | None = None


class ReportRefused(PixelError):
    """A server-side report that cannot be applied (it is in the rejection log).

    :param status: the HTTP status the API answers with (400, 404, 409, 422).
    """

    def __init__(
        self, reason: Reason, detail: str, *, field: str | None = None, status: int = 422
    ) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail
        self.field = field
        self.status = status


class EventAlreadyApplied(PixelError):
    """A replayed event was applied to the store before: nothing was written."""


class _Plan(NamedTuple):
    status: ReportStatus
    attribution: Attribution | None = None
    visit_id: int | None = None
    original: Transaction | None = None
    current: Transaction | None = None
    values: SaleReport | None = None
    #: the report's digest, remembered once applied (None: already seen)
    report_hash: str | None = None
    #: the contest this report decides: every open claim, and the winner among them
    #: (None when the conversion's current holder won)
    decided: tuple[list[ReferenceClaim], ReferenceClaim | None] | None = None


def compute_payout(
    rule: PayoutRule, sale_amount: Decimal | None, reason_code: str | None, sale_currency: str
) -> tuple[Decimal, str]:
    """The publisher's payout for one conversion, and its currency.

    A campaign restricted to some reason codes pays nothing for the others; a
    percentage of no sale is nothing. Rounded half-up to the cent, in pixel-wsgi's
    own decimal context (:mod:`pixel_wsgi.money`), whatever the host thread's is.
    """
    if rule.kind is PayoutKind.PERCENT:
        currency = sale_currency
        if rule.reason_codes and reason_code not in rule.reason_codes:
            return ZERO, currency
        amount = sale_amount if sale_amount is not None else ZERO
        return percent_of(amount, rule.value), currency
    if rule.reason_codes and reason_code not in rule.reason_codes:
        return ZERO, rule.currency
    if sale_amount is not None and sale_amount < 0:
        # A refund reported as a negative sale (server side only) claws back a
        # percentage; it never earns a fixed payout.
        return ZERO, rule.currency
    return to_cents(rule.value), rule.currency


def reload_fingerprint(report: SaleReport) -> str:
    """A digest of the reported values, to recognise a reload without a reference id."""
    canonical = json.dumps(
        [
            None if report.sale_amount is None else str(report.sale_amount),
            report.sale_currency,
            report.reason_code,
            report.sku_list,
            report.quantity_list,
            report.external_data,
            sorted(report.custom_data.items()),
        ],
        separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


class Ledger:
    """Applies the ledger's rules through a :class:`~pixel_wsgi.storage.Storage`.

    :param storage: where rows are written.
    :param reload_window: how long the same values from the same visit, without
        a ``reference_id``, count as one conversion.
    :param clock: returns the current UTC time (tests pass a fixed one).
    """

    def __init__(
        self,
        storage: Storage,
        *,
        reload_window: timedelta = DEFAULT_RELOAD_WINDOW,
        clock: Clock = utc_now,
        spool: Spool | None = None,
    ) -> None:
        self.storage = storage
        self.catalog = Catalog(storage)
        self.reload_window = reload_window
        self.clock = clock
        self.spool = spool

    def _now(self) -> str:
        return iso_utc(self.clock())

    def record_visit(
        self,
        link: Link,
        *,
        ip_prefix: str | None,
        user_agent: str | None,
        visit_id: int | None = None,
    ) -> int:
        """Record a click on a tracking link; return the visit id its cookie names.

        When the store fails, the click goes to the spool under a new negative
        visit id (stored ids are positive), so the visitor's cookie still credits
        the link, and a conversion arriving before the replay stores the visit.

        :param visit_id: a spooled click's id, when a replay applies it.
        """
        try:
            return self.storage.record_visit(
                link,
                ip_prefix=ip_prefix,
                user_agent=user_agent,
                created_at=self._now(),
                visit_id=visit_id,
            )
        except StorageError as failure:
            if visit_id is not None:
                raise
            spooled_id = -(secrets.randbits(62) + 1)
            self._spool(
                failure,
                "visit",
                link_id=link.id,
                visit_id=spooled_id,
                ip_prefix=ip_prefix,
                user_agent=user_agent,
            )
            return spooled_id

    def _visit_attribution(self, writer: LedgerWriter, visit: VisitClaim) -> Attribution | None:
        """The attribution of a cookie's visit; a spooled click's visit is stored first."""
        attribution = writer.attribution(visit.visit_id)
        # A negative id: the click was spooled while the store was down. Its signed
        # cookie is the record of the visit until the replay stores it.
        if (
            attribution is None
            and visit.visit_id < 0
            and writer.ensure_visit(visit.visit_id, visit.link_id, self._now())
        ):
            attribution = writer.attribution(visit.visit_id)
        return attribution

    def _spool(self, failure: StorageError, kind: str, **fields: Any) -> str:
        """Keep an event the store refused in the spool; raise if that fails too.

        A record the store refused for its data (:class:`RecordRefused`) is not
        spooled: a replay could not store it either.
        """
        if self.spool is None or isinstance(failure, RecordRefused):
            raise failure
        try:
            event_id = self.spool.append(kind, at=self._now(), **fields)
        except SpoolFull:
            if fields.get("share", 1) == 1:
                self.spool.lost(f"{kind}: the spool is full")  # said once as it filled
            raise
        except SpoolError as exc:
            self.spool.lost(f"{kind}: {exc}")  # at most a line a minute, not one a hit
            raise
        logger.error("pixel-wsgi store failed (%s); %s event %s spooled", failure, kind, event_id)
        return event_id

    def _skip(self, failure: StorageError, why: Reason) -> None:
        """Count, rather than spool, an event that could not count anyway."""
        if self.spool is None or isinstance(failure, RecordRefused):
            raise failure
        self.spool.skip(why.value)

    def _cannot_count(self, advertiser_id: int | None, visit: VisitClaim | None) -> Reason | None:
        """Why an event the store failed on could never count, as far as can be read."""
        if advertiser_id is None:
            return Reason.UNKNOWN_ADVERTISER
        try:
            if self.catalog.advertiser(advertiser_id) is None:
                return Reason.UNKNOWN_ADVERTISER
            attribution = None if visit is None else self.catalog.attribution(visit.link_id)
        except StorageError:
            return None  # cannot tell while the store is down: spooled, under the cap
        if visit is not None and attribution is None:
            return Reason.UNKNOWN_VISIT
        if attribution is not None and attribution.advertiser_id != advertiser_id:
            return Reason.CROSS_ADVERTISER
        return None

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
        event_id: str | None = None,
    ) -> Outcome:
        """Record why a report or click did not count.

        :param event_id: a spooled event's id, when a replay applies it (at most once).
        """
        try:
            with self.storage.writer() as writer:
                if event_id is not None and not writer.claim_event(event_id, self._now()):
                    return Outcome()
                return self._reject(
                    writer, advertiser_id, source, reason, detail, params, visit_id, reference_id
                )
        except StorageError as failure:
            if event_id is not None:
                raise
            if reason not in SPOOLED_REJECTIONS or self._cannot_count(advertiser_id, None):
                self._skip(failure, reason)
                return Outcome(reason=reason)
            try:
                self._spool(
                    failure,
                    "rejection",
                    share=REJECTION_SHARE,
                    advertiser_id=advertiser_id,
                    source=source.value if isinstance(source, Source) else source,
                    reason=reason.value,
                    detail=detail,
                    params=params if isinstance(params, str) else params(),
                    visit_id=visit_id,
                    reference_id=reference_id,
                )
            except SpoolFull:
                self._skip(failure, reason)  # its share of the spool is used
                return Outcome(reason=reason)
            return Outcome(reason=reason, spooled=True)

    def _reject(
        self,
        writer: LedgerWriter,
        advertiser_id: int | None,
        source: Source | str,
        reason: Reason,
        detail: str,
        params: Params,
        visit_id: int | None,
        reference_id: str | None,
    ) -> Outcome:
        writer.insert_rejection(
            RejectionDraft(
                advertiser_id=advertiser_id,
                source=source.value if isinstance(source, Source) else source,
                reason=reason,
                detail=detail,
                visit_id=visit_id,
                reference_id=reference_id,
                params=params if isinstance(params, str) else params(),
                created_at=iso_utc(self.clock()),
            )
        )
        return Outcome(reason=reason)

    def record_web_conversion(
        self,
        *,
        advertiser_id: int,
        report: SaleReport,
        source: Source,
        visit: VisitClaim | None,
        cookie_problem: Reason | None = None,
        params: Params = "",
        event_id: str | None = None,
        check_signed_requirement: bool = False,
        once_key: str | None = None,
    ) -> Outcome:
        """Record a conversion reported by a visitor's browser.

        When the store fails, the report goes to the spool (``Outcome.spooled``).

        :param visit: what a valid attribution cookie says, or None.
        :param cookie_problem: why there is no visit (no cookie, bad signature, ...).
        :param params: the redacted query kept with a rejection, or a callable that
            makes it (only called when the report is rejected).
        :param event_id: a spooled event's id, when a replay applies it (at most once).
        :param check_signed_requirement: the hit is unsigned and the pixel could not
            read whether the advertiser requires signed pixels: refuse it here if so.
        :param once_key: a validly signed pixel URL's identity, when it carries no
            ``reference_id``: such a URL counts once (``duplicate_signed_pixel``).
        :raises StorageError: only when neither the store nor the spool took it.
        """
        try:
            if check_signed_requirement and self.catalog.requires_signed_pixels(advertiser_id):
                return self.reject(
                    advertiser_id=advertiser_id,
                    source=source,
                    reason=Reason.UNSIGNED_PIXEL,
                    detail=f"advertiser {advertiser_id} accepts only signed pixels; this one"
                    " is not",
                    params=params,
                    visit_id=None if visit is None else visit.visit_id,
                    reference_id=report.parent_reference_id or report.reference_id,
                    event_id=event_id,
                )
            return self._record_web_conversion(
                advertiser_id, report, source, visit, cookie_problem, params, event_id, once_key
            )
        except StorageError as failure:
            if event_id is not None:
                raise
            why = (
                (cookie_problem or Reason.NO_ATTRIBUTION)
                if visit is None
                else self._cannot_count(advertiser_id, visit)
            )
            if why is not None:
                self._skip(failure, why)
                return Outcome(reason=why)
            self._spool(
                failure,
                "web_conversion",
                erasable=(advertiser_id, report.parent_reference_id or report.reference_id),
                advertiser_id=advertiser_id,
                report=encode_report(report),
                source=source.value,
                visit=encode_visit(visit),
                cookie_problem=None if cookie_problem is None else cookie_problem.value,
                params=params if isinstance(params, str) else params(),
                check_signed_requirement=check_signed_requirement,
                once_key=once_key,
            )
            return Outcome(spooled=True)

    def _record_web_conversion(
        self,
        advertiser_id: int,
        report: SaleReport,
        source: Source,
        visit: VisitClaim | None,
        cookie_problem: Reason | None,
        params: Params,
        event_id: str | None,
        once_key: str | None,
    ) -> Outcome:
        visit_id = None if visit is None else visit.visit_id
        if (
            event_id is None
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
                draft = self._new_draft(
                    attribution, visit.visit_id, report, source, "", self.clock()
                )
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
        with self.storage.writer() as writer:

            def reject(reason: Reason, detail: str) -> Outcome:
                return self._reject(
                    writer, advertiser_id, source, reason, detail, params, visit_id, reference_id
                )

            if event_id is not None and not writer.claim_event(event_id, self._now()):
                return Outcome()
            if visit is None:
                if not writer.advertiser_exists(advertiser_id):
                    return reject(Reason.UNKNOWN_ADVERTISER, f"no advertiser {advertiser_id}")
                problem = cookie_problem or Reason.NO_ATTRIBUTION
                return reject(problem, "the visitor carries no valid attribution cookie")
            visit_id = visit.visit_id
            attribution = self._visit_attribution(writer, visit)
            if attribution is None:
                return reject(Reason.UNKNOWN_VISIT, f"visit {visit_id} does not exist")
            if attribution.advertiser_id != advertiser_id:
                if not writer.advertiser_exists(advertiser_id):
                    return reject(Reason.UNKNOWN_ADVERTISER, f"no advertiser {advertiser_id}")
                return reject(
                    Reason.CROSS_ADVERTISER,
                    f"the visit belongs to a campaign of advertiser {attribution.advertiser_id}",
                )
            if report.parent_reference_id is not None:
                return self._correct_from_visit(
                    writer, attribution, visit_id, report, source, reject
                )
            return self._record_new(writer, attribution, visit_id, report, source, reject, once_key)

    def _new_draft(
        self,
        attribution: Attribution,
        visit_id: int | None,
        report: SaleReport,
        source: Source,
        fingerprint: str,
        now: datetime,
    ) -> TransactionDraft:
        payout, payout_currency = compute_payout(
            attribution.payout, report.sale_amount, report.reason_code, report.sale_currency
        )
        return TransactionDraft(
            advertiser_id=attribution.advertiser_id,
            campaign_id=attribution.campaign_id,
            publisher_id=attribution.publisher_id,
            visit_id=visit_id,
            source=source._value_,  # the documented raw value, without .value's descriptor
            reference_id=report.reference_id,
            corrects_transaction_id=None,
            original_transaction_id=None,
            sale_amount=report.sale_amount,
            sale_currency=report.sale_currency,
            reason_code=report.reason_code,
            sku_list=report.sku_list,
            quantity_list=report.quantity_list,
            external_data=report.external_data,
            custom_data=report.custom_data,
            payout=payout,
            payout_currency=payout_currency,
            fingerprint=fingerprint,
            created_at=iso_utc(now),
            personal_data=report.personal_data,
        )

    def _record_new(
        self,
        writer: LedgerWriter,
        attribution: Attribution,
        visit_id: int,
        report: SaleReport,
        source: Source,
        reject: Callable[[Reason, str], Outcome],
        once_key: str | None,
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
        transaction_id = writer.insert_transaction(
            self._new_draft(attribution, visit_id, report, source, fingerprint, now)
        )
        if transaction_id is None:  # taken since find_original(): never, writes are serialised
            return reject(Reason.DUPLICATE_REFERENCE_ID, _DUPLICATE_REFERENCE_DETAIL)
        return Outcome(transaction_id=transaction_id)

    def _claim_again(
        self,
        writer: LedgerWriter,
        original: Transaction,
        attribution: Attribution,
        visit_id: int,
        report: SaleReport,
        source: Source,
        reject: Callable[[Reason, str], Outcome],
    ) -> Outcome:
        """A browser reports a ``reference_id`` that a conversion already has."""
        reference_id = original.reference_id
        assert reference_id is not None
        # The same browser again (a reload, or its own report the server took up):
        # a duplicate, whatever else happened.
        if original.visit_id == visit_id:
            return reject(Reason.DUPLICATE_REFERENCE_ID, _DUPLICATE_REFERENCE_DETAIL)
        if _server_spoke(writer, original):
            return reject(Reason.SERVER_REPORTED, _SERVER_REPORTED_DETAIL)
        claims = writer.open_claims(original.advertiser_id, reference_id)
        if any(c.visit_id == visit_id for c in claims):
            return reject(Reason.DUPLICATE_REFERENCE_ID, _DUPLICATE_REFERENCE_DETAIL)
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
                report=json.dumps(encode_report(claimed), separators=(",", ":")),
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
        reject: Callable[[Reason, str], Outcome],
    ) -> Outcome:
        assert report.parent_reference_id is not None
        original = writer.find_original(attribution.advertiser_id, report.parent_reference_id)
        if original is None:
            return reject(
                Reason.UNKNOWN_PARENT_REFERENCE, "no conversion has this parent_reference_id"
            )
        if _server_spoke(writer, original):
            return reject(Reason.SERVER_REPORTED, _SERVER_REPORTED_DETAIL)
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
        return self._append_correction(writer, original, report, source, reject)

    def _append_correction(
        self,
        writer: LedgerWriter,
        original: Transaction,
        report: SaleReport,
        source: Source,
        reject: Callable[[Reason, str], Outcome],
    ) -> Outcome:
        current = writer.chain_end(original.transaction_id)
        corrected = corrected_values(current, report)
        if corrected is None:
            return reject(
                Reason.UNCHANGED_CORRECTION, "the update carries the conversion's current values"
            )
        return Outcome(
            transaction_id=self._insert_correction(writer, original, current, corrected, source)
        )

    def _insert_correction(
        self,
        writer: LedgerWriter,
        original: Transaction,
        current: Transaction,
        corrected: SaleReport,
        source: Source,
        reversal_reason: str | None = None,
        credit: ReferenceClaim | None = None,
    ) -> int:
        """Append a correction to ``current``, the end of ``original``'s chain.

        It is credited like the row it corrects, or to ``credit``, a contesting claim
        the server's report confirmed, and paid by the credited campaign's current
        rule (nothing for a reversal).
        """
        campaign_id, publisher_id, visit_id = (
            (current.campaign_id, current.publisher_id, current.visit_id)
            if credit is None
            else (credit.campaign_id, credit.publisher_id, credit.visit_id)
        )
        attribution = Attribution(
            advertiser_id=original.advertiser_id,
            campaign_id=campaign_id,
            publisher_id=publisher_id,
            payout=writer.campaign_payout(campaign_id),
        )
        draft = self._new_draft(attribution, visit_id, corrected, source, "", self.clock())
        draft.corrects_transaction_id = current.transaction_id
        draft.original_transaction_id = original.transaction_id
        if reversal_reason is not None:
            draft.reversal_reason = reversal_reason
            draft.payout = ZERO
        transaction_id = writer.insert_transaction(draft)
        assert transaction_id is not None  # corrections carry no new idempotency key
        return transaction_id

    # -- server-side reports -------------------------------------------------------

    def report(
        self,
        advertiser_id: int,
        server_report: ServerReport,
        *,
        source: Source = Source.API,
        visit: VisitClaim | None = None,
        params: Params = "",
        event_id: str | None = None,
        spool_on_failure: bool = True,
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

        When the store fails, the report goes to the spool (``SPOOLED``), unless
        ``spool_on_failure`` is False (a bulk upload: the client sends the file again).

        :param event_id: a spooled event's id: applied at most once, ever.
        :raises ReportRefused: when the report cannot be applied; it is also
            written to the rejection log.
        :raises EventAlreadyApplied: when ``event_id`` was applied before.
        :raises StorageError: when neither the store nor the spool took the report
            (then nothing was written).
        """
        try:
            return self._report(advertiser_id, server_report, source, visit, params, event_id)
        except StorageError as failure:
            if event_id is not None or not spool_on_failure:
                raise
            if self._cannot_count(advertiser_id, None):
                self._skip(failure, Reason.UNKNOWN_ADVERTISER)
                raise ReportRefused(
                    Reason.UNKNOWN_ADVERTISER, f"no advertiser {advertiser_id}", status=404
                ) from failure
            report = server_report.report
            spooled = self._spool(
                failure,
                "report",
                erasable=(advertiser_id, report.parent_reference_id or report.reference_id),
                advertiser_id=advertiser_id,
                server_report=encode_server_report(server_report),
                source=source.value,
                visit=encode_visit(visit),
                params=params if isinstance(params, str) else params(),
            )
            return ReportResult(ReportStatus.SPOOLED, None, spooled)

    def _report(
        self,
        advertiser_id: int,
        server_report: ServerReport,
        source: Source,
        visit: VisitClaim | None,
        params: Params,
        event_id: str | None,
    ) -> ReportResult:
        report = server_report.report
        with self.storage.writer() as writer:
            if event_id is not None and not writer.claim_event(event_id, self._now()):
                raise EventAlreadyApplied(event_id)
            plan = self._plan(writer, advertiser_id, server_report, source, visit)
            if isinstance(plan, ReportRefused):
                self._reject(
                    writer,
                    advertiser_id,
                    source,
                    plan.reason,
                    plan.detail,
                    params,
                    None if visit is None else visit.visit_id,
                    report.parent_reference_id or report.reference_id,
                )
            else:
                result = self._apply(writer, advertiser_id, plan, server_report, source)
        if isinstance(plan, ReportRefused):
            raise plan
        return result

    def _plan(
        self,
        writer: LedgerWriter,
        advertiser_id: int,
        server_report: ServerReport,
        source: Source,
        visit: VisitClaim | None,
    ) -> _Plan | ReportRefused:
        """Decide what a server-side report does; nothing is written here."""
        report = server_report.report
        reference_id = report.parent_reference_id or report.reference_id
        if reference_id is None:
            return ReportRefused(
                Reason.MISSING_FIELD,
                "a server-side report needs reference_id (or parent_reference_id)",
                field="reference_id",
                status=400,
            )
        if not writer.advertiser_exists(advertiser_id):
            return ReportRefused(
                Reason.UNKNOWN_ADVERTISER, f"no advertiser {advertiser_id}", status=404
            )
        digest = report_digest(server_report, source)
        original = writer.find_original(advertiser_id, reference_id)
        if original is None:
            plan = self._plan_new(writer, advertiser_id, server_report, visit)
            return plan if isinstance(plan, ReportRefused) else plan._replace(report_hash=digest)
        current = writer.chain_end(original.transaction_id)
        if writer.server_report_seen(advertiser_id, reference_id, source._value_, digest):
            # Sent before, whatever happened since (a reversal, a correction): a retry.
            return _Plan(ReportStatus.UNCHANGED, original=original, current=current)
        claims = writer.open_claims(advertiser_id, reference_id)
        decided, winner = (
            _decide_contest(server_report, current, claims) if claims else (False, None)
        )
        credited = (current.campaign_id, current.publisher_id)
        if winner is not None:
            credited = (winner.campaign_id, winner.publisher_id)
        for field, given, held in (
            ("advertiser_campaign_id", server_report.campaign_id, credited[0]),
            ("affiliate_id", server_report.publisher_id, credited[1]),
        ):
            if given is not None and given != held:
                return ReportRefused(
                    Reason.ATTRIBUTION_CONFLICT,
                    f"conversion {reference_id!r} is credited to {field} {held}, not {given}",
                    field=field,
                    status=409,
                )
        plan = _Plan(
            ReportStatus.UNCHANGED,
            original=original,
            current=current,
            report_hash=digest,
            decided=(claims, winner) if decided else None,
        )
        if winner is not None:
            # Another visit's claim is confirmed: it takes the attribution, with the
            # values it claimed as updated by the report.
            claimed = decode_report(json.loads(winner.report))
            base = dataclasses.replace(
                current,
                sale_amount=claimed.sale_amount,
                sale_currency=claimed.sale_currency,
                reason_code=claimed.reason_code,
                sku_list=claimed.sku_list,
                quantity_list=claimed.quantity_list,
                custom_data=claimed.custom_data,
            )
            values = corrected_values(base, report) or _values_of(
                base, personal_data=report.personal_data
            )
            if server_report.reversal_reason is not None:
                values.sale_amount = ZERO
            return plan._replace(status=ReportStatus.CORRECTED, values=values)
        if server_report.reversal_reason is not None:
            if current.reversal_reason == server_report.reversal_reason:
                return plan
            voided = _values_of(current, personal_data=report.personal_data)
            voided.sale_amount = ZERO
            return plan._replace(status=ReportStatus.CORRECTED, values=voided)
        changed = corrected_values(current, report)
        if changed is None:
            if current.reversal_reason is None:
                return plan
            # Restating a reversed conversion's values (in a report not sent before)
            # brings it back.
            changed = _values_of(current, personal_data=report.personal_data)
        return plan._replace(status=ReportStatus.CORRECTED, values=changed)

    def _plan_new(
        self,
        writer: LedgerWriter,
        advertiser_id: int,
        server_report: ServerReport,
        visit: VisitClaim | None,
    ) -> _Plan | ReportRefused:
        report = server_report.report
        if report.parent_reference_id is not None or server_report.reversal_reason is not None:
            return ReportRefused(
                Reason.UNKNOWN_PARENT_REFERENCE,
                "no conversion has this reference_id to update",
                field="parent_reference_id" if report.parent_reference_id else "reference_id",
                status=404,
            )
        if report.sale_amount is not None and report.sale_amount < 0:
            return ReportRefused(
                Reason.INVALID_SALE_AMOUNT,
                "a negative sale_amount claws back an existing conversion; it cannot create one",
                field="sale_amount",
                status=422,
            )
        campaign_id, publisher_id = server_report.campaign_id, server_report.publisher_id
        if campaign_id is None and publisher_id is None and visit is not None:
            attribution = self._visit_attribution(writer, visit)
            if attribution is None or attribution.advertiser_id != advertiser_id:
                return ReportRefused(
                    Reason.NO_ATTRIBUTION,
                    "the visitor's visit does not credit this advertiser",
                    status=422,
                )
            return _Plan(ReportStatus.CREATED, attribution=attribution, visit_id=visit.visit_id)
        if campaign_id is None or publisher_id is None:
            return ReportRefused(
                Reason.NO_ATTRIBUTION,
                "no earlier conversion has this reference_id, so a new one needs"
                " advertiser_campaign_id and affiliate_id",
                field="advertiser_campaign_id" if campaign_id is None else "affiliate_id",
                status=422,
            )
        campaign = writer.campaign(campaign_id)
        if campaign is None or campaign.advertiser_id != advertiser_id:
            return ReportRefused(
                Reason.UNKNOWN_CAMPAIGN,
                f"advertiser {advertiser_id} has no campaign {campaign_id}",
                field="advertiser_campaign_id",
                status=422,
            )
        if not writer.publisher_approved(campaign_id, publisher_id):
            return ReportRefused(
                Reason.PUBLISHER_NOT_APPROVED,
                f"publisher {publisher_id} has no tracking link for campaign {campaign_id}",
                field="affiliate_id",
                status=422,
            )
        attribution = Attribution(advertiser_id, campaign_id, publisher_id, campaign.payout)
        return _Plan(ReportStatus.CREATED, attribution=attribution)

    def _apply(
        self,
        writer: LedgerWriter,
        advertiser_id: int,
        plan: _Plan,
        server_report: ServerReport,
        source: Source,
    ) -> ReportResult:
        """Write what :meth:`_plan` decided; return the conversion's new current state."""
        if plan.status is ReportStatus.CREATED:
            assert plan.attribution is not None
            draft = self._new_draft(
                plan.attribution, plan.visit_id, server_report.report, source, "", self.clock()
            )
            transaction_id = writer.insert_transaction(draft)
            if transaction_id is None:
                # Writers are serialised and the reference was free a moment ago.
                raise StorageError("the reference key was taken inside a serialised write")
            original_id = transaction_id
        else:
            assert plan.original is not None and plan.current is not None
            original_id = plan.original.transaction_id
            if plan.status is ReportStatus.CORRECTED:
                assert plan.values is not None
                self._insert_correction(
                    writer,
                    plan.original,
                    plan.current,
                    plan.values,
                    source,
                    server_report.reversal_reason,
                    credit=None if plan.decided is None else plan.decided[1],
                )
            if plan.decided is not None:
                self._settle_contest(writer, plan.current, *plan.decided, source)
        current = writer.chain_end(original_id)
        if plan.report_hash is not None:
            assert current.reference_id is not None
            writer.note_server_report(
                advertiser_id, current.reference_id, source._value_, plan.report_hash, self._now()
            )
        return ReportResult(plan.status, current)

    def _settle_contest(
        self,
        writer: LedgerWriter,
        holder: Transaction,
        claims: list[ReferenceClaim],
        winner: ReferenceClaim | None,
        source: Source,
    ) -> None:
        """Close a contest: every claim but the winner is refused, with a reason."""
        now = self._now()
        writer.resolve_claims(
            [claim.claim_id for claim in claims], None if winner is None else winner.claim_id, now
        )
        losers: list[tuple[int | None, int]] = [
            (c.visit_id, c.publisher_id) for c in claims if c is not winner
        ]
        if winner is not None:
            losers.insert(0, (holder.visit_id, holder.publisher_id))
        for visit_id, publisher_id in losers:
            self._reject(
                writer,
                holder.advertiser_id,
                source,
                Reason.CONTEST_LOST,
                f"the advertiser's server report confirmed another claim of this reference_id;"
                f" publisher {publisher_id} is not credited",
                "",
                visit_id,
                holder.reference_id,
            )


def _server_spoke(writer: LedgerWriter, original: Transaction) -> bool:
    """Whether the advertiser's server has reported the conversion ``original`` begins."""
    assert original.reference_id is not None
    return original.source not in _BROWSER_SOURCES or writer.server_reported(
        original.advertiser_id, original.reference_id
    )


def report_digest(server_report: ServerReport, source: Source) -> str:
    """A digest of everything a server-side report says, and where it came from."""
    canonical = json.dumps(
        [source._value_, encode_server_report(server_report)],
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def _confirms(
    server_report: ServerReport,
    values: SaleReport | Transaction,
    campaign_id: int,
    publisher_id: int,
) -> bool | None:
    """Whether a server report confirms a browser claim; None when it says nothing to tell.

    ``values``: a claim's reported values, or the current row of the conversion's holder
    (both carry the confirmable fields under the same names).
    """
    report = server_report.report
    checks = [
        (getattr(report, name), getattr(values, name))
        for name in _CONFIRMABLE_FIELDS
        if name in report.given
    ]
    if server_report.campaign_id is not None:
        checks.append((server_report.campaign_id, campaign_id))
    if server_report.publisher_id is not None:
        checks.append((server_report.publisher_id, publisher_id))
    if not checks:
        return None
    return all(given == held for given, held in checks)


def _decide_contest(
    server_report: ServerReport, current: Transaction, claims: list[ReferenceClaim]
) -> tuple[bool, ReferenceClaim | None]:
    """Which claim a server report confirms: ``(decided, winner)``.

    The winner is None when the conversion's current holder is confirmed; nothing is
    decided unless exactly one claim (the holder's included) has the reported values.
    """
    holder = _confirms(server_report, current, current.campaign_id, current.publisher_id)
    if holder is None:
        return False, None
    confirmed = [
        claim
        for claim in claims
        if _confirms(
            server_report,
            decode_report(json.loads(claim.report)),
            claim.campaign_id,
            claim.publisher_id,
        )
    ]
    if holder and not confirmed:
        return True, None
    if not holder and len(confirmed) == 1:
        return True, confirmed[0]
    return False, None


def _values_of(current: Transaction, *, personal_data: dict[str, str]) -> SaleReport:
    """A conversion's current values as a report (to restate them in a new row)."""
    return SaleReport(
        sale_amount=current.sale_amount,
        sale_currency=current.sale_currency,
        reason_code=current.reason_code,
        sku_list=current.sku_list,
        quantity_list=current.quantity_list,
        reference_id=current.reference_id,
        external_data=current.external_data,
        custom_data=dict(current.custom_data),
        personal_data=personal_data,
    )


def corrected_values(current: Transaction, report: SaleReport) -> SaleReport | None:
    """The values a conversion has after ``report`` updates it; None when nothing changes.

    Only the fields the report carried are replaced (SKUs and quantities
    together); custom data is merged key by key.
    """
    given = report.given
    sale_amount = report.sale_amount if "sale_amount" in given else current.sale_amount
    sale_currency = report.sale_currency if "sale_currency" in given else current.sale_currency
    reason_code = report.reason_code if "reason_code" in given else current.reason_code
    if "sku_list" in given or "quantity_list" in given:
        sku_list, quantity_list = report.sku_list, report.quantity_list
    else:
        sku_list, quantity_list = current.sku_list, current.quantity_list
    custom_data = {**current.custom_data, **report.custom_data}
    if (
        sale_amount == current.sale_amount
        and sale_currency == current.sale_currency
        and reason_code == current.reason_code
        and sku_list == current.sku_list
        and quantity_list == current.quantity_list
        and custom_data == current.custom_data
    ):
        return None
    return SaleReport(
        sale_amount=sale_amount,
        sale_currency=sale_currency,
        reason_code=reason_code,
        sku_list=sku_list,
        quantity_list=quantity_list,
        reference_id=current.reference_id,
        external_data=current.external_data,
        custom_data=custom_data,
        personal_data=report.personal_data,
    )
