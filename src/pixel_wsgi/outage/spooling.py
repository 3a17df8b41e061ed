"""The ledger as the middleware uses it: a store failure becomes a spool record.

:class:`SpoolingLedger` wraps each of the :class:`~pixel_wsgi.ledger.ledger.Ledger`'s
writes: when the store fails, the call's inputs go to the outage spool as one of the
record kinds of :mod:`pixel_wsgi.outage.records`, for ``pixel-wsgi replay``
(:mod:`pixel_wsgi.outage.replay`). An event that could never count is counted in
the spool's tally instead of spooled; a record the store refused for its data
(:class:`~pixel_wsgi.errors.RecordRefused`) is never spooled: a replay could not
store it either.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
from datetime import timedelta

from ..clock import Clock, utc_now
from ..errors import RecordRefused, ReportRefused, SpoolError, SpoolFull, StorageError
from ..ledger.ledger import DEFAULT_RELOAD_WINDOW, ContextSource, Ledger, Outcome
from ..ledger.refusals import Params, loggable
from ..ledger.server_reports import ReportResult, ReportStatus
from ..models import (
    ClickContext,
    ConversionContext,
    Link,
    Reason,
    SaleReport,
    ServerReport,
    Source,
    VisitClaim,
)
from ..storage.base import Storage
from .records import SpooledClick, SpooledConversion, SpooledEvent, SpooledRejection, SpooledReport
from .spool import Spool

__all__ = ["SPOOLED_REJECTIONS", "SpoolingLedger"]

logger = logging.getLogger("pixel_wsgi")

#: Rejections still worth a spool record while the store is down (evidence of fraud
#: about a real advertiser), within their share of the spool; others are counted.
SPOOLED_REJECTIONS = frozenset(
    {Reason.COOKIE_STUFFING, Reason.CROSS_SITE_PIXEL, Reason.INVALID_SIGNATURE, Reason.TOO_FAST}
)
# A CSV upload is not spooled: a failing store stops it, and the client sends the
# file again (the rows applied before are unchanged by the repeat).
_UNSPOOLED_SOURCES = frozenset({Source.CSV_UPLOAD})


class SpoolingLedger(Ledger):
    """A :class:`~pixel_wsgi.ledger.ledger.Ledger` that keeps what a failing store
    could not take in ``spool``.

    - A click gets a new negative visit id (stored ids are positive), so the
      visitor's cookie still credits the link, and a conversion arriving before the
      replay stores the visit.
    - A conversion is spooled (``Outcome.spooled``) unless it could never count.
    - A server report is spooled (``ReportStatus.SPOOLED``, with the ``event_id``),
      except a CSV upload's row: that raises, and the file is sent again.
    - A rejection is spooled only when it is evidence of fraud
      (:data:`SPOOLED_REJECTIONS`), within 1/16 of the spool.

    :param spool: the outage spool; None keeps none (a store failure raises).
    """

    def __init__(
        self,
        storage: Storage,
        spool: Spool | None,
        *,
        reload_window: timedelta = DEFAULT_RELOAD_WINDOW,
        clock: Clock = utc_now,
    ) -> None:
        super().__init__(storage, reload_window=reload_window, clock=clock)
        self.spool = spool

    def record_visit(
        self,
        link: Link,
        *,
        ip_prefix: str | None,
        user_agent: str | None,
        click: ClickContext | None = None,
    ) -> int:
        try:
            return super().record_visit(
                link, ip_prefix=ip_prefix, user_agent=user_agent, click=click
            )
        except StorageError as failure:
            spooled = SpooledClick(
                link.id, -(secrets.randbits(62) + 1), ip_prefix, user_agent, click
            )
            self._spool(failure, spooled)
            return spooled.visit_id

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
        try:
            return super().reject(
                advertiser_id=advertiser_id,
                source=source,
                reason=reason,
                detail=detail,
                params=params,
                visit_id=visit_id,
                reference_id=reference_id,
            )
        except StorageError as failure:
            if reason in SPOOLED_REJECTIONS and not self._cannot_count(advertiser_id, None):
                rejection = self._spooled_rejection(
                    advertiser_id, source, reason, detail, params, visit_id, reference_id
                )
                with contextlib.suppress(SpoolFull):  # its share is used: counted below
                    self._spool(failure, rejection)
                    return Outcome(reason=reason, spooled=True)
            self._skip(failure, reason)
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
        once_key: str | None = None,
        conversion: ContextSource | None = None,
        signed_requirement_unread: bool = False,
    ) -> Outcome:
        """See :meth:`Ledger.record_web_conversion`.

        :param signed_requirement_unread: the hit is unsigned and the pixel could not
            read whether its advertiser requires signed pixels (the store failed): it
            is spooled untried, and the replay decides the requirement as the pixel
            would have.
        """
        try:
            if signed_requirement_unread:
                raise StorageError(
                    f"whether advertiser {advertiser_id} requires signed pixels is unread"
                )
            # Ledger's, not super(): the pixel's hot path (measured with callgrind).
            return Ledger.record_web_conversion(
                self,
                advertiser_id=advertiser_id,
                report=report,
                source=source,
                visit=visit,
                cookie_problem=cookie_problem,
                params=params,
                once_key=once_key,
                conversion=conversion,
            )
        except StorageError as failure:
            why = (
                (cookie_problem or Reason.NO_ATTRIBUTION)
                if visit is None
                else self._cannot_count(advertiser_id, visit)
            )
            if why is not None:
                self._skip(failure, why)
                return Outcome(reason=why)
            spooled = self._spooled_conversion(
                advertiser_id,
                report,
                source,
                visit,
                cookie_problem,
                params,
                once_key,
                conversion,
                signed_requirement_unread,
            )
            self._spool(failure, spooled)
            return Outcome(spooled=True)

    def report(
        self,
        advertiser_id: int,
        server_report: ServerReport,
        *,
        source: Source = Source.API,
        visit: VisitClaim | None = None,
        params: Params = "",
    ) -> ReportResult:
        try:
            return super().report(
                advertiser_id, server_report, source=source, visit=visit, params=params
            )
        except StorageError as failure:
            if source in _UNSPOOLED_SOURCES:
                raise
            if self._cannot_count(advertiser_id, None):
                self._skip(failure, Reason.UNKNOWN_ADVERTISER)
                raise ReportRefused(
                    Reason.UNKNOWN_ADVERTISER, f"no advertiser {advertiser_id}"
                ) from failure
            spooled = SpooledReport(advertiser_id, server_report, source, visit, loggable(params))
            return ReportResult(ReportStatus.SPOOLED, None, self._spool(failure, spooled))

    def _spool(self, failure: StorageError, event: SpooledEvent) -> str:
        """Keep an event the store failed on in the spool; raise if that fails too."""
        if self.spool is None or isinstance(failure, RecordRefused):
            raise failure
        try:
            event_id = self.spool.append(
                event.kind,
                erasable=event.erasable,
                share=event.share,
                at=self._now(),
                **event.fields(),
            )
        except SpoolFull:
            if event.share == 1:
                self.spool.lost(f"{event.kind}: the spool is full")  # said once as it filled
            raise
        except SpoolError as exc:
            self.spool.lost(f"{event.kind}: {exc}")  # at most a line a minute, not one a hit
            raise
        logger.error(
            "pixel-wsgi store failed (%s); %s event %s spooled", failure, event.kind, event_id
        )
        return event_id

    def _skip(self, failure: StorageError, why: Reason) -> None:
        """Count, rather than spool, an event that could not count anyway."""
        if self.spool is None or isinstance(failure, RecordRefused):
            raise failure
        self.spool.skip(why.value)

    def _spooled_conversion(
        self,
        advertiser_id: int,
        report: SaleReport,
        source: Source,
        visit: VisitClaim | None,
        cookie_problem: Reason | None,
        params: Params,
        once_key: str | None,
        conversion: ContextSource | None,
        signed_requirement_unread: bool,
    ) -> SpooledConversion:
        """A browser-reported conversion as a spool record."""
        return SpooledConversion(
            advertiser_id,
            report,
            source,
            visit,
            cookie_problem,
            loggable(params),
            once_key,
            check_signed_requirement=signed_requirement_unread,
            # A correction keeps none: it shares its conversion's.
            conversion=(
                None
                if report.parent_reference_id is not None
                else self._spooled_context(conversion, visit)
            ),
        )

    @staticmethod
    def _spooled_rejection(
        advertiser_id: int | None,
        source: Source | str,
        reason: Reason,
        detail: str,
        params: Params,
        visit_id: int | None,
        reference_id: str | None,
    ) -> SpooledRejection:
        """A rejection as a spool record."""
        return SpooledRejection(
            advertiser_id,
            source.value if isinstance(source, Source) else source,
            reason,
            detail,
            loggable(params),
            visit_id,
            reference_id,
        )

    def _spooled_context(
        self, conversion: ContextSource | None, visit: VisitClaim | None
    ) -> ConversionContext | None:
        """The request context a spooled conversion carries: none when the cached
        attribution says its advertiser keeps none; else (or when it cannot be read) it
        is spooled, sealed like personal data, and the replay keeps it only if the
        advertiser keeps contexts then."""
        if conversion is None or visit is None:
            return None
        try:
            attribution = self.catalog.attribution(visit.link_id)
        except StorageError:
            attribution = None
        if attribution is not None and not attribution.keeps_conversion_context:
            return None
        return conversion()

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
