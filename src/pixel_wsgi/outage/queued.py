"""The queued mode (``PixelMiddleware(..., ingest="queued")``): the pixel and the click
append their event to the local log instead of writing to the store.

The log is the outage spool (:mod:`.spool`): checksummed lines, safe hand-over, a byte
cap, personal data sealed. Each event is written with one ``write()`` to a file the
process keeps open (``durable=False``): it survives a crash of the process, not a
power loss, as SQLite's ``synchronous=NORMAL`` does; with ``ingest="queued-durable"``
it is also synced before the request is answered (:meth:`.spool.Spool.sync_appended`,
one ``fdatasync`` for the requests that arrive together). An applier
(:class:`~.applier.QueueApplier`, a thread per process, or ``pixel-wsgi replay --loop``
as a service) applies the log in batches, one transaction each, exactly once, through
the same ledger rules a synchronous write follows (:mod:`.replay`).

What stays synchronous: server-side reports (the API, CSV uploads, in-process
reports) apply at once, as their callers read the outcome. When the log cannot take an
event (full, unusable), the event is written to the store at once, as in the default
mode: nothing is lost for want of the log.
"""

from __future__ import annotations

import logging
import secrets

from ..errors import SpoolError
from ..ledger.ledger import ContextSource, Outcome
from ..ledger.refusals import Params
from ..models import ClickContext, Link, Reason, SaleReport, Source, VisitClaim
from .records import SpooledClick, SpooledEvent
from .spool import Tally
from .spooling import SpoolingLedger

__all__ = ["QueuedLedger"]

#: Events the log could not take, written to the store at once: a line a minute.
_BYPASSED = Tally("pixel-wsgi queue could not take events; they were written to the store")
#: Events in the log whose sync failed (queued-durable): a line a minute, critical.
_NOT_SYNCED = Tally(
    "pixel-wsgi queue could not sync its log: the newest events survive a crash of the"
    " process, not a power loss",
    level=logging.CRITICAL,
)


class QueuedLedger(SpoolingLedger):
    """A :class:`~.spooling.SpoolingLedger` whose clicks, browser-reported conversions
    and rejections go to the log first, for the applier; see the module docs.

    :param spool: the log (the outage spool): the queued mode needs one.
    """

    def record_visit(
        self,
        link: Link,
        *,
        ip_prefix: str | None,
        user_agent: str | None,
        click: ClickContext | None = None,
    ) -> int:
        # A negative id, as a click spooled in an outage: the cookie names it, and a
        # conversion applied before or after it is credited all the same.
        queued = SpooledClick(link.id, -(secrets.randbits(62) + 1), ip_prefix, user_agent, click)
        if self._queued(queued):
            return queued.visit_id
        return super().record_visit(link, ip_prefix=ip_prefix, user_agent=user_agent, click=click)

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
        queued = self._spooled_rejection(
            advertiser_id, source, reason, detail, params, visit_id, reference_id
        )
        if self._queued(queued):
            return Outcome(reason=reason, spooled=True)
        return super().reject(
            advertiser_id=advertiser_id,
            source=source,
            reason=reason,
            detail=detail,
            params=params,
            visit_id=visit_id,
            reference_id=reference_id,
        )

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
        queued = self._spooled_conversion(
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
        if self._queued(queued):
            return Outcome(spooled=True)
        return super().record_web_conversion(
            advertiser_id=advertiser_id,
            report=report,
            source=source,
            visit=visit,
            cookie_problem=cookie_problem,
            params=params,
            once_key=once_key,
            conversion=conversion,
            signed_requirement_unread=signed_requirement_unread,
        )

    def _queued(self, event: SpooledEvent) -> bool:
        """Append ``event`` to the log; False when the log cannot take it (the caller
        then writes it to the store at once)."""
        if self.spool is None:
            return False
        try:
            self.spool.append(
                event.kind,
                erasable=event.erasable,
                share=event.share,
                durable=False,
                at=self._now(),
                **event.fields(),
            )
        except SpoolError as exc:  # full (said once as it filled) or unusable
            _BYPASSED.add(f"{event.kind}: {exc}")
            return False
        if self.spool.sync_appends:  # ingest="queued-durable": on disk before the answer
            try:
                self.spool.sync_appended()
            except SpoolError as exc:
                # In the log all the same (a crash of the process keeps it): writing it
                # to the store too would apply it twice.
                _NOT_SYNCED.add(str(exc))
        return True
